"""The one resumable epoch loop every training stage shares (AdaBERT's search and further training,
NAS-BERT's supernet, pre-training and fine-tuning distillation, teacher fine-tuning).

Each epoch draws its shuffling and sampling from generators seeded by (seed, epoch) and sets the global seed
for dropout, so an epoch run after a resume draws exactly what it would have drawn in one uninterrupted run.
After every epoch the stage's modules and optimizers, the epoch, its history and any extras are checkpointed;
a rerun with the same settings (``resume_key``) continues from there.

A loss that is NaN or inf stops the stage (:func:`check_finite`, on the first non-finite step, found within
:data:`SYNC_EVERY` steps: the loss is read off the device only that often), and weights
that turned NaN or inf are never checkpointed: the error names the stage, the epoch and batch, and the last
good checkpoint, which is left as it was.

Under ``torchrun`` (``training.distributed``) every rank walks the same batches and trains on its shard of each,
the steps average gradients over ranks, only rank 0 writes checkpoints, and after every epoch the ranks' weights
are compared. Only rank 0 reads a checkpoint too: it decides whether to resume and sends the state to the other
ranks, which may see no file, an older one or a half-written one (a filesystem not shared, or slow to show writes).
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
import torch

from ..data.encode import Encoded, batches, num_batches, to_device
from ..errors import BertnasError
from ..utils import progress
from . import distributed as ddp
from .checkpoints import load_checkpoint, save_checkpoint
from .losses import LossParts

logger = logging.getLogger("bertnas")


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> object: ...


class NonFiniteLoss(BertnasError):
    """A NaN or inf loss (or weights) in a training step; :func:`run_epochs` adds the stage, the epoch and the
    last good checkpoint to the message."""

    def __init__(self, what: str, batch: int | None = None, steps: int | None = None) -> None:
        self.what, self.batch, self.steps = what, batch, steps
        super().__init__(what)


def check_finite(values: dict[str, float], batch: int, steps: int) -> None:
    """Raise :class:`NonFiniteLoss` when any loss part of step ``batch`` (1-based, of ``steps``) is NaN or inf."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        shown = ", ".join(f"{k} {v}" for k, v in values.items())
        raise NonFiniteLoss(f"the loss is {next(iter(bad.values()))} ({shown})", batch, steps)


def nonfinite_message(stage: str, epoch: int, epochs: int, exc: NonFiniteLoss, checkpoint: Path | None,
                      done_epochs: int, hint: str = "lower the learning rate or check the data for extreme values") -> str:
    """The one line that stops a stage on a NaN/inf: where, what, the last good checkpoint and the fix."""
    where = f"epoch {epoch}/{epochs}" + (f", batch {exc.batch}/{exc.steps}" if exc.batch is not None else "")
    if checkpoint is not None and done_epochs > 0 and Path(checkpoint).exists():
        saved = f"last good checkpoint {checkpoint} (after epoch {done_epochs}), left as it was"
    else:
        saved = "no checkpoint of this stage yet (no epoch had finished)"
    return f"stage {stage} stopped at {where}: {exc.what}; {saved}; {hint}, then run the command again"


def nonfinite_weights(modules: dict[str, object]) -> str | None:
    """The first module parameter or buffer that is NaN or inf, as ``name.key``, or None."""
    for name, obj in modules.items():
        if isinstance(obj, torch.nn.Module):
            for key, t in obj.state_dict().items():
                if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    return f"{name}.{key}"
    return None


_DEADLINE: float | None = None  # time.monotonic() at which training loops stop (``--time-budget``), or None
_CUT: list[str] = []  # what the deadline cut short inside the current stop_at block


@contextlib.contextmanager
def stop_at(deadline: float | None) -> Iterator[None]:
    """Inside the block, :func:`train_pass` stops after the step that crosses ``deadline`` (``time.monotonic()``)
    and :func:`run_epochs` starts no new epoch after it: the stage ends early and keeps what it has, so a run
    with ``--time-budget`` ends on time even when the plan's prediction was short. A stage's ``min_epochs`` run
    in full regardless (a search's architecture epoch, further training's first). None: no limit."""
    _CUT.clear()
    global _DEADLINE
    previous, _DEADLINE = _DEADLINE, deadline
    try:
        yield
    finally:
        _DEADLINE = previous


def deadline_cuts() -> list[str]:
    """The loops the current :func:`stop_at` deadline cut short so far (empty when none, or outside one)."""
    return list(_CUT) if _DEADLINE is not None else []


@contextlib.contextmanager
def _no_deadline() -> Iterator[None]:
    """An epoch that must run in full (``run_epochs``' ``min_epochs``): no deadline inside it."""
    global _DEADLINE
    previous, _DEADLINE = _DEADLINE, None
    try:
        yield
    finally:
        _DEADLINE = previous


