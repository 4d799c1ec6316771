"""Unlabelled text for task-agnostic distillation: text files, folders of them, GLUE task folders.

``--corpus`` is a comma-separated list of sources. Each source is
- a text file: one sentence or paragraph per line (blank lines skipped);
- a GLUE task folder (has ``train.tsv`` with a header): the sentence columns of ``train.tsv``; a pair task's
  two sentences stay one item, ``A<TAB>B``, tokenized as the task sees them (A [SEP] B, token types 0 and 1),
  unless ``pairs=False`` (each sentence its own line);
- any other folder: every ``*.txt`` file inside it (recursively, sorted);
- a ``datasets`` id (``hf:NAME`` or ``hf:NAME:CONFIG``), only if the ``datasets`` package is installed.

Files must be UTF-8 text: one whose first block holds NUL bytes or invalid UTF-8 is refused with a one-line error
(read leniently, a binary file would silently become lines of replacement characters to distil on).
"""
from __future__ import annotations

import codecs
import csv
import logging
import random
from pathlib import Path

from ..errors import BertnasError

logger = logging.getLogger("bertnas")

#: Header names of text columns in GLUE-style train.tsv files.
TEXT_COLUMNS = ("sentence", "sentence1", "sentence2", "#1 String", "#2 String", "question", "question1", "question2")

#: Column pairs that make one input of a pair task.
PAIR_COLUMNS = (("sentence1", "sentence2"), ("#1 String", "#2 String"), ("question1", "question2"), ("question", "sentence"))

#: Between the two texts of a pair item (plain text files have their tabs turned into spaces, so never hold it).
PAIR_SEPARATOR = "\t"


def split_pair(item: str) -> tuple[str, str | None]:
    """``"A<TAB>B"`` -> ("A", "B"); a single text -> (text, None)."""
    a, sep, b = item.partition(PAIR_SEPARATOR)
    return (a, b) if sep else (item, None)

NUL = b"\x00"

#: Bytes of each corpus file checked for being text before it is read (a binary file is refused, not trained on).
TEXT_CHECK_BYTES = 64 * 1024


def check_text_file(path: Path) -> None:
    """Refuse a file that is not UTF-8 text, judged by its first block: NUL bytes or bytes that are not UTF-8.

    Lines are read with ``errors="replace"``, so without this a binary file (a model, an archive, a .pt file
    passed by mistake) would become thousands of lines of replacement characters and a supernet trained on them.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(TEXT_CHECK_BYTES)
            at_end = not fh.read(1)
    except OSError as exc:
        raise BertnasError(f"corpus file {path} cannot be read ({exc.strerror}): pass a readable text file") from exc
    fix = "pass UTF-8 text files (one sentence or paragraph per line)"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BertnasError(f"corpus file {path} is UTF-16 text (it starts with a UTF-16 byte-order mark): convert it "
                           "to UTF-8, e.g. iconv -f UTF-16 -t UTF-8")
    if NUL in head:
        raise BertnasError(f"corpus file {path} is not text: NUL bytes in its first {len(head)} bytes (the first at "
                           f"byte {head.index(NUL)}), so it is binary; {fix}")
    try:  # incremental: a multi-byte character cut at the end of the block is not an error
        codecs.getincrementaldecoder("utf-8")().decode(head, final=at_end)
    except UnicodeDecodeError as exc:
        raise BertnasError(f"corpus file {path} is not text: its first {len(head)} bytes are not valid UTF-8 "
                           f"(byte {exc.start}: {head[exc.start:exc.start + 4]!r}); {fix}") from None


def _read_lines(path: Path) -> list[str]:
    check_text_file(path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [line.strip().replace(PAIR_SEPARATOR, " ") for line in fh if line.strip()]


def _read_glue_train(path: Path, pairs: bool = True) -> list[str]:
    check_text_file(path)
    try:
        return _read_tsv_columns(path, pairs)
    except UnicodeDecodeError as exc:  # past the checked block: still a one-line error, not a traceback
        raise BertnasError(f"corpus file {path} is not valid UTF-8 past its first {TEXT_CHECK_BYTES} bytes: "
                           "convert it to UTF-8") from exc


def _read_tsv_columns(path: Path, pairs: bool = True) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            return []
        names = [name.strip() for name in header]
        columns = [i for i, name in enumerate(names) if name in TEXT_COLUMNS]
        if not columns:
            raise BertnasError(f"{path}: no sentence column in the header ({', '.join(header[:8])}); "
                               f"expected one of {', '.join(TEXT_COLUMNS)}")
        pair = next(((names.index(a), names.index(b)) for a, b in PAIR_COLUMNS if a in names and b in names), None)
        out = []
        for row in reader:
            if pairs and pair is not None and max(pair) < len(row) and row[pair[0]].strip() and row[pair[1]].strip():
                out.append(row[pair[0]].strip() + PAIR_SEPARATOR + row[pair[1]].strip())
            else:
                out += [row[i].strip() for i in columns if i < len(row) and row[i].strip()]
        return out


def _read_datasets(name: str) -> list[str]:
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise BertnasError(f"corpus {name!r} is a datasets id but the 'datasets' package is not installed: "
                           "pip install datasets, or pass a local folder of text files") from None
    parts = name.split(":")[1:]
    ds = datasets.load_dataset(parts[0], parts[1] if len(parts) > 1 else None, split="train")
    column = next((c for c in ("text", "sentence", "content") if c in ds.column_names), None)
    if column is None:
        raise BertnasError(f"dataset {parts[0]} has no text column (columns: {', '.join(ds.column_names)})")
    return [t.strip().replace(PAIR_SEPARATOR, " ") for t in ds[column] if t and t.strip()]


def read_source(source: str, pairs: bool = True) -> list[str]:
    """The lines of text of one corpus source (see the module docstring)."""
    if source.startswith("hf:"):
        return _read_datasets(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise BertnasError(f"corpus {source} not found: pass text files, folders of .txt files or GLUE task folders")
    if path.is_file():
        return _read_lines(path)
    if (path / "train.tsv").is_file():
        return _read_glue_train(path / "train.tsv", pairs)
    files = sorted(path.rglob("*.txt"))
    if not files:
        raise BertnasError(f"corpus folder {source} has no .txt files and no train.tsv")
    return [line for f in files for line in _read_lines(f)]


def read_corpus(spec: str, max_sentences: int | None = None, seed: int = 0, min_chars: int = 1,
                pairs: bool = True) -> list[str]:
    """All sources of a comma-separated ``spec``, de-duplicated in order, then a seeded random subset.
    Items are texts, or ``A<TAB>B`` pairs from pair tasks' folders (:func:`split_pair`) when ``pairs``.

    The subset keeps large corpora bounded on CPU; the same seed always picks the same sentences.
    """
    if not spec or not spec.strip():
        raise BertnasError("no corpus given: pass --corpus FILE_OR_FOLDER[,MORE]")
    seen: set[str] = set()
    texts: list[str] = []
    for source in (s.strip() for s in spec.split(",") if s.strip()):
        lines = read_source(source, pairs)
        logger.info("corpus %s: %d lines", source, len(lines))
        for line in lines:
            if len(line) >= min_chars and line not in seen:
                seen.add(line)
                texts.append(line)
    if not texts:
        raise BertnasError(f"corpus {spec} is empty: it holds no non-blank lines of text")
    if max_sentences is not None and len(texts) > max_sentences:
        texts = random.Random(seed).sample(texts, max_sentences)
    return texts
