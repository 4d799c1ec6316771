"""The optional ONNX dependencies (the ``onnx`` extra): a one-line error naming the extra when one is missing.

Shared by the graph export (:mod:`.onnx_export`), the onnxruntime timing (:mod:`.onnx_latency`) and
``bertnas export``; it imports neither, so both import it.
"""
from __future__ import annotations

from typing import Any

from ..errors import BertnasError

INSTALL_HINT = 'pip install "bertnas[onnx]"'


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a one-line error naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BertnasError(f"ONNX export and onnxruntime latency need onnx and onnxruntime: {INSTALL_HINT}") from exc
    return onnxruntime


def require_onnx() -> None:
    """onnx and onnxruntime, or a one-line error naming the extra that installs them."""
    require_onnxruntime()
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise BertnasError(f"ONNX export needs onnx and onnxruntime: {INSTALL_HINT}") from exc
