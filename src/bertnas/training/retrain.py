"""Train the derived student further on (1 - gamma) CE + gamma KD, keeping the best dev checkpoint."""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.encode import Encoded, batches, num_batches, to_device
from ..data.examples import TaskSpec
from ..models.adabert import AdaBertForSequenceClassification
from ..utils import progress
from .common import autocast, epoch_generators, evaluate, load_checkpoint, save_checkpoint
from .distill import KDHeads, Targets, TargetScale, depth_loss
from .losses import adabert_loss

logger = logging.getLogger("bertnas")


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
) -> tuple[AdaBertForSequenceClassification, dict[str, float], list[dict]]:
    """Returns the student with its best-dev weights, those dev metrics, and per-epoch history."""
    student.to(device)
    heads.to(device)
    scale = TargetScale(student.config.target_mean, student.config.target_std) if spec.is_regression else TargetScale()
    targets = targets.standardized(scale)

    def predict(b: dict[str, torch.Tensor]) -> torch.Tensor:
        return student(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                       token_type_ids=b["token_type_ids"]).logits

    student.eval()
    best_metrics = evaluate(predict, dev, spec, device)
    logger.info("retrain: searched student before training, dev %s", best_metrics)
    best_state = copy.deepcopy(student.state_dict())
    history: list[dict] = [{"epoch": 0, "dev": best_metrics}]
    if cfg.retrain_epochs == 0:
        return student, best_metrics, history

    params = list(student.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.retrain_lr, weight_decay=cfg.weight_decay)
    steps = num_batches(len(train), cfg.retrain_batch_size)
    total = steps * cfg.retrain_epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / total))
    start_epoch = 0
    state = load_checkpoint(checkpoint, resume_key) if (checkpoint and cfg.resume) else None
    if state is not None:
        student.load_state_dict(state["student"])
        heads.load_state_dict(state["heads"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        best_state, best_metrics = state["best_state"], dict(state["best_metrics"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        logger.info("retrain: resuming after epoch %d", start_epoch)

    headline = spec.headline
    for epoch in range(start_epoch, cfg.retrain_epochs):
        t0 = time.perf_counter()
        shuffle_gen, _ = epoch_generators(cfg.seed + 7919, epoch)
        student.train(), heads.train()
        sums = {"loss": 0.0, "ce": 0.0, "kd": 0.0}
        bar = progress(batches(train, cfg.retrain_batch_size, shuffle=True, generator=shuffle_gen), total=steps,
                       desc=f"retrain {epoch + 1}/{cfg.retrain_epochs}")
        for batch in bar:
            batch = to_device(batch, device)
            with autocast(device, cfg.amp):
                pooled, _ = student.pooled_states(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                logits = student.classifier(pooled)  # on the standardized scale for regression
                head_logits = heads(pooled[:-1])
            ce, kd = depth_loss(logits, head_logits, batch, targets, spec.is_regression, cfg.temperature,
                                cfg.attentive_kd)
            parts = adabert_loss(ce.float(), kd.float(), None, cfg.gamma, cfg.beta)
            opt.zero_grad(set_to_none=True)
            parts.total.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            for k in sums:
                sums[k] += parts.as_dict()[k]
            bar.set_postfix(loss=f"{parts.total.item():.3f}")
        student.eval()
        metrics = evaluate(predict, dev, spec, device)
        record = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 1),
                  **{k: round(v / steps, 5) for k, v in sums.items()}, "dev": metrics}
        history.append(record)
        improved = metrics[headline] > best_metrics[headline]
        if improved:
            best_metrics, best_state = metrics, copy.deepcopy(student.state_dict())
        logger.info("retrain epoch %d/%d (%.0fs): loss %.4f, dev %s%s", epoch + 1, cfg.retrain_epochs,
                    record["seconds"], record["loss"], metrics, " (best)" if improved else "")
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "student": student.state_dict(), "heads": heads.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "best_state": best_state, "best_metrics": best_metrics,
                "epoch": epoch + 1, "history": history, "resume_key": resume_key,
            })
    student.load_state_dict(best_state)
    return student, best_metrics, history
