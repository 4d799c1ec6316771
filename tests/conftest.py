"""Shared fixtures: a tiny BERT teacher saved with save_pretrained, and synthetic task files."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
# Keep the knowledge cache out of the user's home directory, for this process and the CLIs it starts.
os.environ["BERTNAS_CACHE_DIR"] = tempfile.mkdtemp(prefix="bertnas-test-cache-")


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory) -> dict[str, Path]:
    """Small single-sentence and pair tasks written as TSV files."""
    from bertnas.data.synthetic import generate, write_task

    root = tmp_path_factory.mktemp("synthetic")
    out = {}
    for variant in ("single", "pair"):
        data = generate(variant, n_train=160, n_dev=48, seed=1)
        out[variant] = write_task(data, root / variant)
    return out


def make_teacher(directory: Path, num_labels: int = 2, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT classifier with the synthetic vocabulary, saved to ``directory``."""
    from transformers import BertConfig, BertForSequenceClassification

    from bertnas.data.synthetic import build_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(directory)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=160, num_labels=num_labels)
    model = BertForSequenceClassification(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture
def one_thread():
    """Small tensors: one thread is faster than two fighting over a shared CPU (``pytestmark`` in a test file)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def one_line_error(capsys, argv: list[str]) -> str:
    """Run the CLI in-process on ``argv``: exit 2 and one line ``bertnas: error: ...``, no traceback; the line."""
    from bertnas.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("bertnas: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def check_int8_export(run: Path, report: dict) -> Path:
    """What every int8 export promises: a smaller file, its size, agreement and metric change in export.json,
    a latency; returns the int8 model's path."""
    fp32, int8 = run / "export" / "model.onnx", run / "export" / "model.int8.onnx"
    assert int8.is_file() and int8.stat().st_size < fp32.stat().st_size
    q = report["int8"]
    assert q["bytes"] == int8.stat().st_size and 0.0 <= q["prediction_agreement"] <= 1.0
    assert q["metric_change"] == pytest.approx(report["dev"]["int8"]["accuracy"] - report["dev"]["pytorch"]["accuracy"])
    assert report["latency"]["int8"]["latency_ms_b1"] > 0
    return int8


def keyword_task(root: Path, n_train: int = 160, n_dev: int = 48, flip_every: int | None = 5) -> tuple[Path, Path]:
    """Files of a custom task a tiny model learns in a few seconds (label 1: a positive adjective among filler
    words), with every ``flip_every``-th dev label flipped (5: a model that learned it scores about 0.8 on these
    dev rows only, so a dev metric that matches a run's says the same dev file was read; 1: every dev label
    inverted, so dev ranks what was learned backwards)."""
    import random

    from bertnas.data.synthetic import NEGATIVE, POSITIVE, SUBJECTS, VERBS

    rng = random.Random(0)
    filler = [w for group in SUBJECTS for w in group] + VERBS

    def write(path: Path, n: int, flip: int | None) -> Path:
        rows = ["sentence\tlabel"]
        for i in range(n):
            label = i % 2
            words = rng.sample(filler, rng.randint(2, 6)) + [rng.choice(rng.choice(POSITIVE if label else NEGATIVE))]
            rng.shuffle(words)
            shown = 1 - label if flip and i % flip == 0 else label
            rows.append(f"{' '.join(words)}\t{shown}")
        path.write_text("\n".join(rows) + "\n")
        return path

    root.mkdir(parents=True, exist_ok=True)
    return write(root / "train.tsv", n_train, None), write(root / "dev.tsv", n_dev, flip_every)


@contextlib.contextmanager
def stopped_after_first_checkpoint(monkeypatch):
    """Inside the block, a stage stops (KeyboardInterrupt, as Ctrl-C) right after writing its first epoch
    checkpoint: a run killed there, to test that running it again continues exactly."""
    from bertnas.training.loop import Resumable

    save = Resumable.save

    def save_then_stop(self, **extra):
        save(self, **extra)
        raise KeyboardInterrupt

    monkeypatch.setattr(Resumable, "save", save_then_stop)
    try:
        yield
    finally:
        monkeypatch.setattr(Resumable, "save", save)
