"""Mixed precision for the training steps of both methods (``--amp``, ``--amp-dtype``).

bfloat16 needs no loss scaling and is native on recent GPUs (Ampere and later) and on CPUs with AVX512-BF16 or AMX;
on older GPUs (V100, T4) it is emulated and slow, and float16 is the fast type there, with a gradient scaler so that
small gradients do not flush to zero. ``auto`` picks float16 + scaler on such GPUs and bfloat16 elsewhere. Every
step goes through one :class:`Precision`: the same calls whatever the type, the scaler's state checkpointed with
the rest of the run when there is one."""
from __future__ import annotations

import torch

from ..config import AMP_DTYPES
from . import distributed as ddp


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether this CUDA GPU computes bfloat16 natively (compute capability 8.0, Ampere, and later).
    ``torch.cuda.is_bf16_supported()`` also says True where bfloat16 is only emulated (V100, T4), and reads the
    current device rather than this one."""
    return torch.cuda.get_device_properties(device).major >= 8


def amp_dtype(device: torch.device, enabled: bool, choice: str = "auto") -> torch.dtype | None:
    """The autocast type of the steps: None (float32) unless ``enabled``; ``choice`` auto: float16 on a CUDA GPU
    without native bfloat16, bfloat16 elsewhere."""
    if not enabled or device.type not in ("cuda", "cpu"):
        return None
    if choice not in AMP_DTYPES:
        raise ValueError(f"amp dtype must be one of {', '.join(AMP_DTYPES)}, got {choice!r}")
    if choice == "fp16" or (choice == "auto" and device.type == "cuda" and not cuda_native_bf16(device)):
        return torch.float16
    return torch.bfloat16


class Precision:
    """One step's precision: ``autocast()`` around the forward (losses are computed in float32 by their own code),
    then ``backward(loss)``, ``unscale(opt)`` before reading or clipping gradients, ``step(opt)`` and, once per
    step after every optimizer, ``update()``. Without float16 these are the plain calls."""

    def __init__(self, device: torch.device | str, enabled: bool = False, choice: str = "auto") -> None:
        self.device = torch.device(device)
        self.dtype = amp_dtype(self.device, enabled, choice)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.dtype is torch.float16 else None

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.dtype or torch.bfloat16,
                              enabled=self.dtype is not None)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to differentiate (``backward`` or ``autograd.grad``): scaled under float16."""
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def backward(self, loss: torch.Tensor) -> None:
        self.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients of ``optimizer``'s parameters back to their true size (before clipping or reading)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step; under float16 skipped when a gradient overflowed (the scale then shrinks)."""
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def finite(self, *grads: torch.Tensor | None) -> bool:
        """Whether the (unscaled) gradients are finite: always True without a scaler (no host read); under float16
        one read off the device, as the scaler's own step makes, since a step it skips had an overflow."""
        if self.scaler is None:
            return True
        return all(bool(torch.isfinite(g).all()) for g in grads if g is not None)

    def clip_step(self, optimizer: torch.optim.Optimizer, params, max_norm: float) -> None:
        """unscale, clip the gradient norm of ``params`` at ``max_norm``, step."""
        self.unscale(optimizer)
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.step(optimizer)

    def optimize(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params, max_norm: float) -> None:
        """A whole step of one optimizer on ``loss``: back-propagate this rank's share of the global batch
        (``ddp.scale_loss``: unchanged outside a sharded step), average the gradients over ranks, unscale, clip the
        norm of ``params`` at ``max_norm``, step, update the scale. (The AdaBERT search, with two optimizers and an
        architecture step of its own, calls the parts.)"""
        params = list(params)
        self.backward(ddp.scale_loss(loss))
        ddp.average_gradients(params)
        self.clip_step(optimizer, params, max_norm)
        self.update()

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.update()

    def stateful(self) -> dict:
        """What a checkpoint keeps of it: the scaler under float16, nothing otherwise (checkpoints from before
        float16 existed resume unchanged)."""
        return {"grad_scaler": self.scaler} if self.scaler is not None else {}

    def key(self) -> dict:
        """What a checkpoint key records: float16 only (off and bfloat16 keep the keys of before)."""
        return {"amp_dtype": "fp16"} if self.dtype is torch.float16 else {}

    def tag(self, key: str) -> str:
        """A string checkpoint key with :meth:`key` in it."""
        return f"{key}+fp16" if self.dtype is torch.float16 else key


def autocast(device: torch.device, enabled: bool, choice: str = "auto"):
    """Autocast alone (no scaler), for forwards inside a step that a :class:`Precision` drives, or without a
    backward of their own."""
    dtype = amp_dtype(device, enabled, choice)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
