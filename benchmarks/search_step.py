"""Cost of one AdaBERT search step, through the search's own objective (``search.searcher.SearchObjective``).

A step is what the search loop does per batch: a weight step (forward + backward + clip + AdamW on the sampled
depth) and an architecture step (forward + backward to the architecture weights). Compared, on the same
sequence of sampled architectures (same seed):

* architecture step scoring every depth 1..K_max from one pass over all cells (the default: depth gets a task
  signal), vs. scoring only the sampled depth (cheaper, but depth then only feels the efficiency loss);
* with ``--all-ops``: the full mixed op (all ten ops per edge) instead of the sampled op only (GDAS).

    python benchmarks/search_step.py [--steps 10] [--batch 32] [--seq-len 32] [--threads 2] [--all-ops] [--write]

``--write`` replaces the section "Search step" of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bertnas.adabert.architecture import Architecture
from bertnas.adabert.costs import efficiency_costs
from bertnas.adabert.objective import KDHeads, Targets
from bertnas.adabert.searcher import SearchObjective, build_supernet
from bertnas.config import RunConfig
from bertnas.data.examples import TaskSpec
from bertnas.measure import hardware_info

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEAD = "## Search step"


def time_steps(all_depths: bool, sampled_only: bool, steps: int, batch: int, seq_len: int, vocab: int,
               seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    spec = TaskSpec("bench", ["0", "1"], False, ["accuracy"], "accuracy")
    cfg = RunConfig(sampled_only=sampled_only)
    net = build_supernet(cfg, spec, torch.randn(vocab, 256), torch.randn(512, 256), 102)
    arch = Architecture(cfg.k_max)
    heads = KDHeads(cfg.k_max, cfg.hidden_size, 2)
    gen = torch.Generator().manual_seed(seed)
    targets = Targets(torch.randn(batch, 2, generator=gen), torch.randn(7, batch, 2, generator=gen), torch.device("cpu"))
    objective = SearchObjective(cfg, spec, net, heads, arch, targets, efficiency_costs(cfg.hidden_size, seq_len))
    weights = list(net.parameters()) + list(heads.parameters())
    w_opt = torch.optim.AdamW(weights, lr=1e-3)
    ids = torch.randint(5, vocab, (batch, seq_len), generator=gen)
    b = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
         "labels": torch.randint(0, 2, (batch,), generator=gen), "index": torch.arange(batch)}
    times = []
    for step in range(steps + 2):  # 2 warm-up steps
        t0 = time.perf_counter()
        ops_w, depth_w = arch.sample(1.0, gen)
        loss = objective(b, ops_w.detach(), depth_w.detach(), arch_step=False).total
        w_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(weights, 5.0)
        w_opt.step()
        ops_w, depth_w = arch.sample(1.0, gen)
        loss = objective(b, ops_w, depth_w, arch_step=True, all_depths=all_depths).total
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
    p.add_argument("--all-ops", action="store_true", help="also time the full mixed op (slow)")
    p.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    modes = [("sampled op; architecture step scores every depth (default)", True, True),
             ("sampled op; architecture step scores the sampled depth only", False, True)]
    if args.all_ops:
        modes.append(("all 10 ops; architecture step scores every depth", True, False))
    rows = []
    for name, all_depths, sampled in modes:
        t = time_steps(all_depths, sampled, args.steps, args.batch, args.seq_len, args.vocab)
        rows.append((name, t))
        print(f"{name}: median {statistics.median(t) * 1000:.0f} ms/step", flush=True)
    hw = hardware_info()
    section = [
        HEAD, "",
        f"Command: `python benchmarks/search_step.py --steps {args.steps} --batch {args.batch} --seq-len {args.seq_len} "
        f"--threads {args.threads}{' --all-ops' if args.all_ops else ''}`  ",
        f"Supernet: hidden 128, K_max 8, 9 edges x 10 ops; one step = weight step (sampled depth) + architecture "
        f"step; the same sampled architectures in every mode. CPU: {hw['cpu']}, {args.threads} threads, "
        f"torch {hw['torch_version']}.", "",
        "| mode | median s/step | min s/step |", "|---|---:|---:|",
        *[f"| {name} | {statistics.median(t):.3f} | {min(t):.3f} |" for name, t in rows], "",
    ]
    if args.write:
        _write_section(section)
    print("\n".join(section))


def _write_section(lines: list[str]) -> None:
    """Replace this benchmark's section of docs/benchmarks.md, keeping the others."""
    head = "## Search step: sampled op only vs all ops" if "## Search step: sampled" in (DOC.read_text() if DOC.exists() else "") else HEAD
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
