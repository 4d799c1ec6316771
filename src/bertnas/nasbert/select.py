"""Model selection: combine surviving block paths under a size/latency budget, export standalone models.

1. Every combination of one surviving path per block is priced by summed parts (params in closed form,
   latency from the table) and scored by the sum of its blocks' held-out losses (approximate loss).
2. Combinations over budget are dropped; the best ``top_t`` by approximate loss are evaluated exactly
   (:func:`~.distill.chain_loss`: blocks chained on their own outputs), the best one is kept.
3. The kept architecture becomes a ``nasbert`` Hugging Face model whose weights come from the supernet
   (ops as trained, block adapters folded) and the teacher (embedding: truncated SVD of its word table).
"""
from __future__ import annotations

import itertools
import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BertnasError
from ..measure.latency_table import LatencyTable
from .costs import TeacherShape, embedding_params, model_params, predict_latency
from .distill import chain_loss
from .modeling import NasBertConfig, NasBertForSequenceClassification
from .space import Architecture, BlockPath, Supernet, path_params

logger = logging.getLogger("bertnas")
MAX_COMBINATIONS = 1_000_000


@dataclass(frozen=True)
class Constraint:
    """A budget: at most ``max_params`` parameters and/or ``max_latency_ms`` predicted milliseconds."""

    max_params: int | None = None
    max_latency_ms: float | None = None

    @property
    def name(self) -> str:
        parts = []
        if self.max_params is not None:
            parts.append(format_count(self.max_params))
        if self.max_latency_ms is not None:
            parts.append(f"{self.max_latency_ms:g}ms")
        return "-".join(parts) or "unconstrained"


