"""``--amp`` (autocast in the training steps) in every loop, not AdaBERT's alone: NAS-BERT's supernet, pre-training
KD and fine-tuning, and teacher fine-tuning train with it, in bfloat16 and in float16 with a gradient scaler
(``--amp-dtype``; finite losses, other numbers than float32), and a checkpoint key without it is the key from
before the setting existed. (AdaBERT's search and further training under float16: tests/test_amp_fp16.py.)"""
from __future__ import annotations

import pytest
import torch

from bertnas.data.synthetic import build_tokenizer, generate

DTYPES = pytest.mark.parametrize("dtype", ["bf16", "fp16"])


@DTYPES
def test_teacher_finetuning_with_amp(tmp_path, dtype):
    from safetensors.torch import load_file

    from bertnas.teacher.finetune import finetune, new_bert

    data = generate("single", n_train=64, n_dev=16, seed=0)
    tok = build_tokenizer(tmp_path / "vocab")
    out = {}
    for amp in (False, True):
        torch.manual_seed(0)
        metrics = finetune(new_bert(tok, 2, layers=1, hidden=16, heads=2), tok, data, tmp_path / f"t{amp}", epochs=1,
                           lr=1e-3, batch_size=16, max_seq_len=32, seed=0, amp=amp, amp_dtype=dtype)
        assert 0 <= metrics["accuracy"] <= 1
        out[amp] = load_file(tmp_path / f"t{amp}" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in out[True].values())
    assert any(not torch.equal(out[True][k], out[False][k]) for k in out[True])  # the low precision rounds otherwise


@DTYPES
def test_nasbert_stages_with_amp(tmp_path, synthetic_files, dtype):
    from bertnas.data.corpus import read_corpus
    from bertnas.nasbert import pipeline
    from bertnas.nasbert.config import FinetuneSettings, SupernetSettings
    from bertnas.nasbert.finetune import finetune
    from conftest import make_teacher

    teacher = make_teacher(tmp_path / "teacher")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(read_corpus(str(synthetic_files["single"]))[:60]) + "\n")
    base = SupernetSettings(teacher=str(teacher), corpus=str(corpus), max_sentences=50, heldout_sentences=10,
                            max_len=24, num_blocks=2, layers_per_block=2, hidden_sizes="16", epochs=1, warmup_epochs=1,
                            bins=1, samples_per_bin=2, keep_per_bin=1, score_batches=1, batch_size=8, threads=1,
                            amp_dtype=dtype)
    assert "amp" not in base.training_key()  # off: the key a supernet checkpoint had before the setting
    logs = {}
    for amp in (False, True):
        settings = base.update({"amp": amp})
        logs[amp] = pipeline.supernet(settings, tmp_path / f"nb{amp}")["epochs"][0]["train_block_mse"]
    assert all(torch.isfinite(torch.tensor(logs[True]))) and logs[True] != logs[False]
    out = tmp_path / "nbTrue"
    pipeline.latency(out, seq_len=16, batch_sizes=(1,), embedding_sizes=(16,), threads=1, repeats=2)
    model = pipeline.select(out, "60K", None, (16,), 0.5, 2, 16, 1, False)[0]
    pre = pipeline.pretrain(out, model["dir"], str(tmp_path / "pt"), 1, 8, 1e-3, 1, amp=True, amp_dtype=dtype)
    assert all(torch.isfinite(torch.tensor(e["mse"])) for e in pre["log"])
    r = finetune(str(tmp_path / "pt"), str(teacher), "synthetic", tmp_path / "ft",
                 FinetuneSettings(epochs=1, batch_size=16, max_seq_len=24, val_examples=0, threads=1, amp=True,
                                  amp_dtype=dtype),
                 data_dir=str(synthetic_files["single"]), measure=False)
    assert 0 <= r["dev"]["accuracy"] <= 1 and all(torch.isfinite(torch.tensor(h["train_loss"])) for h in r["history"])
