"""Run the bench: the teacher once, then every row as a resumable stage in its own run directory, then one
side-by-side measurement of all models and the report.

Layout of ``--out``::

    probe/                 a normal run directory holding only the probe stage: the teacher runs here, once
    rows/<name>/           one run directory per row and seed: config.json, tokenizer/ and probes/ copied from
    rows/<name>-s<i>/      probe/ (so every row reads the same cached knowledge key), search/, model/,
                           bench-row.json; seed index i > 0 (``--seeds``, run seed = seed + i) gets its own
                           directory, seed index 0 keeps the row's (benches from before ``--seeds`` resume as they are)
    bench.json, bench.md, pareto.png

A row is done when its ``bench-row.json`` carries the key of its settings (the run settings that shape a model,
the row's own changes, the knowledge key); a rerun skips it (``--no-resume`` redoes every row). An interrupted
row resumes from the per-epoch checkpoints of the search and training loops, and a finished search is kept
when only the further-training settings change.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from ..adabert import pipeline
from ..adabert.genotype import Genotype
from ..config import SEED_MAX, RunConfig
from ..errors import BertnasError
from ..rundir import load_data, save_run_config
from ..utils import atomic_dir, atomic_write_text, hash_obj, load_model_dir, read_json, read_weights, write_json
from .rows import Row, resolve_rows
from .settings import BenchSettings

logger = logging.getLogger("bertnas")
ROW_MARK = "bench-row.json"
_SHAPING_GROUPS = ("data", "split", "teacher", "probes", "space", "search", "retrain")  # retrain last: see search_key
_NO_EFFECT = {"cache_dir", "teacher_batch_size", "teacher_token_budget", "trust_remote_code"}


def settings_key(cfg: RunConfig, groups: tuple[str, ...], extra: dict) -> str:
    """Hash of the settings that shape a stage's result (where the cache lives or how big the teacher's
    batches are does not), plus ``extra``."""
    keep = {f.name: getattr(cfg, f.name) for f in fields(cfg)
            if f.metadata.get("group") in groups and f.name not in _NO_EFFECT}
    return hash_obj({**keep, "seed": cfg.seed, **extra})[:20]


@dataclass
class _Shared:
    """What every row reads: the probe run, its knowledge key, the records of rows already done (per row, one
    record per seed index)."""

    out: Path
    probe_dir: Path
    knowledge_key: str
    records: dict[str, list[dict]]


def seed_dir(out: Path, name: str, index: int) -> Path:
    """Run directory of seed index ``index`` of a row: ``rows/<name>`` for index 0, ``rows/<name>-s<index>``."""
    return out / "rows" / (name if index == 0 else f"{name}-s{index}")


# ----------------------------------------------------------------------------- the teacher, once
def probe_once(cfg: RunConfig, out: Path) -> tuple[dict, float]:
    """Run the probe stage into ``out/probe`` unless it is done for these settings; (probes.json, seconds)."""
    probe_dir = out / "probe"
    key = settings_key(cfg, ("data", "teacher", "probes"), {})
    mark = probe_dir / "bench-probe.json"
    if cfg.resume and mark.is_file() and (probe_dir / "probes" / "probes.json").is_file() \
            and read_json(mark).get("key") == key:
        logger.info("bench: teacher knowledge and probes already done in %s, reusing them", probe_dir)
        return read_json(probe_dir / "probes" / "probes.json"), float(read_json(mark)["seconds"])
    logger.info("bench: running the teacher once (knowledge cache + probes) in %s", probe_dir)
    t0 = time.perf_counter()
    info = pipeline.probe(cfg, probe_dir)
    seconds = round(time.perf_counter() - t0, 1)
    write_json(mark, {"key": key, "seconds": seconds, "knowledge_key": info["knowledge_key"]})
    return info, seconds


def _prepare_row_dir(rcfg: RunConfig, shared: _Shared, row_dir: Path) -> None:
    """A run directory for the row that reads the shared probe run: same tokenizer, probes, knowledge key."""
    save_run_config(rcfg, row_dir)
    for name in ("tokenizer", "probes"):
        with atomic_dir(row_dir / name) as tmp:
            shutil.copytree(shared.probe_dir / name, tmp, dirs_exist_ok=True)
    if not rcfg.augment:  # the no-augmentation ablation reads the same probes without the teacher-labelled copies
        info = read_json(row_dir / "probes" / "probes.json")
        if info.pop("augment_key", None):
            info.pop("augment_examples", None)
            write_json(row_dir / "probes" / "probes.json", info)


# ----------------------------------------------------------------------------- training any student
def _train(rcfg: RunConfig, row_dir: Path, inputs, student, heads, key: str, save_model=None) -> dict:
    """AdaBERT's further-training loop on ``student`` (same loss, optimizer, epochs, seeds as the searched
    student's), then ``row_dir/model`` written like ``bertnas retrain`` writes it."""
    from ..adabert.retrain import retrain as run_retrain

    t0 = time.perf_counter()
    ckpt = row_dir / "checkpoints" / "retrain.pt"
    student, best, history = run_retrain(rcfg, inputs.spec, student, heads, inputs.train, inputs.dev, inputs.targets,
                                         inputs.device, ckpt, resume_key=key, val=inputs.val,
                                         train_subset=inputs.holdout.train)
    seconds = round(time.perf_counter() - t0, 1)
    with atomic_dir(row_dir / "model") as tmp:
        (save_model or student).cpu().save_pretrained(tmp)
        inputs.tokenizer.save_pretrained(tmp)
        write_json(tmp / "training.json", {"dev": best, "history": history, "retrain_seconds": seconds})
    ckpt.unlink(missing_ok=True)
    return {"dev": best, "train_seconds": seconds}


