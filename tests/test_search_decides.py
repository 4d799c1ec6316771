"""Issue #18: choices on a validation split carved from the training data (never on dev), the bilevel
architecture step, the entropy schedule, ranking candidate architectures on the validation split, and the
measures of how firmly a search decides."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from bertnas.adabert.architecture import Architecture
from bertnas.adabert.derive import decisiveness
from bertnas.adabert.genotype import NUM_EDGES
from bertnas.adabert.objective import Targets
from bertnas.adabert.searcher import _cycle, build_supernet, rank_candidates, search
from bertnas.config import RunConfig
from bertnas.data.encode import encode
from bertnas.data.split import carve, take, validation_size
from bertnas.data.synthetic import build_tokenizer, generate_distance
from bertnas.errors import BertnasError


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors (conftest.py)


# ----------------------------------------------------------------------------- the validation split
def test_validation_size_defaults():
    assert validation_size(None, 67349) == 5000  # SST-2: capped
    assert validation_size(None, 3668) == 366  # MRPC: a tenth
    assert validation_size(None, 150) == 0  # too small to spare any
    assert validation_size(0, 67349) == 0
    assert validation_size(10, 100) == 10
    assert validation_size(50, 100) == 50
    with pytest.raises(BertnasError, match="at most half"):
        validation_size(51, 100)  # more held out than trained on: a typo, not a protocol


def test_carve_holds_out_originals_and_their_copies():
    n, copies = 50, 3
    total = n * (1 + copies)
    h = carve(n, total, 10, seed=0)
    assert len(h.val) == 10 and all(0 <= i < n for i in h.val) and h.val == sorted(h.val)
    held = set(h.val)
    train = set(h.train)
    assert not held & train
    for c in range(1, copies + 1):  # copy c of example i sits at c * n + i
        assert not {c * n + i for i in held} & train
        assert {c * n + i for i in range(n) if i not in held} <= train
    assert len(h.train) == (n - 10) * (1 + copies)
    assert carve(n, total, 10, seed=0) == h and carve(n, total, 10, seed=1).val != h.val
    assert carve(n, total, 0, seed=0).train == list(range(total)) and not carve(n, total, 0, seed=0).active


def test_arch_batches_come_from_the_validation_split_only(tmp_path):
    data = generate_distance(n_train=64, n_dev=16, seed=0, length=8, near=2, far=5, fillers=["the"])
    tok = build_tokenizer(tmp_path / "vocab")
    enc = encode(tok, data.train, 16)
    val = [3, 5, 8, 13, 21]
    it = _cycle(enc, val, 2, seed=0)
    seen = [int(i) for _ in range(12) for i in next(it)["index"]]
    assert set(seen) == set(val)  # cycles over the split, indices into the full training data
    sub = take(enc, val)
    assert len(sub) == 5 and sub.input_ids[1] == enc.input_ids[5] and int(sub.labels[2]) == int(enc.labels[8])


# ----------------------------------------------------------------------------- decisiveness
def test_decisiveness_counts_edges_whose_top_op_doubles_the_runner_up():
    alpha = torch.zeros(NUM_EDGES, 10)
    alpha[0, 3] = math.log(3.0)  # 3x the others
    alpha[1, 2] = math.log(1.5)  # 1.5x: not decided
    depth = torch.tensor([0.0, math.log(4.0), 0.0])
    d = decisiveness(alpha, depth)
    assert d["edges_decided"] == 1
    assert d["edge_ratios"][0] == pytest.approx(3.0) and d["edge_ratios"][1] == pytest.approx(1.5)
    assert d["edge_ratios"][2] == pytest.approx(1.0)
    assert d["depth_max_prob"] == pytest.approx(4 / 6, abs=1e-3)


def test_entropy_is_largest_when_uniform():
    arch = Architecture(4)
    flat = float(arch.entropy().detach())
    assert flat == pytest.approx(math.log(10) + math.log(4), rel=1e-5)
    with torch.no_grad():
        arch.alpha[:, 0] = 5.0
    assert float(arch.entropy().detach()) < flat


# ----------------------------------------------------------------------------- the search with a holdout
def _setup(tmp_path, **overrides):
    data = generate_distance(n_train=384, n_dev=96, seed=0, length=12, near=3, far=8, fillers=["the"])
    tok = build_tokenizer(tmp_path / "vocab")
    train, dev = encode(tok, data.train, 24), encode(tok, data.dev, 24)
    gold = F.one_hot(train.labels, 2).float() * 6 - 3
    targets = Targets(gold, gold[None].repeat(3, 1, 1), torch.device("cpu"))
    settings = dict(hidden_size=16, k_max=3, search_epochs=3, search_warmup_epochs=1, search_batch_size=32,
                    dropout=0.0, search_lr=0.01, arch_lr=0.02, seed=0)
    cfg = RunConfig(**{**settings, **overrides}).validate()
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = build_supernet(cfg, data.spec, torch.randn(len(tok), 16, generator=g), torch.randn(64, 16, generator=g),
                         tok.sep_token_id)
    holdout = carve(len(train), len(train), 96, cfg.seed)
    return cfg, data.spec, train, dev, targets, net, holdout


def test_bilevel_search_checks_each_epoch_on_the_validation_split(tmp_path):
    cfg, spec, train, dev, targets, net, holdout = _setup(tmp_path, arch_data="val")
    arch, _, history = search(cfg, spec, train, dev, targets, net, torch.device("cpu"), holdout=holdout)
    assert arch.alpha.abs().sum() > 0  # the architecture moved
    for h in history:
        assert set(h["val_derived"]) >= {"accuracy"} and set(h["dev_derived"]) >= {"accuracy"}
        assert {"edges_decided", "depth_max_prob", "edge_ratios"} <= set(h["decisiveness"])
    steps = -(-len(holdout.train) // cfg.search_batch_size)
    assert history[0]["arch_signal"] == {"steps": 0}  # warm-up: no architecture steps
    assert history[1]["arch_signal"]["steps"] == steps and 0 <= history[1]["arch_signal"]["ops_snr"]


def test_bilevel_without_a_validation_split_is_refused(tmp_path):
    cfg, spec, train, dev, targets, net, _ = _setup(tmp_path, arch_data="val")
    with pytest.raises(BertnasError, match="--val-examples"):
        search(cfg, spec, train, dev, targets, net, torch.device("cpu"))


def test_the_entropy_penalty_makes_the_search_commit(tmp_path):
    decided = {}
    for weight in (0.0, 3.0):
        cfg, spec, train, dev, targets, net, holdout = _setup(tmp_path, arch_entropy=weight, search_epochs=4)
        arch, _, _ = search(cfg, spec, train, dev, targets, net, torch.device("cpu"), holdout=holdout)
        decided[weight] = decisiveness(arch.alpha, arch.depth_logits)
    assert decided[3.0]["op_prob_max"] > decided[0.0]["op_prob_max"], decided
    assert decided[3.0]["edges_decided"] >= decided[0.0]["edges_decided"], decided


def test_rank_candidates_keeps_the_best_on_the_validation_split(tmp_path):
    cfg, spec, train, dev, targets, net, holdout = _setup(tmp_path, derive_candidates=4, tau_min=1.0)
    arch, _, _ = search(cfg, spec, train, dev, targets, net, torch.device("cpu"), holdout=holdout)
    genotype, _, scored = rank_candidates(cfg, spec, net, arch, take(train, holdout.val), torch.device("cpu"))
    assert 2 <= len(scored) <= 4 and scored[0]["most_likely"] and not any(s["most_likely"] for s in scored[1:])
    assert len({s["genotype"] for s in scored}) == len(scored)  # no architecture scored twice
    best = max(s["val"]["accuracy"] for s in scored)
    kept = next(s for s in scored if s["genotype"] == str(genotype))
    assert kept["val"]["accuracy"] == best
    assert next(s for s in scored if s["val"]["accuracy"] == best) is kept  # ties go to the earlier candidate


def _op_costs(k_max: int):
    """A latency table where every op but skip/pool costs 1 ms, so a cell's price follows its parametric ops."""
    from bertnas.adabert.costs import LatencyCosts
    from bertnas.adabert.ops import PRIMITIVES

    cheap = {"zero", "skip_connect", "max_pool_3", "avg_pool_3"}
    return LatencyCosts({o: 0.0 if o in cheap else 1.0 for o in PRIMITIVES}, 0.5, 1.0, k_max, 16, 24, 1)


