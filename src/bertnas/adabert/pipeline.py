"""AdaBERT, stage by stage over one run directory, in the order of the paper's method section.

Input: a BERT fine-tuned on one task (the teacher) and the task's data. Output: a small model of stacked
convolutional cells for that task, searched and trained with the teacher's knowledge. The CLI and the Python
API (``from bertnas import run, probe, search, retrain, evaluate``) both call these functions.

1. :func:`probe`    - knowledge from the teacher. One pass of the teacher caches its logits and per-layer
   features (shared ``teacher.knowledge``; optional teacher-labelled augmentation, ``teacher.augment``), and
   one linear probe per teacher layer turns each layer into task predictions (``teacher.probes``).
2. :func:`search`   - differentiable search of the cell and the depth.
   The space: the op table (``ops``), edges and genotypes (``genotype``), the blocks the supernet and the
   final model share - pair layout, pooling, classifier (``blocks``) - and the supernet of K_max cells over
   the teacher's projected embeddings (``supernet``).
   The objective L = (1 - gamma) CE + gamma KD + beta L_E: attentive hierarchical distillation from the
   probes (``objective``, over the shared ``training.losses``) and the efficiency loss from measured op
   costs (``costs``).
   The search: straight-through Gumbel-softmax samples of the op on every edge and of the depth
   (``gumbel``, ``architecture``), alternating weight and architecture steps in the shared resumable loop
   (``searcher``, ``training.loop``); then derivation, 2 edges per node with the collapse guard
   (``derive``), the student built from the searched weights (``student``) and its picture (``plot``).
3. :func:`retrain`  - the derived student trained further on CE + KD, best dev epoch kept (``retrain``), saved
   as a Hugging Face model of type ``adabert`` (``modeling``).
4. :func:`evaluate` - dev metrics, params, FLOPs and latency of student and teacher side by side (shared
   ``measure``).
:func:`run` runs them in order, skipping a stage already done for the same settings; ``demo`` runs it all on
the built-in synthetic task.

Under ``torchrun`` (``training.distributed``): rank 0 alone runs the teacher, the probes and the measurements
and writes every file; search and further training run on every rank, each on its shard of every batch, and
every rank ends with the same architecture and weights.

Run directory (each stage writes its part through a temp dir and a rename)::

    config.json           resolved settings + versions + git hash
    tokenizer/            the teacher's tokenizer
    probes/               probes.safetensors, probes.json (knowledge key, teacher and probe dev metrics)
    search/               genotype.json, history.json, heads.safetensors, student/ (searched weights + tokenizer)
    model/                the final model: config.json, model.safetensors, tokenizer files
    architecture.png      the searched cell and depth
    results.json, results.md
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..config import RunConfig
from ..data.encode import Encoded, encode
from ..data.examples import TaskData, TaskSpec
from ..data.metrics import compute_metrics
from ..data.split import HoldOut, carve, take, validation_size
from ..errors import BertnasError
from ..rundir import load_data, save_run_config
from .derive import decisiveness
from ..training import distributed as ddp
from ..utils import (atomic_dir, load_model_dir, read_json, read_weights, resolve_device, run_metadata, set_seed,
                    write_json)

logger = logging.getLogger("bertnas")
STAGES = ("probe", "search", "retrain", "evaluate")


# ----------------------------------------------------------------------------- helpers
def _writable_cache(cache_dir: str | None) -> None:
    """Fail before anything is written when the knowledge cache cannot be created."""
    from ..teacher.knowledge import cache_root

    cache = cache_root(cache_dir)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BertnasError(f"cannot create the cache directory {cache} ({exc.strerror}): pass a writable "
                           "--cache-dir") from exc


def _need(path: Path, step: str) -> Path:
    if not path.exists():
        raise BertnasError(f"{path} not found: run `bertnas {step} --out {path.parent if path.parent.name not in ('search', 'probes') else path.parent.parent}` first")
    return path


def _tokenizer(out: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(_need(out / "tokenizer", "probe")), trust_remote_code=trust_remote_code)


def _knowledge(cfg: RunConfig, out: Path, data: TaskData):
    """The run's cached teacher knowledge and probes.json, checked against the data read now."""
    from ..teacher.knowledge import load_knowledge

    info = read_json(_need(out / "probes" / "probes.json", "probe"))
    knowledge = load_knowledge(info["knowledge_key"], cfg.cache_dir)
    knowledge.check_data(data)
    return knowledge, info


