"""Teacher-labelled copies as flat arrays (#21): a Ragged-backed Encoded serves the same batches as a list-backed
one, copies are made and labelled one at a time with the ids the all-at-once path gave, the cache holds what
``augment_bytes`` (and so --dry-run) predicts, and a loaded set is memory-mapped, not a list per copy."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from bertnas.data.encode import Encoded, Ragged, batches, concat, encode, inference_batches, lengths_of
from bertnas.data.readers import load_task
from bertnas.data.split import take
from bertnas.teacher.augment import (AugmentSettings, augment_bytes, augment_one, label_augmented, nearest_neighbours,
                                     word_starts)
from bertnas.teacher.knowledge import teacher_pass
from bertnas.teacher.loading import load_teacher

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair(tiny_teacher, synthetic_files):
    files = synthetic_files["pair"]
    data = load_task("synthetic", None, files / "train.tsv", files / "dev.tsv", text_column="sentence1",
                     text_pair_column="sentence2")
    teacher = load_teacher(str(tiny_teacher), data.spec)
    return teacher, encode(teacher.tokenizer, data.train, 48)


def _ragged(enc: Encoded) -> Encoded:
    return Encoded(Ragged.from_lists(enc.input_ids, np.int32), Ragged.from_lists(enc.token_type_ids, np.int8),
                   enc.labels, enc.pad_id)


def _mapped(enc: Encoded, directory) -> Encoded:
    """``enc`` written as the augmentation cache writes it and read back memory-mapped."""
    ragged = _ragged(enc)
    directory.mkdir()
    np.save(directory / "ids.npy", ragged.input_ids.blocks[0][0])
    np.save(directory / "types.npy", ragged.token_type_ids.blocks[0][0])
    offsets = ragged.input_ids.blocks[0][1]
    return Encoded(Ragged(np.load(directory / "ids.npy", mmap_mode="r"), offsets),
                   Ragged(np.load(directory / "types.npy", mmap_mode="r"), offsets), enc.labels, enc.pad_id)


def _old_order(data: Encoded, batch_size: int, generator: torch.Generator, subset=None, shuffle=False) -> list:
    """Batch indices as ``batches`` drew them with Python lists and sorted() before #21."""
    order = list(range(len(data))) if subset is None else list(subset)
    if not shuffle:
        return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    perm = torch.randperm(len(order), generator=generator).tolist()
    order = [order[i] for i in perm]
    grouped = []
    for start in range(0, len(order), batch_size * 50):
        grouped += sorted(order[start : start + batch_size * 50], key=lambda i: len(data.input_ids[i]))
    chunks = [grouped[i : i + batch_size] for i in range(0, len(grouped), batch_size)]
    return [chunks[j] for j in torch.randperm(len(chunks), generator=generator).tolist()]


def _same_batches(a: Encoded, b: Encoded, **kwargs) -> None:
    got_a = list(batches(a, generator=torch.Generator().manual_seed(3), **kwargs))
    got_b = list(batches(b, generator=torch.Generator().manual_seed(3), **kwargs))
    assert [x["index"].tolist() for x in got_a] == _old_order(a, generator=torch.Generator().manual_seed(3), **kwargs)
    assert len(got_a) == len(got_b) > 0
    for x, y in zip(got_a, got_b):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k
        assert x["input_ids"].dtype == torch.long and x["token_type_ids"].dtype == torch.long


