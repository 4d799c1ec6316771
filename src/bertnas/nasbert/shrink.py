"""Progressive shrinking (the paper's): bins of paths by size and latency, the worse half of each bin's sample dropped.

Per block, paths go into bins on a grid of B parameter ranges x B latency ranges (range b holds values in
(b/B, (b+1)/B] of the block's largest; empty cells are dropped). After the warm-up epochs, every epoch scores up
to E random paths per bin on random held-out batches and drops the worse half *of those scored* (never below m
per bin); unscored paths stay, so no path is ever kept over one that scored better. Because every non-empty
latency range keeps at least m paths, the fast region of the space survives shrinking even when its paths
have the higher loss. Shrinking stops when every bin holds m paths; training goes on over the survivors.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Mapping

from .space import BlockPath, path_params

logger = logging.getLogger("bertnas")


def _range(value: float, largest: float, num_bins: int) -> int:
    return min(num_bins - 1, max(0, math.ceil(num_bins * value / largest) - 1)) if largest > 0 else 0


def make_bins(paths: list[BlockPath], num_bins: int,
              latency: Mapping[BlockPath, float] | None = None) -> list[list[BlockPath]]:
    """Paths into bins of equal width in parameters and, given ``latency`` (ms per path), in latency too:
    the non-empty cells of a B x B grid, ordered by (params range, latency range)."""
    largest = max(path_params(p) for p in paths)
    slowest = max(latency[p] for p in paths) if latency is not None else 0.0
    cells: dict[tuple[int, int], list[BlockPath]] = {}
    for p in paths:
        lat = _range(latency[p], slowest, num_bins) if latency is not None else 0
        cells.setdefault((_range(path_params(p), largest, num_bins), lat), []).append(p)
    return [sorted(cells[k]) for k in sorted(cells)]


def shrink_bin(candidates: list[BlockPath], scores: Mapping[BlockPath, float], keep_min: int) -> list[BlockPath]:
    """Drop the worse half (by held-out loss, lower is better) of the bin's scored paths, keeping at least
    ``keep_min``; unscored paths stay. Every dropped path scored worse than every kept scored one."""
    scored = sorted((p for p in candidates if p in scores), key=lambda p: (scores[p], p))
    drop = min(len(scored) // 2, max(0, len(candidates) - keep_min))
    gone = set(scored[len(scored) - drop:]) if drop else set()
    return sorted(p for p in candidates if p not in gone)


@dataclass
class ShrinkState:
    """The surviving paths per block and bin, and what every shrink did; saved with each checkpoint."""

    bins: list[list[list[BlockPath]]]  # [block][bin] -> paths
    history: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls, paths: list[BlockPath], num_blocks: int, num_bins: int,
              latency: Mapping[BlockPath, float] | None = None) -> "ShrinkState":
        return cls([make_bins(paths, num_bins, latency) for _ in range(num_blocks)])

    def size(self, block: int | None = None) -> int:
        blocks = range(len(self.bins)) if block is None else [block]
        return sum(len(b) for n in blocks for b in self.bins[n])

    def space_size(self) -> int:
        """Number of whole-model combinations left (product over blocks)."""
        return math.prod(self.size(n) for n in range(len(self.bins)))

    def candidates(self, block: int) -> list[BlockPath]:
        return [p for b in self.bins[block] for p in b]

    def done(self, keep_min: int) -> bool:
        return all(len(b) <= keep_min for block in self.bins for b in block)

    def sample_for_scoring(self, block: int, per_bin: int, rng: random.Random, keep_min: int = 0) -> list[BlockPath]:
        """Up to ``per_bin`` random paths of every bin that still holds more than ``keep_min``."""
        out = []
        for b in self.bins[block]:
            if len(b) > keep_min:
                out += b if len(b) <= per_bin else rng.sample(b, per_bin)
        return out

    def shrink(self, scores: list[dict[BlockPath, float]], keep_min: int, epoch: int) -> None:
        before = [self.size(n) for n in range(len(self.bins))]
        self.bins = [[shrink_bin(b, scores[n], keep_min) for b in block] for n, block in enumerate(self.bins)]
        after = [self.size(n) for n in range(len(self.bins))]
        self.history.append({"epoch": epoch, "paths_before": before, "paths_after": after, "space_size": self.space_size()})
        logger.info("epoch %d: shrank paths per block %s -> %s; space size now %d", epoch, before, after, self.space_size())

    def to_dict(self) -> dict:
        return {"bins": [[[str(p) for p in b] for b in block] for block in self.bins], "history": self.history}

    def state_dict(self) -> dict:
        """For the shared loop's checkpoint (strings and numbers only: loadable with ``weights_only``)."""
        return self.to_dict()

    def load_state_dict(self, state: dict) -> None:
        restored = ShrinkState.from_dict(state)
        self.bins, self.history = restored.bins, restored.history

    @classmethod
    def from_dict(cls, d: dict) -> "ShrinkState":
        return cls([[[BlockPath.parse(p) for p in b] for b in block] for block in d["bins"]], list(d.get("history", [])))
