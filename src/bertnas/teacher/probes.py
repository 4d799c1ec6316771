"""One linear probe per teacher layer (embeddings + each hidden layer), trained on cached features.

The probes turn every teacher layer into a task prediction; the student's cells are distilled towards
them. The teacher stays frozen, and is not even run when the cache holds every training row's features. When
it holds a sample's only (``--probe-max-examples``), the probes train on the sample and
:func:`probe_unsampled` labels the other rows in one teacher pass, applying the probes batch by batch.
"""
from __future__ import annotations

import logging
import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.encode import Encoded
from ..data.examples import TaskData
from ..data.metrics import compute_metrics
from ..data.split import take
from ..training.losses import task_loss
from ..training.optim import adam
from ..utils import progress
from .knowledge import Knowledge, Sink, teacher_pass
from .loading import Teacher

logger = logging.getLogger("bertnas")
RELEASE_BYTES = 64 * 2**20  # bytes mapped by reads between two releases of the mapped pages
FAULT_AROUND = 64 * 2**10  # Linux maps this much of cached file around each page fault (fault_around_bytes)


@dataclass
class Probes:
    """Probe predictions for every layer and split, and each probe's dev metrics."""

    tensors: dict[str, torch.Tensor]  # train_logits, dev_logits: (L + 1, N, num_labels); weight, bias, mean, std
    metrics: list[dict[str, float]]  # per layer, on dev

    def logits(self, split: str) -> torch.Tensor:
        return self.tensors[f"{split}_logits"]


def _mapping(array: np.ndarray) -> mmap.mmap | None:
    """The ``mmap`` under a memory-mapped array (numpy keeps it as the array's base), whose pages
    :meth:`MappedFeatures.release` gives back; None when numpy did not map the file itself."""
    base = array.base
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


class MappedFeatures:
    """A split's (L + 1, N, F) features file read memory-mapped, with pages given back as reading goes on.

    Why: a page of a memory-mapped file stays mapped into the process once read, and counts in its resident
    memory until unmapped; a random mini-batch maps about :data:`FAULT_AROUND` bytes per row and layer, so a
    few batches map the whole file. So once reads have mapped about ``release_bytes`` (default
    :data:`RELEASE_BYTES`), the whole mapping is dropped (``madvise(MADV_DONTNEED)``): the pages stay in the
    page cache and a later read maps them again. The probes' resident memory then stays flat (about one
    batch's or chunk's worth) whatever the training set's size. Indexing (``x[:, rows]``, ``x[:, a:b]``) returns tensors with the same
    values as the tensor :meth:`Knowledge.features` gives, so training is unchanged.
    """

    def __init__(self, path: Path, release_bytes: int | None = None) -> None:
        mapped = np.lib.format.open_memmap(path, mode="r")  # numpy's header checks and messages, read-only pages
        if len(mapped.shape) != 3 or not mapped.flags.c_contiguous:
            raise ValueError(f"{path}: expected a C-ordered (L + 1, N, F) array, got shape {mapped.shape}")
        self._map = _mapping(mapped)
        self.array = mapped.view(np.ndarray)  # indexing gives plain arrays, which torch.from_numpy takes
        self.shape = torch.Size(mapped.shape)
        self.release_bytes = RELEASE_BYTES if release_bytes is None else release_bytes
        self._read = 0

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self.shape if dim is None else self.shape[dim]

    def __getitem__(self, key: tuple) -> torch.Tensor:
        layers, rows = key
        if layers != slice(None):
            raise IndexError("MappedFeatures reads all layers: index as x[:, rows]")
        if self._read >= self.release_bytes:
            self.release()
        row_bytes = self.shape[0] * self.shape[2] * self.array.itemsize
        if isinstance(rows, slice):
            out = np.array(self.array[:, rows])
            self._read += out.nbytes
        else:  # scattered rows: a fault in each layer maps FAULT_AROUND bytes of the (cached) file
            index = rows.numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
            out = self.array[:, index]
            self._read += len(index) * max(row_bytes, FAULT_AROUND * self.shape[0])
        return torch.from_numpy(out)

    def release(self) -> None:
        """Unmap the pages read so far from this process (they stay cached by the kernel)."""
        if hasattr(self._map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):  # None: nothing mapped to give back
            self._map.madvise(mmap.MADV_DONTNEED)
        self._read = 0


