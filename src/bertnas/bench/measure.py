"""Size, compute and latency of every bench model, measured side by side in one process.

Latency repeats are interleaved (one timed call of each model in turn, then the next round), so a burst of
load from other processes on a shared machine spreads over all models instead of landing on one of them.
Each model gets the median and the interquartile range of its timed calls.
"""
from __future__ import annotations

import logging
import statistics
from typing import Any

import torch
from torch import nn

from ..measure.profile import count_flops, count_params, measure_latency
from ..utils import progress

logger = logging.getLogger("bertnas")


def embedding_params(model: nn.Module) -> int:
    """Parameters held by embedding tables (each table once)."""
    seen, total = set(), 0
    for m in model.modules():
        if isinstance(m, nn.Embedding) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            total += m.weight.numel()
    return total


def _inputs(vocab_size: int, batch: int, seq_len: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random non-special token ids, full mask, zero token types: the same recipe as ``measure.profile``."""
    ids = torch.randint(5, vocab_size, (batch, seq_len), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def _stats(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return {"median_ms": statistics.median(times), "p25_ms": q[0], "p75_ms": q[2], "min_ms": min(times),
            "max_ms": max(times), "n": len(times)}


def measure_side_by_side(
    models: dict[str, tuple[nn.Module, int]],
    seq_len: int = 128,
    batch_sizes: tuple[int, ...] = (1, 32),
    threads: int = 2,
    repeats: int = 20,
    max_repeats: dict[str, int] | None = None,
    warmup: int = 2,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """``{name: (model, vocab_size)}`` -> params (with and without embeddings), FLOPs at batch 1 and latency per
    batch size. ``max_repeats`` caps the timed calls of slow references (e.g. BERT-base)."""
    max_repeats = max_repeats or {}
    out: dict[str, dict[str, Any]] = {}
    calls = {}
    for name, (model, vocab) in models.items():
        model.cpu().eval()
        g = torch.Generator().manual_seed(seed)
        total = count_params(model)
        out[name] = {"params": total, "params_no_emb": total - embedding_params(model),
                     "flops": count_flops(model, **_inputs(vocab, 1, seq_len, g))}
        for b in batch_sizes:
            batch = _inputs(vocab, b, seq_len, g)
            calls[(name, b)] = (lambda m=model, x=batch: m(**x))
            measure_latency(calls[(name, b)], warmup=warmup, repeats=1, threads=threads)  # warm-up, not kept
    times: dict[tuple[str, int], list[float]] = {k: [] for k in calls}
    for r in progress(range(repeats), total=repeats, desc="latency (interleaved)"):
        for (name, b), fn in calls.items():
            if r < max_repeats.get(name, repeats):
                times[(name, b)].append(measure_latency(fn, warmup=0, repeats=1, threads=threads)["median_ms"])
    for (name, b), t in times.items():
        out[name][f"latency_b{b}"] = _stats(t)
    for name in out:
        out[name].update(seq_len=seq_len, threads=threads)
    return out
