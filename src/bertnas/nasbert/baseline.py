"""The paper's baseline, made fair: a hand-designed BERT of the same size, trained exactly like NAS-BERT models.

A hand-designed BERT here is one fixed path of the same block structure: every block holds k BERT layers
(``mha, ffn`` pairs; heads = hidden / 64, FFN 4 x hidden) at one hidden size H, a multiple of 64 up to the
teacher's, with the selected model's embedding size. It gets what the NAS-BERT models get: the same
block-wise distillation code (:func:`~.train.train_supernet` on a one-path space), the same corpus,
epochs, batch size, learning rate and seed, then the same SVD embedding and adapter folding
(:func:`~.select.build_student`), and later the same pre-training and fine-tuning KD. Two rows per
selected model: the shape closest in parameters and the shape closest in predicted latency.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from ..measure.latency_table import LatencyTable, measure_table
from .config import SupernetSettings
from .costs import TeacherShape, model_params, op_specs, predict_latency
from .distill import BlockStates
from .space import Architecture, BlockPath, SpaceConfig, Supernet
from .train import train_supernet

logger = logging.getLogger("bertnas")
BERT_OPS = ("mha", "ffn")
MAX_LAYERS_PER_BLOCK = 3


def bert_architecture(e: int, num_blocks: int, hidden: int, layers_per_block: int) -> Architecture:
    """``layers_per_block`` BERT layers (attention, then feed-forward) in each of ``num_blocks`` blocks."""
    return Architecture(e, (BlockPath(hidden, BERT_OPS * layers_per_block),) * num_blocks)


def bert_shapes(e: int, num_blocks: int, shape: TeacherShape, space_sizes: tuple[int, ...] = ()) -> list[Architecture]:
    """Every hand-designed shape considered: hidden 64..teacher's in steps of 64 (and the searched space's sizes),
    1..3 BERT layers per block."""
    sizes = sorted(set(range(64, shape.hidden + 1, 64)) | set(space_sizes))
    return [bert_architecture(e, num_blocks, h, k) for k in range(1, MAX_LAYERS_PER_BLOCK + 1) for h in sizes]


def match_params(target: int, e: int, num_blocks: int, shape: TeacherShape,
                 space_sizes: tuple[int, ...] = ()) -> Architecture:
    """The shape closest in parameters to ``target`` (ties: deeper)."""
    return min(bert_shapes(e, num_blocks, shape, space_sizes),
               key=lambda a: (abs(model_params(a, shape) - target), -a.blocks[0].depth))


def ensure_entries(table: LatencyTable, archs: list[Architecture], shape: TeacherShape, seq_len: int, batch: int,
                   device: str = "cpu") -> int:
    """Time the parts of ``archs`` the table lacks (hidden sizes outside the searched space); returns how many."""
    sizes = sorted({b.hidden for a in archs for b in a.blocks})
    space = SpaceConfig(teacher_hidden=shape.hidden, teacher_layers=len(archs[0].blocks), num_blocks=len(archs[0].blocks),
                        layers_per_block=2, hidden_sizes=tuple(sizes), ops=BERT_OPS)
    before = len(table.entries)
    measure_table(op_specs(space, shape, sorted({a.embedding_size for a in archs})), [seq_len], [batch],
                  threads=table.threads, repeats=max(3, table.repeats), table=table, stat=table.stat, device=device)
    return len(table.entries) - before


def match_latency(target_ms: float, e: int, num_blocks: int, shape: TeacherShape, table: LatencyTable, seq_len: int,
                  batch: int, space_sizes: tuple[int, ...] = (), device: str = "cpu") -> Architecture:
    """The shape whose predicted latency is closest to ``target_ms`` (ties: deeper); parts the table lacks are
    timed on ``device`` (the table's)."""
    archs = bert_shapes(e, num_blocks, shape, space_sizes)
    ensure_entries(table, archs, shape, seq_len, batch, device)
    return min(archs, key=lambda a: (abs(predict_latency(table, a, shape.hidden, seq_len, batch) - target_ms),
                                     -a.blocks[0].depth))


def train_baseline(arch: Architecture, settings: SupernetSettings, teacher_layers: int, shape: TeacherShape,
                   states: BlockStates, train_idx: list[int], held_idx: list[int], out: Path, resume: bool,
                   device: torch.device) -> tuple[Supernet, list[dict]]:
    """Block-wise distillation of the one path ``arch`` with the supernet's own loop and settings."""
    path = arch.blocks[0]
    space = SpaceConfig(teacher_hidden=shape.hidden, teacher_layers=teacher_layers, num_blocks=len(arch.blocks),
                        layers_per_block=len(path.ops), hidden_sizes=(path.hidden,), ops=BERT_OPS,
                        min_depth=len(path.ops), dropout=settings.dropout)
    torch.manual_seed(settings.seed)
    net = Supernet(space)
    one_path = dataclasses.replace(settings, bins=1, bin_by="params")  # nothing to shrink: same steps, same lr
    _, log = train_supernet(net, states, train_idx, held_idx, one_path, [path], out, resume, device)
    return net.cpu().eval(), log


def layers_and_hidden(arch: Architecture) -> tuple[int, int]:
    """(BERT layers in all, hidden size) of a hand-designed shape."""
    return sum(b.depth for b in arch.blocks) // 2, arch.blocks[0].hidden