@dataclass
class StageInputs:
    """What search and retraining read from a run directory (never the teacher itself)."""

    spec: TaskSpec
    tokenizer: object
    knowledge: object
    train: Encoded
    dev: Encoded
    targets: object
    device: torch.device
    holdout: HoldOut  # the validation split carved from ``train`` (``--val-examples``), and what trains

    @property
    def val(self) -> Encoded | None:
        """The held-out validation examples (None when nothing is held out: choices are made on dev)."""
        return take(self.train, self.holdout.val) if self.holdout.active else None


def _device(cfg: RunConfig) -> torch.device:
    """The run's device; under torchrun, also joins the process group (a no-op otherwise)."""
    device = resolve_device(cfg.device)
    ddp.setup(device)
    return device


def stage_inputs(cfg: RunConfig, out: Path) -> StageInputs:
    from .objective import Targets

    device = _device(cfg)
    set_seed(cfg.seed)
    data = load_data(cfg)
    tokenizer = _tokenizer(out, cfg.trust_remote_code)
    knowledge, info = _knowledge(cfg, out, data)
    probes = read_weights(out / "probes" / "probes.safetensors", "probe")
    spec = data.spec
    train = encode(tokenizer, data.train, cfg.max_seq_len, spec.is_regression)
    teacher_logits, probe_logits = knowledge.logits("train"), probes["train_logits"]
    if info.get("augment_key"):  # teacher-labelled copies follow the original examples
        from ..data.encode import concat
        from ..teacher.augment import load_augmented

        aug = load_augmented(info["augment_key"], cfg.cache_dir, spec.is_regression, train.pad_id,
                             limit=info.get("augment_examples"))  # the key may name a cached set with more copies
        train = concat(train, aug.encoded)
        teacher_logits = torch.cat([teacher_logits, aug.teacher_logits])
        probe_logits = torch.cat([probe_logits, aug.probe_logits], 1)
        logger.info("training data: %d examples + %d teacher-labelled copies", len(data.train), len(aug.encoded))
    holdout = carve(len(data.train), len(train), validation_size(cfg.val_examples, len(data.train)), cfg.seed)
    if holdout.active:
        logger.info("validation split: %d of %d training examples held out (--val-examples); dev is only reported",
                    len(holdout.val), len(data.train))
    return StageInputs(
        spec=spec, tokenizer=tokenizer, knowledge=knowledge, train=train,
        dev=encode(tokenizer, data.dev, cfg.max_seq_len, spec.is_regression),
        targets=Targets(teacher_logits, probe_logits, device), device=device, holdout=holdout,
    )


# ----------------------------------------------------------------------------- stages
def probe(cfg: RunConfig, out: str | Path) -> dict:
    """Load the teacher, cache its knowledge, train and save one probe per layer (under torchrun: on rank 0,
    while the other ranks wait for it)."""
    _device(cfg)
    return ddp.on_main(_probe, cfg, out)


