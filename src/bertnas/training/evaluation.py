"""Metrics of a model over a split, in dataset order (search, further training, evaluate and fine-tuning)."""
from __future__ import annotations

from typing import Callable

import torch

from ..data.encode import Encoded, batches, to_device
from ..data.examples import TaskSpec
from ..data.metrics import compute_metrics


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
