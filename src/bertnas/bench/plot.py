"""pareto.png: dev metric against latency at batch 32 (batch 1 when ``--budgets-ms`` are at batch 1) for every
row, point area by parameter count, with the teacher and a BERT-base-sized model (and the budgets) as reference
lines. Random genotypes form a cloud (small grey points, named
only when few) under the searched points; with more than one seed every point carries an error bar of one
standard error of its mean. Agg canvas on a standalone Figure (no display, no
pyplot state), written through a temp file and a rename (``utils.atomic_save_png``)."""
from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..utils import atomic_save_png

COLORS = {"teacher": "#2c3e50", "adabert": "#c0392b", "random": "#95a5a6", "hand-designed": "#2471a3",
          "ablation": "#d68910"}


def plot_pareto(r: dict, path: str | os.PathLike[str]) -> Path:
    fig = Figure(figsize=(9.5, 6.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    biggest = max(row["params"] for row in r["rows"])
    randoms = sum(row["group"] == "random" for row in r["rows"])
    seen = set()
    budgets = r["settings"]["bench"].get("budgets_ms") or ()
    batch = 1 if budgets and r["settings"]["run"].get("latency_table_batch") == 1 else 32  # the budgets' batch
    at = f"latency_b{batch}"
    for row in r["rows"]:
        x, y = row[at]["median_ms"], row["metric"]
        cloud = row["group"] == "random"
        size = 30 + (150 if cloud else 600) * row["params"] / biggest
        color = COLORS.get(row["group"], "#7d3c98")
        label = row["group"] if row["group"] not in seen else None
        seen.add(row["group"])
        if row.get("metric_se"):
            ax.errorbar([x], [y], yerr=[row["metric_se"]], fmt="none", ecolor=color, elinewidth=1, capsize=3,
                        zorder=2 if cloud else 4)
        ax.scatter([x], [y], s=size, color=color, alpha=0.5 if cloud else 0.8, edgecolor="black",
                   linewidth=0.4 if cloud else 0.6, label=label, zorder=2 if cloud else 5,
                   marker="*" if row["group"] == "adabert" else "o")
        if not cloud or randoms <= 6:
            ax.annotate(row["name"], (x, y), xytext=(6, 4), textcoords="offset points", fontsize=8)
    teacher = next((row for row in r["rows"] if row["group"] == "teacher"), None)
    if teacher is not None:
        ax.axhline(teacher["metric"], color=COLORS["teacher"], linestyle="--", linewidth=1,
                   label=f"teacher dev {r['metric']} ({teacher['metric']:.3f})")
        ax.axvline(teacher[at]["median_ms"], color=COLORS["teacher"], linestyle=":", linewidth=1,
                   label="teacher latency")
    if "bert_base" in r:
        ax.axvline(r["bert_base"][at]["median_ms"], color="#7d3c98", linestyle="-.", linewidth=1,
                   label=f"BERT-base size ({r['bert_base']['params'] / 1e6:.0f}M) latency")
    for i, budget in enumerate(budgets):  # predicted-latency budgets, drawn where measured latency would meet them
        ax.axvline(budget, color=COLORS["adabert"], linestyle=(0, (2, 3)), linewidth=1,
                   label="latency budgets (predicted)" if i == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel(f"latency at batch {batch}, sequence {r['measurement']['seq_len']} (ms, median, log scale)")
    ax.set_ylabel(f"dev {r['metric']}")
    seeds = f"; mean ± se of {r['seeds']} seeds" if r.get("seeds", 1) > 1 else ""
    ax.set_title(f"bertnas bench, {r['task']}: quality vs speed (point area ~ parameters{seeds})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return atomic_save_png(fig, path)
