"""The bench's rows as data: name, group, how the row is produced, and what it changes in the run settings.

Kinds: ``teacher`` (measured only), ``search`` (AdaBERT's search + further training, possibly ablated),
``fresh`` (a given genotype, built fresh and trained by the same further-training recipe: random draws, the
conv_3 stack, another task's genotype, and ``searched_fresh``, the genotype row ``full`` found for the same seed),
``small_bert`` and ``truncated`` (BERT-shaped students trained with the same distillation).

Like for like: the searched genotype is compared with random and hand-designed genotypes through
``searched_fresh`` (same initialization, same training); ``full`` keeps the supernet's weights and is compared
with the ablations, which keep theirs too.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import RunConfig
from ..errors import BertnasError
from ..adabert.genotype import Genotype
from .settings import BenchSettings, budget_suffix


@dataclass(frozen=True)
class Row:
    name: str
    group: str  # teacher | adabert | random | hand-designed | ablation
    kind: str  # teacher | search | fresh | small_bert | truncated
    label: str  # what the table says
    overrides: dict = field(default_factory=dict)  # RunConfig changes for this row
    logits_only: bool = False  # distill the final logits only (no probe heads)
    genotype: Genotype | None = None  # fresh rows
    genotype_of: str | None = None  # fresh rows whose genotype is this row's result for the same seed
    genotypes: tuple[Genotype, ...] = ()  # fresh rows with one genotype per seed index (another bench's searches)

    def config(self, cfg: RunConfig) -> RunConfig:
        return cfg.update(self.overrides, f"bench row {self.name}") if self.overrides else cfg


_SEARCH_ROWS = {
    "full": ("adabert", "AdaBERT (search + further training, supernet weights kept)", {}, False),
    "no_kd": ("ablation", "ablation: no distillation (gamma = 0)", {"gamma": 0.0}, False),
    "logits_kd": ("ablation", "ablation: logits-only distillation", {}, True),
    "uniform_kd": ("ablation", "ablation: uniform probe weights", {"attentive_kd": False}, False),
    "no_efficiency": ("ablation", "ablation: no efficiency loss (beta = 0)", {"beta": 0.0}, False),
    "no_augment": ("ablation", "ablation: without augmentation", {"augment": 0}, False),
}
ROW_NAMES = ("teacher", "full", "searched_fresh", "random", "small_bert", "conv3_stack", "truncated_teacher", "no_kd",
             "logits_kd", "uniform_kd", "no_efficiency", "no_augment", "other_task")
"""Names ``--rows`` accepts; ``random`` stands for all random rows (``--random-n`` and ``--random-per-bin``)."""


def conv3_stack() -> Genotype:
    """conv_3 on every kept edge, K = 3; node j reads the two newest states (j and j + 1)."""
    return Genotype(edges=tuple((n, s, "conv_3") for n in range(3) for s in (n, n + 1)), depth=3)


def selected_names(selection: str, cfg: RunConfig, settings: BenchSettings) -> list[str]:
    """Row names of ``--rows`` in the fixed order, teacher first; rows that cannot run fail here, before any work."""
    text = selection.strip().lower()
    if text == "default":  # every row that applies to these settings
        names = [n for n in ROW_NAMES if not (n == "no_augment" and not cfg.augment)
                 and not (n == "other_task" and not settings.genotype_from)]
    elif text == "all":
        names = list(ROW_NAMES)
    else:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in ROW_NAMES]
        if unknown or not names:
            raise BertnasError(f"unknown bench row(s) {', '.join(unknown) or repr(selection)}: pass --rows default, all, "
                               f"or names from {', '.join(ROW_NAMES)}")
    if "no_augment" in names and not cfg.augment:
        raise BertnasError("bench row no_augment compares against augmentation: pass --augment N (e.g. 20) or drop the row")
    if "other_task" in names and not settings.genotype_from:
        raise BertnasError("bench row other_task needs --genotype-from OTHER_RUN/search/genotype.json "
                           "(or a genotype string) or drop the row")
    if "searched_fresh" in names and "full" not in names:
        raise BertnasError("bench row searched_fresh trains the genotype row full finds: add full to --rows")
    if settings.budgets_ms:
        if cfg.efficiency != "latency":
            raise BertnasError("--budgets-ms are predicted milliseconds: add --efficiency latency (and "
                               "--latency-table-batch 1 for budgets at batch 1)")
        if cfg.latency_budget_ms is not None:
            raise BertnasError("--budgets-ms sets each search's --latency-budget-ms: drop --latency-budget-ms")
        if "full" not in names:
            raise BertnasError("--budgets-ms gives each budget its own full row: add full to --rows")
    return ["teacher"] + [n for n in ROW_NAMES if n in names and n != "teacher"]  # fixed order, teacher first


def resolve_rows(selection: str, cfg: RunConfig, settings: BenchSettings, random_genotypes: list[Genotype],
                 other_genotype: Genotype | Sequence[Genotype] | None, binned: Sequence[Sequence[Genotype]] = ()
                 ) -> list[Row]:
    """The rows to run, in a fixed order (the full method before the rows sized or shaped after it).
    ``binned[b - 1]`` holds the random genotypes drawn for cost bin b (rows ``random_b<b>_<j>``). With
    ``--budgets-ms`` the rows full and searched_fresh become one pair per budget (``full_3ms``, ...).
    ``other_genotype`` may be one genotype per seed index (another bench's searched genotypes)."""
    rows: list[Row] = []
    for name in selected_names(selection, cfg, settings):
        if name == "teacher":
            rows.append(Row("teacher", "teacher", "teacher", "teacher"))
        elif name == "full" and settings.budgets_ms:  # one search per budget
            group, label, _, _ = _SEARCH_ROWS[name]
            rows += [Row(f"full{budget_suffix(b)}", group, "search", f"{label}, latency budget {b:g} ms",
                         {"latency_budget_ms": b}) for b in settings.budgets_ms]
        elif name in _SEARCH_ROWS:
            group, label, overrides, logits_only = _SEARCH_ROWS[name]
            rows.append(Row(name, group, "search", label, overrides, logits_only))
        elif name == "random":
            rows += [Row(f"random_{i + 1}", "random", "fresh", f"random genotype {i + 1}", genotype=g)
                     for i, g in enumerate(random_genotypes)]
            rows += [Row(f"random_b{b}_{j}", "random", "fresh", f"random genotype {j} of cost bin {b}", genotype=g)
                     for b, drawn in enumerate(binned, 1) for j, g in enumerate(drawn, 1)]
        elif name == "searched_fresh":
            label = "AdaBERT's genotype, fresh (trained like the random rows)"
            if settings.budgets_ms:
                rows += [Row(f"{name}{budget_suffix(b)}", "adabert", "fresh", f"{label}, latency budget {b:g} ms",
                             genotype_of=f"full{budget_suffix(b)}") for b in settings.budgets_ms]
            else:
                rows.append(Row(name, "adabert", "fresh", label, genotype_of="full"))
        elif name == "conv3_stack":
            rows.append(Row(name, "hand-designed", "fresh", "conv_3 stack (K = 3)", genotype=conv3_stack()))
        elif name == "other_task":
            several = isinstance(other_genotype, (list, tuple))
            rows.append(Row(name, "ablation", "fresh", "ablation: architecture searched on another task",
                            genotype=None if several else other_genotype,
                            genotypes=tuple(other_genotype) if several else ()))
        elif name == "small_bert":
            rows.append(Row(name, "hand-designed", "small_bert", "small BERT (2 layers, fresh)"))
        elif name == "truncated_teacher":
            rows.append(Row(name, "hand-designed", "truncated", "teacher truncated"))
    return rows
