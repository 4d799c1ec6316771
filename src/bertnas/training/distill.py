"""Distillation targets and heads, and the loss of a student of depth K (CE on gold + hierarchical KD).

Regression targets are standardized with the training labels' mean and std (labels, teacher scores and probe
scores alike): GLUE similarity scores run 0-5, so unscaled MSE starts near 8 and drowns the other terms and the
attentive weights; the model maps its output back with the same statistics (``AdaBertConfig.target_mean/std``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..spaces.blocks import feature_size, pair_features
from .losses import hierarchical_kd, layer_map, task_loss


@dataclass(frozen=True)
class TargetScale:
    """``(y - mean) / std`` for regression targets; the identity for classification."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def of(cls, labels: torch.Tensor, regression: bool) -> "TargetScale":
        """Training statistics of the labels (identity for classification or constant labels)."""
        if not regression or labels.numel() < 2:
            return cls()
        std = float(labels.double().std(unbiased=False))
        return cls(float(labels.double().mean()), std if std > 1e-8 else 1.0)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class Targets:
    """Cached teacher logits (N, C) and probe logits (L + 1, N, C) of one split, on a device."""

    def __init__(self, teacher_logits: torch.Tensor, probe_logits: torch.Tensor, device: torch.device,
                 scale: TargetScale | None = None) -> None:
        self.teacher = teacher_logits.to(device)
        self.probes = probe_logits.to(device)
        self.num_layers = probe_logits.size(0) - 1
        self.scale = scale or TargetScale()

    def standardized(self, scale: TargetScale) -> "Targets":
        """The same targets with regression scores standardized (labels are standardized in :func:`depth_loss`)."""
        if scale == TargetScale():
            return self
        return Targets(scale.apply(self.teacher.float()), scale.apply(self.probes.float()), self.teacher.device, scale)


class KDHeads(nn.Module):
    """One linear head per cell, used only in training to match cells to teacher-layer probes; it reads the
    cell's pooled views like the classifier does (pairs: [u, v, |u - v|, u * v])."""

    def __init__(self, k_max: int, hidden: int, num_labels: int, pair: bool = False) -> None:
        super().__init__()
        self.heads = nn.ModuleList([nn.Linear(feature_size(hidden, pair), num_labels) for _ in range(k_max)])

    def forward(self, pooled: list[torch.Tensor]) -> list[torch.Tensor]:
        return [head(pair_features(p)) for head, p in zip(self.heads, pooled)]


def depth_loss(
    final_logits: torch.Tensor,
    head_logits: list[torch.Tensor],
    batch: dict[str, torch.Tensor],
    targets: Targets,
    regression: bool,
    temperature: float,
    attentive: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE on gold labels, hierarchical KD) of a student of depth K = len(head_logits) + 1.

    ``head_logits`` are the distillation heads of cells 1..K-1; the last cell is represented by the final
    classifier, matched to the teacher's own logits. Cell i is matched to the probe of layer round(i L / K).
    """
    idx, labels = batch["index"], targets.scale.apply(batch["labels"]) if regression else batch["labels"]
    depth = len(head_logits) + 1
    mapping = layer_map(depth, targets.num_layers)
    student = list(head_logits) + [final_logits]
    teacher = [targets.probes[mapping[i], idx] for i in range(depth - 1)] + [targets.teacher[idx]]
    ce = task_loss(final_logits.float(), labels, regression)
    kd = hierarchical_kd(student, teacher, labels, temperature, regression, attentive)
    return ce, kd
