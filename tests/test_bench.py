"""`bertnas bench` on the synthetic task with a tiny teacher: the table's rows and columns, one teacher pass
shared by every row, finished rows skipped on rerun, the Pareto plot, and the user errors."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bertnas import RunConfig
from bertnas.bench import BenchSettings, run_bench
from bertnas.errors import BertnasError

TINY = dict(augment=0, max_seq_len=32, hidden_size=16, k_max=3, search_epochs=2, retrain_epochs=1, probe_epochs=1,
            search_batch_size=32, retrain_batch_size=32, eval_seq_len=32, latency_repeats=2, latency_threads=1,
            device="cpu")
ROWS = "full,searched_fresh,random,conv3_stack,no_kd"


def _cfg(teacher: Path, data: Path, cache: Path) -> RunConfig:
    return RunConfig(task="synthetic-single", teacher=str(teacher), train_file=str(data / "train.tsv"),
                     dev_file=str(data / "dev.tsv"), cache_dir=str(cache), **TINY)


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_teacher, synthetic_files):
    root = tmp_path_factory.mktemp("bench")
    cfg = _cfg(tiny_teacher, synthetic_files["single"], root / "cache")
    settings = BenchSettings(rows=ROWS, random_n=2, bert_base=False)
    results = run_bench(cfg, settings, root / "out")
    return root, cfg, settings, results


def test_table_has_every_row_and_column(bench):
    root, _, _, results = bench
    names = [r["name"] for r in results["rows"]]
    assert names == ["teacher", "full", "searched_fresh", "random_1", "random_2", "conv3_stack", "no_kd"]
    assert [r["group"] for r in results["rows"]] == ["teacher", "adabert", "adabert", "random", "random",
                                                    "hand-designed", "ablation"]
    for row in results["rows"]:
        assert 0 <= row["metric"] <= 1 and row["params"] > row["params_no_emb"] > 0 and row["flops"] > 0
        for b in ("latency_b1", "latency_b32"):
            assert row[b]["p25_ms"] <= row[b]["median_ms"] <= row[b]["p75_ms"] and row[b]["n"] == 2
        assert row["architecture"]
    by = {r["name"]: r for r in results["rows"]}
    assert by["full"]["search_seconds"] > 0 and by["full"]["train_seconds"] >= 0
    assert by["random_1"]["search_seconds"] == 0 and by["random_1"]["architecture"] != by["random_2"]["architecture"]
    assert by["conv3_stack"]["architecture"] == "K=3 | n0: conv_3<0 conv_3<1 | n1: conv_3<1 conv_3<2 | n2: conv_3<2 conv_3<3"
    assert results["random"]["n"] == 2 and results["random"]["best"] >= results["random"]["median"]
    # same training budget: every trained row ran the searched student's further-training epochs
    assert {by[n]["retrain_epochs"] for n in names[1:]} == {TINY["retrain_epochs"]}
    table = (root / "out" / "bench.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| row |"))
    for col in ("dev accuracy", "params", "params w/o emb.", "GFLOPs (b1)", "latency b1 ms", "latency b32 ms",
                "search s", "train s", "architecture"):
        assert f"| {col} |" in header, col
    first_table = table.split("\n\n")[1]
    assert sum(line.startswith("| ") for line in first_table.splitlines()) == 1 + len(names)
    assert "random-search average" in table and "no distillation" in table
    assert "within noise (1 seed)" in table and "±" not in first_table  # one seed: no spread, no verdict
    saved = json.loads((root / "out" / "bench.json").read_text())
    assert [r["name"] for r in saved["rows"]] == names and saved["hardware"]["cpu"]


def test_rows_share_one_teacher_pass(bench):
    root, _, _, _ = bench
    assert len(list((root / "cache").glob("knowledge-*"))) == 1  # the teacher ran once
    key = json.loads((root / "out" / "probe" / "probes" / "probes.json").read_text())["knowledge_key"]
    rows = [d for d in (root / "out" / "rows").iterdir() if d.is_dir()]
    assert len(rows) == 6
    for d in rows:
        assert json.loads((d / "probes" / "probes.json").read_text())["knowledge_key"] == key
        assert (d / "model" / "config.json").is_file() and (d / "bench-row.json").is_file()


def test_finished_rows_are_skipped_on_rerun(bench, caplog):
    root, cfg, settings, first = bench
    stamps = {d.name: (d / "model" / "model.safetensors").stat().st_mtime_ns for d in (root / "out" / "rows").iterdir()}
    with caplog.at_level(logging.INFO, logger="bertnas"):
        again = run_bench(cfg, settings, root / "out")
    text = caplog.text
    assert "teacher knowledge and probes already done" in text
    assert text.count("already done for these settings, skipping") == 6
    assert "bench row full: AdaBERT" not in text and "bench row random_1: random" not in text
    assert stamps == {d.name: (d / "model" / "model.safetensors").stat().st_mtime_ns
                      for d in (root / "out" / "rows").iterdir()}
    assert [r["metric"] for r in again["rows"]] == [r["metric"] for r in first["rows"]]


def test_pareto_plot_is_a_png(bench):
    root, _, _, _ = bench
    assert (root / "out" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_row_names_list_the_known_ones(tmp_path, tiny_teacher, synthetic_files, capsys):
    from bertnas.cli import main

    data = synthetic_files["single"]
    code = main(["bench", "--teacher", str(tiny_teacher), "--task", "synthetic-single", "--train-file",
                 str(data / "train.tsv"), "--dev-file", str(data / "dev.tsv"), "--out", str(tmp_path / "b"),
                 "--rows", "full,nonsense"])
    err = capsys.readouterr().err
    assert code == 2 and "nonsense" in err and "small_bert" in err and "truncated_teacher" in err
    assert not (tmp_path / "b").exists()  # refused before any work


def test_rows_that_do_not_apply_say_how_to_fix(tiny_teacher, synthetic_files, tmp_path):
    cfg = _cfg(tiny_teacher, synthetic_files["single"], tmp_path / "cache")
    with pytest.raises(BertnasError, match="--augment"):
        run_bench(cfg, BenchSettings(rows="no_augment"), tmp_path / "b")
    with pytest.raises(BertnasError, match="--genotype-from"):
        run_bench(cfg, BenchSettings(rows="other_task"), tmp_path / "b")


def test_bert_rows_logits_only_and_other_task(bench, caplog):
    """The rows the small bench leaves out, added to the same bench: they reuse its teacher pass."""
    root, cfg, _, _ = bench
    settings = BenchSettings(rows="small_bert,truncated_teacher,logits_kd,other_task", random_n=0, bert_base=False,
                             genotype_from=str(root / "out" / "rows" / "full"))
    with caplog.at_level(logging.INFO, logger="bertnas"):
        results = run_bench(cfg, settings, root / "out")
    assert "teacher knowledge and probes already done" in caplog.text
    assert len(list((root / "cache").glob("knowledge-*"))) == 1
    by = {r["name"]: r for r in results["rows"]}
    assert by["small_bert"]["architecture"].startswith("bert L=2 H=128")
    assert by["truncated_teacher"]["architecture"].startswith("bert L=1 H=32")  # the tiny teacher has 2 layers
    full = json.loads((root / "out" / "rows" / "full" / "search" / "genotype.json").read_text())
    assert by["other_task"]["architecture"] == full["genotype_str"]
    from bertnas.utils import read_weights

    assert read_weights(root / "out" / "rows" / "logits_kd" / "search" / "heads.safetensors", "search") == {}
    assert (root / "out" / "rows" / "logits_kd" / "model" / "config.json").is_file()


def test_random_genotypes_follow_the_derivation_rules():
    from collections import Counter

    from bertnas.bench.students import random_genotypes

    draws = random_genotypes(300, k_max=8, min_parametric=1, seed=0)
    assert draws[:5] == random_genotypes(5, k_max=8, min_parametric=1, seed=0)  # seeded
    for g in draws:
        assert 1 <= g.depth <= 8 and len(g.edges) == 6 and all(op != "zero" for _, _, op in g.edges)
        assert all(len(g.ops_of(n)) == 2 for n in range(3))
        from bertnas.adabert.ops import PARAMETER_FREE

        assert all(sum(op not in PARAMETER_FREE for _, op in g.ops_of(n)) >= 1 for n in range(3))  # the guard
    depths = Counter(g.depth for g in draws)
    assert set(depths) == set(range(1, 9)) and max(depths.values()) < 3 * min(depths.values())  # roughly uniform
