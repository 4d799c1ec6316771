"""Cost of one AdaBERT search step: only the sampled op per edge (GDAS) vs all ten ops (full mixed op).

A step is what the search loop does per batch: a weight step (forward + backward + AdamW) and an
architecture step (forward + backward through the architecture weights). Both modes see the same sequence
of sampled architectures (same seed). Writes docs/benchmarks.md (section "search step").

    python benchmarks/search_step.py [--steps 10] [--batch 32] [--seq-len 32] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bertnas.config import RunConfig
from bertnas.data.examples import TaskSpec
from bertnas.measure import hardware_info
from bertnas.search.architecture import Architecture
from bertnas.search.searcher import build_supernet

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def time_steps(sampled_only: bool, steps: int, batch: int, seq_len: int, vocab: int, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    spec = TaskSpec("bench", ["0", "1"], False, ["accuracy"], "accuracy")
    cfg = RunConfig()
    net = build_supernet(cfg, spec, torch.randn(vocab, 256), torch.randn(512, 256), 102)
    arch = Architecture(cfg.k_max)
    w_opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, seq_len), generator=gen)
    mask, types, labels = torch.ones_like(ids), torch.zeros_like(ids), torch.randint(0, 2, (batch,), generator=gen)
    times = []
    for step in range(steps + 2):  # 2 warm-up steps
        t0 = time.perf_counter()
        ops_w, depth_w = arch.sample(1.0, gen)
        out = net(ids, mask, types, ops_w, depth_w, sampled_only=sampled_only)
        loss = torch.nn.functional.cross_entropy(out.logits, labels)
        w_opt.zero_grad()
        loss.backward()
        w_opt.step()
        ops_w, depth_w = arch.sample(1.0, gen)
        out = net(ids, mask, types, ops_w, depth_w, sampled_only=sampled_only)
        loss = torch.nn.functional.cross_entropy(out.logits, labels)
        torch.autograd.grad(loss, list(arch.parameters()))
        if step >= 2:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=30522)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for sampled in (True, False):
        t = time_steps(sampled, args.steps, args.batch, args.seq_len, args.vocab)
        rows["sampled op only (GDAS, default)" if sampled else "all 10 ops (full mixed op)"] = t
        print(f"sampled_only={sampled}: median {statistics.median(t) * 1000:.0f} ms/step")
    (fast, t_fast), (slow, t_slow) = rows.items()
    ratio = statistics.median(t_slow) / statistics.median(t_fast)
    hw = hardware_info()
    section = [
        "## Search step: sampled op only vs all ops", "",
        f"Command: `python benchmarks/search_step.py --steps {args.steps} --batch {args.batch} --seq-len {args.seq_len} "
        f"--threads {args.threads}`  ",
        f"Supernet: hidden 128, K_max 8, 9 edges x 10 ops; one step = weight step + architecture step; "
        f"the same sampled architectures (ops and depth) in both modes. CPU: {hw['cpu']}, {args.threads} threads, "
        f"torch {hw['torch_version']}.", "",
        "| mode | median s/step | min s/step |", "|---|---:|---:|",
        f"| {fast} | {statistics.median(t_fast):.3f} | {min(t_fast):.3f} |",
        f"| {slow} | {statistics.median(t_slow):.3f} | {min(t_slow):.3f} |", "",
        f"Running only the sampled op makes a search step **{ratio:.1f}x** cheaper here; it is the default "
        "(`--sampled-only`, turn off with `--no-sampled-only`).", "",
    ]
    _write_section(section)
    print("\n".join(section))


def _write_section(lines: list[str]) -> None:
    """Replace this benchmark's section of docs/benchmarks.md, keeping the others."""
    head = "## Search step: sampled op only vs all ops"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nNumbers measured on this project's CI-class machine (2 CPU cores).\n\n"
    if head in text:
        before, rest = text.split(head, 1)
        after = rest.split("\n## ", 1)
        text = before + "\n".join(lines) + ("\n## " + after[1] if len(after) > 1 else "")
    else:
        text = text.rstrip() + "\n\n" + "\n".join(lines)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


if __name__ == "__main__":
    main()
