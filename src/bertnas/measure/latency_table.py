"""A per-op latency table measured on this device: a model's predicted latency is the sum of its parts.

Keys are ``(op name, size, seq_len, batch)``; the size is a hidden size or any text naming the op's shape
(``"384>128"`` for a linear map), so any method's ops can be measured. Each entry is the median (or, with
``stat="min"``, the minimum) of ``repeats`` timed calls of the op alone on random inputs, with the thread
count pinned, under ``torch.inference_mode``. The minimum is the steadier statistic on a CPU shared with
other jobs (other processes only ever add time); whole models must then be measured with the same one. The table records the hardware and threads it was measured with, because a
table from another machine or thread count predicts nothing here.

:func:`cached_table` keeps a table in one JSON file and measures only what it is missing (NAS-BERT's
``latency`` stage keeps its table in the run directory; AdaBERT's ``--efficiency latency`` keeps one per
hidden size / sequence length / batch / threads / CPU / torch version in the cache directory).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..errors import BertnasError
from ..utils import progress, read_json, write_json
from .profile import hardware_info, measure_latency

logger = logging.getLogger("bertnas")


def table_key(op: str, size: int | str, seq_len: int, batch: int) -> str:
    return f"{op}|{size}|{seq_len}|{batch}"


@dataclass
class OpSpec:
    """One op to measure: a name, a size, a module factory and an input factory ``(batch, seq_len) -> args``."""

    op: str
    size: int | str
    build: Callable[[], nn.Module]
    inputs: Callable[[int, int], tuple]


@dataclass
class LatencyTable:
    """Milliseconds per ``(op, size, seq_len, batch)`` on the device described by ``hardware``."""

    entries: dict[str, float] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    repeats: int = 0
    stat: str = "median"
    calibration: dict[str, list[float]] = field(default_factory=dict)  # "seq_len|batch" -> [scale, offset_ms]

    def get(self, op: str, size: int | str, seq_len: int, batch: int) -> float:
        key = table_key(op, size, seq_len, batch)
        if key not in self.entries:
            known = sorted({k.split("|", 2)[2] for k in self.entries})
            raise BertnasError(f"latency table has no entry {key!r} (measured seq_len|batch: {', '.join(known)}): "
                               "measure it with the same --seq-len and --batch-sizes")
        return self.entries[key]

    def sum_of_parts(self, parts: Iterable[tuple[str, int | str]], seq_len: int, batch: int) -> float:
        return sum(self.get(op, size, seq_len, batch) for op, size in parts)

    def predict(self, parts: Iterable[tuple[str, int | str]], seq_len: int, batch: int) -> float:
        """Predicted latency of a model made of ``parts`` (op, size): the sum of their measured latencies,
        times a per-device scale plus an offset when the table was calibrated on whole models."""
        total = self.sum_of_parts(parts, seq_len, batch)
        scale, offset = self.calibration.get(f"{seq_len}|{batch}", (1.0, 0.0))
        return scale * total + offset

    def calibrate(self, sums: list[float], measured: list[float], seq_len: int, batch: int,
                  offset: bool = True) -> tuple[float, float]:
        """Fit ``measured = scale * sum_of_parts + offset`` on whole models timed here, by least squares on the
        relative error (each model weighted by 1 / measured), so a model 30x faster than another is fitted as well
        as it: an absolute fit let the big models set an offset that was 30% of a small one's latency.

        Ops timed alone run with warm caches and without the model's glue (masks, the wrapper's Python), so
        the plain sum is biased on a given device; the fit removes that bias. With fewer than three models, or
        ``offset=False``, only the scale is fitted (``sum(measured) / sum(sums)``, robust to one noisy model).
        """
        x, y = torch.tensor(sums, dtype=torch.float64), torch.tensor(measured, dtype=torch.float64)
        if offset and len(sums) >= 3 and float(x.std()) > 0:
            w = 1.0 / y.clamp(min=1e-9)
            a = torch.stack([x, torch.ones_like(x)], 1) * w[:, None]
            scale, offset = torch.linalg.lstsq(a, (y * w)[:, None]).solution[:, 0].tolist()
            if scale <= 0:
                scale, offset = float(y.sum() / x.sum()), 0.0
        else:
            scale, offset = float(y.sum() / x.sum()), 0.0
        self.calibration[f"{seq_len}|{batch}"] = [scale, offset]
        return scale, offset

    def save(self, path: str | Path) -> None:
        write_json(path, {"hardware": self.hardware, "threads": self.threads, "repeats": self.repeats,
                          "stat": self.stat, "calibration": self.calibration, "entries": self.entries})

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        d = read_json(path)
        return cls(entries=d["entries"], hardware=d.get("hardware", {}), threads=d.get("threads"), repeats=d.get("repeats", 0),
                   stat=d.get("stat", "median"), calibration=d.get("calibration", {}))


def measure_table(
    specs: list[OpSpec], seq_lens: Iterable[int], batch_sizes: Iterable[int], threads: int | None = None,
    warmup: int = 3, repeats: int = 10, table: LatencyTable | None = None, stat: str = "median",
    device: torch.device | str = "cpu",
) -> LatencyTable:
    """Time every spec at every (seq_len, batch) on ``device``; entries already in ``table`` are kept."""
    if stat not in ("median", "min"):
        raise BertnasError(f"latency statistic must be 'median' or 'min', got {stat!r}")
    if table is not None and table.stat != stat:
        table = None  # another statistic: measure everything again
    table = table or LatencyTable(stat=stat)
    jobs = [(s, n, b) for s in specs for n in seq_lens for b in batch_sizes
            if table_key(s.op, s.size, n, b) not in table.entries]
    with torch.random.fork_rng(devices=[]):  # a measurement (cache miss) leaves the caller's random state as a hit does
        torch.manual_seed(0)
        for spec, seq_len, batch in progress(jobs, desc="latency table"):
            module = spec.build().eval().to(device)
            args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in spec.inputs(batch, seq_len))
            timing = measure_latency(lambda: module(*args), warmup=warmup, repeats=repeats, threads=threads,
                                     device=device)
            table.entries[table_key(spec.op, spec.size, seq_len, batch)] = timing[f"{stat}_ms"]
            table.threads = timing["threads"]
    if jobs or not table.hardware:  # a table that measured nothing keeps the device it was measured on
        table.hardware = {**hardware_info(), "device": str(device)}
        table.repeats = repeats
    return table


def cached_table(
    path: str | Path, specs: list[OpSpec], seq_lens: Iterable[int], batch_sizes: Iterable[int],
    threads: int | None = None, warmup: int = 3, repeats: int = 10, stat: str = "median",
) -> tuple[LatencyTable, int]:
    """The table at ``path`` with every spec x seq_len x batch in it: (table, number of entries measured now).

    Entries already in the file are reused when it was measured with the same statistic, thread count and CPU
    (anything else is measured again from scratch); missing ones are measured, and the file is rewritten
    atomically only when something was added, so concurrent runs at worst both measure and one write wins.
    """
    path = Path(path)
    seq_lens, batch_sizes = list(seq_lens), list(batch_sizes)
    table = None
    if path.is_file():
        try:
            table = LatencyTable.load(path)
        except (BertnasError, KeyError, TypeError) as exc:
            logger.warning("latency table %s is unreadable (%s): measuring again", path, exc)
        else:
            here = hardware_info()
            if table.stat != stat or (threads is not None and table.threads not in (None, threads)) or \
                    table.hardware.get("cpu") != here["cpu"] or table.hardware.get("torch_version") != here["torch_version"]:
                logger.info("latency table %s was measured elsewhere or otherwise: measuring again", path)
                table = None
    before = len(table.entries) if table is not None else 0
    wanted = {table_key(s.op, s.size, n, b) for s in specs for n in seq_lens for b in batch_sizes}
    if table is not None and wanted <= set(table.entries):
        return table, 0
    table = measure_table(specs, seq_lens, batch_sizes, threads=threads, warmup=warmup, repeats=repeats,
                          table=table, stat=stat)
    table.save(path)
    return table, len(table.entries) - before
