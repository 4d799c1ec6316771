"""The bench's fair, low-noise protocol (issue #18): seeds per row with mean / sd / se, the searched genotype
trained fresh beside the random rows, random genotypes per cost bin, and verdicts paired over seeds."""
from __future__ import annotations

import json
import logging
import math
import statistics

import pytest
import torch

from bertnas import RunConfig
from bertnas.bench import BenchSettings, run_bench
from bertnas.stats import paired_verdict, spread
from bertnas.errors import BertnasError

from test_bench import TINY, _cfg


# ----------------------------------------------------------------------------- the verdict helper
def test_spread_is_mean_sample_sd_and_standard_error():
    s = spread([0.80, 0.82, 0.84])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.82)
    assert s["sd"] == pytest.approx(0.02) and s["se"] == pytest.approx(0.02 / math.sqrt(3))
    assert spread([0.5]) == {"n": 1, "mean": 0.5, "sd": None, "se": None}


def test_paired_verdict_needs_two_standard_errors():
    # one seed: never a verdict, however large the difference
    assert paired_verdict([0.9], [0.1])["verdict"] == "within noise (1 seed)"
    # a steady gap: the seed-to-seed noise both rows share cancels in the pairing
    v = paired_verdict([0.80, 0.70, 0.90], [0.79, 0.69, 0.89])
    assert v["verdict"] == "beats" and v["mean_diff"] == pytest.approx(0.01)
    assert v["se_diff"] == pytest.approx(0, abs=1e-9)
    assert paired_verdict([0.79, 0.69, 0.89], [0.80, 0.70, 0.90])["verdict"] == "below"
    # differences +0.02, -0.01, +0.02: mean 0.01, se 0.01 -> 1 se, within noise
    v = paired_verdict([0.82, 0.79, 0.82], [0.80, 0.80, 0.80])
    assert v["se_diff"] == pytest.approx(0.01) and v["verdict"] == "within noise"
    # differences 0.03, 0.05: mean 0.04, se 0.01 -> 4 se
    assert paired_verdict([0.83, 0.85], [0.80, 0.80])["verdict"] == "beats"
    assert paired_verdict([0.8, 0.8], [0.8, 0.8])["verdict"] == "within noise"  # no difference at all
    # pairs by seed index: the extra seed of the longer row is left out
    assert paired_verdict([0.9, 0.9, 0.1], [0.8, 0.8])["n"] == 2


# ----------------------------------------------------------------------------- cost bins
def test_bins_hold_their_share_of_the_space_and_draws_fill_them():
    from bertnas.bench.bins import cost_bins, draw_per_bin, genotype_cost

    cfg = RunConfig(hidden_size=16, k_max=4, eval_seq_len=32)
    cost = genotype_cost(cfg)
    assert cost.unit == "MFLOPs" and "FLOPs of the cells" in cost.basis  # no latency table configured
    bins = cost_bins(cost, 3, cfg.k_max, cfg.min_parametric, seed=0)
    assert bins.count == 3 and list(bins.edges) == sorted(bins.edges) and bins.edges[0] < bins.edges[1]
    assert bins.bounds(1) == (None, bins.edges[0]) and bins.bounds(3) == (bins.edges[1], None)
    drawn = draw_per_bin(bins, cost, 2, cfg.k_max, cfg.min_parametric, seed=0)
    assert [len(d) for d in drawn] == [2, 2, 2]
    for b, genotypes in enumerate(drawn, 1):
        assert all(bins.bin_of(cost(g)) == b for g in genotypes) and len(set(genotypes)) == 2
    assert drawn == draw_per_bin(bins, cost, 2, cfg.k_max, cfg.min_parametric, seed=0)  # seeded
    depth = [statistics.fmean(g.depth for g in genotypes) for genotypes in drawn]
    assert depth[2] > depth[0]  # the costliest bin holds deeper students than the cheapest


def test_with_a_latency_table_the_cost_is_the_predicted_latency(tmp_path):
    from bertnas.adabert.searcher import latency_costs
    from bertnas.bench.bins import genotype_cost
    from bertnas.bench.students import random_genotypes

    cfg = RunConfig(hidden_size=16, k_max=3, eval_seq_len=32, efficiency="latency", latency_table_batch=2,
                    latency_repeats=2, latency_threads=1, cache_dir=str(tmp_path))
    cost = genotype_cost(cfg)  # measures the tiny table once; the search would read the same cached table
    assert cost.unit == "ms" and "predicted latency (batch 2, sequence 32)" == cost.basis
    predict = latency_costs(cfg).predict
    for g in random_genotypes(5, cfg.k_max, cfg.min_parametric, seed=0):
        assert cost(g) == pytest.approx(predict(g)) and cost(g) > 0


