"""AdaBERT with --efficiency latency: the op latency table (every primitive, cached), the config checks, the
latency loss with and without a budget, a budgeted search picking a cheaper student, and the CLI end to end.

Timings on a shared CPU are noisy: nothing here asserts on a measured number, only on structure, caching and
on behaviour under hand-built tables."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from bertnas.adabert import costs as costs_mod
from bertnas.adabert.costs import (CELL_OVERHEAD, CLASSIFIER, EMBEDDINGS, LatencyCosts, latency_specs,
                                   measure_latency_table)
from bertnas.adabert.genotype import NUM_EDGES, Genotype
from bertnas.adabert.objective import latency_loss
from bertnas.adabert.ops import PRIMITIVES
from bertnas.config import RunConfig
from bertnas.errors import BertnasError
from bertnas.measure.latency_table import LatencyTable, table_key


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors (conftest.py)


# ----------------------------------------------------------------------------- the table
def test_table_covers_every_primitive_and_is_cached(tmp_path, monkeypatch):
    table = measure_latency_table(8, 16, 2, threads=1, repeats=1, cache_dir=tmp_path)
    for op in (*PRIMITIVES, CELL_OVERHEAD, EMBEDDINGS, CLASSIFIER):
        assert table_key(op, 8, 16, 2) in table.entries, op
        assert table.entries[table_key(op, 8, 16, 2)] >= 0
    assert table.calibration["16|2"][0] > 0  # one scale fitted on whole students
    files = list((tmp_path / "latency").glob("adabert-h8-s16-b2-t1-*.json"))
    assert len(files) == 1 and LatencyTable.load(files[0]).entries == table.entries
    assert LatencyTable.load(files[0]).calibration == table.calibration

    def boom(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr("bertnas.measure.latency_table.measure_table", boom)
    monkeypatch.setattr("bertnas.measure.profile.measure_latency", boom)
    again = measure_latency_table(8, 16, 2, threads=1, repeats=1, cache_dir=tmp_path)  # read, not measured
    assert again.entries == table.entries and again.calibration == table.calibration
    costs = LatencyCosts.of(again, 8, 16, 2, k_max=3)
    assert costs.scale == table.calibration["16|2"][0]
    with pytest.raises(AssertionError, match="measured again"):  # other settings: another table
        measure_latency_table(8, 16, 4, threads=1, repeats=1, cache_dir=tmp_path)


def test_every_spec_builds_and_runs():
    for spec in latency_specs(8, max_positions=32):
        with torch.inference_mode():
            spec.build().eval()(*spec.inputs(2, 16))


def test_predicted_latency_is_the_sum_of_the_parts():
    op_ms = {o: float(i) for i, o in enumerate(PRIMITIVES)}
    costs = LatencyCosts(op_ms, cell_ms=0.5, fixed_ms=2.0, k_max=4, hidden=8, seq_len=16, batch=2)
    g = Genotype.parse("K=3 | n0: conv_3<0 conv_5<1 | n1: skip_connect<1 conv_3<2 | n2: max_pool_3<0 conv_7<3")
    ops = sum(op_ms[o] for _, _, o in g.edges)
    assert costs.predict(g) == pytest.approx(2.0 + 3 * (0.5 + ops))
    assert costs.max_ms == pytest.approx(2.0 + 4 * (0.5 + 6 * max(op_ms.values())))
    scaled = LatencyCosts(op_ms, cell_ms=0.5, fixed_ms=2.0, k_max=4, hidden=8, seq_len=16, batch=2, scale=0.5)
    assert scaled.predict(g) == pytest.approx(costs.predict(g) / 2) and scaled.max_ms == pytest.approx(costs.max_ms / 2)
    # all mass on the slowest op at K_max: every edge priced at that op, times the 6 edges a cell keeps
    slowest = max(op_ms, key=op_ms.get)
    onehot = F.one_hot(torch.full((NUM_EDGES,), PRIMITIVES.index(slowest)), len(PRIMITIVES)).float()
    assert float(costs.expected(onehot, torch.tensor(4.0))) == pytest.approx(costs.max_ms)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("values, message", [
    ({"efficiency": "speed"}, "efficiency='speed': must be one of params_flops, latency"),
    ({"latency_budget_ms": 5.0}, "add --efficiency latency"),
    ({"efficiency": "latency", "latency_budget_ms": 0.0}, "must be > 0 milliseconds"),
    ({"efficiency": "latency", "latency_budget_ms": float("nan")}, "finite"),
    ({"efficiency": "latency", "latency_table_batch": 0}, "latency_table_batch=0: must be >= 1"),
    ({"efficiency": "latency", "latency_table_seq_len": 0}, "latency_table_seq_len=0: must be >= 1"),
    ({"efficiency": "latency", "latency_table_threads": 0}, "latency_table_threads=0: must be >= 1"),
])
def test_config_errors_name_the_fix(values, message):
    with pytest.raises(BertnasError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig().update(values).validate()


def test_config_defaults_keep_params_flops():
    cfg = RunConfig().validate()
    assert cfg.efficiency == "params_flops" and cfg.latency_budget_ms is None
    assert cfg.table_seq_len == cfg.eval_seq_len and cfg.table_threads == cfg.latency_threads
    cfg = RunConfig().update({"efficiency": "latency", "latency-budget-ms": "12.5", "latency_table_seq_len": 64}).validate()
    assert cfg.latency_budget_ms == 12.5 and cfg.table_seq_len == 64


# ----------------------------------------------------------------------------- the loss
def _costs(k_max: int = 4) -> LatencyCosts:
    """Convs cost 10 ms per call, dilated 12, pools 1, skip/zero nothing; cells 2 ms glue; 5 ms fixed."""
    op_ms = {o: 12.0 if o.startswith("dil") else 10.0 if o.startswith("conv") else 1.0 if "pool" in o else 0.0
             for o in PRIMITIVES}
    return LatencyCosts(op_ms, cell_ms=2.0, fixed_ms=5.0, k_max=k_max, hidden=16, seq_len=32, batch=4)


def test_latency_loss_is_zero_within_the_budget_and_positive_above():
    costs = _costs()
    probs = torch.full((NUM_EDGES, len(PRIMITIVES)), 1 / len(PRIMITIVES), requires_grad=True)
    depth = torch.tensor(4.0, requires_grad=True)
    expected = float(costs.expected(probs, depth).detach())
    generous = latency_loss(probs, costs, depth, budget_ms=10 * costs.max_ms)
    assert float(generous.detach()) == 0.0
    generous.backward()
    assert float(depth.grad) == 0.0 and float(probs.grad.abs().sum()) == 0.0  # no pull within the budget
    tight = latency_loss(probs, costs, depth, budget_ms=expected / 2)
    assert float(tight.detach()) == pytest.approx(0.1)  # 0.1 per budget's worth of excess
    tight.backward()
    assert float(depth.grad) > 0  # fewer cells lower it
    conv, skip = PRIMITIVES.index("conv_7"), PRIMITIVES.index("skip_connect")
    assert float(probs.grad[0, conv]) > float(probs.grad[0, skip])  # and cheaper ops
    free = latency_loss(probs, costs, torch.tensor(float(costs.k_max)))
    assert 0 < float(free.detach()) < 0.1  # no budget: a fraction of the largest model's latency, at most 0.1


# ----------------------------------------------------------------------------- the search
def _hand_table(costs: LatencyCosts) -> LatencyTable:
    t = LatencyTable()
    for o, ms in costs.op_ms.items():
        t.entries[table_key(o, costs.hidden, costs.seq_len, costs.batch)] = ms
    t.entries[table_key(CELL_OVERHEAD, costs.hidden, costs.seq_len, costs.batch)] = costs.cell_ms
    t.entries[table_key(EMBEDDINGS, costs.hidden, costs.seq_len, costs.batch)] = costs.fixed_ms
    t.entries[table_key(CLASSIFIER, costs.hidden, costs.seq_len, costs.batch)] = 0.0
    return t


def _search(tmp_path, table: LatencyTable, **overrides):
    from bertnas.adabert.objective import Targets
    from bertnas.adabert.searcher import build_supernet, finish_search, search
    from bertnas.data.encode import encode
    from bertnas.data.synthetic import build_tokenizer, generate_distance

    data = generate_distance(n_train=256, n_dev=64, seed=0, length=16, near=3, far=8, fillers=["the"])
    tok = build_tokenizer(tmp_path / "vocab")
    train, dev = encode(tok, data.train, 32), encode(tok, data.dev, 32)
    gold = F.one_hot(train.labels, 2).float() * 6 - 3
    targets = Targets(gold, gold[None].repeat(3, 1, 1), torch.device("cpu"))
    cfg = RunConfig(hidden_size=16, k_max=4, search_epochs=5, search_warmup_epochs=1, search_batch_size=32,
                    dropout=0.0, search_lr=0.01, arch_lr=0.05, seed=0, efficiency="latency",
                    latency_table_seq_len=32, latency_table_batch=4, **overrides).validate()
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the supernet's initial weights come from the global generator
    net = build_supernet(cfg, data.spec, torch.randn(len(tok), 16, generator=g), torch.randn(64, 16, generator=g),
                         tok.sep_token_id)
    arch, heads, history = search(cfg, data.spec, train, dev, targets, net, torch.device("cpu"), latency_table=table)
    result = finish_search(cfg, data.spec, net, arch, heads, history, tok.pad_token_id, tok.sep_token_id,
                           latency_table=table)
    return result


def test_a_tight_budget_finds_a_cheaper_student(tmp_path):
    costs = _costs()
    table = _hand_table(costs)
    free = _search(tmp_path, table, beta=0.0)
    tight = _search(tmp_path, table, beta=50.0, latency_budget_ms=costs.fixed_ms + 1.0)
    assert free.latency["budget_ms"] is None and free.latency["meets_budget"] is None
    assert tight.latency["budget_ms"] == costs.fixed_ms + 1.0 and tight.latency["meets_budget"] is False
    assert free.latency["predicted_ms"] == pytest.approx(costs.predict(free.genotype), abs=1e-3)
    assert tight.latency["predicted_ms"] == pytest.approx(costs.predict(tight.genotype), abs=1e-3)
    assert tight.latency["predicted_ms"] < free.latency["predicted_ms"], (free.genotype, tight.genotype)
    assert all("predicted_latency_ms" in h for h in tight.history)
    probs = torch.tensor(tight.op_probs)
    cheap = [PRIMITIVES.index(o) for o in ("max_pool_3", "avg_pool_3", "skip_connect", "zero")]
    free_probs = torch.tensor(free.op_probs)
    assert float(probs[:, cheap].sum()) > float(free_probs[:, cheap].sum())  # mass moved to cheap ops


def test_params_flops_search_has_no_latency_report(tmp_path):
    cfg = RunConfig(efficiency="params_flops").validate()
    from bertnas.adabert.searcher import latency_costs, latency_report

    assert latency_costs(cfg) is None and latency_report(cfg, Genotype.parse("K=1 | n0: conv_3<0 | n1: conv_3<1 | n2: conv_3<2")) is None


# ----------------------------------------------------------------------------- the command line
def test_cli_run_with_a_latency_budget_writes_the_predicted_latency(tmp_path, synthetic_files, tiny_teacher):
    from bertnas.cli import main

    out = tmp_path / "run"
    data = synthetic_files["single"]
    rc = main(["run", "--teacher", str(tiny_teacher), "--task", "synthetic-single", "--train-file",
               str(data / "train.tsv"), "--dev-file", str(data / "dev.tsv"), "--device", "cpu", "--out", str(out), "--hidden-size", "16", "--k-max", "2", "--probe-epochs", "1", "--search-epochs", "2",
               "--retrain-epochs", "1", "--max-seq-len", "32", "--eval-seq-len", "32", "--latency-repeats", "2",
               "--latency-threads", "1", "--efficiency", "latency", "--latency-budget-ms", "1000",
               "--latency-table-batch", "4", "--search-batch-size", "32"])
    assert rc == 0
    summary = json.loads((out / "search" / "genotype.json").read_text())
    lat = summary["latency"]
    assert lat["efficiency"] == "latency" and lat["budget_ms"] == 1000.0 and lat["meets_budget"] is True
    assert lat["predicted_ms"] > 0 and lat["batch"] == 4 and lat["seq_len"] == 32 and lat["threads"] == 1
    assert set(lat["op_ms"]) == set(PRIMITIVES)
    assert all("predicted_latency_ms" in h for h in summary["history"])
    saved = json.loads((out / "config.json").read_text())
    assert saved["efficiency"] == "latency" and saved["latency_budget_ms"] == 1000.0
    assert (out / "results.json").is_file()


def test_calibration_fits_small_models_as_well_as_big_ones():
    """measured = scale * sum + offset is fitted on relative error: a small model's prediction stays close even when
    big models (with their own noise) dominate the absolute residuals; exact data is recovered exactly."""
    table = LatencyTable(entries={})
    exact = table.calibrate([1.0, 10.0, 100.0, 200.0], [1.5 * x + 0.2 for x in (1.0, 10.0, 100.0, 200.0)], 128, 32)
    assert exact == pytest.approx((1.5, 0.2), rel=1e-9)
    sums = [2.0, 20.0, 150.0, 300.0]
    measured = [3.0, 25.0, 160.0, 380.0]  # the biggest model 20% above the trend of the others
    scale, offset = table.calibrate(sums, measured, 128, 32)
    assert abs(scale * sums[0] + offset - measured[0]) / measured[0] < 0.10
    unweighted = torch.linalg.lstsq(torch.tensor([[x, 1.0] for x in sums], dtype=torch.float64),
                                    torch.tensor(measured, dtype=torch.float64)[:, None]).solution[:, 0].tolist()
    assert abs(unweighted[0] * sums[0] + unweighted[1] - measured[0]) / measured[0] > 0.5  # what an absolute fit did
    assert table.calibration["128|32"] == [scale, offset]
