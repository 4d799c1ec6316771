"""Pre-training distillation (the paper's first KD stage), on the corpus the supernet was trained on.

The student (a selected ``nasbert`` model or the hand-designed BERT baseline) learns to reproduce the
teacher's last hidden state token by token (MSE; a temporary linear map to the teacher's size when the
student's output is narrower). Targets are the cached teacher states of the supernet run, so the teacher
does not run again. Both kinds of student go through this same stage, so the comparison stays fair.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from ..data.encode import to_device
from ..errors import BertnasError
from ..teacher.loading import load_tokenizer
from ..training import distributed as ddp
from ..training.loop import stop_if_nonfinite
from ..training.optim import adamw
from ..utils import atomic_dir, progress, set_seed, write_json
from .distill import BlockStates, masked_mse, shard_for_rank

logger = logging.getLogger("bertnas")


def pretrain_distill(model_dir: str, states: BlockStates, train_idx: list[int], out: str | Path, epochs: int = 1,
                     batch_size: int = 32, lr: float = 5e-4, seed: int = 0,
                     device: torch.device = torch.device("cpu")) -> dict:
    """Distil the teacher's last hidden state into ``model_dir``; saves the classifier to ``out``."""
    if not (Path(model_dir) / "config.json").is_file():
        raise BertnasError(f"--model {model_dir} has no config.json")
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    ddp.seed_per_rank(seed)  # under torchrun: each rank its own dropout masks
    tokenizer = load_tokenizer(model_dir)
    encoder = model.base_model
    hidden, t = int(model.config.hidden_size), states.teacher_hidden
    to_teacher = torch.nn.Identity() if hidden == t else torch.nn.Linear(hidden, t)
    encoder.to(device)
    to_teacher.to(device)
    params = list(encoder.parameters()) + list(to_teacher.parameters())
    optimizer = adamw(params, lr=lr, weight_decay=0.01)
    steps = epochs * ((len(train_idx) + batch_size - 1) // batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1.0 - s / max(1, steps)))
    gen = torch.Generator().manual_seed(seed)
    log, t0 = [], time.time()
    for epoch in range(1, epochs + 1):
        encoder.train()
        total, n = 0.0, 0
        n_steps = (len(train_idx) + batch_size - 1) // batch_size
        for i, b in enumerate(progress(states.batches(train_idx, batch_size, gen), desc=f"pre-training KD epoch {epoch}",
                                       total=n_steps)):
            local, denominator = shard_for_rank(b, t)  # under torchrun: this rank's rows, exact share of the loss
            b = to_device(local, device)
            hidden_states = encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                    token_type_ids=b["token_type_ids"]).last_hidden_state
            loss = masked_mse(to_teacher(hidden_states), b["states"][:, :, -1], b["attention_mask"], denominator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ddp.average_gradients(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            value = ddp.average_over_ranks([float(loss.detach())])[0]  # the whole batch's (unchanged in one process)
            total, n = total + value, n + 1
            stop_if_nonfinite({"mse": value}, "nasbert pretrain", epoch, epochs, i + 1, n_steps)
        log.append({"epoch": epoch, "mse": total / max(1, n)})
        logger.info("pre-training KD epoch %d: final-state MSE %.4f", epoch, total / max(1, n))
    model.cpu()
    ddp.check_in_sync({"model": model}, "nasbert pretrain")

    def save() -> None:
        with atomic_dir(out) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "pretrain.json", {"from": str(model_dir), "epochs": epochs, "lr": lr, "batch_size": batch_size,
                                               "sentences": len(train_idx), "log": log, "seconds": round(time.time() - t0, 1),
                                               "ranks": ddp.world_size()})

    ddp.on_main(save)
    return {"log": log, "seconds": round(time.time() - t0, 1)}
