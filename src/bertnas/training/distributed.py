"""Many processes under ``torchrun``: data-parallel search and training that end where one process ends.

Launched by ``torchrun`` (``WORLD_SIZE`` > 1 with ``RANK`` and ``LOCAL_RANK`` set), the stages join one process
group (gloo on CPU, nccl on CUDA, one GPU per local rank). Every rank walks the same global batches (same
shuffle generator); each trains on a disjoint contiguous shard of every batch (:func:`shard`), weighs its
loss by its share of the batch (:func:`scale_loss`), and gradients are summed over ranks and averaged
(:func:`average_gradients`), so a step equals a one-process step on the whole batch up to float rounding.
BatchNorm layers normalise with the statistics of the whole global batch (:class:`GlobalBatchNorm1d`), as one
process would. A batch smaller than the number of ranks (the last one of a pass) is run whole on every rank.

The Gumbel samples come from generators seeded alike on every rank, and the architecture weights get the same
averaged gradients, so every rank samples the same ops at every step; :func:`average_gradients` fails when a
parameter has a gradient on some ranks only (they ran different ops), and :func:`check_in_sync` compares
weight checksums across ranks after every epoch. Rank 0 alone runs the teacher, the probes and the
measurements, and writes every file (:func:`on_main`); the other ranks log only errors and show no progress.

Every collective is entered by every rank, decided by values that are alike on every rank (settings, reduced
values, rank 0's broadcast outcome), so an error is raised on all ranks at the same point or on one rank
outside any collective (its exit then ends the others' next collective with a lost-peer error). The process
group is left (:func:`teardown`) on every exit: by the command line in a ``finally``, and for the Python API by
an ``atexit`` hook, while the interpreter is still whole: a gloo group still alive during interpreter
finalization can abort the process ("terminate called without an active exception").

Without ``torchrun`` every function here is a no-op, so one process behaves exactly as before.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ..errors import BertnasError

logger = logging.getLogger("bertnas")
T = TypeVar("T")
E = TypeVar("E", bound=BaseException)
WAIT = timedelta(hours=24)
"""Collective timeout: the other ranks wait while rank 0 alone runs the teacher over the data, which may take hours
(a rank that fails ends the others through torchrun, so a long timeout does not hide errors)."""
EXIT_WAIT = timedelta(minutes=10)
"""How long :func:`teardown` waits at the closing barrier of a run that succeeded (every rank is already done)."""
_AT_EXIT = False  # the atexit hook is registered (once per process)


class MainRankFailed(BertnasError):
    """Raised on the other ranks when rank 0 failed in :func:`on_main` (rank 0 reports the error itself)."""


def launched() -> bool:
    """True when started by torchrun with more than one process."""
    env = os.environ
    return all(k in env for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK")) and int(env["WORLD_SIZE"]) > 1


def active() -> bool:
    """True once the process group of a many-process run is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    if active():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes files and logs."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def setup(device: torch.device) -> None:
    """Join torchrun's process group once (gloo on CPU, nccl on CUDA); quiet the logs of ranks other than 0.
    Nothing happens without torchrun. The group is left at exit (:func:`teardown`, registered with ``atexit``)."""
    global _AT_EXIT
    if not launched() or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=WAIT)
    if not _AT_EXIT:  # the Python API has no end of its own: leave the group before the interpreter winds down
        atexit.register(teardown)
        _AT_EXIT = True
    if not is_main():
        logger.setLevel(logging.ERROR)


