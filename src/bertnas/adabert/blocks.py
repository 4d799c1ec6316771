"""Blocks the search-time supernet and the final student share: the pair layout, pooling, the classifier.

A leaf module (it imports only torch). Like the op table, it belongs to the search space: ``modeling`` (the final
network) and ``supernet`` import it, never the other way round, and ``student`` builds the final model from both.

Shapes: B batch, L tokens, C channels, P pooled views (1 for a single sentence; 2, A and B, for a pair).

Pairs keep the layout the teacher saw, ``[CLS] A [SEP] B [SEP]``: every token stays at its own index, only
B's position ids restart at 0 (as the AdaBERT code does), and the first cell reads A and B as its two inputs,
each zero outside its own tokens. So a conv at the boundary sees the end of A next to the start of B, and
token i of A never meets token i of B by construction (the old layout shifted B onto A).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PairLayout:
    """Where sentence A and B are in a batch, and the position id of every token."""

    mask: torch.Tensor  # (B, L) 1 on real tokens
    mask_a: torch.Tensor  # (B, L) 1 on A's tokens (all tokens for a single sentence)
    mask_b: torch.Tensor  # (B, L) 1 on B's tokens (all tokens for a single sentence)
    position_ids: torch.Tensor  # (B, L)
    pair: bool

    def views(self) -> torch.Tensor:
        """(B, P, L) masks of the pooled views: the whole sentence, or A and B."""
        if self.pair:
            return torch.stack([self.mask_a, self.mask_b], 1)
        return self.mask[:, None, :]


def pair_layout(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    pair_input: bool,
    sep_token_id: int | None,
) -> PairLayout:
    """Find A and B in a BERT-style encoded batch (by token type, else at the first [SEP]); restart B's positions."""
    mask = attention_mask.long()
    positions = torch.arange(input_ids.size(1), device=input_ids.device)[None, :].expand_as(input_ids)
    if not pair_input:
        return PairLayout(mask, mask, mask, positions * mask, pair=False)
    if token_type_ids is None:
        token_type_ids = types_from_sep(input_ids, attention_mask, sep_token_id)
    elif sep_token_id is not None:
        # RoBERTa-style tokenizers give all-zero types even for pairs: split those rows at [SEP] instead.
        # Branch-free (rows that have B types keep theirs), so torch.export captures it as one graph.
        no_b = ((token_type_ids == 1) & attention_mask.bool()).sum(1, keepdim=True) == 0
        token_type_ids = torch.where(no_b, types_from_sep(input_ids, attention_mask, sep_token_id), token_type_ids)
    if token_type_ids is None:
        raise ValueError("pair input needs token_type_ids or config.sep_token_id to find sentence B")
    mask_b = (attention_mask.bool() & (token_type_ids == 1)).long()
    mask_a = mask * (1 - mask_b)
    start_b = torch.where(mask_b.bool().any(1, keepdim=True), mask_b.float().argmax(1, keepdim=True),
                          torch.zeros_like(mask_b[:, :1]))  # (B, 1) index of B's first token
    position_ids = torch.where(mask_b.bool(), positions - start_b, positions) * mask
    return PairLayout(mask, mask_a, mask_b, position_ids, pair=True)


def types_from_sep(input_ids: torch.Tensor, attention_mask: torch.Tensor, sep_token_id: int | None) -> torch.Tensor | None:
    """Token types from separators: B starts at the first non-[SEP] token after the first [SEP]
    (so RoBERTa's ``</s></s>`` between the sentences stays with A)."""
    if sep_token_id is None:
        return None
    is_sep = (input_ids == sep_token_id) & attention_mask.bool()  # (B, L)
    positions = torch.arange(input_ids.size(1), device=input_ids.device)[None, :]
    first_sep = torch.where(is_sep.any(1, keepdim=True), is_sep.float().argmax(1, keepdim=True), input_ids.size(1))
    candidates = (positions > first_sep) & ~is_sep & attention_mask.bool()
    start = torch.where(candidates.any(1, keepdim=True), candidates.float().argmax(1, keepdim=True), input_ids.size(1))
    return (positions >= start).long()


def cell_inputs(x: torch.Tensor, layout: PairLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """The first cell's two inputs from embedded tokens (B, C, L): A and B of a pair, or the sentence twice."""
    if not layout.pair:
        return x, x
    return x * layout.mask_a[:, None, :].to(x.dtype), x * layout.mask_b[:, None, :].to(x.dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of (B, C, L) where mask (B, L) is 1; -> (B, C)."""
    mask = mask.to(x.dtype)[:, None, :]
    return (x * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def pool_views(x: torch.Tensor, layout: PairLayout) -> torch.Tensor:
    """Masked means of a cell output (B, C, L) over each view: (B, P, C)."""
    views = layout.views().to(x.dtype)  # (B, P, L)
    return torch.einsum("bcl,bpl->bpc", x, views) / views.sum(-1, keepdim=True).clamp(min=1.0)


def pair_features(pooled: torch.Tensor) -> torch.Tensor:
    """(B, P, C) -> features: tanh(mean) for one view; [u, v, |u - v|, u * v] of u = tanh(A), v = tanh(B) for pairs."""
    h = torch.tanh(pooled)
    if h.size(1) == 1:
        return h[:, 0]
    u, v = h[:, 0], h[:, 1]
    return torch.cat([u, v, (u - v).abs(), u * v], -1)


def feature_size(hidden: int, pair: bool) -> int:
    return 4 * hidden if pair else hidden


class PooledClassifier(nn.Module):
    """Softmax-weighted sum of the pooled cell outputs, tanh, dropout, dense (AdaBERT code); pairs are pooled
    per sentence and compared (:func:`pair_features`). Takes pooled states, so every depth reuses them."""

    def __init__(self, num_layers: int, hidden: int, num_labels: int, dropout: float, pair: bool = False) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(feature_size(hidden, pair), num_labels)

    def forward(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        """``pooled``: the first K cells' (B, P, C) views -> logits (B, num_labels) of a depth-K model."""
        weights = torch.softmax(self.layer_logits[: len(pooled)], 0)
        mixed = sum(w * p for w, p in zip(weights, pooled))  # (B, P, C)
        return self.dense(self.dropout(pair_features(mixed)))
