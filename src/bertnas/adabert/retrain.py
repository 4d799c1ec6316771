"""Train the derived student further on (1 - gamma) CE + gamma KD, keeping the best epoch's weights.

KD is hierarchical as in the search (``--retrain-distill probes``) or on the teacher's logits alone (``logits``).

The best epoch is chosen on the validation split carved from the training data (``data.split``) when there
is one, else on dev; dev metrics are recorded for every epoch either way.

Under torchrun each rank trains on its shard of every batch and gradients are averaged over ranks
(``training.distributed``); every rank evaluates dev alike and so keeps the same best epoch."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.encode import Encoded, num_batches
from ..data.examples import TaskSpec
from ..training import distributed as ddp
from ..training.amp import Precision
from ..training.best import BestEpoch
from ..training.evaluation import evaluate
from ..training.loop import Resumable, run_epochs, train_pass
from ..training.losses import LossParts
from ..training.optim import adamw
from ..training.schedule import linear_schedule
from .modeling import AdaBertForSequenceClassification
from .objective import KDHeads, Targets, TargetScale, adabert_loss, depth_loss

logger = logging.getLogger("bertnas")


def freezes_words(cfg: RunConfig, spec: TaskSpec) -> bool:
    """Whether further training keeps the word table fixed: ``retrain_freeze_words``, or when unset, for pairs."""
    return spec.pair if cfg.retrain_freeze_words is None else cfg.retrain_freeze_words


def retrain(
    cfg: RunConfig,
    spec: TaskSpec,
    student: AdaBertForSequenceClassification,
    heads: KDHeads,
    train: Encoded,
    dev: Encoded,
    targets: Targets,
    device: torch.device,
    checkpoint: Path | None = None,
    resume_key: str = "",
    val: Encoded | None = None,
    train_subset: list[int] | None = None,
) -> tuple[AdaBertForSequenceClassification, dict[str, float], list[dict]]:
    """Returns the student with its best epoch's weights (best on ``val``, or on ``dev`` without one), that
    epoch's dev metrics, and per-epoch history. ``train_subset``: the indices of ``train`` to train on (the
    rest is the validation split).

    ``student`` needs ``pooled_states(ids, mask, types) -> (pooled views, states)``, ``classifier(pooled)`` (on
    the standardized scale for regression), ``config.target_mean/std`` and a forward that returns ``.logits``.
    """
    student.to(device)
    heads.to(device)
    scale = TargetScale(student.config.target_mean, student.config.target_std) if spec.is_regression else TargetScale()
    targets = targets.standardized(scale)

    def predict(b: dict[str, torch.Tensor]) -> torch.Tensor:
        return student(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                       token_type_ids=b["token_type_ids"]).logits

    def scores() -> dict:
        """Dev metrics, and the validation split's when there is one (``choice``: what picks the epoch)."""
        out = {"dev": evaluate(predict, dev, spec, device)}
        if val is not None:
            out["val"] = evaluate(predict, val, spec, device)
        return out

    def choice(s: dict) -> float:
        return s["val" if val is not None else "dev"][spec.headline]

    student.eval()
    first = scores()
    logger.info("retrain: searched student before training, %s", first)
    best = BestEpoch(record_key="best_metrics", score_key="best_choice")  # the dev metrics of the epoch kept
    best.offer(choice(first), first["dev"], student)
    if cfg.retrain_epochs == 0:
        return student, best.record, [{"epoch": 0, **first}]

    words = student.get_input_embeddings().weight if freezes_words(cfg, spec) else None
    if words is not None:
        words.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    params += list(heads.parameters()) if cfg.retrain_distill == "probes" else []
    opt = adamw(params, lr=cfg.retrain_lr, weight_decay=cfg.weight_decay)
    total = num_batches(len(train_subset) if train_subset is not None else len(train), cfg.retrain_batch_size) \
        * cfg.retrain_epochs
    sched = linear_schedule(opt, total)
    precision = Precision(device, cfg.amp, cfg.amp_dtype)  # --amp: autocast, and a gradient scaler under float16
    state = Resumable("retrain", checkpoint, cfg.resume, precision.tag(resume_key), student=student, heads=heads, opt=opt,
                      sched=sched, **precision.stateful())
    ddp.broadcast_modules(student, heads)  # torchrun: every rank starts from rank 0's weights
    ddp.global_batchnorm(student)
    if state.restored:  # a checkpoint from before best_choice was saved: the choice was dev's headline
        best.restore(state.extra, lambda metrics: metrics[spec.headline])
    else:
        state.history = [{"epoch": 0, **first}]

    def step(_: int, batch: dict[str, torch.Tensor]) -> LossParts:
        with precision.autocast():
            pooled, _ = student.pooled_states(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            logits = student.classifier(pooled)  # on the standardized scale for regression
            head_logits = heads(pooled[:-1]) if cfg.retrain_distill == "probes" else []  # logits: final pairing only
        ce, kd = depth_loss(logits, head_logits, batch, targets, spec.is_regression, cfg.temperature, cfg.attentive_kd)
        parts = adabert_loss(ce, kd, None, cfg.gamma, cfg.beta)
        opt.zero_grad(set_to_none=True)
        precision.optimize(parts.total, opt, params, 5.0)
        sched.step()
        return parts

    def epoch_fn(epoch: int, shuffle_gen: torch.Generator, _: torch.Generator) -> dict:
        student.train(), heads.train()
        means = train_pass(train, cfg.retrain_batch_size, shuffle_gen, device, step,
                           f"retrain {epoch + 1}/{cfg.retrain_epochs}", train_subset)
        student.eval()
        now = scores()
        improved = best.offer(choice(now), now["dev"], student)
        logger.info("retrain epoch %d/%d: loss %.4f, %s%s", epoch + 1, cfg.retrain_epochs, means["loss"], now,
                    f" (best on {'val' if val is not None else 'dev'})" if improved else "")
        return {k: means[k] for k in ("loss", "ce", "kd")} | now

    history = run_epochs(state, cfg.retrain_epochs, cfg.seed + 7919, epoch_fn, extra=best.extras)
    best.load_into(student)
    if words is not None:
        words.requires_grad_(True)
    return student, best.record, history
