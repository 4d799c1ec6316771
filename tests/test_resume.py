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


def test_teacher_finetuning_resumes_exactly_and_cleans_up(tmp_path, monkeypatch):
    """Teacher fine-tuning shares the resumable loop: stopped after epoch 1's checkpoint and run again, it saves
    the teacher an uninterrupted run saves; the checkpoint beside the output is removed once the teacher is."""
    import pytest
    from safetensors.torch import load_file

    from bertnas.teacher.finetune import finetune, new_bert
    from conftest import stopped_after_first_checkpoint

    data = generate("single", n_train=96, n_dev=32, seed=0)
    tok = build_tokenizer(tmp_path / "vocab")

    def teacher(out):
        torch.manual_seed(0)
        model = new_bert(tok, 2, layers=1, hidden=16, heads=2)
        return finetune(model, tok, data, out, epochs=3, lr=1e-3, batch_size=16, max_seq_len=32, seed=3)

    best_full = teacher(tmp_path / "full")
    with stopped_after_first_checkpoint(monkeypatch), pytest.raises(KeyboardInterrupt):
        teacher(tmp_path / "cut")
    checkpoint = tmp_path / ".cut.checkpoint.pt"
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1 and not (tmp_path / "cut").exists()
    assert teacher(tmp_path / "cut") == best_full
    assert not checkpoint.exists()
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nasbert_pretraining_resumes_exactly(tmp_path, monkeypatch):
    """NAS-BERT's pre-training distillation shares the resumable loop: stopped after epoch 1 of 2 and run again,
    it saves the model an uninterrupted run saves, and removes its checkpoint."""
    import pytest
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForSequenceClassification

    from bertnas.data.corpus import read_corpus
    from bertnas.data.synthetic import write_task
    from bertnas.nasbert.distill import compute_block_states
    from bertnas.nasbert.pretrain import pretrain_distill
    from bertnas.teacher.loading import load_encoder
    from conftest import make_teacher, stopped_after_first_checkpoint

    teacher, tok = load_encoder(str(make_teacher(tmp_path / "teacher")))
    texts = read_corpus(str(write_task(generate("single", n_train=80, n_dev=8, seed=1), tmp_path / "task")))[:64]
    states = compute_block_states(teacher, tok, texts, [0, 1, 2], 32, tmp_path / "states")
    torch.manual_seed(0)
    student = BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                                       num_attention_heads=2, intermediate_size=32))
    student.save_pretrained(tmp_path / "student")
    tok.save_pretrained(tmp_path / "student")

    def run(name):
        return pretrain_distill(str(tmp_path / "student"), states, list(range(64)), tmp_path / name, epochs=2,
                                batch_size=16, lr=1e-3, seed=2)

    full = run("full")
    with stopped_after_first_checkpoint(monkeypatch), pytest.raises(KeyboardInterrupt):
        run("cut")
    assert torch.load(tmp_path / ".cut.checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = run("cut")
    assert [e["mse"] for e in resumed["log"]] == [e["mse"] for e in full["log"]]
    assert not (tmp_path / ".cut.checkpoint.pt").exists()
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