def format_count(n: int) -> str:
    for unit, scale in (("M", 1_000_000), ("K", 1_000)):
        if n >= scale and n % (scale // 100 or 1) == 0:
            return f"{n / scale:g}{unit}"
    return str(n)


def parse_count(text: str) -> int:
    """'5M' -> 5,000,000; '500K', '2.5M', '1200000' also work."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)\s*", text or "")
    if not m:
        raise BertnasError(f"bad parameter budget {text!r}: expected a number with an optional K/M/G suffix, e.g. 5M")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
    if value < 1:
        raise BertnasError(f"bad parameter budget {text!r}: must be at least 1")
    return int(round(value))


def parse_constraints(max_params: str | None, max_latency_ms: str | None) -> list[Constraint]:
    """One constraint per listed budget; a single latency budget applies to every params budget."""
    params = [parse_count(x) for x in max_params.split(",") if x.strip()] if max_params else []
    try:
        lats = [float(x) for x in max_latency_ms.split(",") if x.strip()] if max_latency_ms else []
    except ValueError:
        raise BertnasError(f"bad --max-latency-ms {max_latency_ms!r}: expected numbers, e.g. 20 or 10,20") from None
    if any(x <= 0 or not math.isfinite(x) for x in lats):
        raise BertnasError(f"bad --max-latency-ms {max_latency_ms!r}: budgets must be positive")
    if not params and not lats:
        raise BertnasError("no budget given: pass --max-params (e.g. 5M,10M) and/or --max-latency-ms")
    if params and lats and len(lats) not in (1, len(params)):
        raise BertnasError("--max-latency-ms takes one value, or one per --max-params value")
    if not params:
        return [Constraint(None, x) for x in lats]
    if not lats:
        return [Constraint(p, None) for p in params]
    return [Constraint(p, lats[0] if len(lats) == 1 else lats[i]) for i, p in enumerate(params)]


def choose_embedding_size(sizes: list[int], shape: TeacherShape, max_params: int | None, fraction: float) -> int:
    """Largest E whose embedding takes at most ``fraction`` of the params budget (ours; the paper leaves it open)."""
    sizes = sorted(sizes)
    if max_params is None:
        return sizes[-1]
    fitting = [e for e in sizes if embedding_params(e, shape) <= fraction * max_params]
    return fitting[-1] if fitting else sizes[0]


@dataclass
class Candidate:
    arch: Architecture
    params: int
    latency_ms: float | None
    approx_loss: float
    exact_loss: float | None = None


def combine(
    blocks: list[list[dict]], e: int, shape: TeacherShape, table: LatencyTable | None, constraint: Constraint,
    seq_len: int, batch: int, top_t: int,
) -> list[Candidate]:
    """The ``top_t`` in-budget combinations by summed block loss (one path per block)."""
    if constraint.max_latency_ms is not None and table is None:
        raise BertnasError("a latency budget needs the latency table: run `bertnas nasbert latency --out DIR` first")
    paths = [[BlockPath.parse(c["path"]) for c in block] for block in blocks]
    losses = [np.array([c["loss"] for c in block]) for block in blocks]
    combos = [()]
    total_loss = np.zeros(1)
    for n in range(len(blocks)):  # extend block by block, pruning over-budget prefixes early
        combos = [c + (i,) for c in combos for i in range(len(paths[n]))]
        total_loss = (total_loss[:, None] + losses[n][None, :]).reshape(-1)
        if constraint.max_params is not None:  # a prefix's layers alone already over budget can never fit
            layer_params = np.array([sum(path_params(paths[k][i]) for k, i in enumerate(c)) for c in combos])
            keep = np.nonzero(layer_params <= constraint.max_params)[0]
            combos, total_loss = [combos[i] for i in keep], total_loss[keep]
        if len(combos) > MAX_COMBINATIONS:
            keep = np.argsort(total_loss, kind="stable")[:MAX_COMBINATIONS]
            combos, total_loss = [combos[i] for i in keep], total_loss[keep]
    out = []
    for i in np.argsort(total_loss, kind="stable"):
        arch = Architecture(e, tuple(paths[n][j] for n, j in enumerate(combos[i])))
        params = model_params(arch, shape)
        if constraint.max_params is not None and params > constraint.max_params:
            continue
        latency = predict_latency(table, arch, shape.hidden, seq_len, batch) if table is not None else None
        if constraint.max_latency_ms is not None and latency > constraint.max_latency_ms:
            continue
        out.append(Candidate(arch, params, latency, float(total_loss[i])))
        if len(out) >= top_t:
            break
    return out


def out_of_budget(blocks: list[list[dict]], embedding_sizes: list[int], shape: TeacherShape,
                  table: LatencyTable | None, constraint: Constraint, seq_len: int, batch: int) -> BertnasError:
    """The error for a budget no surviving model meets: the smallest model's parameters and, for a latency
    budget, the fastest model's predicted latency, so the user knows which budget would fit."""
    paths = [[BlockPath.parse(c["path"]) for c in block] for block in blocks]
    e = min(embedding_sizes)
    smallest = Architecture(e, tuple(min(block, key=path_params) for block in paths))
    facts = [f"the smallest surviving model has {model_params(smallest, shape) / 1e6:.2f}M parameters"]
    if constraint.max_latency_ms is not None and table is not None and math.prod(map(len, paths)) <= MAX_COMBINATIONS:
        fastest = min(predict_latency(table, Architecture(e, combo), shape.hidden, seq_len, batch)
                      for combo in itertools.product(*paths))
        facts.append(f"the fastest is predicted at {fastest:.2f} ms (batch {batch}, sequence {seq_len})")
    return BertnasError(f"no architecture fits the budget {constraint.name}: {' and '.join(facts)}; raise the "
                        "budget, or shrink a supernet whose space keeps smaller layers")


def select_best(candidates: list[Candidate], supernet: Supernet, held_out: list[dict]) -> Candidate:
    """Evaluate the candidates exactly and return the one with the lowest chained loss."""
    for c in candidates:
        c.exact_loss = chain_loss(supernet, list(c.arch.blocks), held_out)
    return min(candidates, key=lambda c: (c.exact_loss, c.params))


def factorize_embedding(word: torch.Tensor, e: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated SVD of the teacher's word table (V, T) = (V, E) @ (E, T): the best rank-E fit."""
    u, s, vt = torch.linalg.svd(word.double(), full_matrices=False)
    k = min(e, s.numel())
    table = torch.zeros(word.size(0), e, dtype=torch.float64)
    proj = torch.zeros(e, word.size(1), dtype=torch.float64)
    table[:, :k] = u[:, :k] * s[:k]
    proj[:k] = vt[:k]
    return table.float(), proj.float()


def build_student(
    arch: Architecture, supernet: Supernet, teacher: torch.nn.Module, shape: TeacherShape, num_labels: int = 2,
) -> NasBertForSequenceClassification:
    """A standalone student: ops and adapters from the supernet, embedding and pooler from the teacher."""
    config = NasBertConfig(vocab_size=shape.vocab_size, max_position_embeddings=shape.max_positions,
                           type_vocab_size=shape.type_vocab_size, hidden_size=shape.hidden, architecture=str(arch),
                           dropout=supernet.space.dropout, pad_token_id=int(teacher.config.pad_token_id or 0),
                           num_labels=num_labels)
    model = NasBertForSequenceClassification(config)
    enc = model.nasbert
    with torch.no_grad():
        temb = teacher.embeddings
        table, proj = factorize_embedding(temb.word_embeddings.weight.detach().float(), arch.embedding_size)
        enc.embeddings.word_embeddings.weight.copy_(table)
        enc.embeddings.word_projection.weight.copy_(proj.T)
        enc.embeddings.position_embeddings.weight.copy_(temb.position_embeddings.weight)
        enc.embeddings.token_type_embeddings.weight.copy_(temb.token_type_embeddings.weight)
        enc.embeddings.norm.load_state_dict(temb.LayerNorm.state_dict())
        blocks = supernet.blocks
        for n, path in enumerate(arch.blocks):
            key = str(path.hidden)
            for layer, src in enumerate(supernet.path_modules(n, path)):
                enc.blocks[n][layer].load_state_dict(src.state_dict())
            adapt_in = blocks[n].adapt_in[key]
            if n == 0:
                enc.adapters[0].load_state_dict(adapt_in.state_dict())
            else:  # fold: previous block's out adapter, then this block's in adapter -> one linear map
                prev = blocks[n - 1].adapt_out[str(arch.blocks[n - 1].hidden)]
                enc.adapters[n].weight.copy_(adapt_in.weight @ prev.weight)
                enc.adapters[n].bias.copy_(adapt_in.weight @ prev.bias + adapt_in.bias)
        enc.adapters[-1].load_state_dict(blocks[-1].adapt_out[str(arch.blocks[-1].hidden)].state_dict())
        pooler = getattr(getattr(teacher, "pooler", None), "dense", None)
        if pooler is not None:
            model.pooler.load_state_dict(pooler.state_dict())
    return model.eval()
