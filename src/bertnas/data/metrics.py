"""Task metrics in plain NumPy.

Kept dependency-free (no scikit-learn/scipy) so that scoring behaves the same everywhere.
Degenerate inputs (constant predictions, no positives) score 0.0 instead of NaN, so a collapsed
candidate during architecture search simply ranks last rather than poisoning comparisons.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .examples import TaskSpec


def _as_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _check_pair(predictions: np.ndarray, labels: np.ndarray) -> None:
    if predictions.shape[0] != labels.shape[0]:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    if labels.shape[0] == 0:
        raise ValueError("cannot score an empty set of predictions")


def accuracy(predictions: Any, labels: Any) -> float:
    """Fraction of predicted class indices equal to the gold indices."""
    p, y = _as_array(predictions).astype(np.int64), _as_array(labels).astype(np.int64)
    _check_pair(p, y)
    return float(np.mean(p == y))


def _f1_for_class(p: np.ndarray, y: np.ndarray, cls: int) -> float:
    tp = float(np.sum((p == cls) & (y == cls)))
    fp = float(np.sum((p == cls) & (y != cls)))
    fn = float(np.sum((p != cls) & (y == cls)))
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2 * tp / denom


def f1(predictions: Any, labels: Any) -> float:
    """Binary F1 of the positive class (index 1), as reported for MRPC and QQP."""
    p, y = _as_array(predictions).astype(np.int64), _as_array(labels).astype(np.int64)
    _check_pair(p, y)
    return _f1_for_class(p, y, 1)


def macro_f1(predictions: Any, labels: Any) -> float:
    """Unweighted mean of per-class F1 over every class seen in labels or predictions."""
    p, y = _as_array(predictions).astype(np.int64), _as_array(labels).astype(np.int64)
    _check_pair(p, y)
    classes = np.union1d(p, y)
    return float(np.mean([_f1_for_class(p, y, int(c)) for c in classes]))


def mcc(predictions: Any, labels: Any) -> float:
    """Matthews correlation (multiclass form, as in CoLA scoring); 0.0 when undefined."""
    p, y = _as_array(predictions).astype(np.int64), _as_array(labels).astype(np.int64)
    _check_pair(p, y)
    classes, inverse = np.unique(np.concatenate([y, p]), return_inverse=True)
    k = len(classes)
    yi, pi = inverse[: len(y)], inverse[len(y):]
    conf = np.zeros((k, k), dtype=np.float64)
    np.add.at(conf, (yi, pi), 1.0)
    t = conf.sum(axis=1)  # true counts per class
    q = conf.sum(axis=0)  # predicted counts per class
    c = np.trace(conf)
    s = conf.sum()
    cov_pred = s * s - float(np.dot(q, q))
    cov_true = s * s - float(np.dot(t, t))
    if cov_pred <= 0 or cov_true <= 0:
        return 0.0
    return float((c * s - float(np.dot(t, q))) / np.sqrt(cov_pred * cov_true))


def pearson(predictions: Any, labels: Any) -> float:
    """Pearson correlation; 0.0 if either side is constant."""
    x, y = _as_array(predictions).astype(np.float64).ravel(), _as_array(labels).astype(np.float64).ravel()
    _check_pair(x, y)
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.dot(xc, xc) * np.dot(yc, yc))
    if denom == 0 or not np.isfinite(denom):
        return 0.0
    return float(np.clip(np.dot(xc, yc) / denom, -1.0, 1.0))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with tied values sharing the mean of their ranks (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # boundaries of runs of equal values in sorted order
    starts = np.flatnonzero(np.concatenate([[True], sorted_vals[1:] != sorted_vals[:-1]]))
    ends = np.concatenate([starts[1:], [len(values)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0  # mean of 1-based ranks start+1..end
    return ranks


def spearman(predictions: Any, labels: Any) -> float:
    """Spearman rank correlation with ties given their average rank; 0.0 if either side is constant."""
    x, y = _as_array(predictions).astype(np.float64).ravel(), _as_array(labels).astype(np.float64).ravel()
    _check_pair(x, y)
    return pearson(_average_ranks(x), _average_ranks(y))


METRICS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "macro_f1": macro_f1,
    "mcc": mcc,
    "pearson": pearson,
    "spearman": spearman,
}

#: Metrics that score real-valued predictions; the others score class indices.
REGRESSION_METRICS: frozenset[str] = frozenset({"pearson", "spearman"})


def compute_metrics(spec: TaskSpec, predictions: Any, labels: Any) -> dict[str, float]:
    """Score model outputs for a task: every metric in ``spec.metrics``.

    ``predictions`` are logits of shape (N, C) for classification (argmax is taken; a 1-D integer
    array is taken as class indices already) and shape (N,) or (N, 1) for regression.
    """
    preds = _as_array(predictions)
    gold = _as_array(labels)
    if spec.is_regression:
        if preds.ndim == 2 and preds.shape[1] == 1:
            preds = preds[:, 0]
        if preds.ndim != 1:
            raise ValueError(f"regression predictions must have shape (N,) or (N, 1), got {preds.shape}")
        preds = preds.astype(np.float64)
        gold = gold.astype(np.float64)
    else:
        if preds.ndim == 2:
            preds = preds.argmax(axis=1)
        elif preds.ndim != 1 or not np.issubdtype(preds.dtype, np.integer):
            raise ValueError(f"classification predictions must be logits (N, C) or class indices (N,), got {preds.shape}")
        gold = gold.astype(np.int64)
    return {name: float(METRICS[name](preds, gold)) for name in spec.metrics}