def teardown(wait: bool = False) -> None:
    """Leave the process group, on every way out (the command line calls it in a ``finally``; an ``atexit``
    hook calls it for the Python API). A no-op when no group is up, so calling it twice is harmless.

    ``wait``: first meet the other ranks at a barrier (at most :data:`EXIT_WAIT`), so that no rank leaves while
    another still talks to it. Pass it only when this rank succeeded (then every rank took the same path and
    reaches the barrier); after an error a rank leaves at once, and the others' next collective fails."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if wait and active():
            dist.barrier(timeout=EXIT_WAIT)
    except Exception as exc:  # another rank failed meanwhile: it reports its own error
        logger.debug("rank %d: closing barrier failed: %s", rank(), exc)
    finally:
        try:
            dist.destroy_process_group()
        except Exception as exc:  # leaving must not hide the error that brought us here
            logger.debug("rank %d: destroying the process group failed: %s", rank(), exc)


def failed_alike(exc: BaseException | None) -> bool:
    """True when every rank raised ``exc`` (or its counterpart) at the same point, right after the same
    collective: rank 0 failed in :func:`on_main`, or weights, gradients or the genotype differ between ranks.
    No rank runs another collective on its way out then, so all can still meet at the closing barrier of
    :func:`teardown` (and rank 0 prints its error before torchrun ends the ranks that finished first)."""
    return bool(getattr(exc, "raised_on_every_rank", False))


def _alike(exc: E) -> E:
    """Mark ``exc`` as raised by every rank at the same point (:func:`failed_alike`); returns it."""
    try:
        exc.raised_on_every_rank = True  # type: ignore[attr-defined]
    except AttributeError:  # an exception type with __slots__: no barrier on the way out, nothing worse
        pass
    return exc


def lost_peer(exc: BaseException) -> bool:
    """True when ``exc`` is a collective that failed because another rank ended (it reports its own error)."""
    text = str(exc)
    return (active() and isinstance(exc, RuntimeError)
            and any(s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe")))


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on rank 0 only (teacher pass, probes, measurements, writing files); the other
    ranks wait and get its result (picklable), or fail with :class:`MainRankFailed` when it raised.

    Rank 0 sends an outcome whatever happens (an exception, Ctrl-C, a result that cannot be pickled), so the
    other ranks never wait for a broadcast that does not come."""
    if not active():
        return fn(*args, **kwargs)
    if is_main():
        try:
            result = fn(*args, **kwargs)
            payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:
            if _send_outcome(("error", _describe(exc))):
                _alike(exc)
            raise
        _send_outcome(("ok", payload), required=True)
        return result
    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise _alike(MainRankFailed(f"rank 0 failed: {value}"))
    return pickle.loads(value)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return str(exc) if isinstance(exc, BertnasError) else f"{type(exc).__name__}: {exc}"


def _send_outcome(outcome: tuple[str, Any], required: bool = False) -> bool:
    """Broadcast rank 0's outcome of :func:`on_main`; True once sent. An error outcome is sent on a best-effort
    basis (the other ranks may be gone already), so that the error that brought us here is the one raised."""
    try:
        dist.broadcast_object_list([outcome], src=0)
    except Exception as exc:
        if required:
            raise
        logger.debug("could not tell the other ranks that rank 0 failed: %s", exc)
        return False
    return True


# ----------------------------------------------------------------------------- one step over a shard
@dataclass(frozen=True)
class Share:
    """This rank's part of one global batch: ``examples`` of ``total``; ``split`` False when every rank runs
    the whole batch (fewer examples than ranks)."""

    examples: int
    total: int
    split: bool


_SHARE: Share | None = None  # set by :func:`sharded_step` for the step that runs on this rank's shard


