"""onnxruntime latency of an exported classifier, measured the way :func:`profile_classifier` measures PyTorch.

Same random inputs (:func:`bertnas.measure.profile._random_batch`, ids from ``[5, vocab_size)``, all-ones mask,
zero token types), same timer (:func:`measure_latency`: warm-up, median of repeats) and the same thread count
(onnxruntime's intra-op pool pinned to ``threads``, one inter-op thread, sequential execution), so the two
numbers sit side by side in ``export.json`` and ``results.json``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import BertnasError
from .profile import _random_batch, measure_latency

INSTALL_HINT = 'pip install "bertnas[onnx]"'


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a one-line error naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BertnasError(f"ONNX export and onnxruntime latency need onnx and onnxruntime: {INSTALL_HINT}") from exc
    return onnxruntime


def ort_available() -> bool:
    """True when onnxruntime imports (``evaluate`` reports ORT latency only then)."""
    try:
        require_onnxruntime()
    except BertnasError:
        return False
    return True


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """A CPU InferenceSession with its thread pools pinned: ``threads`` intra-op (None: torch's count), one inter-op."""
    ort = require_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    if not Path(path).is_file():
        raise BertnasError(f"{path} not found: run `bertnas export --out RUN` first")
    try:
        return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise BertnasError(f"onnxruntime cannot load {path} ({str(exc).splitlines()[0][:120]}): "
                           "run `bertnas export` again") from exc


def ort_feed(session: Any, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The numpy inputs the session declares, taken from a tokenizer-style batch (extra keys are dropped:
    a TorchScript export prunes inputs the model ignores, e.g. token types of a single-sentence model)."""
    names = {i.name for i in session.get_inputs()}
    return {k: v.cpu().numpy() for k, v in batch.items() if k in names}


def onnx_latency(
    path: str | Path,
    vocab_size: int,
    batch_sizes: Iterable[int] = (1, 32),
    seq_len: int = 128,
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 10,
    seed: int = 0,
    session: Any = None,
) -> dict[str, Any]:
    """Median onnxruntime latency (ms) per batch size of the ONNX classifier at ``path``.

    Returns ``{"latency_ms_b1": ..., "latency_ms_b32": ..., "seq_len", "threads", "repeats", "runtime"}``, keys
    as :func:`profile_classifier` uses, so a report can put both side by side. The inputs are drawn exactly as
    profile_classifier draws them (same seed, same order), so both time the same batches.
    """
    batch_sizes = tuple(int(b) for b in batch_sizes)
    if vocab_size <= 5:
        raise BertnasError(f"vocab_size must be > 5 to draw non-special token ids, got {vocab_size}")
    if seq_len < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise BertnasError(f"seq_len and batch sizes must be >= 1, got seq_len={seq_len}, batch_sizes={batch_sizes}")
    threads = int(threads or torch.get_num_threads())
    session = session or ort_session(path, threads)
    generator = torch.Generator().manual_seed(seed)
    _random_batch(vocab_size, 1, seq_len, generator, "cpu")  # profile_classifier's FLOP batch: keep the stream aligned
    result: dict[str, Any] = {}
    for b in batch_sizes:
        feed = ort_feed(session, _random_batch(vocab_size, b, seq_len, generator, "cpu"))
        timing = measure_latency(lambda: session.run(None, feed), warmup=warmup, repeats=repeats)
        result[f"latency_ms_b{b}"] = timing["median_ms"]
    import onnxruntime

    result.update(seq_len=seq_len, threads=threads, repeats=repeats, statistic="median",
                  runtime=f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider")
    return result