def test_a_bin_the_space_cannot_fill_is_logged_and_left_short(caplog):
    from bertnas.bench.bins import CostBins, GenotypeCost, draw_per_bin

    flat = GenotypeCost(lambda g: 0.0, "a cost every genotype shares", "units")
    bins = CostBins((1.0, 2.0), flat.basis, flat.unit)
    with caplog.at_level(logging.WARNING, logger="bertnas"):
        drawn = draw_per_bin(bins, flat, 1, k_max=2, min_parametric=1, seed=0)
    assert [len(d) for d in drawn] == [1, 0, 0]
    assert "cost bin 2 holds 0 of 1" in caplog.text and "cost bin 3 holds 0 of 1" in caplog.text


# ----------------------------------------------------------------------------- a bench with two seeds and bins
@pytest.fixture(scope="module")
def seeded(tmp_path_factory, tiny_teacher, synthetic_files):
    root = tmp_path_factory.mktemp("bench_protocol")
    cfg = _cfg(tiny_teacher, synthetic_files["single"], root / "cache")
    settings = BenchSettings(rows="full,searched_fresh,random,conv3_stack", random_n=1, seeds=2, random_per_bin=1,
                             latency_bins=2, bert_base=False)
    return root, cfg, settings, run_bench(cfg, settings, root / "out")


def test_every_row_runs_every_seed_in_its_own_directory(seeded):
    root, cfg, _, results = seeded
    by = {r["name"]: r for r in results["rows"]}
    assert list(by) == ["teacher", "full", "searched_fresh", "random_1", "random_b1_1", "random_b2_1", "conv3_stack"]
    assert by["teacher"]["n_seeds"] == 1
    for name in list(by)[1:]:
        row = by[name]
        values = [s["metric"] for s in row["seeds"]]
        assert [s["seed"] for s in row["seeds"]] == [cfg.seed, cfg.seed + 1] and row["n_seeds"] == 2
        assert row["metric"] == pytest.approx(statistics.fmean(values))
        assert row["metric_sd"] == pytest.approx(statistics.stdev(values))
        assert row["metric_se"] == pytest.approx(statistics.stdev(values) / math.sqrt(2))
        for d in (root / "out" / "rows" / name, root / "out" / "rows" / f"{name}-s1"):
            assert (d / "bench-row.json").is_file() and (d / "model" / "config.json").is_file()
        saved = json.loads((root / "out" / "rows" / f"{name}-s1" / "config.json").read_text())
        assert saved["seed"] == cfg.seed + 1


def test_searched_fresh_trains_the_searched_genotype_from_a_fresh_start(seeded):
    from safetensors.torch import load_file

    root, _, _, results = seeded
    by = {r["name"]: r for r in results["rows"]}
    for full, fresh in zip(by["full"]["seeds"], by["searched_fresh"]["seeds"]):
        assert fresh["architecture"] == full["architecture"]  # the same seed's searched genotype
    assert "supernet weights kept" in by["full"]["label"] and by["searched_fresh"]["group"] == "adabert"
    rows = root / "out" / "rows"
    kept = load_file(str(rows / "full" / "search" / "student" / "model.safetensors"))
    fresh_start = load_file(str(rows / "searched_fresh" / "model" / "model.safetensors"))
    searched_end = load_file(str(rows / "full" / "model" / "model.safetensors"))
    cell = next(k for k in kept if "cells" in k and k.endswith("weight") and kept[k].dim() > 1)
    assert cell in fresh_start and not torch.equal(fresh_start[cell], searched_end[cell])
    # the fresh row and the random rows are trained by one recipe: same epochs and learning rate
    assert {by[n]["retrain_epochs"] for n in by if n != "teacher"} == {TINY["retrain_epochs"]}
    assert by["searched_fresh"]["search_seconds"] == 0 == by["random_1"]["search_seconds"]


