"""Command line of NAS-BERT: ``bertnas nasbert supernet|latency|select|finetune`` (placeholder, being built)."""
from __future__ import annotations

import argparse

from ..errors import BertnasError


def add_nasbert_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nasbert", help="NAS-BERT: one supernet, models of several sizes (in progress)")
    p.add_argument("nasbert_command", nargs="?", help="supernet, latency, select or finetune")


def run_nasbert_command(args: argparse.Namespace) -> None:
    raise BertnasError("bertnas nasbert is not built yet")
