"""``--search-distill logits``: the search trains no per-cell heads and pairs only the final logits with the
teacher's (the benchmark's ablation row chooses it through the setting, not by patching the search)."""
from __future__ import annotations

import torch

from bertnas.adabert.searcher import finish_search, search
from test_resume import _setup


def test_logits_only_search_trains_no_heads_and_differs(tmp_path):
    runs = {}
    for mode in ("probes", "logits"):
        cfg, spec, train, dev, targets, net = _setup(tmp_path)
        cfg = cfg.update({"search_epochs": 1, "search_distill": mode}).validate()
        arch, heads, history = search(cfg, spec, train, dev, targets, net, torch.device("cpu"))
        result = finish_search(cfg, spec, net, arch, heads, history, 0, None)
        runs[mode] = (arch, heads, result)
    assert len(runs["probes"][1].heads) == 3 and len(runs["probes"][2].heads.heads) == runs["probes"][2].genotype.depth
    assert len(runs["logits"][1].heads) == 0 and len(runs["logits"][2].heads.heads) == 0
    assert not torch.equal(runs["probes"][0].alpha, runs["logits"][0].alpha)  # the probes' pull is gone


def test_new_settings_at_their_old_behaviour_keep_the_stage_keys():
    """A run directory made before --search-distill and --probe-max-examples existed keeps its stage marks and
    checkpoints: at the value that does what the code did, a new setting is not in the stage keys (the feature
    sample is in the knowledge key, which the stages carry)."""
    from bertnas.adabert.pipeline import _stage_key
    from bertnas.config import RunConfig

    cfg = RunConfig(task="sst2", teacher="t", data_dir="d")
    for stage in ("probe", "search", "retrain"):
        assert _stage_key(cfg.update({"probe_max_examples": 5}), stage) == _stage_key(cfg, stage)
    assert _stage_key(cfg.update({"search_distill": "logits"}), "search") != _stage_key(cfg, "search")
    assert _stage_key(cfg.update({"search_epochs": 3}), "search") != _stage_key(cfg, "search")
