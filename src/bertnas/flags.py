"""The run settings as command-line flags, shared by the commands that take them (``bertnas run|probe|search|
retrain|evaluate``, ``teacher finetune``, ``bench``).

One flag per field of :class:`bertnas.config.RunConfig`, grouped by the field's ``group``; ``--config FILE``
(YAML or JSON) sets the same keys. Precedence: defaults < saved run config (later stages) < config file < flags.
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from pathlib import Path
from typing import get_type_hints

from .config import RunConfig, load_config_file
from .errors import BertnasError

GROUPS = ["data", "split", "teacher", "probes", "space", "search", "retrain", "measure", "general"]


def add_config_flags(parser: argparse.ArgumentParser, groups: list[str] = GROUPS) -> None:
    """One flag per :class:`RunConfig` field of ``groups``, in an argument group per settings group. A flag not
    given is absent from the parsed namespace, so only what the user typed overrides the file and the run."""
    hints = get_type_hints(RunConfig)
    sections = {g: parser.add_argument_group(f"{g} settings") for g in groups}
    for f in fields(RunConfig):
        group = f.metadata["group"]
        if group not in sections:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(hints[f.name])
        default = f.default if f.default is not MISSING else None
        help_text = f"{f.metadata['help']} (default: {default})"
        if "bool" in kind:
            sections[group].add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            typ = int if "int" in kind else float if "float" in kind else str
            choices = f.metadata.get("choices")
            sections[group].add_argument(flag, type=typ, default=argparse.SUPPRESS, choices=choices,
                                         metavar="{" + ",".join(choices) + "}" if choices else f.name.upper(),
                                         help=help_text)


def explicit_settings(args: argparse.Namespace) -> dict:
    """The run settings given as flags (the others are absent from ``args``, see :func:`add_config_flags`)."""
    names = {f.name for f in fields(RunConfig)}
    return {k: v for k, v in vars(args).items() if k in names}


def given_settings(args: argparse.Namespace) -> set[str]:
    """The names of the settings the user gave, as flags or in ``--config``: what a plan must not change."""
    names = set(explicit_settings(args))
    if getattr(args, "config", None):
        names |= {str(k).replace("-", "_") for k in read_config_file(args.config)}
    return names


def read_config_file(path: str) -> dict:
    """``--config FILE`` read by :func:`load_config_file`, plus the checks it leaves to us: UTF-8 text and
    setting names that are text (YAML allows numbers, booleans and null as keys)."""
    try:
        values = load_config_file(path)
    except UnicodeDecodeError as exc:
        raise BertnasError(f"config file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    bad = [k for k in values if not isinstance(k, str)]
    if bad:
        raise BertnasError(f"config file {path}: setting names must be text, got {bad[0]!r}: use names like "
                           "search_epochs or search-epochs")
    return values


def resolve_config(args: argparse.Namespace, from_run_dir: bool) -> RunConfig:
    """The validated settings of a command: defaults, or the run directory's saved config (``from_run_dir``, for
    the steps after ``probe``), then ``--config FILE``, then the flags."""
    from .rundir import load_run_config

    file_values = read_config_file(args.config) if getattr(args, "config", None) else {}
    if from_run_dir:
        cfg = load_run_config(Path(args.out))
    else:
        cfg = RunConfig()
    cfg = cfg.update(file_values, str(args.config) if file_values else "config")
    return cfg.update(explicit_settings(args), "command line").validate()
