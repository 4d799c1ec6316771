"""Block-wise distillation: the teacher's block-edge hidden states, cached once, train every block alone.

The teacher is cut into the student's N blocks; the input of student block n is the teacher's hidden state
after block n-1 (index 0 = the embedding output) and its target is the teacher's state after block n.
So the teacher runs once per sentence, never per step: its states at the N + 1 block edges are cached on
disk as float16 (np.memmap, one row per real token, no padding) and read back per batch. On CPU the
teacher pass runs in bfloat16 autocast under ``torch.inference_mode`` on length-sorted batches.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from ..data.corpus import Corpus, chunks, split_pair
from ..errors import BertnasError
from ..teacher.knowledge import bf16_supported, hash_weights
from ..training import distributed as ddp
from ..training.amp import Precision
from ..utils import atomic_dir, progress, write_json
from .space import BlockPath, Supernet

logger = logging.getLogger("bertnas")
CACHE_VERSION = 1


def teacher_fingerprint(model: torch.nn.Module) -> str:
    """The encoder's weights fingerprint (``teacher.knowledge.hash_weights``), part of the states cache key."""
    return hash_weights(model).hexdigest()[:24]


def _autocast(device: torch.device):
    """bfloat16 where it runs natively (AVX512-BF16/AMX CPUs, bf16 GPUs); float32 elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_supported(device))


@dataclass
class BlockStates:
    """Cached teacher states: ``states[offsets[i]:offsets[i+1]]`` is sentence i, shape (len_i, N + 1, T)."""

    directory: Path
    tokens: np.ndarray  # (n_tokens,) int32 token ids
    types: np.ndarray  # (n_tokens,) int8 token types
    offsets: np.ndarray  # (n_sentences + 1,) int64
    states: np.ndarray | None  # (n_tokens, N + 1, T) float16, memory-mapped (None: computed per batch)
    meta: dict

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def length(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    @property
    def teacher_hidden(self) -> int:
        return int(self.meta["teacher_hidden"])

    def token_batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Padded input_ids/token_type_ids/attention_mask (B, L) of the sentences ``indices``."""
        length = max(self.length(i) for i in indices)
        ids = np.zeros((len(indices), length), dtype=np.int64)
        types = np.zeros((len(indices), length), dtype=np.int64)
        mask = np.zeros((len(indices), length), dtype=np.int64)
        for row, i in enumerate(indices):
            a, b = self.offsets[i], self.offsets[i + 1]
            ids[row, : b - a] = self.tokens[a:b]
            types[row, : b - a] = self.types[a:b]
            mask[row, : b - a] = 1
        return {"input_ids": torch.from_numpy(ids), "token_type_ids": torch.from_numpy(types),
                "attention_mask": torch.from_numpy(mask)}

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Padded batch: input_ids/token_type_ids/attention_mask (B, L) and states (B, L, N + 1, T)."""
        batch = self.token_batch(indices)
        n_edges, t = self.states.shape[1:]
        states = np.zeros((len(indices), batch["input_ids"].size(1), n_edges, t), dtype=np.float32)
        for row, i in enumerate(indices):
            a, b = self.offsets[i], self.offsets[i + 1]
            states[row, : b - a] = self.states[a:b]
        batch["states"] = torch.from_numpy(states)
        return batch

    def batches(self, indices: Sequence[int] | np.ndarray, batch_size: int, generator: torch.Generator | None = None) -> Iterator[dict]:
        """Length-grouped batches over ``indices``: shuffled order of batches when a generator is given."""
        indices = np.asarray(indices, dtype=np.int64)  # arrays, not lists: 8 bytes an item on a corpus of 10^8
        order = indices[np.argsort(self.offsets[indices + 1] - self.offsets[indices], kind="stable")]  # by length
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if generator is not None:
            chunks = [chunks[j] for j in torch.randperm(len(chunks), generator=generator).tolist()]
        for chunk in chunks:
            yield self.collate(chunk)


class LiveBlockStates(BlockStates):
    """The same batches as :class:`BlockStates`, with the teacher's states computed per batch instead of read
    from disk: for corpora whose cache would not fit (the teacher then runs once per epoch, not once in all)."""

    def __init__(self, teacher: torch.nn.Module, boundaries: list[int], device: torch.device, tokens: np.ndarray,
                 types: np.ndarray, offsets: np.ndarray, meta: dict) -> None:
        super().__init__(Path("(computed on the fly)"), tokens, types, offsets, None, meta)
        self.teacher, self.boundaries, self.device = teacher.eval(), list(boundaries), device

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = self.token_batch(indices)
        self.teacher.to(self.device)
        with torch.inference_mode(), _autocast(self.device):
            out = self.teacher(**{k: v.to(self.device) for k, v in batch.items()}, output_hidden_states=True)
            states = torch.stack([out.hidden_states[b] for b in self.boundaries], 2)
        keep = batch["attention_mask"][:, :, None, None].to(torch.float32)  # padding is zero, as in the cache
        batch["states"] = states.float().cpu().clone() * keep  # out of inference mode: these are training targets
        return batch


def tokenize_items(tokenizer, texts: list[str], max_len: int) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and token types of corpus items: single texts, and pairs (``A<TAB>B``) as a pair task's input
    (A [SEP] B, types 0 then 1), in the items' order."""
    ids: list = [None] * len(texts)
    types: list = [None] * len(texts)
    split = [split_pair(t) for t in texts]
    for is_pair in (False, True):
        where = [i for i, (_, b) in enumerate(split) if (b is not None) == is_pair]
        if not where:
            continue
        args = ([split[i][0] for i in where], [split[i][1] for i in where]) if is_pair else ([texts[i] for i in where],)
        enc = tokenizer(*args, truncation=True, max_length=max_len, return_token_type_ids=True, return_attention_mask=False)
        got_types = enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]]
        for k, i in enumerate(where):
            ids[i], types[i] = enc["input_ids"][k], got_types[k]
    return ids, types