# ----------------------------------------------------------------------------- one row per kind
def _search_row(row: Row, rcfg: RunConfig, row_dir: Path, key: str, search_key: str) -> dict:
    from ..adabert.modeling import AdaBertForSequenceClassification
    from ..adabert.objective import KDHeads

    stages = row_dir / "bench-stages.json"
    marks = read_json(stages) if stages.is_file() else {}
    if not (rcfg.resume and marks.get("search") == search_key):  # a finished search survives new training settings
        pipeline.search(rcfg.update({"search_distill": "logits"}) if row.logits_only else rcfg, row_dir)
        write_json(stages, {"search": search_key})
    else:
        logger.info("bench row %s: search already done, training further", row.name)
    summary = read_json(row_dir / "search" / "genotype.json")
    if row.logits_only:
        if read_weights(row_dir / "search" / "heads.safetensors", "search"):
            raise RuntimeError("logits-only search saved probe heads: --search-distill logits did not reach the search")
        inputs = pipeline.stage_inputs(rcfg, row_dir)
        student = load_model_dir(AdaBertForSequenceClassification, row_dir / "search" / "student", "search")
        heads = KDHeads(0, rcfg.hidden_size, inputs.spec.num_labels, pair=inputs.spec.pair)
        trained = _train(rcfg, row_dir, inputs, student, heads, key)
    else:
        result = pipeline.retrain(rcfg, row_dir)
        seconds = read_json(row_dir / "model" / "training.json").get("retrain_seconds")
        trained = {"dev": result["dev"], "train_seconds": seconds}
    return {**trained, "search_seconds": summary.get("search_seconds"), "architecture": summary["genotype_str"],
            "genotype": summary["genotype"], "model_type": "adabert",
            "collapse": summary.get("collapse", {}).get("guard_applied")}


def _fresh_row(row: Row, rcfg: RunConfig, row_dir: Path, key: str) -> dict:
    from .students import fresh_adabert

    inputs = pipeline.stage_inputs(rcfg, row_dir)
    tok = inputs.tokenizer
    student, heads = fresh_adabert(rcfg, inputs.spec, row.genotype, inputs.knowledge.word_embeddings,
                                   inputs.knowledge.position_embeddings, tok.pad_token_id or 0, tok.sep_token_id,
                                   inputs.train.labels)
    write_json(row_dir / "search" / "genotype.json", {"genotype": row.genotype.to_dict(),
                                                      "genotype_str": str(row.genotype), "source": row.label})
    trained = _train(rcfg, row_dir, inputs, student, heads, key)
    return {**trained, "search_seconds": 0.0, "architecture": str(row.genotype), "genotype": row.genotype.to_dict(),
            "model_type": "adabert"}


