"""``--dry-run``: what a run will read, what is cached already, and how long each stage will take here.

The estimate comes from running the real stages on a small slice of the training data in a temporary
directory (teacher pass, probes, a warm-up and an architecture search epoch, a retraining epoch), with every
progress loop timed (:func:`bertnas.utils.recording_steps`), then scaling each loop's time per step to the
full run's step counts. Nothing is written to the run directory or to the knowledge cache.
"""
from __future__ import annotations

import logging
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import RunConfig
from .data.split import validation_size
from .data.encode import encode
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


def dry_run(cfg: RunConfig, out: str | Path, stages: tuple[str, ...] = ("probe", "search", "retrain", "evaluate")) -> str:
    """Time the stages on a slice and return a printable estimate; writes nothing to ``out`` or the cache."""
    from .adabert import pipeline
    from .teacher.knowledge import default_cache_dir, knowledge_key
    from .teacher.loading import load_teacher

    out = Path(out)
    cfg.require("teacher", "task")
    data = pipeline.load_data(cfg)
    spec = data.spec
    teacher = load_teacher(cfg.teacher, spec, "cpu", cfg.trust_remote_code, cfg.assume_label_order)
    enc = encode(teacher.tokenizer, data.train, cfg.max_seq_len, spec.is_regression)
    lengths = [len(x) for x in enc.input_ids]
    n, n_aug = len(data.train), len(data.train) * cfg.augment
    key = knowledge_key(teacher, data, cfg.max_seq_len, cfg.teacher_dtype)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    hit = (cache / f"knowledge-{key}" / "meta.json").is_file()
    done = pipeline.completed_stages(out, cfg) if (out / "stages.json").is_file() and cfg.resume else set()
    del teacher

    lines = [
        f"data: {spec.name}, {n:,} train" + (f" (+{n_aug:,} teacher-labelled copies)" if n_aug else "")
        + f" / {len(data.dev):,} dev examples, {'sentence pairs' if spec.pair else 'single sentences'}, "
        + ("regression" if spec.is_regression else f"{spec.num_labels} labels"),
        f"tokens per training example: mean {statistics.mean(lengths):.1f}, max {max(lengths)}; "
        f"{sum(l >= cfg.max_seq_len for l in lengths):,} cut at --max-seq-len {cfg.max_seq_len}",
        f"teacher knowledge: {'cache hit' if hit else 'not cached yet'} ({cache / f'knowledge-{key}'})",
    ]
    if done:
        lines.append(f"already done in {out} for these settings (would be skipped): {', '.join(sorted(done))}")

    biggest = max(cfg.search_batch_size, cfg.retrain_batch_size, min(cfg.teacher_batch_size, 64))
    small_n = min(n, SLICE_BATCHES * biggest)
    held = validation_size(cfg.val_examples, n)  # the validation split and its copies leave training
    small = cfg.update({"max_train_examples": small_n, "search_epochs": 2, "retrain_epochs": 1,
                        "search_max_examples": None, "resume": False,  # the slice holds out its share
                        "val_examples": held * small_n // max(n, 1)})
    timing: dict[str, float] = {}
    quiet = logging.getLogger("bertnas")
    level, quiet.level = quiet.level, logging.WARNING  # the slice's own stage logs would only confuse
    with tempfile.TemporaryDirectory(prefix="bertnas-dry-run-") as tmp, recording_steps() as records:
        small = small.update({"cache_dir": str(Path(tmp) / "cache")})
        run_dir = Path(tmp) / "run"
        for stage in ("probe", "search", "retrain"):
            if stage == "retrain" and "retrain" not in stages:
                break
            t0 = time.perf_counter()
            getattr(pipeline, stage)(small, run_dir)
            timing[stage] = time.perf_counter() - t0
    quiet.setLevel(level)
    clock = _Clock(records)

    estimates: dict[str, tuple[float, str]] = {}
    teacher_rate = clock.per_example("teacher train", small_n)
    aug_rate = clock.per_example("teacher (augmented)", small_n * cfg.augment) or teacher_rate
    dev_seconds = clock.seconds("teacher dev")
    probe_seconds = clock.seconds("probes") * n / small_n
    teacher_seconds = 0.0 if hit else dev_seconds + n * (teacher_rate or 0.0)
    teacher_seconds += n_aug * (aug_rate or 0.0)
    estimates["probe"] = (teacher_seconds + probe_seconds,
                          ("teacher cached" if hit else f"teacher {n:,} train at {1 / (teacher_rate or 1e-9):,.0f}/s + dev {dev_seconds:.0f}s")
                          + (f", {n_aug:,} copies" if n_aug else "") + f", probes {probe_seconds:.0f}s")
    total_train = (n - held) + (n_aug * (n - held) // n if n else 0)
    n_search = min(cfg.search_max_examples or total_train, total_train)
    search_steps = math.ceil(n_search / cfg.search_batch_size)
    warm_step = clock.per_step("search 1/2")
    arch_step = clock.per_step("search 2/2") or warm_step
    warmup = min(getattr(cfg, "search_warmup_epochs", 0), cfg.search_epochs - 1)
    search_loops = clock.seconds("search")
    fixed = max(timing.get("search", 0.0) - search_loops, 0.0) / 2  # per epoch: evaluating the derived model on dev
    search_seconds = search_steps * (warmup * (warm_step or 0) + (cfg.search_epochs - warmup) * (arch_step or 0))
    search_seconds += cfg.search_epochs * fixed
    estimates["search"] = (search_seconds, f"{cfg.search_epochs} epochs x {search_steps:,} steps "
                                           f"(warm-up {warm_step or 0:.2f} s/step, architecture {arch_step or 0:.2f} s/step)")
    retrain_steps = math.ceil(total_train / cfg.retrain_batch_size)
    retrain_step = clock.per_step("retrain") or 0.0
    fixed = max(timing.get("retrain", 0.0) - clock.seconds("retrain"), 0.0)
    estimates["retrain"] = (cfg.retrain_epochs * (retrain_steps * retrain_step + fixed),
                            f"{cfg.retrain_epochs} epochs x {retrain_steps:,} steps at {retrain_step:.3f} s/step "
                            "(for the depth the short search found)")
    if "evaluate" in stages:
        estimates["evaluate"] = (_teacher_latency_seconds(cfg), "mostly the latency repeats")

    lines += ["", "| stage | estimate | from |", "|---|---:|---|"]
    total = 0.0
    for stage in stages:
        seconds, how = estimates[stage]
        if stage in done:
            seconds, how = 0.0, "already done (skipped)"
        total += seconds
        lines.append(f"| {stage} | {format_duration(seconds)} | {how} |")
    lines += [f"| total | {format_duration(total)} | |", "",
              f"Timed on {small_n} training examples on this machine ({torch.get_num_threads()} threads); the search "
              "estimate assumes the depths sampled early in a search, so a search that settles on a shallow model "
              f"ends sooner. Nothing was written to {out}."]
    return "\n".join(lines)
