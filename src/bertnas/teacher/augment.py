"""Teacher-labelled data augmentation (TinyBERT-style), on token ids.

AdaBERT's headline numbers train on about 20 copies of every training example, each with some words
replaced by similar words, labelled by the teacher. Here a copy is made from the example's token ids:

* **replacement**: a whole word (one vocabulary token that starts a word, e.g. ``movie`` but not ``##s``)
  becomes one of its nearest neighbours by cosine in the teacher's input embedding table;
* **deletion** and **swapping** of whole words (a word may span several word pieces);
* special tokens ([CLS], [SEP], ...) and the pair structure (token types) are kept.
* in a **sentence pair**, a word is replaced the same way wherever it occurs, in A and in B: the copy keeps
  which words the two sentences share. Replacing each occurrence on its own breaks that overlap, and the
  teacher then calls most copies of a paraphrase "not paraphrase" (measured on MRPC with 16 copies: 65% of the
  copies labelled negative against 33% of the real pairs), so a student trained on them learns a shifted prior.

Working on ids keeps sentence pairs intact and never lengthens an example, so nothing is re-tokenized.
Copies are seeded by (seed, copy number): the same settings give the same data. The teacher labels them copy
by copy (see :func:`label_augmented`), storing only what search and training read: the teacher's logits
and the per-layer probe predictions (not the large per-layer features).
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.encode import Encoded, Ragged, lengths_of
from ..errors import BertnasError
from ..utils import atomic_dir, atomic_write_text, hash_obj
from .knowledge import cache_root, teacher_pass
from .loading import Teacher

logger = logging.getLogger("bertnas")
NEIGHBOURS = 15  # candidates per word, as TinyBERT's GloVe neighbours


@dataclass
class AugmentSettings:
    copies: int
    replace_prob: float = 0.4
    edit_prob: float = 0.1
    seed: int = 0


def word_starts(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Per vocabulary id: (starts a word, is a whole alphabetic word usable as a replacement).

    WordPiece marks continuations with ``##``; byte-level BPE and SentencePiece mark word starts with
    ``Ġ``/``▁``. Special tokens are neither.
    """
    vocab = tokenizer.get_vocab()
    size = max(max(vocab.values()) + 1, len(tokenizer))
    starts, whole = np.zeros(size, bool), np.zeros(size, bool)
    marked = sum(t.startswith(("Ġ", "▁")) for t in vocab)
    wordpiece = marked < 0.05 * len(vocab)  # else byte-level BPE / SentencePiece: the mark starts a word
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token, i in vocab.items():
        if i in special:
            continue
        if wordpiece:
            is_start, bare = not token.startswith("##"), token
        else:
            is_start = token.startswith(("Ġ", "▁"))
            bare = token[1:] if is_start else token
        starts[i] = is_start
        whole[i] = is_start and bare.isalpha() and len(bare) > 1
    return starts, whole


def nearest_neighbours(table: torch.Tensor, queries: np.ndarray, pool: np.ndarray, k: int = NEIGHBOURS) -> dict[int, np.ndarray]:
    """For each query id, the ``k`` pool ids closest by cosine in ``table`` (itself excluded)."""
    emb = torch.nn.functional.normalize(table.float(), dim=-1)
    pool_t = torch.as_tensor(pool)
    pool_emb = emb[pool_t]  # (P, H)
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(queries), 2048):
        q = torch.as_tensor(queries[start : start + 2048])
        sims = emb[q] @ pool_emb.T  # (Q, P)
        sims[pool_t[None, :] == q[:, None]] = -2.0  # never the word itself
        top = sims.topk(min(k, len(pool)), dim=-1).indices
        for row, qid in enumerate(q.tolist()):
            out[qid] = pool[top[row].numpy()]
    return out


def _words(ids: list[int], types: list[int], starts: np.ndarray, special: set[int]) -> list[tuple[int, int, int]]:
    """(start, end, segment) spans of the words in one example; special tokens are spans of their own."""
    spans: list[list[int]] = []
    for pos, tok in enumerate(ids):
        if tok in special or not spans or starts[tok] or spans[-1][2] != types[pos] or ids[spans[-1][0]] in special:
            spans.append([pos, pos + 1, types[pos]])
        else:
            spans[-1][1] = pos + 1
    return [tuple(s) for s in spans]


