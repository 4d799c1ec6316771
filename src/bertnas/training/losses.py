"""Losses shared by the stages: the task loss, distillation at a temperature, hierarchical distillation.

* task loss: cross-entropy on gold labels (mean squared error for regression tasks); also the teacher's
  fine-tuning and the probes.
* hierarchical KD: student layer i of K is matched to teacher layer round(i * L / K); each pair is weighted,
  per example, by softmax over pairs of -CE(teacher-side prediction, gold) when attentive.
* :class:`LossParts`: the parts of one step's loss, as the shared loop logs them.

AdaBERT's combination of these with its efficiency loss is ``bertnas.adabert.objective``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy with class indices, or MSE with float targets when ``regression``."""
    if regression:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype), reduction=reduction)
    return F.cross_entropy(logits, labels, reduction=reduction)


def distill_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, regression: bool, reduction: str = "mean"
) -> torch.Tensor:
    """KL(teacher || student) at temperature T, scaled by T^2; MSE between outputs for regression."""
    if regression:
        per = (student.float().squeeze(-1) - teacher.float().squeeze(-1)) ** 2
    else:  # float32 on both sides, also under bf16 autocast
        t = F.log_softmax(teacher.float() / temperature, -1)
        s = F.log_softmax(student.float() / temperature, -1)
        per = (t.exp() * (t - s)).sum(-1) * temperature**2
    return per.mean() if reduction == "mean" else per


def layer_map(student_depth: int, teacher_layers: int) -> list[int]:
    """Teacher layer (1..L) matched to each student cell 1..K: round(i * L / K), rounding halves up."""
    return [max(1, math.floor(i * teacher_layers / student_depth + 0.5)) for i in range(1, student_depth + 1)]


def hierarchical_kd(
    student_logits: list[torch.Tensor],
    teacher_logits: list[torch.Tensor],
    labels: torch.Tensor,
    temperature: float,
    regression: bool,
    attentive: bool = True,
) -> torch.Tensor:
    """Sum over matched (student, teacher) pairs of weight * distillation, averaged over the batch.

    Weights are per example: softmax over pairs of -task_loss(teacher side, gold) when ``attentive``,
    else uniform. Each list holds P tensors of shape (B, num_labels).
    """
    kd = torch.stack([
        distill_loss(s, t, temperature, regression, reduction="none") for s, t in zip(student_logits, teacher_logits)
    ])  # (P, B)
    if attentive:
        with torch.no_grad():
            err = torch.stack([task_loss(t.float(), labels, regression, reduction="none") for t in teacher_logits])
            weights = torch.softmax(-err, dim=0).to(kd.dtype)  # (P, B)
    else:
        weights = torch.full_like(kd, 1.0 / kd.size(0))
    return (weights * kd).sum(0).mean()


@dataclass
class LossParts:
    """A step's loss (to back-propagate) and its parts for the logs, kept as tensors: reading a number off a
    GPU tensor waits for the device (a host sync), so the loop reads them only at its log lines
    (:func:`bertnas.training.loop.step_pass`), never inside a step."""

    total: torch.Tensor
    ce: torch.Tensor | float = 0.0
    kd: torch.Tensor | float = 0.0
    efficiency: torch.Tensor | float = 0.0

    def tensors(self) -> dict[str, torch.Tensor]:
        """The parts as detached 0-dim tensors on the loss's device (no host sync)."""
        like = self.total.detach()

        def as_tensor(v: torch.Tensor | float) -> torch.Tensor:
            return v.detach().reshape(()) if torch.is_tensor(v) else torch.full((), v, dtype=like.dtype, device=like.device)

        return {"loss": like.reshape(()), "ce": as_tensor(self.ce), "kd": as_tensor(self.kd),
                "eff": as_tensor(self.efficiency)}

    def as_dict(self) -> dict[str, float]:
        """The parts as Python numbers (a host sync: for logs and tests, not for steps)."""
        return {k: float(v) for k, v in self.tensors().items()}
