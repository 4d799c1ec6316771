"""Size, compute and speed of a model, measured rather than estimated, so compression claims are checkable.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode` (a multiply-add counts as 2 FLOPs), which
only knows matmuls, convolutions and attention. Our search space also has pooling ops; left uncounted they
would look as free as ``skip_connect`` and ``zero``. So :func:`count_flops` adds a formula for pooling
(output elements x kernel size) through FlopCounterMode's ``custom_mapping``. It is keyed by aten op rather
than by ``nn.MaxPool1d``/``nn.AvgPool1d`` module hooks so functional calls (``F.max_pool1d``) count too.

Which aten op a 1-d pool reaches depends on the grad mode (checked on torch 2.13, CPU): under
``torch.no_grad`` ``max_pool1d`` decomposes to ``unsqueeze -> max_pool2d_with_indices -> squeeze`` and
``avg_pool1d`` to ``avg_pool2d`` on a ``(B, C, 1, L)`` view; under ``torch.inference_mode`` they stay
``aten.max_pool1d`` / ``aten.avg_pool1d``. We register the 1-d, 2-d and 3-d variants; FlopCounterMode counts
only the op it ends up executing, so nothing is counted twice.

Second gap, found on the same version: FlopCounterMode has formulas for the CUDA attention kernels but not
for ``aten._scaled_dot_product_flash_attention_for_cpu``, which is what ``F.scaled_dot_product_attention``
(transformers' default "sdpa" attention) runs on CPU. Without a formula BERT's ``Q K^T`` and ``A V`` matmuls,
the part that grows with ``seq_len ** 2``, count as zero; we add one. Element-wise work (ReLU, BatchNorm, the
``x * 0`` of ``zero``, softmax, GELU, LayerNorm) is still not counted.
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import time
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import BertnasError

aten = torch.ops.aten


def count_params(module: nn.Module) -> int:
    """Number of parameters (embeddings included); a tensor shared by several modules counts once.

    Tied weights (e.g. an MLM decoder reusing the word embeddings) are the same storage, so counting them
    twice would overstate the model size. We dedupe by Parameter identity and by storage location, which
    also catches two Parameter objects that view the same memory.
    """
    seen: set[tuple[Any, ...]] = set()
    total = 0
    for p in module.parameters():  # already drops repeated Parameter objects
        key = _storage_key(p)
        if key in seen:
            continue
        seen.add(key)
        total += p.numel()
    return total


def _storage_key(t: torch.Tensor) -> tuple[Any, ...]:
    try:
        return (t.device.type, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
    except (RuntimeError, NotImplementedError):  # meta / fake tensors have no real storage
        return ("id", id(t))


def _kernel_elems(kernel_size: Any) -> int:
    if isinstance(kernel_size, int):
        return kernel_size
    return math.prod(int(k) for k in kernel_size)


def _pool_flop(x_shape: Any, kernel_size: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """Pooling reads ``kernel`` inputs per output element: one compare/add each."""
    shape = out_shape
    if isinstance(shape, (tuple, list)) and shape and not isinstance(shape[0], int):
        shape = shape[0]  # *_with_indices ops return (values, indices)
    return math.prod(shape) * _kernel_elems(kernel_size)


def _cpu_sdpa_flop(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """``softmax(Q K^T) V`` as two batched matmuls: 2 * B * H * Lq * Lk * (E + Ev)."""
    b, h, lq, e = query
    lk, ev = key[-2], value[-1]
    return 2 * b * h * lq * lk * (e + ev)


_POOL_OPS = (
    aten.max_pool1d,
    aten.max_pool1d_with_indices,
    aten.max_pool2d,
    aten.max_pool2d_with_indices,
    aten.max_pool3d,
    aten.max_pool3d_with_indices,
    aten.avg_pool1d,
    aten.avg_pool2d,
    aten.avg_pool3d,
)
EXTRA_FLOP_MAPPING: dict[Any, Callable[..., int]] = {op: _pool_flop for op in _POOL_OPS}
EXTRA_FLOP_MAPPING[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flop
"""Extra FlopCounterMode formulas (aten op packet -> formula) used by :func:`count_flops`."""


def count_flops(module: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of one forward call ``module(*args, **kwargs)``, pooling included (2 FLOPs per multiply-add).

    Runs under ``torch.no_grad`` with every submodule temporarily in eval mode (their flags restored
    afterwards): we measure inference cost, and a train-mode BatchNorm would otherwise update its running
    statistics as a side effect of being measured.
    """
    modules = list(module.modules()) if isinstance(module, nn.Module) else []
    flags = [m.training for m in modules]
    try:
        for m in modules:
            m.training = False
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_MAPPING) as counter:
            module(*args, **kwargs)
    finally:
        for m, flag in zip(modules, flags):
            m.training = flag
    return int(counter.get_total_flops())


