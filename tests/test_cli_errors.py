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


def test_unknown_task_with_a_data_dir(files, tiny_teacher):
    """A name that is no GLUE task with --data-dir (a typo, or the user's own data) is one line naming the GLUE
    tasks, the closest name and --train-file/--dev-file, not a silent run of the folder as a custom task."""
    data, tmp = files
    proc = bertnas("run", "--teacher", str(tiny_teacher), "--task", "nosuchtask", "--data-dir", str(data),
                   "--out", str(tmp / "out"), "--device", "cpu")
    assert_clean_error(proc, "unknown task 'nosuchtask'", "sst2, mrpc", "--train-file", "--dev-file")
    assert not (tmp / "out").exists()
    proc = bertnas("probe", "--teacher", str(tiny_teacher), "--task", "mrcp", "--data-dir", str(data),
                   "--out", str(tmp / "out"), "--device", "cpu")
    assert_clean_error(proc, "did you mean 'mrpc'?", f"--train-file {data / 'train.tsv'}")


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


# ------------------------------------------------------------------ files, checkpoints, run directories, settings
def _probed(tmp_path, tiny_teacher, data) -> Path:
    out = tmp_path / "probed"
    proc = _run(tiny_teacher, data / "train.tsv", data / "dev.tsv", out, "--max-seq-len", "32", "--probe-epochs", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_error_table(tmp_path, tiny_teacher, synthetic_files):
    """One line, exit 2, no traceback, and nothing written or lost, for each class of bad input."""
    data = synthetic_files["single"]
    train, dev = data / "train.tsv", data / "dev.tsv"
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("sentence\tlabel\ncaf\xe9 good\t1\nbad\t0\n".encode("latin-1"))
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    broken = tmp_path / "broken_teacher"
    broken.mkdir()
    for f in tiny_teacher.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    corrupt_run = tmp_path / "corrupt_run"
    corrupt_run.mkdir()
    (corrupt_run / "stages.json").write_text("{not json")
    cases = {
        "non-UTF-8 data": (_run(tiny_teacher, latin, latin, tmp_path / "o1"), ["not UTF-8", "iconv"], tmp_path / "o1"),
        "damaged teacher weights": (_run(broken, train, dev, tmp_path / "o2"), ["cannot load teacher weights"],
                                    tmp_path / "o2"),
        "--out is a file": (_run(tiny_teacher, train, dev, a_file), ["is an existing file"], None),
        "cache dir cannot be created": (_run(tiny_teacher, train, dev, tmp_path / "o3", "--cache-dir",
                                             str(a_file / "cache")), ["cache directory", "--cache-dir"], tmp_path / "o3"),
        "beta nan": (_run(tiny_teacher, train, dev, tmp_path / "o4", "--beta", "nan"), ["beta=nan", "finite"],
                     tmp_path / "o4"),
        "teacher dtype": (bertnas("probe", "--out", str(tmp_path / "o5"), "--teacher-dtype", "fp16"),
                          ["invalid choice"], tmp_path / "o5"),
        "heads 0": (bertnas("teacher", "finetune", "--from-scratch", "--tokenizer", str(tiny_teacher), "--heads", "0",
                            "--task", "t", "--train-file", str(train), "--dev-file", str(dev), "--out",
                            str(tmp_path / "o6")), ["--heads must be >= 1"], tmp_path / "o6"),
        "corrupt stage file": (bertnas("run", "--teacher", str(tiny_teacher), "--task", "t", "--train-file", str(train),
                                       "--dev-file", str(dev), "--out", str(corrupt_run)),
                               ["stages.json", "not valid JSON"], None),
    }
    for name, (proc, fragments, must_not_exist) in cases.items():
        if name == "teacher dtype":  # argparse's own usage error: exit 2, one line, no traceback
            assert proc.returncode == 2 and "Traceback" not in proc.stderr and "invalid choice" in proc.stderr, name
        else:
            assert_clean_error(proc, *fragments)
        if must_not_exist is not None:
            assert not must_not_exist.exists(), name
    assert a_file.read_text() == "keep me"
    assert (corrupt_run / "stages.json").read_text() == "{not json" and len(list(corrupt_run.iterdir())) == 1


def test_damaged_stage_outputs_and_label_names(tmp_path, tiny_teacher, synthetic_files):
    data = synthetic_files["single"]
    out = _probed(tmp_path, tiny_teacher, data)
    probes = out / "probes" / "probes.safetensors"
    probes.write_bytes(b"garbage")
    assert_clean_error(bertnas("search", "--out", str(out)), "probes.safetensors is damaged", "bertnas probe")
    assert not (out / "search").exists()
    # a teacher whose label names are not the task's: an error naming the override, then the override works
    from transformers import AutoConfig

    named = tmp_path / "named"
    named.mkdir()
    for f in tiny_teacher.iterdir():
        (named / f.name).write_bytes(f.read_bytes())
    config = AutoConfig.from_pretrained(named)
    config.id2label, config.label2id = {0: "bad", 1: "good"}, {"bad": 0, "good": 1}
    config.save_pretrained(named)
    args = (named, data / "train.tsv", data / "dev.tsv", tmp_path / "o", "--max-seq-len", "32", "--probe-epochs", "1")
    assert_clean_error(_run(*args), "--assume-label-order", "'bad', 'good'")
    assert not (tmp_path / "o").exists()
    proc = _run(*args, "--assume-label-order")
    assert proc.returncode == 0, proc.stderr[-1500:]


def test_numbers_beyond_float32_and_config_file_keys(tmp_path, tiny_teacher, synthetic_files, capsys):
    """Finite settings too large for float32 (or numpy's seed, or an int) and unknown keys in a --config file:
    one line naming the setting, its flag and the fix, exit 2, no traceback, nothing written. Two cases run as
    real subprocesses; the rest call the CLI's main() in this process (the same code, without ~10 s of imports
    each)."""
    from bertnas.cli import main

    data = synthetic_files["single"]
    train, dev = data / "train.tsv", data / "dev.tsv"
    huge = tmp_path / "huge.yaml"
    huge.write_text("beta: 1.0e+39\n")
    typos = tmp_path / "typos.yaml"
    typos.write_text("serch_epochs: 2\nbta: 1\n")
    cases = {  # name: (extra arguments, fragments of the error line, as a subprocess)
        "--arch-lr 1e39": (["--arch-lr", "1e39"], ["arch_lr=1e+39", "at most 10", "flag --arch-lr"], True),
        "unknown config keys": (["--config", str(typos)], ["'serch_epochs' (close matches: search_epochs", "'bta'",
                                                           str(typos)], True),
        "--search-lr 3.5e38": (["--search-lr", "3.5e38"], ["search_lr=3.5e+38", "flag --search-lr"], False),
        "--seed -1": (["--seed", "-1"], ["seed=-1", "[0, 4294967295]", "flag --seed"], False),
        "--search-epochs 1e40 as an int": (["--search-epochs", str(10**40)], ["at most 2147483647", "--search-epochs"],
                                           False),
        "beta 1e39 in a config file": (["--config", str(huge)], ["beta=1e+39", "[0, 10000]", "flag --beta"], False),
    }
    for i, (name, (extra, fragments, subprocess_run)) in enumerate(cases.items()):
        out, cache = tmp_path / f"o{i}", tmp_path / f"cache{i}"
        argv = ["probe", "--teacher", str(tiny_teacher), "--task", "custom", "--train-file", str(train),
                "--dev-file", str(dev), "--out", str(out), "--device", "cpu", "--cache-dir", str(cache), *extra]
        if subprocess_run:
            proc = bertnas(*argv)
        else:
            capsys.readouterr()
            code = main(argv)
            captured = capsys.readouterr()
            proc = subprocess.CompletedProcess(argv, code, captured.out, captured.err)
        assert_clean_error(proc, *fragments)
        assert not out.exists() and not cache.exists(), name


def test_first_line_of_a_library_error():
    """Errors quoting a library's message keep one line, and an empty message gives the type, not an IndexError."""
    from bertnas.errors import first_line

    assert first_line(ValueError("bad header\n  at byte 3")) == "bad header"
    assert first_line(OSError("x" * 300), 100) == "x" * 100
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(KeyError()) == "KeyError"
