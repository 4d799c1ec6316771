"""NAS-BERT on a tiny supernet distilled from a tiny BERT teacher (see conftest.make_teacher)."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from bertnas.errors import BertnasError
from bertnas.measure.profile import count_params, measure_latency
from bertnas.nasbert import pipeline
from bertnas.nasbert.config import SupernetSettings
from bertnas.nasbert.costs import TeacherShape, model_params, model_parts, op_specs
from bertnas.nasbert.distill import block_loss, compute_block_states, train_step
from bertnas.teacher.loading import load_encoder
from bertnas.nasbert.modeling import NasBertConfig, NasBertForSequenceClassification
from bertnas.nasbert.select import Constraint, parse_constraints, parse_count
from bertnas.nasbert.shrink import ShrinkState, make_bins, shrink_bin
from bertnas.nasbert.space import (IDENTITY, LAYER_OPS, OPS, Architecture, BlockPath, SpaceConfig, Supernet,
                                   create_op, enumerate_paths, op_params, path_params)
from conftest import make_teacher

SIZES = (16, 64, 128)


@pytest.mark.parametrize("hidden", SIZES)
@pytest.mark.parametrize("name", list(OPS))
def test_every_op_forward_backward(name, hidden):
    torch.manual_seed(0)
    op = create_op(name, hidden, dropout=0.1).train()
    x = torch.randn(3, 7, hidden, requires_grad=True)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 5:] = 0
    y = op(x, mask)
    assert y.shape == x.shape and torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in op.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}@{hidden}: {pname} got no gradient"
    assert count_params(op) == op_params(name, hidden)


@pytest.mark.parametrize("name", LAYER_OPS)
def test_padding_does_not_change_real_tokens(name):
    torch.manual_seed(0)
    op = create_op(name, 32, 0.0).eval()
    x = torch.randn(1, 5, 32)
    padded = torch.cat([x, torch.randn(1, 3, 32) * 9], 1)
    mask = torch.tensor([[1] * 5 + [0] * 3])
    assert torch.allclose(op(x, torch.ones(1, 5, dtype=torch.long)), op(padded, mask)[:, :5], atol=1e-5)


def test_paths_and_architectures_print_and_parse():
    space = SpaceConfig(teacher_hidden=32, teacher_layers=4, num_blocks=2, layers_per_block=2, hidden_sizes=(16, 32)).validate()
    paths = enumerate_paths(space)
    assert len(paths) == 2 * (5 + 25)  # sizes x (depth 1 + depth 2); identities only at the tail
    assert all(IDENTITY not in p.ops[: p.depth] for p in paths)
    assert all(BlockPath.parse(str(p)) == p for p in paths)
    arch = Architecture(32, (paths[0], paths[-1]))
    assert Architecture.parse(str(arch)) == arch
    with pytest.raises(BertnasError, match="tail"):
        BlockPath.parse("16:identity,mha")
    with pytest.raises(BertnasError, match="unknown ops"):
        BlockPath.parse("16:conv9")
    with pytest.raises(BertnasError, match="fewer than 8 blocks"):
        SpaceConfig(teacher_layers=6, num_blocks=8).validate()


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("nb-teacher"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, synthetic_files) -> Path:
    from bertnas.data.corpus import read_corpus

    lines = read_corpus(str(synthetic_files["single"]))[:160]
    path = tmp_path_factory.mktemp("nb-corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_block_mse_falls(teacher_dir, corpus, tmp_path):
    teacher, tok = load_encoder(str(teacher_dir))
    space = SpaceConfig(teacher_hidden=32, teacher_layers=2, num_blocks=2, layers_per_block=2, hidden_sizes=(32,), dropout=0.0)
    texts = corpus.read_text().splitlines()[:64]
    states = compute_block_states(teacher, tok, texts, space.boundaries(), 32, tmp_path / "states")
    assert states.states.shape[1:] == (3, 32) and len(states) == 64
    torch.manual_seed(0)
    net = Supernet(space)
    path = BlockPath(32, ("mha", "ffn"))
    batch = states.collate(list(range(32)))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    with torch.no_grad():
        first = [float(block_loss(net, n, path, batch)) for n in range(2)]
    for _ in range(30):
        train_step(net, [path, path], batch, opt)
    net.eval()
    with torch.no_grad():
        last = [float(block_loss(net, n, path, batch)) for n in range(2)]
    assert all(b < 0.7 * a for a, b in zip(first, last)), (first, last)


def test_shrinking_keeps_the_better_half():
    paths = [BlockPath(16, (op, IDENTITY)) for op in LAYER_OPS] + [BlockPath(16, ("mha", op)) for op in LAYER_OPS]
    scores = {p: float(i) for i, p in enumerate(reversed(paths))}  # later paths score better
    kept = shrink_bin(paths, scores, keep_min=2)
    assert len(kept) == 5 and set(kept) == set(paths[-5:])
    assert set(shrink_bin(paths[:2], scores, keep_min=2)) == set(paths[:2])  # at m already: unchanged
    assert len(shrink_bin(paths, scores, keep_min=8)) == 8  # never below m
    # only 4 of 10 scored (the paper: E random paths per bin): the worse 2 of those 4 go, the 6 unscored stay,
    # so no kept path scored worse than a dropped one
    partial = {p: scores[p] for p in paths[:4]}
    kept = shrink_bin(paths, partial, keep_min=2)
    assert set(kept) == set(paths) - set(paths[:2]), kept
    bins = make_bins(paths, 3)
    assert sum(len(b) for b in bins) == len(paths)
    assert max(path_params(p) for p in bins[0]) <= min(path_params(p) for p in bins[-1])


def test_latency_bins_keep_the_fast_region():
    """With a latency axis, the fastest paths form bins of their own that keep m paths however badly they score
    (by parameters alone they would share a bin with slower paths and be dropped for their loss)."""
    paths = [BlockPath(16, (op, IDENTITY)) for op in LAYER_OPS] + [BlockPath(16, ("mha", op)) for op in LAYER_OPS]
    latency = {p: (0.1 if p.ops[0].startswith("sep") and p.depth == 1 else 1.0 + path_params(p) / 1e4) for p in paths}
    fast = {p for p in paths if latency[p] < 1}
    scores = {p: (10.0 if p in fast else 1.0) for p in paths}  # the fast paths score worst
    for bins, axis in ((make_bins(paths, 2), "params"), (make_bins(paths, 2, latency), "params,latency")):
        state = ShrinkState([bins])
        for epoch in range(6):
            state.shrink([{p: scores[p] for p in state.sample_for_scoring(0, 100, random.Random(epoch), 2)}], 2, epoch)
        left = set(state.candidates(0)) & fast
        assert (len(left) >= 2) == (axis == "params,latency"), (axis, state.bins)
    state = ShrinkState.start(paths, num_blocks=2, num_bins=2)
    rng = random.Random(0)
    state.shrink([{p: scores[p] for p in state.sample_for_scoring(n, 100, rng)} for n in range(2)], 2, epoch=1)
    assert state.size(0) < len(paths) and state.history[0]["space_size"] == state.space_size()
    assert ShrinkState.from_dict(state.to_dict()).bins == state.bins


@pytest.fixture(scope="module")
def run_dir(teacher_dir, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nb-run") / "run"
    settings = SupernetSettings(teacher=str(teacher_dir), corpus=str(corpus), max_sentences=140, heldout_sentences=20,
                                max_len=32, num_blocks=2, layers_per_block=2, hidden_sizes="16,32", epochs=3,
                                warmup_epochs=1, bins=2, samples_per_bin=8, keep_per_bin=2, score_batches=1, batch_size=16,
                                threads=1)
    summary = pipeline.supernet(settings, out)
    assert summary["space_size_end"] < summary["space_size_start"]
    assert len(summary["shrinks"]) == 2 and len(summary["epochs"]) == 3
    # the learning rate decays linearly over all 3 epochs (a closure bug once made it 0 after the first)
    lrs = [e["lr"] for e in summary["epochs"]]
    assert lrs == pytest.approx([settings.lr * 2 / 3, settings.lr / 3, 0.0], rel=1e-6, abs=1e-12)
    pipeline.latency(out, seq_len=16, batch_sizes=(1, 4), embedding_sizes=(16, 32), threads=1, repeats=7)
    return out


def test_resume_continues_from_the_checkpoint(run_dir, caplog):
    from bertnas.utils import read_json

    settings = SupernetSettings.from_dict(read_json(run_dir / "settings.json"))
    caplog.set_level("INFO", logger="bertnas")
    summary = pipeline.supernet(settings, run_dir)  # every epoch is done: nothing is trained again
    assert "nasbert supernet: resuming after epoch 3" in caplog.text
    assert len(summary["epochs"]) == 3


def test_supernet_killed_after_an_epoch_resumes_to_the_same_result(teacher_dir, corpus, tmp_path, monkeypatch):
    """The supernet runs the shared loop: killed after its first epoch's checkpoint (shrinking included) and run
    again, it ends with the weights, shrink state and log of an uninterrupted run."""
    from conftest import stopped_after_first_checkpoint
    from safetensors.torch import load_file

    settings = SupernetSettings(teacher=str(teacher_dir), corpus=str(corpus), max_sentences=60, heldout_sentences=16,
                                max_len=24, num_blocks=2, layers_per_block=2, hidden_sizes="16", epochs=2,
                                warmup_epochs=0, bins=2, samples_per_bin=4, keep_per_bin=1, score_batches=1,
                                batch_size=16, threads=1, bin_by="params")  # no timings: two runs bin alike
    whole = pipeline.supernet(settings, tmp_path / "whole")
    with stopped_after_first_checkpoint(monkeypatch), pytest.raises(KeyboardInterrupt):
        pipeline.supernet(settings, tmp_path / "cut")
    again = pipeline.supernet(settings, tmp_path / "cut")
    assert again["shrinks"] == whole["shrinks"] and len(whole["shrinks"]) == 2
    drop = ("seconds", "seconds_total")
    assert [{k: v for k, v in e.items() if k not in drop} for e in again["epochs"]] == \
        [{k: v for k, v in e.items() if k not in drop} for e in whole["epochs"]]
    a, b = (load_file(str(tmp_path / d / "supernet" / "supernet.safetensors")) for d in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_latency_table_predicts_a_model_it_measured(run_dir):
    from bertnas.measure.latency_table import LatencyTable

    torch.set_num_threads(1)
    shape = TeacherShape(**__import__("json").loads((run_dir / "teacher_shape.json").read_text()))
    arch = Architecture.parse("E=32 | 32:ffn,sep5 | 16:mha,identity")
    table = LatencyTable.load(run_dir / "latency.json")
    predicted = table.predict(model_parts(arch, shape.hidden), 16, 4)
    model = NasBertForSequenceClassification(NasBertConfig(
        vocab_size=shape.vocab_size, max_position_embeddings=shape.max_positions, hidden_size=shape.hidden,
        architecture=str(arch))).eval()
    ids = torch.randint(5, shape.vocab_size, (4, 16))
    measured = measure_latency(lambda: model(input_ids=ids), repeats=10, threads=1)["median_ms"]
    assert predicted / 3 < measured < predicted * 3, (predicted, measured)
    space = SpaceConfig.from_dict(__import__("json").loads((run_dir / "space.json").read_text()))
    assert len(table.entries) == 2 * len(op_specs(space, shape, [16, 32]))  # every part at batch 1 and 4


def test_params_in_closed_form_match_the_built_model(run_dir):
    shape = TeacherShape(**__import__("json").loads((run_dir / "teacher_shape.json").read_text()))
    arch = Architecture.parse("E=16 | 32:sep7,mha | 16:ffn,identity")
    model = NasBertForSequenceClassification(NasBertConfig(
        vocab_size=shape.vocab_size, max_position_embeddings=shape.max_positions, hidden_size=shape.hidden,
        architecture=str(arch)))
    assert count_params(model) == model_params(arch, shape)


def test_selection_honours_its_constraints_and_round_trips(run_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline as hf_pipeline

    import bertnas  # noqa: F401  (registers nasbert)

    results = pipeline.select(run_dir, max_params="60K,90K", max_latency_ms="1000", embedding_sizes=(16, 32),
                              top_t=5, seq_len=16, latency_batch=4, measure=False)
    assert [r["name"] for r in results] == ["60K-1000ms", "90K-1000ms"]
    for r in results:
        assert r["params"] <= r["max_params"], r
        assert r["exact_loss"] is not None and math.isfinite(r["exact_loss"])
    latency_only = pipeline.select(run_dir, max_latency_ms="1000", embedding_sizes=(16, 32), top_t=3, seq_len=16,
                                   latency_batch=4, measure=False)
    assert latency_only[0]["name"] == "1000ms"
    with pytest.raises(BertnasError, match="no architecture fits"):
        pipeline.select(run_dir, max_params="1K", embedding_sizes=(16, 32), measure=False)
    # a latency budget below every model's: the error names the fastest model's predicted latency
    with pytest.raises(BertnasError, match=r"the fastest is predicted at \d+\.\d+ ms \(batch 4, sequence 16\)"):
        pipeline.select(run_dir, max_latency_ms="0.00001", embedding_sizes=(16, 32), seq_len=16, latency_batch=4,
                        measure=False)

    model_dir = results[0]["dir"]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert type(model).__name__ == "NasBertForSequenceClassification" and model.config.model_type == "nasbert"
    tok = AutoTokenizer.from_pretrained(model_dir)
    clf = hf_pipeline("text-classification", model=model, tokenizer=tok)
    out = clf(["the film is good", "a dull and bad movie"])
    assert len(out) == 2 and all("label" in o for o in out)
    # the student's block weights are the supernet's
    from bertnas.nasbert.space import Architecture as A

    arch = A.parse(model.config.architecture)
    net = pipeline._load_supernet(run_dir, SpaceConfig.from_dict(__import__("json").loads((run_dir / "space.json").read_text())))
    src = net.path_modules(0, arch.blocks[0])[0]
    dst = model.nasbert.blocks[0][0]
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


def test_budget_parsing():
    assert parse_count("5M") == 5_000_000 and parse_count("500k") == 500_000 and parse_count("2.5M") == 2_500_000
    assert parse_constraints("5M,10M", "20") == [Constraint(5_000_000, 20.0), Constraint(10_000_000, 20.0)]
    for bad in ("five", "-3M", "0"):
        with pytest.raises(BertnasError, match="parameter budget"):
            parse_count(bad)
    with pytest.raises(BertnasError, match="no budget"):
        parse_constraints(None, None)


def test_corpus_reader(tmp_path, synthetic_files):
    from bertnas.data.corpus import read_corpus

    (tmp_path / "a.txt").write_text("one line\n\n  two line  \none line\n")
    assert read_corpus(str(tmp_path)) == ["one line", "two line"]
    assert len(read_corpus(str(synthetic_files["pair"]), pairs=False)) > 160  # both sentences of each pair
    assert len(read_corpus(f"{tmp_path},{synthetic_files['single']}", max_sentences=10)) == 10
    with pytest.raises(BertnasError, match="not found"):
        read_corpus(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e.txt").write_text("\n \n")
    with pytest.raises(BertnasError, match="empty"):
        read_corpus(str(tmp_path / "empty"))
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(BertnasError, match="datasets"):
            read_corpus("hf:wikitext")


def test_uneven_teachers_split_into_near_equal_blocks():
    def edges(layers, blocks):
        return SpaceConfig(teacher_hidden=64, teacher_layers=layers, num_blocks=blocks, layers_per_block=2,
                           hidden_sizes=(64,)).validate().boundaries()

    assert edges(12, 4) == [0, 3, 6, 9, 12] and edges(6, 3) == [0, 2, 4, 6]  # equal where they divide
    assert edges(6, 4) == [0, 2, 3, 5, 6]  # the paper's 4 blocks from a 6-layer teacher
    with pytest.raises(BertnasError, match="fewer than 7 blocks"):
        edges(6, 7)


def test_baselines_are_trained_like_the_supernet(run_dir):
    """Each selected model gets a params-matched and a latency-matched hand-designed BERT, block-wise distilled by
    the supernet's loop for the same epochs and learning-rate schedule, built by the same code."""
    from bertnas.nasbert.baseline import bert_shapes
    from bertnas.measure.latency_table import LatencyTable
    from bertnas.nasbert.costs import predict_latency

    A = Architecture

    pipeline.select(run_dir, max_params="70K", max_latency_ms="1000", embedding_sizes=(16, 32), top_t=3, seq_len=16,
                    latency_batch=1, measure=False)
    built = pipeline.baseline(run_dir, measure=False)
    selected = json.loads((run_dir / "selection.json").read_text())["models"]
    assert [b["name"] for b in built] == [f"bert-{m['name']}-{k}" for m in selected for k in ("params", "latency")]
    shape = TeacherShape(**json.loads((run_dir / "teacher_shape.json").read_text()))
    table = LatencyTable.load(run_dir / "latency.json")
    supernet_log = json.loads((run_dir / "supernet" / "log.json").read_text())["epochs"]
    for b, m in zip(built, [m for m in selected for _ in range(2)]):
        arch = A.parse(b["architecture"])
        assert arch.embedding_size == A.parse(m["architecture"]).embedding_size
        assert all(p.ops == ("mha", "ffn") * (p.depth // 2) and p.hidden == arch.blocks[0].hidden for p in arch.blocks)
        shapes = bert_shapes(arch.embedding_size, len(arch.blocks), shape, (16, 32))
        if b["match"] == "params":
            assert b["params"] == model_params(arch, shape)
            assert abs(b["params"] - m["params"]) == min(abs(model_params(a, shape) - m["params"]) for a in shapes)
        else:
            gap = abs(predict_latency(table, arch, shape.hidden, 16, 1) - m["predicted_ms_b1"])
            assert gap == pytest.approx(min(abs(predict_latency(table, a, shape.hidden, 16, 1) - m["predicted_ms_b1"])
                                            for a in shapes))
        assert b["epochs"] == len(supernet_log) and math.isfinite(b["exact_loss"])
        ckpt = torch.load(run_dir / "baselines" / f"{arch.blocks[0].hidden}x{arch.blocks[0].depth // 2}-E{arch.embedding_size}"
                          / "checkpoint.pt", weights_only=True)
        assert [e["lr"] for e in ckpt["history"]] == pytest.approx([e["lr"] for e in supernet_log])
        model = AutoModel.from_pretrained(b["dir"])
        assert model.config.architecture == b["architecture"]
    # one model's baselines again (e.g. in a second process): the others stay in baselines.json
    again = pipeline.baseline(run_dir, measure=False, models=[selected[0]["name"]])
    assert [b["name"] for b in again] == [b["name"] for b in built[:2]]
    assert [b["name"] for b in json.loads((run_dir / "baselines.json").read_text())["models"]] == \
        [b["name"] for b in built[2:]] + [b["name"] for b in again]
    with pytest.raises(BertnasError, match="not selected"):
        pipeline.baseline(run_dir, models=["nope"])


def test_states_on_the_fly_match_the_cache(teacher_dir, corpus, tmp_path):
    """A cache over --max-cache-gb is never written: the same batches come from the teacher run per batch."""
    from bertnas.nasbert.distill import LiveBlockStates

    teacher, tok = load_encoder(str(teacher_dir))
    texts = corpus.read_text().splitlines()[:40]
    cached = compute_block_states(teacher, tok, texts, [0, 1, 2], 32, tmp_path / "cached")
    live = compute_block_states(teacher, tok, texts, [0, 1, 2], 32, tmp_path / "live", max_cache_bytes=0)
    assert isinstance(live, LiveBlockStates) and not (tmp_path / "live").exists()
    assert len(live) == len(cached) and live.teacher_hidden == cached.teacher_hidden == 32
    a, b = cached.collate([0, 7, 3]), live.collate([0, 7, 3])
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(a[key], b[key])
    assert b["states"].shape == a["states"].shape and not b["states"].is_inference()
    assert torch.allclose(a["states"], b["states"], atol=2e-2, rtol=1e-2)  # the cache holds float16
    # a supernet trains from live states too (and writes no cache)
    net = Supernet(SpaceConfig(teacher_hidden=32, teacher_layers=2, num_blocks=2, layers_per_block=1, hidden_sizes=(32,)))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    losses = train_step(net, [BlockPath(32, ("mha",))] * 2, next(live.batches(list(range(16)), 8)), opt)
    assert all(math.isfinite(x) for x in losses)


def test_pair_tasks_give_pairs_to_the_supernet(synthetic_files, teacher_dir, tmp_path):
    """A pair task's folder gives each pair as one item, tokenized as the task sees it (A [SEP] B, types 0 then 1);
    --corpus-pairs split gives every sentence alone; tabs inside plain text never make a pair."""
    from bertnas.data.corpus import read_corpus, split_pair
    from bertnas.nasbert.distill import tokenize_items

    pair_dir = synthetic_files["pair"]
    items = read_corpus(str(pair_dir))
    split = read_corpus(str(pair_dir), pairs=False)
    assert all(split_pair(x)[1] is not None for x in items) and len(split) > len(items)
    assert all(split_pair(x)[1] is None for x in split)
    (tmp_path / "plain.txt").write_text("one\ttwo three\nfour five\n")
    assert read_corpus(str(tmp_path / "plain.txt")) == ["one two three", "four five"]
    _, tok = load_encoder(str(teacher_dir))
    mixed = [items[0], "a lone sentence", items[1]]
    ids, types = tokenize_items(tok, mixed, 64)
    a, b = split_pair(items[1])
    want = tok(a, b, truncation=True, max_length=64, return_token_type_ids=True)
    assert ids[2] == want["input_ids"] and types[2] == want["token_type_ids"] and 1 in types[2]
    assert ids[1] == tok("a lone sentence")["input_ids"] and set(types[1]) == {0}
    # a run saved before the setting existed keeps reading sentences alone
    assert SupernetSettings.from_dict({"teacher": "t", "corpus": "c"}).corpus_pairs == "split"
    assert SupernetSettings().corpus_pairs == "pairs"


def test_corpus_tokenized_in_chunks_equals_at_once(synthetic_files, teacher_dir):
    from bertnas.data.corpus import read_corpus
    from bertnas.nasbert.distill import tokenize_corpus, tokenize_items

    _, tok = load_encoder(str(teacher_dir))
    items = read_corpus(f"{synthetic_files['pair']},{synthetic_files['single']}")
    ids, types = tokenize_items(tok, items, 40)
    tokens, token_types, offsets = tokenize_corpus(tok, items, 40, chunk=7)
    assert tokens.dtype == np.int32 and token_types.dtype == np.int8 and len(offsets) == len(items) + 1
    assert [tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(len(items))] == ids
    assert [token_types[offsets[i]:offsets[i + 1]].tolist() for i in range(len(items))] == types


def test_report_gives_mean_and_standard_error_over_seeds(tmp_path):
    from bertnas.nasbert.report import report

    (tmp_path / "selection.json").write_text(json.dumps({"models": [{"name": "3ms", "architecture": "E=64 | 128:mha",
                                                                      "params": 1_000_000}]}))
    for seed, acc in ((0, 0.80), (1, 0.84)):
        d = tmp_path / "sst2" / "3ms" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"task": "sst2", "headline": "accuracy", "dev": {"accuracy": acc},
                                                    "teacher": "t", "teacher_dev": {"accuracy": 0.9},
                                                    "seconds": {"teacher_logits": 1, "training": 2}}))
    text = report(tmp_path)
    assert "0.8200 ± 0.0200 (2 seeds)" in text  # mean 0.82, standard error 0.04 / sqrt(2) / sqrt(2)
    assert "sst2/3ms/seed1" in text


