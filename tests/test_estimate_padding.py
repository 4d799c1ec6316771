"""The dry run prices the teacher pass by padded tokens: the timed slice's few length-sorted batches each span a
wide range of lengths and pad more than the whole training set's many narrow ones, so its time per example is
scaled by the ratio of padded tokens per example (at 25k SST-2 sentences the unscaled forecast was 54% over the
measured pass, the scaled one 4%: docs/benchmarks.md, Scale)."""
from __future__ import annotations

import random

import torch

from bertnas.data.encode import Encoded, inference_batches
from bertnas.estimate import padded_tokens, padding_ratio


def _data(n: int, seed: int = 0) -> Encoded:
    rng = random.Random(seed)
    seqs = [[5] * int(3 + 61 * rng.random() ** 3) for _ in range(n)]  # short ones common, as in SST-2
    return Encoded(seqs, [[0] * len(s) for s in seqs], torch.zeros(n, dtype=torch.long), pad_id=0)


def test_padded_tokens_are_the_batches_rows_times_their_longest():
    data = _data(500)
    want = sum(len(b) * max(len(data.input_ids[i]) for i in b) for b in inference_batches(data, 64))
    assert padded_tokens(data, 64) == want
    assert padded_tokens(data, 64) >= sum(map(len, data.input_ids))  # padding only adds
    assert padded_tokens(data, 64, token_budget=256) <= padded_tokens(data, 64)  # smaller batches pad less


def test_a_small_slice_pads_more_than_the_whole_set():
    data = _data(20000)
    ratio = padding_ratio(data, 512, 64)
    assert 0.5 < ratio < 0.95  # the whole set's narrow batches waste less than the slice's 8 wide ones
    assert padding_ratio(data, len(data), 64) == 1.0  # the slice is everything: nothing to scale