def _bert_row(row: Row, rcfg: RunConfig, row_dir: Path, key: str, model_fn) -> dict:
    from ..adabert.objective import KDHeads, TargetScale
    from .students import BertStudent, describe_bert

    inputs = pipeline.stage_inputs(rcfg, row_dir)
    model = model_fn(inputs)
    student = BertStudent(model, TargetScale.of(inputs.train.labels, inputs.spec.is_regression))
    heads = KDHeads(student.num_layers, model.config.hidden_size, inputs.spec.num_labels)  # one per layer
    trained = _train(rcfg, row_dir, inputs, student, heads, key, save_model=model)
    return {**trained, "search_seconds": 0.0, "architecture": describe_bert(model.config), "model_type": "hf"}


def _run_row(row: Row, cfg: RunConfig, settings: BenchSettings, shared: _Shared, index: int) -> dict:
    """Seed index ``index`` of a row (run seed ``cfg.seed + index``): trained, or read back when already done."""
    rcfg = row.config(cfg)
    if index:
        rcfg = rcfg.update({"seed": cfg.seed + index}, f"bench seed {index}")
    if row.genotype_of:  # the genotype the source row found for this seed
        row = replace(row, genotype=Genotype.from_dict(shared.records[row.genotype_of][index]["genotype"]))
    elif row.genotypes:  # one genotype per seed index (another bench's searches)
        row = replace(row, genotype=row.genotypes[index])
    record = _row_record(row, rcfg, settings, shared, index)
    # how the row is presented comes from the row as defined now (a mark may predate a new label)
    return {**record, "name": row.name, "group": row.group, "label": row.label, "kind": row.kind, "seed": rcfg.seed}


def _row_record(row: Row, rcfg: RunConfig, settings: BenchSettings, shared: _Shared, index: int) -> dict:
    from ..measure.profile import count_params

    tag = row.name if settings.seeds == 1 else f"{row.name} (seed {rcfg.seed})"
    row_dir = seed_dir(shared.out, row.name, index)
    extra: dict = {"row": row.name, "kind": row.kind, "logits_only": row.logits_only,
                   "genotype": str(row.genotype) if row.genotype else None, "knowledge": shared.knowledge_key}
    if row.kind == "truncated":
        rcfg = rcfg.update({"retrain_lr": settings.pretrained_lr}, "bench")
        extra["layers"] = settings.truncate_layers
    if row.kind == "small_bert":
        full = shared.records.get("full")
        extra["target_params"] = full[index]["params"] if full else None
        extra["hiddens"] = list(settings.small_bert_hiddens)
    key = settings_key(rcfg, _SHAPING_GROUPS, extra)
    mark = row_dir / ROW_MARK
    if rcfg.resume and mark.is_file() and read_json(mark).get("key") == key and (row_dir / "model").is_dir():
        logger.info("bench row %s: already done for these settings, skipping", tag)
        return read_json(mark)
    logger.info("bench row %s: %s", tag, row.label)
    _prepare_row_dir(rcfg, shared, row_dir)
    if row.kind == "search":
        search_key = settings_key(rcfg, _SHAPING_GROUPS[:-1], extra)
        record = _search_row(row, rcfg, row_dir, key, search_key)
    elif row.kind == "fresh":
        record = _fresh_row(row, rcfg, row_dir, key)
    elif row.kind == "small_bert":
        record = _bert_row(row, rcfg, row_dir, key, lambda inputs: _make_small_bert(inputs, settings, extra["target_params"], rcfg.seed))
    elif row.kind == "truncated":
        record = _bert_row(row, rcfg, row_dir, key, lambda inputs: _make_truncated(rcfg, inputs, settings))
    else:
        raise AssertionError(row.kind)
    if record["model_type"] == "adabert":
        from ..adabert.modeling import AdaBertForSequenceClassification

        model = load_model_dir(AdaBertForSequenceClassification, row_dir / "model", "bench")
    else:
        from transformers import AutoModelForSequenceClassification

        model = load_model_dir(AutoModelForSequenceClassification, row_dir / "model", "bench")
    record.update(key=key, name=row.name, group=row.group, label=row.label, kind=row.kind,
                  params=count_params(model), retrain_epochs=rcfg.retrain_epochs, retrain_lr=rcfg.retrain_lr,
                  search_epochs=rcfg.search_epochs if row.kind == "search" else 0)
    write_json(mark, record)
    return record