def test_random_rows_record_their_bin_and_the_report_compares_per_bin(seeded):
    root, _, _, results = seeded
    by = {r["name"]: r for r in results["rows"]}
    assert by["random_b1_1"]["bin"] == 1 and by["random_b2_1"]["bin"] == 2 and by["random_1"]["bin"] in (1, 2)
    bins = results["bins"]
    assert bins["count"] == 2 and bins["unit"] == "MFLOPs" and bins["reference"] == "searched_fresh"
    ref = by["searched_fresh"]
    for entry in bins["bins"]:
        members = [r for r in results["rows"] if r["group"] == "random" and r["bin"] == entry["bin"]]
        assert entry["rows"] == [r["name"] for r in members]
        assert entry["average"] == pytest.approx(statistics.fmean(r["metric"] for r in members))
        assert entry["best"] == max(r["metric"] for r in members)
        v = entry["versus"]
        assert v["relative"] == pytest.approx((ref["metric"] - entry["average"]) / entry["average"])
        paired = paired_verdict([s["metric"] for s in ref["seeds"]], entry["average_by_seed"])
        assert v["verdict"] == paired["verdict"] and v["mean_diff"] == pytest.approx(paired["mean_diff"])
        assert entry["searched_seeds"] == [s["seed"] for s in ref["seeds"] if s["bin"] == entry["bin"]]
    assert bins["searched_bin"] == ref["seeds"][0]["bin"] or len({s["bin"] for s in ref["seeds"]}) == 1
    table = (root / "out" / "bench.md").read_text()
    assert "| bin | cost (MFLOPs) |" in table and "Yang et al." in table
    assert "random (bin 1)" in table and " ± " in table and "accuracy per seed" in table


def test_verdicts_pair_seeds_like_for_like(seeded):
    _, _, _, results = seeded
    by = {r["name"]: r for r in results["rows"]}
    seeds = lambda name: [s["metric"] for s in by[name]["seeds"]]  # noqa: E731
    cmp = {(c["row"], c["against"]): c for c in results["comparisons"]}
    # random and hand-designed genotypes against the searched genotype trained the same way, not against full
    assert ("searched_fresh", "conv3_stack") in cmp and ("full", "conv3_stack") not in cmp
    assert ("searched_fresh", "random_average") in cmp and ("full", "searched_fresh") in cmp
    for (a, b), c in cmp.items():
        if b in by:
            expected = paired_verdict(seeds(a), seeds(b))
            assert c["verdict"] == expected["verdict"] and c["se_diff"] == pytest.approx(expected["se_diff"])
        assert c["verdict"] in ("beats", "below", "within noise")  # two seeds: never the one-seed wording
    assert len(results["findings"]) == len(results["comparisons"])


def test_finished_seeds_are_skipped_on_rerun(seeded, caplog):
    root, cfg, settings, first = seeded
    with caplog.at_level(logging.INFO, logger="bertnas"):
        again = run_bench(cfg, settings, root / "out")
    assert caplog.text.count("already done for these settings, skipping") == 12  # 6 rows x 2 seeds
    same = lambda r: [(s["seed"], s["metric"], s["architecture"], s.get("bin")) for s in r["seeds"]]  # noqa: E731
    assert [same(r) for r in again["rows"]] == [same(r) for r in first["rows"]]


def test_pareto_plot_with_error_bars_is_a_png(seeded):
    root, _, _, _ = seeded
    assert (root / "out" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("flag,value", [("--seeds", "0"), ("--random-per-bin", "-1"), ("--latency-bins", "0")])
def test_bad_protocol_flags_name_the_fix(flag, value, tmp_path, tiny_teacher, synthetic_files, capsys):
    from bertnas.cli import main

    data = synthetic_files["single"]
    code = main(["bench", "--teacher", str(tiny_teacher), "--task", "synthetic-single", "--train-file",
                 str(data / "train.tsv"), "--dev-file", str(data / "dev.tsv"), "--out", str(tmp_path / "b"),
                 flag, value])
    err = capsys.readouterr().err
    assert code == 2 and f"{flag} must be" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_searched_fresh_needs_full(tiny_teacher, synthetic_files, tmp_path):
    cfg = _cfg(tiny_teacher, synthetic_files["single"], tmp_path / "cache")
    with pytest.raises(BertnasError, match="add full to --rows"):
        run_bench(cfg, BenchSettings(rows="searched_fresh"), tmp_path / "b")