def _probe(cfg: RunConfig, out: str | Path) -> dict:
    from ..teacher.knowledge import compute_knowledge
    from ..teacher.loading import load_teacher
    from ..teacher.probes import probe_unsampled, train_probes

    out = Path(out)
    cfg.validate()
    cfg.require("teacher", "task")
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)
    data = load_data(cfg)  # bad data fails here, before anything is written
    validation_size(cfg.val_examples, len(data.train))  # so does a validation split that leaves too little
    teacher = load_teacher(cfg.teacher, data.spec, device, cfg.trust_remote_code, cfg.assume_label_order)
    _writable_cache(cfg.cache_dir)
    _, positions = teacher.embedding_tables()
    if positions is not None and cfg.max_seq_len > positions.size(0):
        raise BertnasError(f"--max-seq-len {cfg.max_seq_len} is longer than the teacher's {positions.size(0)} "
                           "positions: pass a smaller --max-seq-len")
    save_run_config(cfg, out)
    with atomic_dir(out / "tokenizer") as tmp:
        teacher.tokenizer.save_pretrained(tmp)
    knowledge = compute_knowledge(teacher, data, cfg.max_seq_len, cfg.teacher_batch_size, device, cfg.cache_dir,
                                  cfg.teacher_dtype, cfg.teacher_token_budget, cfg.probe_max_examples)
    probes = train_probes(knowledge, data, cfg.probe_epochs, cfg.probe_lr, seed=cfg.seed, device=device)
    sampled = knowledge.feature_rows() is not None
    train_enc = (encode(teacher.tokenizer, data.train, cfg.max_seq_len, data.spec.is_regression)
                 if sampled or cfg.augment else None)
    if sampled:  # the rows without cached features: their probe predictions from a second teacher pass
        t0 = time.perf_counter()
        rest = probe_unsampled(probes, knowledge, teacher, train_enc, device, cfg.teacher_batch_size,
                               cfg.teacher_token_budget)
        logger.info("probes: trained on %d sampled training examples (--probe-max-examples); the other %d examples' "
                    "probe predictions computed on the fly by a second teacher pass in %.0fs",
                    len(data.train) - rest, rest, time.perf_counter() - t0)
    augmented = {}
    if cfg.augment:
        from ..teacher.augment import AugmentSettings, label_augmented

        settings = AugmentSettings(cfg.augment, cfg.augment_replace_prob, cfg.augment_edit_prob, cfg.seed)
        aug = label_augmented(teacher, train_enc, settings, probes.tensors, knowledge.key, device,
                              knowledge.bf16, data.spec.is_regression,
                              cfg.teacher_batch_size, cfg.teacher_token_budget, cfg.cache_dir)
        augmented = {"augment_key": aug.key, "augment_examples": len(aug.encoded)}
    info = {
        "knowledge_key": knowledge.key, "task": data.spec.name, "headline": data.spec.headline,
        "num_teacher_layers": knowledge.num_layers, "teacher": cfg.teacher,
        "teacher_dev": compute_metrics(data.spec, knowledge.logits("dev").numpy(), data.dev.labels),
        "probes_dev": [{"layer": l, "name": "embeddings" if l == 0 else f"hidden_{l}", **m}
                       for l, m in enumerate(probes.metrics)],
        "teacher_precision": knowledge.meta.get("precision"), **augmented,
    }
    with atomic_dir(out / "probes") as tmp:
        save_file(probes.tensors, str(tmp / "probes.safetensors"))
        write_json(tmp / "probes.json", info)
    _mark(out, "probe", cfg)
    return info


