"""``--time-budget``: spend a wall-time budget on the recipe knobs that buy the most accuracy per minute.

The plan: measure this machine's per-stage costs on a slice of the data (:func:`bertnas.estimate.measure_costs`),
price every rung of the task kind's ladder (:data:`LADDERS`) with them (:func:`bertnas.estimate.predict`), and take the first rung, in
order of measured accuracy, whose predicted wall time fits the budget. The ladder's order comes from the
learning-curve study (docs/learning_curves.md: dev metric against minutes for copies, search subset and epochs,
further-training epochs). While the run trains, :func:`bertnas.training.loop.stop_at` holds it to the budget
even when the prediction was short: a stage that reaches its deadline ends early and keeps what it has.

The plan is saved in the run directory (``plan.json``) with the time already spent, so a resumed run keeps
its plan and the rest of its budget; ``results.json`` gets the plan, its prediction and the time taken.
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .errors import BertnasError
from .utils import format_duration, hash_obj, read_json, write_json

logger = logging.getLogger("bertnas")

KNOBS = ("augment", "search_max_examples", "search_epochs", "retrain_epochs")
"""The settings a plan chooses; a knob the user set to something other than its default is kept as set."""

def _rung(augment: int, retrain_epochs: int, search_max_examples: int | None = 20000, search_epochs: int = 2) -> dict:
    return {"augment": augment, "search_max_examples": search_max_examples, "search_epochs": search_epochs,
            "retrain_epochs": retrain_epochs}


LADDERS: dict[str, tuple[dict, ...]] = {
    # Most accurate first: the learning-curve study's Pareto recipes (docs/learning_curves.md), each a
    # (copies, search subset x epochs, further-training epochs) that no quicker recipe beat on dev. The top rung
    # (8 copies, 3 epochs) is from docs/results.md (one run, 0.9 points below the SST-2 teacher), beyond the study.
    "single": (_rung(8, 3), _rung(4, 2), _rung(2, 2), _rung(0, 3), _rung(0, 2), _rung(0, 2, 5000), _rung(0, 1, 5000)),
    "pair": (_rung(8, 3), _rung(4, 2), _rung(2, 2), _rung(0, 3), _rung(0, 2), _rung(0, 2, 5000), _rung(0, 1, 5000)),
}
"""The recipes a plan chooses from, for single-sentence and sentence-pair tasks; search_max_examples None =
every training example."""

SAFETY = 0.92
"""The plan's predicted total may use this share of the budget: the rest absorbs what the slice mispredicts."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``20m``, ``2h``, ``1h30m`` or ``1.5h``; BertnasError otherwise."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", str(text).strip().lower())
    rebuilt = "".join(f"{a}{b}" for a, b in parts)
    if not parts or rebuilt != re.sub(r"\s+", "", str(text).strip().lower()):
        raise BertnasError(f"--time-budget {text!r} is not a duration: write it with units, e.g. 20m, 2h, 1h30m or 90s")
    seconds = sum(float(a) * _UNITS[b] for a, b in parts)
    if not 0 < seconds <= 30 * 86400:
        raise BertnasError(f"--time-budget {text!r} must be more than 0 and at most 30 days")
    return seconds


@dataclass
class Plan:
    """What a budgeted run will do: the knobs chosen, their predicted stage times, and the budget's use."""

    budget_s: float
    settings: dict
    predicted: dict[str, float]
    costs: dict
    rung: int  # index into the task kind's ladder (LADDERS)
    key: str  # the user's settings the plan was made for
    planning_s: float = 0.0
    spent_s: float = 0.0  # wall time used so far, over every invocation of the run (start-up included)
    stages_s: dict[str, float] = field(default_factory=dict)
    cut_short: list[str] = field(default_factory=list)  # loops the deadline ended early

    @property
    def predicted_total(self) -> float:
        return self.planning_s + sum(self.predicted.values())

    def to_dict(self) -> dict:
        return {"budget_s": round(self.budget_s, 1), "settings": self.settings,
                "predicted_s": {k: round(v, 1) for k, v in self.predicted.items()},
                "predicted_total_s": round(self.predicted_total, 1), "planning_s": round(self.planning_s, 1),
                "spent_s": round(self.spent_s, 1), "stages_s": {k: round(v, 1) for k, v in self.stages_s.items()},
                "cut_short": self.cut_short, "rung": self.rung, "key": self.key, "costs": self.costs}

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls(budget_s=d["budget_s"], settings=d["settings"], predicted=dict(d["predicted_s"]), costs=d["costs"],
                   rung=d["rung"], key=d["key"], planning_s=d["planning_s"], spent_s=d["spent_s"],
                   stages_s=dict(d.get("stages_s", {})), cut_short=list(d.get("cut_short", [])))

    def describe(self) -> str:
        knobs = ", ".join(f"--{k.replace('_', '-')} {v}" if v is not None else "search on every training example"
                          for k, v in self.settings.items())
        stages = ", ".join(f"{k} {format_duration(v)}" for k, v in self.predicted.items())
        return (f"time budget {format_duration(self.budget_s)}: {knobs}; predicted {stages}, "
                f"total {format_duration(self.predicted_total)} with planning")