def past_deadline() -> bool:
    """Whether the :func:`stop_at` deadline has passed (never outside one)."""
    return _DEADLINE is not None and time.monotonic() >= _DEADLINE


def epoch_generators(seed: int, epoch: int) -> tuple[torch.Generator, torch.Generator]:
    """(shuffle, sampling) generators for one epoch, alike on every rank, and the global seed for dropout (its
    own per rank under torchrun, so that the shards of a batch get independent dropout, as in one process)."""
    torch.manual_seed(seed * 1000 + epoch + 1_000_003 * ddp.rank())
    np.random.seed((seed * 1000 + epoch) % 2**32)
    return (torch.Generator().manual_seed(seed * 1000 + epoch),
            torch.Generator().manual_seed(seed * 1000 + epoch + 500))


class Resumable:
    """A stage's checkpointed state: restored on creation when a checkpoint with the same key exists.

    Under torchrun rank 0 alone reads the checkpoint, since it alone writes them and the others may not see the
    same file; it restores its own objects and sends the state to the other ranks, which restore the same. So
    every rank resumes after the same epoch from the same state, or every rank starts over; a checkpoint that
    does not fit is one error on every rank (rank 0 raises it, the others :class:`ddp.MainRankFailed`)."""

    def __init__(self, name: str, path: Path | None, resume: bool, key: str, **stateful: Stateful) -> None:
        self.name, self.path, self.key, self.stateful = name, path, key, stateful
        self.epoch, self.history, self.extra = 0, [], {}
        state = ddp.on_main(self._read) if (path is not None and resume) else None
        if state is not None and ddp.active() and not ddp.is_main():  # sent by rank 0, which restored its own
            self._restore(state)
        self.restored = state is not None

    def _read(self) -> dict | None:
        """Rank 0's part: the usable checkpoint (or None), already restored here, so that a checkpoint that does
        not fit fails inside :func:`ddp.on_main`, which tells the other ranks."""
        state = load_checkpoint(self.path, self.key, f"stage {self.name}")
        if state is not None:
            self._restore(state)
            logger.info("%s: resuming after epoch %d from %s", self.name, self.epoch, self.path)
        return state

    def _restore(self, state: dict) -> None:
        """Load ``state`` into the stage's objects, epoch, history and extras."""
        try:  # same settings, but not this code's modules (another version of bertnas): an error with the fix
            for k, obj in self.stateful.items():
                obj.load_state_dict(state[k])
            self.epoch, self.history = int(state["epoch"]), list(state["history"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            why = f"no {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:160]
            raise BertnasError(f"checkpoint {self.path} does not fit stage {self.name} ({why}); it was probably "
                               "written by another version of bertnas: delete it, or pass --no-resume, to start the "
                               "stage over") from None
        skip = {*self.stateful, "epoch", "history", "resume_key"}
        self.extra = {k: v for k, v in state.items() if k not in skip}

    def save(self, **extra) -> None:
        """Checkpoint the state, unless a module's weights are NaN/inf (then :class:`NonFiniteLoss`: the last
        good checkpoint stays)."""
        bad = nonfinite_weights(self.stateful)
        if bad is not None:
            raise NonFiniteLoss(f"the weights became NaN or inf ({bad}) though every loss was finite")
        if self.path is not None and ddp.is_main():
            save_checkpoint(self.path, {**{k: obj.state_dict() for k, obj in self.stateful.items()},
                                        "epoch": self.epoch, "history": self.history, "resume_key": self.key, **extra})


def run_epochs(
    state: Resumable,
    epochs: int,
    seed: int,
    epoch_fn: Callable[[int, torch.Generator, torch.Generator], dict],
    extra: Callable[[], dict] = dict,
    min_epochs: int = 1,
) -> list[dict]:
    """Run ``epoch_fn(epoch, shuffle_gen, sample_gen) -> record`` for the epochs not done yet, checkpointing
    after each; returns the whole history (restored epochs included). The first ``min_epochs`` run in full even
    past a :func:`stop_at` deadline."""
    for epoch in range(state.epoch, epochs):
        if epoch >= min_epochs and past_deadline():
            logger.warning("stage %s: time budget reached, ending after %d of %d epochs", state.name, epoch, epochs)
            _CUT.append(f"{state.name} after epoch {epoch} of {epochs}")
            break
        t0 = time.perf_counter()
        shuffle_gen, sample_gen = epoch_generators(seed, epoch)
        try:
            with _no_deadline() if epoch < min_epochs else contextlib.nullcontext():
                record = epoch_fn(epoch, shuffle_gen, sample_gen)
            ddp.check_in_sync(state.stateful, f"stage {state.name}, epoch {epoch + 1}")
            history = [*state.history, {"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 1), **record}]
            done, state.epoch, state.history = state.epoch, epoch + 1, history
            try:
                state.save(**extra())
            except NonFiniteLoss:
                state.epoch, state.history = done, history[:-1]
                raise
        except NonFiniteLoss as exc:
            raise BertnasError(nonfinite_message(state.name, epoch + 1, epochs, exc, state.path, state.epoch)) from None
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
    """One pass over length-grouped shuffled batches of a task's examples (:func:`step_pass`)."""
    subset = list(subset) if subset is not None else None
    steps = num_batches(len(subset) if subset is not None else len(data), batch_size)
    return step_pass(batches(data, batch_size, shuffle=True, generator=generator, subset=subset), steps, device,
                     step, desc)


SYNC_EVERY = 25
"""Steps between the loop's reads of the loss parts (progress postfix, NaN/inf check). A read waits for the
device (a host sync); in between, the parts are summed, and the first non-finite step found, on the device. A
NaN/inf stops the stage at the next read (the message names the step it happened at), still before any
checkpoint is written."""


@contextlib.contextmanager
def step_scope() -> Iterator[None]:
    """Entered around every step function :func:`step_pass` calls (nothing by default): the place to watch a
    step, e.g. ``tests/test_host_sync.py`` makes every host sync inside a step an error there."""
    yield


class _Running:
    """Sums of the loss parts, and the first non-finite step and its parts, kept on the device."""

    def __init__(self, values: dict[str, torch.Tensor]) -> None:
        self.names = list(values)
        first = torch.stack([v.double() for v in values.values()])
        self.sums = torch.zeros_like(first)
        self.last = first
        self.bad_step = torch.full((), -1, dtype=torch.long, device=first.device)
        self.bad_values = torch.zeros_like(first)

    def add(self, step: int, values: dict[str, torch.Tensor]) -> None:
        vec = torch.stack([values[k].double() for k in self.names])
        self.sums += vec
        self.last = vec
        new_bad = ~torch.isfinite(vec).all() & (self.bad_step < 0)
        self.bad_step = torch.where(new_bad, torch.full_like(self.bad_step, step), self.bad_step)
        self.bad_values = torch.where(new_bad, vec, self.bad_values)

    def check(self, steps: int) -> None:
        """Raise :class:`NonFiniteLoss` for the first non-finite step seen (one host sync)."""
        bad = int(self.bad_step)
        if bad >= 0:
            check_finite(dict(zip(self.names, self.bad_values.tolist())), bad + 1, steps)

    def means(self, done: int) -> dict[str, float]:
        return {k: round(v / max(done, 1), 5) for k, v in zip(self.names, self.sums.tolist())}


def step_pass(
    batch_iter: Iterable[dict[str, torch.Tensor]],
    steps: int,
    device: torch.device,
    step: Callable[[int, dict[str, torch.Tensor]], LossParts],
    desc: str,
    shard: bool = True,
) -> dict[str, float]:
    """One pass over ``batch_iter``; ``step(i, batch)`` trains and returns its loss parts (as tensors: a step
    reads no Python number off the device). Returns the mean of each part over the pass. Progress on a terminal
    and in logs, a NaN/inf loss stops the stage (read every :data:`SYNC_EVERY` steps and at the end), a
    :func:`stop_at` deadline ends the pass early. Under torchrun ``step`` gets this rank's shard of each batch
    on ``device`` (it should back-propagate ``ddp.scale_loss(loss)`` and call ``ddp.average_gradients``) and
    the loss parts are those of the whole batch; with ``shard=False`` it gets the whole batch, as it comes,
    and shards it itself (its parts must then be the whole batch's)."""
    running: _Running | None = None
    bar = progress(batch_iter, total=steps, desc=desc)
    done = 0
    for i, batch in enumerate(bar):
        if i and past_deadline():  # at least one step: the epoch's record has its means
            logger.warning("%s: time budget reached, stopping after %d of %d steps", desc, i, steps)
            _CUT.append(f"{desc} after step {i} of {steps}")
            break
        if shard:
            local, share = ddp.shard(batch)
            with ddp.sharded_step(share), step_scope():
                parts = step(i, to_device(local, device))
            values = ddp.mean_over_ranks(parts.tensors(), share)
        else:
            with step_scope():
                values = step(i, batch).tensors()
        running = running or _Running(values)
        running.add(i, values)
        done += 1
        if done % SYNC_EVERY == 0:  # before anything is saved: the stage stops here, its checkpoint intact
            running.check(steps)
            bar.set_postfix(loss=f"{float(running.last[0]):.3f}")
    if running is None:
        return {}
    running.check(steps)
    return running.means(done)
