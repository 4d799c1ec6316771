"""Markdown tables of a NAS-BERT benchmark run: ``python -m bertnas.nasbert.report RUN_DIR``.

Reads what the stages saved (selection.json, baselines.json, {sst2,mrpc}/NAME/results.json,
teacher_latency.json, stage_times.tsv, supernet/log.json); prints only what is there.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _metric(results: dict | None) -> str:
    if not results:
        return "-"
    dev = results["dev"]
    if "f1" in dev and results["task"] == "mrpc":
        return f"{dev['f1']:.4f} / {dev['accuracy']:.4f}"
    return f"{dev[results['headline']]:.4f}"


def report(run: Path) -> str:
    lines = []
    sel = (_load(run / "selection.json") or {}).get("models", [])
    bases = {b["like"]: b for b in (_load(run / "baselines.json") or {}).get("models", [])}
    teacher = _load(run / "teacher_latency.json")
    lines += ["| model | architecture | params | predicted b1 / measured b1 (ms) | error b1 | predicted b32 / measured b32 (ms) | error b32 | SST-2 acc | MRPC F1 / acc |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in sel:
        name = m["name"]
        row = [f"NAS-BERT {name}", "`" + m['architecture'].replace('|', '\\|') + "`", f"{m['params'] / 1e6:.2f}M"]
        for b in (1, 32):
            if f"predicted_ms_b{b}" in m and f"measured_ms_b{b}" in m:
                row += [f"{m[f'predicted_ms_b{b}']:.2f} / {m[f'measured_ms_b{b}']:.2f}", f"{100 * m[f'error_b{b}']:+.1f}%"]
            else:
                row += ["-", "-"]
        row += [_metric(_load(run / "sst2" / name / "results.json")), _metric(_load(run / "mrpc" / name / "results.json"))]
        lines.append("| " + " | ".join(row) + " |")
        b = bases.get(name)
        if b:
            sst2, mrpc = _load(run / "sst2" / f"bert-{name}" / "results.json"), _load(run / "mrpc" / f"bert-{name}" / "results.json")
            lat = sst2 or mrpc or {}
            lines.append("| " + " | ".join([
                f"BERT {b['layers']}L-H{b['hidden']} (hand-designed)", "-", f"{b['params'] / 1e6:.2f}M",
                f"- / {lat['latency_ms_b1']:.2f}" if "latency_ms_b1" in lat else "-", "-",
                f"- / {lat['latency_ms_b32']:.2f}" if "latency_ms_b32" in lat else "-", "-", _metric(sst2), _metric(mrpc)]) + " |")
    if teacher:
        lines.append(f"| MiniLM teacher | 6L-H384 | {teacher['params'] / 1e6:.2f}M | - / {teacher['latency_ms_b1']:.2f} | - | "
                     f"- / {teacher['latency_ms_b32']:.2f} | - | see teachers | see teachers |")
        for m in sel:
            if "measured_ms_b1" in m:
                lines.append(f"\n{m['name']}: {teacher['latency_ms_b1'] / m['measured_ms_b1']:.1f}x faster than the teacher at b1, "
                             f"{teacher['latency_ms_b32'] / m['measured_ms_b32']:.1f}x at b32")
    times = run / "stage_times.tsv"
    if times.is_file():
        lines += ["", "| stage | wall time (s) |", "|---|---:|"]
        lines += [f"| {a} | {b} |" for a, b in (line.split("\t") for line in times.read_text().splitlines() if "\t" in line)]
    log = _load(run / "supernet" / "log.json")
    if log:
        lines += ["", f"supernet: {log['train_sentences']} training + {log['heldout_sentences']} held-out sentences; "
                  f"paths per block {log['paths_per_block_start']} -> {log['paths_per_block_end']}; "
                  f"whole-model space {log['space_size_start']} -> {log['space_size_end']}; seconds {log['seconds']}"]
        for e in log["epochs"]:
            lines.append(f"- epoch {e['epoch']}: train block MSE {[round(x, 4) for x in e['train_block_mse']]}"
                         + (f", paths per block after shrinking {e['paths_per_block']}, space {e['space_size']}" if "paths_per_block" in e else "")
                         + f" ({e['seconds_total']} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(sys.argv[1])))
