"""NAS-BERT models beside AdaBERT students on SST-2: dev accuracy, parameters, latency measured the same way.

Every model is timed here, one after another in one process on a quiet CPU: batch 1 and 32, sequence 128,
1 torch thread, minimum of 20 calls after 3 warm-up calls (the statistic of the NAS-BERT latency table), on
random token ids. Accuracy: each run's own results.json (NAS-BERT: mean and standard error over its seeds).

  python benchmarks/nasbert_vs_adabert.py --nasbert-run /work/runs/nb4 \
      --adabert-run /work/runs/budget-sst2-3ep --adabert-run /work/runs/sst2-default-1205
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import bertnas  # noqa: E402,F401  (registers the adabert and nasbert model types)
from transformers import AutoModelForSequenceClassification  # noqa: E402

from bertnas.measure.profile import count_params, hardware_info, measure_latency, random_batch  # noqa: E402
from bertnas.stats import spread  # noqa: E402


def timed(model_dir: Path) -> dict:
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    vocab = int(model.config.vocab_size)
    out = {"params": count_params(model)}
    for b in (1, 32):
        batch = random_batch(vocab, b, 128, torch.Generator().manual_seed(b), "cpu")
        out[f"min_ms_b{b}"] = measure_latency(lambda: model(**batch), warmup=3, repeats=20, threads=1)["min_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nasbert-run", required=True)
    ap.add_argument("--adabert-run", action="append", default=[])
    ap.add_argument("--out", default=str(ROOT / "docs" / "nasbert_vs_adabert.json"))
    args = ap.parse_args()
    run = Path(args.nasbert_run)
    names = [m["name"] for m in json.loads((run / "selection.json").read_text())["models"]]
    if (run / "baselines.json").is_file():
        names += [b["name"] for b in json.loads((run / "baselines.json").read_text())["models"]]
    rows = []
    for name in names:
        seeds = sorted((run / "sst2" / name).glob("seed*/results.json"))
        if not seeds:
            continue
        results = [json.loads(p.read_text()) for p in seeds]
        acc = spread([r["dev"]["accuracy"] for r in results])
        m, se = acc["mean"], acc["se"] if acc["se"] is not None else float("nan")
        rows.append({"model": f"NAS-BERT {name}" if not name.startswith("bert-") else name, "dir": str(seeds[0].parent / "model"),
                     "sst2_acc": m, "sst2_se": se, "seeds": acc["n"], "train_examples": results[0].get("train_examples"),
                     **timed(seeds[0].parent / "model")})
    for a in args.adabert_run:
        r = json.loads((Path(a) / "results.json").read_text())
        rows.append({"model": f"AdaBERT ({Path(a).name})", "dir": str(Path(a) / "model"), "sst2_acc": r["student"]["metric"],
                     "sst2_se": float("nan"), "seeds": 1, "architecture": r["student"]["architecture"],
                     **timed(Path(a) / "model")})
    teacher = json.loads((run / "teacher_latency.json").read_text()) if (run / "teacher_latency.json").is_file() else None
    result = {"rows": rows, "teacher": teacher, "hardware": hardware_info(), "torch": torch.__version__,
              "command": " ".join(["python benchmarks/nasbert_vs_adabert.py"] + sys.argv[1:])}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("| model | SST-2 dev acc | seeds | params | b1 ms (min, 1 thread) | b32 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        se = f" ± {r['sst2_se']:.4f}" if not math.isnan(r["sst2_se"]) else ""
        print(f"| {r['model']} | {r['sst2_acc']:.4f}{se} | {r['seeds']} | {r['params'] / 1e6:.2f}M | {r['min_ms_b1']:.2f} | "
              f"{r['min_ms_b32']:.1f} |")


if __name__ == "__main__":
    main()
