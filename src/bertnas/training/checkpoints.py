"""Resumable checkpoints: written through a temp file and a rename, read back safely (weights only)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger("bertnas")


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temp file and rename (tensors, numbers and strings only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, resume_key: str = "") -> dict | None:
    """The saved state, loaded safely (weights_only); None if there is none, or if it was made with other
    settings or inputs (then the stage starts over rather than mixing two runs)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: not worth a traceback, start over
        logger.warning("ignoring unreadable checkpoint %s (%s); starting over", path, exc)
        return None
    if state.get("resume_key", "") != resume_key:
        logger.warning("checkpoint %s was made with other settings; starting over", path)
        return None
    return state
