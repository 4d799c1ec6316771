"""Run directories' settings and data, read and written the same way by every command that opens one.

An AdaBERT run directory (``bertnas run``/``probe``/``search``/``retrain --out DIR``) keeps its resolved
:class:`~bertnas.config.RunConfig` in ``config.json``; a NAS-BERT fine-tuning run directory (``bertnas nasbert
finetune --out DIR``) keeps ``results.json`` (with its settings and where its data was read) and ``model/``.
The CLI, ``--dry-run`` estimates, ``bertnas bench`` and ``bertnas export`` read them back and load the task's
data through these functions, so none of them reaches into a method's pipeline for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from .data.examples import TaskData
from .data.readers import is_synthetic_task, load_task
from .data.tasks import is_glue_task
from .errors import BertnasError
from .utils import atomic_dir, read_json, run_metadata, write_json


def load_data(cfg: RunConfig) -> TaskData:
    """Read the task's train/dev data as the config says (GLUE folder, custom files, or synthetic)."""
    if (is_glue_task(cfg.task) or is_synthetic_task(cfg.task)) and cfg.data_dir:  # these folders have fixed columns
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


FINETUNE_LATENCY_SEQ_LEN = 128
"""The sequence length a NAS-BERT fine-tuning run times its model at (results.json's latency_ms_b*)."""
FINETUNE_LATENCY_REPEATS = 10


def data_source(task: str, data_dir: str | None, train_file: str | None, dev_file: str | None) -> dict:
    """Where the task's data was read from (absolute paths), so later commands (export) can read the same dev set."""
    def absolute(p: str | None) -> str | None:
        return None if p is None else str(Path(p).expanduser().resolve())

    return {"task": task, "data_dir": absolute(data_dir), "train_file": absolute(train_file),
            "dev_file": absolute(dev_file)}


@dataclass(frozen=True)
class FinetuneRun:
    """A directory written by ``bertnas nasbert finetune --out DIR``, read back by later commands (export)."""

    out: Path
    results: dict

    @property
    def model_dir(self) -> Path:
        return self.out / "model"

    @property
    def settings(self) -> dict[str, Any]:
        """The fine-tuning settings as saved (``FinetuneSettings.to_dict()``)."""
        return self.results["settings"]

    def command(self) -> str:
        """The command that writes this directory again (for error messages)."""
        r = self.results
        return (f"bertnas nasbert finetune --model {r.get('model', 'MODEL')} --teacher {r.get('teacher', 'TEACHER')} "
                f"--task {r.get('task', 'TASK')} ... --out {self.out}")

    def load_data(self) -> TaskData:
        """The task's train/dev data from the sources fine-tuning read."""
        d = self.results["data"]
        return load_task(d["task"], d.get("data_dir"), d.get("train_file"), d.get("dev_file"))


def is_finetune_run(out: str | Path) -> bool:
    """Whether ``out`` looks like the ``--out`` of ``bertnas nasbert finetune``: a results.json and no AdaBERT
    run config.json (an AdaBERT run directory has both)."""
    out = Path(out)
    return (out / "results.json").is_file() and not (out / "config.json").is_file()


def save_finetune_run(out: str | Path, model: Any, tokenizer: Any, results: dict) -> FinetuneRun:
    """``out/model`` (written whole or not at all) and ``out/results.json``, as :func:`read_finetune_run` reads them."""
    run = FinetuneRun(Path(out), results)
    with atomic_dir(run.model_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_json(run.out / "results.json", results)
    return run


def read_finetune_run(out: str | Path) -> FinetuneRun:
    """The results of a fine-tuning run; a directory written before the data source was recorded is a one-line
    error (its dev set cannot be found again)."""
    out = Path(out)
    results = read_json(out / "results.json")
    if not isinstance(results, dict) or "teacher_dev" not in results or not isinstance(results.get("settings"), dict) \
            or "max_seq_len" not in results["settings"]:
        raise BertnasError(f"{out}/results.json was not written by `bertnas nasbert finetune`: pass the --out of a "
                           "NAS-BERT fine-tuning run")
    run = FinetuneRun(out, results)
    if not isinstance(results.get("data"), dict) or "task" not in results["data"]:
        raise BertnasError(f"{out}/results.json does not say where the task data is (an older bertnas wrote it): "
                           f"run `{run.command()}` again")
    return run


__all__ = ["FINETUNE_LATENCY_REPEATS", "FINETUNE_LATENCY_SEQ_LEN", "FinetuneRun", "data_source", "is_finetune_run",
           "load_data", "load_run_config", "read_finetune_run", "save_finetune_run", "save_run_config"]
