"""The supernet's training loop: block-wise distillation epochs with progressive shrinking in between.

Every epoch ends with a checkpoint (weights, optimizer, shrink state, random state) written atomically to
``OUT/supernet/checkpoint``; running the same command again continues from it. Checkpoints made with other
settings (space, corpus, learning rate, ...) are not resumed.
"""
from __future__ import annotations

import json
import logging
import pickle
import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..data.encode import to_device
from ..errors import BertnasError
from ..training import distributed as ddp
from ..training.loop import stop_if_nonfinite
from ..training.optim import adamw
from ..training.schedule import linear_schedule
from ..utils import atomic_dir, hash_obj, progress, write_json
from .config import SupernetSettings
from .distill import BlockStates, score_path, shard_for_rank, train_step
from .shrink import ShrinkState
from .space import Supernet

logger = logging.getLogger("bertnas")


def _save_checkpoint(directory: Path, supernet: Supernet, optimizer, scheduler, state: ShrinkState, epoch: int,
                     log: list, key: str, rng: random.Random, gen: torch.Generator) -> None:
    with atomic_dir(directory) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in supernet.state_dict().items()}, str(tmp / "supernet.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "generator": gen.get_state()}, tmp / "optimizer.pt")
        write_json(tmp / "state.json", {"epoch": epoch, "settings_key": key, "shrink": state.to_dict(), "log": log,
                                        "rng": repr(rng.getstate())})


def random_heldout_batches(states: BlockStates, indices: list[int], settings: SupernetSettings,
                           rng: random.Random) -> list[dict]:
    """``score_batches`` batches of random held-out sentences (a fresh draw per shrink, the same for every path
    scored in it): scoring on the same shortest batches every time would favour paths good at short inputs."""
    sample = rng.sample(list(indices), min(len(indices), settings.score_batches * settings.batch_size))
    return list(states.batches(sample, settings.batch_size))[: settings.score_batches]


def train_supernet(
    supernet: Supernet, states: BlockStates, train_idx: list[int], heldout_idx: list[int],
    settings: SupernetSettings, paths: list, out: Path, resume: bool = True, device: torch.device | None = None,
    path_latency: dict | None = None,
) -> tuple[ShrinkState, list[dict]]:
    """Train ``settings.epochs`` epochs; returns the final shrink state and the per-epoch log.

    ``path_latency`` (ms per path) adds latency to the bins' axes (the paper's bins by params and latency)."""
    device = device or torch.device("cpu")
    supernet.to(device)
    ckpt = out / "checkpoint"
    key = hash_obj(settings.training_key())[:16]
    optimizer = adamw(supernet.parameters(), lr=settings.lr, weight_decay=0.01)
    epoch_steps = (len(train_idx) + settings.batch_size - 1) // settings.batch_size
    scheduler = linear_schedule(optimizer, settings.epochs * epoch_steps)
    rng, gen = random.Random(settings.seed), torch.Generator().manual_seed(settings.seed)
    state, log, start = ShrinkState.start(paths, supernet.space.num_blocks, settings.bins, path_latency), [], 0
    saved = ddp.on_main(_read_checkpoint, ckpt, key) if resume else None  # rank 0 reads, every rank resumes alike
    if saved is not None:
        saved, weights, extra = saved
        try:  # same settings, but not this code's supernet (another version of bertnas): an error with the fix
            supernet.load_state_dict(weights)
            optimizer.load_state_dict(extra["optimizer"])
            scheduler.load_state_dict(extra["scheduler"])
            gen.set_state(extra["generator"])
            rng.setstate(_tuple_state(saved["rng"]))
            state, log, start = ShrinkState.from_dict(saved["shrink"]), saved["log"], int(saved["epoch"])
        except (KeyError, RuntimeError, ValueError, TypeError, SyntaxError) as exc:
            why = f"no {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:160]
            raise BertnasError(f"checkpoint {ckpt} does not fit this supernet ({why}); it was probably written by "
                               "another version of bertnas: delete it, or pass --no-resume, to start over") from None
        logger.info("resuming the supernet from epoch %d (%s)", start, ckpt)
    logger.info("search space: %s paths per block, %d whole models", [state.size(n) for n in range(len(state.bins))],
                state.space_size())
    for epoch in range(start + 1, settings.epochs + 1):
        t0 = time.time()
        losses, rows = [], 0
        candidates = [state.candidates(n) for n in range(len(state.bins))]
        batches = states.batches(train_idx, settings.batch_size, gen)
        for i, batch in enumerate(progress(batches, desc=f"supernet epoch {epoch}", total=epoch_steps)):
            paths_now = [rng.choice(c) for c in candidates]  # one random path per block per step (alike on all ranks)
            local, denominator = shard_for_rank(batch, supernet.space.teacher_hidden)
            rows += local["input_ids"].size(0)
            step = train_step(supernet, paths_now, to_device(local, device), optimizer, denominator)
            losses.append(ddp.average_over_ranks(step))  # the whole batch's losses (unchanged in one process)
            stop_if_nonfinite({f"block {n + 1} mse": v for n, v in enumerate(losses[-1])}, "nasbert supernet", epoch,
                              settings.epochs, i + 1, epoch_steps, ckpt, epoch - 1)  # before the epoch's checkpoint
            scheduler.step()
        mean = [sum(x[n] for x in losses) / len(losses) for n in range(len(candidates))]
        entry = {"epoch": epoch, "train_block_mse": mean, "lr": scheduler.get_last_lr()[0], "seconds": round(time.time() - t0, 1),
                 "examples_this_rank": rows}
        if epoch > settings.warmup_epochs and not state.done(settings.keep_per_bin):
            held_out = [to_device(b, device) for b in random_heldout_batches(states, heldout_idx, settings, rng)]
            samples = [state.sample_for_scoring(n, settings.samples_per_bin, rng, settings.keep_per_bin)
                       for n in range(len(state.bins))]  # drawn on every rank: the random state stays alike
            scores = ddp.on_main(lambda: [{p: score_path(supernet, n, p, held_out) for p in sample}
                                          for n, sample in enumerate(samples)])
            state.shrink(scores, settings.keep_per_bin, epoch)
            entry["paths_per_block"] = [state.size(n) for n in range(len(state.bins))]
            entry["space_size"] = state.space_size()
        entry["seconds_total"] = round(time.time() - t0, 1)
        log.append(entry)
        logger.info("supernet epoch %d: block MSE %s (%.0f s)", epoch, ["%.4f" % x for x in mean], entry["seconds_total"])
        ddp.check_in_sync({"supernet": supernet}, f"nasbert supernet, epoch {epoch}")
        ddp.on_main(_save_checkpoint, ckpt, supernet, optimizer, scheduler, state, epoch, log, key, rng, gen)
    return state, log


def _read_checkpoint(ckpt: Path, key: str) -> tuple[dict, dict, dict] | None:
    """(state.json, supernet weights, optimizer state) of the checkpoint directory, all read before any is
    applied; None, with a warning naming the file and the reason, when there is none that can be resumed."""
    from safetensors import SafetensorError

    if not (ckpt / "state.json").is_file():
        return None
    try:
        saved = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError(f"state.json holds a {type(saved).__name__}, not an object")
        if saved.get("settings_key") != key:
            logger.warning("not resuming from checkpoint %s: it was made with other settings; starting the supernet "
                           "over", ckpt)
            return None
        weights = load_file(str(ckpt / "supernet.safetensors"))
        extra = torch.load(ckpt / "optimizer.pt", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, SafetensorError, pickle.UnpicklingError) as exc:
        logger.warning("cannot resume from checkpoint %s, it is damaged (%s: %s): starting the supernet over", ckpt,
                       type(exc).__name__, " ".join(str(exc).split())[:120] or "empty or cut short")
        return None
    return saved, weights, extra


def _tuple_state(text: str):
    """random.Random state back from its repr (a tuple of ints and None only: literal_eval is safe)."""
    import ast

    return ast.literal_eval(text)
