"""Config validation, files and precedence."""
from __future__ import annotations

import json

import pytest

from bertnas.config import RunConfig, load_config_file
from bertnas.errors import BertnasError


@pytest.mark.parametrize("field,value,message", [
    ("gamma", 1.5, "gamma=1.5: must be in [0, 1]"),
    ("beta", -1.0, "beta=-1.0: must be >= 0"),
    ("k_max", 0, "k_max=0: must be >= 1"),
    ("search_epochs", 0, "search_epochs=0"),
    ("tau_min", 2.0, "must not exceed tau_max"),
    ("min_parametric", 3, "must be 0, 1 or 2"),
    ("search_lr", 0.0, "must be > 0"),
])
def test_invalid_values_name_the_field(field, value, message):
    with pytest.raises(BertnasError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RunConfig(**{field: value}).validate()


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


def test_saved_config_round_trips(tmp_path):
    c = RunConfig(task="sst2", teacher="t", search_epochs=5)
    c.save(tmp_path / "config.json")
    assert RunConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == c
