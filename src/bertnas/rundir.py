"""A run directory's settings and data, read and written the same way by every command that opens one.

An AdaBERT run directory (``bertnas run``/``probe``/``search``/``retrain --out DIR``) keeps its resolved
:class:`~bertnas.config.RunConfig` in ``config.json``; the CLI, ``--dry-run`` estimates, ``bertnas bench`` and
``bertnas export`` read it back and load the task's data through these functions, so none of them reaches into
a method's pipeline for it.
"""
from __future__ import annotations

from pathlib import Path

from .config import RunConfig
from .data.examples import TaskData
from .data.readers import load_task
from .data.tasks import is_glue_task
from .errors import BertnasError
from .utils import read_json, run_metadata, write_json


def load_data(cfg: RunConfig) -> TaskData:
    """Read the task's train/dev data as the config says (GLUE folder, custom files, or synthetic)."""
    if is_glue_task(cfg.task) and cfg.data_dir:  # GLUE files have fixed columns
        data = load_task(cfg.task, cfg.data_dir, metric=cfg.metric)
    else:
        data = load_task(cfg.task, cfg.data_dir, cfg.train_file, cfg.dev_file, text_column=cfg.text_column,
                         text_pair_column=cfg.text_pair_column, label_column=cfg.label_column,
                         labels=cfg.labels, metric=cfg.metric)
    if cfg.max_train_examples and cfg.max_train_examples < len(data.train):
        data.train = data.train.subset(list(range(cfg.max_train_examples)))
    return data


def save_run_config(cfg: RunConfig, out: Path) -> None:
    """``out/config.json``: the resolved settings, with versions and the git hash (``_meta``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {**cfg.to_dict(), "_meta": run_metadata()})


def load_run_config(out: Path, overrides: dict | None = None) -> RunConfig:
    """The config saved in a run directory, with explicit overrides applied."""
    path = Path(out) / "config.json"
    if not path.is_file():
        raise BertnasError(f"{out} is not a bertnas run directory (no config.json): run `bertnas probe` or `bertnas run` first")
    saved = read_json(path)
    saved.pop("_meta", None)
    return RunConfig.from_dict(saved, str(path)).update(overrides or {}, "command line").validate()


__all__ = ["load_data", "load_run_config", "save_run_config"]