def augment_one(ids: list[int], types: list[int], rng: np.random.Generator, settings: AugmentSettings,
                starts: np.ndarray, neighbours: dict[int, np.ndarray], special: set[int]) -> tuple[list[int], list[int]]:
    """One augmented copy of an encoded example (ids and token types)."""
    out: list[tuple[list[int], list[int], bool]] = []  # (token ids, token types, is special) per word
    words = _words(ids, types, starts, special)
    pair = len({segment for _, _, segment in words}) > 1
    chosen: dict[int, int] = {}  # pairs: one decision per word id, applied to every occurrence in A and B
    left = {}  # words per segment: a deletion never empties a sentence
    for start, _, segment in words:
        left[segment] = left.get(segment, 0) + (ids[start] not in special)
    for start, end, segment in words:
        toks, tt = ids[start:end], types[start:end]
        if toks[0] in special:
            out.append((toks, tt, True))
            continue
        roll = rng.random(3)
        if roll[0] < settings.edit_prob and left[segment] > 1:  # delete
            left[segment] -= 1
            continue
        if pair and len(toks) == 1 and toks[0] in chosen:
            toks = [chosen[toks[0]]]
        elif roll[1] < settings.replace_prob and len(toks) == 1 and toks[0] in neighbours:
            candidates = neighbours[toks[0]]
            replacement = int(candidates[rng.integers(len(candidates))])
            chosen[toks[0]] = replacement
            toks = [replacement]
        elif len(toks) == 1:
            chosen[toks[0]] = toks[0]
        out.append((toks, tt, False))
        if roll[2] < settings.edit_prob and len(out) >= 2 and not out[-2][2] and out[-2][1][0] == tt[0]:
            out[-1], out[-2] = out[-2], out[-1]  # swap with the previous word of the same sentence
    return [t for toks, _, _ in out for t in toks], [t for _, tt, _ in out for t in tt]


Copy = tuple[list[list[int]], list[list[int]]]  # one copy of every example: ids, token types


def _copy_maker(enc: Encoded, tokenizer, word_table: torch.Tensor, settings: AugmentSettings) -> Callable[[int], Copy]:
    """A function that makes copy c of every example, seeded by (seed, c) alone; the neighbour table is built
    once here, so the copies can be made (and freed) one at a time."""
    if settings.copies < 1:
        raise BertnasError(f"--augment must be >= 1 to augment, got {settings.copies}")
    starts, whole = word_starts(tokenizer)
    starts = starts[: word_table.size(0)] if len(starts) > word_table.size(0) else starts
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    used = np.unique(np.concatenate([np.asarray(x, dtype=np.int64) for x in enc.input_ids]))
    used = used[(used < len(whole)) & whole[np.minimum(used, len(whole) - 1)]]
    pool = np.nonzero(whole[: word_table.size(0)])[0]
    if len(pool) < 2 or len(used) == 0:
        neighbours: dict[int, np.ndarray] = {}
        logger.warning("augmentation: the vocabulary has no whole words to swap in; only deletions and swaps")
    else:
        neighbours = nearest_neighbours(word_table, used, pool)

    def make(copy: int) -> Copy:
        rng = np.random.default_rng([settings.seed, copy])
        ids_out, types_out = [], []
        for ids, types in zip(enc.input_ids, enc.token_type_ids):
            a, b = augment_one(ids, types, rng, settings, starts, neighbours, special)
            ids_out.append(a)
            types_out.append(b)
        return ids_out, types_out

    return make


def augment_encoded(enc: Encoded, tokenizer, word_table: torch.Tensor, settings: AugmentSettings) -> Encoded:
    """``settings.copies`` augmented copies of every example, copy-major (all of copy 1, then copy 2, ...), in
    memory as lists (:func:`label_augmented` streams them to disk instead).

    Labels are placeholders: the teacher labels the copies (:func:`label_augmented`).
    """
    make = _copy_maker(enc, tokenizer, word_table, settings)
    ids_out, types_out = [], []
    for copy in range(settings.copies):
        ids, types = make(copy)
        ids_out += ids
        types_out += types
    labels = torch.zeros(len(ids_out), dtype=enc.labels.dtype)
    return Encoded(input_ids=ids_out, token_type_ids=types_out, labels=labels, pad_id=enc.pad_id)


@dataclass
class Augmented:
    """Augmented examples with the teacher's labels, logits and per-layer probe logits."""

    encoded: Encoded
    teacher_logits: torch.Tensor  # (N, C)
    probe_logits: torch.Tensor | None  # (L + 1, N, C); None when labelled without probes (NAS-BERT)
    key: str


