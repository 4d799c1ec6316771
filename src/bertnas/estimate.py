"""``--dry-run`` and ``--time-budget``'s costs: how long each stage of a run will take on this machine.

:func:`measure_costs` runs the real stages on a small slice of the training data in a temporary directory
(teacher pass, probes, a few teacher-labelled copies, a warm-up and an architecture search epoch, a retraining
epoch), with every progress loop timed (:func:`bertnas.utils.recording_steps`); :func:`predict` scales each
loop's time per step to a full run's step counts, for any settings of the recipe's knobs (copies, search
subset and epochs, further-training epochs), so that one measurement prices every candidate recipe. Nothing is
written to the run directory or to the knowledge cache.
"""
from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from .config import RunConfig
from .data.split import take, validation_size
from .data.encode import Encoded, encode, inference_batches, lengths_of
from .rundir import load_data
from .utils import format_duration, recording_steps

SLICE_BATCHES = 8  # batches of the largest batch size in the timed slice


@dataclass
class _Clock:
    records: list[dict]

    def seconds(self, prefix: str) -> float:
        return sum(r["seconds"] for r in self.records if r["desc"].startswith(prefix))

    def per_step(self, prefix: str) -> float | None:
        found = [r for r in self.records if r["desc"].startswith(prefix) and r["steps"]]
        if not found:
            return None
        return sum(r["seconds"] for r in found) / sum(r["steps"] for r in found)

    def per_example(self, prefix: str, examples: int) -> float | None:
        total = self.seconds(prefix)
        return total / examples if total and examples else None


