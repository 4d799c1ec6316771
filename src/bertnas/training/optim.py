"""Optimizers built the fast way for the device: torch's fused Adam/AdamW kernels where they apply.

The default (for-loop) AdamW updates each parameter tensor with several separate passes; on a student whose
folded embedding table is 3.9M of its 4.1M weights, that update costs more than the forward and backward pass
together on a CPU (measured here: 37 ms vs 12 ms per step for the same parameters on one thread). The fused kernel
does the same arithmetic in one pass (results equal up to float rounding)."""
from __future__ import annotations

from collections.abc import Iterable

import torch


def _fusable(params: list[torch.Tensor]) -> bool:
    """torch's fused Adam runs on floating-point tensors on CPU and CUDA, all on one device type."""
    kinds = {p.device.type for p in params}
    return bool(params) and len(kinds) == 1 and kinds <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)


def adamw(params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.01, **kwargs) -> torch.optim.AdamW:
    """AdamW, fused where the parameters allow it."""
    params = [p for p in params if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=_fusable(params) or None, **kwargs)


def adam(params: Iterable[torch.Tensor], lr: float, **kwargs) -> torch.optim.Adam:
    """Adam, fused where the parameters allow it."""
    params = [p for p in params if p.requires_grad]
    return torch.optim.Adam(params, lr=lr, fused=_fusable(params) or None, **kwargs)
