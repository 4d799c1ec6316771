"""Progressive shrinking: bins of paths by size, the worse half of each bin dropped every epoch.

Per block, paths go into B bins by their layers' parameters (bin b holds sizes in (b/B, (b+1)/B] of the
largest). After the warm-up epochs, every epoch scores up to E paths per bin on held-out batches and keeps
the better half of the bin (never fewer than m); a bin with more than E paths keeps only from the E it
scored. Shrinking stops when every bin holds m paths; training goes on over the survivors.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field

from .space import BlockPath, path_params

logger = logging.getLogger("bertnas")


def make_bins(paths: list[BlockPath], num_bins: int) -> list[list[BlockPath]]:
    """Split paths into ``num_bins`` bins of equal width in parameters (empty bins are dropped)."""
    largest = max(path_params(p) for p in paths)
    bins: list[list[BlockPath]] = [[] for _ in range(num_bins)]
    for p in paths:
        b = min(num_bins - 1, max(0, math.ceil(num_bins * path_params(p) / largest) - 1))
        bins[b].append(p)
    return [sorted(b) for b in bins if b]


def shrink_bin(candidates: list[BlockPath], scores: dict[BlockPath, float], keep_min: int) -> list[BlockPath]:
    """The better half (by held-out loss, lower is better) of a bin's scored paths, at least ``keep_min``.

    Unscored paths are dropped too when the bin is larger than what was scored.
    """
    if len(candidates) <= keep_min:
        return list(candidates)
    target = max(keep_min, math.ceil(len(candidates) / 2))
    scored = sorted((p for p in candidates if p in scores), key=lambda p: (scores[p], p))
    return sorted(scored[:target])


@dataclass
class ShrinkState:
    """The surviving paths per block and bin, and what every shrink did; saved with each checkpoint."""

    bins: list[list[list[BlockPath]]]  # [block][bin] -> paths
    history: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls, paths: list[BlockPath], num_blocks: int, num_bins: int) -> "ShrinkState":
        return cls([make_bins(paths, num_bins) for _ in range(num_blocks)])

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

    def sample_for_scoring(self, block: int, per_bin: int, rng: random.Random) -> list[BlockPath]:
        out = []
        for b in self.bins[block]:
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

    @classmethod
    def from_dict(cls, d: dict) -> "ShrinkState":
        return cls([[[BlockPath.parse(p) for p in b] for b in block] for block in d["bins"]], list(d.get("history", [])))
