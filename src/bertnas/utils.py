"""Small shared helpers: seeding, devices, atomic writes, hashing, run metadata."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import random
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .errors import BertnasError, first_line

logger = logging.getLogger("bertnas")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """Turn 'auto', 'cpu', 'cuda', 'cuda:1', 'mps' into a device, with a clear error if unavailable.
    Under torchrun, 'auto' and 'cuda' mean this process's GPU (``cuda:LOCAL_RANK``)."""
    from .training.distributed import launched, local_rank

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise BertnasError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BertnasError(f"device {name!r} asked for but CUDA is not available: use --device cpu")
    if device.type == "cuda" and device.index is None and launched():
        device = torch.device("cuda", local_rank())
    return device


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory next to ``target``; on success it replaces ``target`` in one rename.

    On failure the temporary directory is removed, so a crash never leaves a half-written output.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_save_png(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure as a PNG through a temporary file and a rename; readable by all (a plot is shared)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=fig.dpi)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise BertnasError(f"{path} not found: run the step that writes it first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BertnasError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}): fix or delete it") from exc


def read_weights(path: str | Path, step: str) -> dict[str, torch.Tensor]:
    """A safetensors file written by stage ``step``; a missing or damaged one is a one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise BertnasError(f"{path} not found: run `bertnas {step}` first")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BertnasError(f"{path} is damaged ({first_line(exc, 100)}): run `bertnas {step}` again") from exc


def load_model_dir(cls: Any, path: str | Path, step: str) -> Any:
    """``cls.from_pretrained(path)`` for a model directory a stage wrote, with a one-line error if it is damaged."""
    from safetensors import SafetensorError

    path = Path(path)
    if not (path / "config.json").is_file():
        raise BertnasError(f"{path} not found or incomplete: run `bertnas {step}` first")
    try:
        return cls.from_pretrained(str(path))
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        raise BertnasError(f"the model in {path} cannot be loaded ({first_line(exc, 100)}): "
                           f"run `bertnas {step}` again") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def hash_file(path: str | Path, h: "hashlib._Hash | None" = None) -> str:
    """SHA-256 of a file's bytes (streamed)."""
    h = h or hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_obj(obj: Any) -> str:
    """Stable SHA-256 of a JSON-serializable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()


def run_metadata() -> dict[str, Any]:
    """Versions, host and git hash, saved into every run directory."""
    import transformers

    from . import __version__

    meta: dict[str, Any] = {
        "bertnas": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        root = Path(__file__).resolve().parents[2]
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            meta["git_sha"] = sha.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return meta


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )


_STEP_RECORDS: list[dict] | None = None


@contextlib.contextmanager
def recording_steps() -> Iterator[list[dict]]:
    """Collect ``{"desc", "steps", "seconds"}`` from every progress loop that finishes inside the block
    (the dry run's clock); nothing is displayed meanwhile."""
    global _STEP_RECORDS
    previous, _STEP_RECORDS = _STEP_RECORDS, []
    try:
        yield _STEP_RECORDS
    finally:
        _STEP_RECORDS = previous


PROGRESS_INTERVAL_ENV = "BERTNAS_PROGRESS_INTERVAL"
"""Seconds between progress log lines when output is not a terminal (default 20)."""


def progress(iterable=None, *, total: int | None = None, desc: str = "", examples: int | None = None, **kwargs):
    """A progress display for loops longer than a few seconds.

    On a terminal: a tqdm bar. Otherwise (a log file, CI): a log line at least every
    ``$BERTNAS_PROGRESS_INTERVAL`` seconds (20) with step / total, rate, examples per second (when
    ``examples``, the examples the whole loop covers, is given) and the time left, so a user who sent the
    output to a file can tell the run is alive and when it will end.
    """
    import sys

    from .training.distributed import is_main

    if _STEP_RECORDS is not None or not is_main():  # a dry run times the loops; ranks other than 0 are quiet
        return LogProgress(iterable, total=total, desc=desc, examples=examples, interval=float("inf"))
    if sys.stderr.isatty() and not os.environ.get("TQDM_DISABLE"):
        from tqdm.auto import tqdm

        kwargs.setdefault("leave", False)
        kwargs.setdefault("mininterval", 0.5)
        return tqdm(iterable, total=total, desc=desc, **kwargs)
    interval = float(os.environ.get(PROGRESS_INTERVAL_ENV, "20"))
    return LogProgress(iterable, total=total, desc=desc, examples=examples, interval=interval)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``20m``, ``2h``, ``1h30m`` or ``1.5h``; BertnasError otherwise."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", str(text).strip().lower())
    rebuilt = "".join(f"{a}{b}" for a, b in parts)
    if not parts or rebuilt != re.sub(r"\s+", "", str(text).strip().lower()):
        raise BertnasError(f"--time-budget {text!r} is not a duration: write it with units, e.g. 20m, 2h, 1h30m or 90s")
    seconds = sum(float(a) * _UNITS[b] for a, b in parts)
    if not 0 < seconds <= 30 * 86400:
        raise BertnasError(f"--time-budget {text!r} must be more than 0 and at most 30 days")
    return seconds


def process_age_s() -> float:
    """Seconds since this process started (Linux: /proc; elsewhere 0): a wall-time budget counts start-up too."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - start, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``2h07m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class LogProgress:
    """tqdm's interface (iterate, ``update``, ``set_postfix``, context manager) writing periodic log lines."""

    def __init__(self, iterable=None, total: int | None = None, desc: str = "", examples: int | None = None,
                 interval: float = 20.0) -> None:
        import time

        self.iterable, self.desc, self.interval = iterable, desc or "progress", interval
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.examples = total, examples
        self.n, self.postfix, self.lines = 0, {}, 0
        self.start = self.last = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def update(self, n: int = 1) -> None:
        import time

        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.lines += 1
            logger.info("%s", self.line(now - self.start))

    def line(self, elapsed: float) -> str:
        rate = self.n / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: step {self.n}/{self.total if self.total else '?'}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.2f} steps/s")
        if self.examples and self.total:
            parts.append(f"{rate * self.examples / self.total:.0f} examples/s")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        parts.append(f"elapsed {format_duration(elapsed)}")
        if self.total and rate > 0:
            parts.append(f"left {format_duration((self.total - self.n) / rate)}")
        return ", ".join(parts)

    def close(self) -> None:
        import time

        if _STEP_RECORDS is not None and not getattr(self, "recorded", False):
            self.recorded = True
            _STEP_RECORDS.append({"desc": self.desc, "steps": self.n, "seconds": time.monotonic() - self.start})
        if self.lines:  # only loops long enough to have reported say they are done
            self.lines = 0
            logger.info("%s: done, %d steps in %s", self.desc, self.n, format_duration(time.monotonic() - self.start))
