"""Size and latency of a NAS-BERT student from its architecture alone, without building it.

A student is the sum of its parts: factorized embedding, adapters, each block's ops, classifier head. The
same part list gives its parameters (closed form) and its predicted latency (the latency table), so the
selection can price millions of combinations cheaply. ``count_params`` of a built model equals
:func:`model_params` (checked in the tests).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..measure.latency_table import LatencyTable, OpSpec
from .space import Architecture, BlockPath, SpaceConfig, create_op, linear_params, op_params


@dataclass
class TeacherShape:
    """What a student inherits from its teacher's shape: vocabulary, positions, token types, hidden size."""

    vocab_size: int
    max_positions: int
    type_vocab_size: int
    hidden: int

    @classmethod
    def of(cls, config) -> "TeacherShape":
        return cls(int(config.vocab_size), int(config.max_position_embeddings), int(getattr(config, "type_vocab_size", 2)),
                   int(config.hidden_size))


def embedding_params(e: int, shape: TeacherShape) -> int:
    t = shape.hidden
    return shape.vocab_size * e + e * t + shape.max_positions * t + shape.type_vocab_size * t + 2 * t


def head_params(shape: TeacherShape, num_labels: int = 2) -> int:
    return linear_params(shape.hidden, shape.hidden) + linear_params(shape.hidden, num_labels)


def adapter_sizes(arch: Architecture, t: int) -> list[tuple[int, int]]:
    sizes = [t] + [b.hidden for b in arch.blocks] + [t]
    return list(zip(sizes[:-1], sizes[1:]))


def model_params(arch: Architecture, shape: TeacherShape, num_labels: int = 2) -> int:
    """Parameters of the whole classifier (embedding included), as saved."""
    return (embedding_params(arch.embedding_size, shape) + head_params(shape, num_labels)
            + sum(linear_params(a, b) for a, b in adapter_sizes(arch, shape.hidden))
            + sum(op_params(op, b.hidden) for b in arch.blocks for op in b.ops))


def block_parts(path: BlockPath) -> list[tuple[str, int]]:
    return [(op, path.hidden) for op in path.ops[: path.depth]]


def model_parts(arch: Architecture, t: int) -> list[tuple[str, int | str]]:
    """Every timed part of a student, in forward order."""
    parts: list[tuple[str, int | str]] = [("embedding", f"{arch.embedding_size}>{t}")]
    adapters = adapter_sizes(arch, t)
    for n, block in enumerate(arch.blocks):
        parts.append(("linear", f"{adapters[n][0]}>{adapters[n][1]}"))
        parts += block_parts(block)
    parts.append(("linear", f"{adapters[-1][0]}>{adapters[-1][1]}"))
    parts.append(("head", t))
    return parts


def predict_latency(table: LatencyTable, arch: Architecture, t: int, seq_len: int, batch: int) -> float:
    return table.predict(model_parts(arch, t), seq_len, batch)


class _Head(nn.Module):
    """The classifier head alone (pooler on [CLS], classifier), for timing."""

    def __init__(self, t: int) -> None:
        super().__init__()
        self.pooler, self.classifier = nn.Linear(t, t), nn.Linear(t, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


def _hidden_inputs(c: int, with_mask: bool):
    def make(batch: int, seq_len: int) -> tuple:
        x = torch.randn(batch, seq_len, c)
        return (x, torch.ones(batch, seq_len, dtype=torch.long)) if with_mask else (x,)
    return make


def block_op_specs(space: SpaceConfig) -> list[OpSpec]:
    """Every searchable op at every hidden size of the space (what a block's path is made of)."""
    return [OpSpec(op, h, (lambda op=op, h=h: create_op(op, h, 0.0)), _hidden_inputs(h, True))
            for h in space.hidden_sizes for op in space.ops]


def path_latencies(table: LatencyTable, paths: list[BlockPath], seq_len: int, batch: int) -> dict[BlockPath, float]:
    """Each path's layers' summed latency from the table (adapters excluded, as in the bins' parameters)."""
    return {p: table.sum_of_parts(block_parts(p), seq_len, batch) for p in paths}


def op_specs(space: SpaceConfig, shape: TeacherShape, embedding_sizes: list[int]) -> list[OpSpec]:
    """Every part any student of ``space`` can contain: ops x hidden sizes, adapters, embeddings, head."""
    from .modeling import NasBertConfig, NasBertEmbeddings

    t = shape.hidden
    specs = block_op_specs(space)
    pairs = {(t, h) for h in space.hidden_sizes} | {(h, t) for h in space.hidden_sizes}
    pairs |= {(a, b) for a in space.hidden_sizes for b in space.hidden_sizes}
    specs += [OpSpec("linear", f"{a}>{b}", (lambda a=a, b=b: nn.Linear(a, b)), _hidden_inputs(a, False)) for a, b in sorted(pairs)]

    def embedding(e: int) -> nn.Module:
        cfg = NasBertConfig(vocab_size=shape.vocab_size, max_position_embeddings=shape.max_positions,
                            type_vocab_size=shape.type_vocab_size, hidden_size=t,
                            architecture=f"E={e} | {space.hidden_sizes[0]}:{space.ops[0]}")
        return NasBertEmbeddings(cfg)

    def ids(batch: int, seq_len: int) -> tuple:
        x = torch.randint(5, shape.vocab_size, (batch, seq_len))
        return x, torch.zeros_like(x)

    specs += [OpSpec("embedding", f"{e}>{t}", (lambda e=e: embedding(e)), ids) for e in embedding_sizes]
    specs.append(OpSpec("head", t, lambda: _Head(t), _hidden_inputs(t, False)))
    return specs
