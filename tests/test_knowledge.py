"""The teacher pass: sorted batches give the file-order result, bf16 is kept only when it agrees, shuffled
training batches stay aligned with cached targets, and long stages report progress in a log file."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest
import torch

from bertnas.data.encode import batches, encode, inference_batches
from bertnas.data.readers import load_task
from bertnas.teacher import knowledge as kn
from bertnas.teacher.loading import load_teacher


def _setup(tiny_teacher, synthetic_files, variant="single"):
    files = synthetic_files[variant]
    pair = variant == "pair"
    data = load_task("synthetic", None, files / "train.tsv", files / "dev.tsv", text_column="sentence1" if pair else "sentence",
                     text_pair_column="sentence2" if pair else None)
    return data, load_teacher(str(tiny_teacher), data.spec)


@torch.no_grad()
def _file_order(teacher, enc, batch_size=7):
    """The reference: batches in file order, float32, features computed the same way."""
    logits, feats = [], []
    for b in batches(enc, batch_size):
        out = teacher.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                            token_type_ids=b["token_type_ids"], output_hidden_states=True)
        logits.append(out.logits)
        feats.append(kn.layer_features(out.hidden_states, b["attention_mask"]))
    return torch.cat(logits), torch.cat(feats, 1)


@pytest.mark.parametrize("variant", ["single", "pair"])
def test_sorted_pass_equals_file_order(tmp_path, tiny_teacher, synthetic_files, variant):
    data, teacher = _setup(tiny_teacher, synthetic_files, variant)
    k = kn.compute_knowledge(teacher, data, 48, batch_size=16, cache_dir=tmp_path, teacher_dtype="fp32",
                             token_budget=200)
    assert k.meta["precision"]["chosen"] == "fp32"
    for split, examples in (("train", data.train), ("dev", data.dev)):
        enc = encode(teacher.tokenizer, examples, 48)
        ref_logits, ref_feats = _file_order(teacher, enc)
        assert k.logits(split).shape == ref_logits.shape
        assert torch.allclose(k.logits(split), ref_logits, atol=1e-5)
        assert torch.allclose(k.features(split).float(), ref_feats.half().float(), atol=2e-3)
    # the sorted plan really reorders, and covers every example once
    enc = encode(teacher.tokenizer, data.train, 48)
    plan = inference_batches(enc, 16, 200)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(len(enc))) and flat != list(range(len(enc)))
    assert all(len(b) * max(len(enc.input_ids[i]) for i in b) <= 200 for b in plan if len(b) > 1)
    # a second call is a cache hit that reads memory-mapped arrays
    again = kn.compute_knowledge(teacher, data, 48, cache_dir=tmp_path, teacher_dtype="fp32")
    assert again.path == k.path and torch.equal(again.logits("train"), k.logits("train"))


def test_bf16_falls_back_to_fp32_when_it_disagrees(tmp_path, tiny_teacher, synthetic_files, monkeypatch, caplog):
    data, teacher = _setup(tiny_teacher, synthetic_files)
    monkeypatch.setattr(kn, "bf16_supported", lambda device: True)  # decide on agreement alone, on any CPU
    dev = encode(teacher.tokenizer, data.dev, 48)

    def flip_under_bf16(module, args, output):
        if torch.is_autocast_enabled("cpu"):
            output.logits = -output.logits  # a teacher whose bf16 predictions are wrong
        return output

    handle = teacher.model.register_forward_hook(flip_under_bf16)
    try:
        with caplog.at_level(logging.WARNING, logger="bertnas"):
            use_bf16, fp32, report = kn.choose_precision(teacher, dev, data.spec, data.dev.labels, "auto",
                                                         torch.device("cpu"))
        assert not use_bf16 and report["chosen"] == "fp32" and report["agreement"] < kn.BF16_MIN_AGREEMENT
        assert "falls back to float32" in caplog.text
        k = kn.compute_knowledge(teacher, data, 48, cache_dir=tmp_path, teacher_dtype="auto")
        assert k.meta["precision"]["chosen"] == "fp32"
        ref, _ = _file_order(teacher, encode(teacher.tokenizer, data.train, 48))
        assert torch.allclose(k.logits("train"), ref, atol=1e-5)  # the train pass ran in fp32
        forced, _, report = kn.choose_precision(teacher, dev, data.spec, data.dev.labels, "bf16", torch.device("cpu"))
        assert forced and report["chosen"] == "bf16"
    finally:
        handle.remove()
    use_bf16, _, report = kn.choose_precision(teacher, dev, data.spec, data.dev.labels, "fp32", torch.device("cpu"))
    assert not use_bf16 and report == {"requested": "fp32", "chosen": "fp32"}


def test_shuffled_batches_stay_aligned_with_cached_targets(tmp_path, tiny_teacher, synthetic_files):
    """Length-grouped shuffling must hand each row's own cached teacher output to the loss."""
    data, teacher = _setup(tiny_teacher, synthetic_files, "pair")
    k = kn.compute_knowledge(teacher, data, 48, cache_dir=tmp_path, teacher_dtype="fp32")
    enc = encode(teacher.tokenizer, data.train, 48)
    cached = k.logits("train")
    seen = []
    with torch.no_grad():
        for b in batches(enc, 8, shuffle=True, generator=torch.Generator().manual_seed(3)):
            live = teacher.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                 token_type_ids=b["token_type_ids"]).logits
            assert torch.allclose(live, cached[b["index"]], atol=1e-5)
            assert torch.equal(b["labels"], enc.labels[b["index"]])
            seen += b["index"].tolist()
    assert sorted(seen) == list(range(len(enc))) and seen != list(range(len(enc)))


