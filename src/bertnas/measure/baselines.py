"""Sanity floors every run reports beside its student: what a model that learned nothing would score.

* majority class (regression: the training mean) -- what a student that learned only the prior scores;
* for sentence pairs, word overlap: the Jaccard ratio of the two sentences' word sets, turned into a
  prediction with a threshold tuned on the training set (binary), per-quantile majority (more classes), or
  used as the score itself (regression). A pair student below it has not learned how B relates to A.
"""
from __future__ import annotations

import re

import numpy as np

from ..data.examples import Examples, TaskSpec
from ..data.metrics import compute_metrics

_WORD = re.compile(r"\w+", re.UNICODE)


def jaccard(a: str, b: str) -> float:
    """|words(a) & words(b)| / |words(a) | words(b)|, lower-cased; 0 for two empty texts."""
    x, y = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    return len(x & y) / len(x | y) if x | y else 0.0


def _one_hot(classes: np.ndarray, num_labels: int) -> np.ndarray:
    out = np.zeros((len(classes), num_labels), np.float32)
    out[np.arange(len(classes)), classes] = 1.0
    return out


def majority_baseline(spec: TaskSpec, train: Examples, dev: Examples) -> dict[str, float]:
    """Dev metrics of always predicting the most frequent training label (regression: the training mean)."""
    if spec.is_regression:
        return compute_metrics(spec, np.full(len(dev), float(np.mean(train.labels))), dev.labels)  # correlations 0
    majority = int(np.bincount(np.asarray(train.labels), minlength=spec.num_labels).argmax())
    return compute_metrics(spec, _one_hot(np.full(len(dev), majority), spec.num_labels), dev.labels)


def overlap_baseline(spec: TaskSpec, train: Examples, dev: Examples) -> dict[str, float] | None:
    """Dev metrics of the word-overlap predictor (pairs only; None for single sentences)."""
    if train.text_pairs is None or dev.text_pairs is None:
        return None
    x_train = np.array([jaccard(a, b) for a, b in zip(train.texts, train.text_pairs)])
    x_dev = np.array([jaccard(a, b) for a, b in zip(dev.texts, dev.text_pairs)])
    if spec.is_regression:
        return compute_metrics(spec, x_dev, dev.labels)
    y = np.asarray(train.labels)
    if spec.num_labels == 2:  # the threshold (and direction) with the best training accuracy
        best = (-1.0, 0.5, 1)
        for t in np.unique(x_train):
            for sign in (1, -1):
                acc = float(((sign * (x_train - t) >= 0).astype(int) == y).mean())
                if acc > best[0]:
                    best = (acc, float(t), sign)
        _, t, sign = best
        pred = (sign * (x_dev - t) >= 0).astype(int)
    else:  # 10 quantile bins of the overlap, each predicting its majority training label
        edges = np.unique(np.quantile(x_train, np.linspace(0, 1, 11)[1:-1]))
        bins_train, bins_dev = np.digitize(x_train, edges), np.digitize(x_dev, edges)
        overall = int(np.bincount(y, minlength=spec.num_labels).argmax())
        label_of = {b: int(np.bincount(y[bins_train == b], minlength=spec.num_labels).argmax())
                    for b in np.unique(bins_train)}
        pred = np.array([label_of.get(b, overall) for b in bins_dev])
    return compute_metrics(spec, _one_hot(pred, spec.num_labels), dev.labels)


def baselines(spec: TaskSpec, train: Examples, dev: Examples) -> dict[str, dict[str, float]]:
    """Every floor that applies to this task, by name."""
    out = {"majority": majority_baseline(spec, train, dev)}
    overlap = overlap_baseline(spec, train, dev)
    if overlap is not None:
        out["word_overlap"] = overlap
    return out