def test_rank_candidates_keeps_only_architectures_within_the_latency_budget(tmp_path, caplog):
    cfg, spec, train, dev, targets, net, holdout = _setup(tmp_path, derive_candidates=6, tau_min=1.0)
    arch, _, _ = search(cfg, spec, train, dev, targets, net, torch.device("cpu"), holdout=holdout)
    val, costs = take(train, holdout.val), _op_costs(cfg.k_max)
    _, _, free = rank_candidates(cfg, spec, net, arch, val, torch.device("cpu"), costs=costs)
    prices = sorted({s["predicted_ms"] for s in free})
    assert len(prices) >= 2, free  # draws of different cost, or the budget below would not bind
    budget = prices[0]
    tight = cfg.update({"efficiency": "latency", "latency_budget_ms": budget}).validate()
    genotype, _, scored = rank_candidates(tight, spec, net, arch, val, torch.device("cpu"), costs=costs)
    assert scored and all(s["predicted_ms"] <= budget for s in scored), scored
    assert costs.predict(genotype) <= budget
    # a budget no draw meets: the cheapest draw, with a warning that names the fix
    impossible = cfg.update({"efficiency": "latency", "latency_budget_ms": budget / 100}).validate()
    with caplog.at_level("WARNING", logger="bertnas"):
        genotype, _, scored = rank_candidates(impossible, spec, net, arch, val, torch.device("cpu"), costs=costs)
    assert len(scored) == 1 and costs.predict(genotype) <= min(prices)  # more draws than the free ranking scored
    assert "meets the latency budget" in caplog.text and "--latency-budget-ms" in caplog.text


