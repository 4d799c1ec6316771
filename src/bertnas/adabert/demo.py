"""The built-in demo: synthetic data -> a tiny teacher trained here -> the whole AdaBERT pipeline.

Nothing is downloaded: the synthetic language brings its own word-level vocabulary, and the teacher is a
small BERT trained from scratch on it (a stand-in for a user's fine-tuned BERT).
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..config import RunConfig
from ..data.synthetic import build_tokenizer, generate, write_task
from .pipeline import run
from ..teacher.finetune import finetune, new_bert
from ..utils import resolve_device, set_seed

logger = logging.getLogger("bertnas")

DEMO_OVERRIDES = {
    "max_seq_len": 48, "search_epochs": 4, "search_batch_size": 32, "retrain_epochs": 4,
    "probe_epochs": 10, "probe_lr": 1e-2, "latency_repeats": 10, "augment": 0,
}
"""Settings the demo uses on top of the defaults (small data: more probe epochs, a short search)."""


def demo(out: str | Path = "runs/demo", variant: str = "single", seed: int = 0, device: str = "auto",
         n_train: int = 2000, n_dev: int = 500, teacher_epochs: int = 8, overrides: dict | None = None) -> dict:
    """Run the full pipeline on the synthetic task; returns results.json's content."""
    out = Path(out)
    set_seed(seed)
    data = generate(variant, n_train=n_train, n_dev=n_dev, seed=seed)
    data_dir = write_task(data, out / "data")
    teacher_dir = out / "teacher"
    if not (teacher_dir / "config.json").is_file():
        logger.info("demo: training a small teacher BERT on %s (%d examples)", data.spec.name, len(data.train))
        tokenizer = build_tokenizer(out / "vocab")
        model = new_bert(tokenizer, data.spec.num_labels, layers=2, hidden=128, heads=2, max_positions=128)
        finetune(model, tokenizer, data, teacher_dir, epochs=teacher_epochs, lr=5e-4, batch_size=32,
                 max_seq_len=48, seed=seed, device=resolve_device(device))
    pair = data.spec.pair
    cfg = RunConfig(
        task=data.spec.name, train_file=str(data_dir / "train.tsv"), dev_file=str(data_dir / "dev.tsv"),
        text_column="sentence1" if pair else "sentence", text_pair_column="sentence2" if pair else None,
        teacher=str(teacher_dir), cache_dir=str(out / "cache"), seed=seed, device=device, eval_seq_len=128,
    ).update({**DEMO_OVERRIDES, **(overrides or {})}, "demo settings").validate()
    return run(cfg, out / "run")
