"""``--amp-dtype fp16``: float16 autocast with a gradient scaler, for GPUs without native bfloat16 (V100, T4), where
``auto`` picks it. Tested on CPU, which runs float16 autocast too: a step whose gradients overflow is skipped and the
scale shrinks; the scaler's state is checkpointed and a resumed search ends where an uninterrupted one ends; a whole
AdaBERT run trains with it from the command line. (The other loops under float16: tests/test_amp_everywhere.py.)"""
from __future__ import annotations

import pytest
import torch

from bertnas.training.amp import Precision, amp_dtype
from test_resume import _setup


def test_dtype_choice():
    cpu = torch.device("cpu")
    assert amp_dtype(cpu, False, "fp16") is None  # --amp off: float32 whatever the dtype
    assert amp_dtype(cpu, True) is torch.bfloat16  # auto on a CPU
    assert amp_dtype(cpu, True, "fp16") is torch.float16
    assert amp_dtype(torch.device("mps"), True) is None  # no autocast there
    with pytest.raises(ValueError, match="auto, bf16, fp16"):
        amp_dtype(cpu, True, "fp8")
    assert Precision(cpu, True).scaler is None and Precision(cpu, True, "fp16").scaler is not None
    assert Precision(cpu, True).key() == {} and Precision(cpu, True, "fp16").key() == {"amp_dtype": "fp16"}
    assert Precision(cpu, True).finite(torch.tensor([float("inf")]))  # no scaler: no check, no host read
    assert not Precision(cpu, True, "fp16").finite(torch.ones(2), torch.tensor([float("nan")]), None)


def test_an_overflowing_step_is_skipped_and_the_scale_shrinks():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    precision = Precision("cpu", True, "fp16")
    before = [p.detach().clone() for p in model.parameters()]
    scale = precision.scaler.get_scale()
    with precision.autocast():
        out = model(torch.full((2, 4), 1e4))
    assert out.dtype is torch.float16
    precision.backward(out.float().pow(2).mean())
    for p in model.parameters():  # an overflow, as a float16 backward through a large loss gives
        p.grad[0] = float("inf")
    precision.clip_step(opt, model.parameters(), 1.0)
    precision.update()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the step was skipped
    assert precision.scaler.get_scale() == scale / 2
    opt.zero_grad()
    with precision.autocast():
        loss = model(torch.ones(2, 4)).float().pow(2).mean()
    precision.backward(loss)
    precision.clip_step(opt, model.parameters(), 1.0)
    precision.update()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # a finite step is taken


def _search(tmp_path, epochs: int, amp_dtype: str | None, checkpoint=None):
    from bertnas.adabert.searcher import search

    cfg, spec, train, dev, targets, net = _setup(tmp_path)
    cfg = cfg.update({"search_epochs": epochs, "amp": amp_dtype is not None, "amp_dtype": amp_dtype or "auto"})
    arch, _, history = search(cfg, spec, train, dev, targets, net, torch.device("cpu"), checkpoint, resume_key="k")
    return arch, history


def test_search_with_fp16_resumes_with_its_scaler(tmp_path):
    full, hist = _search(tmp_path, 2, "fp16")
    fp32, _ = _search(tmp_path, 2, None)
    assert torch.isfinite(full.alpha).all() and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    import math  # the architecture-gradient statistics leave out the steps the scaler skipped (overflows at first)
    assert all(math.isfinite(v) for h in hist for v in h["arch_signal"].values() if isinstance(v, float))
    assert not torch.equal(full.alpha, fp32.alpha)  # float16 rounds otherwise
    ckpt = tmp_path / "ckpt" / "search.pt"
    _search(tmp_path, 1, "fp16", ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["grad_scaler"]["scale"] > 0  # the scaler's state is in the checkpoint
    resumed, _ = _search(tmp_path, 2, "fp16", ckpt)
    assert torch.equal(resumed.alpha, full.alpha)
    bf16, _ = _search(tmp_path, 2, "bf16", ckpt)  # another precision never resumes a float16 checkpoint
    assert not torch.equal(bf16.alpha, full.alpha)


def test_a_run_with_fp16_from_the_command_line(tmp_path, synthetic_files):
    """AdaBERT's further training through the command line: ``--amp --amp-dtype fp16`` is a flag like any other."""
    import json

    from bertnas.cli import main
    from conftest import make_teacher

    teacher = make_teacher(tmp_path / "teacher")
    common = ["--teacher", str(teacher), "--task", "synthetic", "--data-dir", str(synthetic_files["single"]), "--out", str(tmp_path / "run"), "--cache-dir",
              str(tmp_path / "cache"), "--hidden-size", "16", "--k-max", "2", "--search-epochs", "1",
              "--retrain-epochs", "1", "--probe-epochs", "1", "--max-train-examples", "96", "--augment", "0",
              "--latency-repeats", "2", "--amp", "--amp-dtype", "fp16", "--device", "cpu"]
    assert main(["run", *common]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert json.loads((tmp_path / "run" / "config.json").read_text())["amp_dtype"] == "fp16"
    assert 0 <= results["student"]["metric"] <= 1
