"""Model selection: combine surviving block paths under a size/latency budget, export standalone models.

1. Every combination of one surviving path per block is priced by summed parts (params in closed form,
   latency from the table) and scored by the sum of its blocks' held-out losses (approximate loss).
2. Combinations over budget are dropped; the best ``top_t`` by approximate loss are evaluated exactly
   (:func:`~.distill.chain_loss`: blocks chained on their own outputs), the best one is kept.
3. The kept architecture becomes a ``nasbert`` Hugging Face model whose weights come from the supernet
   (ops as trained, block adapters folded) and the teacher (embedding: truncated SVD of its word table).
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BertnasError
from ..measure.latency_table import LatencyTable
from .costs import TeacherShape, block_parts, embedding_params, head_params, model_params, predict_latency
from .distill import chain_loss
from .modeling import NasBertConfig, NasBertForSequenceClassification, pooling_for
from .space import Architecture, BlockPath, Supernet, linear_params, path_params

logger = logging.getLogger("bertnas")


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


@dataclass
class _Prices:
    """Per block: each surviving path's hidden-size index, layer params, layer latency (sum of parts) and loss;
    the adapters' params and latency per (from size, to size); the embedding and head. Everything is additive,
    so a combination's price is a sum and the search can work on arrays."""

    sizes: list[int]  # distinct hidden sizes; index 0..S-1
    hidden: list[np.ndarray]  # [block] (M,) int index into sizes
    params: list[np.ndarray]  # [block] (M,) float64
    latency: list[np.ndarray]  # [block] (M,) float64 (sum of parts, ms)
    loss: list[np.ndarray]
    adapter_params: np.ndarray  # (S + 1, S + 1): index S is the teacher size
    adapter_latency: np.ndarray
    fixed_params: float  # embedding + head
    fixed_latency: float


def _prices(paths: list[list[BlockPath]], losses: list[list[float]], e: int, shape: TeacherShape,
            table: LatencyTable | None, seq_len: int, batch: int) -> _Prices:
    sizes = sorted({p.hidden for block in paths for p in block})
    where = {h: i for i, h in enumerate(sizes)}
    dims = sizes + [shape.hidden]
    ap = np.array([[linear_params(a, b) for b in dims] for a in dims], dtype=np.float64)
    al = np.zeros_like(ap)
    lat = [np.zeros(len(block)) for block in paths]
    fixed_lat = 0.0
    if table is not None:
        for i, a in enumerate(dims):
            for j, b in enumerate(dims):
                if (i == len(sizes)) + (j == len(sizes)) == 1 or (i < len(sizes) and j < len(sizes)):
                    al[i, j] = table.get("linear", f"{a}>{b}", seq_len, batch)
        lat = [np.array([table.sum_of_parts(block_parts(p), seq_len, batch) for p in block]) for block in paths]
        fixed_lat = table.sum_of_parts([("embedding", f"{e}>{shape.hidden}"), ("head", shape.hidden)], seq_len, batch)
    return _Prices(sizes, [np.array([where[p.hidden] for p in block]) for block in paths],
                   [np.array([path_params(p) for p in block], dtype=np.float64) for block in paths], lat,
                   [np.asarray(x, dtype=np.float64) for x in losses], ap, al,
                   float(embedding_params(e, shape) + head_params(shape)), fixed_lat)