def split_features(knowledge: Knowledge, split: str) -> torch.Tensor | MappedFeatures:
    """The features of ``split``: a :class:`MappedFeatures` when they are a file, else the in-memory tensor."""
    name = f"{split}_features"
    path = knowledge.array_path(name) if name not in knowledge.tensors else None
    return MappedFeatures(path) if path is not None else knowledge.features(split)


def _feature_stats(x: torch.Tensor | MappedFeatures, chunk_bytes: int = 8 * 2**20) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over examples of (L+1, N, F) float16 features, accumulated in float64 chunks of about
    ``chunk_bytes`` (a chunk and its square are the step's transient memory: kept small and independent of N)."""
    total = torch.zeros(x.size(0), 1, x.size(2), dtype=torch.float64)
    squares = torch.zeros_like(total)
    chunk = max(1, chunk_bytes // (x.size(0) * x.size(2) * 8))
    for start in range(0, x.size(1), chunk):
        part = x[:, start : start + chunk].double()
        total += part.sum(1, keepdim=True)
        squares += part.square().sum(1, keepdim=True)
    n = x.size(1)
    mean = total / n
    var = (squares - n * mean.square()) / max(n - 1, 1)
    return mean.float(), var.clamp(min=0).sqrt().float().clamp(min=1e-4)


class _LayerProbes(nn.Module):
    """L + 1 independent linear classifiers, computed in one batched matmul."""

    def __init__(self, layers: int, dim: int, labels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(layers, dim, labels))
        self.bias = nn.Parameter(torch.zeros(layers, labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (L+1, B, F) -> (L+1, B, C)
        return torch.einsum("lbf,lfc->lbc", x, self.weight) + self.bias[:, None, :]


def apply_probes(tensors: dict[str, torch.Tensor], features: torch.Tensor | MappedFeatures,
                 chunk_bytes: int = 8 * 2**20) -> torch.Tensor:
    """Probe logits (L + 1, N, C) of features (L + 1, N, F) with trained probe ``tensors`` (weight, bias, mean, std),
    in chunks of about ``chunk_bytes`` of float32 features (a few copies of one chunk are the transient memory)."""
    chunk = max(1, chunk_bytes // (features.size(0) * features.size(2) * 4))
    # the output is allocated first: small results appended between the big transient chunks kept the freed
    # heap from being reused (glibc), and resident memory grew with the number of chunks
    out = torch.empty(features.size(0), features.size(1), tensors["weight"].size(-1))
    for s in range(0, features.size(1), chunk):
        x = (features[:, s : s + chunk].float() - tensors["mean"]) / tensors["std"]
        out[:, s : s + chunk] = torch.einsum("lbf,lfc->lbc", x, tensors["weight"]) + tensors["bias"][:, None, :]
    return out


def train_probes(
    knowledge: Knowledge,
    data: TaskData,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Probes:
    """Fit every layer's probe on train features (standardized), report dev metrics, return logits. The probes
    train on ``device``, each batch of features read from the cache (memory-mapped) and sent there; the results
    come back to the CPU.

    When the knowledge keeps a sample's features only (:meth:`Knowledge.feature_rows`), the probes fit the sample
    (its labels, its mean and std) and the train logits of the other rows are NaN until :func:`probe_unsampled`
    fills them."""
    spec = data.spec
    regression = spec.is_regression
    train_x = split_features(knowledge, "train")  # (L+1, N, F) float16, read from disk as needed
    dev_x = knowledge.features("dev")
    labels = torch.tensor(data.train.labels, dtype=torch.float32 if regression else torch.long)
    rows = knowledge.feature_rows()  # None: every training row's features are stored
    if rows is not None:
        labels = labels[torch.from_numpy(rows)]
    mean, std = _feature_stats(train_x)  # (L+1, 1, F) each, without a float32 copy of all features
    device = torch.device(device)
    mean_d, std_d, labels_d = mean.to(device), std.to(device), labels.to(device)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x.to(device).float() - mean_d) / std_d

    layers, n, dim = train_x.shape
    probes = _LayerProbes(layers, dim, spec.num_labels)
    with torch.no_grad():  # start at the prior: mean target (regression) or log class frequencies
        if regression:
            probes.bias.fill_(float(labels.mean()))
        else:
            counts = torch.bincount(labels, minlength=spec.num_labels).float() + 1.0
            probes.bias.copy_((counts / counts.sum()).log().expand(layers, -1))
    probes.to(device)
    opt = adam(probes.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    with progress(total=steps, desc="probes") as bar:
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                out = probes(norm(train_x[:, idx]))  # (L+1, B, C)
                y = labels_d[idx.to(device)]
                loss = sum(task_loss(out[l], y, regression) for l in range(layers))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update(1)

    trained = {"weight": probes.weight.detach().cpu().contiguous(), "bias": probes.bias.detach().cpu().contiguous(),
               "mean": mean.contiguous(), "std": std.contiguous()}
    with torch.no_grad():
        train_logits, dev_logits = apply_probes(trained, train_x), apply_probes(trained, dev_x)
    if rows is not None:
        train_logits = _scattered(train_logits, rows, len(data.train))
    metrics = [compute_metrics(spec, dev_logits[l].numpy(), np.asarray(data.dev.labels)) for l in range(layers)]
    for l, m in enumerate(metrics):
        logger.info("probe layer %d (%s): dev %s", l, "embeddings" if l == 0 else f"hidden {l}", m)
    return Probes(
        tensors={"train_logits": train_logits.contiguous(), "dev_logits": dev_logits.contiguous(), **trained},
        metrics=metrics,
    )


def _scattered(sampled: torch.Tensor, rows: np.ndarray, n: int) -> torch.Tensor:
    """(L + 1, n, C) logits with the sample's at ``rows`` and NaN elsewhere: a row left unfilled cannot pass
    for a prediction."""
    out = torch.full((sampled.size(0), n, sampled.size(2)), float("nan"))
    out[:, torch.from_numpy(rows)] = sampled
    return out


def unsampled_rows(knowledge: Knowledge, n: int) -> np.ndarray:
    """The training rows (of ``n``) whose features the knowledge did not keep: empty when it kept every row's."""
    rows = knowledge.feature_rows()
    if rows is None:
        return np.zeros(0, np.int64)
    missing = np.ones(n, bool)
    missing[rows] = False
    return np.nonzero(missing)[0]


def _probe_sink(tensors: dict[str, torch.Tensor], train_logits: torch.Tensor, rows: np.ndarray) -> Sink:
    """Apply the probes to each batch's features (rounded to float16, as the cache stores them) and write the
    logits at the batch's training rows (``rows``: the subset's position -> training row)."""

    def sink(idx: torch.Tensor, _: torch.Tensor, feats: torch.Tensor | None) -> None:
        train_logits[:, torch.from_numpy(rows[idx.numpy()])] = apply_probes(tensors, feats.half())

    return sink


def probe_unsampled(probes: Probes, knowledge: Knowledge, teacher: Teacher, train: Encoded, device: torch.device,
                    batch_size: int = 64, token_budget: int | None = None) -> int:
    """Fill the train logits of the rows without cached features (:func:`unsampled_rows`) from one teacher pass
    over them that applies the probes on the fly, in the knowledge pass's precision; nothing is stored but the
    logits. Returns how many rows it filled (0: the knowledge kept every row's features)."""
    rest = unsampled_rows(knowledge, len(train))
    if len(rest) == 0:
        return 0
    bf16 = knowledge.bf16
    train_logits = probes.tensors["train_logits"]
    teacher_pass(teacher, take(train, rest.tolist()), _probe_sink(probes.tensors, train_logits, rest), device, bf16,
                 batch_size, token_budget, desc=f"teacher probes ({'bf16' if bf16 else 'fp32'})")
    return len(rest)
