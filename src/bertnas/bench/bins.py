"""Random genotypes per cost bin: a random baseline of the searched student's own cost class.

A uniform draw from the space lands mostly on mid-sized students; the searched student (pushed by the efficiency
loss) is often among the cheapest. Comparing it with random genotypes of its own cost (Yang et al., ICLR 2020,
"NAS evaluation is frustratingly hard") separates what the search learned from what its size buys.

A genotype's cost is what the search prices: with ``--efficiency latency`` the predicted latency of the op
table (``LatencyCosts.predict``), otherwise the FLOPs of its cells from the per-op FLOPs of ``adabert.costs``
(embeddings and classifier are the same for every genotype, so they are left out). The bins are quantiles of
the cost over uniform draws from the space, so each holds an equal share of the space.
"""
from __future__ import annotations

import bisect
import itertools
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ..adabert.genotype import Genotype
from ..config import RunConfig
from .students import genotype_draws

logger = logging.getLogger("bertnas")

REFERENCE_DRAWS = 1000
"""Uniform draws the bin edges are the quantiles of."""
ATTEMPTS_PER_GENOTYPE = 200
"""Draws allowed per genotype wanted before a bin is left short."""


@dataclass(frozen=True)
class GenotypeCost:
    """A genotype's cost as the search prices it, and what that number is."""

    fn: Callable[[Genotype], float]
    basis: str  # e.g. "predicted latency (batch 32, sequence 128)"
    unit: str  # ms or MFLOPs

    def __call__(self, genotype: Genotype) -> float:
        return float(self.fn(genotype))


def genotype_cost(cfg: RunConfig) -> GenotypeCost:
    """The predicted latency (``--efficiency latency``) or the cells' FLOPs (otherwise) of a genotype."""
    if cfg.efficiency == "latency":
        from ..adabert.searcher import latency_costs

        lat = latency_costs(cfg)  # the search's own table (measured once on this CPU, then cached)
        return GenotypeCost(lat.predict, f"predicted latency (batch {lat.batch}, sequence {lat.seq_len})", "ms")
    from ..adabert.costs import measure_op_costs

    flops = {op: c["flops"] for op, c in measure_op_costs(cfg.hidden_size, cfg.eval_seq_len).items()}
    return GenotypeCost(lambda g: g.depth * sum(flops[op] for _, _, op in g.edges) / 1e6,
                        f"FLOPs of the cells (batch 1, sequence {cfg.eval_seq_len})", "MFLOPs")


@dataclass(frozen=True)
class CostBins:
    """``len(edges) + 1`` bins of genotype cost, numbered from 1 (cheapest)."""

    edges: tuple[float, ...]  # inner edges, ascending; bin b holds edges[b-2] < cost <= edges[b-1]
    basis: str
    unit: str
    method: str = f"quantiles of the cost of {REFERENCE_DRAWS} uniform draws; bin 1 is the cheapest"

    @property
    def count(self) -> int:
        return len(self.edges) + 1

    def bin_of(self, cost: float) -> int:
        return bisect.bisect_left(self.edges, cost) + 1  # a cost at an edge (a budget met exactly) is in the lower bin

    def bounds(self, b: int) -> tuple[float | None, float | None]:
        """(low, high) of bin ``b``; None where the bin is open."""
        return (self.edges[b - 2] if b > 1 else None, self.edges[b - 1] if b < self.count else None)

    def to_dict(self) -> dict:
        return {"count": self.count, "edges": list(self.edges), "basis": self.basis, "unit": self.unit,
                "method": self.method}


def cost_bins(cost: GenotypeCost, count: int, k_max: int, min_parametric: int, seed: int) -> CostBins:
    """``count`` equal-share bins of the space's cost (quantiles of seeded uniform draws)."""
    draws = itertools.islice(genotype_draws(k_max, min_parametric, seed * 1000 + 7919), REFERENCE_DRAWS)
    costs = [cost(g) for g in draws]
    edges = statistics.quantiles(costs, n=count, method="inclusive") if count > 1 else []
    return CostBins(tuple(edges), cost.basis, cost.unit)


def budget_bins(cost: GenotypeCost, budgets_ms: tuple[float, ...]) -> CostBins:
    """Bins whose edges are the latency budgets: bin b holds the genotypes between budget b - 1 and budget b,
    the students a search under budget b competes with; the last bin (above every budget) is left undrawn."""
    return CostBins(tuple(budgets_ms), cost.basis, cost.unit, method="edges at the latency budgets (--budgets-ms)")


def draw_per_bin(bins: CostBins, cost: GenotypeCost, per_bin: int, k_max: int, min_parametric: int,
                 seed: int, wanted: int | None = None) -> list[list[Genotype]]:
    """Seeded uniform draws kept until each of the first ``wanted`` bins (default: all) holds ``per_bin``
    distinct genotypes (rejection sampling, capped at :data:`ATTEMPTS_PER_GENOTYPE` draws per genotype wanted; a
    bin left short is logged)."""
    wanted = bins.count if wanted is None else wanted
    held: list[list[Genotype]] = [[] for _ in range(wanted)]
    draws = genotype_draws(k_max, min_parametric, seed * 1000 + 15485863)
    attempts = ATTEMPTS_PER_GENOTYPE * per_bin * wanted
    for genotype in itertools.islice(draws, attempts):
        if all(len(h) >= per_bin for h in held):
            break
        b = bins.bin_of(cost(genotype))
        if b > wanted:
            continue
        slot = held[b - 1]
        if len(slot) < per_bin and genotype not in slot:
            slot.append(genotype)
    for b, h in enumerate(held, 1):
        if len(h) < per_bin:
            logger.warning("bench: cost bin %d holds %d of %d random genotypes after %d draws (its genotypes are "
                           "rare or few in the space)", b, len(h), per_bin, attempts)
    return held
