"""Markdown tables for docs/results.md from finished run directories (and their logs, for wall times).

    python benchmarks/summarize_runs.py runs/sst2 runs/sst2-beta0 ... [--logs logs/sst2.log ...]

Prints, per run: teacher / student / BERT-base rows (metric, params, GFLOPs, latency b1/b32), speedups, the
architecture, the search history (loss terms, derived dev metric, depth probabilities) and further training's
dev metric per epoch; then one comparison row per run (for sweeps). Wall time per stage comes from the
``stage ...`` lines of a run's log (the time stamps ``bertnas`` logs), when a log is given.
"""
from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path


def stage_times(log: Path) -> dict[str, float]:
    """Seconds per stage from ``HH:MM:SS INFO stage NAME`` lines (the last line with a time stamp ends the last)."""
    stamps, marks = [], []
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"(\d\d:\d\d:\d\d) INFO (.*)", line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%H:%M:%S")
        stamps.append(t)
        s = re.match(r"stage (\w+)", m.group(2))
        if s:
            marks.append((s.group(1), t))
        if m.group(2).startswith("measuring latency"):
            marks.append(("evaluate", t))
    out = {}
    for (name, t0), (_, t1) in zip(marks, marks[1:] + [("end", stamps[-1])]):
        out[name] = out.get(name, 0.0) + ((t1 - t0).total_seconds() % 86400)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", log.read_text(errors="replace"))
    if wall:  # /usr/bin/time -v around the run: the whole command, the last stage's unlogged end included
        parts = [float(x) for x in wall.group(1).split(":")]
        total = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
        out["evaluate"] = max(0.0, total - sum(v for k, v in out.items() if k != "evaluate"))
    return out


def run_tables(run: Path, log: Path | None) -> tuple[list[str], dict]:
    r = json.loads((run / "results.json").read_text())
    g = json.loads((run / "search" / "genotype.json").read_text())
    training = json.loads((run / "model" / "training.json").read_text())
    metric = r["metric"]
    lines = [f"### `{run.name}`", "", f"| model | params | GFLOPs (b1, seq 128) | dev {metric} | latency b1 (ms) | latency b32 (ms) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, row in (("teacher", r["teacher"]), ("student (AdaBERT)", r["student"]), ("BERT-base size", r.get("bert_base"))):
        if not row:
            continue
        m = row.get("metric")
        lines.append(f"| {name} | {row['params'] / 1e6:.2f}M | {row['flops'] / 1e9:.3f} | "
                     f"{'-' if m is None else f'{m:.4f}'} | {row['latency_ms_b1']:.2f} | {row['latency_ms_b32']:.1f} |")
    for name, base in r.get("baselines", {}).items():
        lines.append(f"| baseline: {name} | - | - | {base.get(metric, float('nan')):.4f} | - | - |")
    s_dev = r["student"]["dev"]
    extra = ", ".join(f"{k} {v:.4f}" for k, v in s_dev.items() if k != metric)
    lines += ["", f"Student vs teacher: {100 * (r['student']['metric'] - r['teacher']['metric']):+.2f} points"
              f"{' (' + extra + ')' if extra else ''}; {r['speedup_b1']}x faster (b1), {r['speedup_b32']}x (b32), "
              f"{r['compression']}x smaller."]
    if r.get("vs_bert_base"):
        v = r["vs_bert_base"]
        lines.append(f"Student vs BERT-base size: {v['speedup_b1']}x faster (b1), {v['speedup_b32']}x (b32), "
                     f"{v['compression']}x smaller.")
    lines += ["", f"Architecture: `{g['genotype_str']}`", "",
              "| search epoch | loss | CE | KD | L_E | dev (derived arch) | depth probabilities K=1..8 |", "|---:|---:|---:|---:|---:|---:|---|"]
    for h in g["history"]:
        dev = h.get("dev_derived", {}).get(metric, float("nan"))
        lines.append(f"| {h['epoch']}{' (warm-up)' if not h.get('arch_updates', True) else ''} | {h['loss']:.3f} | "
                     f"{h['ce']:.3f} | {h['kd']:.3f} | {h['eff']:.3f} | {dev:.4f} | "
                     f"{' '.join(f'{p:.2f}' for p in h['depth_probs'])} |")
    hist = training.get("history", [])
    devs = [f"{h['dev'].get(metric, float('nan')):.4f}" for h in hist if "dev" in h]
    lines += ["", f"Further training, dev {metric} after each epoch: {', '.join(devs)} (best kept)."]
    times = stage_times(log) if log else {}
    if times:
        total = sum(times.values())
        lines.append("Wall time per stage: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items())
                     + f"; total {total / 60:.1f} min.")
    summary = {"run": run.name, "metric": metric, "student": r["student"]["metric"], "teacher": r["teacher"]["metric"],
               "depth": g["genotype"]["depth"], "params": r["student"]["params"], "b1": r["student"]["latency_ms_b1"],
               "b32": r["student"]["latency_ms_b32"], "arch": g["genotype_str"], "minutes": sum(times.values()) / 60 if times else None}
    return lines, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--logs", nargs="*", type=Path, default=[])
    args = ap.parse_args()
    logs = dict(zip(args.runs, args.logs))
    rows = []
    for run in args.runs:
        lines, summary = run_tables(run, logs.get(run))
        print("\n".join(lines) + "\n")
        rows.append(summary)
    print("| run | K | params | dev | vs teacher (points) | latency b1 (ms) | latency b32 (ms) | wall time (min) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in rows:
        minutes = "-" if s["minutes"] is None else f"{s['minutes']:.1f}"
        print(f"| {s['run']} | {s['depth']} | {s['params'] / 1e6:.2f}M | {s['student']:.4f} | "
              f"{100 * (s['student'] - s['teacher']):+.2f} | {s['b1']:.2f} | {s['b32']:.1f} | {minutes} |")


if __name__ == "__main__":
    main()
