"""Issue #18, "a search that decides": the levers on the architecture step, each measured the same way.

Every lever is a search (`bertnas search`) from the same probe run (same teacher knowledge, same validation
split, same search subset and seed), so rows differ only in the lever's flags. Per row: how firmly the
search chose (edges whose top op has >= 2x the runner-up's probability, the likeliest depth's probability,
the largest op probability), the signal-to-noise of the architecture gradient in the last epoch, the derived
architecture's validation and dev metric with the supernet's weights, and the search's wall time. Rows resume:
a finished row (search/genotype.json present) is read, not rerun.

    python benchmarks/search_levers.py --base runs/sst2-base --out runs/levers [--levers a,b] [--seeds 0,1,2] \
        [--md docs/search_levers.md] -- [flags for every row, e.g. --search-max-examples 10000]

The base run is a probe stage: `bertnas probe --teacher T --task sst2 --data-dir D --out runs/sst2-base
--max-seq-len 64`.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PINNED = ["--arch-data", "train", "--bn-recalibration", "0", "--derive-candidates", "1"]
"""The search as it was before issue #18 (one level, the search's own BatchNorm statistics, the most likely
architecture): every row starts from these and its lever's flags override them."""

LEVERS: dict[str, tuple[list[str], str]] = {
    "baseline": ([], "before #18: one level (architecture steps on the training batches, AdaBERT's code), arch lr 3e-3"),
    "bilevel": (["--arch-data", "val"], "architecture steps on held-out batches (DARTS' bilevel)"),
    "arch_lr_10x": (["--arch-lr", "3e-2"], "architecture learning rate 3e-2"),
    "entropy": (["--arch-entropy", "1"], "entropy penalty ramped 0 -> 1 over the architecture epochs"),
    "tau_low": (["--tau-max", "0.5", "--tau-min", "0.05"], "temperature 0.5 -> 0.05"),
    "all_ops": (["--no-sampled-only"], "every op runs on every edge (gradient to every op weight, not only the sampled one)"),
    "candidates": (["--derive-candidates", "8"], "8 architectures drawn near the most likely one, ranked on the validation split"),
    "bilevel_lr_10x": (["--arch-data", "val", "--arch-lr", "3e-2"], "bilevel + arch lr 3e-2"),
    "lr_10x_entropy": (["--arch-lr", "3e-2", "--arch-entropy", "1"], "arch lr 3e-2 + entropy penalty"),
    "bn_recal": (["--bn-recalibration", "20"], "BatchNorm statistics re-estimated on 20 batches for the derived architecture"),
    "bn_recal_candidates": (["--bn-recalibration", "20", "--derive-candidates", "8"], "BatchNorm re-estimated + 8 candidates ranked"),
    "bilevel_bn_candidates": (["--arch-data", "val", "--bn-recalibration", "20", "--derive-candidates", "8"],
                              "bilevel + BatchNorm re-estimated + 8 candidates ranked (the new default)"),
    "alternate_bn_candidates": (["--search-step", "alternate", "--bn-recalibration", "20", "--derive-candidates", "8"],
                                "control for bilevel: the same two-pass step, architecture on training batches"),
    "small_batch": (["--search-batch-size", "16"], "batches of 16: 4x the architecture steps"),
    "small_batch_lr": (["--search-batch-size", "16", "--arch-lr", "1e-2"], "batches of 16, arch lr 1e-2"),
}


