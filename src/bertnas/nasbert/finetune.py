"""Fine-tuning with distillation: (1 - lambda) task loss + lambda KL(teacher || student), lambda = 0.5.

Works on any Hugging Face sequence classifier directory (a selected ``nasbert`` model or the hand-designed
BERT baseline), so both are trained exactly the same way. The fine-tuned teacher runs once over the
training split and its teacher-labelled copies (``--augment``; bfloat16 autocast on CPU) and its logits are kept.
The epoch saved is the best on a validation split carved from the training data (``--val-examples``; with 0, the
last epoch); the dev set is only reported.

``OUT/results.json`` also records where the task data was read (``data``) and what the teacher was
(``teacher_dev``, ``teacher_architecture``, ``teacher_params``): ``bertnas export --out OUT`` reads the same dev
set back through :func:`read_finetune_run`, and the benchmark report's teacher row comes from these values.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import pickle
import random
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForSequenceClassification

from ..data.encode import batches, concat, encode, num_batches
from ..data.examples import TaskData
from ..data.metrics import compute_metrics
from ..data.readers import load_task
from ..data.split import carve, take, validation_size
from ..errors import BertnasError
from ..measure.profile import count_params, profile_classifier
from ..teacher.augment import AugmentSettings, augment_encoded, teacher_labels
from ..teacher.knowledge import bf16_supported, default_cache_dir
from ..teacher.loading import load_teacher, load_tokenizer
from ..training.loop import stop_if_nonfinite
from ..training.optim import adamw
from ..utils import atomic_dir, progress, read_json, resolve_device, set_seed, write_json
from .config import FinetuneSettings

logger = logging.getLogger("bertnas")


@torch.inference_mode()
def teacher_logits(model: torch.nn.Module, data, batch_size: int = 64, label_order: list[int] | None = None) -> torch.Tensor:
    """Teacher logits for every example (length-sorted batches, bfloat16 autocast on CPU), in task label order."""
    out = torch.zeros(len(data), model.config.num_labels)
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_supported(torch.device("cpu"))):
        for b in progress(batches(data, batch_size, subset=order), desc="teacher logits",
                          total=num_batches(len(data), batch_size), examples=len(data)):
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"]).logits
            out[b["index"]] = logits.float()
    return out if label_order is None else out[:, label_order]


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, lam: float, temperature: float,
            regression: bool) -> torch.Tensor:
    """(1 - lam) * task loss + lam * KL(teacher || student) at ``temperature`` (scaled by T^2)."""
    if regression:
        return (1 - lam) * F.mse_loss(student.squeeze(-1), labels) + lam * F.mse_loss(student, teacher)
    task = F.cross_entropy(student, labels)
    kl = F.kl_div(F.log_softmax(student / temperature, -1), F.softmax(teacher / temperature, -1), reduction="batchmean")
    return (1 - lam) * task + lam * kl * temperature**2


@torch.no_grad()
def evaluate(model, data, spec, batch_size: int = 64, label_order: list[int] | None = None) -> dict[str, float]:
    model.eval()
    logits = torch.zeros(len(data), model.config.num_labels)
    for b in batches(data, batch_size):
        logits[b["index"]] = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                   token_type_ids=b["token_type_ids"]).logits.float()
    return compute_metrics(spec, logits if label_order is None else logits[:, label_order], data.labels)


def _cached_teacher_outputs(tch, name: str, train, dev, spec) -> tuple[torch.Tensor, dict]:
    """Teacher logits on the training split and its dev metrics, cached on disk: every student of a
    comparison is fine-tuned against the same teacher and data, so the teacher runs once for all of them."""
    h = hashlib.sha256()
    for f in sorted(Path(tch.source).glob("*")) if Path(tch.source).is_dir() else []:
        if f.is_file():
            h.update(f.name.encode() + str(f.stat().st_size).encode() + str(f.stat().st_mtime_ns).encode())
    h.update(json.dumps([str(Path(name).resolve()), spec.name, train.input_ids, train.token_type_ids, dev.input_ids,
                         tch.label_order]).encode())
    path = default_cache_dir() / f"nasbert-teacher-logits-{h.hexdigest()[:24]}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, weights_only=True)
            return saved["logits"], json.loads(saved["dev"])
        except (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as exc:
            logger.warning("the cached teacher outputs %s are damaged (%s: %s): computing them again", path,
                           type(exc).__name__, " ".join(str(exc).split())[:120] or "empty or cut short")
    soft = teacher_logits(tch.model, train, label_order=tch.label_order)
    teacher_dev = evaluate(tch.model, dev, spec, label_order=tch.label_order)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    torch.save({"logits": soft, "dev": json.dumps(teacher_dev)}, tmp)
    os.replace(tmp, path)
    return soft, teacher_dev


def with_teacher(tch, name: str, train, dev, spec, settings: FinetuneSettings):
    """The training set with ``settings.augment`` copies of every example appended (the word replacement,
    deletion and swaps AdaBERT trains on, ``teacher.augment``), the teacher's logits for all of it, and the
    teacher's dev metrics. A copy's gold label is the teacher's prediction; the originals keep theirs."""
    n = len(train)
    if settings.augment:
        aug = AugmentSettings(settings.augment, settings.augment_replace_prob, settings.augment_edit_prob, settings.seed)
        table = tch.model.get_input_embeddings().weight.detach().float().cpu()
        train = concat(train, augment_encoded(train, tch.tokenizer, table, aug))
    soft, teacher_dev = _cached_teacher_outputs(tch, name, train, dev, spec)
    if settings.augment:
        train.labels[n:] = teacher_labels(soft[n:], spec.is_regression)
        logger.info("augmentation: %d teacher-labelled copies of %d training examples", len(train) - n, n)
    return train, soft, teacher_dev


