"""AdaBERT's candidate operations, as data: an ordered list of names and a name -> factory table.

Every op maps ``(batch, channels, length) -> (batch, channels, length)`` at a fixed hidden size, so any op
can sit on any edge. Convolutions are ReLU -> Conv1d -> BatchNorm as in the public AdaBERT code; the
search builds them with a non-affine BatchNorm (as DARTS and GDAS do: an affine one would absorb the
straight-through op weight and cancel the conv's architecture gradient), the final model with an affine one. The
dilated ones use dilation 2 with "same" padding, so they really look ``2 * (k - 1) + 1`` tokens wide.
Pools treat positions past the end as zeros, the same value masked padding tokens have, so a prediction
does not depend on how much padding a batch has.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import BertnasError


class ConvBN(nn.Sequential):
    """ReLU -> Conv1d (same length) -> BatchNorm (``affine=False`` during search)."""

    def __init__(self, channels: int, kernel: int, dilation: int = 1, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=False),
            nn.BatchNorm1d(channels, affine=affine),
        )


class MaxPool(nn.Module):
    """Max over a window of 3 with zero padding, so that the sequence end looks the same whether it is
    followed by padding tokens (zeroed by the mask) or by nothing.

    Under ``torch.export`` (the dynamo ONNX exporter) it pools through ``max_pool1d_with_indices`` instead:
    ``aten.max_pool1d`` has no symbolic-shape meta function, and its C++ kernel reads the length as an int,
    which pins the graph's sequence axis to the example's length (torch 2.13). Both take the same maxima, so
    the values are identical; eager runs keep the faster plain kernel (and the FLOP count sees either op)."""

    def __init__(self, kernel: int = 3) -> None:
        super().__init__()
        self.kernel = kernel
        self.pad = kernel // 2
        self.pool = nn.MaxPool1d(kernel, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(x, (self.pad, self.pad))
        if torch.compiler.is_exporting():
            return nn.functional.max_pool1d(padded, self.kernel, stride=1, return_indices=True)[0]
        return self.pool(padded)


class Zero(nn.Module):
    """The 'no edge' op: outputs zeros of the input's shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


OPS: dict[str, Callable[[int, bool], nn.Module]] = {
    "conv_3": lambda c, affine: ConvBN(c, 3, affine=affine),
    "conv_5": lambda c, affine: ConvBN(c, 5, affine=affine),
    "conv_7": lambda c, affine: ConvBN(c, 7, affine=affine),
    "dil_conv_3": lambda c, affine: ConvBN(c, 3, dilation=2, affine=affine),
    "dil_conv_5": lambda c, affine: ConvBN(c, 5, dilation=2, affine=affine),
    "dil_conv_7": lambda c, affine: ConvBN(c, 7, dilation=2, affine=affine),
    "max_pool_3": lambda c, affine: MaxPool(3),
    "avg_pool_3": lambda c, affine: nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=True),
    "skip_connect": lambda c, affine: nn.Identity(),
    "zero": lambda c, affine: Zero(),
}

PRIMITIVES: tuple[str, ...] = tuple(OPS)
"""Op names in a fixed order: the columns of the architecture weights."""

PARAMETER_FREE: frozenset[str] = frozenset({"max_pool_3", "avg_pool_3", "skip_connect", "zero"})
"""Ops with no weights: a cell of only these is a 'bag of embeddings' (the known search collapse)."""


def create_op(name: str, channels: int, affine: bool = True) -> nn.Module:
    """Build op ``name`` for ``channels`` channels (``affine=False``: search-time BatchNorm); unknown names
    list the known ones."""
    try:
        factory = OPS[name]
    except KeyError:
        raise BertnasError(f"unknown op {name!r}; known ops: {', '.join(PRIMITIVES)}") from None
    return factory(channels, affine)
