"""Every user mistake ends with one line naming the problem, exit code 2, no traceback, nothing written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def bertnas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertnas.cli", *args], capture_output=True, text=True, timeout=300)


def assert_clean_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith("bertnas: error:")]
    assert len(lines) == 1, proc.stderr[-1500:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture()
def files(tmp_path, synthetic_files):
    return synthetic_files["single"], tmp_path


def _run(teacher, train, dev, out, *extra):
    return bertnas("probe", "--teacher", str(teacher), "--task", "custom", "--train-file", str(train),
                   "--dev-file", str(dev), "--out", str(out), "--device", "cpu", *extra)


def test_missing_teacher_directory(files):
    data, tmp = files
    proc = _run(tmp / "nope", data / "train.tsv", data / "dev.tsv", tmp / "out")
    assert_clean_error(proc, "teacher directory", "not found")
    assert not (tmp / "out").exists()


def test_teacher_that_is_not_a_sequence_classifier(files, tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    from bertnas.data.synthetic import build_tokenizer

    data, tmp = files
    tok = build_tokenizer(tmp_path / "mlm")
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32)).save_pretrained(tmp_path / "mlm")
    proc = _run(tmp_path / "mlm", data / "train.tsv", data / "dev.tsv", tmp / "out")
    assert_clean_error(proc, "BertForMaskedLM", "not a sequence classifier", "finetune")
    assert not (tmp / "out").exists()


def test_directory_without_config(files):
    data, tmp = files
    (tmp / "empty").mkdir()
    assert_clean_error(_run(tmp / "empty", data / "train.tsv", data / "dev.tsv", tmp / "out"), "no config.json")


def test_tokenizer_larger_than_teacher_vocab(files, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from bertnas.data.synthetic import build_tokenizer

    data, tmp = files
    tok = build_tokenizer(tmp_path / "small")
    BertForSequenceClassification(BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=32)).save_pretrained(tmp_path / "small")
    tok.save_pretrained(tmp_path / "small")
    proc = _run(tmp_path / "small", data / "train.tsv", data / "dev.tsv", tmp / "out")
    assert_clean_error(proc, "tokenizer", "does not belong to this teacher")


def test_teacher_with_wrong_number_of_labels(files, tmp_path):
    from conftest import make_teacher

    data, tmp = files
    teacher = make_teacher(tmp_path / "three", num_labels=3)
    assert_clean_error(_run(teacher, data / "train.tsv", data / "dev.tsv", tmp / "out"), "3 output(s)", "2 labels")


def test_wrong_column(files, tiny_teacher):
    data, tmp = files
    proc = _run(tiny_teacher, data / "train.tsv", data / "dev.tsv", tmp / "out", "--text-column", "review")
    assert_clean_error(proc, "review")
    assert not (tmp / "out").exists()


def test_unknown_label_in_dev(files, tiny_teacher):
    data, tmp = files
    dev = tmp / "dev.tsv"
    dev.write_text("sentence\tlabel\nthe movie was good\t7\n")
    assert_clean_error(_run(tiny_teacher, data / "train.tsv", dev, tmp / "out"), "'7'")


def test_empty_data(files, tiny_teacher):
    data, tmp = files
    empty = tmp / "empty.tsv"
    empty.write_text("sentence\tlabel\n")
    assert_clean_error(_run(tiny_teacher, empty, data / "dev.tsv", tmp / "out"), "empty.tsv")


def test_missing_data_file(files, tiny_teacher):
    data, tmp = files
    assert_clean_error(_run(tiny_teacher, tmp / "missing.tsv", data / "dev.tsv", tmp / "out"), "missing.tsv")


def test_missing_glue_dir(tmp_path, tiny_teacher):
    proc = bertnas("run", "--teacher", str(tiny_teacher), "--task", "sst2", "--data-dir", str(tmp_path / "SST-2"),
                   "--out", str(tmp_path / "out"))
    assert_clean_error(proc, "SST-2")


def test_invalid_config_value(files, tiny_teacher):
    data, tmp = files
    assert_clean_error(_run(tiny_teacher, data / "train.tsv", data / "dev.tsv", tmp / "out", "--gamma", "2"),
                       "gamma=2.0", "[0, 1]")


def test_bad_config_file_key(files, tiny_teacher):
    data, tmp = files
    cfg = tmp / "cfg.yaml"
    cfg.write_text("serch_epochs: 2\n")
    assert_clean_error(_run(tiny_teacher, data / "train.tsv", data / "dev.tsv", tmp / "out", "--config", str(cfg)),
                       "serch_epochs", "search_epochs")


def test_later_stage_without_a_run_directory(tmp_path):
    assert_clean_error(bertnas("search", "--out", str(tmp_path / "nothing")), "not a bertnas run directory")


def test_search_before_probe(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"task": "synthetic-single", "teacher": "x"}))
    assert_clean_error(bertnas("search", "--out", str(out)), "bertnas probe")


def test_missing_required_teacher(tmp_path):
    assert_clean_error(bertnas("run", "--task", "sst2", "--out", str(tmp_path / "o")), "--teacher")


def test_unknown_device(files, tiny_teacher):
    data, tmp = files
    assert_clean_error(_run(tiny_teacher, data / "train.tsv", data / "dev.tsv", tmp / "out", "--device", "tpu9"),
                       "device")


def test_max_seq_len_beyond_the_teachers_positions(files, tiny_teacher):
    data, tmp = files
    proc = _run(tiny_teacher, data / "train.tsv", data / "dev.tsv", tmp / "out", "--max-seq-len", "400")
    assert_clean_error(proc, "--max-seq-len 400", "160 positions")
    assert not (tmp / "out").exists()
