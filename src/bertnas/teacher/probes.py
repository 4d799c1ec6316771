"""One linear probe per teacher layer (embeddings + each hidden layer), trained on cached features.

The probes turn every teacher layer into a task prediction; the student's cells are distilled towards
them. The teacher stays frozen (it is not even loaded: probes read the knowledge cache).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.examples import TaskData
from ..data.metrics import compute_metrics
from ..training.losses import task_loss
from ..training.optim import adam
from ..utils import progress
from .knowledge import Knowledge

logger = logging.getLogger("bertnas")


@dataclass
class Probes:
    """Probe predictions for every layer and split, and each probe's dev metrics."""

    tensors: dict[str, torch.Tensor]  # train_logits, dev_logits: (L + 1, N, num_labels); weight, bias, mean, std
    metrics: list[dict[str, float]]  # per layer, on dev

    def logits(self, split: str) -> torch.Tensor:
        return self.tensors[f"{split}_logits"]


def _feature_stats(x: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over examples of (L+1, N, F) float16 features, accumulated in float64 chunks."""
    total = torch.zeros(x.size(0), 1, x.size(2), dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, x.size(1), chunk):
        part = x[:, start : start + chunk].double()
        total += part.sum(1, keepdim=True)
        squares += part.square().sum(1, keepdim=True)
    n = x.size(1)
    mean = total / n
    var = (squares - n * mean.square()) / max(n - 1, 1)
    return mean.float(), var.clamp(min=0).sqrt().float().clamp(min=1e-4)


class _LayerProbes(nn.Module):
    """L + 1 independent linear classifiers, computed in one batched matmul."""

    def __init__(self, layers: int, dim: int, labels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(layers, dim, labels))
        self.bias = nn.Parameter(torch.zeros(layers, labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (L+1, B, F) -> (L+1, B, C)
        return torch.einsum("lbf,lfc->lbc", x, self.weight) + self.bias[:, None, :]


def apply_probes(tensors: dict[str, torch.Tensor], features: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Probe logits (L + 1, N, C) of features (L + 1, N, F) with trained probe ``tensors`` (weight, bias, mean, std)."""
    out = []
    for s in range(0, features.size(1), chunk):
        x = (features[:, s : s + chunk].float() - tensors["mean"]) / tensors["std"]
        out.append(torch.einsum("lbf,lfc->lbc", x, tensors["weight"]) + tensors["bias"][:, None, :])
    return torch.cat(out, 1)


def train_probes(
    knowledge: Knowledge,
    data: TaskData,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
) -> Probes:
    """Fit every layer's probe on train features (standardized), report dev metrics, return logits."""
    spec = data.spec
    regression = spec.is_regression
    train_x = knowledge.features("train")  # (L+1, N, F) float16
    dev_x = knowledge.features("dev")
    labels = torch.tensor(data.train.labels, dtype=torch.float32 if regression else torch.long)
    mean, std = _feature_stats(train_x)  # (L+1, 1, F) each, without a float32 copy of all features

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x.float() - mean) / std

    layers, n, dim = train_x.shape
    probes = _LayerProbes(layers, dim, spec.num_labels)
    with torch.no_grad():  # start at the prior: mean target (regression) or log class frequencies
        if regression:
            probes.bias.fill_(float(labels.mean()))
        else:
            counts = torch.bincount(labels, minlength=spec.num_labels).float() + 1.0
            probes.bias.copy_((counts / counts.sum()).log().expand(layers, -1))
    opt = adam(probes.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    with progress(total=steps, desc="probes") as bar:
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                out = probes(norm(train_x[:, idx]))  # (L+1, B, C)
                y = labels[idx]
                loss = sum(task_loss(out[l], y, regression) for l in range(layers))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update(1)

    trained = {"weight": probes.weight.detach().contiguous(), "bias": probes.bias.detach().contiguous(),
               "mean": mean.contiguous(), "std": std.contiguous()}
    with torch.no_grad():
        train_logits, dev_logits = apply_probes(trained, train_x), apply_probes(trained, dev_x)
    metrics = [compute_metrics(spec, dev_logits[l].numpy(), np.asarray(data.dev.labels)) for l in range(layers)]
    for l, m in enumerate(metrics):
        logger.info("probe layer %d (%s): dev %s", l, "embeddings" if l == 0 else f"hidden {l}", m)
    return Probes(
        tensors={"train_logits": train_logits.contiguous(), "dev_logits": dev_logits.contiguous(), **trained},
        metrics=metrics,
    )