def _shape(config) -> str | None:
    """``6L-H384`` for a BERT-like config: the report names the teacher by what it is, not by a fixed label."""
    layers, hidden = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    return f"{layers}L-H{hidden}" if layers and hidden else None


def _data_source(task: str, data_dir: str | None, train_file: str | None, dev_file: str | None) -> dict:
    """Where the task's data was read from (absolute paths), so later commands (export) can read the same dev set."""
    def absolute(p: str | None) -> str | None:
        return None if p is None else str(Path(p).expanduser().resolve())

    return {"task": task, "data_dir": absolute(data_dir), "train_file": absolute(train_file),
            "dev_file": absolute(dev_file)}


@dataclass(frozen=True)
class FinetuneRun:
    """A directory written by ``bertnas nasbert finetune --out DIR``, read back by later commands (export)."""

    out: Path
    results: dict
    settings: FinetuneSettings

    @property
    def model_dir(self) -> Path:
        return self.out / "model"

    def command(self) -> str:
        """The command that writes this directory again (for error messages)."""
        r = self.results
        return (f"bertnas nasbert finetune --model {r.get('model', 'MODEL')} --teacher {r.get('teacher', 'TEACHER')} "
                f"--task {r.get('task', 'TASK')} ... --out {self.out}")

    def load_data(self) -> TaskData:
        """The task's train/dev data from the sources fine-tuning read."""
        d = self.results["data"]
        return load_task(d["task"], d.get("data_dir"), d.get("train_file"), d.get("dev_file"))


def is_finetune_run(out: str | Path) -> bool:
    """Whether ``out`` looks like the ``--out`` of ``bertnas nasbert finetune``: a results.json and no AdaBERT
    run config.json (an AdaBERT run directory has both)."""
    out = Path(out)
    return (out / "results.json").is_file() and not (out / "config.json").is_file()


def read_finetune_run(out: str | Path) -> FinetuneRun:
    """The results and settings of a fine-tuning run; a directory written before the data source was recorded
    is a one-line error (its dev set cannot be found again)."""
    out = Path(out)
    results = read_json(out / "results.json")
    if not isinstance(results, dict) or "teacher_dev" not in results or "settings" not in results:
        raise BertnasError(f"{out}/results.json was not written by `bertnas nasbert finetune`: pass the --out of a "
                           "NAS-BERT fine-tuning run")
    known = {f.name for f in fields(FinetuneSettings)}
    run = FinetuneRun(out, results, FinetuneSettings(**{k: v for k, v in results["settings"].items() if k in known}))
    if not isinstance(results.get("data"), dict) or "task" not in results["data"]:
        raise BertnasError(f"{out}/results.json does not say where the task data is (an older bertnas wrote it): "
                           f"run `{run.command()}` again")
    return run


