"""training.best.BestEpoch: the best-epoch bookkeeping of further training and both fine-tunings (first offer kept,
then strictly better only), its copy of the weights, and its round trip through a real checkpoint file."""
from __future__ import annotations

import pytest
import torch

from bertnas.errors import BertnasError
from bertnas.training.best import BestEpoch
from bertnas.training.checkpoints import load_checkpoint, save_checkpoint


def _set(m: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(value)


def _module(value: float) -> torch.nn.Linear:
    m = torch.nn.Linear(2, 1)
    _set(m, value)
    return m


def test_first_offer_is_kept_then_only_a_strictly_greater_score():
    m, best = _module(0.0), BestEpoch()
    assert not best.kept
    assert best.offer(float("nan"), {"epoch": 1}, m)  # the first is kept whatever it scores
    assert not best.offer(0.9, {"epoch": 2}, m)  # nothing beats NaN (as `score > best` never held)
    best = BestEpoch()
    assert best.offer(0.5, {"epoch": 1}, m)
    _set(m, 2.0)
    assert not best.offer(0.5, {"epoch": 2}, m)  # a tie: the earlier epoch stays
    assert not best.offer(0.4, {"epoch": 3}, m)
    assert best.record == {"epoch": 1} and best.score == 0.5 and float(best.state["weight"][0, 0]) == 0.0
    assert best.offer(0.6, {"epoch": 4}, m)
    assert best.record == {"epoch": 4} and float(best.state["weight"][0, 0]) == 2.0


def test_the_weights_kept_are_a_copy_and_load_back():
    m, best = _module(1.0), BestEpoch()
    best.offer(1.0, {}, m)
    _set(m, 5.0)  # training goes on, in place
    assert torch.equal(best.state["weight"], torch.full((1, 2), 1.0))
    assert best.state["weight"].data_ptr() != m.weight.data_ptr()
    best.load_into(m)
    assert torch.equal(m.weight, torch.full((1, 2), 1.0)) and torch.equal(m.bias, torch.full((1,), 1.0))


def test_nothing_kept_is_a_one_line_error():
    with pytest.raises(BertnasError, match="at least one epoch"):
        BestEpoch().load_into(_module(0.0))


@pytest.mark.parametrize("keys, score_of", [
    ({}, lambda metrics: metrics["accuracy"]),  # teacher / NAS-BERT fine-tuning: best + best_state
    ({"record_key": "best_metrics", "score_key": "best_choice"}, None),  # further training saves its score too
], ids=["score-from-record", "score-saved"])
def test_restore_round_trip_through_a_checkpoint_file(tmp_path, keys, score_of):
    m, best = _module(3.0), BestEpoch(**keys)
    best.offer(0.7, {"accuracy": 0.7}, m)
    names = {keys.get("record_key", "best"), "best_state"} | ({keys["score_key"]} if "score_key" in keys else set())
    assert set(best.extras()) == names  # the names each stage checkpointed before BestEpoch
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": m.state_dict(), "epoch": 1, "history": [], "resume_key": "k", **best.extras()})
    _set(m, 9.0)
    extra = {k: v for k, v in load_checkpoint(path, "k").items() if k not in ("model", "epoch", "history", "resume_key")}
    again = BestEpoch(**keys).restore(extra, score_of)
    assert again.kept and again.score == 0.7 and again.record == {"accuracy": 0.7}
    assert not again.offer(0.7, {"accuracy": 0.7}, m) and again.offer(0.8, {"accuracy": 0.8}, _module(3.0))
    restored = BestEpoch(**keys).restore(extra, score_of)
    restored.load_into(m)
    assert torch.equal(m.weight, torch.full((1, 2), 3.0))


def test_restore_of_a_fresh_start_and_of_a_checkpoint_without_a_best_epoch():
    assert not BestEpoch().restore({}, lambda r: r).kept
    # further training's checkpoints from before best_choice was saved: the score is the record's headline
    old = BestEpoch("best_metrics", "best_choice").restore({"best_state": {}, "best_metrics": {"f1": 0.3}},
                                                          lambda metrics: metrics["f1"])
    assert old.score == 0.3
    with pytest.raises(BertnasError, match="no best epoch.*--no-resume"):
        BestEpoch().restore({"something_else": 1}, lambda r: r)
