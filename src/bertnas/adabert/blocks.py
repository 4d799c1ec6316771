"""Blocks the search-time supernet and the final student share: the pair layout, pooling, the classifier.

A leaf module (it imports only torch). Like the op table, it belongs to the search space: ``modeling`` (the final
network) and ``supernet`` import it, never the other way round, and ``student`` builds the final model from both.

Shapes: B batch, L tokens, C channels, P pooled views (1 for a single sentence; for a pair 2, A and B, with the
``"pooled"`` head, 2 + 4 with the ``"aligned"`` one: see :func:`aligned_views`).

Pairs keep the layout the teacher saw, ``[CLS] A [SEP] B [SEP]``: every token stays at its own index, only
B's position ids restart at 0 (as the AdaBERT code does), and the first cell reads A and B as its two inputs,
each zero outside its own tokens. So a conv at the boundary sees the end of A next to the start of B, and
token i of A never meets token i of B by construction (the old layout shifted B onto A).

Pair heads: ``"pooled"`` compares A and B only through their pooled means; ``"aligned"`` (the default for new
models) also soft-aligns every token of one sentence to the other's tokens, ESIM / decomposable-attention style,
and pools the token-level comparisons (:func:`aligned_views`), so that "this word of B is (nearly) a word of A"
survives the pooling.
"""
from __future__ import annotations

import math
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
    match: torch.Tensor | None = None  # (B, L) pairs: 1 on a token whose id also occurs in the other sentence

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
    return PairLayout(mask, mask_a, mask_b, position_ids, pair=True, match=exact_match(input_ids, mask_a, mask_b))


