"""onnxruntime latency of an exported classifier, measured the way :func:`profile_classifier` measures PyTorch.

Same random inputs (:func:`bertnas.measure.profile.random_batch`, ids from ``[5, vocab_size)``, all-ones mask,
zero token types), same timer (:func:`measure_latency`: warm-up, median of repeats) and the same thread count
(onnxruntime's intra-op pool pinned to ``threads``, one inter-op thread, sequential execution), so the two
numbers sit side by side in ``export.json`` and ``results.json``.

:func:`model_onnx_latency` is what ``bertnas evaluate`` calls: export to a temp directory, check, time, delete.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import BertnasError, first_line
from .onnx_deps import require_onnx, require_onnxruntime
from .onnx_export import INPUT_NAMES, export_model
from .profile import measure_latency, random_batch

logger = logging.getLogger("bertnas")
_missing_said = False


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
        raise BertnasError(f"onnxruntime cannot load {path} ({first_line(exc, 120)}): "
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
    random_batch(vocab_size, 1, seq_len, generator, "cpu")  # profile_classifier's FLOP batch: keep the stream aligned
    result: dict[str, Any] = {}
    for b in batch_sizes:
        feed = ort_feed(session, random_batch(vocab_size, b, seq_len, generator, "cpu"))
        timing = measure_latency(lambda: session.run(None, feed), warmup=warmup, repeats=repeats)
        result[f"latency_ms_b{b}"] = timing["median_ms"]
    import onnxruntime

    result.update(seq_len=seq_len, threads=threads, repeats=repeats, statistic="median",
                  runtime=f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider")
    return result


def model_onnx_latency(
    model: torch.nn.Module,
    example: dict[str, torch.Tensor],
    batch_sizes: Iterable[int] = (1, 32),
    seq_len: int = 128,
    threads: int | None = None,
    repeats: int = 10,
    tolerance: float = 1e-4,
) -> dict[str, Any] | None:
    """onnxruntime latency of a PyTorch classifier (eval mode, CPU), measured as :func:`onnx_latency` does.

    The model is exported (``measure.onnx_export.export_model``) into a temporary directory that is removed
    afterwards, and its logits checked against PyTorch's on ``example`` (a padded batch of real inputs, B >= 2)
    within ``tolerance``. Returns ``{"latency_ms_b1", "latency_ms_b32", "exporter", "max_abs_diff", "runtime",
    ...}``, or None when it cannot measure: without onnx/onnxruntime (the install hint is logged once per
    process), or when the export fails or disagrees with PyTorch (a warning says why). Never raises for those:
    an evaluation does not fail for want of an optional number.
    """
    global _missing_said
    import numpy as np

    seed_for_check = 1
    try:
        require_onnx()
    except BertnasError as exc:
        if not _missing_said:
            logger.warning("onnxruntime latency skipped: %s", exc)
            _missing_said = True
        return None
    threads = int(threads or torch.get_num_threads())
    example = {k: example[k].cpu() for k in INPUT_NAMES}
    # checked on the real batch and on a batch of the timed shape, so a graph with a traced-in length fails here
    timed = random_batch(model.config.vocab_size, 2, seq_len, torch.Generator().manual_seed(seed_for_check), "cpu")
    checks = [example, {k: timed[k] for k in INPUT_NAMES}]
    with torch.inference_mode():
        refs = [model(**b).logits.float().numpy() for b in checks]
    with tempfile.TemporaryDirectory(prefix="bertnas-onnx-latency-") as tmp:
        path = Path(tmp) / "model.onnx"
        checked: dict[str, Any] = {}

        def accept(p: Path) -> str | None:
            checked.clear()
            try:
                checked["session"] = ort_session(p, threads)
                got = [checked["session"].run(["logits"], ort_feed(checked["session"], b))[0] for b in checks]
            except BertnasError as exc:
                return str(exc)
            except Exception as exc:  # onnxruntime's own error types: a graph that cannot run the inputs
                return f"onnxruntime cannot run it ({first_line(exc, 120)})"
            checked["max_abs_diff"] = max(float(np.abs(r - g).max()) if r.size else 0.0 for r, g in zip(refs, got))
            if not (checked["max_abs_diff"] <= tolerance and all(np.isfinite(g).all() for g in got)):
                return f"its logits differ from PyTorch's by {checked['max_abs_diff']:.3g} > {tolerance:g}"
            return None

        try:
            info = export_model(model, example, path, accept=accept)
            why = None if "max_abs_diff" in checked and checked["max_abs_diff"] <= tolerance else accept(path)
        except Exception as exc:  # torch.onnx's many error types (both exporters failed): skip, say why
            why = f"the export failed ({' '.join(str(exc).split())[:160]})"
        if why is not None:
            logger.warning("onnxruntime latency skipped: %s", why)
            return None
        try:
            result = onnx_latency(path, model.config.vocab_size, batch_sizes, seq_len, threads, repeats=repeats,
                                  session=checked["session"])
        except Exception as exc:  # onnxruntime's own error types at a batch size the check did not run
            logger.warning("onnxruntime latency skipped: onnxruntime failed while timing (%s)",
                           " ".join(str(exc).split())[:160])
            return None
        finally:
            checked.pop("session", None)
    return {**result, "exporter": info["exporter"], "max_abs_diff": checked["max_abs_diff"]}