def cache_bytes(tokens: int, edges: int, hidden: int) -> int:
    """Disk the cached states take: float16 per token, edge and hidden unit."""
    return tokens * edges * hidden * 2


def cache_key(fingerprint: str, texts: Iterable[str], max_len: int, boundaries: list[int]) -> str:
    h = hashlib.sha256(json.dumps([CACHE_VERSION, fingerprint, max_len, boundaries]).encode())
    for t in texts:
        h.update(t.encode() + b"\x00")
    return h.hexdigest()[:24]


def compute_block_states(
    teacher: torch.nn.Module, tokenizer, texts: Sequence[str] | Corpus, boundaries: list[int], max_len: int,
    directory: Path, batch_size: int = 64, device: torch.device = torch.device("cpu"),
    max_cache_bytes: float | None = None,
) -> BlockStates:
    """Run the teacher once over ``texts`` and write its states at ``boundaries`` to ``directory``.

    When the cache would take more than ``max_cache_bytes`` (or more than 90% of the free disk), nothing is
    written: the states are computed per batch instead (:class:`LiveBlockStates`)."""
    directory = Path(directory)
    if (directory / "meta.json").is_file():
        return open_block_states(directory)
    tokens, types, offsets = tokenize_corpus(tokenizer, texts, max_len)
    lengths = np.diff(offsets)
    t = int(teacher.config.hidden_size)
    meta = {"version": CACHE_VERSION, "sentences": len(texts), "tokens": int(offsets[-1]), "boundaries": boundaries,
            "max_len": max_len, "teacher_hidden": t, "key": directory.name}  # the key: what the states are of
    size = cache_bytes(int(offsets[-1]), len(boundaries), t)
    directory.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory.parent).free
    if (max_cache_bytes is not None and size > max_cache_bytes) or size > 0.9 * free:
        why = (f"over --max-cache-gb {max_cache_bytes / 1e9:g}" if max_cache_bytes is not None and size > max_cache_bytes
               else f"more than 90% of the {free / 1e9:.1f} GB free in {directory.parent}")
        logger.info("teacher states would take %.1f GB on disk, %s: computing them per batch instead (the teacher "
                    "runs every epoch)", size / 1e9, why)
        return LiveBlockStates(teacher, boundaries, device, tokens, types, offsets, meta)
    source = BlockStates(directory, tokens, types, offsets, None, meta)  # token batches before any state exists
    teacher.to(device)
    with atomic_dir(directory) as tmp:
        states = np.lib.format.open_memmap(tmp / "states.npy", mode="w+", dtype=np.float16,
                                           shape=(int(offsets[-1]), len(boundaries), t))
        order = np.argsort(lengths, kind="stable")
        with torch.inference_mode(), _autocast(device):
            for start in progress(range(0, len(order), batch_size), desc="teacher block states"):
                chunk = order[start : start + batch_size]
                batch = source.token_batch(chunk)
                out = teacher(**{k: v.to(device) for k, v in batch.items()}, output_hidden_states=True)
                edge = torch.stack([out.hidden_states[b] for b in boundaries], 2).float().cpu().numpy()  # (B, L, N+1, T)
                for row, i in enumerate(chunk):
                    states[offsets[i] : offsets[i + 1]] = edge[row, : lengths[i]]
        states.flush()
        del states
        np.save(tmp / "tokens.npy", tokens)
        np.save(tmp / "types.npy", types)
        np.save(tmp / "offsets.npy", offsets)
        write_json(tmp / "meta.json", meta)
    logger.info("cached teacher states for %d sentences (%d tokens) in %s", len(texts), int(offsets[-1]), directory)
    return open_block_states(directory)


