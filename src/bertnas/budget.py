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
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .errors import BertnasError

__all__ = ["LADDERS", "Plan", "choose", "fixed_knobs", "parse_duration", "plan_run", "planner", "run"]
from .utils import format_duration, hash_obj, parse_duration, read_json, write_json

logger = logging.getLogger("bertnas")

KNOBS = ("augment", "search_max_examples", "search_epochs", "retrain_epochs")
"""The settings a plan chooses; a knob the user set to something other than its default is kept as set."""

def _rung(augment: int, retrain_epochs: int, search_max_examples: int | None = 20000, search_epochs: int = 2) -> dict:
    return {"augment": augment, "search_max_examples": search_max_examples, "search_epochs": search_epochs,
            "retrain_epochs": retrain_epochs}


LADDERS: dict[str, tuple[dict, ...]] = {
    # Most accurate first: the learning-curve study's Pareto recipes (docs/learning_curves.md), each a
    # (copies, further-training epochs) on a 20,000-example, 2-epoch search that no quicker recipe beat on dev.
    # SST-2 (3 seeds for 0 and 1 copies, 2 for 2 and 4): 4 copies x 2 epochs -1.9, 2 x 2 -2.2, 1 x 2 -3.5 (the
    # default; within noise of 1 x 1, -3.3), 0 x 3 -4.7, 0 x 1 -5.3 points. The top rung (8 copies, 3 epochs:
    # -0.9, one run) is from docs/results.md, beyond the study. A search on 5,000 examples is no rung: it ended at 8 cells, slower and worse.
    "single": (_rung(8, 3), _rung(4, 2), _rung(2, 2), _rung(1, 2), _rung(1, 1), _rung(0, 3), _rung(0, 1)),
    "pair": (_rung(8, 3), _rung(4, 2), _rung(2, 2), _rung(1, 2), _rung(1, 1), _rung(0, 3), _rung(0, 1)),
}
"""The recipes a plan chooses from, for single-sentence and sentence-pair tasks; search_max_examples None =
every training example."""

SAFETY = 0.92
"""The plan's predicted total may use this share of the budget: the rest absorbs what the slice mispredicts."""

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
    return hash_obj({k: v for k, v in cfg.to_dict().items()  # amp_dtype: added later, out at its default
                     if k not in ("resume",) and not (k == "amp_dtype" and v == "auto")})


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


def planner(cfg: RunConfig, keep: set[str] | None = None):
    """For ``--dry-run --time-budget``: ``costs -> (settings, description)`` of the plan a run would make."""
    def plan(costs) -> tuple[dict, str]:
        chosen = choose(cfg, costs, parse_duration(cfg.time_budget), costs.measured_in_s, keep)
        return chosen.settings, chosen.describe()

    return plan


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


def run(cfg: RunConfig, out: str | Path, onnx_latency: bool = True, started_at: float | None = None,
        keep: set[str] | None = None) -> dict:
    """``bertnas run``: every stage (``adabert.pipeline.run``), within ``cfg.time_budget`` when it is set.

    The budget counts from ``started_at`` (``time.monotonic()``; default: now; the CLI passes its own start);
    ``keep``: the knobs the user set, which the plan keeps (default: those that differ from their defaults)."""
    from .adabert import pipeline
    from .training import distributed as ddp

    if not cfg.time_budget:
        return pipeline.run(cfg, out, onnx_latency)
    since = time.monotonic() if started_at is None else started_at
    out = Path(out)
    cfg.validate()
    if ddp.launched():
        raise BertnasError("--time-budget plans a run in one process: drop it under torchrun, or run without torchrun")
    plan = plan_run(cfg, out, keep)
    cfg = cfg.update(plan.settings)
    logger.info("%s", plan.describe())
    finished = cfg.resume and {"probe", "search", "retrain"} <= pipeline.completed_stages(out, cfg)
    if finished:  # a finished run measured again: its budget's record stays as it was
        results = pipeline.run(cfg, out, onnx_latency)
    else:
        plan.spent_s += time.monotonic() - since  # start-up and planning (or reading the saved plan)
        save_plan(plan, out)
        results = pipeline.run(cfg, out, onnx_latency, stage_runner=lambda name, fn: _budgeted(plan, name, fn, out))
    results["plan"] = {**plan.to_dict(), "within_budget": plan.spent_s <= plan.budget_s}
    write_json(out / "results.json", results)
    logger.info("time budget %s: used %s (%+.0f%%), predicted %s", format_duration(plan.budget_s),
                format_duration(plan.spent_s), 100 * (plan.spent_s / plan.budget_s - 1),
                format_duration(plan.predicted_total))
    return results


def _budgeted(plan: Plan, stage: str, fn, out: Path):
    """Run one stage under its deadline and add its time to the plan's record (also when the stage fails or is
    interrupted, so a resumed run has only the rest of its budget).

    Training stops where the budget less the predicted evaluation ends; the search, where that less half of
    the predicted further training ends, so that a search that runs long leaves further training some time. A
    stage the deadline cut short is recorded in the plan (``cut_short``) and not marked done for its settings:
    a later run with the same settings does it again in full."""
    from .adabert.pipeline import unmark_stage
    from .training.loop import deadline_cuts, stop_at

    left = plan.budget_s - plan.spent_s  # of the whole budget, at the start of this stage
    now = time.monotonic()
    train_end = now + left - plan.predicted.get("evaluate", 0.0)
    deadline = {"search": train_end - plan.predicted.get("retrain", 0.0) / 2, "retrain": train_end}.get(stage)
    cuts: list[str] = []
    try:
        with stop_at(deadline):
            result = fn()
            cuts = deadline_cuts()
    finally:
        took = time.monotonic() - now
        plan.stages_s[stage] = plan.stages_s.get(stage, 0.0) + took
        plan.spent_s += took
        if cuts:
            plan.cut_short += cuts
            unmark_stage(out, stage)
        save_plan(plan, out)
    return result
