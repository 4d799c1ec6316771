"""Pieces the search and the retraining loops share: distillation heads and targets, evaluation,
epoch-level seeding and resumable checkpoints."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data.encode import Encoded, batches, to_device
from ..data.examples import TaskSpec
from ..data.metrics import compute_metrics
from ..models.adabert import masked_mean
from .losses import hierarchical_kd, layer_map, task_loss


class KDHeads(nn.Module):
    """One linear head per cell, used only in training to match cells to teacher-layer probes."""

    def __init__(self, k_max: int, hidden: int, num_labels: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList([nn.Linear(hidden, num_labels) for _ in range(k_max)])

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
        return [head(masked_mean(h, mask)) for head, h in zip(self.heads, states)]


class Targets:
    """Cached teacher logits (N, C) and probe logits (L + 1, N, C) of one split, on a device."""

    def __init__(self, teacher_logits: torch.Tensor, probe_logits: torch.Tensor, device: torch.device) -> None:
        self.teacher = teacher_logits.to(device)
        self.probes = probe_logits.to(device)
        self.num_layers = probe_logits.size(0) - 1


def student_loss(
    final_logits: torch.Tensor,
    states: list[torch.Tensor],
    mask: torch.Tensor,
    heads: KDHeads,
    batch: dict[str, torch.Tensor],
    targets: Targets,
    spec: TaskSpec,
    temperature: float,
    attentive: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE on gold labels, hierarchical KD) for a student with ``len(states)`` cells."""
    idx, labels = batch["index"], batch["labels"]
    depth = len(states)
    mapping = layer_map(depth, targets.num_layers)
    cell_logits = heads(states[:-1], mask)  # the last cell is represented by the final classifier
    student = cell_logits + [final_logits]
    teacher = [targets.probes[mapping[i], idx] for i in range(depth - 1)] + [targets.teacher[idx]]
    ce = task_loss(final_logits, labels, spec.is_regression)
    kd = hierarchical_kd(student, teacher, labels, temperature, spec.is_regression, attentive)
    return ce, kd


@torch.no_grad()
def evaluate(
    predict: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    data: Encoded,
    spec: TaskSpec,
    device: torch.device,
    batch_size: int = 128,
) -> dict[str, float]:
    """Metrics of ``predict(batch) -> logits`` over a split, in dataset order."""
    out = []
    for batch in batches(data, batch_size):
        out.append(predict(to_device(batch, device)).float().cpu())
    logits = torch.cat(out).numpy()
    return compute_metrics(spec, logits, data.labels.numpy())


def epoch_generators(seed: int, epoch: int) -> tuple[torch.Generator, torch.Generator]:
    """(shuffle, sampling) generators for one epoch, and the global seed for dropout: an epoch run after a
    resume draws exactly what it would have drawn in one uninterrupted run."""
    torch.manual_seed(seed * 1000 + epoch)
    np.random.seed((seed * 1000 + epoch) % 2**32)
    return (torch.Generator().manual_seed(seed * 1000 + epoch),
            torch.Generator().manual_seed(seed * 1000 + epoch + 500))


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temp file and rename (tensors, numbers and strings only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, resume_key: str = "") -> dict | None:
    """The saved state, loaded safely (weights_only); None if there is none, or if it was made with other
    settings or inputs (then the stage starts over rather than mixing two runs)."""
    import logging

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: not worth a traceback, start over
        logging.getLogger("bertnas").warning("ignoring unreadable checkpoint %s (%s); starting over", path, exc)
        return None
    if state.get("resume_key", "") != resume_key:
        logging.getLogger("bertnas").warning("checkpoint %s was made with other settings; starting over", path)
        return None
    return state


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA when asked; a no-op elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")
