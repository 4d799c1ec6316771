"""A picture of the searched architecture, so a person can see what the search chose and how sure it was.

The cell graph is drawn with plain matplotlib patches (no graphviz: one less system dependency). Optional
panels show the final op probabilities per edge (a heatmap, kept choices outlined) and the depth
distribution (a bar chart, chosen K highlighted). Rendering uses the Agg canvas of a standalone
:class:`~matplotlib.figure.Figure`, never pyplot, so it needs no display and leaves no global state.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, Rectangle

from ..errors import BertnasError
from ..utils import atomic_save_png
from .genotype import EDGES, NUM_EDGES, NUM_INPUTS, NUM_NODES, Genotype
from .ops import PARAMETER_FREE, PRIMITIVES

PARAMETRIC_COLOR = "#c0392b"
PARAMETER_FREE_COLOR = "#2471a3"
ATTENTION_COLOR = "#7f8c8d"

# Graph layout (data units, equal aspect): inputs on the left, intermediate nodes 0 (bottom), 1 (right),
# 2 (top), output further right. The five cell nodes form a convex pentagon, so a straight edge between two
# of them never passes through a third (every edge clears every other node by >= 1.7 units).
_NODE_POS: dict[int | str, tuple[float, float]] = {
    0: (0.0, 3.4),  # c_{k-2}
    1: (0.0, 1.0),  # c_{k-1}
    2: (3.6, 0.0),  # node 0
    3: (5.4, 2.2),  # node 1
    4: (3.6, 4.4),  # node 2
    "out": (8.4, 2.2),
}
_NODE_RADIUS = 0.45
_LABEL_GAP_PX = 12  # free margin around a label, so two labels never read as one
_LABEL_SPOTS = (0.5, 0.4, 0.6, 0.32, 0.68, 0.25, 0.75, 0.8, 0.2)  # where along an edge its op label may sit


def _source_name(source: int) -> str:
    if source == 0:
        return "c_{k-2}"
    if source == 1:
        return "c_{k-1}"
    return f"n{source - NUM_INPUTS}"


def edge_label(node: int, source: int) -> str:
    """Readable name of the edge from ``source`` into intermediate node ``node``, e.g. ``c_{k-1}->n1``."""
    return f"{_source_name(source)}->n{node}"


def _op_color(op: str) -> str:
    return PARAMETER_FREE_COLOR if op in PARAMETER_FREE else PARAMETRIC_COLOR


def _draw_node(ax, key: int | str, label: str, face: str) -> None:
    x, y = _NODE_POS[key]
    ax.add_patch(Circle((x, y), _NODE_RADIUS, facecolor=face, edgecolor="black", linewidth=1.4, zorder=3))
    ax.text(x, y, label, ha="center", va="center", fontsize=13, zorder=4)


def _trimmed(src: tuple[float, float], dst: tuple[float, float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Segment between two node circles' rims, so arrow heads touch the circle whatever the zoom."""
    (x1, y1), (x2, y2) = src, dst
    d = math.hypot(x2 - x1, y2 - y1)
    ux, uy = (x2 - x1) / d, (y2 - y1) / d
    r = _NODE_RADIUS + 0.04
    return (x1 + r * ux, y1 + r * uy), (x2 - r * ux, y2 - r * uy)


def _arrow(ax, src, dst, color: str, lw: float, **kw) -> tuple[tuple[float, float], tuple[float, float]]:
    a, b = _trimmed(src, dst)
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=16, color=color, linewidth=lw,
                                 shrinkA=0, shrinkB=0, **kw))
    return a, b


