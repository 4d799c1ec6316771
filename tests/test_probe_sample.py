"""--probe-max-examples (issue #21): above the bound the knowledge cache keeps the features of a seeded sample of
training rows only, the probes train on it and a second teacher pass labels the other rows; up to the bound the
cache and the probes are exactly what they were."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import bertnas
from conftest import make_teacher
from bertnas.data.encode import encode
from bertnas.data.examples import TaskData
from bertnas.data.synthetic import generate, write_task
from bertnas.errors import BertnasError
from bertnas.teacher import knowledge as kn
from bertnas.teacher.loading import load_teacher
from bertnas.teacher.probes import apply_probes, probe_unsampled, train_probes, unsampled_rows

pytestmark = pytest.mark.usefixtures("one_thread")
N, BOUND = 96, 40


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """A 96-example synthetic task and the tiny teacher on it."""
    data = generate("single", n_train=N, n_dev=32, seed=1)
    return data, load_teacher(str(make_teacher(tmp_path_factory.mktemp("teacher"))), data.spec)


def _knowledge(task, cache, most=None, seed=0):
    data, teacher = task
    return kn.compute_knowledge(teacher, data, 48, batch_size=16, cache_dir=cache, teacher_dtype="fp32",
                                max_feature_rows=most, seed=seed)


def _bytes(path):
    return sum(f.stat().st_size for f in path.iterdir())


def test_below_the_bound_nothing_changes(tmp_path, task):
    data, teacher = task
    plain = _knowledge(task, tmp_path / "a")
    assert kn.knowledge_key(teacher, data, 48, "fp32", N, 0) == plain.key == kn.knowledge_key(teacher, data, 48, "fp32")
    assert _knowledge(task, tmp_path / "a", most=N, seed=5).path == plain.path  # a cache hit: the same key
    bounded = _knowledge(task, tmp_path / "b", most=N + 1)  # computed afresh: the same files
    assert bounded.key == plain.key and bounded.feature_rows() is None and "train_feature_rows" not in bounded.meta
    assert sorted(p.name for p in bounded.path.iterdir()) == sorted(p.name for p in plain.path.iterdir())
    for name in ("train_logits", "train_features", "dev_logits", "dev_features"):
        assert (bounded.path / f"{name}.npy").read_bytes() == (plain.path / f"{name}.npy").read_bytes(), name
    assert bounded.features("train").shape[1] == N
    a, b = (train_probes(k, data, epochs=1, batch_size=32) for k in (plain, bounded))
    assert all(torch.equal(a.tensors[name], b.tensors[name]) for name in a.tensors)
    assert len(unsampled_rows(bounded, N)) == 0


def test_above_the_bound_the_cache_keeps_a_sample(tmp_path, task):
    data, teacher = task
    full = _knowledge(task, tmp_path / "full")
    sampled = _knowledge(task, tmp_path / "sampled", most=BOUND, seed=3)
    rows = np.load(sampled.path / "train_feature_rows.npy")
    assert sampled.key != full.key and np.array_equal(sampled.feature_rows(), rows)
    assert len(np.unique(rows)) == BOUND and np.all(np.diff(rows) > 0) and 0 <= rows[0] and rows[-1] < N
    assert np.array_equal(rows, kn.feature_rows(N, BOUND, 3))  # seeded: the same rows again
    assert not np.array_equal(rows, kn.feature_rows(N, BOUND, 4))
    assert sampled.meta["train_feature_rows"] == {"file": "train_feature_rows.npy", "size": BOUND, "seed": 3}
    assert sampled.features("train").shape == (3, BOUND, 64) and sampled.logits("train").shape == (N, 2)
    assert torch.equal(sampled.features("train"), full.features("train")[:, torch.from_numpy(rows)])
    assert torch.equal(sampled.logits("train"), full.logits("train"))  # logits for every row
    assert _bytes(sampled.path) < _bytes(full.path)
    written = sum((sampled.path / f"{s}_{a}.npy").stat().st_size for s in ("train", "dev") for a in ("logits", "features"))
    predicted = kn.knowledge_bytes(2, 32, N + len(data.dev), 2, BOUND + len(data.dev))
    assert predicted <= written <= predicted + 4 * 256
    assert predicted < kn.knowledge_bytes(2, 32, N + len(data.dev), 2)


def test_unsampled_rows_get_the_probes_of_a_second_pass(tmp_path, task):
    data, teacher = task
    k = _knowledge(task, tmp_path, most=BOUND)
    rows, rest = k.feature_rows(), unsampled_rows(k, N)
    assert len(rest) == N - BOUND and not np.isin(rest, rows).any()
    probes = train_probes(k, data, epochs=2, batch_size=16)
    logits = probes.tensors["train_logits"]
    assert logits.shape == (3, N, 2) and torch.isnan(logits[:, torch.from_numpy(rest)]).all()
    cached = k.features("train")
    # the probes of the sample alone: its features, its labels, its mean and std
    alone = kn.Knowledge(key="s", meta={}, tensors={"train_features": cached, "dev_features": k.features("dev")})
    subset = TaskData(data.spec, data.train.subset(rows.tolist()), data.dev)
    reference = train_probes(alone, subset, epochs=2, batch_size=16)
    for name in ("weight", "bias", "mean", "std", "dev_logits"):
        assert torch.equal(probes.tensors[name], reference.tensors[name]), name
    train = encode(teacher.tokenizer, data.train, 48)
    assert probe_unsampled(probes, k, teacher, train, torch.device("cpu"), batch_size=16) == N - BOUND
    assert torch.isfinite(logits).all()
    assert torch.allclose(logits[:, torch.from_numpy(rows)], apply_probes(probes.tensors, cached), atol=1e-6)
    fresh, sink = kn._collect(N, None)  # a full teacher pass in other batches
    kn.teacher_pass(teacher, train, sink, torch.device("cpu"), bf16=False, batch_size=7)
    expected = apply_probes(probes.tensors, fresh["features"])[:, torch.from_numpy(rest)]
    assert torch.allclose(logits[:, torch.from_numpy(rest)], expected, atol=1e-4)


def test_probe_stage_with_a_bound(tmp_path, caplog):
    files = write_task(generate("single", n_train=N, n_dev=32, seed=2), tmp_path / "task")
    cfg = bertnas.RunConfig(task="synthetic", train_file=str(files / "train.tsv"), dev_file=str(files / "dev.tsv"),
                            teacher=str(make_teacher(tmp_path / "teacher")), max_seq_len=48, probe_epochs=1,
                            device="cpu", cache_dir=str(tmp_path / "cache"), augment=1, teacher_dtype="fp32",
                            probe_max_examples=BOUND)
    with caplog.at_level(logging.INFO, logger="bertnas"):
        info = bertnas.probe(cfg, tmp_path / "run")
    assert f"trained on {BOUND} sampled training examples" in caplog.text and f"the other {N - BOUND}" in caplog.text
    saved = load_file(str(tmp_path / "run" / "probes" / "probes.safetensors"))
    assert saved["train_logits"].shape == (3, N, 2) and torch.isfinite(saved["train_logits"]).all()
    meta = json.loads((tmp_path / "cache" / f"knowledge-{info['knowledge_key']}" / "meta.json").read_text())
    assert meta["train_feature_rows"]["size"] == BOUND
    with pytest.raises(BertnasError, match=r"probe_max_examples=-1: must be >= 1, or 0 .* \(flag --probe-max-examples\)"):
        cfg.update({"probe_max_examples": -1}).validate()


def test_dry_run_prices_the_sampled_features(tmp_path, tiny_teacher, synthetic_files, monkeypatch):
    from bertnas import estimate

    files = synthetic_files["single"]
    monkeypatch.setattr(estimate, "measure_costs", lambda cfg, cached=None: estimate.Costs(
        n_train=160, held=0, teacher_cached=False, teacher_example_s=0.01, teacher_dev_s=1.0, copy_example_s=0.01,
        probes_example_s=0.001, encode_s=0.1, search_warm_step_s=0.1, search_arch_step_s=0.1, retrain_step_s=0.1,
        eval_example_s=0.001, n_dev=48, pair=False, evaluate_s=1.0, measured_in_s=0.0, threads=1))
    priced = []
    real = kn.knowledge_bytes
    monkeypatch.setattr(kn, "knowledge_bytes", lambda *a: priced.append(real(*a)) or priced[-1])
    text = {}
    for most in (0, BOUND):
        cfg = bertnas.RunConfig(task="synthetic", train_file=str(files / "train.tsv"), dev_file=str(files / "dev.tsv"),
                                teacher=str(tiny_teacher), max_seq_len=32, device="cpu", cache_dir=str(tmp_path / "c"),
                                probe_max_examples=most)
        text[most] = estimate.dry_run(cfg, tmp_path / "run")
    assert priced == [real(2, 32, 208, 2, 208), real(2, 32, 208, 2, BOUND + 48)] and priced[1] < priced[0]
    assert f"features of {BOUND} of 160 train (--probe-max-examples)" in text[BOUND]
    assert "--probe-max-examples" not in text[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "c").exists()
