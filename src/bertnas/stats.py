"""Statistics over seeds, shared by the bench and the NAS-BERT report: a row's spread, one row against another.

A verdict pairs the two rows by seed index (seed i of both rows shares its data order and initial draws), so
the seed-to-seed noise that both rows share cancels, and says "beats"/"below" only when the mean paired
difference is more than two standard errors away from zero.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

BEATS, BELOW, NOISE, ONE_SEED = "beats", "below", "within noise", "within noise (1 seed)"


def spread(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation and standard error (sd / sqrt(n)) of one row's per-seed values
    (sd and se are None with one value: one seed says nothing about the noise)."""
    n = len(values)
    if n == 0:
        raise ValueError("spread of no values")
    sd = statistics.stdev(values) if n > 1 else None
    return {"n": n, "mean": statistics.fmean(values), "sd": sd, "se": sd / math.sqrt(n) if sd is not None else None}


def paired_verdict(a: Sequence[float], b: Sequence[float]) -> dict:
    """``a`` against ``b``, paired by seed index (the first min(len) seeds of each): the mean paired difference
    a - b, its standard error, and the verdict: "beats"/"below" when |mean| > 2 se, else "within noise";
    "within noise (1 seed)" when only one pair exists."""
    pairs = list(zip(a, b))
    if not pairs:
        raise ValueError("paired verdict of no seeds")
    d = spread([x - y for x, y in pairs])
    if d["n"] < 2:
        verdict = ONE_SEED
    elif abs(d["mean"]) > 2 * d["se"]:
        verdict = BEATS if d["mean"] > 0 else BELOW
    else:
        verdict = NOISE
    return {"n": d["n"], "mean_diff": d["mean"], "se_diff": d["se"], "verdict": verdict}
