"""Pre-training distillation (the paper's first KD stage), on the corpus the supernet was trained on.

The student (a selected ``nasbert`` model or the hand-designed BERT baseline) learns to reproduce the
teacher's last hidden state token by token (MSE; a temporary linear map to the teacher's size when the
student's output is narrower). Targets are the cached teacher states of the supernet run, so the teacher
does not run again. Both kinds of student go through this same stage, so the comparison stays fair.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoModelForSequenceClassification

from ..data.encode import to_device
from ..errors import BertnasError
from ..teacher.loading import load_tokenizer
from ..training import distributed as ddp
from ..training.amp import Precision
from ..training.loop import Resumable, run_epochs, step_pass
from ..training.losses import LossParts
from ..training.optim import adamw
from ..training.schedule import linear_schedule
from ..utils import atomic_dir, hash_obj, set_seed, write_json
from .distill import BlockStates, masked_mse, shard_for_rank

logger = logging.getLogger("bertnas")


def pretrain_distill(model_dir: str, states: BlockStates, train_idx: Sequence[int], out: str | Path, epochs: int = 1,
                     batch_size: int = 32, lr: float = 5e-4, seed: int = 0,
                     device: torch.device = torch.device("cpu"), resume: bool = True, amp: bool = False,
                     amp_dtype: str = "auto") -> dict:
    """Distil the teacher's last hidden state into ``model_dir``; saves the classifier to ``out``.

    Checkpointed after every epoch beside ``out`` (``.NAME.checkpoint.pt``, removed once the model is saved): the
    same call continues an interrupted run."""
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
    epoch_steps = (len(train_idx) + batch_size - 1) // batch_size
    scheduler = linear_schedule(optimizer, epochs * epoch_steps)
    precision = Precision(device, amp, amp_dtype)  # --amp: autocast; a gradient scaler under float16
    out = Path(out).resolve()  # resolved: `--save .` has a name to put the checkpoint beside
    key = hash_obj({"model": str(Path(model_dir).resolve()), "config": model.config.to_dict(),
                    "states": states.meta.get("key", Path(states.directory).name), "meta": states.meta,
                    "sentences": len(train_idx), "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                    **({"amp": True} if amp else {}), **precision.key()})  # amp came later: older checkpoints resume
    checkpoint = out.with_name(f".{out.name}.checkpoint.pt")
    state = Resumable("nasbert pretrain", checkpoint, resume, key, model=model, to_teacher=to_teacher,
                      optimizer=optimizer, scheduler=scheduler, **precision.stateful())

    def step(_: int, batch: dict[str, torch.Tensor]) -> LossParts:
        local, denominator = shard_for_rank(batch, t)  # under torchrun: this rank's rows, exact share of the loss
        b = to_device(local, device)
        with precision.autocast():  # ``--amp``: mixed-precision forward; masked_mse sums in float32
            hidden_states = encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                    token_type_ids=b["token_type_ids"]).last_hidden_state
            predicted = to_teacher(hidden_states)
        loss = masked_mse(predicted, b["states"][:, :, -1], b["attention_mask"], denominator)
        optimizer.zero_grad(set_to_none=True)
        precision.optimize(loss, optimizer, params, 1.0)  # the loss is this rank's exact share already
        scheduler.step()
        value = ddp.average_over_ranks([loss.detach()])[0]  # the whole batch's (unchanged in one process)
        return LossParts(value, kd=value)

    def epoch_fn(epoch: int, shuffle_gen: torch.Generator, _: torch.Generator) -> dict:
        encoder.train()
        means = step_pass(states.batches(train_idx, batch_size, shuffle_gen), epoch_steps, device, step,
                          f"pre-training KD epoch {epoch + 1}/{epochs}", shard=False)
        logger.info("pre-training KD epoch %d: final-state MSE %.4f", epoch + 1, means["loss"])
        return {"mse": means["loss"]}

    log = run_epochs(state, epochs, seed, epoch_fn)
    seconds = round(sum(h["seconds"] for h in log), 1)
    model.cpu()
    ddp.check_in_sync({"model": model}, "nasbert pretrain")

    def save() -> None:
        with atomic_dir(out) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "pretrain.json", {"from": str(model_dir), "epochs": epochs, "lr": lr, "batch_size": batch_size,
                                               "sentences": len(train_idx), "log": log, "seconds": seconds,
                                               "ranks": ddp.world_size()})
        checkpoint.unlink(missing_ok=True)

    ddp.on_main(save)
    return {"log": log, "seconds": seconds}
