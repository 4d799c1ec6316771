"""A NaN or inf in a loss stops the stage with one line naming the stage, the epoch and batch, and the last good
checkpoint, which is left as it was (real tiny runs as subprocesses, the NaN forced by huge learning rates)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY = ["--augment", "0", "--max-seq-len", "32", "--hidden-size", "16", "--k-max", "2", "--probe-epochs", "1",
        "--search-batch-size", "32", "--retrain-batch-size", "32", "--eval-seq-len", "32", "--latency-repeats", "2",
        "--latency-threads", "1", "--device", "cpu"]


def bertnas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertnas.cli", *args], capture_output=True, text=True, timeout=600)


# The NaN is forced by a learning rate of 1e30, which the config refuses up front (learning rates are at most
# config.LR_MAX = 10); within that bound Adam moves a weight by about lr per step at most, so no loss of these
# few-step runs can become NaN. These runs lift the bound in the child process; the rest is the real CLI.
LIFTED_LR_BOUND = "import bertnas.config as c; c.LR_MAX = 1e38; from bertnas.cli import main; raise SystemExit(main())"


def bertnas_huge_lr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LIFTED_LR_BOUND, *args], capture_output=True, text=True, timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = next(l for l in proc.stderr.splitlines() if l.startswith("bertnas: error:"))
    for f in fragments:
        assert f in line, (f, line)
    return line


@pytest.fixture(scope="module")
def probed(tmp_path_factory, tiny_teacher, synthetic_files) -> Path:
    out = tmp_path_factory.mktemp("nan") / "run"
    data = synthetic_files["single"]
    proc = bertnas("probe", "--teacher", str(tiny_teacher), "--task", "t", "--train-file", str(data / "train.tsv"),
                   "--dev-file", str(data / "dev.tsv"), "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_nan_in_search_epoch_2_stops_and_keeps_epoch_1_checkpoint(probed):
    """Epoch 1 is a weight-only warm-up (finite); in epoch 2 the architecture step with lr 1e30 sends the
    architecture weights to inf, so the next sampled loss is NaN."""
    proc = bertnas_huge_lr("search", "--out", str(probed), "--search-epochs", "2", "--search-warmup-epochs", "1",
                           "--arch-lr", "1e30")
    ckpt = probed / "checkpoints" / "search.pt"
    assert_one_line_error(proc, "stage search stopped at epoch 2/2, batch ", "the loss is nan",
                          f"last good checkpoint {ckpt} (after epoch 1), left as it was", "learning rate")
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    for name in ("supernet", "arch", "heads"):
        for key, t in state[name].items():
            assert torch.isfinite(t).all(), (name, key)
    assert math.isfinite(state["history"][0]["loss"])
    assert not (probed / "search").exists()  # nothing of the failed stage written


def test_nan_in_retraining_stops_without_writing_the_model(probed, tmp_path):
    proc = bertnas("search", "--out", str(probed), "--search-epochs", "1", "--retrain-epochs", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    student = (probed / "search" / "student" / "model.safetensors").read_bytes()
    proc = bertnas_huge_lr("retrain", "--out", str(probed), "--retrain-epochs", "2", "--retrain-lr", "1e30")
    assert_one_line_error(proc, "stage retrain stopped at epoch 1/2", "nan",
                          "no checkpoint of this stage yet")
    assert not (probed / "model").exists() and not (probed / "checkpoints" / "retrain.pt").exists()
    assert (probed / "search" / "student" / "model.safetensors").read_bytes() == student


def test_nasbert_supernet_stops_on_a_nonfinite_loss(tmp_path, synthetic_files):
    """The supernet runs the shared loop: a loss gone NaN/inf stops it with the same one line."""
    from bertnas.data.corpus import read_corpus
    from bertnas.errors import BertnasError
    from bertnas.nasbert import pipeline
    from bertnas.nasbert.config import SupernetSettings
    from conftest import make_teacher

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(read_corpus(str(synthetic_files["single"]))[:60]) + "\n")
    from transformers import AutoModel

    teacher = make_teacher(tmp_path / "teacher")
    model = AutoModel.from_pretrained(teacher)  # a teacher whose last layer outputs NaN: the states to learn are NaN
    model.encoder.layer[-1].output.LayerNorm.weight.data[:] = float("nan")
    model.save_pretrained(teacher)
    settings = SupernetSettings(teacher=str(teacher), corpus=str(corpus), max_sentences=50, heldout_sentences=10,
                                max_len=24, num_blocks=2, layers_per_block=2, hidden_sizes="16", epochs=1,
                                warmup_epochs=1, bins=1, samples_per_bin=2, keep_per_bin=2, score_batches=1, batch_size=8,
                                threads=1)
    with pytest.raises(BertnasError, match=r"stage nasbert supernet stopped at epoch 1/1, batch \d+/\d+: the loss is "
                                           r"(nan|inf) .*no checkpoint of this stage yet"):
        pipeline.supernet(settings, tmp_path / "nb")
    assert not (tmp_path / "nb" / "supernet" / "checkpoint.pt").exists()