def run_row(base: Path, out: Path, flags: list[str], log: Path) -> dict:
    """Search in ``out`` (a copy of the probe run ``base``) unless it is done; the row's summary."""
    summary = out / "search" / "genotype.json"
    if not summary.is_file():
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "stages.json"):
            shutil.copy(base / name, out / name)
        for name in ("tokenizer", "probes"):
            shutil.copytree(base / name, out / name, dirs_exist_ok=True)
        t0 = time.perf_counter()
        with open(log, "a") as f:
            proc = subprocess.run([sys.executable, "-m", "bertnas.cli", "search", "--out", str(out), *flags],
                                  stdout=f, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise SystemExit(f"row {out.name} failed (exit {proc.returncode}): see {log}")
        print(f"{out.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    s = json.loads(summary.read_text())
    last = s["history"][-1]
    headline = next(iter(last["dev_derived"]))
    chosen_val = last.get("val_derived", {}).get(headline)
    if s.get("candidates"):
        chosen_val = next(c["val"][headline] for c in s["candidates"] if c["genotype"] == s["genotype_str"])
    return {
        "genotype": s["genotype_str"], "depth": s["genotype"]["depth"], "metric": headline,
        "edges_decided": s["decisiveness"]["edges_decided"], "depth_max_prob": s["decisiveness"]["depth_max_prob"],
        "op_prob_max": s["decisiveness"]["op_prob_max"], "ops_snr": last["arch_signal"].get("ops_snr"),
        "depth_snr": last["arch_signal"].get("depth_snr"), "noise_floor": last["arch_signal"].get("noise_floor"),
        "arch_steps": last["arch_signal"].get("steps"),
        "val": chosen_val,
        "val_argmax": last.get("val_derived", {}).get(headline), "dev_argmax": last["dev_derived"][headline],
        "search_seconds": s["search_seconds"],
    }


def _mean_se(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    se = statistics.stdev(values) / len(values) ** 0.5
    return f"{statistics.mean(values):.4f} ± {se:.4f}"


def _snr(rows: list[dict]) -> str:
    """Last epoch's architecture-gradient signal-to-noise, ops / depth, with pure noise's value."""
    r = rows[0]
    if r["ops_snr"] is None:
        return "-"
    floor = r["noise_floor"] or math.sqrt(2 / (math.pi * r["arch_steps"]))  # rows run before it was recorded
    return (f"{statistics.mean(x['ops_snr'] for x in rows):.3f} / {statistics.mean(x['depth_snr'] for x in rows):.3f}"
            f" ({floor:.3f})")


def table(results: dict[str, list[dict]], command: str) -> str:
    lines = [f"Command: `{command}`", "",
             "| lever | what | seeds | edges decided (of 9) | p(top depth) | max p(op) | ops / depth grad SNR (noise floor) | "
             "val (kept arch) | dev (argmax arch) | search s | genotypes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, rows in results.items():
        distinct = len({r["genotype"] for r in rows})
        lines.append(
            f"| {name} | {LEVERS[name][1]} | {len(rows)} | {_mean_se([r['edges_decided'] for r in rows])} | "
            f"{_mean_se([r['depth_max_prob'] for r in rows])} | {_mean_se([r['op_prob_max'] for r in rows])} | "
            f"{_snr(rows)} | {_mean_se([r['val'] for r in rows])} | "
            f"{_mean_se([r['dev_argmax'] for r in rows])} | {statistics.mean(r['search_seconds'] for r in rows):.0f} | "
            f"{distinct} distinct of {len(rows)}: " + "; ".join(f"K={r['depth']}" for r in rows) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="a probe run directory")
    parser.add_argument("--out", type=Path, required=True, help="where the rows' run directories go")
    parser.add_argument("--levers", default=",".join(LEVERS), help="comma-separated lever names")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--md", type=Path, help="write the table (markdown) and the rows (JSON beside it)")
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="after --: flags for every row")
    args = parser.parse_args()
    common = [f for f in args.flags if f != "--"]
    names = [n.strip() for n in args.levers.split(",") if n.strip()]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        raise SystemExit(f"unknown lever(s) {', '.join(unknown)}: choose from {', '.join(LEVERS)}")
    if not (args.base / "probes" / "probes.json").is_file():
        raise SystemExit(f"{args.base} is not a probe run: run `bertnas probe ... --out {args.base}` first")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    for name in names:
        for seed in [int(s) for s in args.seeds.split(",")]:
            flags = [*PINNED, *common, *LEVERS[name][0], "--seed", str(seed)]
            results.setdefault(name, []).append(
                {"seed": seed, **run_row(args.base, args.out / f"{name}-s{seed}", flags, args.out / "levers.log")})
    command = "python benchmarks/search_levers.py " + " ".join(sys.argv[1:])
    text = table(results, command)
    print(text)
    if args.md:
        args.md.write_text(text)
        args.md.with_suffix(".json").write_text(json.dumps({"command": command, "rows": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
