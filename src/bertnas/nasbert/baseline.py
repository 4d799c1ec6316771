"""The paper's baseline: a hand-designed small BERT of the same size, trained the same way.

Its shape is picked by hand-design rules, not search: BERT's own proportions (heads = hidden / 64,
FFN = 4 x hidden), depth from {2, 4, 6} and hidden a multiple of 64, the pair whose parameter count is
closest to the target (ties: deeper). Its word table is the teacher's, reduced to its hidden size by the
same truncated SVD the NAS-BERT students get; positions and token types are projected on the same basis.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

from ..measure.profile import count_params
from ..utils import atomic_dir
from .costs import TeacherShape
from .select import factorize_embedding


def bert_params(shape: TeacherShape, layers: int, hidden: int, num_labels: int = 2) -> int:
    v, p, ty, h = shape.vocab_size, shape.max_positions, shape.type_vocab_size, hidden
    emb = (v + p + ty) * h + 2 * h
    layer = 4 * h * h + 4 * h + 2 * h + 8 * h * h + 5 * h + 2 * h
    return emb + layers * layer + (h * h + h) + (h * num_labels + num_labels)


def baseline_shape(shape: TeacherShape, target_params: int) -> tuple[int, int]:
    """(layers, hidden) of the hand-designed BERT closest in size to ``target_params``."""
    options = [(layers, hidden) for layers in (2, 4, 6) for hidden in range(64, 1025, 64)]
    return min(options, key=lambda lh: (abs(bert_params(shape, *lh) - target_params), -lh[0]))


def build_baseline(teacher: torch.nn.Module, tokenizer, target_params: int, out: str | Path) -> dict:
    """Create and save the baseline BERT classifier (untrained encoder, teacher-derived embeddings)."""
    shape = TeacherShape.of(teacher.config)
    layers, hidden = baseline_shape(shape, target_params)
    config = BertConfig(vocab_size=shape.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                        max_position_embeddings=shape.max_positions, type_vocab_size=shape.type_vocab_size,
                        pad_token_id=int(teacher.config.pad_token_id or 0), num_labels=2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    emb = teacher.embeddings
    with torch.no_grad():
        table, proj = factorize_embedding(emb.word_embeddings.weight.detach().float(), hidden)
        model.bert.embeddings.word_embeddings.weight.copy_(table)
        model.bert.embeddings.position_embeddings.weight.copy_(emb.position_embeddings.weight @ proj.T)
        model.bert.embeddings.token_type_embeddings.weight.copy_(emb.token_type_embeddings.weight @ proj.T)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {"layers": layers, "hidden": hidden, "params": count_params(model)}
