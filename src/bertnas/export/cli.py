"""Command line of deployment: ``bertnas export`` (placeholder, being built)."""
from __future__ import annotations

import argparse

from ..errors import BertnasError


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("export", help="export a trained student to ONNX (in progress)")


def run_export_command(args: argparse.Namespace) -> None:
    raise BertnasError("bertnas export is not built yet")
