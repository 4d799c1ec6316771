"""The one resumable epoch loop that the search and the further training share.

Each epoch draws its shuffling and sampling from generators seeded by (seed, epoch) and sets the global seed
for dropout, so an epoch run after a resume draws exactly what it would have drawn in one uninterrupted run.
After every epoch the stage's modules and optimizers, the epoch, its history and any extras are checkpointed;
a rerun with the same settings (``resume_key``) continues from there.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np
import torch

from ..data.encode import Encoded, batches, num_batches, to_device
from ..utils import progress
from .checkpoints import load_checkpoint, save_checkpoint
from .losses import LossParts

logger = logging.getLogger("bertnas")


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> object: ...


def epoch_generators(seed: int, epoch: int) -> tuple[torch.Generator, torch.Generator]:
    """(shuffle, sampling) generators for one epoch, and the global seed for dropout."""
    torch.manual_seed(seed * 1000 + epoch)
    np.random.seed((seed * 1000 + epoch) % 2**32)
    return (torch.Generator().manual_seed(seed * 1000 + epoch),
            torch.Generator().manual_seed(seed * 1000 + epoch + 500))


class Resumable:
    """A stage's checkpointed state: restored on creation when a checkpoint with the same key exists."""

    def __init__(self, name: str, path: Path | None, resume: bool, key: str, **stateful: Stateful) -> None:
        self.name, self.path, self.key, self.stateful = name, path, key, stateful
        self.epoch, self.history, self.extra = 0, [], {}
        state = load_checkpoint(path, key) if (path is not None and resume) else None
        self.restored = state is not None
        if state is not None:
            for k, obj in stateful.items():
                obj.load_state_dict(state[k])
            self.epoch, self.history = int(state["epoch"]), list(state["history"])
            self.extra = {k: v for k, v in state.items() if k not in stateful and k not in ("epoch", "history", "resume_key")}
            logger.info("%s: resuming after epoch %d from %s", name, self.epoch, path)

    def save(self, **extra) -> None:
        if self.path is not None:
            save_checkpoint(self.path, {**{k: obj.state_dict() for k, obj in self.stateful.items()},
                                        "epoch": self.epoch, "history": self.history, "resume_key": self.key, **extra})


def run_epochs(
    state: Resumable,
    epochs: int,
    seed: int,
    epoch_fn: Callable[[int, torch.Generator, torch.Generator], dict],
    extra: Callable[[], dict] = dict,
) -> list[dict]:
    """Run ``epoch_fn(epoch, shuffle_gen, sample_gen) -> record`` for the epochs not done yet, checkpointing
    after each; returns the whole history (restored epochs included)."""
    for epoch in range(state.epoch, epochs):
        t0 = time.perf_counter()
        shuffle_gen, sample_gen = epoch_generators(seed, epoch)
        record = epoch_fn(epoch, shuffle_gen, sample_gen)
        state.history.append({"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 1), **record})
        state.epoch = epoch + 1
        state.save(**extra())
    return state.history


def train_pass(
    data: Encoded,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    step: Callable[[int, dict[str, torch.Tensor]], LossParts],
    desc: str,
    subset: Iterable[int] | None = None,
) -> dict[str, float]:
    """One pass over length-grouped shuffled batches; ``step(i, batch)`` trains and returns its loss parts.
    Returns the mean of each part over the pass."""
    subset = list(subset) if subset is not None else None
    steps = num_batches(len(subset) if subset is not None else len(data), batch_size)
    sums: dict[str, float] = {}
    bar = progress(batches(data, batch_size, shuffle=True, generator=generator, subset=subset), total=steps, desc=desc)
    for i, batch in enumerate(bar):
        parts = step(i, to_device(batch, device))
        for k, v in parts.as_dict().items():
            sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix(loss=f"{parts.total.item():.3f}")
    return {k: round(v / steps, 5) for k, v in sums.items()}
