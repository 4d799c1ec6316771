"""AdaBERT's search-time network: every edge holds all candidate ops, every depth 1..K_max is possible.

The architecture weights are NOT part of this module (see ``adabert.architecture.Architecture``); the
forward pass takes sampled one-hot op weights (9 edges x 10 ops, shared by all cells) and how many cells to
run, and returns every cell's pooled output, so the loss of each depth 1..n can be scored from one pass
(:meth:`AdaBertSupernet.logits`). With ``sampled_only`` (GDAS style) each edge runs just its sampled op, about
an order of magnitude cheaper than running all ten; the straight-through weight still carries the gradient to
the logits. Convs use non-affine BatchNorm here; the derived student gets fresh affine parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import (DEFAULT_PAIR_HEAD, PairLayout, PooledClassifier, cell_inputs, check_pair_head, pair_layout,
                     pool_views)
from .genotype import EDGES, NUM_EDGES, NUM_INPUTS, NUM_NODES, edge_index
from .ops import PRIMITIVES, create_op


class ProjectedEmbeddings(nn.Module):
    """The teacher's embedding tables (frozen) projected to the student's hidden size by learned maps.

    After search the projections are folded into plain tables (:meth:`folded`), so the student stores a
    (vocab x hidden) table and never needs the teacher again. ``pair_match`` adds the learned exact-match
    vectors of a pair model (``blocks.exact_match``; copied to the student as they are).
    """

    def __init__(
        self,
        word_table: torch.Tensor,
        position_table: torch.Tensor | None,
        hidden: int,
        dropout: float,
        max_positions: int = 512,
        eps: float = 1e-12,
        pair_match: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("word_table", word_table.float(), persistent=False)  # (V, H_t)
        self.word_proj = nn.Linear(word_table.size(1), hidden, bias=False)
        if position_table is not None:
            self.register_buffer("position_table", position_table.float(), persistent=False)  # (P, H_t)
            self.position_proj = nn.Linear(position_table.size(1), hidden, bias=False)
            self.max_positions = position_table.size(0)
        else:  # teacher without absolute positions: learn them from scratch
            self.position_table = None
            self.position_embeddings = nn.Embedding(max_positions, hidden)
            self.max_positions = max_positions
        self.match_embeddings = None
        if pair_match:
            self.match_embeddings = nn.Embedding(2, hidden)
            nn.init.normal_(self.match_embeddings.weight, std=0.02)  # the scale of BERT's token-type table
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def positions(self, length: int) -> torch.Tensor:
        if self.position_table is None:
            return self.position_embeddings.weight[:length]
        return self.position_proj(self.position_table[:length])  # (L, C)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor | None = None,
                match: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) ids -> (B, C, L); positions 0..L-1 unless ``position_ids`` (pairs restart B's); ``match`` (B, L)
        the exact-match flags when the module has ``pair_match``."""
        if position_ids is None:
            position_ids = torch.arange(input_ids.size(1), device=input_ids.device)[None].expand_as(input_ids)
        length = min(input_ids.size(1), self.max_positions)  # covers every position id, read without a host sync
        # F.embedding, not positions[position_ids]: the backward of advanced indexing accumulates with atomic
        # adds on a multi-threaded CPU, so the position gradients (and the whole search) changed run to run;
        # the embedding backward adds in a fixed order (tests/test_reproducible.py)
        x = self.word_proj(self.word_table[input_ids]) + nn.functional.embedding(position_ids, self.positions(length))
        if self.match_embeddings is not None:
            x = x + self.match_embeddings(match)
        x = self.dropout(self.norm(x)) * mask[..., None]
        return x.transpose(1, 2)  # (B, C, L)

    @torch.no_grad()
    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(vocab x hidden, positions x hidden) tables equal to what forward computes before the norm."""
        return self.word_proj(self.word_table), self.positions(self.max_positions)


class MixedOp(nn.Module):
    """All candidate ops of one edge; the output is the sampled op (or the weighted sum of all)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.ops = nn.ModuleDict({name: create_op(name, hidden, affine=False) for name in PRIMITIVES})

    def forward(self, x: torch.Tensor, weights: torch.Tensor, sampled_only: bool, index: int | None = None) -> torch.Tensor:
        """``index``: the sampled op, when the caller has read it already (one read per step for every edge:
        reading it here would wait for the device once per edge and cell)."""
        if sampled_only:
            i = int(weights.argmax()) if index is None else index
            return weights[i] * self.ops[PRIMITIVES[i]](x)
        return sum(w * op(x) for w, op in zip(weights, self.ops.values()))


