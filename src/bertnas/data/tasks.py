"""The GLUE task registry: label sets, sentence-pair flags and metrics for each task.

Label names are the strings found in the GLUE files, so readers can map them to indices
without any per-task code, and predictions can be written back in the original vocabulary.
"""
from __future__ import annotations

import difflib

from ..errors import BertnasError
from .examples import TaskSpec

_BINARY = ["0", "1"]
_NLI2 = ["entailment", "not_entailment"]

GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec("cola", list(_BINARY), pair=False, metrics=["mcc"], headline="mcc"),
    "sst2": TaskSpec("sst2", list(_BINARY), pair=False, metrics=["accuracy"], headline="accuracy"),
    "mrpc": TaskSpec("mrpc", list(_BINARY), pair=True, metrics=["f1", "accuracy"], headline="f1"),
    "qqp": TaskSpec("qqp", list(_BINARY), pair=True, metrics=["f1", "accuracy"], headline="f1"),
    "stsb": TaskSpec("stsb", None, pair=True, metrics=["pearson", "spearman"], headline="pearson"),
    "mnli": TaskSpec(
        "mnli", ["contradiction", "entailment", "neutral"], pair=True, metrics=["accuracy"], headline="accuracy"
    ),
    "qnli": TaskSpec("qnli", list(_NLI2), pair=True, metrics=["accuracy"], headline="accuracy"),
    "rte": TaskSpec("rte", list(_NLI2), pair=True, metrics=["accuracy"], headline="accuracy"),
    "wnli": TaskSpec("wnli", list(_BINARY), pair=True, metrics=["accuracy"], headline="accuracy"),
}

#: The folder name each task has in the standard ``glue_data`` download (used in error messages).
GLUE_DIR_NAMES: dict[str, str] = {
    "cola": "CoLA",
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "qqp": "QQP",
    "stsb": "STS-B",
    "mnli": "MNLI",
    "qnli": "QNLI",
    "rte": "RTE",
    "wnli": "WNLI",
}


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def is_glue_task(name: str) -> bool:
    """True if ``name`` (any spelling accepted by :func:`get_task`) is a GLUE task."""
    return _normalize(name) in GLUE_TASKS


def closest_task(name: str, others: tuple[str, ...] = ()) -> str | None:
    """The GLUE task (or one of ``others``) spelled most like ``name``, when one is close (difflib), else None."""
    candidates = {_normalize(n): n for n in (*GLUE_TASKS, *others)}
    close = difflib.get_close_matches(_normalize(name), list(candidates), n=1, cutoff=0.6)
    return candidates[close[0]] if close else None


def get_task(name: str) -> TaskSpec:
    """Look a GLUE task up by name, accepting the usual spellings ("SST-2", "sts-b", "MNLI").

    Returns a copy so callers may adjust it (e.g. the headline metric) without touching the registry.
    """
    key = _normalize(name)
    if key not in GLUE_TASKS:
        known = ", ".join(GLUE_TASKS)
        raise BertnasError(f"unknown task {name!r}: known GLUE tasks are {known} (or use --train-file/--dev-file)")
    spec = GLUE_TASKS[key]
    return TaskSpec(
        name=spec.name,
        labels=None if spec.labels is None else list(spec.labels),
        pair=spec.pair,
        metrics=list(spec.metrics),
        headline=spec.headline,
    )