def probes_hash(probe_tensors: dict[str, torch.Tensor] | None) -> str | None:
    """A digest of the probes' weights: the copies' probe predictions depend on them (None: no probes)."""
    if probe_tensors is None:
        return None
    h = hashlib.sha256()
    for name in ("weight", "bias", "mean", "std"):
        h.update(probe_tensors[name].detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def augment_key(knowledge_key: str, settings: AugmentSettings, probe_tensors: dict[str, torch.Tensor] | None) -> str:
    return hash_obj({"knowledge": knowledge_key, "settings": settings.__dict__, "probes": probes_hash(probe_tensors),
                     "pairs": "one decision per word"})[:24]


def _npy_header(dtype: np.dtype, count: int) -> bytes:
    """The header ``np.save`` writes for a 1-D array of ``count`` items (its length does not depend on ``count``:
    numpy leaves room for the shape to grow)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": (count,)})
    return buf.getvalue()


class _FlatWriter:
    """A 1-D ``.npy`` file written one copy at a time, byte for byte what ``np.save`` writes for the whole
    array: the header is rewritten with the final length when the writer closes without error."""

    def __init__(self, path: Path, dtype: type) -> None:
        self.dtype, self.count = np.dtype(dtype), 0
        self.fh = open(path, "wb")
        self.fh.write(_npy_header(self.dtype, 0))

    def append(self, seqs: list[list[int]]) -> None:
        flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=self.dtype)
        self.fh.write(flat.tobytes())
        self.count += flat.size

    def __enter__(self) -> _FlatWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_) -> None:
        if kind is None:
            header = _npy_header(self.dtype, self.count)
            assert len(header) == len(_npy_header(self.dtype, 0)), "a 1-D .npy header keeps its length"
            self.fh.seek(0)
            self.fh.write(header)
        self.fh.close()


def augment_bytes(n: int, tokens: int, layers: int, labels: int) -> int:
    """Bytes of ``n`` copies (``tokens`` tokens in all) in the cache, .npy headers and meta.json aside, as
    :func:`_save` and :func:`label_augmented` write them: per copy the teacher's logits and ``layers`` probes'
    (float32) and an offset (int64, one more in all); per token an id (int32) and a token type (int8)."""
    return n * (1 + layers) * labels * 4 + (n + 1) * 8 + tokens * (4 + 1)


def _save(directory: Path, offsets: np.ndarray, logits: np.ndarray, meta: dict) -> None:
    """Write the copies' offsets into the concatenated ids, their teacher logits and meta.json; the ids, token
    types and probe logits were written copy by copy (:func:`label_augmented`)."""
    np.save(directory / "offsets.npy", offsets)
    np.save(directory / "teacher_logits.npy", logits)
    atomic_write_text(directory / "meta.json", json.dumps(meta, indent=2))


def load_augmented(key: str, cache_dir: str | Path | None, regression: bool, pad_id: int,
                   limit: int | None = None) -> Augmented:
    """Read augmented examples and their teacher outputs from the cache (as recorded in probes.json);
    ``limit``: only the first that many (copies are copy-major, and copy c is seeded by (seed, c) alone, so the
    first k copies of a bigger set have the ids of a k-copy set; their teacher outputs match it up to the batching
    of the teacher pass, so a run never takes them from a bigger set by itself: the learning-curve study does)."""
    path = cache_root(cache_dir) / f"augment-{key}"
    if not (path / "meta.json").is_file():
        raise BertnasError(f"augmented data {key} not in cache {path.parent}: run `bertnas probe` again (or pass the same --cache-dir)")
    offsets = np.load(path / "offsets.npy")
    if limit is not None:
        offsets = offsets[: limit + 1]
    n = len(offsets) - 1
    ids = np.load(path / "input_ids.npy", mmap_mode="r")
    types = np.load(path / "token_type_ids.npy", mmap_mode="r")
    logits = torch.from_numpy(np.load(path / "teacher_logits.npy")[:n])
    probe_file = path / "probe_logits.npy"
    probes = torch.from_numpy(np.load(probe_file, mmap_mode="c")[:, :n]) if probe_file.is_file() else None
    enc = Encoded(input_ids=Ragged(ids, offsets), token_type_ids=Ragged(types, offsets),
                  labels=teacher_labels(logits, regression), pad_id=pad_id)  # memory-mapped: no list per copy
    return Augmented(encoded=enc, teacher_logits=logits, probe_logits=probes, key=key)


def teacher_labels(logits: torch.Tensor, regression: bool) -> torch.Tensor:
    """Gold labels for augmented examples: the teacher's prediction."""
    return logits.squeeze(-1).float() if regression else logits.argmax(-1)


def label_augmented(
    teacher: Teacher,
    train: Encoded,
    settings: AugmentSettings,
    probe_tensors: dict[str, torch.Tensor] | None,
    knowledge_key: str,
    device: torch.device,
    bf16: bool,
    regression: bool,
    batch_size: int = 64,
    token_budget: int | None = None,
    cache_dir: str | Path | None = None,
) -> Augmented:
    """Make the augmented copies and label them with the teacher and the probes (cached), one copy at a time:
    a copy's ids, token types and outputs go to disk before the next is made, so memory holds one copy's lists.
    ``probe_tensors`` None: the teacher's logits only (NAS-BERT's fine-tuning reads no probes); the teacher then
    runs without its hidden states. ``knowledge_key``: the cache entry of the teacher's outputs on ``train``."""
    key = augment_key(knowledge_key, settings, probe_tensors)
    cache = cache_root(cache_dir)
    final = cache / f"augment-{key}"
    if (final / "meta.json").is_file():
        logger.info("augmentation: cache hit %s", final)
        return load_augmented(key, cache, regression, train.pad_id)
    make = _copy_maker(train, teacher.tokenizer, teacher.model.get_input_embeddings().weight.detach().cpu(), settings)
    n = settings.copies * len(train)
    logger.info("augmentation: %d copies of %d examples = %d new examples, labelled by the teacher (%s)",
                settings.copies, len(train), n, "bf16" if bf16 else "fp32")
    with atomic_dir(final) as tmp:  # a crash leaves no half-written cache entry
        labels = probe_tensors["weight"].size(-1) if probe_tensors is not None else teacher_outputs(teacher)
        logits = np.zeros((n, labels), np.float32)
        offsets = np.zeros(n + 1, np.int64)
        probe_logits = None if probe_tensors is None else np.lib.format.open_memmap(
            tmp / "probe_logits.npy", mode="w+", dtype=np.float32, shape=(probe_tensors["weight"].size(0), *logits.shape))
        with _FlatWriter(tmp / "input_ids.npy", np.int32) as ids_out, \
                _FlatWriter(tmp / "token_type_ids.npy", np.int8) as types_out:
            for copy in range(settings.copies):
                base = copy * len(train)
                ids, types = make(copy)
                enc = Encoded(input_ids=ids, token_type_ids=types, pad_id=train.pad_id,
                              labels=torch.zeros(len(ids), dtype=train.labels.dtype))
                teacher_pass(teacher, enc, _sink(probe_tensors, logits, probe_logits, base), device, bf16,
                             batch_size, token_budget, want_features=probe_tensors is not None,
                             desc=f"teacher (augmented) copy {copy + 1}/{settings.copies}")
                offsets[base + 1 : base + len(ids) + 1] = offsets[base] + np.cumsum(lengths_of(ids))
                ids_out.append(ids)
                types_out.append(types)
                del ids, types, enc  # before the next copy is made
        if probe_logits is not None:
            probe_logits.flush()
            del probe_logits
        meta = {"key": key, "knowledge_key": knowledge_key, "settings": settings.__dict__, "n": n,
                "n_original": len(train), "probes": probes_hash(probe_tensors)}
        _save(tmp, offsets, logits, meta)
    return load_augmented(key, cache, regression, train.pad_id)


def _sink(probe_tensors: dict[str, torch.Tensor] | None, logits: np.ndarray, probe_logits: np.ndarray | None,
          base: int):
    """Write one copy's teacher logits and probe logits (when there are probes) at its rows (``base`` + index
    in the copy)."""
    from .probes import apply_probes

    def sink(idx: torch.Tensor, lg: torch.Tensor, feats: torch.Tensor | None) -> None:
        rows = idx.numpy() + base
        logits[rows] = lg.numpy()
        if probe_logits is not None:
            probe_logits[:, rows] = apply_probes(probe_tensors, feats.half()).numpy()

    return sink


def teacher_outputs(teacher: Teacher) -> int:
    """Logits per example the teacher gives in task order (its label count; 1 for regression)."""
    return len(teacher.label_order) if teacher.label_order is not None else int(teacher.model.config.num_labels)