def _teacher_latency_seconds(cfg: RunConfig) -> float:
    """The latency measurement's own cost: repeats x (batch 1 + batch 32) forwards of the teacher, and of a
    BERT-base-sized model when asked (scaled by FLOPs from the teacher's size)."""
    from .teacher.loading import load_teacher

    teacher = load_teacher(cfg.teacher, None, "cpu", cfg.trust_remote_code).model
    ids = torch.randint(5, teacher.config.vocab_size, (32, cfg.eval_seq_len))
    with torch.inference_mode():
        teacher(input_ids=ids[:2, :16])
        t0 = time.perf_counter()
        teacher(input_ids=ids)
        b32 = time.perf_counter() - t0
    per_round = b32 * (1 + 1 / 16)  # batch 1 costs about a sixteenth of batch 32 on CPU
    seconds = (3 + cfg.latency_repeats) * per_round * 1.2  # + the student's, which is far cheaper
    if cfg.compare_bert_base:
        params = sum(p.numel() for p in teacher.parameters())
        seconds += (3 + max(3, cfg.latency_repeats // 4)) * per_round * 109e6 / params
    return seconds


@dataclass
class Costs:
    """Per-unit costs of a run's stages on this machine, measured on a slice (:func:`measure_costs`)."""

    n_train: int  # original training examples
    held: int  # of them held out as the validation split (with --val-examples as measured)
    teacher_cached: bool  # the teacher's knowledge of the full data is in the cache already
    teacher_example_s: float  # teacher pass over training examples (features for the probes included)
    teacher_dev_s: float  # teacher pass over dev (and its precision check)
    copy_example_s: float  # labelling one teacher-labelled copy
    probes_example_s: float  # probe training, per training example
    encode_s: float  # tokenizing the training data: every stage that trains pays it once
    search_warm_step_s: float
    search_arch_step_s: float
    retrain_step_s: float
    eval_example_s: float  # scoring one dev or validation example with a student (each epoch's check)
    n_dev: int
    pair: bool  # sentence pairs (the plan's ladder differs)
    evaluate_s: float  # the evaluate stage (mostly latency repeats)
    measured_in_s: float  # what measuring took
    threads: int

    def to_dict(self) -> dict:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def padded_tokens(enc: Encoded, batch_size: int, token_budget: int | None = None) -> int:
    """Tokens the teacher pass computes over ``enc``, padding included (its length-sorted batches)."""
    lens = lengths_of(enc.input_ids)
    return sum(len(b) * int(lens[b].max()) for b in inference_batches(enc, batch_size, token_budget))


def padding_ratio(enc: Encoded, small_n: int, batch_size: int, token_budget: int | None = None) -> float:
    """Padded tokens per example of the whole training set over those of the timed slice (its first ``small_n``):
    the slice's few length-sorted batches each span a wide range of lengths and pad more than the whole set's
    many narrow ones, so its time per example overstates the whole pass (by half at 25k SST-2 sentences)."""
    if small_n >= len(enc):
        return 1.0
    whole = padded_tokens(enc, batch_size, token_budget) / len(enc)
    part = padded_tokens(take(enc, list(range(small_n))), batch_size, token_budget) / small_n
    return whole / part if part else 1.0


def measure_costs(cfg: RunConfig, cached: bool | None = None) -> Costs:
    """Time the stages on a slice of ``cfg``'s training data (at least one teacher-labelled copy, so copies are
    priced even when ``cfg.augment`` is 0); ``cached``: whether the full teacher pass is cached (None: look)."""
    from .adabert import pipeline
    from .teacher.knowledge import cache_root, knowledge_key
    from .teacher.loading import load_teacher

    t_start = time.perf_counter()
    cfg.require("teacher", "task")
    data = load_data(cfg)
    spec = data.spec
    teacher = load_teacher(cfg.teacher, spec, "cpu", cfg.trust_remote_code, cfg.assume_label_order)
    t0 = time.perf_counter()
    enc = encode(teacher.tokenizer, data.train, cfg.max_seq_len, spec.is_regression)
    encode_s = time.perf_counter() - t0
    n = len(data.train)
    if cached is None:
        key = knowledge_key(teacher, data, cfg.max_seq_len, cfg.teacher_dtype, cfg.probe_max_examples)
        cache = cache_root(cfg.cache_dir)
        cached = (cache / f"knowledge-{key}" / "meta.json").is_file()
    del teacher
    biggest = max(cfg.search_batch_size, cfg.retrain_batch_size, min(cfg.teacher_batch_size, 64))
    small_n = min(n, SLICE_BATCHES * biggest)
    held = validation_size(cfg.val_examples, n)  # the validation split and its copies leave training
    small = cfg.update({"max_train_examples": small_n, "search_epochs": 2, "retrain_epochs": 1,
                        "search_max_examples": None, "resume": False, "augment": 1,
                        "val_examples": held * small_n // max(n, 1)})  # the slice holds out its share
    timing: dict[str, float] = {}
    quiet = logging.getLogger("bertnas")
    level, quiet.level = quiet.level, logging.WARNING  # the slice's own stage logs would only confuse
    try:
        with tempfile.TemporaryDirectory(prefix="bertnas-dry-run-") as tmp, recording_steps() as records:
            small = small.update({"cache_dir": str(Path(tmp) / "cache")})
            run_dir = Path(tmp) / "run"
            for stage in ("probe", "search", "retrain"):
                t0 = time.perf_counter()
                getattr(pipeline, stage)(small, run_dir)
                timing[stage] = time.perf_counter() - t0
    finally:
        quiet.setLevel(level)
    clock = _Clock(records)
    padding = padding_ratio(enc, small_n, cfg.teacher_batch_size, cfg.teacher_token_budget)
    teacher_rate = (clock.per_example("teacher train", small_n) or 0.0) * padding
    warm = clock.per_step("search 1/2") or 0.0
    # further training's time outside its loop: loading, scoring dev + validation before and after its epoch,
    # saving; all of it is charged to the scoring (an over- rather than an underestimate)
    retrain_fixed = max(timing.get("retrain", 0.0) - clock.seconds("retrain") - encode_s * small_n / n, 0.0)
    scored = 2 * (len(data.dev) + (small.val_examples or 0))
    return Costs(
        n_train=n, held=held, teacher_cached=bool(cached), teacher_example_s=teacher_rate,
        teacher_dev_s=clock.seconds("teacher dev"), copy_example_s=(clock.per_example("teacher (augmented)", small_n) or 0.0) * padding or teacher_rate,
        probes_example_s=clock.seconds("probes") / small_n, encode_s=encode_s,
        search_warm_step_s=warm, search_arch_step_s=clock.per_step("search 2/2") or warm,
        retrain_step_s=clock.per_step("retrain") or 0.0, eval_example_s=retrain_fixed / max(scored, 1),
        n_dev=len(data.dev), pair=spec.pair, evaluate_s=_teacher_latency_seconds(cfg),
        measured_in_s=time.perf_counter() - t_start, threads=torch.get_num_threads())


def predict(cfg: RunConfig, costs: Costs) -> dict[str, tuple[float, str]]:
    """Seconds each stage of a run with ``cfg``'s settings will take, with how the figure was made."""
    n, held = costs.n_train, costs.held
    n_aug = n * cfg.augment
    out: dict[str, tuple[float, str]] = {}
    teacher_s = 0.0 if costs.teacher_cached else costs.teacher_dev_s + n * costs.teacher_example_s
    featured = min(n, cfg.probe_max_examples or n)  # the rest's probe predictions take a second teacher pass
    teacher_s += (n - featured) * costs.teacher_example_s
    probes_s = costs.probes_example_s * featured
    copies_s = n_aug * costs.copy_example_s
    out["probe"] = (teacher_s + probes_s + copies_s,
                    ("teacher cached" if costs.teacher_cached else
                     f"teacher {n:,} train at {1 / max(costs.teacher_example_s, 1e-9):,.0f}/s + dev {costs.teacher_dev_s:.0f}s"
                     + (f", {n - featured:,} again for their probe predictions" if featured < n else ""))
                    + (f", {n_aug:,} copies {copies_s:.0f}s" if n_aug else "") + f", probes {probes_s:.0f}s")
    total_train = (n - held) * (1 + cfg.augment)
    n_search = min(cfg.search_max_examples or total_train, total_train)
    search_steps = math.ceil(n_search / cfg.search_batch_size)
    warmup = min(cfg.search_warmup_epochs, cfg.search_epochs - 1)
    search_s = search_steps * (warmup * costs.search_warm_step_s + (cfg.search_epochs - warmup) * costs.search_arch_step_s)
    checks = cfg.search_epochs * (costs.n_dev + held) * costs.eval_example_s  # each epoch's derived architecture
    if held and cfg.derive_candidates > 1:  # candidates: BatchNorm recalibration, then scoring on validation
        checks += cfg.derive_candidates * (held * costs.eval_example_s + cfg.bn_recalibration * costs.search_warm_step_s / 3)
    search_s += checks + costs.encode_s * (1 + cfg.augment / 4)
    out["search"] = (search_s, f"{cfg.search_epochs} epochs x {search_steps:,} steps (warm-up {costs.search_warm_step_s:.2f} "
                               f"s/step, architecture {costs.search_arch_step_s:.2f} s/step)")
    retrain_steps = math.ceil(total_train / cfg.retrain_batch_size)
    retrain_s = cfg.retrain_epochs * retrain_steps * costs.retrain_step_s
    retrain_s += (cfg.retrain_epochs + 1) * (costs.n_dev + held) * costs.eval_example_s  # scored before and after each
    out["retrain"] = (retrain_s + costs.encode_s * (1 + cfg.augment / 4),
                      f"{cfg.retrain_epochs} epochs x {retrain_steps:,} steps at {costs.retrain_step_s:.3f} s/step "
                      "(for the depth the short search found)")
    out["evaluate"] = (costs.evaluate_s, "mostly the latency repeats")
    return out


def dry_run(cfg: RunConfig, out: str | Path, stages: tuple[str, ...] = ("probe", "search", "retrain", "evaluate"),
            plan: Callable[[Costs], tuple[dict, str]] | None = None) -> str:
    """Time the stages on a slice and return a printable estimate; writes nothing to ``out`` or the cache.
    ``plan(costs) -> (settings, description)``: the knobs a budgeted run would choose with these costs
    (``bertnas.budget.planner``); the estimate is then for them."""
    from .adabert import pipeline
    from .teacher.augment import augment_bytes
    from .teacher.knowledge import (cache_root, free_bytes, is_sampled, knowledge_bytes, knowledge_key,
                                    tables_bytes)
    from .teacher.loading import load_teacher

    out = Path(out)
    cfg.require("teacher", "task")
    data = load_data(cfg)
    spec = data.spec
    teacher = load_teacher(cfg.teacher, spec, "cpu", cfg.trust_remote_code, cfg.assume_label_order)
    enc = encode(teacher.tokenizer, data.train, cfg.max_seq_len, spec.is_regression)
    lengths = lengths_of(enc.input_ids)
    n, n_aug = len(data.train), len(data.train) * cfg.augment
    key = knowledge_key(teacher, data, cfg.max_seq_len, cfg.teacher_dtype, cfg.probe_max_examples)
    cache = cache_root(cfg.cache_dir)
    hit = (cache / f"knowledge-{key}" / "meta.json").is_file()
    done = pipeline.completed_stages(out, cfg) if (out / "stages.json").is_file() and cfg.resume else set()
    labels = max(1, spec.num_labels)
    sampled = is_sampled(n, cfg.probe_max_examples)  # features cached for a sample of the training rows only
    featured = cfg.probe_max_examples if sampled else n
    disk = 0 if hit else (knowledge_bytes(teacher.num_layers, int(teacher.model.config.hidden_size), n + len(data.dev),
                                          labels, featured + len(data.dev)) + tables_bytes(teacher))
    # copies: a copy is never longer than its original (augment_one only replaces, deletes and swaps words)
    disk += augment_bytes(n_aug, int(lengths.sum()) * cfg.augment, teacher.num_layers + 1, labels) if n_aug else 0
    del teacher

    lines = [
        f"data: {spec.name}, {n:,} train" + (f" (+{n_aug:,} teacher-labelled copies)" if n_aug else "")
        + f" / {len(data.dev):,} dev examples, {'sentence pairs' if spec.pair else 'single sentences'}, "
        + ("regression" if spec.is_regression else f"{spec.num_labels} labels"),
        f"tokens per training example: mean {lengths.mean():.1f}, max {int(lengths.max())}; "
        f"{int((lengths >= cfg.max_seq_len).sum()):,} cut at --max-seq-len {cfg.max_seq_len}",
        f"teacher knowledge: {'cache hit' if hit else 'not cached yet'} ({cache / f'knowledge-{key}'})",
        f"cache disk to write: {_bytes(disk)} (knowledge{' cached' if hit else ''}"
        + ("" if not sampled else f", features of {featured:,} of {n:,} train (--probe-max-examples)")
        + (f", {n_aug:,} copies' logits and ids" if n_aug else "") + f"); {free_bytes(cache) / 1e9:.1f} GB free there",
    ]
    if done:
        lines.append(f"already done in {out} for these settings (would be skipped): {', '.join(sorted(done))}")
    costs = measure_costs(cfg, cached=hit)
    if plan is not None:  # the plan a budgeted run would make, priced with the same measurement
        settings, description = plan(costs)
        cfg = cfg.update(settings)
        lines.append(f"plan: {description}")
    estimates = predict(cfg, costs)
    lines += ["", "| stage | estimate | from |", "|---|---:|---|"]
    total = 0.0
    for stage in stages:
        seconds, how = estimates[stage]
        if stage in done:
            seconds, how = 0.0, "already done (skipped)"
        total += seconds
        lines.append(f"| {stage} | {format_duration(seconds)} | {how} |")
    small_n = min(n, SLICE_BATCHES * max(cfg.search_batch_size, cfg.retrain_batch_size, min(cfg.teacher_batch_size, 64)))
    lines += [f"| total | {format_duration(total)} | |", "",
              f"Timed on {small_n} training examples on this machine ({torch.get_num_threads()} threads); the search "
              "estimate assumes the depths sampled early in a search, so a search that settles on a shallow model "
              f"ends sooner. Nothing was written to {out}."]
    return "\n".join(lines)


def _bytes(n: float) -> str:
    """``1.23 GB``, or ``12.3 MB`` below a gigabyte (two decimals of a GB would round a small run to 0.00)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"
