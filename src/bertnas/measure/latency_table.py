"""A per-op latency table measured on this device: a model's predicted latency is the sum of its parts.

Keys are ``(op name, size, seq_len, batch)``; the size is a hidden size or any text naming the op's shape
(``"384>128"`` for a linear map), so any method's ops can be measured. Each entry is the median of
``repeats`` timed calls of the op alone on random inputs, with the thread count pinned, under
``torch.inference_mode``. The table records the hardware and threads it was measured with, because a
table from another machine or thread count predicts nothing here.
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

    def get(self, op: str, size: int | str, seq_len: int, batch: int) -> float:
        key = table_key(op, size, seq_len, batch)
        if key not in self.entries:
            known = sorted({k.split("|", 2)[2] for k in self.entries})
            raise BertnasError(f"latency table has no entry {key!r} (measured seq_len|batch: {', '.join(known)}): "
                               "measure it with the same --seq-len and --batch-sizes")
        return self.entries[key]

    def predict(self, parts: Iterable[tuple[str, int | str]], seq_len: int, batch: int) -> float:
        """Predicted latency of a model made of ``parts`` (op, size): the sum of their measured latencies."""
        return sum(self.get(op, size, seq_len, batch) for op, size in parts)

    def save(self, path: str | Path) -> None:
        write_json(path, {"hardware": self.hardware, "threads": self.threads, "repeats": self.repeats,
                          "entries": self.entries})

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        d = read_json(path)
        return cls(entries=d["entries"], hardware=d.get("hardware", {}), threads=d.get("threads"), repeats=d.get("repeats", 0))


def measure_table(
    specs: list[OpSpec], seq_lens: Iterable[int], batch_sizes: Iterable[int], threads: int | None = None,
    warmup: int = 3, repeats: int = 10, table: LatencyTable | None = None,
) -> LatencyTable:
    """Time every spec at every (seq_len, batch); entries already in ``table`` are kept, not re-measured."""
    table = table or LatencyTable()
    jobs = [(s, n, b) for s in specs for n in seq_lens for b in batch_sizes
            if table_key(s.op, s.size, n, b) not in table.entries]
    torch.manual_seed(0)
    for spec, seq_len, batch in progress(jobs, desc="latency table"):
        module = spec.build().eval()
        args = spec.inputs(batch, seq_len)
        timing = measure_latency(lambda: module(*args), warmup=warmup, repeats=repeats, threads=threads)
        table.entries[table_key(spec.op, spec.size, seq_len, batch)] = timing["median_ms"]
        table.threads = timing["threads"]
    table.hardware = hardware_info()
    table.repeats = repeats
    return table
