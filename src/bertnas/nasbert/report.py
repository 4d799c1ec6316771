"""Markdown tables of a NAS-BERT benchmark run: ``python -m bertnas.nasbert.report RUN_DIR``.

Reads what the stages saved (selection.json, baselines.json, {sst2,mrpc,mrpc-score}/NAME/results.json,
teacher_latency.json, stage_times.tsv, supernet/log.json); prints only what is there. The teacher row too:
its name, shape and dev metrics are the ones fine-tuning recorded in results.json (``teacher``,
``teacher_architecture``, ``teacher_dev``), its latency and size teacher_latency.json's; a missing value is "-"
and a note under the table says why, never a number from elsewhere.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..stats import spread


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _metric(results: dict | list[dict] | None) -> str:
    """One run's dev metric, or over seeds the mean ± standard error (n seeds)."""
    runs = [r for r in (results if isinstance(results, list) else [results]) if r]
    if not runs:
        return "-"
    keys = ["f1", "accuracy"] if "f1" in runs[0]["dev"] and runs[0]["task"] == "mrpc" else [runs[0]["headline"]]
    if len(runs) == 1:
        return " / ".join(f"{runs[0]['dev'][k]:.4f}" for k in keys)
    parts = [spread([r["dev"][k] for r in runs]) for k in keys]
    return " / ".join(f"{p['mean']:.4f} ± {p['se']:.4f}" for p in parts) + f" ({len(runs)} seeds)"


def _runs(run: Path, task: str, key: str) -> list[dict]:
    """The fine-tuning results of one model on one task: ``task/key/results.json`` or one per ``task/key/seed*/``."""
    paths = [run / task / key / "results.json"] + sorted((run / task / key).glob("seed*/results.json"))
    return [r for r in (_load(p) for p in paths) if r]


def _latency(results: list[dict | None]) -> tuple[str, str, dict]:
    """Median latency b1, b32 (profile_classifier, measured after fine-tuning; the same for every model)."""
    r = next((x for x in results if x and "latency_ms_b1" in x), None)
    if r is None:
        return "-", "-", {}
    return f"{r['latency_ms_b1']:.2f}", f"{r['latency_ms_b32']:.1f}", r


#: run sub-directory -> table column; mrpc-score is the pair regression task benchmarks/pair_regression.py builds
TASKS = {"sst2": "SST-2 acc", "mrpc": "MRPC F1 / acc", "mrpc-score": "MRPC-score Pearson"}


def _teacher_name(path: str) -> str:
    """A teacher's directory name; a regression teacher benchmarks/pair_regression.py made is named after the
    classifier it came from."""
    built = _load(Path(path).parent / "pair_regression.json")
    return f"{Path(built['teacher']).name} margin" if built and built.get("teacher") else Path(path).name


def _columns(run: Path) -> list[str]:
    """The task columns of the run: the tasks it fine-tuned on (SST-2 and MRPC always, as before)."""
    return [t for t in TASKS if t in ("sst2", "mrpc") or (run / t).is_dir()]


def _teachers(run: Path) -> dict[str, list[dict]]:
    """Per task, the distinct teachers the run's students were distilled from, as fine-tuning recorded them
    (results.json: ``teacher``, ``teacher_dev`` and, since it was added, ``teacher_architecture`` / ``teacher_params``)."""
    out: dict[str, list[dict]] = {}
    for task in (t for t in TASKS if (run / t).is_dir()):  # a task the run did not fine-tune on has no column to fill
        seen: dict[tuple, dict] = {}
        for path in sorted((run / task).glob("*/results.json")) + sorted((run / task).glob("*/seed*/results.json")):
            r = _load(path)
            if not r or not r.get("teacher_dev"):
                continue
            key = (r.get("teacher"), json.dumps(r["teacher_dev"], sort_keys=True))
            entry = seen.setdefault(key, {"task": r["task"], "headline": r["headline"], "dev": r["teacher_dev"],
                                          "teacher": r.get("teacher"), "architecture": r.get("teacher_architecture"),
                                          "params": r.get("teacher_params"), "students": []})
            entry["students"].append(str(path.parent.relative_to(run / task)))
        out[task] = list(seen.values())
    return out