def _draw_cell(ax, genotype: Genotype) -> tuple[list, list]:
    """Draw nodes and arrows; return (op labels, all edge segments) for :func:`_place_labels` to use later."""
    ax.set_aspect("equal")
    ax.axis("off")
    _draw_node(ax, 0, "$c_{k-2}$", "#d5f5e3")
    _draw_node(ax, 1, "$c_{k-1}$", "#d5f5e3")
    for j in range(NUM_NODES):
        _draw_node(ax, NUM_INPUTS + j, str(j), "#fdebd0")
    _draw_node(ax, "out", "$c_k$", "#e8daef")

    out = _NODE_POS["out"]
    segments = []
    for j in range(NUM_NODES):
        segments.append(_arrow(ax, _NODE_POS[NUM_INPUTS + j], out, ATTENTION_COLOR, 1.3, linestyle=(0, (4, 3)), zorder=1))
    ax.text(out[0], out[1] - _NODE_RADIUS - 0.2, "attention-\nweighted sum", ha="center", va="top",
            fontsize=9, color=ATTENTION_COLOR, style="italic")

    labels = []
    for node, source, op in genotype.edges:
        color = _op_color(op)
        a, b = _arrow(ax, _NODE_POS[source], _NODE_POS[NUM_INPUTS + node], color, 2.0, zorder=2)
        labels.append((op, color, a, b))
        segments.append((a, b))

    ax.set_xlim(-0.7, 9.1)
    ax.set_ylim(-1.5, 5.0)
    handles = [
        Line2D([], [], color=PARAMETRIC_COLOR, lw=2.0, label="parametric op"),
        Line2D([], [], color=PARAMETER_FREE_COLOR, lw=2.0, label="parameter-free op"),
        Line2D([], [], color=ATTENTION_COLOR, lw=1.3, ls=(0, (4, 3)), label="into output"),
    ]
    ax.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False, bbox_to_anchor=(0.5, -0.02))
    ax.set_title("derived cell", fontsize=12)
    return labels, segments


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _segment_hits(box, a, b, samples: int = 48) -> bool:
    return any(box.contains(a[0] + (b[0] - a[0]) * i / samples, a[1] + (b[1] - a[1]) * i / samples)
               for i in range(samples + 1))


