"""Options of the further training: ``--retrain-freeze-words`` keeps the word table and trains the rest; unset,
pairs keep it and single sentences train it."""
from __future__ import annotations

import pytest
import torch

from bertnas.adabert.objective import Targets
from bertnas.adabert.retrain import retrain
from bertnas.adabert.searcher import build_supernet, finish_search, search
from bertnas.config import RunConfig
from bertnas.data.encode import encode
from bertnas.data.synthetic import build_tokenizer, generate


def _searched(tmp_path, variant: str = "single"):
    data = generate(variant, n_train=64, n_dev=16, seed=0)
    tok = build_tokenizer(tmp_path / "vocab")
    train, dev = encode(tok, data.train, 32), encode(tok, data.dev, 32)
    g = torch.Generator().manual_seed(1)
    gold = torch.nn.functional.one_hot(train.labels, 2).float() * 6 - 3  # teacher and probes = the gold labels
    targets = Targets(gold, gold[None].repeat(3, 1, 1), torch.device("cpu"))
    cfg = RunConfig(hidden_size=16, k_max=2, search_batch_size=16, retrain_batch_size=16, search_epochs=1,
                    search_warmup_epochs=0, retrain_epochs=3, retrain_lr=0.01, seed=0,
                    bn_recalibration=0).validate()  # a searched student that further training improves on: with
    # recalibrated BatchNorm statistics this tiny one already scores its best on the 16 dev examples, and the
    # epoch kept would be the untrained one
    torch.manual_seed(0)
    net = build_supernet(cfg, data.spec, torch.randn(len(tok), 8, generator=g), torch.randn(64, 8, generator=g),
                         tok.sep_token_id)
    arch, heads, history = search(cfg, data.spec, train, dev, targets, net, torch.device("cpu"))
    result = finish_search(cfg, data.spec, net, arch, heads, history, 0, None)
    return cfg, data.spec, result, train, dev, targets


def _changed(before: dict, after: dict) -> set[str]:
    return {n for n, t in before.items() if t.is_floating_point() and not torch.equal(t, after[n])}


def test_freezing_the_word_table_trains_everything_else(tmp_path):
    cfg, spec, result, train, dev, targets = _searched(tmp_path)
    before = {n: t.clone() for n, t in result.student.state_dict().items()}
    cfg = cfg.update({"retrain_freeze_words": True}, "test")
    student, _, history = retrain(cfg, spec, result.student, result.heads, train, dev, targets, torch.device("cpu"))
    assert history[-1]["dev"] != history[0]["dev"]  # it trained (the best dev epoch is not the untrained student)
    changed = _changed(before, student.state_dict())
    assert "embeddings.word_embeddings.weight" not in changed
    assert any(n.startswith("cells.") for n in changed) and any(n.startswith("classifier.") for n in changed), changed
    assert student.get_input_embeddings().weight.requires_grad  # the returned model trains normally again


@pytest.mark.parametrize("variant,setting,frozen", [("single", None, False), ("pair", None, True),
                                                    ("pair", False, False)])
def test_unset_the_word_table_is_kept_for_pairs_only(tmp_path, variant, setting, frozen):
    """Counts the gradients that reach the word table and a cell weight during further training (what is kept in
    the end depends on which dev epoch was best, so the test watches the training itself)."""
    cfg, spec, result, train, dev, targets = _searched(tmp_path, variant)
    assert cfg.retrain_freeze_words is None  # the default
    cfg = cfg.update({"retrain_freeze_words": setting}, "test")
    words = result.student.get_input_embeddings().weight
    cell = next(p for n, p in result.student.named_parameters() if n.startswith("cells.") and p.requires_grad)
    seen = {"words": 0, "cell": 0}
    words.register_post_accumulate_grad_hook(lambda p: seen.__setitem__("words", seen["words"] + 1))
    cell.register_post_accumulate_grad_hook(lambda p: seen.__setitem__("cell", seen["cell"] + 1))
    retrain(cfg, spec, result.student, result.heads, train, dev, targets, torch.device("cpu"))
    assert seen["cell"] > 0
    assert (seen["words"] == 0) == frozen, seen


@pytest.mark.parametrize("distill,heads_train", [("probes", True), ("logits", False)])
def test_retrain_distill_chooses_what_further_training_matches(tmp_path, distill, heads_train):
    """``--retrain-distill logits`` matches the teacher's logits only: the per-cell distillation heads of a
    3-cell student get no gradient (and are not in the optimizer); ``probes`` trains them with the cells."""
    from bertnas.adabert.genotype import Genotype
    from bertnas.bench.students import fresh_adabert

    cfg, spec, _, train, dev, targets = _searched(tmp_path)
    genotype = Genotype(edges=((0, 0, "conv_3"), (0, 1, "max_pool_3"), (1, 0, "skip_connect"), (1, 2, "dil_conv_5"),
                               (2, 1, "conv_7"), (2, 3, "avg_pool_3")), depth=3)
    g = torch.Generator().manual_seed(2)
    tok_size = int(max(max(x) for x in train.input_ids)) + 1
    student, heads = fresh_adabert(cfg, spec, genotype, torch.randn(tok_size, 8, generator=g),
                                   torch.randn(64, 8, generator=g), 0, None, train.labels)
    assert len(list(heads.parameters())) > 0
    before = {n: t.clone() for n, t in heads.state_dict().items()}
    seen = {"heads": 0}
    for p in heads.parameters():
        p.register_post_accumulate_grad_hook(lambda p: seen.__setitem__("heads", seen["heads"] + 1))
    cfg = cfg.update({"retrain_distill": distill, "retrain_epochs": 1}, "test")
    trained, _, history = retrain(cfg, spec, student, heads, train, dev, targets, torch.device("cpu"))
    assert (seen["heads"] > 0) == heads_train
    assert bool(_changed(before, heads.state_dict())) == heads_train
    assert history[-1]["kd"] > 0  # the logits are distilled either way