def tokenize_corpus(tokenizer, texts: Sequence[str] | Corpus, max_len: int, chunk: int = 20000
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids (int32), token types (int8) and offsets (int64) of every item, tokenized ``chunk`` items at a time:
    a big corpus never sits in memory as Python lists of ints (about 36 bytes a token, against 5 here)."""
    ids, types, lengths = [], [], []
    for got in progress(chunks(texts, chunk), desc="tokenizing the corpus", total=-(-len(texts) // chunk)):
        got_ids, got_types = tokenize_items(tokenizer, got, max_len)
        lengths.append(np.array([len(x) for x in got_ids], dtype=np.int64))
        ids.append(np.fromiter((t for x in got_ids for t in x), dtype=np.int32, count=int(lengths[-1].sum())))
        types.append(np.fromiter((t for x in got_types for t in x), dtype=np.int8, count=int(lengths[-1].sum())))
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
    return np.concatenate(ids), np.concatenate(types), offsets


def open_block_states(directory: Path) -> BlockStates:
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    return BlockStates(directory, np.load(directory / "tokens.npy"), np.load(directory / "types.npy"),
                       np.load(directory / "offsets.npy"), np.load(directory / "states.npy", mmap_mode="r"), meta)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               denominator: float | None = None) -> torch.Tensor:
    """Mean squared error over real tokens only (padding excluded), averaged over features; over a shard of a
    batch, ``denominator`` (the whole batch's real tokens x features, over the ranks' share) makes the ranks'
    averaged gradients the whole batch's exactly."""
    pred = pred.float()  # under autocast the blocks give bfloat16: the loss is summed in float32
    keep = mask.to(pred.dtype)[..., None]  # (B, L, 1)
    total = ((pred - target) ** 2 * keep).sum()
    if denominator is not None:
        return total / denominator
    return total / (keep.sum() * pred.size(-1)).clamp(min=1.0)


def block_loss(supernet: Supernet, block: int, path: BlockPath, batch: dict,
               denominator: float | None = None) -> torch.Tensor:
    """MSE of student block ``block`` on ``path``, fed the teacher's state n-1, to the teacher's state n."""
    states, mask = batch["states"], batch["attention_mask"]
    pred = supernet.run_block(block, path, states[:, :, block], mask)
    return masked_mse(pred, states[:, :, block + 1], mask, denominator)


def train_step(supernet: Supernet, paths: list[BlockPath], batch: dict, optimizer: torch.optim.Optimizer,
               denominator: float | None = None, precision: Precision | None = None) -> list[torch.Tensor]:
    """One step: one sampled path per block, each block's own MSE (the graphs are disjoint, so summing the
    losses before ``backward`` gives every block exactly its own gradient). Under torchrun the gradients are
    averaged over ranks before clipping (every rank drew the same paths). ``precision`` (``--amp``): the blocks run
    under autocast, the MSE in float32, a gradient scaler under float16."""
    supernet.train()
    precision = precision or Precision(batch["attention_mask"].device)
    with precision.autocast():
        losses = [block_loss(supernet, n, path, batch, denominator) for n, path in enumerate(paths)]
    optimizer.zero_grad(set_to_none=True)
    precision.optimize(torch.stack(losses).sum(), optimizer, supernet.parameters(), 1.0)
    return [x.detach() for x in losses]  # tensors: a Python float here would wait for the device every step


def shard_for_rank(batch: dict, hidden: int) -> tuple[dict, float | None]:
    """This rank's rows of a global batch and the loss denominator that makes its share exact (None without
    torchrun): the whole batch's real tokens x ``hidden``, divided by the ranks when the batch is split."""
    local, share = ddp.shard(batch)
    if share is None:
        return batch, None
    tokens = float(batch["attention_mask"].sum()) * hidden
    return local, tokens / (ddp.world_size() if share.split else 1)


@torch.no_grad()
def score_path(supernet: Supernet, block: int, path: BlockPath, held_out: list[dict]) -> float:
    """Mean block MSE of a path over held-out batches (eval mode: no dropout)."""
    supernet.eval()
    return float(np.mean([float(block_loss(supernet, block, path, b)) for b in held_out]))


@torch.no_grad()
def chain_loss(supernet: Supernet, paths: list[BlockPath], held_out: list[dict]) -> float:
    """Exact loss of a whole student: blocks chained on the *student's* own outputs (not the teacher's),
    summing every block's MSE to the teacher's state at its edge. Catches error that compounds across blocks."""
    supernet.eval()
    total = []
    for batch in held_out:
        states, mask = batch["states"], batch["attention_mask"]
        x, loss = states[:, :, 0], 0.0
        for n, path in enumerate(paths):
            x = supernet.run_block(n, path, x, mask)
            loss += float(masked_mse(x, states[:, :, n + 1], mask))
        total.append(loss)
    return float(np.mean(total))


def check_cache_vs_texts(states: BlockStates, texts: Sequence[str] | Corpus) -> None:
    if len(states) != len(texts):
        raise BertnasError(f"cached teacher states ({len(states)} sentences) do not match the corpus ({len(texts)}): "
                           "delete the cache directory and run again")