def test_progress_lines_reach_a_log_file(tmp_path, tiny_teacher, synthetic_files):
    files = synthetic_files["single"]
    env = {**os.environ, "BERTNAS_PROGRESS_INTERVAL": "0", "BERTNAS_CACHE_DIR": str(tmp_path / "cache")}
    log = tmp_path / "log"
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "bertnas.cli", "probe", "--teacher", str(tiny_teacher),
                               "--task", "synthetic", "--train-file", str(files / "train.tsv"), "--dev-file",
                               str(files / "dev.tsv"), "--out", str(tmp_path / "run"), "--max-seq-len", "48",
                               "--teacher-batch-size", "16", "--device", "cpu"],
                              stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert re.search(r"teacher train \((fp32|bf16)\): step \d+/\d+ \(\d+%\), [\d.]+ steps/s, \d+ examples/s, "
                     r"elapsed \d+s, left \d+s", text), text
    assert re.search(r"probes: step \d+/\d+", text)


def test_dry_run_estimates_and_writes_nothing(tmp_path, tiny_teacher, synthetic_files):
    files = synthetic_files["single"]
    cache, out = tmp_path / "cache", tmp_path / "run"
    env = {**os.environ, "BERTNAS_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "bertnas.cli", "run", "--dry-run", "--teacher", str(tiny_teacher),
                           "--task", "synthetic", "--train-file", str(files / "train.tsv"), "--dev-file",
                           str(files / "dev.tsv"), "--out", str(out), "--max-seq-len", "32", "--hidden-size", "16",
                           "--k-max", "2", "--latency-repeats", "1", "--device", "cpu"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert "160 train (+160 teacher-labelled copies) / 48 dev examples" in text  # the default: 1 copy
    assert "not cached yet" in text
    # the cache's disk: the knowledge of 160 + 48 examples (2-layer, 32-wide teacher, 2 labels) and the copies'
    # logits (teacher + 3 probes), ids and token types (at most the originals' tokens), as teacher.augment writes them
    from bertnas.teacher.augment import augment_bytes

    data, teacher = _setup(tiny_teacher, synthetic_files)
    tokens = sum(len(x) for x in encode(teacher.tokenizer, data.train, 32).input_ids)
    want = kn.knowledge_bytes(2, 32, 208, 2) + kn.tables_bytes(teacher) + augment_bytes(160, tokens, 3, 2)
    assert re.search(rf"cache disk to write: {want / 1e6:.1f} MB \(knowledge, 160 copies' logits and ids\); [\d.]+ GB free", text), text
    for stage in ("probe", "search", "retrain", "evaluate", "total"):
        assert re.search(rf"\| {stage} \| \d+(m\d\ds|s) \|", text), text
    assert not out.exists() and not cache.exists()  # nothing in the run directory, nothing in the cache


def test_array_path_is_the_one_lookup_of_stored_arrays(tmp_path, monkeypatch):
    """Knowledge.array_path names the .npy file of a stored array (None for tables, missing arrays and in-memory
    knowledge), and both Knowledge.get and the probes' split_features find their files through it."""
    import numpy as np
    from safetensors.torch import save_file

    from bertnas.teacher.probes import MappedFeatures, split_features

    stored, other = np.zeros((2, 3, 4), np.float16), np.ones((2, 3, 4), np.float16)
    np.save(tmp_path / "train_features.npy", stored)
    np.save(tmp_path / "moved.npy", other)
    save_file({"word_embeddings": torch.zeros(5, 4)}, str(tmp_path / "tables.safetensors"))
    k = kn.Knowledge(key="k", meta={}, path=tmp_path)
    assert k.array_path("train_features") == tmp_path / "train_features.npy"
    assert k.array_path("dev_features") is None and k.array_path("word_embeddings") is None
    assert kn.Knowledge(key="k", meta={}).array_path("train_features") is None
    assert k.get("word_embeddings").shape == (5, 4)  # tables are not .npy arrays: still read from safetensors

    moved = lambda self, name: tmp_path / "moved.npy" if name == "train_features" else None  # noqa: E731
    monkeypatch.setattr(kn.Knowledge, "array_path", moved)
    assert torch.equal(kn.Knowledge(key="k", meta={}, path=tmp_path).get("train_features"), torch.from_numpy(other))
    mapped = split_features(kn.Knowledge(key="k", meta={}, path=tmp_path), "train")
    assert isinstance(mapped, MappedFeatures) and torch.equal(mapped[:, 0:3], torch.from_numpy(other))


def test_knowledge_size_is_predicted_and_checked_before_the_pass(tmp_path, tiny_teacher, synthetic_files):
    """The cache's size is known before the teacher runs (the files written match it), and a disk without room for
    it is a one-line error naming the size and --cache-dir, before anything is written."""
    import shutil

    from bertnas.errors import BertnasError

    data, teacher = _setup(tiny_teacher, synthetic_files)
    k = kn.compute_knowledge(teacher, data, 48, batch_size=16, cache_dir=tmp_path / "c", teacher_dtype="fp32")
    written = sum((k.path / f"{s}_{a}.npy").stat().st_size for s in ("train", "dev") for a in ("logits", "features"))
    predicted = kn.knowledge_bytes(teacher.num_layers, int(teacher.model.config.hidden_size),
                                   len(data.train) + len(data.dev), data.spec.num_labels)
    assert predicted <= written <= predicted + 4 * 256  # the .npy headers only
    tables = (k.path / "tables.safetensors").stat().st_size
    assert kn.tables_bytes(teacher) <= tables <= kn.tables_bytes(teacher) + 1024  # + the safetensors header
    free = shutil.disk_usage(tmp_path).free
    kn.require_free_space(tmp_path / "new" / "dir", free // 2, "x", "--cache-dir")  # room: no error
    with pytest.raises(BertnasError, match=r"needs [\d.]+ GB but .* GB free: .* --cache-dir") as err:
        kn.require_free_space(tmp_path, free * 2, "the teacher's knowledge", "--cache-dir")
    assert "\n" not in str(err.value)
