"""The sanity floors: word overlap for pairs and the majority class, checked on data whose answer is known."""
from __future__ import annotations

import pytest

from bertnas.data.examples import Examples, TaskSpec
from bertnas.measure.baselines import baselines, jaccard, majority_baseline, overlap_baseline

BINARY = TaskSpec("pairs", ["0", "1"], True, ["accuracy", "f1"], "accuracy")


def test_jaccard():
    assert jaccard("The cat sat", "the cat ran") == pytest.approx(2 / 4)
    assert jaccard("a b", "c d") == 0.0 and jaccard("", "") == 0.0 and jaccard("Same, words!", "words same") == 1.0


def _pairs(n: int, flip: bool = False) -> Examples:
    """Label 1 exactly when B repeats A (overlap 1), else B shares nothing (overlap 0)."""
    texts, pairs, labels = [], [], []
    for i in range(n):
        a = f"w{i} x{i} y{i}"
        same = i % 3 != 0
        texts.append(a)
        pairs.append(a if same else f"p{i} q{i}")
        labels.append(int(same) ^ int(flip))
    return Examples(texts=texts, text_pairs=pairs, labels=labels)


def test_overlap_threshold_is_learned_on_train_in_either_direction():
    for flip in (False, True):
        train, dev = _pairs(60, flip), _pairs(30, flip)
        assert overlap_baseline(BINARY, train, dev)["accuracy"] == 1.0
    # when overlap says nothing, the tuned threshold cannot beat the prior by much on held-out data
    train = Examples(texts=[f"a{i}" for i in range(40)], text_pairs=[f"b{i}" for i in range(40)],
                     labels=[i % 2 for i in range(40)])
    assert overlap_baseline(BINARY, train, train)["accuracy"] == 0.5


def test_majority_and_multiclass_and_regression():
    train = Examples(texts=["x"] * 10, labels=[1] * 7 + [0] * 3)
    dev = Examples(texts=["x"] * 4, labels=[1, 1, 0, 0])
    assert majority_baseline(BINARY, train, dev)["accuracy"] == 0.5
    assert overlap_baseline(BINARY, train, dev) is None and set(baselines(BINARY, train, dev)) == {"majority"}
    three = TaskSpec("nli", ["a", "b", "c"], True, ["accuracy"], "accuracy")
    texts = [f"w{i} v{i} u{i} t{i}" for i in range(90)]
    pairs = [" ".join(t.split()[: i % 3 + 1]) + f" z{i}" for i, t in enumerate(texts)]  # overlap 1/5, 2/5, 3/5
    ex = Examples(texts=texts, text_pairs=pairs, labels=[i % 3 for i in range(90)])
    assert overlap_baseline(three, ex, ex)["accuracy"] == 1.0
    reg = TaskSpec("sts", None, True, ["pearson", "spearman"], "pearson")
    ex = Examples(texts=texts, text_pairs=pairs, labels=[float(i % 3) for i in range(90)])
    assert overlap_baseline(reg, ex, ex)["pearson"] == pytest.approx(1.0)
    assert majority_baseline(reg, ex, ex)["pearson"] == 0.0
