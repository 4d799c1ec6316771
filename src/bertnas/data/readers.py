"""Readers for GLUE task folders and for generic TSV/CSV/JSONL files.

Every problem with the user's files is raised as a one-line :class:`BertnasError` that names the
file, the line and the fix, because a silent misread (a shifted column, a dropped label) would
otherwise surface hours later as a mysteriously bad accuracy.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator

from ..errors import BertnasError
from .examples import Examples, TaskData, TaskSpec
from .metrics import METRICS, REGRESSION_METRICS
from .tasks import GLUE_DIR_NAMES, GLUE_TASKS, closest_task, get_task, is_glue_task

# GLUE sentences can be long; the csv default (128 KiB) is enough for GLUE, but raise it for user files.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

#: Per GLUE task: (text column, text-pair column or None, label column) by header name.
GLUE_COLUMNS: dict[str, tuple[str, str | None, str]] = {
    "sst2": ("sentence", None, "label"),
    "mrpc": ("#1 String", "#2 String", "Quality"),
    "qqp": ("question1", "question2", "is_duplicate"),
    "stsb": ("sentence1", "sentence2", "score"),
    "mnli": ("sentence1", "sentence2", "gold_label"),
    "qnli": ("question", "sentence", "label"),
    "rte": ("sentence1", "sentence2", "label"),
    "wnli": ("sentence1", "sentence2", "label"),
}
#: CoLA files have no header: (source, label, original label or '*', sentence).
COLA_TEXT_INDEX, COLA_LABEL_INDEX, COLA_FIELDS = 3, 1, 4


def _short(value: Any, limit: int = 40) -> str:
    """repr() of a value cut to a length that keeps error messages on one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _join(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _parse_float(value: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BertnasError(f"{where}: label {_short(value)} is not a number (regression labels must be floats)") from None
    if not math.isfinite(number):
        raise BertnasError(f"{where}: label {_short(value)} is not a finite number (regression labels must be floats)")
    return number


def _label_index(value: str, labels: list[str], where: str, hint: str) -> int:
    try:
        return labels.index(value)
    except ValueError:
        raise BertnasError(
            f"{where}: label {_short(value)} is not one of the allowed labels ({_join(labels)}){hint}"
        ) from None


# --------------------------------------------------------------------------------------------- GLUE


def _utf8(reader):
    """Turn a decoding failure inside a file reader into a one-line error naming the file and the fix."""
    import functools

    @functools.wraps(reader)
    def wrapped(path: Path, *args: Any, **kwargs: Any):
        try:
            yield from reader(path, *args, **kwargs)
        except UnicodeDecodeError as exc:
            bad = exc.object[exc.start : exc.start + 1].hex()
            raise BertnasError(f"{path} is not UTF-8 text (byte 0x{bad} cannot be decoded): re-save it as UTF-8, "
                               f"e.g. iconv -f latin1 -t utf-8 {path.name} > fixed.{path.suffix.lstrip('.')}") from None

    return wrapped


@_utf8
def _read_tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank line; QUOTE_NONE because GLUE text contains quotes."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield reader.line_num, row


def _glue_file(folder: Path, name: str, task: str, required: bool = True) -> Path | None:
    path = folder / name
    if path.is_file():
        return path
    if not required:
        return None
    raise BertnasError(
        f"{path}: file not found: --data-dir must point at the GLUE task folder "
        f"(e.g. glue_data/{GLUE_DIR_NAMES[task]}) containing train.tsv and dev.tsv"
    )


def _read_glue_split(
    spec: TaskSpec,
    path: Path,
    columns: tuple[str, str | None, str] | None,
) -> Examples:
    task = spec.name
    texts: list[str] = []
    pairs: list[str] | None = [] if spec.pair else None
    labels: list[Any] = []
    skipped = 0
    hint = f" (is --data-dir the GLUE {GLUE_DIR_NAMES[task]} folder?)"

    rows = _read_tsv_rows(path)
    if columns is None:  # CoLA: headerless, fixed positions
        expected = COLA_FIELDS
        text_i, pair_i, label_i = COLA_TEXT_INDEX, None, COLA_LABEL_INDEX
    else:
        try:
            _, header = next(rows)
        except StopIteration:
            raise BertnasError(f"{path}: file is empty: expected a header row and data rows{hint}") from None
        header = [name.strip() for name in header]
        expected = len(header)
        text_col, pair_col, label_col = columns
        flags = {text_col: "--text-column", label_col: "--label-column"}
        if pair_col is not None:
            flags[pair_col] = "--text-pair-column"
        for name, flag in flags.items():
            if name not in header:
                raise BertnasError(
                    f"{path}: column {name!r} not found in header (found: {_join(header)}): "
                    f"pass {flag} or check that --data-dir is the GLUE {GLUE_DIR_NAMES[task]} folder"
                )
        text_i, label_i = header.index(text_col), header.index(label_col)
        pair_i = None if pair_col is None else header.index(pair_col)

    for line, row in rows:
        if len(row) != expected:
            if task == "qqp":  # QQP's train.tsv has a few known truncated rows; GLUE tooling drops them too
                skipped += 1
                continue
            raise BertnasError(
                f"{path}: line {line} has {len(row)} tab-separated fields, expected {expected} "
                f"(a stray tab or line break inside a text?): fix or remove that line"
            )
        where = f"{path}: line {line}"
        if spec.labels is None:
            labels.append(_parse_float(row[label_i].strip(), where))
        else:
            labels.append(_label_index(row[label_i].strip(), spec.labels, where, hint))
        texts.append(row[text_i].strip())
        if pairs is not None and pair_i is not None:
            pairs.append(row[pair_i].strip())

    if not texts:
        raise BertnasError(f"{path}: no data rows found: the split is empty{hint}")
    meta: dict[str, Any] = {"task": task}
    if skipped:
        meta["skipped_rows"] = skipped
    return Examples(texts=texts, labels=labels, text_pairs=pairs, source=str(path), meta=meta)


def read_glue(
    task: str,
    data_dir: str | Path,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    metric: str | None = None,
) -> TaskData:
    """Read a task folder of the standard GLUE download (train.tsv, dev.tsv; MNLI dev_matched/mismatched).

    The column overrides exist for re-exported files whose header names differ from the originals;
    ``metric`` changes the headline metric (e.g. accuracy instead of F1 for MRPC).
    """
    spec = get_task(task)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise BertnasError(
            f"{folder}: directory not found: --data-dir must point at the GLUE task folder "
            f"(e.g. glue_data/{GLUE_DIR_NAMES[spec.name]})"
        )
    if metric is not None:
        _set_headline(spec, metric)

    columns: tuple[str, str | None, str] | None
    if spec.name == "cola":
        if text_column or text_pair_column or label_column:
            raise BertnasError("CoLA files have no header, so columns cannot be renamed: drop the column options")
        columns = None
    else:
        text_col, pair_col, label_col = GLUE_COLUMNS[spec.name]
        columns = (text_column or text_col, (text_pair_column or pair_col) if spec.pair else None, label_column or label_col)

    train = _read_glue_split(spec, _glue_file(folder, "train.tsv", spec.name), columns)
    extra: dict[str, Examples] = {}
    if spec.name == "mnli":
        dev = _read_glue_split(spec, _glue_file(folder, "dev_matched.tsv", spec.name), columns)
        mismatched = _glue_file(folder, "dev_mismatched.tsv", spec.name, required=False)
        if mismatched is not None:
            extra["dev_mismatched"] = _read_glue_split(spec, mismatched, columns)
    else:
        dev = _read_glue_split(spec, _glue_file(folder, "dev.tsv", spec.name), columns)
    return TaskData(spec=spec, train=train, dev=dev, extra_dev=extra)


# ------------------------------------------------------------------------------------ generic tables

_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json-lines": "jsonl", ".ndjson": "jsonl"}


def _detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        fmt = "jsonl" if fmt in ("json-lines", "ndjson") else fmt
        if fmt not in ("tsv", "csv", "jsonl"):
            raise BertnasError(f"unknown file format {fmt!r}: use tsv, csv or jsonl")
        return fmt
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise BertnasError(
            f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}: "
            f"name it .tsv, .csv or .jsonl, or pass --format"
        )
    return _FORMATS[suffix]


@_utf8
def _iter_records(path: Path, fmt: str, needed: dict[str, str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, {column: value}) for the columns in ``needed`` (column -> CLI flag)."""
    if fmt == "jsonl":
        with open(path, encoding="utf-8-sig") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BertnasError(f"{path}: line {line_no} is not valid JSON ({exc.msg}): fix that line") from None
                if not isinstance(record, dict):
                    raise BertnasError(f"{path}: line {line_no} is not a JSON object: each line must be {{\"column\": value, ...}}")
                for name, flag in needed.items():
                    if name not in record:
                        raise BertnasError(
                            f"{path}: line {line_no}: key {name!r} not found (found: {_join(list(record))}): pass {flag}"
                        )
                yield line_no, {name: record[name] for name in needed}
        return

    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    delimiter = "\t" if fmt == "tsv" else ","
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        header: list[str] | None = None
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [name.strip() for name in row]
                for name, flag in needed.items():
                    if name not in header:
                        raise BertnasError(
                            f"{path}: column {name!r} not found in header (found: {_join(header)}): "
                            f"pass {flag} (a header row is required)"
                        )
                index = {name: header.index(name) for name in needed}
                continue
            if len(row) != len(header):
                sep = "tab" if fmt == "tsv" else "comma"
                raise BertnasError(
                    f"{path}: line {reader.line_num} has {len(row)} {sep}-separated fields, expected {len(header)}: "
                    f"fix that line" + (" (quote fields that contain commas)" if fmt == "csv" else "")
                )
            yield reader.line_num, {name: row[i] for name, i in index.items()}
        if header is None:
            raise BertnasError(f"{path}: file is empty: expected a header row and data rows")


def _label_string(value: Any) -> str:
    """JSONL labels may be numbers or booleans; compare them as the strings they would be in a TSV."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_table(
    path: str | Path,
    text_column: str,
    label_column: str,
    text_pair_column: str | None = None,
    labels: list[str] | str | None = None,
    fmt: str | None = None,
) -> Examples:
    """Read one split from a TSV, CSV or JSONL file with named columns.

    ``labels``: a list of label names -> class indices; ``"regression"`` -> floats;
    None -> the raw label strings, for the caller to pass through :func:`infer_labels`.
    """
    path = Path(path)
    if not path.is_file():
        raise BertnasError(f"{path}: file not found: check --train-file/--dev-file")
    kind = _detect_format(path, fmt)
    needed = {text_column: "--text-column", label_column: "--label-column"}
    if text_pair_column is not None:
        needed[text_pair_column] = "--text-pair-column"
    if isinstance(labels, str) and labels != "regression":
        labels = _split_labels(labels)

    texts: list[str] = []
    pairs: list[str] | None = [] if text_pair_column is not None else None
    out: list[Any] = []
    for line, record in _iter_records(path, kind, needed):
        where = f"{path}: line {line}"
        raw = record[label_column]
        if labels == "regression":
            out.append(_parse_float(str(raw).strip(), where))  # JSON numbers round-trip through str exactly
        elif labels is None:
            out.append(_label_string(raw))
        else:
            out.append(_label_index(_label_string(raw), labels, where, ": pass --labels with every label used"))
        text = record[text_column]
        texts.append("" if text is None else str(text).strip())
        if pairs is not None:
            pair = record[text_pair_column]
            pairs.append("" if pair is None else str(pair).strip())
    if not texts:
        raise BertnasError(f"{path}: no data rows found: the file has a header but no examples")
    return Examples(texts=texts, labels=out, text_pairs=pairs, source=str(path), meta={"format": kind})


def _split_labels(labels: str) -> list[str]:
    """A CLI-style "neg,pos" label list."""
    names = [name.strip() for name in labels.split(",") if name.strip()]
    if len(names) < 2:
        raise BertnasError(f"--labels {labels!r}: give at least two comma-separated label names, or 'regression'")
    return names


def infer_labels(values: list[str]) -> list[str]:
    """The label set of a split: sorted, numerically if every value is an integer ("2" before "10")."""
    unique = set(values)
    try:
        return sorted(unique, key=int)
    except ValueError:
        return sorted(unique)


# ------------------------------------------------------------------------------------- custom tasks


def _set_headline(spec: TaskSpec, metric: str) -> None:
    if metric not in METRICS:
        raise BertnasError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    if spec.is_regression != (metric in REGRESSION_METRICS):
        kind = "regression" if spec.is_regression else "classification"
        allowed = [m for m in METRICS if (m in REGRESSION_METRICS) == spec.is_regression]
        raise BertnasError(f"metric {metric!r} does not apply to the {kind} task {spec.name!r}: use one of {', '.join(allowed)}")
    if metric == "f1" and spec.num_labels != 2:
        raise BertnasError(f"metric 'f1' needs exactly two labels but {spec.name!r} has {spec.num_labels}: use macro_f1")
    if metric not in spec.metrics:
        spec.metrics.append(metric)
    spec.headline = metric


def read_custom(
    train_file: str | Path,
    dev_file: str | Path,
    text_column: str = "sentence",
    label_column: str = "label",
    text_pair_column: str | None = None,
    labels: list[str] | str | None = None,
    task_name: str = "custom",
    metric: str | None = None,
) -> TaskData:
    """Build a task from the user's own train/dev files.

    The label set comes from the train split unless given, so that class indices are stable between
    runs; dev labels outside it are an error because the model could never predict them.
    """
    if isinstance(labels, str) and labels != "regression":
        labels = _split_labels(labels)
    train = read_table(train_file, text_column, label_column, text_pair_column, labels=labels)
    dev = read_table(dev_file, text_column, label_column, text_pair_column, labels=labels)
    if labels is None:
        label_names = infer_labels(train.labels)  # type: ignore[arg-type]
        if len(label_names) < 2:
            raise BertnasError(
                f"{train.source}: only one label value ({_short(label_names[0])}) in column {label_column!r}: "
                f"a classifier needs two or more; pass --labels regression for numeric targets"
            )
        unseen = sorted(set(dev.labels) - set(label_names))  # type: ignore[arg-type]
        if unseen:
            raise BertnasError(
                f"{dev.source}: labels {_join([repr(u) for u in unseen])} do not occur in the train file "
                f"(train labels: {_join(label_names)}): fix the dev file or pass --labels"
            )
        train.labels = [label_names.index(v) for v in train.labels]  # type: ignore[arg-type]
        dev.labels = [label_names.index(v) for v in dev.labels]  # type: ignore[arg-type]
        spec_labels: list[str] | None = label_names
    elif labels == "regression":
        spec_labels = None
    else:
        spec_labels = list(labels)

    if spec_labels is None:
        metrics = ["pearson", "spearman"]
    else:
        metrics = ["accuracy"] + (["f1"] if len(spec_labels) == 2 else [])
    spec = TaskSpec(name=task_name, labels=spec_labels, pair=text_pair_column is not None,
                    metrics=metrics, headline=metrics[0])
    if metric is not None:
        _set_headline(spec, metric)
    return TaskData(spec=spec, train=train, dev=dev)


def load_task(
    task: str,
    data_dir: str | Path | None = None,
    train_file: str | Path | None = None,
    dev_file: str | Path | None = None,
    **columns: Any,
) -> TaskData:
    """One entry point for the CLI: a GLUE folder, the user's own files, or the synthetic task.

    - GLUE task name + ``data_dir`` -> :func:`read_glue` (``columns`` may rename header columns / set ``metric``).
    - ``train_file`` + ``dev_file`` -> :func:`read_custom`; for a GLUE task name its labels and metrics are used.
    - "synthetic-single" / "synthetic-pair" + ``data_dir`` -> the folder :func:`~.synthetic.write_task` wrote
      (``train.tsv``, ``dev.tsv``); with no files -> freshly generated data (see :mod:`.synthetic`).
    - any other name + ``data_dir`` -> an error naming the GLUE tasks, the closest name and
      ``--train-file``/``--dev-file`` (a mistyped GLUE name must not run silently as a custom task).

    ``columns``: text_column, text_pair_column, label_column, labels, metric.
    """
    allowed = {"text_column", "text_pair_column", "label_column", "labels", "metric"}
    unknown = sorted(set(columns) - allowed)
    if unknown:
        raise TypeError(f"load_task() got unexpected options {unknown}; allowed: {sorted(allowed)}")
    columns = {k: v for k, v in columns.items() if v is not None}
    has_files = train_file is not None or dev_file is not None
    if data_dir is not None and has_files:
        raise BertnasError("pass either --data-dir or --train-file/--dev-file, not both")

    if is_glue_task(task):
        if data_dir is not None:
            if "labels" in columns:
                raise BertnasError(f"GLUE task {task!r} has fixed labels: drop --labels")
            return read_glue(task, data_dir, **columns)
        if not has_files:
            raise BertnasError(
                f"no data for task {task!r}: pass --data-dir pointing at the GLUE folder "
                f"(e.g. glue_data/{GLUE_DIR_NAMES[get_task(task).name]}) or --train-file and --dev-file"
            )
        return _read_custom_as_glue(task, train_file, dev_file, columns)

    if data_dir is not None:
        folder = Path(data_dir)
        if not is_synthetic_task(task):
            raise _unknown_task_for_folder(task, folder)
        if not folder.is_dir():
            raise BertnasError(f"{folder}: directory not found: --data-dir must contain train.tsv and dev.tsv")
        train_file, dev_file = folder / "train.tsv", folder / "dev.tsv"
        for path in (train_file, dev_file):
            if not path.is_file():
                raise BertnasError(f"{path}: file not found: --data-dir must contain train.tsv and dev.tsv")
        if "pair" in task.lower():  # as written by write_task
            columns.setdefault("text_column", "sentence1")
            columns.setdefault("text_pair_column", "sentence2")
        return read_custom(train_file, dev_file, task_name=task, **columns)

    if not has_files and is_synthetic_task(task):
        from .synthetic import generate  # local import: the generator is only needed here

        variant = task.lower().removeprefix("synthetic").lstrip("-_") or "single"
        return generate(variant)

    if train_file is None or dev_file is None:
        missing = "--train-file" if train_file is None else "--dev-file"
        if not has_files:
            raise BertnasError(
                f"no data for task {task!r}: it is not a GLUE task, so pass --train-file and --dev-file"
            )
        raise BertnasError(f"task {task!r}: {missing} is missing: custom tasks need both --train-file and --dev-file")
    return read_custom(train_file, dev_file, task_name=task, **columns)


def is_synthetic_task(task: str) -> bool:
    """The built-in synthetic tasks (``synthetic-single``, ``synthetic-pair``): their folders have fixed columns."""
    return task.lower().startswith("synthetic")


def _unknown_task_for_folder(task: str, folder: Path) -> BertnasError:
    close = closest_task(task, ("synthetic-single", "synthetic-pair"))
    hint = f" (did you mean {close!r}?)" if close else ""
    return BertnasError(
        f"unknown task {task!r}{hint}: --data-dir is for the GLUE tasks ({', '.join(GLUE_TASKS)}) and "
        f"synthetic-single/synthetic-pair; for your own data pass --train-file {folder / 'train.tsv'} "
        f"--dev-file {folder / 'dev.tsv'}"
    )


def _read_custom_as_glue(task: str, train_file: Any, dev_file: Any, columns: dict[str, Any]) -> TaskData:
    """GLUE data in the user's own files: keep the GLUE label set and metrics so scores are comparable."""
    spec = get_task(task)
    if train_file is None or dev_file is None:
        missing = "--train-file" if train_file is None else "--dev-file"
        raise BertnasError(f"task {task!r}: {missing} is missing: pass both --train-file and --dev-file")
    if spec.pair and "text_pair_column" not in columns:
        raise BertnasError(f"{spec.name} is a sentence-pair task: pass --text-pair-column (and --text-column)")
    if not spec.pair and "text_pair_column" in columns:
        raise BertnasError(f"{spec.name} is a single-sentence task: drop --text-pair-column")
    metric = columns.pop("metric", None)
    columns.setdefault("labels", "regression" if spec.labels is None else list(spec.labels))
    data = read_custom(train_file, dev_file, task_name=spec.name, **columns)
    data.spec = TaskSpec(name=spec.name, labels=data.spec.labels, pair=spec.pair,
                         metrics=list(spec.metrics), headline=spec.headline)
    if metric is not None:
        _set_headline(data.spec, metric)
    return data
