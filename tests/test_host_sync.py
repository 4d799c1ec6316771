"""Training steps of both methods read no Python number off a tensor (issue #21): on a GPU each such read waits
for the device (a host sync). Steps run here on CPU with every reading method of ``torch.Tensor`` counted inside
``training.loop.step_scope``, the scope the shared loop enters around each step; the loop itself reads the loss
only every ``SYNC_EVERY`` steps. The one read left is the search's sampled architecture."""
from __future__ import annotations

import contextlib
import os
import sys

import pytest
import torch

from bertnas.training import loop

READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture
def reads_per_step(monkeypatch):
    """The number of tensor reads (host syncs on a GPU) made by bertnas code in every step the shared loop runs,
    in order. Libraries' own reads are not ours to remove (transformers' BERT reads ``attention_mask.all()`` to
    skip an all-ones mask), so a read counts when the line calling it is in bertnas."""
    counts: list[int] = []

    @contextlib.contextmanager
    def counted():
        saved = {name: getattr(torch.Tensor, name) for name in READS}
        reads = []

        def counting(name):
            def read(self, *args, **kwargs):
                if f"{os.sep}bertnas{os.sep}" in sys._getframe(1).f_code.co_filename:  # ours, not a library's
                    reads.append(name)
                return saved[name](self, *args, **kwargs)
            return read

        for name in READS:
            setattr(torch.Tensor, name, counting(name))
        try:
            yield
        finally:
            for name, method in saved.items():
                setattr(torch.Tensor, name, method)
        counts.append(len(reads))

    monkeypatch.setattr(loop, "step_scope", counted)
    return counts


def test_adabert_search_and_further_training_steps(tmp_path, reads_per_step):
    """A search step reads the sampled architecture once (GDAS runs only the sampled op of each edge and the
    sampled depth: the graph depends on them; before, every edge of every cell read its own); further training
    reads nothing."""
    from test_resume import _retrain

    _retrain(tmp_path, 1)  # a search epoch (96 examples, batches of 16) then further training
    search, further = reads_per_step[:6], reads_per_step[6:]
    assert search == [1] * 6 and further and set(further) == {0}


def test_teacher_finetuning_steps(tmp_path, reads_per_step):
    from bertnas.data.synthetic import build_tokenizer, generate
    from bertnas.teacher.finetune import finetune, new_bert

    data = generate("single", n_train=64, n_dev=16, seed=0)
    tok = build_tokenizer(tmp_path / "vocab")
    finetune(new_bert(tok, 2, layers=1, hidden=16, heads=2), tok, data, tmp_path / "t", epochs=1, lr=1e-3,
             batch_size=16, max_seq_len=32, seed=0)
    assert reads_per_step == [0] * 4


def test_nasbert_supernet_pretraining_and_finetuning_steps(tmp_path, synthetic_files, reads_per_step):
    from bertnas.data.corpus import read_corpus
    from bertnas.nasbert import pipeline
    from bertnas.nasbert.config import FinetuneSettings, SupernetSettings
    from bertnas.nasbert.finetune import finetune
    from conftest import make_teacher

    teacher = make_teacher(tmp_path / "teacher")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(read_corpus(str(synthetic_files["single"]))[:60]) + "\n")
    out = tmp_path / "nb"
    pipeline.supernet(SupernetSettings(teacher=str(teacher), corpus=str(corpus), max_sentences=50, heldout_sentences=10,
                                       max_len=24, num_blocks=2, layers_per_block=2, hidden_sizes="16", epochs=2,
                                       warmup_epochs=1, bins=1, samples_per_bin=2, keep_per_bin=1, score_batches=1,
                                       batch_size=8, threads=1), out)
    supernet_steps = len(reads_per_step)
    assert supernet_steps >= 2 and set(reads_per_step) == {0}
    pipeline.latency(out, seq_len=16, batch_sizes=(1,), embedding_sizes=(16,), threads=1, repeats=2)
    model = pipeline.select(out, "60K", None, (16,), 0.5, 2, 16, 1, False)[0]
    pipeline.pretrain(out, model["dir"], str(tmp_path / "pt"), 1, 8, 1e-3, 1)
    assert len(reads_per_step) > supernet_steps and set(reads_per_step) == {0}
    pretrain_steps = len(reads_per_step)
    finetune(str(tmp_path / "pt"), str(teacher), "synthetic", tmp_path / "ft",
             FinetuneSettings(epochs=1, batch_size=16, max_seq_len=24, val_examples=0, threads=1),
             data_dir=str(synthetic_files["single"]), measure=False)
    assert len(reads_per_step) > pretrain_steps and set(reads_per_step) == {0}
