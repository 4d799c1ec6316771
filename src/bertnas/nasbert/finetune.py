"""Fine-tuning with distillation: (1 - lambda) task loss + lambda KL(teacher || student), lambda = 0.5.

Works on any Hugging Face sequence classifier directory (a selected ``nasbert`` model or the hand-designed
BERT baseline), so both are trained exactly the same way. The fine-tuned teacher runs once over the
training split and its teacher-labelled copies (``--augment``; bfloat16 where the device has it natively) and its
logits are kept in the teacher stack's cache (``teacher.knowledge.cached_logits``, ``teacher.augment``).
The epoch saved is the best on a validation split carved from the training data (``--val-examples``; with 0, the
last epoch); the dev set is only reported.

``OUT/results.json`` also records where the task data was read (``data``) and what the teacher was
(``teacher_dev``, ``teacher_architecture``, ``teacher_params``): ``bertnas export --out OUT`` reads the same dev
set back through :func:`bertnas.rundir.read_finetune_run` (``rundir`` writes and reads this directory for both
commands), and the benchmark report's teacher row comes from these values.
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from ..data.encode import concat, encode, num_batches
from ..data.readers import load_task
from ..data.split import carve, take, validation_size
from ..errors import BertnasError
from ..measure.profile import count_params, profile_classifier
from ..rundir import FINETUNE_LATENCY_REPEATS, FINETUNE_LATENCY_SEQ_LEN, data_source, save_finetune_run
from ..teacher.augment import AugmentSettings, label_augmented
from ..teacher.knowledge import bf16_supported, cached_logits, hash_weights, teacher_fingerprint
from ..teacher.loading import load_teacher, load_tokenizer
from ..training import distributed as ddp
from ..training.amp import Precision
from ..training.best import BestEpoch
from ..training.evaluation import evaluate
from ..training.loop import Resumable, run_epochs, train_pass
from ..training.losses import LossParts, distill_loss, task_loss
from ..training.optim import adamw
from ..training.schedule import linear_schedule
from ..utils import hash_obj, resolve_device, set_seed
from .config import FinetuneSettings

logger = logging.getLogger("bertnas")


def with_teacher(tch, train, dev, spec, settings: FinetuneSettings, device: torch.device | None = None):
    """The training set with ``settings.augment`` copies of every example appended (the word replacement,
    deletion and swaps AdaBERT trains on), the teacher's logits for all of it, and the teacher's dev metrics;
    through the teacher stack AdaBERT uses (``teacher.knowledge.cached_logits``, ``teacher.augment.label_augmented``:
    one cache, copies made, labelled and written one at a time and read back memory-mapped). A copy's gold label
    is the teacher's prediction; the originals keep theirs."""
    device = device or torch.device("cpu")
    bf16 = bf16_supported(device)
    soft, teacher_dev, key = cached_logits(tch, train, dev, spec, device, bf16, cache_dir=settings.cache_dir)
    if settings.augment:
        aug = label_augmented(tch, train, AugmentSettings(settings.augment, settings.augment_replace_prob,
                                                          settings.augment_edit_prob, settings.seed),
                              None, key, device, bf16, spec.is_regression, cache_dir=settings.cache_dir)
        train, soft = concat(train, aug.encoded), torch.cat([soft, aug.teacher_logits])
        logger.info("augmentation: %d teacher-labelled copies of %d training examples", len(aug.encoded),
                    len(train) - len(aug.encoded))
    return train, soft, teacher_dev


