"""The derived AdaBERT student as a Hugging Face model: config, embedding, cells, classifier, forward.

Reads top to bottom:  token ids -> (sentence A, sentence B) -> factorized embeddings -> K stacked cells of
the searched genotype -> attention-pooled classifier. After ``import bertnas`` the ``adabert`` model type is
registered, so ``AutoModelForSequenceClassification.from_pretrained(dir)`` and ``pipeline(...)`` load it.

Shapes: B batch, L tokens, C hidden channels. Cells work channels-first, (B, C, L), as Conv1d wants.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..spaces.genotype import NUM_INPUTS, NUM_NODES, Genotype
from ..spaces.ops import create_op


class AdaBertConfig(PretrainedConfig):
    """Architecture of a derived AdaBERT student; saved as ``config.json`` next to the weights.

    Args:
        vocab_size: rows of the word embedding (the teacher tokenizer's vocabulary).
        max_position_embeddings: longest input the position table covers.
        hidden_size: channels of the embedding and of every cell (AdaBERT: 128).
        genotype: the searched cell and depth, as ``Genotype.to_dict()``.
        pair_input: True for sentence-pair tasks: the first cell then reads sentence A and B separately.
        dropout: dropout on the embedding and before the classifier.
        sep_token_id: used to split a pair when the tokenizer gives no ``token_type_ids``.
    """

    model_type = "adabert"

    def __init__(
        self,
        vocab_size: int = 30522,
        max_position_embeddings: int = 512,
        hidden_size: int = 128,
        genotype: dict | None = None,
        pair_input: bool = False,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        pad_token_id: int = 0,
        sep_token_id: int | None = None,
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
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.sep_token_id = sep_token_id
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @property
    def architecture(self) -> Genotype:
        return Genotype.from_dict(self.genotype)


def split_pair(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    pair_input: bool,
    sep_token_id: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn a BERT-style encoded batch into (ids_a, mask_a, ids_b, mask_b), each (B, L').

    Single-sentence tasks feed the same sentence to both cell inputs. Pairs come encoded as
    ``[CLS] A [SEP] B [SEP]`` with token types 0/1; B is shifted to start at position 0 so that each
    sentence is embedded on its own, and both are cut to the longest of the two.
    """
    if not pair_input:
        return input_ids, attention_mask, input_ids, attention_mask
    if token_type_ids is None:
        token_type_ids = _types_from_sep(input_ids, attention_mask, sep_token_id)
    else:
        # RoBERTa-style tokenizers give all-zero types even for pairs: split those rows at [SEP] instead
        no_b = ((token_type_ids == 1) & attention_mask.bool()).sum(1, keepdim=True) == 0
        if bool(no_b.any()) and sep_token_id is not None:
            token_type_ids = torch.where(no_b, _types_from_sep(input_ids, attention_mask, sep_token_id), token_type_ids)
    if token_type_ids is None:
        raise ValueError("pair input needs token_type_ids or config.sep_token_id to find sentence B")
    mask_b = attention_mask.bool() & (token_type_ids == 1)
    mask_a = attention_mask.bool() & (token_type_ids == 0)
    len_a, len_b = mask_a.sum(1), mask_b.sum(1)  # (B,)
    length = int(torch.maximum(len_a, len_b).max().clamp(min=1))
    positions = torch.arange(length, device=input_ids.device)  # (L',)
    src = (positions[None, :] + len_a[:, None]).clamp(max=input_ids.size(1) - 1)  # (B, L') where B starts
    ids_b = input_ids.gather(1, src)
    keep_b = positions[None, :] < len_b[:, None]
    ids_a = input_ids[:, :length] if input_ids.size(1) >= length else F.pad(input_ids, (0, length - input_ids.size(1)))
    keep_a = positions[None, :] < len_a[:, None]
    return ids_a * keep_a, keep_a.long(), ids_b * keep_b, keep_b.long()


def _types_from_sep(input_ids: torch.Tensor, attention_mask: torch.Tensor, sep_token_id: int | None) -> torch.Tensor | None:
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


class AdaBertEmbeddings(nn.Module):
    """Word + position embeddings at the student's hidden size (the teacher's, projected and folded)."""

    def __init__(self, config: AdaBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]  # (B, L, C)
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


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of (B, C, L) where mask (B, L) is 1; -> (B, C)."""
    mask = mask.to(x.dtype)[:, None, :]
    return (x * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


class PooledClassifier(nn.Module):
    """Softmax-weighted sum of the cell outputs, mean over tokens, tanh, dropout, dense (AdaBERT code)."""

    def __init__(self, num_layers: int, hidden: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden, num_labels)

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.layer_logits[: len(states)], 0)
        mixed = sum(w * h for w, h in zip(weights, states))  # (B, C, L)
        return self.dense(self.dropout(torch.tanh(masked_mean(mixed, mask))))


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
        self.classifier = PooledClassifier(genotype.depth, config.hidden_size, config.num_labels, config.dropout)
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
        ids_a, mask_a, ids_b, mask_b = split_pair(
            input_ids, attention_mask, token_type_ids, self.config.pair_input, self.config.sep_token_id
        )
        mask = (mask_a.bool() | mask_b.bool()).long()  # (B, L')
        s0, s1 = self.embeddings(ids_a, mask_a), self.embeddings(ids_b, mask_b)  # (B, C, L') each
        states = []
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, mask[:, None, :].to(s1.dtype))
            states.append(s1)
        logits = self.classifier(states, mask)  # (B, num_labels)

        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
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
