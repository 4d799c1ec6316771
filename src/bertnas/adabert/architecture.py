"""The architecture weights: op logits (9 edges x 10 ops, shared by all cells) and depth logits (K_max).

Kept in their own module, outside the supernet's parameters, with their own optimizer (DARTS style).
"""
from __future__ import annotations

import torch
from torch import nn

from .genotype import EDGES, NUM_EDGES, Genotype
from .ops import PRIMITIVES
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

    def genotype_weights(self, genotype: Genotype) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot weights that make the supernet compute ``genotype``: its op on kept edges, zero elsewhere.

        Used to evaluate the derived architecture with the supernet's weights during search."""
        kept = {(node, source): op for node, source, op in genotype.edges}
        ops = torch.zeros_like(self.alpha)
        for e, (node, source) in enumerate(EDGES):
            ops[e, PRIMITIVES.index(kept.get((node, source), "zero"))] = 1.0
        depth = torch.nn.functional.one_hot(torch.tensor(genotype.depth - 1), self.k_max).float()
        return ops.detach(), depth.to(ops.device)

    def op_probs(self) -> torch.Tensor:
        return torch.softmax(self.alpha, -1)

    def depth_probs(self) -> torch.Tensor:
        return torch.softmax(self.depth_logits, -1)

    def entropy(self) -> torch.Tensor:
        """Mean entropy of the edges' op distributions plus the depth distribution's (``--arch-entropy``)."""
        ops = -(self.op_probs() * torch.log_softmax(self.alpha, -1)).sum(-1).mean()
        depth = -(self.depth_probs() * torch.log_softmax(self.depth_logits, -1)).sum()
        return ops + depth