def pareto_top(costs: np.ndarray, loss: np.ndarray, top: int, chunk: int = 2048) -> np.ndarray:
    """Indices of the rows that fewer than ``top`` other rows dominate (costs all <= and loss <=, ties broken by
    order). A dominated prefix can be dropped: each of ``top`` dominating prefixes, finished the same way, gives a
    whole model that fits wherever it fits and scores at least as well, so it cannot be in the top ``top``.

    Rows are visited in loss order and compared with the rows kept so far: a row dominated by a dropped row is
    also dominated by that row's ``top`` dominators, so counting the kept ones alone gives the same answer.
    """
    order = np.argsort(loss, kind="stable")
    if costs.shape[1] == 0:
        return np.sort(order[:top])
    kept_costs = np.empty((0, costs.shape[1]))
    kept: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        c = costs[idx]
        count = np.zeros(len(idx), dtype=np.int64)
        if len(kept_costs):
            dom = np.ones((len(idx), len(kept_costs)), dtype=bool)
            for d in range(c.shape[1]):
                dom &= kept_costs[None, :, d] <= c[:, None, d]
            count += dom.sum(1)
        inner = np.tril(np.ones((len(idx), len(idx)), dtype=bool), -1)  # earlier in loss order within the chunk
        for d in range(c.shape[1]):
            inner &= c[None, :, d] <= c[:, None, d]
        count += inner.sum(1)
        keep = count < top
        kept.append(idx[keep])
        kept_costs = np.concatenate([kept_costs, c[keep]])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def combine(
    blocks: list[list[dict]], e: int, shape: TeacherShape, table: LatencyTable | None, constraint: Constraint,
    seq_len: int, batch: int, top_t: int,
) -> list[Candidate]:
    """The ``top_t`` in-budget combinations (one path per block) by summed block loss, found exactly.

    Block by block, every prefix is extended by every path of the next block (arrays, not Python tuples);
    prefixes that cannot fit even with the cheapest rest are dropped, and so are prefixes that ``top_t``
    others with the same last hidden size dominate (:func:`pareto_top`). At the paper's scale (4 blocks of
    ~100 surviving paths, 10^8 combinations) only a few thousand prefixes stay alive per block.
    """
    if constraint.max_latency_ms is not None and table is None:
        raise BertnasError("a latency budget needs the latency table: run `bertnas nasbert latency --out DIR` first")
    paths = [[BlockPath.parse(c["path"]) for c in block] for block in blocks]
    lat_table = table if constraint.max_latency_ms is not None else None  # latency priced only when budgeted
    pr = _prices(paths, [[c["loss"] for c in block] for block in blocks], e, shape, lat_table, seq_len, batch)
    teacher_i = len(pr.sizes)
    p_max = math.inf if constraint.max_params is None else float(constraint.max_params)
    l_max = math.inf
    if constraint.max_latency_ms is not None:  # predicted = scale * sum of parts + offset
        scale, offset = table.calibration.get(f"{seq_len}|{batch}", (1.0, 0.0))
        l_max = (constraint.max_latency_ms - offset) / scale
    n_blocks = len(paths)
    # a budget even the dearest combination meets cannot bind: leave it out of the dominance test
    dearest_p = pr.fixed_params + sum(x.max() for x in pr.params) + (n_blocks + 1) * pr.adapter_params.max()
    dearest_l = pr.fixed_latency + sum(x.max() for x in pr.latency) + (n_blocks + 1) * pr.adapter_latency.max()
    dims = [d for d, limit, dearest in ((0, p_max, dearest_p), (1, l_max, dearest_l)) if dearest + 1 > limit]
    # the cheapest possible rest after block n: cheapest paths, cheapest adapters (a lower bound, so exact)
    rest_p, rest_l = np.zeros(n_blocks), np.zeros(n_blocks)
    for n in range(n_blocks - 2, -1, -1):
        rest_p[n] = rest_p[n + 1] + pr.params[n + 1].min() + pr.adapter_params[:teacher_i, :teacher_i].min()
        rest_l[n] = rest_l[n + 1] + pr.latency[n + 1].min() + pr.adapter_latency[:teacher_i, :teacher_i].min()
    if n_blocks > 1:
        rest_p[:-1] += pr.adapter_params[:teacher_i, teacher_i].min()
        rest_l[:-1] += pr.adapter_latency[:teacher_i, teacher_i].min()

    choice = np.zeros((1, 0), dtype=np.int32)  # (K, n) path index per block
    cost_p, cost_l, loss = np.array([pr.fixed_params]), np.array([pr.fixed_latency]), np.zeros(1)
    last = np.full(1, teacher_i)
    for n in range(n_blocks):
        h = pr.hidden[n]
        new_p = cost_p[:, None] + pr.adapter_params[last][:, h] + pr.params[n][None, :]
        new_l = cost_l[:, None] + pr.adapter_latency[last][:, h] + pr.latency[n][None, :]
        if n == n_blocks - 1:  # the last block's adapter back to the teacher size
            new_p, new_l = new_p + pr.adapter_params[h, teacher_i][None, :], new_l + pr.adapter_latency[h, teacher_i][None, :]
        k, m = new_p.shape
        rows, cols = np.divmod(np.arange(k * m), m)
        cost_p, cost_l = new_p.reshape(-1), new_l.reshape(-1)
        loss = (loss[:, None] + pr.loss[n][None, :]).reshape(-1)
        choice = np.concatenate([choice[rows], cols[:, None].astype(np.int32)], 1)
        last = h[cols]
        fits = np.nonzero((cost_p + rest_p[n] <= p_max) & (cost_l + rest_l[n] <= l_max))[0]
        if n == n_blocks - 1:  # whole models: the best top_t that fit
            keep = fits[np.argsort(loss[fits], kind="stable")[:top_t]]
        else:
            costs = np.stack([cost_p, cost_l], 1)[:, dims]
            groups = [fits[last[fits] == size] for size in np.unique(last[fits])]  # the rest's price depends on it
            keep = [g[pareto_top(costs[g], loss[g], top_t)] for g in groups]
            keep = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
        choice, cost_p, cost_l, loss, last = choice[keep], cost_p[keep], cost_l[keep], loss[keep], last[keep]
        logger.debug("selection block %d: %d of %d prefixes kept", n + 1, len(keep), k * m)
    out = []
    for i in np.argsort(loss, kind="stable")[:top_t]:
        arch = Architecture(e, tuple(paths[n][j] for n, j in enumerate(choice[i])))
        latency = predict_latency(table, arch, shape.hidden, seq_len, batch) if table is not None else None
        out.append(Candidate(arch, model_params(arch, shape), latency, float(loss[i])))
    return out


