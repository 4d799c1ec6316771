"""A validation split carved from the training data, so that no choice is made on the dev set.

Every decision a run takes (which epoch of further training to keep, which derived architecture to keep, and,
with ``--arch-data val``, the architecture steps themselves) reads this split; the GLUE dev set is only
reported. The split is a seeded random sample of the *original* training examples; their teacher-labelled
copies (stored copy-major after the originals, ``teacher.augment``) leave the training pool with them, so no
variant of a held-out sentence is trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import BertnasError
from .encode import Encoded, Ragged, Sequences

AUTO_FRACTION = 0.1
AUTO_MAX = 5000
AUTO_MIN_TRAIN = 200  # below this many training examples, auto holds nothing out (too few to spare)


def validation_size(requested: int | None, n_original: int) -> int:
    """How many training examples to hold out: ``requested`` (0 = none), or by default 10% of the training
    examples, at most 5,000 (SST-2: 5,000 of 67,349; MRPC: 366 of 3,668), none below 200 examples."""
    if requested is not None:
        if requested and requested * 2 > n_original:
            raise BertnasError(f"--val-examples {requested} would leave {n_original - requested} of {n_original} "
                               "training examples to train on: pass at most half of them (or 0 to hold none out)")
        return requested
    if n_original < AUTO_MIN_TRAIN:
        return 0
    return min(AUTO_MAX, int(n_original * AUTO_FRACTION))


@dataclass(frozen=True)
class HoldOut:
    """Indices into the training ``Encoded`` (originals, then copies): what trains, and what validates."""

    train: list[int]  # originals not held out, and their copies
    val: list[int]  # held-out originals (sorted)
    n_original: int

    @property
    def active(self) -> bool:
        return bool(self.val)


def carve(n_original: int, n_total: int, size: int, seed: int) -> HoldOut:
    """Hold out ``size`` random originals (seeded) out of ``n_original``; ``n_total - n_original`` copies follow
    the originals copy-major, and a copy of a held-out example leaves the training pool too."""
    if size <= 0:
        return HoldOut(train=list(range(n_total)), val=[], n_original=n_original)
    g = torch.Generator().manual_seed(int(seed) + 104729)  # its own stream: the search subset draws from seed
    val = sorted(torch.randperm(n_original, generator=g)[:size].tolist())
    held = torch.zeros(n_original, dtype=torch.bool)
    held[val] = True
    copies = (n_total - n_original) // max(n_original, 1)
    keep = (~held).repeat(1 + copies)
    keep = torch.cat([keep, torch.ones(n_total - keep.numel(), dtype=torch.bool)])[:n_total]
    return HoldOut(train=torch.nonzero(keep).flatten().tolist(), val=val, n_original=n_original)


def take(data: Encoded, indices: list[int]) -> Encoded:
    """The examples at ``indices`` as their own split (for evaluation: labels follow, indices restart at 0)."""
    return Encoded(input_ids=_pick(data.input_ids, indices), token_type_ids=_pick(data.token_type_ids, indices),
                   labels=data.labels[indices], pad_id=data.pad_id)


def _pick(seqs: Sequences, indices: list[int]) -> Sequences:
    """A list of the chosen lists, or a Ragged of the chosen rows (never a list of numpy views)."""
    return seqs.take(indices) if isinstance(seqs, Ragged) else [seqs[i] for i in indices]


__all__ = ["HoldOut", "carve", "take", "validation_size"]
