"""What a finished run reports: results.json's content and the tables printed for people.

Kept apart from the stages so that the CLI, the benchmarks and the Python API print the same numbers.
"""
from __future__ import annotations

from typing import Any

from ..data.examples import TaskSpec
from ..utils import run_metadata

_PROFILE_KEYS = ("params", "flops", "latency_ms_b1", "latency_ms_b32")


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


def assemble_results(
    spec: TaskSpec,
    teacher_dev: dict[str, float],
    student_dev: dict[str, float],
    teacher_profile: dict[str, Any],
    student_profile: dict[str, Any],
    bert_base_profile: dict[str, Any] | None,
    floors: dict[str, dict[str, float]],
    teacher_source: str,
    architecture: Any,
    genotype: dict,
    extra_dev: dict[str, dict[str, float]],
    measurement: dict[str, Any],
) -> dict[str, Any]:
    """results.json: teacher and student side by side, speedups, compression, baselines and the sanity floor."""
    h = spec.headline
    t, s = teacher_profile, student_profile
    results: dict[str, Any] = {
        "task": spec.name, "metric": h,
        "teacher": {**{k: t[k] for k in _PROFILE_KEYS}, "metric": teacher_dev[h], "dev": teacher_dev,
                    "source": teacher_source},
        "student": {**{k: s[k] for k in _PROFILE_KEYS}, "metric": student_dev[h], "dev": student_dev,
                    "architecture": str(architecture), "genotype": genotype,
                    **({"extra_dev": extra_dev} if extra_dev else {})},
        "speedup_b1": _ratio(t["latency_ms_b1"], s["latency_ms_b1"]),
        "speedup_b32": _ratio(t["latency_ms_b32"], s["latency_ms_b32"]),
        "compression": _ratio(t["params"], s["params"]),
        "baselines": floors,
        "measurement": measurement,
    }
    floor_name = "word_overlap" if "word_overlap" in floors else "majority"
    floor = floors[floor_name][h]
    results["sanity"] = {"baseline": floor_name, "baseline_metric": floor,
                         "student_beats_baseline": bool(student_dev[h] > floor)}
    if bert_base_profile is not None:
        b = bert_base_profile
        results["bert_base"] = {k: b[k] for k in _PROFILE_KEYS}
        results["vs_bert_base"] = {"speedup_b1": _ratio(b["latency_ms_b1"], s["latency_ms_b1"]),
                                   "speedup_b32": _ratio(b["latency_ms_b32"], s["latency_ms_b32"]),
                                   "compression": _ratio(b["params"], s["params"])}
    results["metadata"] = run_metadata()
    return results


def add_onnx_latency(results: dict[str, Any], onnx: dict[str, Any]) -> None:
    """The student's onnxruntime latency beside its PyTorch latency: ``student.latency_onnx_ms`` {b1, b32},
    ``student.onnx_speedup`` (PyTorch ms / onnxruntime ms) and how it was measured in ``measurement.onnx``."""
    s = results["student"]
    s["latency_onnx_ms"] = {"b1": onnx["latency_ms_b1"], "b32": onnx["latency_ms_b32"]}
    s["onnx_speedup"] = {"b1": _ratio(s["latency_ms_b1"], onnx["latency_ms_b1"]),
                         "b32": _ratio(s["latency_ms_b32"], onnx["latency_ms_b32"])}
    results["measurement"]["onnx"] = {k: onnx[k] for k in ("runtime", "exporter", "max_abs_diff") if k in onnx}


def _fmt_ms(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def results_table(r: dict) -> str:
    """A Markdown table of teacher vs student (and BERT-base if measured), with the baselines below it."""
    m = r["metric"]
    rows = [("teacher", r["teacher"]), ("student (AdaBERT)", r["student"])]
    if "bert_base" in r:
        rows.append(("BERT-base size (random weights)", {**r["bert_base"], "metric": None}))
    lines = [f"Task {r['task']}: dev {m}, latency at sequence {r['measurement']['seq_len']}, "
             f"{r['measurement']['threads']} threads, median of {r['measurement']['repeats']}",
             "", f"| model | params | GFLOPs (b1) | dev {m} | latency b1 (ms) | latency b32 (ms) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, d in rows:
        metric = "-" if d.get("metric") is None else f"{d['metric']:.4f}"
        lines.append(f"| {name} | {d['params'] / 1e6:.2f}M | {d['flops'] / 1e9:.3f} | {metric} | "
                     f"{_fmt_ms(d['latency_ms_b1'])} | {_fmt_ms(d['latency_ms_b32'])} |")
    onnx = r["student"].get("latency_onnx_ms")
    if onnx:
        lines.append(f"| student, onnxruntime | - | - | - | {_fmt_ms(onnx['b1'])} | {_fmt_ms(onnx['b32'])} |")
    for name, metrics in r.get("baselines", {}).items():
        lines.append(f"| baseline: {name.replace('_', ' ')} | - | - | {metrics[m]:.4f} | - | - |")
    lines += ["", f"Student vs teacher: {r['speedup_b1']}x faster (b1), {r['speedup_b32']}x faster (b32), "
                  f"{r['compression']}x smaller."]
    if onnx:
        sp = r["student"]["onnx_speedup"]
        lines.append(f"Student in onnxruntime vs in PyTorch: {sp['b1']}x faster (b1), {sp['b32']}x faster (b32).")
    if "vs_bert_base" in r:
        v = r["vs_bert_base"]
        lines.append(f"Student vs BERT-base size: {v['speedup_b1']}x faster (b1), {v['speedup_b32']}x faster (b32), "
                     f"{v['compression']}x smaller.")
    if "sanity" in r:
        sanity = r["sanity"]
        verdict = "beats" if sanity["student_beats_baseline"] else "does NOT beat"
        lines.append(f"The student {verdict} the {sanity['baseline'].replace('_', ' ')} baseline "
                     f"({sanity['baseline_metric']:.4f}).")
    lines.append(f"Architecture: {r['student']['architecture']}")
    return "\n".join(lines)


def probes_table(info: dict) -> str:
    """The teacher's and each layer probe's dev metric, as printed after `bertnas probe`."""
    h = info["headline"]
    lines = [f"teacher dev {h}: {info['teacher_dev'][h]:.4f}"]
    lines += [f"  probe {p['name']:<12} dev {h}: {p[h]:.4f}" for p in info["probes_dev"]]
    if info.get("augment_examples"):
        lines.append(f"augmentation: {info['augment_examples']} teacher-labelled copies")
    return "\n".join(lines)
