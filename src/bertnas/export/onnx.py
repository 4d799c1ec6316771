"""Export a finished run's student to ONNX, check it against PyTorch on the run's dev data, optionally quantize.

RUN is an AdaBERT run (``bertnas run`` / ``retrain``) or a NAS-BERT fine-tuning run (``bertnas nasbert finetune
--out RUN``); :mod:`.source` tells them apart by their files and says where the model and the dev data are.

    RUN/model  --torch.onnx.export-->  RUN/export/model.onnx  (inputs input_ids, attention_mask, token_type_ids,
                                        output logits; axes 0 "batch" and 1 "sequence" dynamic)
               --onnxruntime.quantization.quantize_dynamic-->  RUN/export/model.int8.onnx   (--quantize int8)

Exporter (``measure/onnx_export.py``, shared with ``bertnas evaluate``'s onnxruntime latency): the dynamo
exporter (``torch.export`` + onnxscript), which torch >= 2.9 recommends and makes the
default; it gives a graph with no traced-in shapes. ``torch.export`` refuses data-dependent Python control
flow, and the pair student has one (``pair_layout`` asks ``if bool(no_b.any())`` before splitting rows that
carry no sentence-B token types at [SEP]). Where the dynamo exporter fails, or its graph fails the check
below, we fall back to the TorchScript exporter, traced on a dev batch plus the same rows with all-zero token
types, so the trace records that branch (its ``torch.where`` is the identity on rows that do have B types). Either way the exported file is only kept
if it matches PyTorch on every dev example (and, for pairs, on the zero-token-type copies) within
``tolerance`` (max abs logit difference); export.json records which exporter ran and why.

Everything is written into a temp directory that replaces ``RUN/export`` in one rename: a failed check or a
Ctrl-C leaves the previous export, or none, never half of one.
"""
from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import BertnasError, first_line
from ..measure.onnx_deps import require_onnx, require_onnxruntime
from ..measure.onnx_export import INPUT_NAMES, OUTPUT_NAMES, LogitsOnly, export_model, with_zero_token_types  # noqa: F401
from ..measure.onnx_latency import onnx_latency, ort_feed, ort_session
from .source import RunSource, open_run

logger = logging.getLogger("bertnas")

FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
DEFAULT_TOLERANCE = 1e-4
"""Max abs logit difference allowed between onnxruntime fp32 and PyTorch fp32 on the dev data."""


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization (weights int8, activations quantized on the fly) with onnxruntime's quantizer.

    The dynamo exporter stores intermediate shapes (``value_info``) that the quantizer's own shape inference
    contradicts, so it quantizes a copy without them; onnxruntime infers the shapes again at load.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load(str(src))
    del proto.graph.value_info[:]
    plain = dst.with_name(dst.stem + ".plain.onnx")
    onnx.save(proto, str(plain))
    root = logging.getLogger()
    level = root.level
    try:  # the quantizer logs every tensor it skips on the root logger: keep the command's output readable
        root.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(plain), str(dst), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
        plain.unlink(missing_ok=True)


