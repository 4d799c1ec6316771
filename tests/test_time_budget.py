"""``--time-budget``: durations, the plan's choice from measured costs, the deadline that holds the stages to
it, and a whole budgeted run through the CLI (plan logged, saved, applied, kept on resume)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from bertnas.budget import LADDERS, SAFETY, choose, fixed_knobs, parse_duration
from bertnas.config import RunConfig
from bertnas.errors import BertnasError
from bertnas.estimate import Costs, predict

TINY = ["--max-seq-len", "32", "--hidden-size", "16", "--k-max", "2", "--probe-epochs", "1",
        "--search-batch-size", "16", "--retrain-batch-size", "16", "--eval-seq-len", "32", "--latency-repeats", "2",
        "--latency-threads", "1", "--device", "cpu", "--derive-candidates", "2", "--bn-recalibration", "2"]


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("20m", 1200), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400),
                                          (" 10M ", 600), ("1d", 86400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["20", "m", "twenty minutes", "0m", "-5m", "20m junk", "31d", ""])
def test_bad_durations_name_the_form(text):
    with pytest.raises(BertnasError, match="--time-budget"):
        parse_duration(text)
    with pytest.raises(BertnasError, match="time_budget.*20m"):
        RunConfig(time_budget=text).validate()


def _costs(n_train: int = 67349, **kw) -> Costs:
    """Costs of the size measured for SST-2 on this CPU (the test checks the choice, not the figures)."""
    base = dict(n_train=n_train, held=min(5000, n_train // 10), teacher_cached=False, teacher_example_s=1 / 750,
                teacher_dev_s=8.0, copy_example_s=1 / 700, probes_example_s=1e-4, encode_s=4.0,
                search_warm_step_s=0.09, search_arch_step_s=0.12, retrain_step_s=0.02, eval_example_s=3e-4,
                n_dev=872, pair=False, evaluate_s=25.0, measured_in_s=30.0, threads=2)
    return Costs(**{**base, **kw})


def test_a_bigger_budget_buys_a_richer_recipe_that_still_fits():
    cfg, costs = RunConfig(), _costs()
    chosen = []
    for minutes in (6, 10, 15, 30, 60):
        plan = choose(cfg, costs, minutes * 60, planning_s=30.0)
        assert plan.predicted_total <= SAFETY * minutes * 60
        assert set(plan.predicted) == {"probe", "search", "retrain", "evaluate"}
        total = sum(predict(cfg.update(plan.settings), costs)[s][0] for s in plan.predicted)
        assert total == pytest.approx(plan.predicted_total - 30.0)
        chosen.append(plan.rung)
    assert chosen == sorted(chosen, reverse=True) and chosen[0] > chosen[-1]  # earlier rungs are the better ones
    assert chosen[-1] == 0  # an hour buys the top rung


def test_a_budget_too_short_names_the_least_that_would_do():
    with pytest.raises(BertnasError, match=r"too short.*give at least \d+m"):
        choose(RunConfig(), _costs(), 60, planning_s=30.0)


def test_knobs_the_user_set_are_kept():
    cfg = RunConfig(augment=3, retrain_epochs=5)
    assert fixed_knobs(cfg) == {"augment": 3, "retrain_epochs": 5}
    plan = choose(cfg, _costs(), 3600)
    assert plan.settings["augment"] == 3 and plan.settings["retrain_epochs"] == 5


def test_small_data_searches_on_all_of_it():
    """The subset is compared with what the search draws from: the originals left for training and their copies."""
    plan = choose(RunConfig(), _costs(n_train=2000), 3600)
    ladder = LADDERS["single"]
    assert plan.rung == 0 and ladder[0]["search_max_examples"] is not None
    pool = (2000 - 200) * (1 + plan.settings["augment"])
    assert (plan.settings["search_max_examples"] is None) == (pool <= ladder[0]["search_max_examples"])
    big = choose(RunConfig(), _costs(n_train=67349), 3600)
    assert big.settings["search_max_examples"] == ladder[big.rung]["search_max_examples"]


def test_explicit_knobs_are_kept_even_at_their_default_values():
    plan = choose(RunConfig(), _costs(), 3600, keep={"augment", "task"})  # --augment 1 (the default) given
    assert plan.settings["augment"] == RunConfig().augment


def _tiny_search(tmp_path, **settings):
    """A 64-example synthetic task whose teacher and probes are the gold labels, and a supernet for ``settings``."""
    from bertnas.adabert.objective import Targets
    from bertnas.adabert.searcher import build_supernet
    from bertnas.data.encode import encode
    from bertnas.data.synthetic import build_tokenizer, generate

    data = generate("single", n_train=64, n_dev=16, seed=0)
    tok = build_tokenizer(tmp_path / "vocab")
    train, dev = encode(tok, data.train, 32), encode(tok, data.dev, 32)
    gold = torch.nn.functional.one_hot(train.labels, 2).float() * 6 - 3
    targets = Targets(gold, gold[None].repeat(3, 1, 1), torch.device("cpu"))
    cfg = RunConfig(hidden_size=16, k_max=2, search_batch_size=16, seed=0, bn_recalibration=0, **settings).validate()
    g = torch.Generator().manual_seed(1)
    net = build_supernet(cfg, data.spec, torch.randn(len(tok), 8, generator=g), torch.randn(64, 8, generator=g),
                         tok.sep_token_id)
    return cfg, data.spec, train, dev, targets, net


def test_a_deadline_ends_training_early_and_keeps_the_best(tmp_path):
    """Past the deadline, further training still runs its first epoch in full (a model that never trained is no
    result), then starts no other; the cut is recorded."""
    from bertnas.adabert.retrain import retrain
    from bertnas.adabert.searcher import finish_search, search
    from bertnas.training.loop import deadline_cuts, past_deadline, stop_at

    cfg, spec, train, dev, targets, net = _tiny_search(tmp_path, retrain_batch_size=16, search_epochs=1,
                                                       search_warmup_epochs=0, retrain_epochs=4)
    arch, heads, history = search(cfg, spec, train, dev, targets, net, torch.device("cpu"))
    result = finish_search(cfg, spec, net, arch, heads, history, 0, None)
    with stop_at(time.monotonic() - 1):
        assert past_deadline()
        _, best, history = retrain(cfg, spec, result.student, result.heads, train, dev, targets,
                                   torch.device("cpu"))
        assert deadline_cuts() == ["retrain after epoch 1 of 4"]
    assert not past_deadline() and deadline_cuts() == []  # the limit ends with the block
    assert [h["epoch"] for h in history] == [0, 1]  # the first epoch in full (4 steps), no other
    with stop_at(None):
        _, _, full = retrain(cfg, spec, result.student, result.heads, train, dev, targets, torch.device("cpu"))
    assert [h["epoch"] for h in full] == [0, 1, 2, 3, 4]


def test_a_pass_stops_mid_epoch_after_the_deadline():
    from bertnas.data.encode import encode
    from bertnas.data.synthetic import build_tokenizer, generate
    from bertnas.training.loop import stop_at, train_pass
    from bertnas.training.losses import LossParts

    data = generate("single", n_train=64, n_dev=16, seed=0)
    import tempfile
    from pathlib import Path

    tok = build_tokenizer(Path(tempfile.mkdtemp()))
    train = encode(tok, data.train, 32)
    steps = []

    def step(i, batch):
        steps.append(i)
        return LossParts(total=torch.tensor(1.0), ce=1.0, kd=0.0, efficiency=0.0)

    with stop_at(time.monotonic() + 3600):
        train_pass(train, 8, torch.Generator().manual_seed(0), torch.device("cpu"), step, "t")
    assert len(steps) == 8
    steps.clear()
    with stop_at(time.monotonic() - 1):
        means = train_pass(train, 8, torch.Generator().manual_seed(0), torch.device("cpu"), step, "t")
    assert steps == [0] and means["loss"] == 1.0


def _run(*args):
    return subprocess.run([sys.executable, "-m", "bertnas.cli", "run", *args], capture_output=True, text=True,
                          timeout=900)


def test_a_budgeted_run_plans_logs_applies_and_resumes(tmp_path, tiny_teacher, synthetic_files):
    data = synthetic_files["single"]
    out = tmp_path / "run"
    common = ["--teacher", str(tiny_teacher), "--task", "synthetic-single", "--train-file", str(data / "train.tsv"),
              "--dev-file", str(data / "dev.tsv"), "--out", str(out), "--time-budget", "20m", *TINY]
    dry = _run(*common, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "plan: time budget 20m00s: --augment" in dry.stdout and not out.exists()
    proc = _run(*common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "time budget 20m00s: --augment" in proc.stderr and "predicted probe" in proc.stderr
    plan = json.loads((out / "plan.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert results["plan"]["settings"] == plan["settings"] and results["plan"]["within_budget"] is True
    assert set(results["plan"]["stages_s"]) == {"probe", "search", "retrain", "evaluate"}
    assert plan["spent_s"] >= sum(plan["stages_s"].values())
    saved = json.loads((out / "config.json").read_text())
    for knob, value in plan["settings"].items():
        assert saved[knob] == value  # the run directory holds the knobs the plan chose
    assert plan["rung"] == 0  # tiny data: the top rung fits 20 minutes
    again = _run(*common)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming the saved plan" in again.stderr and "already done for these settings" in again.stderr
    assert json.loads((out / "plan.json").read_text())["spent_s"] == plan["spent_s"]  # nothing trained: not charged
    # a knob given on the command line is kept, even at its default value
    default = str(RunConfig().augment)
    kept = _run(*common, "--dry-run", "--augment", default)
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert f"plan: time budget 20m00s: --augment {default}," in kept.stdout


def test_a_budget_too_short_is_one_line_and_writes_nothing(tmp_path, tiny_teacher, synthetic_files):
    data = synthetic_files["single"]
    out = tmp_path / "run"
    proc = _run("--teacher", str(tiny_teacher), "--task", "synthetic-single", "--train-file", str(data / "train.tsv"),
                "--dev-file", str(data / "dev.tsv"), "--out", str(out), "--time-budget", "1s", *TINY)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("bertnas: error: --time-budget 1s is too short")
    assert "Traceback" not in proc.stderr and not (out / "plan.json").exists()


def test_a_deadline_never_skips_the_searchs_architecture_epoch(tmp_path):
    """Past the deadline, a search still runs its warm-up and one architecture epoch (an architecture that never
    learned is an arbitrary one), then stops."""
    from bertnas.adabert.searcher import search
    from bertnas.training.loop import deadline_cuts, stop_at

    cfg, spec, train, dev, targets, net = _tiny_search(tmp_path, search_epochs=4, search_warmup_epochs=1)
    with stop_at(time.monotonic() - 1):
        _, _, history = search(cfg, spec, train, dev, targets, net, torch.device("cpu"))
        assert deadline_cuts() == ["search after epoch 2 of 4"]
    assert len(history) == 2 and history[1]["arch_updates"] and not history[0]["arch_updates"]
