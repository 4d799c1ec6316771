"""Tokenize a split once and serve padded batches that carry each example's index.

The index lets distillation look up cached teacher/probe outputs without running the teacher. Batches
are length-grouped (shuffled, then sorted inside chunks of 50 batches) so CPU time is not spent on padding.
"""
from __future__ import annotations

import bisect
import itertools
import operator
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import BertnasError
from .examples import Examples


class Ragged:
    """Int sequences stored flat: sequence i of a block is ``flat[offsets[i] : offsets[i + 1]]``.

    A list of lists costs about 36 bytes a token; this costs the array's 1-4, so millions of teacher-labelled
    copies fit in memory (or stay memory-mapped on disk). A concatenation keeps each side's block as it is
    (:meth:`join`; ``more``: the blocks after the first), so a memory-mapped side is never copied into memory.
    ``x[i]`` is a numpy view; ``x[a:b]`` and :meth:`take` copy the chosen sequences into one block.
    """

    def __init__(self, flat: np.ndarray, offsets: np.ndarray, more: Sequence[tuple[np.ndarray, np.ndarray]] = ()):
        self.blocks = [(flat, np.asarray(offsets, dtype=np.int64)), *more]
        self._firsts = np.cumsum([0] + [len(off) - 1 for _, off in self.blocks]).tolist()  # first index per block
        self._lengths: np.ndarray | None = None

    @classmethod
    def from_lists(cls, seqs: Sequence[Sequence[int]], dtype: np.dtype | type = np.int32) -> Ragged:
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs)), out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=dtype, count=int(offsets[-1]))
        return cls(flat, offsets)

    @classmethod
    def join(cls, *parts: Ragged) -> Ragged:
        """``parts`` one after another, sharing their arrays (nothing is copied)."""
        blocks = [block for part in parts for block in part.blocks]
        return cls(*blocks[0], more=blocks[1:])

    @property
    def dtype(self) -> np.dtype:
        return np.result_type(*(flat.dtype for flat, _ in self.blocks))

    @property
    def lengths(self) -> np.ndarray:
        """Every sequence's length (int64), from the offsets: no pass over the sequences."""
        if self._lengths is None:
            self._lengths = np.concatenate([np.diff(off) for _, off in self.blocks])
        return self._lengths

    def __len__(self) -> int:
        return self._firsts[-1]

    def __getitem__(self, i: int | slice) -> np.ndarray | Ragged:
        if isinstance(i, slice):
            return self.take(range(len(self))[i])
        given = operator.index(i)
        i = given + len(self) if given < 0 else given
        if not 0 <= i < len(self):
            raise IndexError(f"sequence {given} of a Ragged of {len(self)}")
        b = bisect.bisect_right(self._firsts, i) - 1
        flat, off = self.blocks[b]
        j = i - self._firsts[b]
        return flat[off[j] : off[j + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for flat, off in self.blocks:
            for start, stop in zip(off[:-1], off[1:]):
                yield flat[start:stop]

    def take(self, indices: Sequence[int] | np.ndarray) -> Ragged:
        """The sequences at ``indices``, copied into one new in-memory block."""
        given = np.asarray(indices, dtype=np.int64).reshape(-1)
        idx = np.where(given < 0, given + len(self), given)
        bad = (idx < 0) | (idx >= len(self))
        if bad.any():
            raise IndexError(f"sequence {int(given[bad][0])} of a Ragged of {len(self)}")
        lens = self.lengths[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        flat = np.empty(int(offsets[-1]), dtype=self.dtype)
        which = np.searchsorted(self._firsts, idx, side="right") - 1
        for b, (src, off) in enumerate(self.blocks):
            rows = np.nonzero(which == b)[0]
            starts = off[idx[rows] - self._firsts[b]]
            flat[_spans(offsets[rows], lens[rows])] = src[_spans(starts, lens[rows])]
        return Ragged(flat, offsets)

    def _tokens(self) -> np.ndarray:
        return np.concatenate([flat[off[0] : off[-1]] for flat, off in self.blocks])

    def __eq__(self, other: object) -> bool:
        """Same sequences (as lists compare): ``ragged == list_of_lists`` works too."""
        if isinstance(other, (list, tuple)):
            other = Ragged.from_lists(other, np.int64)
        if not isinstance(other, Ragged):
            return NotImplemented
        return np.array_equal(self.lengths, other.lengths) and np.array_equal(self._tokens(), other._tokens())

    __hash__ = None  # mutable arrays inside, compared by value

    def __repr__(self) -> str:
        return f"Ragged({len(self)} sequences, {int(self.lengths.sum())} tokens, {self.dtype})"


def _spans(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """The positions of the ranges ``[start, start + len)``, one range after another."""
    ends = np.cumsum(lens)
    return np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - (ends - lens), lens)


Sequences = list[list[int]] | Ragged


def lengths_of(seqs: Sequences, at: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """The lengths (int64) of ``seqs`` (only those ``at`` these indices): a Ragged's from its offsets."""
    if isinstance(seqs, Ragged):
        return seqs.lengths if at is None else seqs.lengths[np.asarray(at, dtype=np.int64)]
    chosen = seqs if at is None else (seqs[i] for i in at)
    return np.fromiter(map(len, chosen), dtype=np.int64, count=len(seqs) if at is None else len(at))


@dataclass
class Encoded:
    input_ids: Sequences  # a list of lists, or a Ragged (teacher-labelled copies read from the cache)
    token_type_ids: Sequences
    labels: torch.Tensor  # (N,) long, or float for regression
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)


ENCODE_CHUNK = 4096
"""Examples per tokenizer call. A fast tokenizer's output keeps, per example, far more than the ids (tokens,
offsets, masks, word ids: about 3 KB for a short sentence); tokenizing a whole split at once made that a peak
that grew with the training set (and stayed, as freed-but-kept heap). Chunks bound it; the ids are the same."""


def encode(tokenizer, examples: Examples, max_seq_len: int, regression: bool = False) -> Encoded:
    """Tokenize texts (and text pairs) the way the teacher saw them, without padding."""
    if len(examples) == 0:
        raise BertnasError(f"no examples to encode in {examples.source or 'the data'}")
    ids: list[list[int]] = []
    types: list[list[int]] = []
    for start in range(0, len(examples), ENCODE_CHUNK):
        stop = start + ENCODE_CHUNK
        enc = tokenizer(
            examples.texts[start:stop],
            examples.text_pairs[start:stop] if examples.text_pairs is not None else None,
            truncation=True,
            max_length=max_seq_len,
            return_token_type_ids=True,
            return_attention_mask=False,
        )
        part = enc["input_ids"]
        ids += part
        types += enc.get("token_type_ids") or [[0] * len(x) for x in part]
    labels = torch.tensor(examples.labels, dtype=torch.float32 if regression else torch.long)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(input_ids=ids, token_type_ids=types, labels=labels, pad_id=pad_id)


def concat(first: Encoded, second: Encoded) -> Encoded:
    """``first`` followed by ``second`` (indices of ``second`` shift by ``len(first)``)."""
    return Encoded(input_ids=_joined(first.input_ids, second.input_ids),
                   token_type_ids=_joined(first.token_type_ids, second.token_type_ids),
                   labels=torch.cat([first.labels, second.labels.to(first.labels.dtype)]), pad_id=first.pad_id)


def _joined(first: Sequences, second: Sequences) -> Sequences:
    """Two lists give a list; with a Ragged on either side, a Ragged that keeps its arrays (none copied)."""
    if not isinstance(first, Ragged) and not isinstance(second, Ragged):
        return first + second
    dtype = (first if isinstance(first, Ragged) else second).dtype
    return Ragged.join(*(s if isinstance(s, Ragged) else Ragged.from_lists(s, dtype) for s in (first, second)))


def collate(data: Encoded, indices: list[int]) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to their longest; keys match a BERT model's forward plus labels, index.
    Vectorized: the sequences are gathered as one flat array and scattered into the padded matrix (no loop over
    rows in Python, which a GPU step would wait for)."""
    ids, lens = _padded(data.input_ids, indices, data.pad_id)
    types, _ = _padded(data.token_type_ids, indices, 0)
    mask = torch.from_numpy((np.arange(ids.size(1))[None, :] < lens[:, None]).astype(np.int64))
    index = torch.tensor(indices, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
            "labels": data.labels[index], "index": index}


def _padded(seqs: Sequences, indices: Sequence[int], fill: int) -> tuple[torch.Tensor, np.ndarray]:
    """The sequences at ``indices`` as a (len(indices), longest) int64 tensor padded with ``fill``, and their lengths."""
    part = seqs.take(indices) if isinstance(seqs, Ragged) else Ragged.from_lists([seqs[i] for i in indices], np.int64)
    flat, offsets = part.blocks[0]
    lens = np.diff(offsets)
    out = np.full((len(lens), int(lens.max())), fill, dtype=np.int64)
    out[np.repeat(np.arange(len(lens)), lens), np.arange(len(flat)) - np.repeat(offsets[:-1], lens)] = flat
    return torch.from_numpy(out), lens


def batches(
    data: Encoded,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    subset: list[int] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield padded batches; with ``shuffle``, length-grouped random batches from ``generator``."""
    order = np.arange(len(data)) if subset is None else np.asarray(subset, dtype=np.int64).reshape(-1)
    if shuffle:
        order = order[torch.randperm(len(order), generator=generator).numpy()]
        grouped = _length_grouped(order, lengths_of(data.input_ids, order), batch_size * 50)
        chunks = [grouped[i : i + batch_size] for i in range(0, len(grouped), batch_size)]  # views, no int objects
        for j in torch.randperm(len(chunks), generator=generator).tolist():
            yield collate(data, chunks[j].tolist())
    else:
        for start in range(0, len(order), batch_size):
            yield collate(data, order[start : start + batch_size].tolist())


def _length_grouped(order: np.ndarray, lens: np.ndarray, chunk: int) -> np.ndarray:
    """``order`` with every run of ``chunk`` entries sorted by length (``lens``, aligned with ``order``); the sort
    is stable, so ties keep their shuffled order."""
    out = order.copy()
    for start in range(0, len(order), chunk):
        part = slice(start, start + chunk)
        out[part] = order[part][np.argsort(lens[part], kind="stable")]
    return out


def inference_batches(data: Encoded, max_batch: int, token_budget: int | None = None) -> list[list[int]]:
    """Index lists for a forward-only pass: examples sorted by length, so a batch pads little.

    A batch holds at most ``max_batch`` examples and, with ``token_budget``, at most that many padded tokens
    (short sentences then travel in bigger batches). Results must be written back by example index.
    """
    lens = lengths_of(data.input_ids)
    order = np.argsort(lens, kind="stable")  # as sorted() by length: ties keep index order
    out: list[list[int]] = []
    current: list[int] = []
    for i, longest in zip(order.tolist(), lens[order].tolist()):  # ascending: the newest is the longest
        if current and (len(current) >= max_batch or (token_budget and (len(current) + 1) * longest > token_budget)):
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    return out


def num_batches(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
