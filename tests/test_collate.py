"""Batches are padded by one vectorized gather and scatter (``data.encode.collate``), not row by row in Python:
the same tensors, with the same dtypes, as the row-by-row padding it replaced, for lists and for Ragged arrays of
several blocks (teacher-labelled copies read from the cache), at random batches of random lengths."""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import torch

from bertnas.data.encode import Encoded, Ragged, collate


def _row_by_row():
    """The padding as it was before (a Python loop over the rows), kept in the benchmark that times the two."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "collate.py"
    spec = importlib.util.spec_from_file_location("collate_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.row_by_row


def test_vectorized_padding_equals_row_by_row():
    row_by_row = _row_by_row()
    rng = random.Random(0)
    seqs = [[rng.randrange(1, 30000) for _ in range(rng.randrange(2, 60))] for _ in range(300)]
    types = [[int(j > len(s) // 2) for j in range(len(s))] for s in seqs]
    for form in ("lists", "ragged"):
        for labels in (torch.tensor([rng.randrange(3) for _ in seqs]), torch.rand(len(seqs))):
            data = Encoded(seqs, types, labels, pad_id=7) if form == "lists" else Encoded(
                Ragged.join(Ragged.from_lists(seqs[:120]), Ragged.from_lists(seqs[120:], np.int64)),
                Ragged.join(Ragged.from_lists(types[:200], np.int8), Ragged.from_lists(types[200:], np.int8)),
                labels, pad_id=7)
            for _ in range(40):
                idx = rng.sample(range(len(seqs)), rng.randrange(1, 40))
                want, got = row_by_row(data, idx), collate(data, idx)
                assert want.keys() == got.keys()
                for key in want:
                    assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), (form, key)