def _teacher_row(teachers: dict[str, list[dict]], latency: dict | None, columns: list[str]) -> tuple[list[str], list[str]]:
    """The teacher's table row (or none) and the notes that say which of its values the run does not have."""
    found = [e for entries in teachers.values() for e in entries]
    if not found and not latency:
        return [], ["No teacher row: the run has no teacher_latency.json and no fine-tuning results with the "
                    "teacher's dev metric (results.json `teacher_dev`)."]
    notes = []
    names = sorted({_teacher_name(e["teacher"]) for e in found if e.get("teacher")})
    shapes = sorted({e["architecture"] for e in found if e.get("architecture")})
    sizes = sorted({e["params"] for e in found if e.get("params")})
    cells = []
    for task in columns:
        entries = teachers.get(task, [])
        if len(entries) == 1:
            cells.append(_metric(entries[0]))
        elif entries:
            cells.append("varies")
            notes.append(f"- {task}: the students were distilled from {len(entries)} different teachers or teacher "
                         "dev results: " + "; ".join(f"{_teacher_name(str(e['teacher']))} {_metric(e)} ({', '.join(e['students'])})"
                                                     for e in entries))
        else:
            cells.append("-")
    missing = [t for t, entries in teachers.items() if not entries]
    if missing and found:
        notes.append(f"- teacher dev metric for {', '.join(missing)}: not in the run's fine-tuning results")
    elif not found:
        notes.append("- teacher dev metrics: not in the run's fine-tuning results (results.json `teacher_dev`)")
    if latency:
        params = f"{latency['params'] / 1e6:.2f}M"
        b1, b32 = f"{latency['latency_ms_b1']:.2f}", f"{latency['latency_ms_b32']:.1f}"
    else:
        params = " / ".join(f"{p / 1e6:.2f}M" for p in sizes) or "-"
        b1 = b32 = "-"
        notes.append("- teacher latency: the run has no teacher_latency.json")
    label = "fine-tuned teacher" + (f" ({', '.join(names)})" if names else "")
    row = "| " + " | ".join([label, " / ".join(shapes) or "-", params, b1, b32, "-", "-", *cells]) + " |"
    return [row], notes