def test_ragged_batches_are_the_lists_batches(pair, tmp_path):
    _, enc = pair
    n = len(enc)
    half = Encoded(enc.input_ids[: n // 2], enc.token_type_ids[: n // 2], enc.labels[: n // 2], enc.pad_id)
    rest = Encoded(enc.input_ids[n // 2 :], enc.token_type_ids[n // 2 :], enc.labels[n // 2 :], enc.pad_id)
    joined = concat(half, _mapped(rest, tmp_path / "rest"))  # what stage_inputs builds: originals + memory-mapped copies
    assert isinstance(joined.input_ids, Ragged) and isinstance(joined.input_ids.blocks[1][0], np.memmap)
    lists = concat(half, rest)  # lists stay lists
    assert isinstance(lists.input_ids, list) and lists.input_ids == enc.input_ids
    plan = inference_batches(enc, 16, 200)
    assert [i for b in plan for i in b] == sorted(range(n), key=lambda i: len(enc.input_ids[i]))  # as before #21
    picked = [n - 1, 0, n // 2, 5, n // 2 - 1]
    for other in (_ragged(enc), _mapped(enc, tmp_path / "all"), joined):
        assert len(other) == n and other.input_ids == enc.input_ids and other.token_type_ids == enc.token_type_ids
        assert lengths_of(other.input_ids).tolist() == [len(x) for x in enc.input_ids]
        for kwargs in ({"batch_size": 2, "shuffle": True}, {"batch_size": 7, "shuffle": True},  # 2: chunks of 100
                       {"batch_size": 5, "shuffle": True, "subset": list(range(3, n, 2))}, {"batch_size": 9}):
            _same_batches(enc, other, **kwargs)
        assert inference_batches(other, 16, 200) == plan
        sub, want = take(other, picked), take(enc, picked)
        assert isinstance(sub.input_ids, Ragged) and sub.input_ids == want.input_ids
        assert sub.token_type_ids == want.token_type_ids and torch.equal(sub.labels, want.labels)
        row = other.input_ids[n - 1]
        assert torch.equal(torch.tensor(np.asarray(row)), torch.tensor(enc.input_ids[n - 1], dtype=torch.int32))


def _reference_copies(enc: Encoded, tokenizer, table: torch.Tensor, settings: AugmentSettings):
    """The copies as augment_encoded made them before #21: every copy at once, as lists."""
    starts, whole = word_starts(tokenizer)
    starts = starts[: table.size(0)] if len(starts) > table.size(0) else starts
    special = set(tokenizer.all_special_ids)
    used = np.unique(np.concatenate([np.asarray(x, dtype=np.int64) for x in enc.input_ids]))
    used = used[(used < len(whole)) & whole[np.minimum(used, len(whole) - 1)]]
    neighbours = nearest_neighbours(table, used, np.nonzero(whole[: table.size(0)])[0])
    ids_out, types_out = [], []
    for copy in range(settings.copies):
        rng = np.random.default_rng([settings.seed, copy])
        for ids, types in zip(enc.input_ids, enc.token_type_ids):
            a, b = augment_one(ids, types, rng, settings, starts, neighbours, special)
            ids_out.append(a)
            types_out.append(b)
    return ids_out, types_out


def _probes(teacher, num_labels: int = 2) -> dict[str, torch.Tensor]:
    layers, width = teacher.num_layers + 1, 2 * int(teacher.model.config.hidden_size)
    g = torch.Generator().manual_seed(0)
    return {"weight": torch.randn(layers, width, num_labels, generator=g), "bias": torch.randn(layers, num_labels, generator=g),
            "mean": torch.zeros(layers, 1, width), "std": torch.ones(layers, 1, width)}


def _npy_header_bytes(path) -> int:
    return np.load(path, mmap_mode="r").offset  # where the data starts


def test_streamed_copies_match_the_all_at_once_copies_and_the_predicted_bytes(pair, tmp_path):
    teacher, enc = pair
    settings = AugmentSettings(copies=3, replace_prob=0.5, edit_prob=0.1, seed=5)
    probes = _probes(teacher)
    aug = label_augmented(teacher, enc, settings, probes, "k", torch.device("cpu"), bf16=False, regression=False,
                          batch_size=16, cache_dir=tmp_path)
    ids, types = _reference_copies(enc, teacher.tokenizer, teacher.model.get_input_embeddings().weight.detach(), settings)
    assert aug.encoded.input_ids == ids and aug.encoded.token_type_ids == types  # bit-identical ids
    # the files are what one np.save of the whole arrays wrote before (existing caches stay valid)
    path = tmp_path / f"augment-{aug.key}"
    for name, values, dtype in (("input_ids", ids, np.int32), ("token_type_ids", types, np.int8)):
        buf = io.BytesIO()
        np.save(buf, np.concatenate([np.asarray(x, dtype) for x in values]))
        assert (path / f"{name}.npy").read_bytes() == buf.getvalue(), name
    offsets = np.load(path / "offsets.npy")
    assert offsets.dtype == np.int64 and offsets.tolist() == np.concatenate([[0], np.cumsum([len(x) for x in ids])]).tolist()
    assert json.loads((path / "meta.json").read_text())["n"] == 3 * len(enc)
    # one teacher pass over all copies at once gives the same logits up to float noise (batches differ)
    whole = Encoded(ids, types, torch.zeros(len(ids), dtype=torch.long), enc.pad_id)
    logits = torch.zeros(len(ids), 2)

    def sink(idx, lg, feats):
        logits[idx] = lg

    teacher_pass(teacher, whole, sink, torch.device("cpu"), False, 16, want_features=False)
    assert torch.allclose(aug.teacher_logits, logits, atol=1e-5)
    assert aug.probe_logits.shape == (teacher.num_layers + 1, len(ids), 2)
    # augment_bytes is what is on disk (headers and meta.json aside); with the originals' tokens (--dry-run) a
    # little more, as copies lose the words they delete
    on_disk = sum(f.stat().st_size - _npy_header_bytes(f) for f in path.glob("*.npy"))
    layers, tokens = teacher.num_layers + 1, sum(map(len, ids))
    assert on_disk == augment_bytes(len(ids), tokens, layers, 2)
    predicted = augment_bytes(len(ids), 3 * sum(map(len, enc.input_ids)), layers, 2)
    assert on_disk <= predicted <= 1.15 * on_disk
    assert {p.name for p in path.iterdir()} == {"offsets.npy", "input_ids.npy", "token_type_ids.npy",
                                                 "teacher_logits.npy", "probe_logits.npy", "meta.json"}


def test_loaded_copies_are_memory_mapped_arrays_not_lists(pair, tmp_path):
    teacher, enc = pair
    settings = AugmentSettings(copies=2, seed=1)
    aug = label_augmented(teacher, enc, settings, _probes(teacher), "k", torch.device("cpu"), bf16=False,
                          regression=False, batch_size=32, cache_dir=tmp_path)
    for seqs in (aug.encoded.input_ids, aug.encoded.token_type_ids):
        assert isinstance(seqs, Ragged) and len(seqs.blocks) == 1
        flat, offsets = seqs.blocks[0]
        assert isinstance(flat, np.memmap) and offsets.dtype == np.int64
        assert isinstance(seqs[0], np.ndarray)
    assert aug.encoded.input_ids.dtype == np.int32 and aug.encoded.token_type_ids.dtype == np.int8
    # the cache hit reads the same arrays
    again = label_augmented(teacher, enc, settings, _probes(teacher), "k", torch.device("cpu"), bf16=False,
                            regression=False, batch_size=32, cache_dir=tmp_path)
    assert again.encoded.input_ids == aug.encoded.input_ids and torch.equal(again.teacher_logits, aug.teacher_logits)


def test_ragged_indices_out_of_range_raise_as_a_list_would():
    import numpy as np
    import pytest

    from bertnas.data.encode import Ragged

    r = Ragged(np.arange(6, dtype=np.int32), np.array([0, 2, 5, 6]))
    assert r.take([-1, 0]) == [[5], [0, 1]] and list(r[-3]) == [0, 1]
    for bad in ([-5], [3]):
        with pytest.raises(IndexError, match=f"sequence {bad[0]} of a Ragged of 3"):
            r.take(bad)
    with pytest.raises(IndexError, match="sequence -4 of a Ragged of 3"):
        r[-4]