def _place_labels(fig: Figure, ax, labels, segments) -> None:
    """Put each op label on its edge where it covers no node, no earlier label and no other edge.

    A label sitting on a crossing would be ambiguous, so other edges count as obstacles too; when no spot
    is free the least-covered one wins. Runs after a first draw so the axes have their final size: text
    extents are in points, the graph is in data units, and only the finished layout relates the two.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    px_segments = [(tuple(to_px(a)), tuple(to_px(b))) for a, b in segments]
    taken = [p.get_window_extent(renderer).expanded(1.05, 1.05) for p in ax.patches if isinstance(p, Circle)]
    for op, color, (x1, y1), (x2, y2) in labels:
        text = ax.text(0, 0, op, ha="center", va="center", fontsize=10, color=color, zorder=5,
                       bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor=color, linewidth=0.8))
        text.set_in_layout(False)
        own = (tuple(to_px((x1, y1))), tuple(to_px((x2, y2))))
        best = None
        for t in _LABEL_SPOTS:
            text.set_position((x1 + t * (x2 - x1), y1 + t * (y2 - y1)))
            box = text.get_window_extent(renderer).padded(_LABEL_GAP_PX)
            area = sum(_overlap(box, other) for other in taken)
            crossings = sum(_segment_hits(box, a, b) for a, b in px_segments if (a, b) != own)
            clash = (area > 0) * 2 + crossings, area
            if best is None or clash < best[0]:
                best = (clash, t, box)
            if clash == (0, 0.0):
                break
        _, t, box = best
        text.set_position((x1 + t * (x2 - x1), y1 + t * (y2 - y1)))
        taken.append(box)


def _draw_op_probs(fig: Figure, ax, genotype: Genotype, op_probs: Sequence[Sequence[float]]) -> None:
    im = ax.imshow(op_probs, cmap="Greens", vmin=0.0, vmax=max(1e-9, max(max(r) for r in op_probs)), aspect="auto")
    ax.set_xticks(range(len(PRIMITIVES)))
    ax.set_xticklabels(PRIMITIVES, rotation=45, ha="right", fontsize=9)
    ax.set_yticks(range(NUM_EDGES))
    ax.set_yticklabels([edge_label(n, s) for n, s in EDGES], fontsize=9)
    ax.set_xlabel("operation")
    ax.set_ylabel("edge (source -> node)")
    peak = max(max(r) for r in op_probs)
    for i, row in enumerate(op_probs):
        for j, p in enumerate(row):
            ax.text(j, i, f"{p:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if p > 0.6 * peak else "black")
    kept = {(n, s): op for n, s, op in genotype.edges}
    for i, (n, s) in enumerate(EDGES):
        if (n, s) in kept:
            j = PRIMITIVES.index(kept[(n, s)])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.0))
    ax.set_title("op probabilities (kept choice outlined)", fontsize=12)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)


def _draw_depth_probs(ax, genotype: Genotype, depth_probs: Sequence[float]) -> None:
    ks = list(range(1, len(depth_probs) + 1))
    colors = [PARAMETRIC_COLOR if k == genotype.depth else "#bdc3c7" for k in ks]
    ax.bar(ks, depth_probs, color=colors, edgecolor="black", linewidth=0.6)
    ax.set_xticks(ks)
    ax.set_xlabel("K (stacked cells)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, max(1e-9, max(depth_probs)) * 1.18)
    chosen = depth_probs[genotype.depth - 1]
    ax.annotate(f"K = {genotype.depth}", (genotype.depth, chosen), xytext=(0, 4), textcoords="offset points",
                ha="center", va="bottom", fontsize=9, color=PARAMETRIC_COLOR)
    ax.set_title("depth distribution", fontsize=12)


def _check_probs(genotype: Genotype, op_probs, depth_probs) -> tuple[list[list[float]] | None, list[float] | None]:
    if op_probs is not None:
        try:
            op_probs = [[float(p) for p in row] for row in op_probs]
        except (TypeError, ValueError) as exc:
            raise BertnasError(f"op_probs must be numbers, {NUM_EDGES} rows x {len(PRIMITIVES)} columns ({exc})") from None
        if len(op_probs) != NUM_EDGES or any(len(r) != len(PRIMITIVES) for r in op_probs):
            shape = f"{len(op_probs)} rows of lengths {sorted({len(r) for r in op_probs})}"
            raise BertnasError(f"op_probs must be {NUM_EDGES} edges x {len(PRIMITIVES)} ops (EDGES x PRIMITIVES order), got {shape}")
    if depth_probs is not None:
        try:
            depth_probs = [float(p) for p in depth_probs]
        except (TypeError, ValueError) as exc:
            raise BertnasError(f"depth_probs must be a list of numbers, one per K ({exc})") from None
        if len(depth_probs) < genotype.depth:
            raise BertnasError(
                f"depth_probs has {len(depth_probs)} entries but the genotype has K = {genotype.depth}; "
                "pass one probability per K from 1 to K_max"
            )
    return op_probs, depth_probs


def plot_architecture(
    genotype: Genotype,
    path: str | os.PathLike[str],
    op_probs: Sequence[Sequence[float]] | None = None,
    depth_probs: Sequence[float] | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG of the derived cell (plus op-probability heatmap and depth bars if given); return its path.

    The file is written to a temporary name in the same directory and moved into place, so a reader never
    sees a half-written PNG.
    """
    op_probs, depth_probs = _check_probs(genotype, op_probs, depth_probs)
    widths = [7.5] + ([6.2] if op_probs is not None else []) + ([3.4] if depth_probs is not None else [])
    height = 6.0 if op_probs is not None else 5.4
    fig = Figure(figsize=(sum(widths) + 0.6, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(widths), gridspec_kw={"width_ratios": widths}, squeeze=False)[0]
    labels = _draw_cell(axes[0], genotype)
    i = 1
    if op_probs is not None:
        _draw_op_probs(fig, axes[i], genotype, op_probs)
        i += 1
    if depth_probs is not None:
        _draw_depth_probs(axes[i], genotype, depth_probs)
    suffix = f"K = {genotype.depth} stacked cell{'s' if genotype.depth != 1 else ''}"
    fig.suptitle(f"{title} ({suffix})" if title else suffix, fontsize=14)
    _place_labels(fig, axes[0], *labels)
    return atomic_save_png(fig, path)
