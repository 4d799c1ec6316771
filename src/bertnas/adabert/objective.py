"""AdaBERT's objective: L = (1 - gamma) * L_CE + gamma * L_KD + beta * L_E.

* L_CE: the task loss on gold labels (cross-entropy; mean squared error for regression tasks).
* L_KD: attentive hierarchical distillation. Student cell i of K is matched to teacher layer
  round(i * L / K); a small head on the cell output is pulled towards that layer's probe prediction, and
  the student's final prediction towards the teacher's own logits. Each pair is weighted, per example, by
  softmax over pairs of -CE(teacher-side prediction, gold): layers whose probes are right count more.
* L_E: efficiency, (K / K_max) * mean over edges of sum over ops p(op) * EP(op), EP measured from the
  op modules and scaled like the AdaBERT code's cost vector (see ``adabert.costs``).
  With ``--efficiency latency`` (ours) L_E is :func:`latency_loss` instead: the expected latency on this CPU,
  as a fraction of the largest student's (times 0.1, the size of the params+FLOPs L_E there), or, with a budget,
  only the part above the budget, relative to the budget.

Here: the distillation targets and heads, the loss of a student of depth K (CE on gold + hierarchical KD, from
the shared ``training.losses``), the efficiency loss and their weighted sum.

Regression targets are standardized with the training labels' mean and std (labels, teacher scores and probe
scores alike): GLUE similarity scores run 0-5, so unscaled MSE starts near 8 and drowns the other terms and the
attentive weights; the model maps its output back with the same statistics (``AdaBertConfig.target_mean/std``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..training.losses import LossParts, hierarchical_kd, layer_map, task_loss
from .blocks import DEFAULT_PAIR_HEAD, feature_size, pair_features


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
    cell's pooled views like the classifier does (pairs: [u, v, |u - v|, u * v], and with the aligned pair head
    the 4 token-level comparison views after them). ``pair_head`` must be the model's."""

    def __init__(self, k_max: int, hidden: int, num_labels: int, pair: bool = False,
                 pair_head: str = DEFAULT_PAIR_HEAD) -> None:
        super().__init__()
        size = feature_size(hidden, pair, pair_head)
        self.heads = nn.ModuleList([nn.Linear(size, num_labels) for _ in range(k_max)])

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


def efficiency_loss(op_probs: torch.Tensor, op_costs: torch.Tensor, depth: torch.Tensor, k_max: int) -> torch.Tensor:
    """(K / K_max) * mean over edges of sum_o p(o) * EP(o). ``depth`` may carry a straight-through grad."""
    return depth / k_max * (op_probs * op_costs.to(op_probs)).sum(-1).mean()


LATENCY_LOSS_SCALE = 0.1
"""L_E of the largest student under the params+FLOPs cost (mean EP = 1/10 at K = K_max): the latency loss is
scaled to the same size, so ``beta`` weighs it against CE + KD as it weighed that one."""


def latency_loss(op_probs: torch.Tensor, costs, depth: torch.Tensor, budget_ms: float | None = None) -> torch.Tensor:
    """The efficiency loss from measured latency (``costs``: ``adabert.costs.LatencyCosts``).

    E = expected milliseconds of the architecture (ops by their probabilities, ``depth`` cells; ``depth`` may
    carry a straight-through gradient). Without a budget: ``0.1 * E / max_ms``, in (0, 0.1] like the
    params+FLOPs loss. With a budget B: the hinge ``0.1 * max(E - B, 0) / B``: zero (and no pull) within the
    budget, 0.1 per budget's worth of excess above it, so a tight budget pulls harder than a loose one.
    """
    expected = costs.expected(op_probs, depth)
    if budget_ms is None:
        return LATENCY_LOSS_SCALE * expected / costs.max_ms
    return LATENCY_LOSS_SCALE * torch.relu(expected - budget_ms) / budget_ms


def adabert_loss(
    ce: torch.Tensor, kd: torch.Tensor, efficiency: torch.Tensor | None, gamma: float, beta: float
) -> LossParts:
    """Combine the three terms with AdaBERT's weights (gamma = 0.8, beta = 4 by default)."""
    total = (1 - gamma) * ce + gamma * kd
    if efficiency is not None:
        total = total + beta * efficiency
    return LossParts(total=total, ce=ce.detach(), kd=kd.detach(),
                     efficiency=efficiency.detach() if efficiency is not None else 0.0)
