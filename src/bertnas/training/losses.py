"""AdaBERT's objective: L = (1 - gamma) * L_CE + gamma * L_KD + beta * L_E.

* L_CE: the task loss on gold labels (cross-entropy; mean squared error for regression tasks).
* L_KD: attentive hierarchical distillation. Student cell i of K is matched to teacher layer
  round(i * L / K); a small head on the cell output is pulled towards that layer's probe prediction, and
  the student's final prediction towards the teacher's own logits. Each pair is weighted, per example, by
  softmax over pairs of -CE(teacher-side prediction, gold): layers whose probes are right count more.
* L_E: efficiency, (K / K_max) * mean over edges of sum over ops p(op) * EP(op), EP measured from the
  op modules and scaled like the AdaBERT code's cost vector (see ``spaces.costs``).
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


def efficiency_loss(op_probs: torch.Tensor, op_costs: torch.Tensor, depth: torch.Tensor, k_max: int) -> torch.Tensor:
    """(K / K_max) * mean over edges of sum_o p(o) * EP(o). ``depth`` may carry a straight-through grad."""
    return depth / k_max * (op_probs * op_costs.to(op_probs)).sum(-1).mean()


@dataclass
class LossParts:
    total: torch.Tensor
    ce: float
    kd: float
    efficiency: float

    def as_dict(self) -> dict[str, float]:
        return {"loss": float(self.total.detach()), "ce": self.ce, "kd": self.kd, "eff": self.efficiency}


def adabert_loss(
    ce: torch.Tensor, kd: torch.Tensor, efficiency: torch.Tensor | None, gamma: float, beta: float
) -> LossParts:
    """Combine the three terms with AdaBERT's weights (gamma = 0.8, beta = 4 by default)."""
    total = (1 - gamma) * ce + gamma * kd
    eff = 0.0
    if efficiency is not None:
        total = total + beta * efficiency
        eff = float(efficiency.detach())
    return LossParts(total=total, ce=float(ce.detach()), kd=float(kd.detach()), efficiency=eff)