def exact_match(input_ids: torch.Tensor, mask_a: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """(B, L) 1 on each token of A whose id also occurs in B, and on each token of B whose id occurs in A.

    The exact-match flag of DrQA / FusionNet-style readers: a small pair model learns "this word of B is a
    word of A" from 3,668 MRPC pairs only with difficulty (its convs blur a word with its neighbours before any
    comparison), so it gets the fact as an input. Separators ([SEP] ends both sentences) match as well: a
    constant, harmless. Branch-free, one (B, L, L) comparison, so it exports."""
    same = input_ids[:, :, None] == input_ids[:, None, :]  # (B, L, L)
    in_b = (same & mask_b.bool()[:, None, :]).any(-1) & mask_a.bool()
    in_a = (same & mask_a.bool()[:, None, :]).any(-1) & mask_b.bool()
    return (in_b | in_a).long()


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


PAIR_HEADS = ("pooled", "aligned")
"""How a pair model compares A and B: ``pooled``, their masked means only; ``aligned``, also token by token."""
DEFAULT_PAIR_HEAD = "aligned"
"""The pair head of new models."""
LEGACY_PAIR_HEAD = "pooled"
"""The pair head of models saved before the choice existed (their config has no ``pair_head``)."""
ALIGNED_VIEWS = 4
"""Extra pooled views of the aligned head: the masked means over A of |a - b~| and a * b~ and over B of |b - a~|
and b * a~ (:func:`aligned_views`)."""


def check_pair_head(pair_head: str) -> str:
    if pair_head not in PAIR_HEADS:
        raise ValueError(f"unknown pair_head {pair_head!r}: known heads are {', '.join(PAIR_HEADS)}")
    return pair_head


def num_views(pair: bool, pair_head: str = DEFAULT_PAIR_HEAD) -> int:
    """P, the number of pooled views per cell: 1 (single sentence), 2 (A, B) or 2 + 4 (A, B, aligned)."""
    if not pair:
        return 1
    return 2 + (ALIGNED_VIEWS if check_pair_head(pair_head) == "aligned" else 0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of (B, C, L) where mask (B, L) is 1; -> (B, C)."""
    mask = mask.to(x.dtype)[:, None, :]
    return (x * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def soft_align(x: torch.Tensor, layout: PairLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """For every token, a soft copy of its best match in the other sentence: (b~, a~), each (B, C, L).

    Scores e_ij = x_i . x_j / sqrt(C) (one L x L matrix: it is symmetric). b~_i = sum over B's tokens j of
    softmax_j(e_ij) x_j, meant for A's tokens i; a~_j likewise over A's tokens, meant for B's tokens j. Branch-free:
    keys outside the sentence get the dtype's lowest score, so they get weight exactly 0 (padding changes
    nothing), and a row with no key at all (an empty B after truncation) averages zeros: b~ = 0, never NaN.
    """
    in_a, in_b = layout.mask_a.bool()[:, None, :], layout.mask_b.bool()[:, None, :]  # (B, 1, L) key masks
    x_a, x_b = x * in_a.to(x.dtype), x * in_b.to(x.dtype)
    scores = torch.matmul(x.transpose(1, 2), x) / math.sqrt(x.size(1))  # (B, L, L)
    low = torch.finfo(scores.dtype).min
    to_b = torch.softmax(torch.where(in_b, scores, low), -1)  # (B, L queries, L keys in B)
    to_a = torch.softmax(torch.where(in_a, scores, low), -1)
    return torch.matmul(x_b, to_b.transpose(1, 2)), torch.matmul(x_a, to_a.transpose(1, 2))


def aligned_views(x: torch.Tensor, layout: PairLayout) -> torch.Tensor:
    """The aligned head's comparison views of a cell output (B, C, L): (B, 4, C). Every token is compared with its
    soft match in the other sentence (:func:`soft_align`), |a - b~| and a * b~ for A's tokens, |b - a~| and
    b * a~ for B's, and each comparison is averaged over its sentence (ESIM's local inference, mean-pooled).
    A word of B that also occurs in A gets an a~ close to itself wherever it stands, which the pooled means of A
    and B alone wash out once the sentences are longer than a few words."""
    b_hat, a_hat = soft_align(x, layout)
    return torch.stack([
        masked_mean((x - b_hat).abs(), layout.mask_a), masked_mean(x * b_hat, layout.mask_a),
        masked_mean((x - a_hat).abs(), layout.mask_b), masked_mean(x * a_hat, layout.mask_b),
    ], 1)


def pool_views(x: torch.Tensor, layout: PairLayout, pair_head: str = DEFAULT_PAIR_HEAD) -> torch.Tensor:
    """Pooled views of a cell output (B, C, L): (B, P, C). Masked means over each view (the sentence, or A and
    B); for pairs with the ``aligned`` head followed by the 4 comparison views of :func:`aligned_views`."""
    views = layout.views().to(x.dtype)  # (B, P, L)
    pooled = torch.einsum("bcl,bpl->bpc", x, views) / views.sum(-1, keepdim=True).clamp(min=1.0)
    if layout.pair and check_pair_head(pair_head) == "aligned":
        pooled = torch.cat([pooled, aligned_views(x, layout)], 1)
    return pooled


def pair_features(pooled: torch.Tensor) -> torch.Tensor:
    """(B, P, C) -> features: tanh(mean) for one view; for pairs [u, v, |u - v|, u * v] of u = tanh(A),
    v = tanh(B), followed (aligned head, P = 6) by tanh of the 4 comparison views. P is a static shape."""
    h = torch.tanh(pooled)
    if h.size(1) == 1:
        return h[:, 0]
    u, v = h[:, 0], h[:, 1]
    return torch.cat([u, v, (u - v).abs(), u * v, h[:, 2:].flatten(1)], -1)


def feature_size(hidden: int, pair: bool, pair_head: str = DEFAULT_PAIR_HEAD) -> int:
    """Width of :func:`pair_features`: C, 4C (pooled pair head) or 8C (aligned pair head)."""
    return hidden if not pair else (2 + num_views(pair, pair_head)) * hidden


class PooledClassifier(nn.Module):
    """Softmax-weighted sum of the pooled cell outputs, tanh, dropout, dense (AdaBERT code); pairs are pooled
    per sentence (and, with the aligned head, compared token by token) and compared (:func:`pair_features`).
    Takes pooled states, so every depth reuses them."""

    def __init__(self, num_layers: int, hidden: int, num_labels: int, dropout: float, pair: bool = False,
                 pair_head: str = DEFAULT_PAIR_HEAD) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(feature_size(hidden, pair, pair_head), num_labels)

    def forward(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        """``pooled``: the first K cells' (B, P, C) views -> logits (B, num_labels) of a depth-K model."""
        weights = torch.softmax(self.layer_logits[: len(pooled)], 0)
        mixed = sum(w * p for w, p in zip(weights, pooled))  # (B, P, C)
        return self.dense(self.dropout(pair_features(mixed)))
