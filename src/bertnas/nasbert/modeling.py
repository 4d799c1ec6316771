"""A selected NAS-BERT student as a Hugging Face model (``model_type = "nasbert"``).

Reads top to bottom: token ids -> factorized embedding (V x E table, E -> T up-projection, positions and
token types at the teacher's size T, LayerNorm) -> adapter T -> h1 -> block 1's layers -> adapter h1 -> h2
-> ... -> block N's layers -> adapter hN -> T -> (classifier: tanh pooler on [CLS] -> dropout -> dense).
Every adapter between blocks is the supernet's ``out`` adapter of one block folded into the ``in`` adapter
of the next (one linear map). Shapes: B batch, L tokens, C a block's hidden size, T the teacher's.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput

from ..training.losses import task_loss
from .space import Architecture, create_op


class NasBertConfig(PretrainedConfig):
    """Architecture of a NAS-BERT student; saved as ``config.json`` next to the weights.

    Args:
        vocab_size: rows of the word table (the teacher tokenizer's vocabulary).
        max_position_embeddings: longest input the position table covers.
        type_vocab_size: token types (2: sentence A and B).
        hidden_size: the teacher's hidden size T (embedding output and final output are at T).
        architecture: the searched architecture as text, ``E=128 | 256:mha,ffn | 128:sep3,identity``.
        dropout: dropout inside ops, on the embedding and before the classifier.
        pooling: what the classifier reads: "cls" (the first token, as BERT) or "mean" (the mean of the real
            tokens). A model without attention has no op that carries the sentence to [CLS] (its convolutions see
            a few neighbours), so :func:`pooling_for` gives such models "mean".
    """

    model_type = "nasbert"

    def __init__(
        self,
        vocab_size: int = 30522,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        hidden_size: int = 384,
        architecture: str = "E=128 | 128:mha,ffn",
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        pad_token_id: int = 0,
        pooling: str = "cls",
        **kwargs,
    ) -> None:
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.hidden_size = hidden_size
        self.architecture = architecture
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    def parsed_architecture(self) -> Architecture:
        return Architecture.parse(self.architecture)


def pooling_for(arch: Architecture) -> str:
    """"cls" when some block attends (attention carries every token to [CLS]), else "mean"."""
    return "cls" if any("mha" in b.ops[: b.depth] for b in arch.blocks) else "mean"


class NasBertEmbeddings(nn.Module):
    """Factorized embedding: word ids -> E -> T, plus positions and token types at T, LayerNorm."""

    def __init__(self, config: NasBertConfig) -> None:
        super().__init__()
        e, t = config.parsed_architecture().embedding_size, config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        self.word_projection = nn.Linear(e, t, bias=False)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, t)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, t)
        self.norm = nn.LayerNorm(t, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        x = self.word_projection(self.word_embeddings(input_ids))  # (B, L, T)
        x = x + self.position_embeddings(positions)[None] + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(x))


class NasBertModel(PreTrainedModel):
    """The encoder: embedding, then each block's layers with linear adapters between sizes."""

    config_class = NasBertConfig
    base_model_prefix = "nasbert"
    main_input_name = "input_ids"

    def __init__(self, config: NasBertConfig) -> None:
        super().__init__(config)
        arch = config.parsed_architecture()
        sizes = [config.hidden_size] + [b.hidden for b in arch.blocks] + [config.hidden_size]
        self.embeddings = NasBertEmbeddings(config)
        self.adapters = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))  # N + 1 maps
        for adapter in self.adapters:
            adapter.is_adapter = True  # initialised to keep the signal's scale (see _init_weights)
        self.blocks = nn.ModuleList(
            nn.ModuleList(create_op(op, block.hidden, config.dropout) for op in block.ops[: block.depth])
            for block in arch.blocks
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings.word_embeddings = value

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation (normal, std 0.02), except the adapters between sizes: std 1/sqrt(fan-in), which
        keeps the signal's scale. No norm follows the last adapter, so at std 0.02 a model built from scratch saw
        its input only through a 1e-4 signal and could sit at chance for many epochs. (Selected models and
        baselines load trained weights; this is for models trained from scratch.)"""
        if isinstance(module, nn.Linear) and getattr(module, "is_adapter", False):
            nn.init.normal_(module.weight, std=module.in_features ** -0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)  # (B, L, T)
        states = [x]
        h = self.adapters[0](x)  # (B, L, C1)
        for n, block in enumerate(self.blocks):
            for layer in block:
                h = layer(h, attention_mask)
            h = self.adapters[n + 1](h)  # (B, L, C{n+1}); the last adapter maps to T
            states.append(h)
        return BaseModelOutput(last_hidden_state=h, hidden_states=tuple(states) if output_hidden_states else None)


class NasBertForSequenceClassification(PreTrainedModel):
    """Encoder -> tanh pooler on the first token ([CLS]; or the mean of the real tokens, ``config.pooling``) ->
    dropout -> dense, as BERT's classifier."""

    config_class = NasBertConfig
    base_model_prefix = "nasbert"
    main_input_name = "input_ids"

    def __init__(self, config: NasBertConfig) -> None:
        super().__init__(config)
        self.nasbert = NasBertModel(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.nasbert.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.nasbert.embeddings.word_embeddings = value

    _init_weights = NasBertModel._init_weights

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        out = self.nasbert(input_ids, attention_mask, token_type_ids, output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        if getattr(self.config, "pooling", "cls") == "mean":
            mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids))[..., None].to(hidden.dtype)
            first = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, T): the mean of the real tokens
        else:
            first = hidden[:, 0]  # (B, T): [CLS]
        pooled = torch.tanh(self.pooler(first))
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = task_loss(logits, labels, regression=self.config.num_labels == 1)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


def register_auto_classes() -> None:
    """Make ``AutoConfig``/``AutoModel``/``AutoModelForSequenceClassification`` know ``nasbert``."""
    for register in (lambda: AutoConfig.register("nasbert", NasBertConfig),
                     lambda: AutoModel.register(NasBertConfig, NasBertModel),
                     lambda: AutoModelForSequenceClassification.register(NasBertConfig, NasBertForSequenceClassification)):
        try:
            register()
        except ValueError:
            pass  # already registered
