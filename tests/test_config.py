"""Config validation, files and precedence."""
from __future__ import annotations

import json
import re

import pytest

from bertnas.config import RunConfig, load_config_file
from bertnas.errors import BertnasError


@pytest.mark.parametrize("field,value,message", [
    ("gamma", 1.5, "gamma=1.5: must be in [0, 1]"),
    ("beta", -1.0, "beta=-1.0: must be in [0, 10000]"),
    ("k_max", 0, "k_max=0: must be >= 1"),
    ("search_epochs", 0, "search_epochs=0"),
    ("tau_min", 2.0, "must not exceed tau_max"),
    ("min_parametric", 3, "must be 0, 1 or 2"),
    ("search_lr", 0.0, "must be > 0"),
    ("arch_lr", 1e39, "arch_lr=1e+39: must be > 0 and at most 10; the default is 0.003 (flag --arch-lr)"),
    ("probe_lr", 11.0, "at most 10"),
    ("beta", 1e39, "beta=1e+39: must be in [0, 10000]"),
    ("weight_decay", 1e30, "weight_decay=1e+30: must be in [0, 10]"),
    ("temperature", 1e39, "at most 100"),
    ("tau_max", 1e300, "tau_max=1e+300: must be > 0 and at most 100"),
    ("tau_decay", 1e39, "tau_decay=1e+39: must be in [0, 100]"),
    ("dropout", 1e39, "dropout=1e+39: must be in [0, 1]"),
    ("seed", -1, "seed=-1: must be in [0, 4294967295]"),
    ("seed", 2**32, "numpy's seed range"),
    ("search_epochs", 10**40, "must be at most 2147483647 (flag --search-epochs)"),
    ("hidden_size", 10**6, "hidden_size=1000000: must be <= 4096"),
    ("latency_threads", 100000, "must be <= 1024 threads"),
    ("max_train_examples", -10**40, "max_train_examples=-1" + "0" * 40 + ": must be >= 1"),  # its own lower bound
    ("search_warmup_epochs", -1, "search_warmup_epochs=-1: must be >= 0 (flag --search-warmup-epochs)"),
])
def test_invalid_values_name_the_field(field, value, message):
    with pytest.raises(BertnasError, match=re.escape(message)):
        RunConfig(**{field: value}).validate()


def test_bounds_accept_their_edges_and_the_large_values_tests_use():
    """The bounds refuse nonsense only: every edge value is accepted, and so is each big value the suite uses
    (beta 100 forces K = 1 in test_search_depth, beta 50 with a tight budget in test_latency_efficiency)."""
    RunConfig(probe_lr=10.0, search_lr=10.0, arch_lr=10.0, retrain_lr=10.0, beta=1e4, weight_decay=10.0,
              tau_max=100.0, tau_min=100.0, temperature=100.0, tau_decay=100.0, seed=2**32 - 1,
              max_train_examples=2**31 - 1, hidden_size=4096, max_seq_len=4096, eval_seq_len=4096,
              latency_threads=1024, search_warmup_epochs=0).validate()
    RunConfig(efficiency="latency", latency_budget_ms=1e6, latency_table_batch=4096, latency_table_threads=1024,
              latency_table_seq_len=4096).validate()
    for beta in (0.0, 50.0, 100.0):
        RunConfig(beta=beta).validate()


def test_defaults_are_the_papers():
    c = RunConfig().validate()
    assert (c.gamma, c.beta, c.temperature, c.k_max, c.hidden_size, c.tau_max, c.tau_min) == (0.8, 4.0, 1.0, 8, 128, 1.0, 0.2)


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(BertnasError, match="did you mean 'search_epochs'"):
        RunConfig().update({"search_epoch": 3})


def test_types_are_checked_and_coerced():
    c = RunConfig().update({"search_epochs": "4", "sampled_only": "false", "labels": ["neg", "pos"]})
    assert c.search_epochs == 4 and c.sampled_only is False and c.labels == "neg,pos"
    with pytest.raises(BertnasError, match="must be an integer"):
        RunConfig().update({"k_max": 2.5})
    with pytest.raises(BertnasError, match="must be true/false"):
        RunConfig().update({"amp": "maybe"})


def test_yaml_and_json_files(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("search-epochs: 2\ngamma: 0.5\n")
    assert RunConfig().update(load_config_file(y)).search_epochs == 2
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"beta": 1.0}))
    assert RunConfig().update(load_config_file(j)).beta == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(BertnasError, match="must hold a mapping"):
        load_config_file(bad)
    with pytest.raises(BertnasError, match="not found"):
        load_config_file(tmp_path / "missing.yaml")


def test_every_float_setting_is_bounded_below_float32_max():
    """1e39 is finite in Python but inf in float32 (torch): no float setting may pass validation with it."""
    from dataclasses import fields

    for f in fields(RunConfig):
        if isinstance(f.default, float) or f.name in ("tau_decay", "latency_budget_ms"):
            values = {f.name: 1e39, **({"efficiency": "latency"} if f.name == "latency_budget_ms" else {})}
            with pytest.raises(BertnasError, match=f"{f.name}=1e\\+39"):
                RunConfig(**values).validate()


def test_config_file_keys_are_checked(tmp_path):
    c = tmp_path / "c.yaml"
    c.write_text("serch_epochs: 2\nsearch-lr: 0.01\nzzz: 1\n")
    with pytest.raises(BertnasError) as err:
        load_config_file(c)
    message = str(err.value)
    assert "\n" not in message and "'serch_epochs' (close matches: search_epochs" in message and "'zzz'" in message
    assert "search-lr" not in message  # a known key, spelled with -
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"1": 2}))
    with pytest.raises(BertnasError, match="unknown setting '1'"):
        load_config_file(j)
    y = tmp_path / "k.yaml"
    y.write_text("1: 2\n")
    with pytest.raises(BertnasError, match="setting names must be text"):
        load_config_file(y)
    assert load_config_file(c, known=["serch_epochs", "search_lr", "zzz"]) == {"serch_epochs": 2, "search-lr": 0.01, "zzz": 1}


def test_config_file_read_errors_are_one_line(tmp_path, monkeypatch):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("labels: caf\xe9\n".encode("latin-1"))
    with pytest.raises(BertnasError, match="not UTF-8 text .byte 11.: save it as UTF-8"):
        load_config_file(latin)
    locked = tmp_path / "locked.json"
    locked.write_text("{}")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(locked), "read_text", denied)
    with pytest.raises(BertnasError, match="cannot be read .Permission denied.: check its permissions"):
        load_config_file(locked)


def test_saved_config_round_trips(tmp_path):
    c = RunConfig(task="sst2", teacher="t", search_epochs=5)
    c.save(tmp_path / "config.json")
    assert RunConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == c
