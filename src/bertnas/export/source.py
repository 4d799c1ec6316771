"""Which kind of run ``bertnas export --out DIR`` was given, and what export needs from it.

Two kinds of directory hold a fine-tuned classifier with the data it was evaluated on:

- an AdaBERT run (``bertnas run`` / ``bertnas retrain --out DIR``): ``config.json`` (the run config) + ``model/``;
- a NAS-BERT fine-tuning run (``bertnas nasbert finetune --out DIR``): ``results.json`` + ``model/``.

The kind is told by the files alone, and each kind is read through the shared run-directory functions
(``rundir.load_run_config`` / ``load_data``, ``rundir.read_finetune_run``), so export imports neither method;
both model types load through transformers' Auto classes, which ``import bertnas`` registers. Anything else is
a one-line error naming what was expected and the command that writes it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..data.examples import TaskData
from ..errors import BertnasError
from ..rundir import (FINETUNE_LATENCY_REPEATS, FINETUNE_LATENCY_SEQ_LEN, is_finetune_run, load_data, load_run_config,
                      read_finetune_run)

EXPECTED = ("config.json + model/ (from `bertnas run` or `bertnas retrain --out DIR`) or results.json + model/ "
            "(from `bertnas nasbert finetune --out DIR`)")


@dataclass(frozen=True)
class RunSource:
    """What export reads from a run: the model, how to encode the dev data, and how to time it."""

    kind: str  # "adabert" or "nasbert"
    run_dir: Path
    model_dir: Path
    model_step: str  # for "run `bertnas {model_step}` first" when model/ is missing or damaged
    max_seq_len: int
    latency_seq_len: int
    latency_threads: int
    latency_repeats: int
    trust_remote_code: bool
    task: str
    load_data: Callable[[], TaskData]


def _hf_model_config(path: Path) -> bool:
    """Whether ``path`` is a Hugging Face model's config.json (``model_type``) rather than a run config."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # load_run_config reports unreadable files
    return isinstance(saved, dict) and "model_type" in saved and "task" not in saved


def open_run(run_dir: str | Path) -> RunSource:
    """The run in ``run_dir``, detected from its files; a directory of neither kind is a one-line error."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").is_file():
        if _hf_model_config(run_dir / "config.json"):
            parent = run_dir.parent
            hint = f": pass --out {parent}" if (parent / "model") == run_dir else ""
            raise BertnasError(f"{run_dir} is a model directory, not a run directory{hint} (export expects {EXPECTED})")
        return _adabert(run_dir)
    if (run_dir / "run" / "config.json").is_file():
        raise BertnasError(f"{run_dir} is a `bertnas demo` directory: its run is {run_dir / 'run'}, pass --out {run_dir / 'run'}")
    if is_finetune_run(run_dir):
        return _nasbert(run_dir)
    if (run_dir / "settings.json").is_file() and ((run_dir / "supernet").is_dir() or (run_dir / "selection.json").is_file()):
        raise BertnasError(f"{run_dir} is a NAS-BERT supernet run, whose models are not fine-tuned: run `bertnas nasbert "
                           f"finetune --model {run_dir / 'models' / 'NAME'} --teacher T --task X --out FT` and export "
                           "--out FT")
    raise BertnasError(f"{run_dir} is not a bertnas run directory: expected {EXPECTED}")


def _adabert(run_dir: Path) -> RunSource:
    cfg = load_run_config(run_dir)
    return RunSource(kind="adabert", run_dir=run_dir, model_dir=run_dir / "model", model_step="retrain",
                     max_seq_len=cfg.max_seq_len, latency_seq_len=cfg.eval_seq_len, latency_threads=cfg.latency_threads,
                     latency_repeats=cfg.latency_repeats, trust_remote_code=cfg.trust_remote_code, task=cfg.task,
                     load_data=lambda: load_data(cfg))


def _nasbert(run_dir: Path) -> RunSource:
    """A fine-tuning run: its dev set and max_seq_len as fine-tuning used them; latency as fine-tuning measured it
    (sequence 128, the run's --threads or torch's)."""
    run = read_finetune_run(run_dir)
    settings = run.settings
    if not (run.model_dir / "config.json").is_file():
        raise BertnasError(f"{run.model_dir} not found or incomplete: run `{run.command()}` again")
    try:
        max_positions = json.loads((run.model_dir / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        max_positions = None  # loading the model reports a damaged config
    seq_len = min(FINETUNE_LATENCY_SEQ_LEN, max_positions) if isinstance(max_positions, int) else FINETUNE_LATENCY_SEQ_LEN
    return RunSource(kind="nasbert", run_dir=run_dir, model_dir=run.model_dir, model_step="nasbert finetune",
                     max_seq_len=int(settings["max_seq_len"]), latency_seq_len=seq_len,
                     latency_threads=int(settings.get("threads") or torch.get_num_threads()),
                     latency_repeats=FINETUNE_LATENCY_REPEATS, trust_remote_code=False, task=run.results["task"],
                     load_data=run.load_data)
