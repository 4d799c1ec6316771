"""Fine-tune a BERT-family model on a task to make a teacher (also builds the demo's tiny teacher)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from ..data.encode import encode, num_batches
from ..data.examples import TaskData
from ..errors import BertnasError, first_line
from ..training import distributed as ddp
from ..training.amp import Precision
from ..training.best import BestEpoch
from ..training.evaluation import evaluate
from ..training.loop import Resumable, run_epochs, train_pass
from ..training.losses import LossParts, task_loss
from ..training.optim import adamw
from ..training.schedule import linear_schedule
from ..utils import atomic_dir, hash_obj, set_seed, write_json
from .knowledge import hash_weights

logger = logging.getLogger("bertnas")


def new_bert(tokenizer, num_labels: int, layers: int = 2, hidden: int = 128, heads: int = 2,
             max_positions: int = 512) -> BertForSequenceClassification:
    """A freshly initialised BERT classifier sized for ``tokenizer`` (no pre-trained weights)."""
    for name, value in (("--layers", layers), ("--hidden", hidden), ("--heads", heads)):
        if value < 1:
            raise BertnasError(f"{name} must be >= 1, got {value}")
    if hidden % heads:
        raise BertnasError(f"hidden size {hidden} must be divisible by the number of heads {heads}")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=max_positions,
                        num_labels=num_labels, pad_token_id=tokenizer.pad_token_id or 0)
    return BertForSequenceClassification(config)


def load_pretrained_for_finetune(name: str, num_labels: int, trust_remote_code: bool = False):
    """A pre-trained checkpoint (any head) with a fresh classification head of ``num_labels``."""
    from .loading import check_source

    source = check_source(name)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_labels, dtype=torch.float32, trust_remote_code=trust_remote_code,
            ignore_mismatched_sizes=True)
    except (OSError, ValueError) as exc:
        raise BertnasError(f"cannot load {name} for fine-tuning: {first_line(exc, 160)}") from exc


def finetune(
    model: torch.nn.Module,
    tokenizer,
    data: TaskData,
    out_dir: str | Path,
    epochs: int = 3,
    lr: float = 5e-5,
    batch_size: int = 32,
    max_seq_len: int = 128,
    seed: int = 0,
    device: torch.device | str = "cpu",
    resume: bool = True,
    amp: bool = False,
    amp_dtype: str = "auto",
) -> dict[str, float]:
    """Train with AdamW and linear warm-up and decay, keep the best dev epoch, save a Hugging Face directory.

    Checkpointed after every epoch beside ``out_dir`` (``.NAME.checkpoint.pt``, removed once the teacher is
    saved): the same call continues an interrupted fine-tuning. ``amp``: mixed-precision autocast in the steps (``amp_dtype`` auto, bf16 or fp16: training/amp.py)."""
    set_seed(seed)
    device = torch.device(device)
    ddp.setup(device)  # under torchrun: data-parallel steps, rank 0 writes
    spec = data.spec
    labels = spec.labels or ["score"]
    model.config.id2label = {i: l for i, l in enumerate(labels)}
    model.config.label2id = {l: i for i, l in enumerate(labels)}
    model.config.problem_type = "regression" if spec.is_regression else "single_label_classification"
    train = encode(tokenizer, data.train, max_seq_len, spec.is_regression)
    dev = encode(tokenizer, data.dev, max_seq_len, spec.is_regression)
    precision = Precision(device, amp, amp_dtype)  # --amp: autocast; a gradient scaler under float16
    key = hash_obj({"weights": hash_weights(model).hexdigest()[:24], "task": spec.name, "train": len(train), "dev": len(dev),
                    "epochs": epochs, "lr": lr, "batch_size": batch_size, "max_seq_len": max_seq_len, "seed": seed,
                    **({"amp": True} if amp else {}), **precision.key()})  # amp came later: without it older checkpoints still resume
    model.to(device)
    ddp.broadcast_modules(model)  # torchrun: every rank starts from rank 0's weights (a new head included)
    opt = adamw(model.parameters(), lr=lr, weight_decay=0.01)
    total = max(1, num_batches(len(train), batch_size) * epochs)
    sched = linear_schedule(opt, total, max(1, total // 10))
    out_dir = Path(out_dir).resolve()  # resolved: `--out .` has a name to put the checkpoint beside
    checkpoint = out_dir.with_name(f".{out_dir.name}.checkpoint.pt")
    state = Resumable("teacher fine-tuning", checkpoint, resume, key, model=model, opt=opt, sched=sched,
                      **precision.stateful())
    best = BestEpoch().restore(state.extra, lambda metrics: metrics[spec.headline])  # extras best, best_state

    def predict(b):
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"]).logits

    def step(_: int, b: dict[str, torch.Tensor]) -> LossParts:
        with precision.autocast():  # ``--amp``: mixed-precision forward, the loss in float32
            logits = predict(b).float()
        loss = task_loss(logits, b["labels"], spec.is_regression)
        opt.zero_grad(set_to_none=True)
        precision.optimize(loss, opt, model.parameters(), 1.0)
        sched.step()
        return LossParts(loss, loss.detach())

    def epoch_fn(epoch: int, shuffle_gen: torch.Generator, _: torch.Generator) -> dict:
        model.train()
        means = train_pass(train, batch_size, shuffle_gen, device, step, f"teacher {epoch + 1}/{epochs}")
        model.eval()
        metrics = evaluate(predict, dev, spec, device)
        logger.info("teacher epoch %d/%d: loss %.4f, dev %s", epoch + 1, epochs, means["loss"], metrics)
        best.offer(metrics[spec.headline], metrics, model)
        return {"loss": means["loss"], "dev": metrics}

    run_epochs(state, epochs, seed, epoch_fn, extra=best.extras)
    best.load_into(model)

    def save() -> None:
        with atomic_dir(out_dir) as tmp:
            model.cpu().save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(Path(tmp) / "teacher_metrics.json", {"task": spec.name, "dev": best.record, "epochs": epochs,
                                                            "ranks": ddp.world_size()})
        checkpoint.unlink(missing_ok=True)

    ddp.on_main(save)
    return best.record
