"""Resumable checkpoints: written through a temp file and a rename, read back safely (weights only)."""
from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import torch

logger = logging.getLogger("bertnas")


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temp file and rename (tensors, numbers and strings only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, EOFError) or not text:
        text = "empty or cut short"
    elif isinstance(exc, pickle.UnpicklingError):
        text = "not a checkpoint torch can read safely"
    return f"{type(exc).__name__}: {text[:120]}"


def load_checkpoint(path: Path, resume_key: str = "", stage: str = "the stage") -> dict | None:
    """The saved state, loaded safely (weights_only); None if there is none, or if it cannot be used: a
    damaged file, or one made with other settings or inputs. Each of those is a warning naming the file, the
    reason and that ``stage`` starts over (rather than mixing two runs); the file is replaced after the first
    epoch."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:  # truncated, damaged, foreign
        logger.warning("cannot resume from checkpoint %s, it is damaged (%s): starting %s over", path, _reason(exc),
                       stage)
        return None
    if not isinstance(state, dict) or "epoch" not in state:
        logger.warning("cannot resume from checkpoint %s, it is not a bertnas checkpoint (a %s without an epoch): "
                       "starting %s over", path, type(state).__name__, stage)
        return None
    if state.get("resume_key", "") != resume_key:
        logger.warning("not resuming from checkpoint %s: it was made with other settings or inputs; starting %s "
                       "over", path, stage)
        return None
    return state