def _make_small_bert(inputs, settings: BenchSettings, target_params: int | None, seed: int):
    from .students import small_bert, small_bert_hidden

    k = inputs.knowledge
    vocab = k.word_embeddings.size(0)
    positions = k.position_embeddings.size(0) if k.position_embeddings is not None else 512
    pad = inputs.tokenizer.pad_token_id or 0
    hidden = small_bert_hidden(inputs.spec, vocab, positions, pad, target_params, settings.small_bert_hiddens)
    logger.info("bench: small BERT hidden %d (closest in params to the searched student: %s)", hidden, target_params)
    return small_bert(inputs.spec, vocab, positions, hidden, pad, seed)


def _make_truncated(rcfg: RunConfig, inputs, settings: BenchSettings):
    from ..teacher.loading import load_teacher
    from .students import truncate_teacher

    teacher = load_teacher(rcfg.teacher, inputs.spec, "cpu", rcfg.trust_remote_code, rcfg.assume_label_order)
    layers = min(settings.truncate_layers, max(1, teacher.num_layers - 1))
    return truncate_teacher(teacher.model, layers, inputs.spec, teacher.label_order)


# ----------------------------------------------------------------------------- measure all side by side
def _distinct_models(out: Path, records: dict[str, list[dict]]
                     ) -> tuple[dict[str, tuple[Path, str]], dict[str, list[str]]]:
    """The model directories to measure, one per distinct architecture of a row (the seeds of one genotype share
    its size and speed), and per row the measured name of each seed index."""
    dirs: dict[str, tuple[Path, str]] = {}
    which: dict[str, list[str]] = {}
    for name, recs in records.items():
        if name == "teacher":
            continue
        first: dict[str, str] = {}
        for i, rec in enumerate(recs):
            key = first.setdefault(rec["architecture"], seed_dir(out, name, i).name)
            dirs.setdefault(key, (seed_dir(out, name, i) / "model", rec["model_type"]))
            which.setdefault(name, []).append(key)
    return dirs, which


