"""Command line of the bench: ``bertnas bench`` (placeholder, being built)."""
from __future__ import annotations

import argparse

from ..errors import BertnasError


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("bench", help="the searched student against baselines and ablations (in progress)")


def run_bench_command(args: argparse.Namespace) -> None:
    raise BertnasError("bertnas bench is not built yet")
