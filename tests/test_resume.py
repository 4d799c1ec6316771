"""A search stopped after an epoch and resumed from its checkpoint ends exactly where an uninterrupted one
ends; the same seed gives the same architecture, another seed may not."""
from __future__ import annotations

import torch

from bertnas.adabert.objective import Targets
from bertnas.adabert.searcher import build_supernet, search
from bertnas.config import RunConfig
from bertnas.data.encode import encode
from bertnas.data.synthetic import build_tokenizer, generate


def _setup(tmp_path, seed: int = 0):
    data = generate("single", n_train=96, n_dev=32, seed=0)
    tok = build_tokenizer(tmp_path / "vocab")
    train = encode(tok, data.train, 32)
    dev = encode(tok, data.dev, 32)
    g = torch.Generator().manual_seed(1)
    targets = Targets(torch.randn(len(train), 2, generator=g), torch.randn(3, len(train), 2, generator=g), torch.device("cpu"))
    cfg = RunConfig(hidden_size=16, k_max=3, search_batch_size=16, tau_decay=0.5, seed=seed, dropout=0.1,
                    search_warmup_epochs=0).validate()
    torch.manual_seed(123)
    words = torch.randn(len(tok), 8, generator=torch.Generator().manual_seed(5))
    net = build_supernet(cfg, data.spec, words, torch.randn(64, 8, generator=torch.Generator().manual_seed(6)),
                         tok.sep_token_id)
    return cfg, data.spec, train, dev, targets, net


def _search(tmp_path, epochs: int, checkpoint=None, seed: int = 0):
    cfg, spec, train, dev, targets, net = _setup(tmp_path, seed)
    cfg = cfg.update({"search_epochs": epochs})
    arch, heads, history = search(cfg, spec, train, dev, targets, net, torch.device("cpu"), checkpoint)
    return arch, net, history


def test_resume_continues_exactly(tmp_path):
    arch_full, net_full, hist_full = _search(tmp_path, 2)
    ckpt = tmp_path / "ckpt" / "search.pt"
    _search(tmp_path, 1, ckpt)  # "killed" after epoch 1: the checkpoint holds epoch 1
    assert ckpt.is_file()
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    arch_res, net_res, hist_res = _search(tmp_path, 2, ckpt)
    assert len(hist_res) == 2 and hist_res[0] == hist_full[0] | {"seconds": hist_res[0]["seconds"]}
    assert torch.equal(arch_full.alpha, arch_res.alpha)
    assert torch.equal(arch_full.depth_logits, arch_res.depth_logits)
    for (n, a), (_, b) in zip(net_full.state_dict().items(), net_res.state_dict().items()):
        assert torch.equal(a, b), n


def test_seed_fixes_the_search(tmp_path):
    a, _, _ = _search(tmp_path, 1, seed=0)
    b, _, _ = _search(tmp_path, 1, seed=0)
    c, _, _ = _search(tmp_path, 1, seed=1)
    assert torch.equal(a.alpha, b.alpha)
    assert not torch.equal(a.alpha, c.alpha)


def test_checkpoint_from_other_settings_is_not_resumed(tmp_path):
    ckpt = tmp_path / "ckpt" / "search.pt"
    cfg, spec, train, dev, targets, net = _setup(tmp_path)
    search(cfg.update({"search_epochs": 1}), spec, train, dev, targets, net, torch.device("cpu"), ckpt, resume_key="A")
    cfg, spec, train, dev, targets, net = _setup(tmp_path)
    _, _, history = search(cfg.update({"search_epochs": 1}), spec, train, dev, targets, net, torch.device("cpu"),
                           ckpt, resume_key="B")
    assert len(history) == 1 and torch.load(ckpt, weights_only=True)["resume_key"] == "B"  # ran again, not resumed


def _retrain(tmp_path, epochs: int, checkpoint=None):
    from bertnas.adabert.searcher import finish_search
    from bertnas.adabert.retrain import retrain

    cfg, spec, train, dev, targets, net = _setup(tmp_path)
    cfg = cfg.update({"search_epochs": 1, "retrain_epochs": epochs, "retrain_batch_size": 16})
    arch, heads, history = search(cfg, spec, train, dev, targets, net, torch.device("cpu"))
    result = finish_search(cfg, spec, net, arch, heads, history, 0, None)
    return retrain(cfg, spec, result.student, result.heads, train, dev, targets, torch.device("cpu"), checkpoint)


def test_retrain_resume_continues_exactly(tmp_path, monkeypatch):
    """The further training shares the search's resumable loop: killed right after epoch 1's checkpoint, then
    resumed, it ends where an uninterrupted run ends (weights, best dev metrics, history)."""
    import pytest

    from bertnas.training.loop import Resumable

    full, best_full, hist_full = _retrain(tmp_path, 2)
    ckpt = tmp_path / "ckpt" / "retrain.pt"
    save = Resumable.save

    def killed_after_first_epoch(self, **extra):
        save(self, **extra)
        if self.name == "retrain":
            raise KeyboardInterrupt

    monkeypatch.setattr(Resumable, "save", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        _retrain(tmp_path, 2, ckpt)
    monkeypatch.setattr(Resumable, "save", save)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1 and "best_state" in state and len(state["history"]) == 2  # epoch 0 + epoch 1
    resumed, best_res, hist_res = _retrain(tmp_path, 2, ckpt)
    assert best_res == best_full and [h["epoch"] for h in hist_res] == [0, 1, 2]
    assert [h.get("loss") for h in hist_res] == [h.get("loss") for h in hist_full]
    for (n, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), n
