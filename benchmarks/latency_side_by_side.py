"""Latency of several saved classifiers measured side by side in one process (round-robin repeats), so runs made
at different times or thread counts compare on one footing.

    python benchmarks/latency_side_by_side.py runs/sst2/model runs/sst2-beta0/model ... [--threads 1] [--rounds 5]

Prints a markdown table: params, GFLOPs, median latency at batch 1 and 32 (sequence 128) over all rounds.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

import bertnas  # noqa: F401  (registers the model types)
from bertnas.measure.profile import profile_classifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="round-robin rounds; each times every model")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per model per round")
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args()
    models = {m: AutoModelForSequenceClassification.from_pretrained(m, dtype=torch.float32).eval() for m in args.models}
    times: dict[Path, dict[int, list[float]]] = {m: {1: [], 32: []} for m in models}
    info: dict[Path, dict] = {}
    for _ in range(args.rounds):
        for path, model in models.items():
            r = profile_classifier(model, model.config.vocab_size, (1, 32), seq_len=args.seq_len, threads=args.threads,
                                   repeats=args.repeats)
            info[path] = r
            for b in (1, 32):
                times[path][b].append(r[f"latency_ms_b{b}"])
    print(f"Sequence {args.seq_len}, {args.threads} thread(s), median over {args.rounds} rounds x {args.repeats} calls, "
          "one process, models interleaved.\n")
    print("| model | params | GFLOPs (b1) | latency b1 (ms) | latency b32 (ms) |\n|---|---:|---:|---:|---:|")
    for path in models:
        print(f"| `{path}` | {info[path]['params'] / 1e6:.2f}M | {info[path]['flops'] / 1e9:.3f} | "
              f"{statistics.median(times[path][1]):.2f} | {statistics.median(times[path][32]):.1f} |")


if __name__ == "__main__":
    main()
