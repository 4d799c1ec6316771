"""From architecture weights to a genotype, with the guard against parameter-free collapse.

AdaBERT's rule: each intermediate node keeps its 2 strongest incoming edges, each with its strongest op
other than ``zero``; the depth is the argmax. An independent reproduction saw the search collapse onto
parameter-free ops (a "bag of embeddings"). The guard: every node keeps at least ``min_parametric`` edges
with a parametric op; where it has fewer, the node's strongest kept edges with a parameter-free op take
their own strongest parametric op instead. The report says whether the unguarded result had collapsed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .genotype import NUM_INPUTS, NUM_NODES, Genotype, edge_index
from .ops import PARAMETER_FREE, PRIMITIVES

EDGES_PER_NODE = 2
_ZERO = PRIMITIVES.index("zero")
_PARAMETRIC = [i for i, name in enumerate(PRIMITIVES) if name not in PARAMETER_FREE]


@dataclass
class CollapseReport:
    """What the search weights say about collapse into parameter-free ops."""

    parameter_free_mass: list[float]  # per node: mean probability of parameter-free ops on its edges
    unguarded: str  # the genotype the plain AdaBERT rule gives
    collapsed_nodes: list[int]  # nodes whose unguarded edges are all parameter-free
    guard_applied: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def collapsed(self) -> bool:
        return len(self.collapsed_nodes) == NUM_NODES

    def to_dict(self) -> dict:
        return {
            "parameter_free_mass": self.parameter_free_mass,
            "unguarded_genotype": self.unguarded,
            "collapsed_nodes": self.collapsed_nodes,
            "collapsed": self.collapsed,
            "guard_applied": self.guard_applied,
            "warnings": self.warnings,
        }


def derive_genotype(
    alpha: torch.Tensor, depth_logits: torch.Tensor, min_parametric: int = 1
) -> tuple[Genotype, CollapseReport]:
    """Derive the genotype from op logits (9, 10) and depth logits (K_max,); see the module docstring."""
    if not 0 <= min_parametric <= EDGES_PER_NODE:
        raise ValueError(f"min_parametric must be in 0..{EDGES_PER_NODE}, got {min_parametric}")
    probs = torch.softmax(alpha.detach().float().cpu(), -1)
    depth = int(depth_logits.detach().argmax()) + 1
    free_cols = [i for i, name in enumerate(PRIMITIVES) if name in PARAMETER_FREE]

    unguarded_edges, guarded_edges, masses, collapsed = [], [], [], []
    guard_applied = False
    for node in range(NUM_NODES):
        rows = {src: probs[edge_index(node, src)] for src in range(NUM_INPUTS + node)}
        masses.append(float(torch.stack([rows[s][free_cols].sum() for s in rows]).mean()))

        def best(src: int, cols: list[int]) -> tuple[float, int]:
            p = rows[src][cols]
            return float(p.max()), cols[int(p.argmax())]

        non_zero = [i for i in range(len(PRIMITIVES)) if i != _ZERO]
        strength = {src: best(src, non_zero) for src in rows}
        kept = sorted(rows, key=lambda s: -strength[s][0])[:EDGES_PER_NODE]
        chosen = {src: strength[src][1] for src in kept}
        unguarded_edges += [(node, src, PRIMITIVES[op]) for src, op in chosen.items()]
        if all(PRIMITIVES[op] in PARAMETER_FREE for op in chosen.values()):
            collapsed.append(node)

        n_param = sum(PRIMITIVES[op] not in PARAMETER_FREE for op in chosen.values())
        for src in kept:  # strongest first
            if n_param >= min_parametric:
                break
            if PRIMITIVES[chosen[src]] in PARAMETER_FREE:
                chosen[src] = best(src, _PARAMETRIC)[1]
                n_param += 1
                guard_applied = True
        guarded_edges += [(node, src, PRIMITIVES[op]) for src, op in chosen.items()]

    unguarded = Genotype(edges=tuple(sorted(unguarded_edges)), depth=depth)
    genotype = Genotype(edges=tuple(sorted(guarded_edges)), depth=depth)
    report = CollapseReport(masses, str(unguarded), collapsed, guard_applied)
    if report.collapsed:
        report.warnings.append(
            "search collapsed: every node's strongest edges are parameter-free ops (a bag of embeddings)"
            + ("; the guard replaced them with parametric ops" if guard_applied else "")
        )
    elif collapsed:
        report.warnings.append(f"nodes {collapsed} chose only parameter-free ops before the guard")
    return genotype, report


DECIDED_RATIO = 2.0
"""An edge is decided when its top op has at least twice the probability of the runner-up (issue #18's bar)."""


def decisiveness(alpha: torch.Tensor, depth_logits: torch.Tensor) -> dict:
    """How firmly the architecture weights choose: per edge the top op's probability over the runner-up's,
    how many edges pass :data:`DECIDED_RATIO`, the spread of op probabilities and the likeliest depth's
    probability. A flat search (every op near 1/10) leaves the derived genotype to tiny margins."""
    probs = torch.softmax(alpha.detach().float().cpu(), -1)
    top2 = probs.topk(2, -1).values
    ratios = (top2[:, 0] / top2[:, 1].clamp_min(1e-12)).tolist()
    depth = torch.softmax(depth_logits.detach().float().cpu(), -1)
    return {
        "edge_ratios": [round(r, 3) for r in ratios],
        "edges_decided": int(sum(r >= DECIDED_RATIO for r in ratios)),
        "op_prob_min": round(float(probs.min()), 4), "op_prob_max": round(float(probs.max()), 4),
        "depth_max_prob": round(float(depth.max()), 4),
    }