def _load_for_task(model_dir: str | Path, num_labels: int, labels: dict[int, str]):
    """The model with a classifier for the task's labels. A head of another size (a selected model comes with 2
    labels; a regression task needs 1) is made anew: said in one line here, not in transformers' load-report
    table, which reads like a failure."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=num_labels, id2label=labels, label2id={v: k for k, v in labels.items()},
            ignore_mismatched_sizes=True, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(before)
    saved = AutoConfig.from_pretrained(model_dir).num_labels
    if saved != num_labels:
        logger.info("classifier head made anew for %d label(s) (the model was saved with %d); the encoder is kept",
                    num_labels, saved)
    return model


def finetune(model_dir: str, teacher: str, task: str, out: str | Path, settings: FinetuneSettings,
             data_dir: str | None = None, train_file: str | None = None, dev_file: str | None = None,
             measure: bool = True) -> dict:
    """Fine-tune ``model_dir`` on ``task`` with KD from ``teacher``; writes ``out/model`` and ``out/results.json``."""
    settings.validate()
    set_seed(settings.seed)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    if not (Path(model_dir) / "config.json").is_file():
        raise BertnasError(f"--model {model_dir} has no config.json: pass a model written by `bertnas nasbert select`")
    data = load_task(task, data_dir, train_file, dev_file)
    spec = data.spec
    train_ex = data.train
    if settings.max_train_examples and len(train_ex) > settings.max_train_examples:
        train_ex = train_ex.subset(sorted(random.Random(settings.seed).sample(range(len(train_ex)), settings.max_train_examples)))
    tch = load_teacher(teacher, spec)
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.get_vocab() != tch.tokenizer.get_vocab():
        raise BertnasError(f"the model's tokenizer ({model_dir}) and the teacher's ({teacher}) differ: distil from a "
                           "teacher with the same vocabulary")
    train = encode(tokenizer, train_ex, settings.max_seq_len, spec.is_regression)
    dev = encode(tokenizer, data.dev, settings.max_seq_len, spec.is_regression)
    held = carve(len(train), len(train), validation_size(settings.val_examples, len(train)), settings.seed)
    val = take(train, held.val) if held.active else None
    train = take(train, held.train)
    t0 = time.time()
    train, soft, teacher_dev = with_teacher(tch, teacher, train, dev, spec, settings)
    teacher_seconds = time.time() - t0
    labels = {i: name for i, name in enumerate(spec.labels or ["score"])}
    model = _load_for_task(model_dir, spec.num_labels, labels).to(device)
    optimizer = adamw(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps = settings.epochs * num_batches(len(train), settings.batch_size)
    warm = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    gen = torch.Generator().manual_seed(settings.seed)
    history, best, best_state = [], None, None
    t0 = time.time()
    for epoch in range(1, settings.epochs + 1):
        model.train()
        total = 0.0
        n_steps = num_batches(len(train), settings.batch_size)
        for i, b in enumerate(progress(batches(train, settings.batch_size, shuffle=True, generator=gen),
                                       desc=f"finetune epoch {epoch}", total=n_steps)):
            logits = model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device),
                           token_type_ids=b["token_type_ids"].to(device)).logits
            loss = kd_loss(logits, soft[b["index"]].to(device), b["labels"].to(device), settings.kd_lambda,
                           settings.temperature, spec.is_regression)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
            stop_if_nonfinite({"loss": float(loss.detach())}, "nasbert finetune", epoch, settings.epochs, i + 1, n_steps)
        metrics = evaluate(model, dev, spec)
        val_metrics = evaluate(model, val, spec) if val is not None else None
        history.append({"epoch": epoch, "train_loss": total / num_batches(len(train), settings.batch_size),
                        "val": val_metrics, "dev": metrics})
        logger.info("finetune epoch %d: %sdev %s", epoch, f"validation {val_metrics}, " if val_metrics else "", metrics)
        score = val_metrics[spec.headline] if val_metrics else epoch  # no validation split: the last epoch is kept
        if best is None or score > best["score"]:
            best = {"score": score, "epoch": epoch, "val": val_metrics, "dev": metrics}
            best_state = copy.deepcopy(model.state_dict())
    train_seconds = time.time() - t0
    model.load_state_dict(best_state)
    model.eval()
    results = {"task": spec.name, "headline": spec.headline, "model": str(model_dir), "teacher": teacher,
               "architecture": getattr(model.config, "architecture", None), "params": count_params(model),
               "dev": best["dev"], "epoch_kept": best["epoch"], "val": best["val"],
               "val_examples": len(held.val), "teacher_dev": teacher_dev, "teacher_architecture": _shape(tch.model.config),
               "teacher_params": count_params(tch.model), "data": _data_source(task, data_dir, train_file, dev_file),
               "history": history, "train_examples": len(held.train), "augmented_examples": len(train) - len(held.train),
               "settings": settings.to_dict(), "seconds": {"teacher_logits": round(teacher_seconds, 1),
                                                          "training": round(train_seconds, 1)}}
    if measure:
        prof = profile_classifier(model, len(tokenizer), (1, 32), seq_len=128, repeats=10, threads=settings.threads)
        results.update({k: prof[k] for k in ("latency_ms_b1", "latency_ms_b32", "flops")})
    with atomic_dir(Path(out) / "model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_json(Path(out) / "results.json", results)
    return results
