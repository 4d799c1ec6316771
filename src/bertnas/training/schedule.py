"""The learning-rate schedule every training loop uses: linear warm-up, then linear decay to 0."""
from __future__ import annotations

from typing import Callable

import torch


def warmup_linear(total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """LambdaLR factor: ``(s + 1) / warmup`` for the first ``warmup_steps`` steps, then falling linearly to 0 at
    ``total_steps``. Both numbers are bound now: a closure over loop variables once made a learning rate reach 0
    after the first epoch."""
    total, warm = max(1, int(total_steps)), int(warmup_steps)
    if warm < 0 or warm > total:
        raise ValueError(f"warm-up of {warm} steps does not fit in {total} steps")
    if warm == 0:
        return lambda step: max(0.0, 1.0 - step / total)
    return lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm)))


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`warmup_linear` as a scheduler stepped once per optimizer step (its state is checkpointed)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(total_steps, warmup_steps))
