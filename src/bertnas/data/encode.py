"""Tokenize a split once and serve padded batches that carry each example's index.

The index lets distillation look up cached teacher/probe outputs without running the teacher. Batches
are length-grouped (shuffled, then sorted inside chunks of 50 batches) so CPU time is not spent on padding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import BertnasError
from .examples import Examples


@dataclass
class Encoded:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
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
    return Encoded(input_ids=first.input_ids + second.input_ids,
                   token_type_ids=first.token_type_ids + second.token_type_ids,
                   labels=torch.cat([first.labels, second.labels.to(first.labels.dtype)]), pad_id=first.pad_id)


def collate(data: Encoded, indices: list[int]) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to their longest; keys match a BERT model's forward plus labels, index."""
    length = max(len(data.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), length), data.pad_id, dtype=torch.long)
    types = torch.zeros((len(indices), length), dtype=torch.long)
    mask = torch.zeros((len(indices), length), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(data.input_ids[i])
        ids[row, :n] = torch.tensor(data.input_ids[i])
        types[row, :n] = torch.tensor(data.token_type_ids[i])
        mask[row, :n] = 1
    index = torch.tensor(indices, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
            "labels": data.labels[index], "index": index}


def batches(
    data: Encoded,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    subset: list[int] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield padded batches; with ``shuffle``, length-grouped random batches from ``generator``."""
    order = list(range(len(data))) if subset is None else list(subset)
    if shuffle:
        perm = torch.randperm(len(order), generator=generator).tolist()
        order = [order[i] for i in perm]
        chunk = batch_size * 50
        grouped = []
        for start in range(0, len(order), chunk):
            grouped += sorted(order[start : start + chunk], key=lambda i: len(data.input_ids[i]))
        chunks = [grouped[i : i + batch_size] for i in range(0, len(grouped), batch_size)]
        for j in torch.randperm(len(chunks), generator=generator).tolist():
            yield collate(data, chunks[j])
    else:
        for start in range(0, len(order), batch_size):
            yield collate(data, order[start : start + batch_size])


def inference_batches(data: Encoded, max_batch: int, token_budget: int | None = None) -> list[list[int]]:
    """Index lists for a forward-only pass: examples sorted by length, so a batch pads little.

    A batch holds at most ``max_batch`` examples and, with ``token_budget``, at most that many padded tokens
    (short sentences then travel in bigger batches). Results must be written back by example index.
    """
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    out: list[list[int]] = []
    current: list[int] = []
    for i in order:  # ascending length: the newest example is always the longest of its batch
        longest = len(data.input_ids[i])
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