def _measure(cfg: RunConfig, settings: BenchSettings, out: Path, records: dict[str, list[dict]], spec) -> dict:
    """``{row: [measurement per seed index]}`` (plus ``bert_base``), every model measured side by side."""
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    from ..adabert.modeling import AdaBertForSequenceClassification
    from ..teacher.loading import load_teacher
    from .measure import measure_side_by_side

    teacher = load_teacher(cfg.teacher, spec, "cpu", cfg.trust_remote_code, cfg.assume_label_order).model
    models = {"teacher": (teacher, teacher.config.vocab_size)}
    dirs, which = _distinct_models(out, records)
    for key, (model_dir, model_type) in dirs.items():
        cls = AdaBertForSequenceClassification if model_type == "adabert" else AutoModelForSequenceClassification
        model = load_model_dir(cls, model_dir, "bench")
        models[key] = (model, model.config.vocab_size)
    caps = {}
    if settings.bert_base:
        torch.manual_seed(0)
        models["bert_base"] = (BertForSequenceClassification(BertConfig(num_labels=spec.num_labels)), 30522)
        caps["bert_base"] = min(cfg.latency_repeats, max(3, cfg.latency_repeats // 4))
    logger.info("bench: measuring %d models side by side (seq %d, %d threads, %d interleaved repeats)...",
                len(models), cfg.eval_seq_len, cfg.latency_threads, cfg.latency_repeats)
    measured = measure_side_by_side(models, cfg.eval_seq_len, (1, 32), cfg.latency_threads, cfg.latency_repeats,
                                    caps, seed=cfg.seed)
    result = {name: [measured[k] for k in keys] for name, keys in which.items()}
    result["teacher"] = [measured["teacher"]]
    if "bert_base" in measured:
        result["bert_base"] = [measured["bert_base"]]
    return result


# ----------------------------------------------------------------------------- random genotypes and their costs
def _random_draws(cfg: RunConfig, settings: BenchSettings, names: list[str]):
    """(uniform draws, per-bin draws, cost, bins); cost and bins only when random rows are selected."""
    from .bins import budget_bins, cost_bins, draw_per_bin, genotype_cost
    from .students import random_genotypes

    uniform = random_genotypes(settings.random_n, cfg.k_max, cfg.min_parametric, cfg.seed)
    if "random" not in names:
        return uniform, [], None, None
    cost = genotype_cost(cfg)
    if settings.budgets_ms:  # bin b: between budget b - 1 and budget b; nothing is drawn above the last budget
        bins = budget_bins(cost, settings.budgets_ms)
        wanted = len(settings.budgets_ms)
    else:
        bins = cost_bins(cost, settings.latency_bins, cfg.k_max, cfg.min_parametric, cfg.seed)
        wanted = bins.count
    binned = (draw_per_bin(bins, cost, settings.random_per_bin, cfg.k_max, cfg.min_parametric, cfg.seed, wanted)
              if settings.random_per_bin else [])
    return uniform, binned, cost, bins


def _attach_costs(records: dict[str, list[dict]], cost, bins) -> None:
    """Every genotype row's seeds get their genotype's cost and cost bin (in memory: the marks stay as written)."""
    for recs in records.values():
        for rec in recs:
            if rec.get("genotype"):
                value = cost(Genotype.from_dict(rec["genotype"]))
                rec.update(cost=round(value, 4), bin=bins.bin_of(value))


# ----------------------------------------------------------------------------- the whole bench
def run_bench(cfg: RunConfig, settings: BenchSettings, out: str | Path) -> dict:
    """Every selected row (each seed, seed-major: all rows of seed index 0 first), then the side-by-side
    measurement; writes bench.json, bench.md, pareto.png."""
    from ..utils import run_metadata
    from .plot import plot_pareto
    from .report import assemble, bench_table
    from .rows import selected_names
    from .students import bench_genotypes, load_genotype

    out = Path(out)
    cfg.validate()
    settings.validate()
    cfg.require("teacher", "task")
    if cfg.seed + settings.seeds - 1 > SEED_MAX:
        raise BertnasError(f"--seed {cfg.seed} with --seeds {settings.seeds} runs past the largest seed {SEED_MAX}: "
                           "pass a smaller --seed")
    other = None
    if settings.genotype_from:  # another bench: its searched genotype of each seed; else one genotype for all
        other = bench_genotypes(settings.genotype_from, settings.seeds) or load_genotype(settings.genotype_from)
    names = selected_names(settings.rows, cfg, settings)  # bad row names fail before any work
    uniform, binned, cost, bins = _random_draws(cfg, settings, names)
    rows = resolve_rows(settings.rows, cfg, settings, uniform, other, binned)
    info, probe_seconds = probe_once(cfg, out)
    data = load_data(cfg)
    spec = data.spec
    shared = _Shared(out, out / "probe", info["knowledge_key"], {r.name: [] for r in rows})
    shared.records["teacher"] = [{"name": "teacher", "group": "teacher", "label": "teacher", "kind": "teacher",
                                  "dev": info["teacher_dev"], "search_seconds": None, "train_seconds": None,
                                  "probe_seconds": probe_seconds, "model_type": "hf", "seed": cfg.seed}]
    for index in range(settings.seeds):
        for row in rows[1:]:
            shared.records[row.name].append(_run_row(row, cfg, settings, shared, index))
    from transformers import AutoConfig

    tconf = AutoConfig.from_pretrained(cfg.teacher, trust_remote_code=cfg.trust_remote_code)
    from .students import describe_bert

    shared.records["teacher"][0]["architecture"] = describe_bert(tconf) + " (teacher)"
    if bins is not None:
        _attach_costs(shared.records, cost, bins)
    measured = _measure(cfg, settings, out, shared.records, spec)
    results = assemble(spec, [shared.records[r.name] for r in rows], measured, cfg, settings, probe_seconds, bins)
    results["metadata"] = run_metadata()
    write_json(out / "bench.json", results)
    atomic_write_text(out / "bench.md", bench_table(results) + "\n")
    plot_pareto(results, out / "pareto.png")
    return results