@pytest.mark.parametrize("flags, message", [
    (["--val-examples", "-1"], "val_examples"), (["--arch-entropy", "-0.5"], "arch_entropy"),
    (["--derive-candidates", "0"], "derive_candidates"), (["--arch-data", "dev"], "arch.data"),
])
def test_bad_values_are_one_line_errors(tmp_path, flags, message):
    proc = subprocess.run([sys.executable, "-m", "bertnas.cli", "run", "--out", str(tmp_path / "r"), "--task", "x",
                           "--teacher", "t", *flags], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and re.search(message, proc.stderr) and "Traceback" not in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- the pipeline end to end
def test_the_kept_epoch_is_chosen_on_the_validation_split(tmp_path, tiny_teacher):
    """A run with a holdout: the search records validation scores, the candidates are ranked, and the kept
    further-training epoch is the best on the validation split (its dev metrics are what is reported)."""
    from bertnas.data.synthetic import generate, write_task

    files = write_task(generate("single", n_train=400, n_dev=60, seed=3), tmp_path / "data")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "bertnas.cli", "run", "--teacher", str(tiny_teacher), "--task", "synthetic-single",
         "--train-file", str(files / "train.tsv"), "--dev-file", str(files / "dev.tsv"), "--out", str(out),
         "--max-seq-len", "32", "--hidden-size", "16", "--k-max", "3", "--search-epochs", "2", "--retrain-epochs", "3",
         "--probe-epochs", "1", "--search-batch-size", "32", "--retrain-batch-size", "32", "--eval-seq-len", "32",
         "--latency-repeats", "2", "--latency-threads", "1", "--device", "cpu", "--val-examples", "80",
         "--derive-candidates", "3", "--arch-data", "val", "--no-onnx-latency"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "search" / "genotype.json").read_text())
    assert summary["val_examples"] == 80 and 1 <= len(summary["candidates"]) <= 3
    assert summary["genotype_str"] in {c["genotype"] for c in summary["candidates"]}
    assert all("val_derived" in h for h in summary["history"])
    training = json.loads((out / "model" / "training.json").read_text())
    history = training["history"]
    assert all("val" in h and "dev" in h for h in history)
    scores = [h["val"]["accuracy"] for h in history]
    kept = scores.index(max(scores))  # the first epoch that reached the best validation score
    assert training["dev"] == history[kept]["dev"]


