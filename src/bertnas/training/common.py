"""Pieces the search and the retraining loops share: distillation heads and targets, evaluation,
epoch-level seeding and resumable checkpoints."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.encode import Encoded, batches, to_device
from ..data.examples import TaskSpec
from ..data.metrics import compute_metrics
from .distill import KDHeads, Targets, TargetScale, depth_loss  # noqa: F401  (importable from here too)


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
    """bfloat16 autocast on CUDA and CPU when asked (``--amp``); a no-op elsewhere. KD losses cast to fp32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=enabled and device.type in ("cuda", "cpu"))
