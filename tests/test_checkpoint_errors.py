"""Resuming from a damaged or incompatible checkpoint says why: a damaged file is a warning naming the file, the
reason and that the stage starts over (and then it does); a readable checkpoint of the same settings that does
not fit the stage's modules (another version of bertnas) is a one-line error with the fix."""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from bertnas.adabert.searcher import search
from bertnas.errors import BertnasError
from conftest import make_teacher
from test_resume import _setup


def _search(tmp_path, ckpt, key="K", epochs=1, hidden=16):
    cfg, spec, train, dev, targets, net = _setup(tmp_path) if hidden == 16 else _setup_hidden(tmp_path, hidden)
    return search(cfg.update({"search_epochs": epochs}), spec, train, dev, targets, net, torch.device("cpu"), ckpt,
                  resume_key=key)


def _setup_hidden(tmp_path, hidden):
    from bertnas.adabert.searcher import build_supernet

    cfg, spec, train, dev, targets, _ = _setup(tmp_path)
    cfg = cfg.update({"hidden_size": hidden})
    words = torch.randn(200, 8)
    net = build_supernet(cfg, spec, words, torch.randn(64, 8), 3)
    return cfg, spec, train, dev, targets, net


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "not a dict"])
def test_damaged_search_checkpoint_warns_and_starts_over(tmp_path, caplog, damage):
    ckpt = tmp_path / "ckpt" / "search.pt"
    _search(tmp_path, ckpt, epochs=1)
    good = ckpt.read_bytes()
    if damage == "garbage":
        ckpt.write_bytes(b"garbage")
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "truncated":
        ckpt.write_bytes(good[: len(good) // 2])
    else:
        torch.save([1, 2, 3], ckpt)
    caplog.set_level(logging.INFO, logger="bertnas")
    _, _, history = _search(tmp_path, ckpt, epochs=2)
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "checkpoint" in r.getMessage())
    assert str(ckpt) in warning and "starting stage search over" in warning
    assert ("it is damaged" in warning) if damage != "not a dict" else ("not a bertnas checkpoint" in warning)
    assert "resuming" not in caplog.text
    assert len(history) == 2 and torch.load(ckpt, weights_only=True)["epoch"] == 2  # started over, then replaced


def test_checkpoint_of_other_settings_warns(tmp_path, caplog):
    ckpt = tmp_path / "ckpt" / "search.pt"
    _search(tmp_path, ckpt, key="A")
    caplog.set_level(logging.WARNING, logger="bertnas")
    _search(tmp_path, ckpt, key="B")
    assert f"not resuming from checkpoint {ckpt}: it was made with other settings" in caplog.text
    assert "starting stage search over" in caplog.text


def test_checkpoint_that_does_not_fit_the_stage_is_an_error_with_the_fix(tmp_path):
    """Same resume key, other shapes (as after an upgrade that changed a module): not a traceback, not a
    half-loaded model that trains on."""
    ckpt = tmp_path / "ckpt" / "search.pt"
    _search(tmp_path, ckpt, key="A", hidden=16)
    before = ckpt.read_bytes()
    with pytest.raises(BertnasError, match=r"checkpoint .*search\.pt does not fit stage search \(.*size mismatch.*"
                                           r"delete it, or pass --no-resume"):
        _search(tmp_path, ckpt, key="A", hidden=8)
    assert ckpt.read_bytes() == before  # left for the user to decide


def test_damaged_checkpoint_in_a_real_run_is_one_warning_line(tmp_path, tiny_teacher, synthetic_files):
    """Through the command line: the warning is printed, the search starts over and completes."""
    data = synthetic_files["single"]
    out = tmp_path / "run"
    common = ["--max-seq-len", "32", "--hidden-size", "16", "--k-max", "2", "--probe-epochs", "1",
              "--search-batch-size", "32", "--search-epochs", "1", "--device", "cpu"]
    proc = subprocess.run([sys.executable, "-m", "bertnas.cli", "probe", "--teacher", str(tiny_teacher), "--task", "t",
                           "--train-file", str(data / "train.tsv"), "--dev-file", str(data / "dev.tsv"), "--out",
                           str(out), *common], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = out / "checkpoints" / "search.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"\x00" * 100)
    proc = subprocess.run([sys.executable, "-m", "bertnas.cli", "search", "--out", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"WARNING cannot resume from checkpoint {ckpt}, it is damaged" in proc.stderr
    assert "starting stage search over" in proc.stderr
    assert (out / "search" / "genotype.json").is_file()


# ------------------------------------------------------------------ NAS-BERT's supernet checkpoint directory
@pytest.fixture(scope="module")
def nb_settings(tmp_path_factory, synthetic_files):
    from bertnas.data.corpus import read_corpus
    from bertnas.nasbert.config import SupernetSettings

    root = tmp_path_factory.mktemp("nb-ckpt")
    teacher = make_teacher(root / "teacher")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(read_corpus(str(synthetic_files["single"]))[:60]) + "\n")
    return SupernetSettings(teacher=str(teacher), corpus=str(corpus), max_sentences=50, heldout_sentences=10,
                            max_len=24, num_blocks=2, layers_per_block=2, hidden_sizes="16", epochs=1, warmup_epochs=1,
                            bins=2, samples_per_bin=2, keep_per_bin=2, score_batches=1, batch_size=16, threads=1)


def test_nasbert_damaged_checkpoint_warns_and_starts_over(nb_settings, tmp_path, caplog):
    from bertnas.nasbert import pipeline

    out = tmp_path / "nb"
    pipeline.supernet(nb_settings, out)
    ckpt = out / "supernet" / "checkpoint.pt"
    assert ckpt.is_file(), sorted(p.name for p in out.rglob("*"))
    good = ckpt.read_bytes()
    ckpt.write_bytes(b"cut")
    caplog.set_level(logging.INFO, logger="bertnas")
    summary = pipeline.supernet(nb_settings, out)
    assert f"cannot resume from checkpoint {ckpt}, it is damaged" in caplog.text
    assert "starting stage nasbert supernet over" in caplog.text and "resuming after epoch" not in caplog.text
    assert len(summary["epochs"]) == 1
    # readable, same settings, but weights of another supernet: the error with the fix
    ckpt.write_bytes(good)
    state = torch.load(ckpt, weights_only=True)
    state["supernet"] = {"not.a.weight": torch.zeros(2)}
    torch.save(state, ckpt)
    with pytest.raises(BertnasError, match=r"does not fit stage nasbert supernet .*delete it, or pass --no-resume"):
        pipeline.supernet(nb_settings, out)
