"""A Hugging Face classifier to an ONNX graph with dynamic batch and sequence axes (torch.onnx).

The graph export shared by ``bertnas export`` (which checks the file on the run's dev data, quantizes it and
writes ``RUN/export``) and by ``bertnas evaluate`` (which times the student in onnxruntime beside PyTorch).

Exporter: the dynamo exporter (``torch.export`` + onnxscript), which torch >= 2.9 recommends and makes the
default; it gives a graph with no traced-in shapes. The AdaBERT students (single sentence and pair) export with
it: their forward keeps batch and length symbolic (``ops.MaxPool`` pools through ``max_pool1d_with_indices``
under export; ``pair_layout`` splits pairs without data-dependent control flow). Where the dynamo exporter fails
(``torch.export`` refuses data-dependent Python control flow and shape specializations), or its graph fails the
caller's check, we fall back to the TorchScript exporter, traced on the example batch plus the same rows with
all-zero token types, so a model that branches on them has that branch recorded too.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from .onnx_deps import INSTALL_HINT, require_onnx

logger = logging.getLogger("bertnas")

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("logits",)


class LogitsOnly(nn.Module):
    """A Hugging Face classifier as ``(input_ids, attention_mask, token_type_ids) -> logits``: positional
    tensors in, one tensor out, which is what ONNX graphs take and give."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def with_zero_token_types(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch followed by the same rows with all-zero token types (what RoBERTa-style tokenizers give)."""
    return {"input_ids": torch.cat([batch["input_ids"]] * 2),
            "attention_mask": torch.cat([batch["attention_mask"]] * 2),
            "token_type_ids": torch.cat([batch["token_type_ids"], torch.zeros_like(batch["token_type_ids"])])}


def export_model(model: nn.Module, example: dict[str, torch.Tensor], path: Path, opset: int | None = None,
                 accept: Callable[[Path], str | None] | None = None) -> dict:
    """Write ``model`` (HF classifier, eval mode, CPU) to ``path`` as ONNX with dynamic batch and sequence axes.

    ``example`` is a padded batch (B >= 2, L >= 2) of real inputs. ``accept(path)`` checks a written file and
    returns None when it is good, else why not: a dynamo export that fails or is rejected is redone with the
    TorchScript exporter (whose file ``accept`` sees too). Returns ``{"exporter", "opset", "inputs", ...}``.
    """
    require_onnx()
    wrapper = LogitsOnly(model).eval()
    try:
        _export_dynamo(wrapper, example, path, opset)
        why = accept(path) if accept else None
        if why is None:
            return _describe(path, {"exporter": "dynamo"})
        reason = f"its graph fails the check: {why}"
    except Exception as exc:  # torch.export's many error types; the TorchScript path and the check follow
        reason = _reason(exc)
        logger.debug("dynamo export failed", exc_info=True)
    logger.info("the dynamo exporter cannot export this model (%s); using the TorchScript exporter", reason)
    path.unlink(missing_ok=True)
    _export_torchscript(wrapper, with_zero_token_types(example), path, opset)
    if accept:
        accept(path)
    return _describe(path, {"exporter": "torchscript", "dynamo_error": reason})


def _describe(path: Path, info: dict) -> dict:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    info["opset"] = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    info["inputs"] = [i.name for i in proto.graph.input]
    return info


def _reason(exc: BaseException) -> str:
    """A short, plain-text why for a failed dynamo export (its messages are pages long and coloured)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{exc!r} {exc.__cause__!r}")
    if "data-dependent" in text or "DataDependent" in text:
        return "torch.export: data-dependent Python control flow in the model"
    if "onnxscript" in text:
        return f"onnxscript is missing: {INSTALL_HINT}"
    return " ".join(text.split())[:200]


def _export_dynamo(wrapper: nn.Module, example: dict[str, torch.Tensor], path: Path, opset: int | None) -> None:
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = {name: {0: batch, 1: sequence} for name in INPUT_NAMES}
    captured = io.StringIO()  # the exporter prints progress and, on failure, graph dumps: kept for --verbose
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), \
                _quiet_loggers(("torch", "onnxscript", "onnx_ir")), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(wrapper, tuple(example[n] for n in INPUT_NAMES), dynamo=True,
                                        input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                                        dynamic_shapes=shapes, opset_version=opset, external_data=False, optimize=True)
            program.save(str(path))
    finally:
        logger.debug("dynamo exporter output:\n%s", captured.getvalue().strip())


@contextlib.contextmanager
def _quiet_loggers(prefixes: tuple[str, ...]) -> Iterator[None]:
    """Silence torch.export's own log lines (graph dumps, guard notes) while we try it: a failure is expected
    for some models and is handled, so the user should see our one line, not the exporter's pages."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in prefixes] + list(prefixes)
    saved = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.CRITICAL + 1)
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _export_torchscript(wrapper: nn.Module, example: dict[str, torch.Tensor], path: Path, opset: int | None) -> None:
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | {"logits": {0: "batch"}}
    with warnings.catch_warnings():  # TracerWarnings about Python ints and the deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, tuple(example[n] for n in INPUT_NAMES), str(path), dynamo=False,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES), dynamic_axes=axes,
                          opset_version=opset or 17, do_constant_folding=True)
