"""bench.json's content and the one table of bench.md, with the comparisons the issue asks to state."""
from __future__ import annotations

import statistics
from typing import Any

from ..config import RunConfig
from ..data.examples import TaskSpec
from ..measure.profile import hardware_info
from .settings import BenchSettings


def _second_metric(spec: TaskSpec) -> str | None:
    others = [m for m in spec.metrics if m != spec.headline]
    return others[0] if others else None


def assemble(spec: TaskSpec, records: list[dict], measured: dict[str, dict], cfg: RunConfig,
             settings: BenchSettings, probe_seconds: float) -> dict[str, Any]:
    """One entry per row (records in row order, measurements by name), the random-search summary and findings."""
    h, second = spec.headline, _second_metric(spec)
    rows = []
    for rec in records:
        m = measured[rec["name"]]
        rows.append({
            "name": rec["name"], "group": rec["group"], "label": rec["label"],
            "metric": rec["dev"][h], "second_metric": rec["dev"].get(second) if second else None, "dev": rec["dev"],
            "params": m["params"], "params_no_emb": m["params_no_emb"], "flops": m["flops"],
            "latency_b1": m["latency_b1"], "latency_b32": m["latency_b32"],
            "search_seconds": rec.get("search_seconds"), "train_seconds": rec.get("train_seconds"),
            "architecture": rec.get("architecture", ""),
            **{k: rec[k] for k in ("retrain_epochs", "search_epochs", "retrain_lr") if k in rec},
        })
    results: dict[str, Any] = {
        "task": spec.name, "metric": h, "second_metric": second, "rows": rows,
        "teacher_probe_seconds": probe_seconds,
        "measurement": {"seq_len": cfg.eval_seq_len, "threads": cfg.latency_threads, "repeats": cfg.latency_repeats,
                        "statistic": "median, interquartile range", "interleaved": True, "device": "cpu"},
        "settings": {"run": cfg.to_dict(), "bench": settings.to_dict()},
        "hardware": hardware_info(),
    }
    if "bert_base" in measured:
        b = measured["bert_base"]
        results["bert_base"] = {k: b[k] for k in ("params", "params_no_emb", "flops", "latency_b1", "latency_b32")}
    randoms = [r for r in rows if r["group"] == "random"]
    if randoms:
        best = max(randoms, key=lambda r: r["metric"])
        results["random"] = {"n": len(randoms), "median": statistics.median(r["metric"] for r in randoms),
                             "best": best["metric"], "best_row": best["name"]}
    results["findings"] = findings(results)
    return results


def findings(r: dict) -> list[str]:
    """Plain statements of the comparisons the bench exists for (searched vs random, hand-designed, ablations)."""
    by = {row["name"]: row for row in r["rows"]}
    full = by.get("full")
    if full is None:
        return ["no full AdaBERT row in this bench: nothing to compare against"]
    m, out = r["metric"], []

    def versus(value: float, what: str) -> str:
        diff = full["metric"] - value
        verdict = "beats" if diff > 0 else "ties" if diff == 0 else "does NOT beat"
        return f"AdaBERT ({full['metric']:.4f}) {verdict} {what} ({value:.4f}; {diff:+.4f} {m})"

    if "random" in r:
        s = r["random"]
        out.append(versus(s["median"], f"the random-search median of {s['n']}"))
        out.append(versus(s["best"], f"the best random genotype ({s['best_row']})"))
    for row in r["rows"]:
        if row["group"] in ("hand-designed", "ablation"):
            out.append(versus(row["metric"], f"{row['label']} [{row['params'] / 1e6:.2f}M params]"))
    return out


def _ms(stats: dict) -> str:
    fmt = (lambda x: f"{x:.2f}") if stats["median_ms"] < 100 else (lambda x: f"{x:.0f}")
    return f"{fmt(stats['median_ms'])} ({fmt(stats['p25_ms'])}-{fmt(stats['p75_ms'])})"


def _code(text: str) -> str:
    """A code span that survives a Markdown table: genotype strings contain '|'."""
    return f"`{text}`".replace("|", "\\|") if text else ""


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def bench_table(r: dict) -> str:
    """The Markdown table of every row, then the random-search summary and the findings."""
    m, second = r["metric"], r["second_metric"]
    meas = r["measurement"]
    head = ["row", "group", f"dev {m}"] + ([f"dev {second}"] if second else []) + [
        "params", "params w/o emb.", "GFLOPs (b1)", "latency b1 ms", "latency b32 ms", "search s", "train s",
        "architecture"]
    lines = [f"Task {r['task']}: dev {m}; latency at sequence {meas['seq_len']}, {meas['threads']} threads, median "
             f"(interquartile range) of {meas['repeats']} interleaved repeats, all models in one process.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 3) + "---|"]

    def add(name: str, group: str, metric, sec, row: dict) -> None:
        cells = [name, group, "-" if metric is None else f"{metric:.4f}"]
        if second:
            cells.append("-" if sec is None else f"{sec:.4f}")
        cells += [f"{row['params'] / 1e6:.2f}M", f"{row['params_no_emb'] / 1e6:.3f}M", f"{row['flops'] / 1e9:.3f}",
                  _ms(row["latency_b1"]), _ms(row["latency_b32"]), _s(row.get("search_seconds")),
                  _s(row.get("train_seconds")), _code(row.get("architecture", ""))]
        lines.append("| " + " | ".join(cells) + " |")

    for row in r["rows"]:
        add(row["name"], row["group"], row["metric"], row["second_metric"], row)
    if "bert_base" in r:
        add("bert_base", "reference", None, None, {**r["bert_base"], "architecture": "BERT-base size, random weights"})
    lines.append("")
    if "random" in r:
        s = r["random"]
        lines.append(f"Random search ({s['n']} genotypes): median {m} {s['median']:.4f}, best {s['best']:.4f} "
                     f"({s['best_row']}).")
    lines.append(f"Teacher knowledge + probes (shared by every row, run once): {r['teacher_probe_seconds']:.0f} s.")
    lines += [f"- {f}" for f in r["findings"]]
    return "\n".join(lines)