def torch_logits(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([model(**{k: b[k] for k in INPUT_NAMES}).logits.float() for b in batches]).numpy()


def ort_logits(session: Any, batches: list[dict[str, torch.Tensor]]) -> np.ndarray:
    return np.concatenate([session.run(["logits"], ort_feed(session, b))[0] for b in batches]).astype(np.float32)


def compare(reference: np.ndarray, other: np.ndarray, regression: bool) -> dict[str, float]:
    """Max abs logit difference and the share of examples with the same prediction."""
    diff = float(np.abs(reference - other).max()) if reference.size else 0.0
    if regression:
        agree = 1.0  # no classes: the difference is the whole story
    else:
        agree = float((reference.argmax(-1) == other.argmax(-1)).mean())
    return {"max_abs_diff": diff, "prediction_agreement": agree}


def export_run(run_dir: str | Path, fmt: str = "onnx", quantize: str | None = None,
               tolerance: float = DEFAULT_TOLERANCE, opset: int | None = None, latency: bool = True) -> dict:
    """Export ``RUN/model`` to ``RUN/export/`` (model.onnx, tokenizer, config.json, export.json), checked on dev.

    ``RUN`` is an AdaBERT run or a NAS-BERT fine-tuning run (see :mod:`.source`); both go through the same
    export, check, quantization and timing. ``latency``: also time PyTorch and onnxruntime at the run's
    sequence length / threads / repeats (batch 1 and 32, median). Returns what export.json holds.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..data.encode import batches as make_batches, encode
    from ..data.metrics import compute_metrics
    from ..measure.profile import profile_classifier
    from ..utils import atomic_dir, load_model_dir, run_metadata, write_json

    if fmt not in FORMATS:
        raise BertnasError(f"unknown --format {fmt!r}: the formats are {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise BertnasError(f"unknown --quantize {quantize!r}: pass {' or '.join(QUANTIZATIONS)}, or leave it out")
    if not tolerance > 0:
        raise BertnasError(f"--tolerance must be > 0, got {tolerance}")
    run_dir = Path(run_dir)
    source = open_run(run_dir)
    require_onnx()
    model_dir = source.model_dir
    model = load_model_dir(AutoModelForSequenceClassification, model_dir, source.model_step).cpu().eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=source.trust_remote_code)
    data = source.load_data()
    spec = data.spec
    dev = encode(tokenizer, data.dev, source.max_seq_len, spec.is_regression)
    dev_batches = [{k: b[k] for k in INPUT_NAMES} for b in make_batches(dev, 32)]
    labels = dev.labels.numpy()
    # AdaBERT pair students split at [SEP] when token types are all zero: check that branch too
    zero_types = bool(getattr(model.config, "pair_input", False))
    check_batches = dev_batches + ([with_zero_token_types(b) for b in dev_batches] if zero_types else [])
    example = next((b for b in dev_batches if b["input_ids"].shape[0] >= 2 and b["input_ids"].shape[1] >= 2),
                   None)
    if example is None:
        raise BertnasError(f"the dev split of {run_dir} has too few examples to trace an export (need 2)")
    threads = source.latency_threads
    ort = require_onnxruntime()
    import onnx

    with atomic_dir(run_dir / "export") as tmp:
        logger.info("exporting %s to ONNX...", model_dir)
        ref = torch_logits(model, check_batches)
        checked: dict[str, Any] = {}

        def accept(path: Path) -> str | None:
            checked.clear()
            checked.update(examples=len(dev), rows_checked=int(ref.shape[0]), tolerance=tolerance, passed=False)
            try:
                checked["session"] = ort_session(path, threads)
                got = ort_logits(checked["session"], check_batches)
            except Exception as exc:  # onnxruntime's own error types: a graph that cannot run the dev data
                checked["error"] = first_line(exc, 200)
                return f"onnxruntime cannot run it on dev ({checked['error']})"
            checked.update(compare(ref, got, spec.is_regression), logits=got)
            checked["passed"] = checked["max_abs_diff"] <= tolerance and bool(np.isfinite(got).all())
            return None if checked["passed"] else f"max abs logit diff {checked['max_abs_diff']:.3g} > {tolerance:g}"

        info = export_model(model, example, tmp / "model.onnx", opset, accept)
        session, got = checked.pop("session", None), checked.pop("logits", None)
        check = checked
        if not check["passed"]:
            why = check.get("error") or f"differs from PyTorch on dev by up to {check['max_abs_diff']:.3g}"
            raise BertnasError(f"the ONNX model {why} (--tolerance {tolerance:g}): nothing written; please report "
                               f"this with torch {torch.__version__}, onnxruntime {ort.__version__}")
        n = len(dev)
        dev_metrics = {"pytorch": compute_metrics(spec, ref[:n], labels), "onnx": compute_metrics(spec, got[:n], labels)}
        files = {"onnx": "model.onnx"}
        int8: dict[str, Any] = {}
        if quantize == "int8":
            logger.info("quantizing to int8 (dynamic, onnxruntime)...")
            try:
                quantize_int8(tmp / "model.onnx", tmp / "model.int8.onnx")
                got8 = ort_logits(ort_session(tmp / "model.int8.onnx", threads), dev_batches)
            except Exception as exc:  # the quantizer's and onnxruntime's own error types
                raise BertnasError(f"int8 quantization failed ({first_line(exc, 150)}): nothing written; "
                                   "export without --quantize") from exc
            dev_metrics["int8"] = compute_metrics(spec, got8, labels)
            int8 = {**compare(ref[:n], got8, spec.is_regression),
                    "metric_change": dev_metrics["int8"][spec.headline] - dev_metrics["pytorch"][spec.headline],
                    "bytes": (tmp / "model.int8.onnx").stat().st_size, "fp32_bytes": (tmp / "model.onnx").stat().st_size}
            files["int8"] = "model.int8.onnx"
        tokenizer.save_pretrained(tmp)
        shutil.copy2(model_dir / "config.json", tmp / "config.json")
        result: dict[str, Any] = {
            "format": fmt, "files": files, **info, "outputs": list(OUTPUT_NAMES),
            "dynamic_axes": {"batch": 0, "sequence": 1}, "source": str(model_dir), "run_kind": source.kind,
            "task": source.task, "max_seq_len": source.max_seq_len, "check": check,
            "metric": spec.headline, "dev": dev_metrics,
        }
        if int8:
            result["int8"] = int8
        if latency:
            result["latency"] = _latencies(model, session, tmp, files, source, profile_classifier)
        result["versions"] = {**run_metadata(), "onnx": onnx.__version__, "onnxruntime": ort.__version__}
        write_json(tmp / "export.json", result)
    return result


def _latencies(model: nn.Module, session: Any, tmp: Path, files: dict, source: RunSource,
               profile_classifier: Any) -> dict:
    """PyTorch and onnxruntime (fp32, int8) latency at batch 1 and 32, same inputs and threads, median."""
    vocab = model.config.vocab_size
    seq_len, threads, repeats = source.latency_seq_len, source.latency_threads, source.latency_repeats
    prof = dict(batch_sizes=(1, 32), seq_len=seq_len, threads=threads, repeats=repeats)
    logger.info("measuring latency (seq %d, %d threads, batch 1 and 32): PyTorch and onnxruntime...", seq_len, threads)
    pt = profile_classifier(model, vocab, **prof)
    out = {"seq_len": seq_len, "threads": threads, "repeats": repeats,
           "statistic": "median", "device": "cpu",
           "pytorch": {k: pt[k] for k in ("latency_ms_b1", "latency_ms_b32")}}
    for name, file in files.items():
        sess = session if name == "onnx" else None
        ort_prof = onnx_latency(tmp / file, vocab, session=sess, **prof)
        out[name] = {k: ort_prof[k] for k in ("latency_ms_b1", "latency_ms_b32")}
    for name in files:
        out[name]["speedup_b1"] = out["pytorch"]["latency_ms_b1"] / out[name]["latency_ms_b1"]
        out[name]["speedup_b32"] = out["pytorch"]["latency_ms_b32"] / out[name]["latency_ms_b32"]
    return out
