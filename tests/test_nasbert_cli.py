"""``bertnas nasbert ...`` end to end as subprocesses on tiny data, and its one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

from bertnas.cli import main
from conftest import make_teacher


def bertnas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertnas.cli", "nasbert", *args], capture_output=True, text=True, timeout=300)


def test_cli_end_to_end(tmp_path, synthetic_files):
    teacher = make_teacher(tmp_path / "teacher")
    data, out = synthetic_files["single"], tmp_path / "run"
    config = tmp_path / "supernet.yaml"  # settings from a file, as AdaBERT's --config; the flags win over it
    config.write_text("bins: 2\nsamples-per-bin: 6\nkeep_per_bin: 2\nscore_batches: 1\nepochs: 5\n")
    proc = bertnas("supernet", "--teacher", str(teacher), "--corpus", str(data), "--out", str(out), "--max-sentences", "100",
                   "--heldout-sentences", "16", "--max-len", "24", "--num-blocks", "2", "--hidden-sizes", "16,32",
                   "--epochs", "2", "--config", str(config), "--threads", "1", "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "paths left per block" in proc.stdout
    saved = json.loads((out / "settings.json").read_text())
    assert (saved["epochs"], saved["bins"], saved["samples_per_bin"], saved["keep_per_bin"]) == (2, 2, 6, 2)
    proc = bertnas("latency", "--out", str(out), "--seq-len", "16", "--batch-sizes", "1", "--embedding-sizes", "16,32",
                   "--repeats", "2", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = bertnas("select", "--out", str(out), "--max-params", "60K,90K", "--embedding-sizes", "16,32", "--seq-len", "16",
                   "--top-t", "3", "--no-measure")
    assert proc.returncode == 0, proc.stderr[-2000:]
    models = json.loads((out / "selection.json").read_text())["models"]
    assert [m["name"] for m in models] == ["60K", "90K"] and all(m["params"] <= m["max_params"] for m in models)
    proc = bertnas("finetune", "--model", str(out / "models" / "60K"), "--teacher", str(teacher), "--task", "synthetic",
                   "--data-dir", str(data), "--out", str(tmp_path / "ft"), "--epochs", "1", "--max-seq-len", "24",
                   "--no-measure", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert results["dev"]["accuracy"] >= 0 and (tmp_path / "ft" / "model" / "config.json").is_file()
    proc = bertnas("pretrain", "--out", str(out), "--model", str(out / "models" / "60K"), "--save",
                   str(tmp_path / "pretrained"), "--epochs", "1", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = bertnas("baseline", "--out", str(out), "--no-measure")
    assert proc.returncode == 0, proc.stderr[-2000:]
    baselines = json.loads((out / "baselines.json").read_text())["models"]
    # two per selected model, trained by the supernet's loop for its epochs, latency-matched from the table
    assert [b["name"] for b in baselines] == ["bert-60K-params", "bert-60K-latency", "bert-90K-params", "bert-90K-latency"]
    assert all(b["epochs"] == 2 and b["exact_loss"] > 0 for b in baselines)
    # every model directory NAS-BERT writes carries its tokenizer and loads through the Auto classes
    from test_pipeline import assert_model_dir_loads

    written = [out / "models" / n for n in ("60K", "90K", "bert-60K-params", "bert-90K-latency")] + [tmp_path / "pretrained",
                                                                                   tmp_path / "ft" / "model"]
    for directory in written:
        assert_model_dir_loads(directory)


def assert_clean_error(capsys, argv: list[str], *fragments: str) -> None:
    """The CLI's own error path in-process (the subprocess form is covered by test_cli_errors.py)."""
    code = main(["nasbert", *argv])
    err = capsys.readouterr().err
    assert code == 2, err[-1500:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("bertnas: error:")]
    assert len(lines) == 1, err[-1500:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_corpus(tmp_path, tiny_teacher, capsys):
    assert_clean_error(capsys, ["supernet", "--teacher", str(tiny_teacher), "--corpus", str(tmp_path / "nope"), "--out",
                                str(tmp_path / "o")], "corpus", "not found")
    assert not (tmp_path / "o").exists()


def test_empty_corpus(tmp_path, tiny_teacher, capsys):
    (tmp_path / "empty.txt").write_text("\n   \n")
    assert_clean_error(capsys, ["supernet", "--teacher", str(tiny_teacher), "--corpus", str(tmp_path / "empty.txt"),
                                "--out", str(tmp_path / "o")], "empty")


def test_bad_max_params(tmp_path, capsys):
    assert_clean_error(capsys, ["select", "--out", str(tmp_path), "--max-params", "lots"], "parameter budget", "lots")


def test_select_before_supernet(tmp_path, capsys):
    assert_clean_error(capsys, ["select", "--out", str(tmp_path), "--max-params", "5M"], "not a NAS-BERT run directory")


def test_bad_hidden_sizes(tmp_path, tiny_teacher, synthetic_files, capsys):
    assert_clean_error(capsys, ["supernet", "--teacher", str(tiny_teacher), "--corpus", str(synthetic_files["single"]),
                                "--out", str(tmp_path / "o"), "--hidden-sizes", "16,abc"], "--hidden-sizes")


def test_settings_errors_are_the_shared_one_line(tmp_path, tiny_teacher, synthetic_files, capsys):
    """NAS-BERT's settings are checked like AdaBERT's: the value, the rule and the flag; a config file's unknown
    key gets its close match."""
    base = ["supernet", "--teacher", str(tiny_teacher), "--corpus", str(synthetic_files["single"]), "--out",
            str(tmp_path / "o")]
    assert_clean_error(capsys, [*base, "--lr", "0"], "invalid config value lr=0.0: must be > 0", "(flag --lr)")
    assert_clean_error(capsys, [*base, "--dropout", "nan"], "invalid config value dropout=nan: must be a finite number")
    config = tmp_path / "bad.yaml"
    config.write_text("hiden_sizes: 16\n")
    assert_clean_error(capsys, [*base, "--config", str(config)], "unknown setting 'hiden_sizes'", "hidden_sizes")
    config.write_text("lr: 0\n")  # the flag's value wins over the file's
    assert_clean_error(capsys, [*base, "--config", str(config), "--lr", "0.001", "--epochs", "0"],
                       "invalid config value epochs=0: must be >= 1")
    assert not (tmp_path / "o").exists()
