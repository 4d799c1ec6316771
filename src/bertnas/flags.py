"""AdaBERT's run settings as command-line flags, shared by the commands that take them (``bertnas run|probe|search|
retrain|evaluate``, ``teacher finetune``, ``bench``), over the one flag generator both methods use
(:func:`bertnas.config.add_settings_flags`; NAS-BERT's stages call it with their own settings classes).

One flag per field of :class:`bertnas.config.RunConfig`, grouped by the field's ``group``; ``--config FILE``
(YAML or JSON) sets the same keys. Precedence: defaults < saved run config (later stages) < config file < flags.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .config import RunConfig, add_settings_flags, given_flags, read_config_file, resolve_settings

GROUPS = ["data", "split", "teacher", "probes", "space", "search", "retrain", "measure", "general"]


def add_config_flags(parser: argparse.ArgumentParser, groups: list[str] = GROUPS) -> None:
    """One flag per :class:`RunConfig` field of ``groups`` (:func:`~bertnas.config.add_settings_flags`)."""
    add_settings_flags(parser, RunConfig, groups)


def explicit_settings(args: argparse.Namespace) -> dict:
    """The run settings given as flags (the others are absent from ``args``)."""
    return given_flags(args, RunConfig)


def given_settings(args: argparse.Namespace) -> set[str]:
    """The names of the settings the user gave, as flags or in ``--config``: what a plan must not change."""
    names = set(explicit_settings(args))
    if getattr(args, "config", None):
        names |= {str(k).replace("-", "_") for k in read_config_file(args.config)}
    return names


def resolve_config(args: argparse.Namespace, from_run_dir: bool) -> RunConfig:
    """The validated settings of a command: defaults, or the run directory's saved config (``from_run_dir``, for
    the steps after ``probe``), then ``--config FILE``, then the flags."""
    from .rundir import load_run_config

    return resolve_settings(args, RunConfig, load_run_config(Path(args.out)) if from_run_dir else None)