def measure_latency(
    fn: Callable[[], Any], warmup: int = 3, repeats: int = 10, threads: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Wall-clock time of ``fn()`` in milliseconds: median, mean and min over ``repeats`` timed calls.

    The thread count is pinned when ``threads`` is given (and restored afterwards) because CPU latency
    depends on it more than on anything else; warm-up calls absorb one-off allocation and kernel selection.
    On a CUDA ``device`` each call is timed by CUDA events (GPU time, not the host's launch time).
    """
    if repeats < 1:
        raise BertnasError(f"latency repeats must be >= 1, got {repeats}; pass repeats=1 or more")
    if warmup < 0:
        raise BertnasError(f"latency warmup must be >= 0, got {warmup}; pass warmup=0 or more")
    if threads is not None and threads < 1:
        raise BertnasError(f"thread count must be >= 1, got {threads}; pass threads=None to keep torch's default")
    if device is not None and torch.device(device).type == "cuda":
        return _cuda_latency(fn, warmup, repeats)
    previous = torch.get_num_threads()
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times: list[float] = []
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        used_threads = torch.get_num_threads()
        with torch.inference_mode():
            for _ in range(warmup):
                fn()
            sync()
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                sync()
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        if threads is not None:
            torch.set_num_threads(previous)
    return _timings(times, used_threads)


def _timings(times: list[float], threads: int, **extra: Any) -> dict[str, Any]:
    """The summary every latency measurement returns (milliseconds)."""
    return {"median_ms": statistics.median(times), "mean_ms": statistics.fmean(times), "min_ms": min(times),
            "repeats": len(times), "threads": threads, **extra}


def _cuda_latency(fn: Callable[[], Any], warmup: int, repeats: int) -> dict[str, Any]:
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(float(start.elapsed_time(end)))
    return _timings(times, torch.get_num_threads(), timer="cuda events")


def random_batch(vocab_size: int, batch: int, seq_len: int, generator: torch.Generator, device: str) -> dict:
    """A tokenizer-style batch of random ids from ``[5, vocab_size)`` (no special tokens), an all-ones mask and
    zero token types: the inputs every latency measurement times."""
    ids = torch.randint(5, vocab_size, (batch, seq_len), generator=generator)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "token_type_ids": torch.zeros_like(ids).to(device),
    }


def profile_classifier(
    model: nn.Module,
    vocab_size: int,
    batch_sizes: Iterable[int] = (1, 32),
    seq_len: int = 128,
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 10,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Params, FLOPs (batch 1) and median latency per batch size of an HF-style sequence classifier.

    Teacher and student are profiled by this same function on the same random inputs (ids drawn from
    ``[5, vocab_size)`` to skip special tokens, all-ones mask, zero token types), so their numbers compare.
    The model is moved to ``device`` and left in eval mode.
    """
    batch_sizes = tuple(int(b) for b in batch_sizes)
    if vocab_size <= 5:
        raise BertnasError(f"vocab_size must be > 5 to draw non-special token ids, got {vocab_size}")
    if seq_len < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise BertnasError(f"seq_len and batch sizes must be >= 1, got seq_len={seq_len}, batch_sizes={batch_sizes}")
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(max_pos, int) and seq_len > max_pos:
        raise BertnasError(f"seq_len {seq_len} exceeds the model's max_position_embeddings {max_pos}; pass a smaller seq_len")
    model.to(device)
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    result: dict[str, Any] = {"params": count_params(model)}
    result["flops"] = count_flops(model, **random_batch(vocab_size, 1, seq_len, generator, device))
    used_threads = torch.get_num_threads() if threads is None else threads
    for b in batch_sizes:
        batch = random_batch(vocab_size, b, seq_len, generator, device)
        timing = measure_latency(lambda: model(**batch), warmup=warmup, repeats=repeats, threads=threads)
        result[f"latency_ms_b{b}"] = timing["median_ms"]
        used_threads = timing["threads"]
    result["seq_len"] = seq_len
    result["threads"] = used_threads
    return result


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                    value = line.split(":", 1)[1].strip()
                    if value and not value.isdigit():
                        return value
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware_info() -> dict[str, Any]:
    """Where the numbers were measured: latencies mean nothing without the CPU and thread count."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
