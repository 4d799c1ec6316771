"""The supernet's training loop: block-wise distillation epochs with progressive shrinking in between.

It runs on the shared resumable epoch loop (``training.loop``): every epoch ends with a checkpoint (weights,
optimizer, schedule, shrink state) at ``OUT/checkpoint.pt``, and running the same command again continues from
it. Checkpoints made with other settings (space, corpus, learning rate, ...) are not resumed. Each epoch draws
its batch order and its paths from generators seeded by (seed, epoch), so a resumed run draws what an
uninterrupted one would.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.encode import to_device
from ..training.amp import Precision
from ..training import distributed as ddp
from ..training.loop import Resumable, run_epochs, step_pass
from ..training.optim import adamw
from ..training.schedule import linear_schedule
from ..utils import hash_obj
from .config import SupernetSettings
from .distill import BlockStates, score_path, shard_for_rank, train_step
from .shrink import ShrinkState
from .space import Supernet

logger = logging.getLogger("bertnas")


@dataclass
class BlockLosses:
    """One step's per-block MSEs (over the whole batch), as the shared loop's loss parts."""

    blocks: list[torch.Tensor]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"loss": torch.stack(self.blocks).sum(), **{f"block {n + 1} mse": v for n, v in enumerate(self.blocks)}}


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
    optimizer = adamw(supernet.parameters(), lr=settings.lr, weight_decay=0.01)
    epoch_steps = (len(train_idx) + settings.batch_size - 1) // settings.batch_size
    scheduler = linear_schedule(optimizer, settings.epochs * epoch_steps)
    shrink = ShrinkState.start(paths, supernet.space.num_blocks, settings.bins, path_latency)
    if resume and not (out / "checkpoint.pt").is_file() and (out / "checkpoint" / "state.json").is_file():
        logger.warning("%s holds a checkpoint of an older bertnas (before the shared loop): not resumed, the "
                       "supernet starts over (delete that folder to drop this warning)", out / "checkpoint")
    precision = Precision(device, settings.amp, settings.amp_dtype)  # --amp: autocast; a gradient scaler under float16
    state = Resumable("nasbert supernet", out / "checkpoint.pt", resume,
                      hash_obj({**settings.training_key(), **precision.key()})[:16],
                      supernet=supernet, optimizer=optimizer, scheduler=scheduler, shrink=shrink, **precision.stateful())
    logger.info("search space: %s paths per block, %d whole models", [shrink.size(n) for n in range(len(shrink.bins))],
                shrink.space_size())

    def epoch_fn(epoch: int, shuffle_gen: torch.Generator, sample_gen: torch.Generator) -> dict:
        t0 = time.perf_counter()
        rng = random.Random(int(torch.randint(2**62, (1,), generator=sample_gen)))  # paths and held-out draws
        candidates = [shrink.candidates(n) for n in range(len(shrink.bins))]
        rows = 0

        def step(i: int, batch: dict) -> BlockLosses:
            nonlocal rows
            paths_now = [rng.choice(c) for c in candidates]  # one random path per block per step (alike on all ranks)
            local, denominator = shard_for_rank(batch, supernet.space.teacher_hidden)
            rows += local["input_ids"].size(0)
            losses = train_step(supernet, paths_now, to_device(local, device), optimizer, denominator, precision)
            scheduler.step()
            return BlockLosses(ddp.average_over_ranks(losses))  # the whole batch's losses (unchanged in one process)

        means = step_pass(states.batches(train_idx, settings.batch_size, shuffle_gen), epoch_steps, device, step,
                          f"supernet epoch {epoch + 1}", shard=False)
        record = {"train_block_mse": [means[f"block {n + 1} mse"] for n in range(len(candidates))],
                  "lr": scheduler.get_last_lr()[0], "examples_this_rank": rows}
        if epoch + 1 > settings.warmup_epochs and not shrink.done(settings.keep_per_bin):
            held_out = [to_device(b, device) for b in random_heldout_batches(states, heldout_idx, settings, rng)]
            samples = [shrink.sample_for_scoring(n, settings.samples_per_bin, rng, settings.keep_per_bin)
                       for n in range(len(shrink.bins))]  # drawn on every rank: the random state stays alike
            scores = ddp.on_main(lambda: [{p: score_path(supernet, n, p, held_out) for p in sample}
                                          for n, sample in enumerate(samples)])
            shrink.shrink(scores, settings.keep_per_bin, epoch + 1)
            record["paths_per_block"] = [shrink.size(n) for n in range(len(shrink.bins))]
            record["space_size"] = shrink.space_size()
        record["seconds_total"] = round(time.perf_counter() - t0, 1)
        logger.info("supernet epoch %d: block MSE %s (%.0f s)", epoch + 1, ["%.4f" % x for x in record["train_block_mse"]],
                    record["seconds_total"])
        return record

    log = run_epochs(state, settings.epochs, settings.seed, epoch_fn)
    return shrink, log
