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
import hashlib
import logging
import math
import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

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


def _iter_lines(path: Path) -> Iterator[str]:
    check_text_file(path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                yield line.strip().replace(PAIR_SEPARATOR, " ")


def _iter_glue_train(path: Path, pairs: bool = True) -> Iterator[str]:
    check_text_file(path)
    try:
        yield from _iter_tsv_columns(path, pairs)
    except UnicodeDecodeError as exc:  # past the checked block: still a one-line error, not a traceback
        raise BertnasError(f"corpus file {path} is not valid UTF-8 past its first {TEXT_CHECK_BYTES} bytes: "
                           "convert it to UTF-8") from exc


def _iter_tsv_columns(path: Path, pairs: bool = True) -> Iterator[str]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            return
        names = [name.strip() for name in header]
        columns = [i for i, name in enumerate(names) if name in TEXT_COLUMNS]
        if not columns:
            raise BertnasError(f"{path}: no sentence column in the header ({', '.join(header[:8])}); "
                               f"expected one of {', '.join(TEXT_COLUMNS)}")
        pair = next(((names.index(a), names.index(b)) for a, b in PAIR_COLUMNS if a in names and b in names), None)
        for row in reader:
            if pairs and pair is not None and max(pair) < len(row) and row[pair[0]].strip() and row[pair[1]].strip():
                yield row[pair[0]].strip() + PAIR_SEPARATOR + row[pair[1]].strip()
            else:
                yield from (row[i].strip() for i in columns if i < len(row) and row[i].strip())


def _iter_datasets(name: str) -> Iterator[str]:
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
    for batch in ds.iter(batch_size=1000):  # row batches from the on-disk Arrow table, not the whole column
        yield from (t.strip().replace(PAIR_SEPARATOR, " ") for t in batch[column] if t and t.strip())


def iter_source(source: str, pairs: bool = True) -> Iterator[str]:
    """The lines of text of one corpus source (see the module docstring), read lazily."""
    if source.startswith("hf:"):
        return _iter_datasets(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise BertnasError(f"corpus {source} not found: pass text files, folders of .txt files or GLUE task folders")
    if path.is_file():
        return _iter_lines(path)
    if (path / "train.tsv").is_file():
        return _iter_glue_train(path / "train.tsv", pairs)
    files = sorted(path.rglob("*.txt"))
    if not files:
        raise BertnasError(f"corpus folder {source} has no .txt files and no train.tsv")
    return (line for f in files for line in _iter_lines(f))


def read_source(source: str, pairs: bool = True) -> list[str]:
    """The lines of text of one corpus source, as a list."""
    return list(iter_source(source, pairs))


def _sources(spec: str) -> list[str]:
    if not spec or not spec.strip():
        raise BertnasError("no corpus given: pass --corpus FILE_OR_FOLDER[,MORE]")
    return [s.strip() for s in spec.split(",") if s.strip()]


def first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """Sorted indices of the first row of each distinct row of an (n, 2) uint64 array: a stable lexicographic
    sort and a comparison with the previous row (about 25 bytes a row beside the hashes; ``np.unique`` on
    16-byte values takes about 65)."""
    order = np.lexsort((hashes[:, 1], hashes[:, 0]))  # stable: equal rows keep their reading order
    new = np.ones(len(order), dtype=bool)
    for column in (0, 1):
        values = hashes[order, column]
        new[1:] &= values[1:] == values[:-1]
        del values
    np.logical_not(new[1:], out=new[1:])  # a row starts a group unless both halves equal the previous row's
    return np.sort(order[new])


def _digest(line: str) -> bytes:
    return hashlib.blake2b(line.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def sample_indices(rng: random.Random, n: int, k: int) -> np.ndarray:
    """``rng.sample(range(n), k)`` as an int64 array, drawing exactly the same numbers (so the same subset, in
    the same order, as sampling a list of ``n`` texts), with numpy arrays where the standard library builds a
    Python list or set of up to ``n`` ints (about 36 bytes each: 3.6 GB for 100M lines, against 9 here)."""
    if not 0 <= k <= n:
        raise ValueError("Sample larger than population or is negative")
    result = np.empty(k, dtype=np.int64)
    setsize = 21 + (4 ** math.ceil(math.log(k * 3, 4)) if k > 5 else 0)  # the standard library's choice of method
    randbelow = rng._randbelow
    if n <= setsize:  # the pool method: a shrinking pool of candidates
        pool = np.arange(n, dtype=np.int64)
        for i in range(k):
            j = randbelow(n - i)
            result[i] = pool[j]
            pool[j] = pool[n - i - 1]
    else:  # the set method: redraw what was drawn before
        taken = np.zeros(n, dtype=bool)
        for i in range(k):
            j = randbelow(n)
            while taken[j]:
                j = randbelow(n)
            taken[j] = True
            result[i] = j
    return result


def shuffled_indices(rng: random.Random, n: int) -> np.ndarray:
    """``range(n)`` shuffled by ``rng.shuffle`` (the same draws, so the same order), as an int64 array."""
    order = np.arange(n, dtype=np.int64)
    randbelow = rng._randbelow
    for i in range(n - 1, 0, -1):
        j = randbelow(i + 1)
        order[i], order[j] = order[j], order[i]
    return order


class Corpus:
    """The items of a corpus spec, de-duplicated in order, then a seeded random subset, read in two passes so
    that no list of every text is ever held in memory:

    1. every line is hashed (16 bytes a line): the first occurrence of each distinct line is kept, and the
       seeded subset is drawn over the distinct lines' ranks (``random.Random(seed).sample``, the same draw as
       sampling the list of texts, so the subset and its order do not depend on how the corpus was read);
    2. the kept lines are read again and written, UTF-8, to an anonymous temporary file (``spill_dir``, default
       the system's temporary folder), which iteration reads back in the subset's order.

    Memory: about 17 bytes per corpus line and 16 per kept item (about 45 a line while the hashes are sorted);
    disk: the kept text. Iterating (``for text in
    corpus``, :meth:`chunks`) gives exactly what :func:`read_corpus` returns. The sources must not change
    between the two passes.
    """

    def __init__(self, spec: str, max_sentences: int | None = None, seed: int = 0, min_chars: int = 1,
                 pairs: bool = True, spill_dir: str | Path | None = None) -> None:
        self.spec = spec
        sources = _sources(spec)
        digests = bytearray()
        for source in sources:  # pass 1: a 16-byte hash per line
            lines = 0
            for line in iter_source(source, pairs):
                lines += 1
                if len(line) >= min_chars:
                    digests += _digest(line)
            logger.info("corpus %s: %d lines", source, lines)
        whole = hashlib.sha256(digests).digest()  # what pass 2 must read again
        if not digests:
            raise BertnasError(f"corpus {spec} is empty: it holds no non-blank lines of text")
        first = first_occurrences(np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2))
        del digests
        distinct = len(first)
        if max_sentences is not None and distinct > max_sentences:
            position = np.full(distinct, -1, dtype=np.int64)  # distinct rank -> place in the output, -1: not kept
            position[sample_indices(random.Random(seed), distinct, max_sentences)] = np.arange(max_sentences)
        else:
            position = np.arange(distinct, dtype=np.int64)
        size = int((position >= 0).sum())
        is_first = np.zeros(int(first[-1]) + 1, dtype=bool)
        is_first[first] = True
        del first
        self._starts = np.zeros(size, dtype=np.int64)
        self._ends = np.zeros(size, dtype=np.int64)
        self._file = tempfile.TemporaryFile(dir=spill_dir)
        line_no, rank, at, again = 0, 0, 0, hashlib.sha256()
        for source in sources:  # pass 2: the kept lines, spilled to disk with where each goes in the output
            for line in iter_source(source, pairs):
                if len(line) < min_chars:
                    continue
                again.update(_digest(line))
                if line_no < len(is_first) and is_first[line_no] and rank < distinct:
                    place = position[rank]
                    rank += 1
                    if place >= 0:
                        data = line.encode("utf-8", "surrogatepass")
                        self._file.write(data)
                        self._starts[place], self._ends[place] = at, at + len(data)
                        at += len(data)
                line_no += 1
        if again.digest() != whole:
            self.close()
            raise BertnasError(f"corpus {spec} changed while it was read (its second reading differs from the first): "
                               "read it from files that are not being written")
        self._file.flush()

    def __len__(self) -> int:
        return len(self._starts)

    def close(self) -> None:
        """Delete the spilled text now (it is deleted anyway when the object goes)."""
        self._file.close()

    def __getitem__(self, i: int) -> str:
        start = int(self._starts[i])
        return os.pread(self._file.fileno(), int(self._ends[i]) - start, start).decode("utf-8", "surrogatepass")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def chunks(self, size: int) -> Iterator[list[str]]:
        """The items in order, ``size`` at a time."""
        return chunks(self, size)


def chunks(texts: Sequence[str] | Corpus, size: int) -> Iterator[list[str]]:
    """``texts`` (a list or a :class:`Corpus`: anything with a length and items by index) ``size`` items at a time."""
    for start in range(0, len(texts), size):
        yield [texts[i] for i in range(start, min(start + size, len(texts)))]


def read_corpus(spec: str, max_sentences: int | None = None, seed: int = 0, min_chars: int = 1,
                pairs: bool = True) -> list[str]:
    """All sources of a comma-separated ``spec``, de-duplicated in order, then a seeded random subset, as a list.
    Items are texts, or ``A<TAB>B`` pairs from pair tasks' folders (:func:`split_pair`) when ``pairs``.
    A big corpus is better read as a :class:`Corpus` (the same items, never all in memory).

    The subset keeps large corpora bounded on CPU; the same seed always picks the same sentences.
    """
    return list(Corpus(spec, max_sentences, seed, min_chars, pairs))