def search(cfg: RunConfig, out: str | Path) -> dict:
    """Search the architecture, derive the genotype, save the student with its searched weights."""
    from .plot import plot_architecture
    from .searcher import build_supernet, finish_search, latency_costs, rank_candidates, search as run_search

    out = Path(out)
    inputs = stage_inputs(cfg, out)
    spec, tokenizer, knowledge = inputs.spec, inputs.tokenizer, inputs.knowledge
    supernet = build_supernet(cfg, spec, knowledge.word_embeddings, knowledge.position_embeddings,
                              tokenizer.sep_token_id)
    t0 = time.perf_counter()
    ckpt = out / "checkpoints" / "search.pt"
    table = None
    if cfg.efficiency == "latency":  # measured (or read from the cache) once, by rank 0 under torchrun
        from .costs import adabert_latency_table

        table = ddp.on_main(adabert_latency_table, cfg)
    if cfg.derive_candidates > 1 and not inputs.holdout.active:
        logger.info("no validation split (--val-examples): keeping the most likely architecture, not ranking %d "
                    "candidates", cfg.derive_candidates)
    arch, heads, history = run_search(cfg, spec, inputs.train, inputs.dev, inputs.targets, supernet, inputs.device, ckpt,
                                      resume_key=_stage_key(cfg, "search") + knowledge.key, latency_table=table,
                                      holdout=inputs.holdout)
    chosen, candidates = None, None
    if cfg.derive_candidates > 1 and inputs.holdout.active:
        from .objective import TargetScale

        scale = TargetScale.of(inputs.train.labels, spec.is_regression)  # as the search and the student
        genotype, report, candidates = rank_candidates(cfg, spec, supernet, arch, inputs.val, inputs.device, scale,
                                                       inputs.train, inputs.holdout.train,
                                                       costs=latency_costs(cfg, table))  # None unless --efficiency latency
        chosen = (genotype, report)
    result = finish_search(cfg, spec, supernet, arch, heads, history, tokenizer.pad_token_id or 0,
                           tokenizer.sep_token_id, train_labels=inputs.train.labels, latency_table=table,
                           chosen=chosen)
    ddp.check_same("the derived architecture", str(result.genotype))
    summary = {
        "genotype": result.genotype.to_dict(), "genotype_str": str(result.genotype),
        "collapse": result.report.to_dict(), "op_probs": result.op_probs, "depth_probs": result.depth_probs,
        "op_costs": result.op_costs, "latency": result.latency, "search_seconds": round(time.perf_counter() - t0, 1),
        "decisiveness": decisiveness(arch.alpha, arch.depth_logits), "candidates": candidates,
        "val_examples": len(inputs.holdout.val),
        "history": history,
    }

    def save() -> None:
        with atomic_dir(out / "search") as tmp:
            result.student.save_pretrained(tmp / "student")
            tokenizer.save_pretrained(tmp / "student")  # every model directory carries its tokenizer
            save_file({k: v.contiguous() for k, v in result.heads.state_dict().items()}, str(tmp / "heads.safetensors"))
            write_json(tmp / "genotype.json", summary)
        plot_architecture(result.genotype, out / "architecture.png", result.op_probs, result.depth_probs,
                          title=f"AdaBERT cell searched for {spec.name}")
        ckpt.unlink(missing_ok=True)
        (out / "checkpoints" / "retrain.pt").unlink(missing_ok=True)  # it belonged to the previous search
        _mark(out, "search", cfg)

    ddp.on_main(save)
    logger.info("searched genotype: %s", result.genotype)
    for warning in result.report.warnings:
        logger.warning("%s", warning)
    return summary


def retrain(cfg: RunConfig, out: str | Path) -> dict:
    """Train the derived student further and save the final Hugging Face model directory."""
    from .modeling import AdaBertForSequenceClassification
    from .objective import KDHeads
    from .retrain import retrain as run_retrain

    out = Path(out)
    inputs = stage_inputs(cfg, out)
    spec, tokenizer = inputs.spec, inputs.tokenizer
    student = load_model_dir(AdaBertForSequenceClassification, out / "search" / "student", "search")
    saved_heads = read_weights(out / "search" / "heads.safetensors", "search")  # none after --search-distill logits:
    heads = KDHeads(student.config.architecture.depth if saved_heads else 0, student.config.hidden_size,  # then
                    spec.num_labels, pair=student.config.pair_input, pair_head=student.config.pair_head)  # logits only
    heads.load_state_dict(saved_heads)
    t0 = time.perf_counter()
    ckpt = out / "checkpoints" / "retrain.pt"
    student, best, history = run_retrain(cfg, spec, student, heads, inputs.train, inputs.dev, inputs.targets,
                                         inputs.device, ckpt, resume_key=_stage_key(cfg, "retrain") + inputs.knowledge.key,
                                         val=inputs.val, train_subset=inputs.holdout.train)
    seconds = round(time.perf_counter() - t0, 1)

    def save() -> None:
        with atomic_dir(out / "model") as tmp:
            student.cpu().save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "training.json", {"dev": best, "history": history, "retrain_seconds": seconds})
        ckpt.unlink(missing_ok=True)
        _mark(out, "retrain", cfg)

    ddp.on_main(save)
    return {"dev": best, "history": history}