def test_a_new_head_is_one_line_not_a_load_report(tmp_path, caplog, capsys):
    from transformers import BertConfig, BertForSequenceClassification

    from bertnas.nasbert.finetune import _load_for_task

    BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=64, num_labels=2)).save_pretrained(tmp_path)
    with caplog.at_level("INFO", logger="bertnas"):
        model = _load_for_task(tmp_path, 1, {0: "score"})  # a regression task from a 2-label model
    assert model.classifier.out_features == 1
    assert any("head made anew for 1 label(s) (the model was saved with 2)" in r.getMessage() for r in caplog.records)
    out = capsys.readouterr()
    assert "LOAD REPORT" not in out.err + out.out + caplog.text


def test_models_without_attention_pool_the_mean():
    """[CLS] of an all-convolution model sees only its neighbours: a word at the end of a long input never reaches
    it. Such models read the mean of the real tokens instead (pooling_for), which every word reaches."""
    from bertnas.nasbert.modeling import pooling_for

    conv = Architecture.parse("E=16 | 32:sep3,identity | 32:sep3,identity")
    assert pooling_for(conv) == "mean" and pooling_for(Architecture.parse("E=16 | 32:sep3,mha | 32:sep3,identity")) == "cls"
    ids = torch.randint(5, 50, (1, 40))
    late = ids.clone()
    late[0, 38] = 4  # a word far from [CLS]
    for pooling, reaches in (("cls", False), ("mean", True)):
        torch.manual_seed(0)
        model = NasBertForSequenceClassification(NasBertConfig(vocab_size=50, max_position_embeddings=64, hidden_size=32,
                                                               architecture=str(conv), pooling=pooling)).eval()
        with torch.no_grad():
            a, b = model(input_ids=ids).logits, model(input_ids=late).logits
        assert (not torch.allclose(a, b)) == reaches, pooling