def cheapest(blocks: list[list[dict]], e: int, shape: TeacherShape, table: LatencyTable | None, seq_len: int,
             batch: int, what: str) -> float:
    """The least parameters (``what="params"``) or predicted latency (``"latency"``) any surviving combination
    has, by dynamic programming over the last hidden size (exact, whatever the space's size)."""
    paths = [[BlockPath.parse(c["path"]) for c in block] for block in blocks]
    pr = _prices(paths, [[0.0] * len(b) for b in paths], e, shape, table, seq_len, batch)
    cost, adapt = (pr.params, pr.adapter_params) if what == "params" else (pr.latency, pr.adapter_latency)
    s = len(pr.sizes)
    best = np.full(s + 1, np.inf)
    best[s] = pr.fixed_params if what == "params" else pr.fixed_latency
    for n in range(len(paths)):
        nxt = np.full(s + 1, np.inf)
        for i, h in enumerate(pr.hidden[n]):
            nxt[h] = min(nxt[h], float(np.min(best + adapt[:, h])) + cost[n][i])
        best = nxt
    total = float(np.min(best[:s] + adapt[:s, s]))
    if what == "latency" and table is not None:
        scale, offset = table.calibration.get(f"{seq_len}|{batch}", (1.0, 0.0))
        total = scale * total + offset
    return total


def out_of_budget(blocks: list[list[dict]], e: int, shape: TeacherShape,
                  table: LatencyTable | None, constraint: Constraint, seq_len: int, batch: int) -> BertnasError:
    """The error for a budget no surviving model meets: the smallest model's parameters and, for a latency
    budget, the fastest model's predicted latency (with the embedding size ``e`` the search used), so the user
    knows which budget would fit."""
    facts = [f"the smallest surviving model has {cheapest(blocks, e, shape, None, seq_len, batch, 'params') / 1e6:.2f}M "
             "parameters"]
    if constraint.max_latency_ms is not None and table is not None:
        fastest = cheapest(blocks, e, shape, table, seq_len, batch, "latency")
        facts.append(f"the fastest is predicted at {fastest:.2f} ms (batch {batch}, sequence {seq_len})")
    return BertnasError(f"no architecture fits the budget {constraint.name} with embedding size {e}: {' and '.join(facts)}; raise the "
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
                           num_labels=num_labels, pooling=pooling_for(arch))
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