def _user_key(cfg: RunConfig) -> str:
    return hash_obj({k: v for k, v in cfg.to_dict().items() if k not in ("resume",)})


def fixed_knobs(cfg: RunConfig, keep: set[str] | None = None) -> dict:
    """The knobs the plan keeps: those named in ``keep`` (the CLI passes the settings given as flags or in
    ``--config``), or without it those set away from their defaults (the Python API)."""
    if keep is not None:
        return {k: getattr(cfg, k) for k in KNOBS if k in keep}
    defaults = RunConfig()
    return {k: getattr(cfg, k) for k in KNOBS if getattr(cfg, k) != getattr(defaults, k)}


def choose(cfg: RunConfig, costs, budget_s: float, planning_s: float = 0.0, keep: set[str] | None = None) -> Plan:
    """The first rung of the task kind's ladder (:data:`LADDERS`, with the user's own knobs kept,
    :func:`fixed_knobs`) whose predicted total fits ``SAFETY`` x the budget; when none fits, an error naming the
    least budget that would."""
    from .estimate import predict

    fixed = fixed_knobs(cfg, keep)
    tried, seen = [], set()
    for i, rung in enumerate(LADDERS["pair" if costs.pair else "single"]):
        knobs = {**rung, **fixed}
        pool = (costs.n_train - costs.held) * (1 + knobs["augment"])  # what the search draws its subset from
        if knobs["search_max_examples"] is not None and knobs["search_max_examples"] >= pool:
            knobs["search_max_examples"] = None  # the training pool is smaller than the subset: all of it
        sig = tuple(knobs[k] for k in KNOBS)
        if sig in seen:
            continue
        seen.add(sig)
        stages = {k: v[0] for k, v in predict(cfg.update(knobs), costs).items()}
        total = planning_s + sum(stages.values())
        tried.append(total)
        if total <= SAFETY * budget_s:
            return Plan(budget_s, knobs, stages, costs.to_dict(), i, _user_key(cfg), planning_s)
    least = min(tried)
    raise BertnasError(f"--time-budget {format_duration(budget_s)} is too short for this data on this machine: the "
                       f"quickest recipe is predicted to take {format_duration(least)}; give at least "
                       f"{format_duration(math.ceil(least / SAFETY / 60) * 60)}, or use --max-train-examples")


def plan_run(cfg: RunConfig, out: Path, keep: set[str] | None = None) -> Plan:
    """The run's plan: the one saved in ``out/plan.json`` for the same settings (a resumed run keeps its plan
    and the rest of its budget), else a new one from this machine's measured costs, saved at once."""
    from .estimate import measure_costs

    budget_s = parse_duration(cfg.time_budget)
    path = out / "plan.json"
    if cfg.resume and path.is_file():
        try:
            saved = Plan.from_dict(read_json(path))
        except (KeyError, TypeError, ValueError, BertnasError):
            logger.warning("time budget: %s cannot be read, planning again", path)
            saved = None
        if saved is not None and saved.key == _user_key(cfg):
            logger.info("time budget: resuming the saved plan, %s of %s used", format_duration(saved.spent_s),
                        format_duration(saved.budget_s))
            return saved
    t0 = time.perf_counter()
    logger.info("time budget %s: measuring this machine's stage costs on a slice of the data...", format_duration(budget_s))
    costs = measure_costs(cfg)
    plan = choose(cfg, costs, budget_s, planning_s=time.perf_counter() - t0, keep=keep)
    save_plan(plan, out)  # an interrupted run resumes this plan, with the time it used
    return plan


def save_plan(plan: Plan, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", plan.to_dict())
