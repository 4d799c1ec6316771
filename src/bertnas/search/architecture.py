"""The architecture weights: op logits (9 edges x 10 ops, shared by all cells) and depth logits (K_max).

Kept in their own module, outside the supernet's parameters, with their own optimizer (DARTS style).
"""
from __future__ import annotations

import torch
from torch import nn

from ..spaces.genotype import NUM_EDGES
from ..spaces.ops import PRIMITIVES
from .gumbel import gumbel_softmax_st


class Architecture(nn.Module):
    """Learnable logits over ops and depth; samples straight-through one-hot choices."""

    def __init__(self, k_max: int) -> None:
        super().__init__()
        self.k_max = k_max
        self.alpha = nn.Parameter(torch.zeros(NUM_EDGES, len(PRIMITIVES)))  # (9, 10)
        self.depth_logits = nn.Parameter(torch.zeros(k_max))  # (K_max,)

    def sample(self, tau: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(op weights (9, 10), depth weights (K_max,)), each row one-hot in value, soft in gradient."""
        return gumbel_softmax_st(self.alpha, tau, generator), gumbel_softmax_st(self.depth_logits, tau, generator)

    @torch.no_grad()
    def argmax_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current most likely choices as one-hot weights (for evaluating the supernet)."""
        ops = torch.nn.functional.one_hot(self.alpha.argmax(-1), self.alpha.size(-1)).float()
        depth = torch.nn.functional.one_hot(self.depth_logits.argmax(), self.k_max).float()
        return ops, depth

    def op_probs(self) -> torch.Tensor:
        return torch.softmax(self.alpha, -1)

    def depth_probs(self) -> torch.Tensor:
        return torch.softmax(self.depth_logits, -1)