def test_gradient_signal_tells_noise_from_a_direction():
    """Pure noise sits at the noise floor; a steady direction under the same noise stands far above it."""
    from bertnas.adabert.searcher import GradientSignal

    g = torch.Generator().manual_seed(0)
    noise, steady = GradientSignal(), GradientSignal()
    for _ in range(400):
        noise.add(torch.randn(9, 10, generator=g), torch.randn(4, generator=g))
        steady.add(torch.randn(9, 10, generator=g) + 1.0, torch.randn(4, generator=g) + 1.0)
    a, b = noise.summary(), steady.summary()
    assert a["steps"] == 400 and a["noise_floor"] == pytest.approx(math.sqrt(2 / (math.pi * 400)), abs=1e-4)
    assert 0.5 * a["noise_floor"] < a["ops_snr"] < 1.6 * a["noise_floor"]
    assert b["ops_snr"] > 0.8 and b["depth_snr"] > 0.8


def test_batchnorm_recalibration_fits_the_statistics_to_one_architecture(tmp_path):
    """With every example in one recalibration batch, eval-mode outputs match training-mode ones (which use
    the batch's own statistics); with the corrupted statistics they did not. The weights are untouched."""
    from bertnas.adabert.searcher import recalibrate_batchnorm
    from bertnas.data.encode import batches

    cfg, spec, train, dev, targets, net, holdout = _setup(tmp_path, bn_recalibration=1)
    cfg = cfg.update({"search_batch_size": len(train)}, "test")
    arch = Architecture(cfg.k_max)
    with torch.no_grad():
        arch.alpha[:, 1] = 3.0  # a conv everywhere the derivation allows
    from bertnas.adabert.derive import derive_genotype

    genotype, _ = derive_genotype(arch.alpha, arch.depth_logits + torch.tensor([0.0, 0.0, 3.0]))
    ops_w, _ = arch.genotype_weights(genotype)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms
    for m in norms:
        m.running_mean.fill_(5.0)
    batch = next(batches(train, len(train)))
    weights = [p.detach().clone() for p in net.parameters()]

    def logits(training: bool) -> torch.Tensor:
        net.train(training)
        with torch.no_grad():
            out = net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], ops_w, genotype.depth)
            return net.logits(out, genotype.depth)

    reference = logits(True)
    before = (logits(False) - reference).abs().max()
    recalibrate_batchnorm(net, ops_w, genotype.depth, train, None, cfg, torch.device("cpu"))
    after = (logits(False) - reference).abs().max()
    assert after < 0.05 * before and after < 0.05, (before, after)
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
    assert all(m.momentum == 0.1 for m in norms)  # restored


def test_recalibration_leaves_the_search_trajectory_alone(tmp_path):
    alphas = []
    for n in (0, 3):
        cfg, spec, train, dev, targets, net, holdout = _setup(tmp_path, bn_recalibration=n)
        arch, _, history = search(cfg, spec, train, dev, targets, net, torch.device("cpu"), holdout=holdout)
        alphas.append(arch.alpha.detach().clone())
    assert torch.equal(alphas[0], alphas[1])
