"""Command line of deployment: ``bertnas export --out RUN [--format onnx] [--quantize int8]``.

RUN is an AdaBERT run or a NAS-BERT fine-tuning run (see ``source.py``).

Values are checked by us, not by argparse ``choices``, so a wrong one is the usual one-line
``bertnas: error: ...`` with exit 2 rather than argparse's usage block.
"""
from __future__ import annotations

import argparse

from .onnx import DEFAULT_TOLERANCE, FORMATS, QUANTIZATIONS


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    text = ("export the run's final model (RUN/model) to ONNX in RUN/export/, checked against PyTorch on the "
            "run's dev data; optionally quantized to int8. RUN is an AdaBERT run or a NAS-BERT fine-tuning run")
    p = sub.add_parser("export", help="export the trained student to ONNX (+ int8)", description=text)
    p.add_argument("--out", required=True, help="run directory holding model/ (from `bertnas run`, `bertnas retrain` "
                   "or `bertnas nasbert finetune --out RUN`)")
    p.add_argument("--format", default="onnx", metavar="{" + ",".join(FORMATS) + "}", help="export format (default: onnx)")
    p.add_argument("--quantize", default=None, metavar="{" + ",".join(QUANTIZATIONS) + "}",
                   help="also write a dynamically quantized model (model.int8.onnx) and report its dev metric")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"max abs logit difference ONNX vs PyTorch allowed on dev (default: {DEFAULT_TOLERANCE:g})")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's recommended one)")
    p.add_argument("--no-latency", dest="latency", action="store_false",
                   help="skip timing PyTorch and onnxruntime (batch 1 and 32)")


def run_export_command(args: argparse.Namespace) -> None:
    from .onnx import export_run

    result = export_run(args.out, args.format, args.quantize, args.tolerance, args.opset, args.latency)
    print(export_summary(result, args.out))


def export_summary(result: dict, out: str) -> str:
    """A few lines for the terminal; export.json holds everything."""
    check, metric = result["check"], result["metric"]
    lines = [f"exported {out}/export/model.onnx ({result['exporter']} exporter, opset {result['opset']}): "
             f"max |logit diff| vs PyTorch {check['max_abs_diff']:.2e} (tolerance {check['tolerance']:g}), "
             f"predictions agree {100 * check['prediction_agreement']:.1f}% on {check['examples']} dev examples"]
    dev = result["dev"]
    lines.append("dev " + metric + ": " + ", ".join(f"{k} {v[metric]:.4f}" for k, v in dev.items()))
    if "int8" in result:
        q = result["int8"]
        lines.append(f"int8: {q['bytes'] / 1e6:.2f} MB (fp32 {q['fp32_bytes'] / 1e6:.2f} MB), {metric} change "
                     f"{q['metric_change']:+.4f}, predictions agree {100 * q['prediction_agreement']:.1f}%")
    if "latency" in result:
        lat = result["latency"]
        parts = [f"{k} {v['latency_ms_b1']:.2f} / {v['latency_ms_b32']:.2f}" for k, v in lat.items() if isinstance(v, dict)]
        lines.append(f"latency ms b1 / b32 (seq {lat['seq_len']}, {lat['threads']} threads, median): " + ", ".join(parts))
    lines.append(f"details: {out}/export/export.json")
    return "\n".join(lines)