def shard(batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Share | None]:
    """This rank's contiguous rows of a global batch (all ranks see the same padded length, as one process
    would), and its :class:`Share`; the whole batch and None without torchrun."""
    if not active():
        return batch, None
    total, ranks = batch["input_ids"].size(0), world_size()
    if total < ranks:
        return batch, Share(total, total, split=False)
    bounds = [total * r // ranks for r in range(ranks + 1)]
    start, end = bounds[rank()], bounds[rank() + 1]
    return {k: v[start:end] for k, v in batch.items()}, Share(end - start, total, split=True)


@contextlib.contextmanager
def sharded_step(share: Share | None) -> Iterator[None]:
    """Mark the step that runs on ``share`` (read by :func:`scale_loss` and :class:`GlobalBatchNorm1d`)."""
    global _SHARE
    previous, _SHARE = _SHARE, share
    try:
        yield
    finally:
        _SHARE = previous


def scale_loss(loss: torch.Tensor) -> torch.Tensor:
    """The loss to back-propagate: this shard's mean loss times ``world * examples / total``, so that the
    average of the ranks' gradients (:func:`average_gradients`) is the gradient of the global batch's mean
    loss (also through the global BatchNorm statistics). Unchanged in one process or on a replicated batch."""
    if _SHARE is None or not _SHARE.split:
        return loss
    return loss * (world_size() * _SHARE.examples / _SHARE.total)


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients of ``params`` over ranks (with gloo or nccl).

    A parameter that has a gradient on some ranks but not on others means the ranks ran different ops (their
    Gumbel samples differ): that is an error rather than a silent mix of two architectures. Parameters
    without a gradient on every rank keep none, as in one process (the optimizer then skips them).

    Two all-reduces: first which parameters have a gradient (one number each, the same size on every rank), so
    that every rank raises the mismatch error at the same point; then the gradients present on every rank
    (the same list on every rank by then). One all-reduce of only the local gradients would have a different
    size on the ranks that differ, which gloo cannot match: it aborts the process."""
    if not active():
        return
    params = list(params)
    if not params:
        return
    device = next((p.grad.device for p in params if p.grad is not None), params[0].device)
    counts = torch.tensor([float(p.grad is not None) for p in params], dtype=torch.float32, device=device)
    dist.all_reduce(counts)
    ranks = world_size()
    uneven = ((counts != 0) & (counts != ranks)).nonzero()
    if uneven.numel():
        i = int(uneven[0])
        raise _alike(BertnasError(
            f"ranks ran different operations in one step: a parameter of shape {tuple(params[i].shape)} has a "
            f"gradient on {int(counts[i])} of {ranks} ranks; every rank must draw the same architecture sample "
            "(same bertnas version, settings and seed on every rank)"))
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g) / ranks)
        offset += n


def mean_over_ranks(values: dict[str, torch.Tensor], share: Share | None) -> dict[str, torch.Tensor]:
    """A step's loss parts (0-dim tensors) over the global batch (each shard's mean weighed by its examples)."""
    if share is None or not active():
        return values
    weight = share.examples / share.total if share.split else 1.0 / world_size()
    t = torch.stack([v.detach().double() for v in values.values()]).to(_comm_device()) * weight
    dist.all_reduce(t)
    return dict(zip(values, t.unbind()))


def seed_per_rank(seed: int) -> None:
    """Reseed torch differently on every rank (dropout masks of different rows must differ, as in one process);
    nothing without torchrun. Seed shared generators (batches, samples) before this, or separately."""
    if active():
        torch.manual_seed(seed * 1000 + 1_000_003 * rank())


def average_over_ranks(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """The mean of each value (0-dim tensors) over ranks (a step's shard losses scaled to sum to the global one:
    see the NAS-BERT loop); the values unchanged without torchrun."""
    if not active():
        return values
    t = torch.stack([v.detach().double() for v in values]).to(_comm_device())
    dist.all_reduce(t)
    return list((t / world_size()).unbind())


class _GlobalBatchNorm(torch.autograd.Function):
    """Normalise ``x`` (B, C, ...) with the mean and variance of the whole global batch: one all-reduce of the
    per-channel sums in forward and one of the gradient sums in backward (as torch's SyncBatchNorm does)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        dims = [0, *range(2, x.dim())]
        xd = x.double()
        local = torch.cat([xd.sum(dims), xd.square().sum(dims),
                           torch.tensor([x.numel() / x.size(1)], dtype=torch.float64, device=x.device)])
        dist.all_reduce(local)
        c = x.size(1)
        n = local[-1].clone()
        mean = local[:c] / n
        var = (local[c : 2 * c] / n - mean.square()).clamp(min=0)
        shape = [1, -1] + [1] * (x.dim() - 2)
        invstd = torch.rsqrt(var + eps)
        xhat = ((xd - mean.view(shape)) * invstd.view(shape)).to(x.dtype)
        ctx.save_for_backward(xhat, invstd.to(x.dtype), n)
        ctx.mark_non_differentiable(mean, var, n)
        return xhat, mean, var, n

    @staticmethod
    def backward(ctx, grad: torch.Tensor, *_: torch.Tensor) -> tuple[torch.Tensor, None]:
        xhat, invstd, n = ctx.saved_tensors
        dims = [0, *range(2, grad.dim())]
        shape = [1, -1] + [1] * (grad.dim() - 2)
        sums = torch.cat([grad.sum(dims), (grad * xhat).sum(dims)]).double()
        dist.all_reduce(sums)
        c = grad.size(1)
        mean_g, mean_gx = (sums[:c] / n).to(grad.dtype), (sums[c:] / n).to(grad.dtype)
        return (grad - mean_g.view(shape) - xhat * mean_gx.view(shape)) * invstd.view(shape), None


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training-mode statistics are those of the whole global batch, summed over the
    ranks' shards (torch's SyncBatchNorm runs on GPUs only). Outside a split step (one process, evaluation, a
    replicated batch) it is plain BatchNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _SHARE is not None and _SHARE.split and active()):
            return super().forward(x)
        y, mean, var, n = _GlobalBatchNorm.apply(x, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
                unbiased = var * n / (n - 1).clamp(min=1)
                self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        if self.affine:
            shape = [1, -1] + [1] * (x.dim() - 2)
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def global_batchnorm(*modules: nn.Module) -> None:
    """Under torchrun, turn every ``nn.BatchNorm1d`` in ``modules`` into :class:`GlobalBatchNorm1d` in place
    (same parameters, buffers and state-dict keys; only the training-mode statistics change)."""
    if not active():
        return
    for module in modules:
        for m in module.modules():
            if type(m) is nn.BatchNorm1d:
                m.__class__ = GlobalBatchNorm1d


# ----------------------------------------------------------------------------- ranks stay identical
def broadcast_modules(*modules: nn.Module) -> None:
    """Copy rank 0's weights and buffers (state dict) into every rank, as DDP does when it wraps a model."""
    if not active():
        return
    for module in modules:
        for t in module.state_dict().values():
            if torch.is_tensor(t):
                dist.broadcast(t, src=0)


def _checksum(module: nn.Module) -> torch.Tensor:
    """Sum and position-weighted sum of a module's floating state, in float64 (order-sensitive, cheap)."""
    total = torch.zeros(2, dtype=torch.float64)
    for t in module.state_dict().values():
        if torch.is_tensor(t) and t.is_floating_point() and t.numel():
            x = t.detach().double().reshape(-1).cpu()
            total += torch.stack([x.sum(), (x * torch.linspace(1.0, 2.0, x.numel(), dtype=torch.float64)).sum()])
    return total


def check_in_sync(modules: dict[str, object], where: str) -> None:
    """Raise on every rank when any module's weights differ between ranks (exact checksums, all-gathered)."""
    if not active():
        return
    names = [k for k, m in modules.items() if isinstance(m, nn.Module)]
    local = torch.stack([_checksum(modules[k]) for k in names]).to(_comm_device())
    gathered = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(gathered, local)
    for r, other in enumerate(gathered[1:], 1):
        for i, name in enumerate(names):
            if not torch.equal(other[i], gathered[0][i]):
                what = "architecture weights" if name == "arch" else f"{name} weights"
                raise _alike(BertnasError(f"{where}: the {what} differ between rank 0 and rank {r} (checksums "
                                          f"{gathered[0][i].tolist()} vs {other[i].tolist()}); every rank must run "
                                          "the same bertnas version, settings and data"))


def check_same(what: str, value: object) -> None:
    """Raise on every rank when ``value`` (picklable, e.g. the derived genotype) differs between ranks."""
    if not active():
        return
    values: list[object] = [None] * world_size()
    dist.all_gather_object(values, value)
    for r, v in enumerate(values[1:], 1):
        if v != values[0]:
            raise _alike(BertnasError(f"{what} differs between rank 0 ({values[0]}) and rank {r} ({v})"))
