"""rundir's NAS-BERT fine-tuning run directory: what `nasbert finetune` writes is what `export` reads back, through one
pair of functions in the shared stage (so export imports no method)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertnas.errors import BertnasError
from bertnas.rundir import data_source, is_finetune_run, read_finetune_run, save_finetune_run


class _Saves:
    """Stands in for a model or tokenizer: ``save_pretrained`` writes one file."""

    def __init__(self, name: str) -> None:
        self.name = name

    def save_pretrained(self, directory) -> None:
        (Path(directory) / self.name).write_text("{}")


def _results(tmp_path: Path) -> dict:
    return {"task": "keyword", "model": "m", "teacher": "t", "teacher_dev": {"accuracy": 0.9}, "dev": {"accuracy": 0.8},
            "settings": {"max_seq_len": 24, "threads": 1}, "data": data_source("keyword", None, str(tmp_path / "a.tsv"),
                                                                                str(tmp_path / "b.tsv"))}


def test_written_and_read_back_the_same_way(tmp_path):
    out = tmp_path / "ft"
    results = _results(tmp_path)
    assert results["data"]["train_file"] == str((tmp_path / "a.tsv").resolve()) and results["data"]["data_dir"] is None
    save_finetune_run(out, _Saves("config.json"), _Saves("tokenizer_config.json"), results)
    assert is_finetune_run(out) and not is_finetune_run(tmp_path)
    run = read_finetune_run(out)
    assert run.results == json.loads((out / "results.json").read_text()) == results
    assert (run.model_dir / "config.json").is_file() and (run.model_dir / "tokenizer_config.json").is_file()
    assert run.settings["max_seq_len"] == 24 and f"--out {out}" in run.command()


def test_results_of_another_kind_or_age_are_one_line_errors(tmp_path):
    results = _results(tmp_path)
    for name, broken in (("stranger", {"accuracy": 0.9}),
                         ("no-settings", {k: v for k, v in results.items() if k != "settings"}),
                         ("no-data", {k: v for k, v in results.items() if k != "data"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(broken))
        with pytest.raises(BertnasError) as err:
            read_finetune_run(tmp_path / name)
        assert "\n" not in str(err.value)
        assert ("does not say where the task data is" if name == "no-data" else "not written by") in str(err.value)