def evaluate(cfg: RunConfig, out: str | Path, onnx_latency: bool = True) -> dict:
    """Dev metrics of the final model, and params/FLOPs/latency of student and teacher side by side;
    ``onnx_latency``: also the student's onnxruntime latency (when onnx and onnxruntime are installed).
    Under torchrun rank 0 measures alone (the others wait for its results)."""
    _device(cfg)
    return ddp.on_main(_evaluate, cfg, out, onnx_latency)


def _evaluate(cfg: RunConfig, out: str | Path, onnx_latency: bool = True) -> dict:
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    from ..measure import profile_classifier
    from ..measure.baselines import baselines
    from ..measure.report import assemble_results, results_table
    from ..teacher.loading import load_teacher
    from ..training.evaluation import evaluate as eval_split
    from ..utils import atomic_write_text

    out = Path(out)
    device = resolve_device(cfg.device)
    data = load_data(cfg)
    spec = data.spec
    model_dir = _need(out / "model", "retrain")
    student = load_model_dir(AutoModelForSequenceClassification, model_dir, "retrain").to(device).eval()
    tokenizer = _tokenizer(out, cfg.trust_remote_code)
    dev = encode(tokenizer, data.dev, cfg.max_seq_len, spec.is_regression)

    def predict(b):
        return student(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                       token_type_ids=b["token_type_ids"]).logits

    student_dev = eval_split(predict, dev, spec, device)
    extra_dev = {name: eval_split(predict, encode(tokenizer, ex, cfg.max_seq_len, spec.is_regression), spec, device)
                 for name, ex in data.extra_dev.items()}  # e.g. MNLI dev_mismatched
    knowledge, _ = _knowledge(cfg, out, data)
    teacher_dev = compute_metrics(spec, knowledge.logits("dev").numpy(), data.dev.labels)
    vocab = student.config.vocab_size
    prof = dict(batch_sizes=(1, 32), seq_len=cfg.eval_seq_len, threads=cfg.latency_threads,
                repeats=cfg.latency_repeats, device="cpu")
    logger.info("measuring latency (seq %d, %d threads, batch 1 and 32)...", cfg.eval_seq_len, cfg.latency_threads)
    s_prof = profile_classifier(student.cpu(), vocab, **prof)
    s_onnx = None
    if onnx_latency:
        from ..data.encode import batches as make_batches
        from ..measure.onnx_latency import model_onnx_latency

        example = next((b for b in make_batches(dev, 32) if b["input_ids"].shape[0] >= 2), None)
        if example is not None:
            logger.info("measuring the student's onnxruntime latency (exported to a temp directory)...")
            s_onnx = model_onnx_latency(student, example, (1, 32), cfg.eval_seq_len, cfg.latency_threads,
                                        cfg.latency_repeats)
    teacher = load_teacher(cfg.teacher, spec, "cpu", cfg.trust_remote_code, cfg.assume_label_order)
    t_prof = profile_classifier(teacher.model, teacher.model.config.vocab_size, **prof)
    b_prof = None
    if cfg.compare_bert_base:
        logger.info("measuring a BERT-base-sized model (random weights) for reference...")
        base = BertForSequenceClassification(BertConfig(num_labels=max(spec.num_labels, 1))).eval()
        b_prof = profile_classifier(base, base.config.vocab_size, **{**prof, "repeats": max(3, cfg.latency_repeats // 4)})
    results = assemble_results(
        spec, teacher_dev, student_dev, t_prof, s_prof, b_prof, baselines(spec, data.train, data.dev),
        teacher_source=cfg.teacher, architecture=student.config.architecture, genotype=student.config.genotype,
        extra_dev=extra_dev, measurement={"seq_len": cfg.eval_seq_len, "threads": cfg.latency_threads,
                                          "repeats": cfg.latency_repeats, "statistic": "median", "device": "cpu"},
    )
    if s_onnx is not None:
        from ..measure.report import add_onnx_latency

        add_onnx_latency(results, s_onnx)
    if not results["sanity"]["student_beats_baseline"]:
        logger.warning("the student (dev %s %.4f) does not beat the %s baseline (%.4f): it has not learned more than "
                       "that; train longer, check the teacher and the data", spec.headline, results["student"]["metric"],
                       results["sanity"]["baseline"], results["sanity"]["baseline_metric"])
    results["metadata"] = run_metadata()
    write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", results_table(results) + "\n")
    return results


def run(cfg: RunConfig, out: str | Path, onnx_latency: bool = True, stage_runner=None) -> dict:
    """All stages in order; with ``resume`` a stage whose output exists for the same settings is skipped.
    ``onnx_latency``: passed to :func:`evaluate`. ``stage_runner(name, fn)``, when given, runs each stage's
    ``fn()`` (evaluate included) and returns its result: how ``--time-budget`` holds stages to a deadline and
    counts their time (``bertnas.budget``). With ``cfg.time_budget`` set, call ``bertnas.run`` (which plans
    the budget and comes here), not this function."""
    out = Path(out)
    cfg.validate()
    _device(cfg)
    runner = stage_runner or (lambda name, fn: fn())
    done = ddp.on_main(completed_stages, out, cfg) if cfg.resume else set()  # rank 0 decides for all ranks
    if done:  # the steps that follow read their settings from the run directory
        ddp.on_main(save_run_config, cfg, out)
    for name, fn in (("probe", probe), ("search", search), ("retrain", retrain)):
        if name in done:
            logger.info("stage %s: already done for these settings, skipping (--no-resume to redo)", name)
            continue
        logger.info("stage %s", name)
        runner(name, lambda: fn(cfg, out))
    return runner("evaluate", lambda: evaluate(cfg, out, onnx_latency=onnx_latency))


_STAGE_GROUPS = {"probe": {"data", "teacher", "probes"}, "search": {"data", "split", "teacher", "probes", "space", "search"},
                 "retrain": {"data", "split", "teacher", "probes", "space", "search", "retrain"}}
"""Setting groups whose values shape each stage's result (the validation split shapes search and training, not
the teacher's knowledge or the probes)."""


def _stage_key(cfg: RunConfig, stage: str) -> str:
    from dataclasses import fields

    from ..utils import hash_obj

    keep = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.metadata.get("group") in _STAGE_GROUPS[stage]
            and f.name not in _KEYED_ELSEWHERE and getattr(cfg, f.name) != _NEUTRAL.get(f.name, _NONE)}
    keep["seed"] = cfg.seed
    return hash_obj(keep)


_NONE = object()
_KEYED_ELSEWHERE = {"probe_max_examples"}
"""Settings left out of the stage keys: the feature sample is part of the knowledge key, which every stage's key
and checkpoint key already carry (a sample only changes anything above the bound)."""
_NEUTRAL = {"search_distill": "probes"}
"""Settings added since runs were made, left out of the keys at the value that does what the code did before
them: a run directory made before a setting existed keeps its stage marks and checkpoints."""


def completed_stages(out: Path, cfg: RunConfig) -> set[str]:
    """The stages of the run directory ``out`` done with the settings of ``cfg`` (``stages.json``), each only
    if every stage before it is done too: what ``run`` skips."""
    path = out / "stages.json"
    if not path.is_file():
        return set()
    marks = read_json(path)
    done = set()
    for stage in ("probe", "search", "retrain"):  # a stage counts only if all before it count too
        if marks.get(stage) != _stage_key(cfg, stage):
            break
        done.add(stage)
    return done


def unmark_stage(out: Path, stage: str) -> None:
    """Forget that ``stage`` is done (a stage the time budget cut short is not the full stage of its settings)."""
    path = out / "stages.json"
    if path.is_file():
        marks = read_json(path)
        if marks.pop(stage, None) is not None:
            write_json(path, marks)


def _mark(out: Path, stage: str, cfg: RunConfig) -> None:
    path = out / "stages.json"
    marks = read_json(path) if path.is_file() else {}
    marks[stage] = _stage_key(cfg, stage)
    for later in STAGES[STAGES.index(stage) + 1:]:
        marks.pop(later, None)
    write_json(path, marks)
