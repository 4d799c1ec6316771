"""The bench's own settings (the run settings, shared by every row, are a :class:`bertnas.RunConfig`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import BertnasError


@dataclass
class BenchSettings:
    """What to compare, and the few choices only the hand-designed rows need."""

    rows: str = "default"  # default, all, or comma-separated row names (see rows.ROWS)
    random_n: int = 5  # random genotypes drawn from the search space
    genotype_from: str | None = None  # the other-task row: a genotype.json, a run directory or a genotype string
    bert_base: bool = True  # measure a BERT-base-sized model (random weights) as a latency reference
    truncate_layers: int = 2  # the truncated-teacher row keeps the teacher's first N layers
    pretrained_lr: float = 1e-4  # learning rate of the teacher-initialized row (fresh rows use --retrain-lr)
    small_bert_hiddens: tuple[int, ...] = (128, 192, 256)  # small BERT: the hidden size closest in params wins
    seeds: int = 1  # every trained row runs seeds cfg.seed, cfg.seed + 1, ... (one run directory each)
    random_per_bin: int = 0  # besides the uniform draws: random genotypes drawn until each cost bin holds this many
    latency_bins: int = 3  # cost bins (equal shares of the space) of the per-bin draws and the per-bin report
    budgets_ms: tuple[float, ...] = ()  # one searched student per predicted-latency budget; the budgets bin the costs

    def validate(self) -> "BenchSettings":
        if self.random_n < 0:
            raise BertnasError(f"--random-n must be >= 0, got {self.random_n}")
        if self.seeds < 1:
            raise BertnasError(f"--seeds must be >= 1 (1 = one run per row), got {self.seeds}")
        if self.random_per_bin < 0:
            raise BertnasError(f"--random-per-bin must be >= 0 (0 = off), got {self.random_per_bin}")
        if self.latency_bins < 1:
            raise BertnasError(f"--latency-bins must be >= 1, got {self.latency_bins}")
        if self.budgets_ms:
            if any(not (b > 0 and math.isfinite(b)) for b in self.budgets_ms):
                raise BertnasError(f"--budgets-ms must be positive milliseconds, got {list(self.budgets_ms)}")
            if list(self.budgets_ms) != sorted(set(self.budgets_ms)):
                raise BertnasError(f"--budgets-ms must be distinct and ascending, e.g. 1.2,3,10; got {list(self.budgets_ms)}")
        if self.truncate_layers < 1:
            raise BertnasError(f"--truncate-layers must be >= 1, got {self.truncate_layers}")
        if not (self.pretrained_lr > 0 and math.isfinite(self.pretrained_lr)):
            raise BertnasError(f"--pretrained-lr must be a positive number, got {self.pretrained_lr}")
        if not self.small_bert_hiddens or any(h < 64 or h % 64 for h in self.small_bert_hiddens):
            raise BertnasError(f"small BERT hidden sizes must be multiples of 64, got {self.small_bert_hiddens}")
        return self

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_budgets(text: str | None) -> tuple[float, ...]:
    """``"1.2,3,10"`` -> (1.2, 3.0, 10.0); a one-line error naming the flag otherwise."""
    if not text:
        return ()
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise BertnasError(f"--budgets-ms {text!r}: expected comma-separated milliseconds, e.g. 1.2,3,10") from None


def budget_suffix(budget_ms: float) -> str:
    """Row-name suffix of a budget's rows: ``full_3ms``, ``searched_fresh_1.2ms``."""
    return f"_{budget_ms:g}ms"