def report(run: Path) -> str:
    lines = []
    columns = _columns(run)
    sel = (_load(run / "selection.json") or {}).get("models", [])
    bases: dict[str, list[dict]] = {}
    for b in (_load(run / "baselines.json") or {}).get("models", []):
        bases.setdefault(b["like"], []).append(b)
    teacher = _load(run / "teacher_latency.json")
    lines += ["| model | architecture | params | latency b1 (ms, median) | latency b32 (ms, median) | predicted / measured b1 (ms, min) "
              "| predicted / measured b32 (ms, min) | " + " | ".join(TASKS[t] for t in columns) + " |",
              "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(columns)]
    speed = {}
    for m in sel:
        name = m["name"]
        rows = [(f"NAS-BERT {name}", "`" + m["architecture"].replace("|", "\\|") + "`", m["params"], name, m)]
        for b in bases.get(name, []):
            match = f"{b['match']}-matched" if "match" in b else "hand-designed"
            rows.append((f"BERT {b['layers']}L-H{b['hidden']} ({match})", "-", b["params"], b["name"], b))
        for label, arch, params, key, sel_entry in rows:
            per_task = [_runs(run, task, key) for task in columns]
            b1, b32, lat = _latency([r for runs in per_task for r in runs])
            speed[label] = lat
            pred = []
            for bs in (1, 32):
                e = sel_entry or {}
                if f"predicted_ms_b{bs}" in e and f"measured_ms_b{bs}" in e:
                    p_ms, m_ms = e[f"predicted_ms_b{bs}"], e[f"measured_ms_b{bs}"]
                    parts = (f"; sum of parts {100 * (e[f'sum_of_parts_ms_b{bs}'] / m_ms - 1):+.0f}%"
                             if f"sum_of_parts_ms_b{bs}" in e else "")
                    pred.append(f"{p_ms:.1f} / {m_ms:.1f} ({100 * (p_ms / m_ms - 1):+.0f}%{parts})")
                else:
                    pred.append("-")
            lines.append("| " + " | ".join([label, arch, f"{params / 1e6:.2f}M", b1, b32, *pred, *map(_metric, per_task)]) + " |")
    row, notes = _teacher_row(_teachers(run), teacher, columns)
    lines += row
    built = _load(run / "mrpc-score" / "task" / "pair_regression.json")
    if built:
        notes.append(f"- MRPC-score: the MRPC teacher's logit margin as the target of each MRPC pair "
                     f"(benchmarks/pair_regression.py); word overlap (Jaccard) vs the target on dev: Pearson "
                     f"{built['dev']['word_overlap_pearson']:.3f}")
    if notes:
        lines += [""] + notes
    trained = [b for models in bases.values() for b in models if "exact_loss" in b]
    if trained:  # the architectures compared before any fine-tuning, on the supernet's held-out sentences
        lines += ["", "| model | trained like it | params | predicted b1 (ms) | held-out chained block MSE |", "|---|---|---:|---:|---:|"]
        for m in sel:
            lines.append(f"| NAS-BERT {m['name']} | (selected) | {m['params'] / 1e6:.2f}M | "
                         f"{m.get('predicted_ms_b1', float('nan')):.2f} | {m['exact_loss']:.4f} |")
            for b in bases.get(m["name"], []):
                lines.append(f"| BERT {b['layers']}L-H{b['hidden']} | {b['match']}-matched | {b['params'] / 1e6:.2f}M | "
                             f"{b.get('predicted_ms_b1', float('nan')):.2f} | {b['exact_loss']:.4f} |")
    if teacher:
        lines.append("")
        for label, lat in speed.items():
            if lat:
                lines.append(f"- {label}: {teacher['latency_ms_b1'] / lat['latency_ms_b1']:.1f}x faster than the teacher at b1, "
                             f"{teacher['latency_ms_b32'] / lat['latency_ms_b32']:.1f}x at b32, "
                             f"{teacher['params'] / lat['params']:.1f}x smaller")
    times = run / "stage_times.tsv"
    if times.is_file():
        lines += ["", "| stage | wall time (s) | note |", "|---|---:|---|"]
        for line in times.read_text().splitlines():  # NAME<TAB>SECONDS[<TAB>NOTE]
            parts = line.split("\t")
            if len(parts) >= 2:
                lines.append(f"| {parts[0]} | {parts[1]} | {' '.join(parts[2:])} |")
    runs = sorted(run.glob("*/*/results.json")) + sorted(run.glob("*/*/seed*/results.json"))
    if runs:
        lines += ["", "| fine-tuning run | teacher logits (s) | training (s) |", "|---|---:|---:|"]
        for path in runs:
            r = _load(path)
            lines.append(f"| {path.relative_to(run).parent} | {r['seconds']['teacher_logits']} | {r['seconds']['training']} |")
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


def collect(run: Path) -> dict:
    """The run's numbers as one JSON-able dict (what docs/ keeps beside its tables): selection, baselines, teacher
    latency, the supernet log, and per task and model every fine-tuning run's results without the model files."""
    selection = (_load(run / "selection.json") or {}).get("models", [])
    baselines = (_load(run / "baselines.json") or {}).get("models", [])
    finetune: dict[str, dict[str, list[dict]]] = {}
    for task in TASKS:
        for key in [m["name"] for m in selection + baselines]:
            found = _runs(run, task, key)
            if found:
                finetune.setdefault(task, {})[key] = found
    return {"selection": selection, "baselines": baselines,
            "teacher_latency": _load(run / "teacher_latency.json"), "supernet": _load(run / "supernet" / "log.json"),
            "pair_regression": _load(run / "mrpc-score" / "task" / "pair_regression.json"), "finetune": finetune}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bertnas.nasbert.report", description="tables of a NAS-BERT run")
    ap.add_argument("run", type=Path)
    ap.add_argument("--json", type=Path, help="also write the run's numbers to this JSON file")
    args = ap.parse_args(argv)
    print(report(args.run))
    if args.json:
        from ..utils import write_json

        write_json(args.json, collect(args.run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
