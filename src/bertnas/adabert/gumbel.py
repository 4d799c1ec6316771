"""Straight-through Gumbel-softmax sampling and the temperature schedule."""
from __future__ import annotations

import math

import torch


def gumbel_softmax_st(logits: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """One-hot samples over the last dim whose gradient is that of the soft Gumbel-softmax.

    Forward value: exactly one-hot (so only the sampled op/depth needs computing). Backward: the gradient
    of ``softmax((logits + g) / tau)``. The noise comes from ``generator`` when given (reproducible runs).
    """
    if tau <= 0:
        raise ValueError(f"Gumbel temperature must be > 0, got {tau}")
    gumbel = gumbel_noise(logits.shape, generator).to(logits.device, logits.dtype)
    soft = torch.softmax((logits + gumbel) / tau, dim=-1)
    hard = torch.nn.functional.one_hot(soft.argmax(-1), soft.size(-1)).to(soft.dtype)
    return hard - soft.detach() + soft


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise (float32, on the CPU, from ``generator`` when given)."""
    uniform = torch.rand(shape, generator=generator, dtype=torch.float32)
    return -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))


def temperature(epoch: float, tau_max: float, tau_min: float, decay: float) -> float:
    """AdaBERT's schedule: ``max(tau_max * exp(-decay * epoch), tau_min)``, with fractional epochs."""
    return max(tau_max * math.exp(-decay * epoch), tau_min)


def auto_decay(tau_max: float, tau_min: float, epochs: int) -> float:
    """The decay that reaches ``tau_min`` exactly at the end of ``epochs`` (used when none is set)."""
    return math.log(tau_max / tau_min) / max(epochs, 1)