class SearchCell(nn.Module):
    """A cell with a mixed op on each of its 9 edges; node outputs combined by learned attention."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList([MixedOp(hidden) for _ in range(NUM_EDGES)])
        self.node_logits = nn.Parameter(torch.zeros(NUM_NODES))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, mask: torch.Tensor, op_weights: torch.Tensor,
                sampled_only: bool, op_index: list[int] | None = None) -> torch.Tensor:
        states = [s0, s1]  # (B, C, L) each; mask (B, 1, L)
        for node in range(NUM_NODES):
            states.append(sum(
                self.edges[e](states[src], op_weights[e], sampled_only, op_index[e] if op_index is not None else None)
                for src in range(NUM_INPUTS + node) for e in [edge_index(node, src)]
            ) * mask)
        weights = torch.softmax(self.node_logits, 0)
        return sum(w * h for w, h in zip(weights, states[NUM_INPUTS:]))


@dataclass
class SupernetOutput:
    pooled: list[torch.Tensor]  # per cell 1..n: pooled views (B, P, C), P = 1, or for pairs 2 (A, B) + 4 aligned
    states: list[torch.Tensor]  # per cell 1..n: outputs (B, C, L)
    layout: PairLayout


class AdaBertSupernet(nn.Module):
    """Embeddings -> up to K_max search cells -> one pooled classifier shared by every depth. ``pair_head``: how
    pairs are compared (``blocks.PAIR_HEADS``); the derived student's config must name the same head."""

    def __init__(
        self,
        embeddings: ProjectedEmbeddings,
        hidden: int,
        k_max: int,
        num_labels: int,
        pair_input: bool,
        dropout: float,
        sep_token_id: int | None,
        pair_head: str = DEFAULT_PAIR_HEAD,
    ) -> None:
        super().__init__()
        self.hidden, self.k_max, self.num_labels = hidden, k_max, num_labels
        self.pair_input, self.sep_token_id, self.dropout_p = pair_input, sep_token_id, dropout
        self.pair_head = check_pair_head(pair_head)
        self.embeddings = embeddings
        self.cells = nn.ModuleList([SearchCell(hidden) for _ in range(k_max)])
        self.classifier = PooledClassifier(k_max, hidden, num_labels, dropout, pair=pair_input, pair_head=pair_head)

    @property
    def pair_match(self) -> bool:
        """Whether tokens shared by A and B get the exact-match vectors (``ProjectedEmbeddings(pair_match=...)``)."""
        return self.pair_input and self.embeddings.match_embeddings is not None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        op_weights: torch.Tensor,
        cells: int,
        sampled_only: bool = True,
        grad_cells: int | None = None,
        op_index: list[int] | None = None,
    ) -> SupernetOutput:
        """Run the first ``cells`` cells with op weights (9, 10); score any depth <= ``cells`` with :meth:`logits`.
        Cells after the first ``grad_cells`` (default: all) run without autograd: their outputs only score
        deeper depths, whose losses the caller uses as values. ``op_index``: each edge's sampled op, already read
        (else each edge reads its own)."""
        layout = pair_layout(input_ids, attention_mask, token_type_ids, self.pair_input, self.sep_token_id)
        s0, s1 = cell_inputs(self.embeddings(input_ids, layout.mask, layout.position_ids, layout.match), layout)
        cell_mask = layout.mask[:, None, :].to(s1.dtype)
        states = []
        grad_cells = cells if grad_cells is None else grad_cells
        pooled = []
        for k, cell in enumerate(self.cells[:cells]):
            with torch.set_grad_enabled(torch.is_grad_enabled() and k < grad_cells):
                s0, s1 = s1, cell(s0, s1, cell_mask, op_weights, sampled_only, op_index)
                pooled.append(pool_views(s1, layout, self.pair_head))
            states.append(s1)
        return SupernetOutput(pooled=pooled, states=states, layout=layout)

    def logits(self, out: SupernetOutput, depth: int) -> torch.Tensor:
        """Logits (B, num_labels) of the depth-``depth`` model: the classifier over its first cells."""
        return self.classifier(out.pooled[:depth])


__all__ = ["AdaBertSupernet", "MixedOp", "ProjectedEmbeddings", "SearchCell", "SupernetOutput", "EDGES"]
