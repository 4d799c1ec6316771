"""The derived AdaBERT student as a Hugging Face model: config, embedding, cells, classifier, forward.

Reads top to bottom:  token ids -> pair layout (A and B at their own offsets, B's positions restarted) ->
factorized embeddings -> K stacked cells of the searched genotype -> attention-pooled classifier (pairs: A and
B pooled separately and compared, and with the default ``pair_head="aligned"`` also compared token by token
through a soft alignment) -> for regression, back to the label scale. After ``import bertnas`` the ``adabert``
model type is registered, so ``AutoModelForSequenceClassification.from_pretrained(dir)`` and ``pipeline(...)``
load it.

Shapes: B batch, L tokens, C hidden channels. Cells work channels-first, (B, C, L), as Conv1d wants.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..training.losses import task_loss
from .blocks import (DEFAULT_PAIR_HEAD, LEGACY_PAIR_HEAD, PooledClassifier, cell_inputs, check_pair_head,
                     pair_layout, pool_views)
from .genotype import NUM_INPUTS, NUM_NODES, Genotype
from .ops import create_op


class AdaBertConfig(PretrainedConfig):
    """Architecture of a derived AdaBERT student; saved as ``config.json`` next to the weights.

    Args:
        vocab_size: rows of the word embedding (the teacher tokenizer's vocabulary).
        max_position_embeddings: longest input the position table covers.
        hidden_size: channels of the embedding and of every cell (AdaBERT: 128).
        genotype: the searched cell and depth, as ``Genotype.to_dict()``.
        pair_input: True for sentence-pair tasks: the first cell then reads sentence A and B separately and
            the classifier compares A and B pooled separately.
        pair_head: how a pair model compares A and B (``blocks.PAIR_HEADS``): ``"aligned"`` (default for new
            models) adds pooled token-level comparisons of each token with its soft-aligned match in the other
            sentence; ``"pooled"`` compares the pooled sentences only. A saved ``config.json`` without the key
            (saved before the choice existed) loads as ``"pooled"``, so it predicts as it did. Unused for single
            sentences.
        pair_match: pairs only: add a learned vector to every token whose id also occurs in the other sentence
            (``blocks.exact_match``); new pair models have it, a saved config without the key loads without it.
        dropout: dropout on the embedding and before the classifier.
        sep_token_id: used to split a pair when the tokenizer gives no ``token_type_ids``.
        target_mean, target_std: regression only: the model is trained on standardized targets and maps its
            output back with ``output * target_std + target_mean`` (training statistics).
    """

    model_type = "adabert"

    def __init__(
        self,
        vocab_size: int = 30522,
        max_position_embeddings: int = 512,
        hidden_size: int = 128,
        genotype: dict | None = None,
        pair_input: bool = False,
        pair_head: str = DEFAULT_PAIR_HEAD,
        pair_match: bool = True,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        pad_token_id: int = 0,
        sep_token_id: int | None = None,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_size = hidden_size
        self.genotype = genotype or {
            "depth": 1,
            "edges": [{"node": n, "source": 0, "op": "conv_3"} for n in range(NUM_NODES)],
        }
        self.pair_input = pair_input
        self.pair_head = check_pair_head(pair_head)
        self.pair_match = bool(pair_match)
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.sep_token_id = sep_token_id
        self.target_mean = float(target_mean)
        self.target_std = float(target_std)
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """As ``PretrainedConfig.from_dict`` (which loading goes through), except that a config saved before a
        pair option existed gets what it was trained with: ``pair_head="pooled"``, ``pair_match=False``."""
        if "pair_head" not in config_dict and "pair_head" not in kwargs:
            config_dict = {**config_dict, "pair_head": LEGACY_PAIR_HEAD}
        if "pair_match" not in config_dict and "pair_match" not in kwargs:
            config_dict = {**config_dict, "pair_match": False}
        return super().from_dict(config_dict, **kwargs)

    @property
    def architecture(self) -> Genotype:
        return Genotype.from_dict(self.genotype)


class AdaBertEmbeddings(nn.Module):
    """Word + position embeddings at the student's hidden size (the teacher's, projected and folded); pairs with
    ``pair_match`` add a learned vector on the tokens the other sentence shares (row 1 of a 2-row table)."""

    def __init__(self, config: AdaBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        use_match = config.pair_input and config.pair_match
        self.match_embeddings = nn.Embedding(2, config.hidden_size) if use_match else None
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor,
                match: torch.Tensor | None = None) -> torch.Tensor:
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)  # (B, L, C)
        if self.match_embeddings is not None:
            x = x + self.match_embeddings(match)
        x = self.dropout(self.norm(x)) * mask[..., None]
        return x.transpose(1, 2)  # (B, C, L)


class AdaBertCell(nn.Module):
    """One derived cell: each intermediate node sums its kept edges; the output attends over the nodes."""

    def __init__(self, genotype: Genotype, hidden: int) -> None:
        super().__init__()
        self.inputs = [genotype.ops_of(node) for node in range(NUM_NODES)]  # [(source, op), ...] per node
        self.ops = nn.ModuleDict(
            {f"{node}_{source}": create_op(op, hidden) for node, source, op in genotype.edges}
        )
        self.node_logits = nn.Parameter(torch.zeros(NUM_NODES))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = [s0, s1]  # each (B, C, L); mask (B, 1, L) keeps padding at zero after every node
        for node, edges in enumerate(self.inputs):
            states.append(sum(self.ops[f"{node}_{source}"](states[source]) for source, _ in edges) * mask)
        weights = torch.softmax(self.node_logits, 0)
        return sum(w * h for w, h in zip(weights, states[NUM_INPUTS:]))


class AdaBertForSequenceClassification(PreTrainedModel):
    """The searched student: embeddings -> ``depth`` copies of the searched cell -> pooled classifier."""

    config_class = AdaBertConfig
    base_model_prefix = "adabert"
    main_input_name = "input_ids"

    def __init__(self, config: AdaBertConfig) -> None:
        super().__init__(config)
        genotype = config.architecture
        self.embeddings = AdaBertEmbeddings(config)
        self.cells = nn.ModuleList([AdaBertCell(genotype, config.hidden_size) for _ in range(genotype.depth)])
        self.classifier = PooledClassifier(genotype.depth, config.hidden_size, config.num_labels, config.dropout,
                                           pair=config.pair_input, pair_head=config.pair_head)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings.word_embeddings = value

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def pooled_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(pooled views (B, P, C) of every cell, cell outputs (B, C, L)); training's distillation heads read the
        pooled views, the classifier turns them into logits on the standardized scale."""
        layout = pair_layout(input_ids, attention_mask, token_type_ids, self.config.pair_input,
                             self.config.sep_token_id)
        x = self.embeddings(input_ids, layout.mask, layout.position_ids, layout.match)  # (B, C, L)
        s0, s1 = cell_inputs(x, layout)
        cell_mask = layout.mask[:, None, :].to(x.dtype)
        states = []
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, cell_mask)
            states.append(s1)
        return [pool_views(h, layout, self.config.pair_head) for h in states], states

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        pooled, states = self.pooled_states(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(pooled)  # (B, num_labels)
        if self.config.num_labels == 1:  # regression: trained on standardized targets
            logits = logits * self.config.target_std + self.config.target_mean

        loss = None
        if labels is not None:
            loss = task_loss(logits, labels, regression=self.config.num_labels == 1)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=tuple(states) if output_hidden_states else None
        )


def register_auto_classes() -> None:
    """Make ``AutoConfig``/``AutoModelForSequenceClassification`` know the ``adabert`` model type."""
    try:
        AutoConfig.register("adabert", AdaBertConfig)
    except ValueError:
        pass  # already registered
    try:
        AutoModelForSequenceClassification.register(AdaBertConfig, AdaBertForSequenceClassification)
    except ValueError:
        pass