def _shape(config) -> str | None:
    """``6L-H384`` for a BERT-like config: the report names the teacher by what it is, not by a fixed label."""
    layers, hidden = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    return f"{layers}L-H{hidden}" if layers and hidden else None


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
             measure: bool = True, resume: bool = True) -> dict:
    """Fine-tune ``model_dir`` on ``task`` with KD from ``teacher``; writes ``out/model`` and ``out/results.json``.
    Checkpointed after every epoch (``out/checkpoint.pt``, removed at the end): the same call continues an
    interrupted run."""
    settings.validate()
    set_seed(settings.seed)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    ddp.setup(device)  # under torchrun: data-parallel steps; rank 0 runs the teacher and writes the run
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
    main_side: list = []  # under torchrun rank 0 runs the teacher (filling the cache); the others then read it
    ddp.on_main(lambda: main_side.append(with_teacher(tch, train, dev, spec, settings, device)))
    train, soft, teacher_dev = main_side[0] if main_side else with_teacher(tch, train, dev, spec, settings, device)
    soft = soft.to(device)  # indexed by each batch's example ids on the device: no host copy in a step
    tch.model.cpu()
    teacher_seconds = time.time() - t0
    labels = {i: name for i, name in enumerate(spec.labels or ["score"])}
    model = _load_for_task(model_dir, spec.num_labels, labels).to(device)
    ddp.broadcast_modules(model)  # torchrun: every rank starts from rank 0's weights (a new head included)
    optimizer = adamw(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps = settings.epochs * num_batches(len(train), settings.batch_size)
    scheduler = linear_schedule(optimizer, steps, max(1, steps // 10))
    precision = Precision(device, settings.amp, settings.amp_dtype)  # --amp: autocast; a gradient scaler under float16
    key = hash_obj({"settings": {k: v for k, v in settings.to_dict().items()  # amp: added later; the dtype: precision
                                 if k not in ("device", "threads", "cache_dir", "amp_dtype") and not (k == "amp" and not v)},
                    **precision.key(),
                    "model": hash_weights(model).hexdigest()[:24], "teacher": teacher_fingerprint(tch),
                    "data": data_source(task, data_dir, train_file, dev_file), "examples": len(train)})
    checkpoint = Path(out) / "checkpoint.pt"  # removed once the model and results.json are written
    state = Resumable("nasbert finetune", checkpoint, resume, key, model=model, optimizer=optimizer,
                      scheduler=scheduler, **precision.stateful())
    best = BestEpoch().restore(state.extra, lambda record: record["score"])  # extras best, best_state

    def predict(b: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                     token_type_ids=b["token_type_ids"]).logits

    def step(_: int, b: dict[str, torch.Tensor]) -> LossParts:
        with precision.autocast():
            logits = predict(b).float()  # the losses in float32
        ce = task_loss(logits, b["labels"], spec.is_regression)
        kd = distill_loss(logits, soft[b["index"]], settings.temperature, spec.is_regression)
        loss = (1 - settings.kd_lambda) * ce + settings.kd_lambda * kd
        optimizer.zero_grad(set_to_none=True)
        precision.optimize(loss, optimizer, model.parameters(), 1.0)
        scheduler.step()
        return LossParts(loss, ce.detach(), kd.detach())

    def epoch_fn(epoch: int, shuffle_gen: torch.Generator, _: torch.Generator) -> dict:
        model.train()
        means = train_pass(train, settings.batch_size, shuffle_gen, device, step,
                           f"finetune epoch {epoch + 1}/{settings.epochs}")
        model.eval()
        metrics = evaluate(predict, dev, spec, device)
        val_metrics = evaluate(predict, val, spec, device) if val is not None else None
        logger.info("finetune epoch %d: loss %.4f, %sdev %s", epoch + 1, means["loss"],
                    f"validation {val_metrics}, " if val_metrics else "", metrics)
        score = val_metrics[spec.headline] if val_metrics else epoch  # no validation split: the last epoch is kept
        best.offer(score, {"score": score, "epoch": epoch + 1, "val": val_metrics, "dev": metrics}, model)
        return {"train_loss": means["loss"], "ce": means["ce"], "kd": means["kd"], "val": val_metrics, "dev": metrics}

    history = run_epochs(state, settings.epochs, settings.seed, epoch_fn, extra=best.extras)
    train_seconds = sum(h.get("seconds", 0.0) for h in history)  # every epoch's, those before a resume too
    best.load_into(model)
    model.eval()
    results = {"task": spec.name, "headline": spec.headline, "model": str(model_dir), "teacher": teacher,
               "architecture": getattr(model.config, "architecture", None), "params": count_params(model),
               "dev": best.record["dev"], "epoch_kept": best.record["epoch"], "val": best.record["val"],
               "val_examples": len(held.val), "teacher_dev": teacher_dev, "teacher_architecture": _shape(tch.model.config),
               "teacher_params": count_params(tch.model), "data": data_source(task, data_dir, train_file, dev_file),
               "history": history, "train_examples": len(held.train), "augmented_examples": len(train) - len(held.train),
               "settings": settings.to_dict(), "seconds": {"teacher_logits": round(teacher_seconds, 1),
                                                          "training": round(train_seconds, 1)}}
    results["ranks"] = ddp.world_size()

    def finish() -> dict:  # rank 0 times the model and writes the run; every rank returns its results
        if measure:
            prof = profile_classifier(model, len(tokenizer), (1, 32), seq_len=FINETUNE_LATENCY_SEQ_LEN,
                                      repeats=FINETUNE_LATENCY_REPEATS, threads=settings.threads)
            results.update({k: prof[k] for k in ("latency_ms_b1", "latency_ms_b32", "flops")})
        save_finetune_run(out, model, tokenizer, results)
        checkpoint.unlink(missing_ok=True)
        return results

    return ddp.on_main(finish)
