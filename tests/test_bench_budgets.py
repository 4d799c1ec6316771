"""Issue #18 part 3: latency budgets as the product's Pareto front. ``bertnas bench --budgets-ms`` runs one search
per budget, bins the random genotypes by the budgets, and compares each budget's student (trained fresh, like
for like) with the random genotypes of the bin it lands in; the other-task row reads another bench's searched
genotype seed by seed."""
from __future__ import annotations

import json
import statistics

import pytest

from bertnas.bench import BenchSettings, run_bench
from bertnas.stats import paired_verdict
from bertnas.errors import BertnasError

from test_bench import _cfg


def _budget_cfg(tiny_teacher, synthetic_files, cache):
    return _cfg(tiny_teacher, synthetic_files["single"], cache).update(
        {"efficiency": "latency", "latency_table_batch": 1, "val_examples": 32, "derive_candidates": 3})


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory, tiny_teacher, synthetic_files):
    from bertnas.bench.bins import genotype_cost
    from bertnas.bench.students import random_genotypes

    root = tmp_path_factory.mktemp("bench_budgets")
    cfg = _budget_cfg(tiny_teacher, synthetic_files, root / "cache")
    cost = genotype_cost(cfg)  # this CPU's table for the tiny space, measured once into the test's cache
    costs = sorted(cost(g) for g in random_genotypes(60, cfg.k_max, cfg.min_parametric, seed=0))
    budgets = (round(statistics.quantiles(costs, n=3)[0], 3), round(statistics.quantiles(costs, n=3)[1], 3))
    settings = BenchSettings(rows="full,searched_fresh,random", random_n=0, seeds=2, random_per_bin=1,
                             budgets_ms=budgets, bert_base=False)
    return root, cfg, settings, run_bench(cfg, settings, root / "out"), cost


def test_one_search_per_budget_and_random_genotypes_binned_by_the_budgets(budgeted):
    root, _, settings, results, cost = budgeted
    b1, b2 = settings.budgets_ms
    by = {r["name"]: r for r in results["rows"]}
    assert list(by) == ["teacher", f"full_{b1:g}ms", f"full_{b2:g}ms", f"searched_fresh_{b1:g}ms",
                        f"searched_fresh_{b2:g}ms", "random_b1_1", "random_b2_1"]
    for budget in settings.budgets_ms:
        saved = json.loads((root / "out" / "rows" / f"full_{budget:g}ms-s1" / "config.json").read_text())
        assert saved["latency_budget_ms"] == budget and saved["efficiency"] == "latency"
        searched = by[f"full_{budget:g}ms"]
        for seed in searched["seeds"]:  # the ranking keeps only candidates within the budget
            assert seed["cost"] <= budget + 1e-9, (budget, seed)
        fresh = by[f"searched_fresh_{budget:g}ms"]
        assert [s["architecture"] for s in fresh["seeds"]] == [s["architecture"] for s in searched["seeds"]]
    assert by["random_b1_1"]["cost"] <= b1 < by["random_b2_1"]["cost"] <= b2  # nothing drawn above the last budget
    assert results["bins"]["edges"] == [b1, b2] and "budgets" in results["bins"]["method"]


def test_each_budget_is_compared_with_the_random_genotypes_of_its_bin(budgeted):
    root, _, settings, results, _ = budgeted
    by = {r["name"]: r for r in results["rows"]}
    assert [b["budget_ms"] for b in results["budgets"]] == list(settings.budgets_ms)
    cmp = {(c["row"], c["against"]): c for c in results["comparisons"]}
    for entry in results["budgets"]:
        ref = by[entry["reference"]]
        assert entry["reference"] == f"searched_fresh_{entry['budget_ms']:g}ms" and entry["met"]
        assert entry["predicted_ms"] == [s["cost"] for s in ref["seeds"]]
        assert (entry["full"], entry["reference"]) in cmp  # supernet weights kept vs trained fresh
        members = [r for r in results["rows"] if r["group"] == "random" and r["bin"] == entry["bin"]]
        if not members:
            assert "random" not in entry
            continue
        seeds = [s["metric"] for s in ref["seeds"]]
        average = [statistics.fmean(r["seeds"][i]["metric"] for r in members) for i in range(2)]
        assert entry["versus_average"]["mean_diff"] == pytest.approx(paired_verdict(seeds, average)["mean_diff"])
        best = max(members, key=lambda r: r["metric"])
        assert entry["random"]["best_row"] == best["name"]
        assert cmp[(entry["reference"], best["name"])]["verdict"] == \
            paired_verdict(seeds, [s["metric"] for s in best["seeds"]])["verdict"]
    table = (root / "out" / "bench.md").read_text()
    assert "Latency budgets" in table and "| budget (ms) |" in table
    assert (root / "out" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_budgets_need_latency_pricing_and_an_order(tiny_teacher, synthetic_files, tmp_path, capsys):
    from bertnas.cli import main

    cfg = _cfg(tiny_teacher, synthetic_files["single"], tmp_path / "cache")
    with pytest.raises(BertnasError, match="--efficiency latency"):
        run_bench(cfg, BenchSettings(rows="full,random", budgets_ms=(1.0, 2.0)), tmp_path / "b")
    data = synthetic_files["single"]
    for value, message in (("3,1", "distinct and ascending"), ("1,x", "comma-separated milliseconds")):
        code = main(["bench", "--teacher", str(tiny_teacher), "--task", "synthetic-single", "--train-file",
                     str(data / "train.tsv"), "--dev-file", str(data / "dev.tsv"), "--out", str(tmp_path / "b"),
                     "--efficiency", "latency", "--budgets-ms", value])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b").exists()


def test_other_task_reads_another_benchs_genotype_of_each_seed(tiny_teacher, synthetic_files, tmp_path):
    from bertnas.bench.students import bench_genotypes

    # a bench with a plain full row (no budgets), then another bench whose other-task row reads it seed by seed
    cfg = _cfg(tiny_teacher, synthetic_files["single"], tmp_path / "cache")
    first = run_bench(cfg, BenchSettings(rows="full", seeds=2, bert_base=False), tmp_path / "first")
    found = [s["architecture"] for s in first["rows"][1]["seeds"]]
    assert [str(g) for g in bench_genotypes(str(tmp_path / "first"), 2)] == found
    with pytest.raises(BertnasError, match="--seeds 2"):
        bench_genotypes(str(tmp_path / "first"), 3)
    assert bench_genotypes(str(tmp_path), 1) is None  # not a bench directory
    second = run_bench(cfg, BenchSettings(rows="other_task", seeds=2, genotype_from=str(tmp_path / "first"),
                                           bert_base=False), tmp_path / "second")
    other = next(r for r in second["rows"] if r["name"] == "other_task")
    assert [s["architecture"] for s in other["seeds"]] == found
