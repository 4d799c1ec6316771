"""Per-op cost for the search's efficiency loss, measured from the op modules themselves (one formula, here).

Each op in :data:`~bertnas.adabert.ops.PRIMITIVES` is built as the final model builds it and measured
(parameters and FLOPs at one hidden size and sequence length). Its measured share

    share(o) = 0.5 * params(o) / max params + 0.5 * flops(o) / max flops        (in [0, 1])

is ``measure_op_costs()[o]["cost"]``: the widest conv is 1, ``zero`` and ``skip_connect`` are 0, pooling
(counted as compare/add work) a little above them. The efficiency loss weighs ops by

    EP(o) = softmax over ops of (EP_SCALE * share(o))                              (sums to 1)

which reproduces the cost vector of the AdaBERT code at hidden 128: its ``EP`` is a softmax whose logits grow
with the kernel as 3 : 5 : 7 (0.0563, 0.0937, 0.1311 above identity/zero), i.e. EP_SCALE = 0.1311 times our
share; pools land within 1e-4 of its values. So ``beta = 4`` means what it meant there: L_E is about 0.1 at
K = K_max, and the widest op costs 1.14 times the cheapest.

``--efficiency latency`` (ours) prices ops by what they take on this CPU instead: :func:`adabert_latency_table`
measures every primitive at the run's hidden size, the per-cell glue (node sums, masks, node attention, the
per-cell pooling) and the fixed parts (embeddings, classifier) once, with the shared per-op latency table
(``measure.latency_table``), and fits one scale on a few whole students timed the same way; cached in the cache
directory. :class:`LatencyCosts` turns it into the predicted
latency of a genotype and the expected latency of the search's architecture distribution (the efficiency loss
itself is in ``objective``).
"""
from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ..errors import BertnasError
from ..measure.latency_table import LatencyTable, OpSpec, cached_table
from ..measure.profile import count_flops, count_params
from .genotype import NUM_NODES, Genotype
from .ops import PRIMITIVES, create_op

logger = logging.getLogger("bertnas")

EP_SCALE = 0.1311
"""log(EP(conv_7) / EP(zero)) in the AdaBERT code's cost vector: the logit of the widest op."""


@lru_cache(maxsize=None)
def _op_costs(hidden: int, seq_len: int) -> dict[str, dict]:
    x = torch.zeros(1, hidden, seq_len)
    raw: dict[str, dict] = {}
    for name in PRIMITIVES:
        op = create_op(name, hidden).eval()
        raw[name] = {"params": count_params(op), "flops": count_flops(op, x)}
    max_params = max(r["params"] for r in raw.values()) or 1
    max_flops = max(r["flops"] for r in raw.values()) or 1
    for r in raw.values():
        r["cost"] = 0.5 * r["params"] / max_params + 0.5 * r["flops"] / max_flops
    return raw


def measure_op_costs(hidden: int = 128, seq_len: int = 128) -> dict[str, dict]:
    """``{op: {"params", "flops", "cost"}}`` for every op at this size, ``cost`` being the measured share in
    [0, 1] (cached; callers get a copy)."""
    if int(hidden) < 1 or int(seq_len) < 1:
        raise BertnasError(f"op costs need hidden >= 1 and seq_len >= 1, got hidden={hidden}, seq_len={seq_len}")
    return copy.deepcopy(_op_costs(int(hidden), int(seq_len)))


def cost_vector(hidden: int = 128, seq_len: int = 128) -> torch.Tensor:
    """Measured shares as a float tensor in PRIMITIVES order."""
    costs = measure_op_costs(hidden, seq_len)
    return torch.tensor([costs[name]["cost"] for name in PRIMITIVES], dtype=torch.float32)


def efficiency_costs(hidden: int = 128, seq_len: int = 128) -> torch.Tensor:
    """EP: the per-op weights of the efficiency loss, softmax(EP_SCALE * share), in PRIMITIVES order."""
    return torch.softmax(EP_SCALE * cost_vector(hidden, seq_len).double(), 0).float()


def efficiency_table(hidden: int = 128, seq_len: int = 128) -> dict[str, float]:
    """``{op: EP(op)}`` rounded for reports (saved in search/genotype.json)."""
    return {o: round(float(c), 6) for o, c in zip(PRIMITIVES, efficiency_costs(hidden, seq_len))}


# ----------------------------------------------------------------------------- measured latency (ours)
CELL_OVERHEAD = "cell_overhead"
"""Table entry: one cell's work besides its ops (3 node sums x mask, node attention, the pooling of its output).
Timed on the single-sentence layout: a pair student's cells also pool A and B apart and, with the aligned pair
head (``blocks.aligned_views``), soft-align them, about one conv 3's work at L = C = 128, not in the table."""
EMBEDDINGS = "embeddings"
"""Table entry: pair layout + word/position embeddings + LayerNorm + mask (once per model)."""
CLASSIFIER = "classifier"
"""Table entry: the pooled classifier (once per model)."""
KEPT_EDGES = 2 * NUM_NODES
"""Edges a derived cell runs: two per node."""
TABLE_VOCAB = 30522
"""Rows of the embedding timed for the table (BERT's vocabulary; a lookup's time barely depends on it)."""
TABLE_STAT = "min"
"""Statistic of the repeats, for ops and calibration students alike: on a CPU shared with other jobs the
minimum is the steadier estimate (other processes only ever add time); on an idle one it is the median's twin."""


class _CellGlue(nn.Module):
    """A derived cell without its ops: each node adds two inputs and is masked, the nodes are mixed by
    softmax weights, and the output is pooled (the classifier pools every cell)."""

    def __init__(self) -> None:
        super().__init__()
        self.node_logits = nn.Parameter(torch.zeros(NUM_NODES))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from .blocks import PairLayout, pool_views

        m = mask[:, None, :].to(s0.dtype)
        states = [s0, s1]
        for node in range(NUM_NODES):
            states.append((states[node] + states[node + 1]) * m)
        weights = torch.softmax(self.node_logits, 0)
        out = sum(w * h for w, h in zip(weights, states[2:]))
        return pool_views(out, PairLayout(mask, mask, mask, mask, pair=False))


class _Embeddings(nn.Module):
    """The student's input side: pair layout (single sentence), embeddings, the first cell's two inputs."""

    def __init__(self, hidden: int, max_positions: int) -> None:
        super().__init__()
        from .modeling import AdaBertConfig, AdaBertEmbeddings

        self.embeddings = AdaBertEmbeddings(AdaBertConfig(vocab_size=TABLE_VOCAB, hidden_size=hidden,
                                                          max_position_embeddings=max_positions))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .blocks import cell_inputs, pair_layout

        layout = pair_layout(ids, mask, None, False, None)
        return cell_inputs(self.embeddings(ids, layout.mask, layout.position_ids), layout)


def latency_specs(hidden: int, max_positions: int = 512) -> list[OpSpec]:
    """Every timed part of an AdaBERT student at ``hidden``: each primitive (final-model form, affine
    BatchNorm, eval mode), the per-cell glue, the embeddings and the classifier."""
    from .blocks import PooledClassifier

    def channels_first(batch: int, seq_len: int) -> tuple:
        return (torch.randn(batch, hidden, seq_len),)

    def cell_args(batch: int, seq_len: int) -> tuple:
        return torch.randn(batch, hidden, seq_len), torch.randn(batch, hidden, seq_len), torch.ones(batch, seq_len, dtype=torch.long)

    def ids(batch: int, seq_len: int) -> tuple:
        return torch.randint(5, TABLE_VOCAB, (batch, seq_len)), torch.ones(batch, seq_len, dtype=torch.long)

    def pooled(batch: int, seq_len: int) -> tuple:
        return ([torch.randn(batch, 1, hidden)],)

    specs = [OpSpec(name, hidden, (lambda name=name: create_op(name, hidden)), channels_first) for name in PRIMITIVES]
    specs.append(OpSpec(CELL_OVERHEAD, hidden, _CellGlue, cell_args))
    specs.append(OpSpec(EMBEDDINGS, hidden, lambda: _Embeddings(hidden, max_positions), ids))
    specs.append(OpSpec(CLASSIFIER, hidden, lambda: PooledClassifier(1, hidden, 2, 0.0), pooled))
    return specs


def latency_table_path(cache_dir: str | Path | None, hidden: int, seq_len: int, batch: int, threads: int) -> Path:
    """Where the table for these settings on this CPU and torch version is cached."""
    from ..measure.profile import hardware_info
    from ..teacher.knowledge import cache_root

    cpu = hashlib.sha1(str(hardware_info()["cpu"]).encode()).hexdigest()[:8]
    name = f"adabert-h{hidden}-s{seq_len}-b{batch}-t{threads}-cpu{cpu}-torch{torch.__version__}.json"
    return cache_root(cache_dir) / "latency" / name.replace("+", "_")


def measure_latency_table(hidden: int, seq_len: int, batch: int, threads: int, repeats: int = 20,
                          cache_dir: str | Path | None = None) -> LatencyTable:
    """The AdaBERT op latency table for these settings, measured on this CPU once and then read from the cache."""
    path = latency_table_path(cache_dir, hidden, seq_len, batch, threads)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BertnasError(f"cannot create the latency table directory {path.parent} ({exc.strerror}): pass a "
                           "writable --cache-dir") from exc
    if not path.is_file():
        logger.info("measuring AdaBERT op latencies on this CPU (hidden %d, seq %d, batch %d, %d threads)...",
                    hidden, seq_len, batch, threads)
    table, measured = cached_table(path, latency_specs(hidden, max(512, seq_len)), [seq_len], [batch],
                                   threads=threads, repeats=repeats, stat=TABLE_STAT)
    if measured or f"{seq_len}|{batch}" not in table.calibration:
        scale = _calibrate(table, hidden, seq_len, batch, threads, repeats)
        table.save(path)
        logger.info("latency table calibrated on %d whole students: measured = %.3f x sum of parts",
                    len(CALIBRATION_DEPTHS), scale)
    logger.info("latency table %s: %s", path, f"{measured} entries measured now" if measured else "reused")
    return table


CALIBRATION_DEPTHS = (1, 2, 4)
"""Depths of the random whole students the table's scale is fitted on (fixed, so that runs with any K_max share
one table)."""


def _calibrate(table: LatencyTable, hidden: int, seq_len: int, batch: int, threads: int, repeats: int) -> float:
    """Time a few random whole students as ``evaluate`` does (random ids, all-ones mask) and fit one scale
    ``measured = scale * sum of parts`` (ops timed alone miss the model's glue and run with warmer caches)."""
    import random

    from ..measure.profile import random_batch, measure_latency
    from .genotype import NUM_INPUTS
    from .modeling import AdaBertConfig, AdaBertForSequenceClassification

    rng = random.Random(0)
    ops = [o for o in PRIMITIVES if o != "zero"]  # derivation never keeps zero
    parts = {o: table.get(o, hidden, seq_len, batch) for o in (*PRIMITIVES, CELL_OVERHEAD, EMBEDDINGS, CLASSIFIER)}
    sums, measured = [], []
    # measuring draws random inputs and reseeds torch, a cache hit draws nothing: the caller's random stream
    # (the search initialises its distillation heads from it next) must not depend on which one happened
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for depth in CALIBRATION_DEPTHS:
            edges = tuple(sorted((node, source, rng.choice(ops)) for node in range(NUM_NODES)
                                 for source in rng.sample(range(NUM_INPUTS + node), 2)))
            genotype = Genotype(edges, depth)
            model = AdaBertForSequenceClassification(AdaBertConfig(
                vocab_size=TABLE_VOCAB, max_position_embeddings=max(512, seq_len), hidden_size=hidden,
                genotype=genotype.to_dict(), num_labels=2)).eval()
            inputs = random_batch(TABLE_VOCAB, batch, seq_len, torch.Generator().manual_seed(depth), "cpu")
            timing = measure_latency(lambda: model(**inputs), repeats=repeats, threads=threads)
            measured.append(timing[f"{TABLE_STAT}_ms"])
            sums.append(parts[EMBEDDINGS] + parts[CLASSIFIER]
                        + depth * (parts[CELL_OVERHEAD] + sum(parts[op] for _, _, op in edges)))
    scale, _ = table.calibrate(sums, measured, seq_len, batch, offset=False)
    return scale


def adabert_latency_table(cfg) -> LatencyTable:
    """:func:`measure_latency_table` with a run's settings (``RunConfig``)."""
    return measure_latency_table(cfg.hidden_size, cfg.table_seq_len, cfg.latency_table_batch, cfg.table_threads,
                                 cfg.latency_repeats, cfg.cache_dir)


@dataclass
class LatencyCosts:
    """Milliseconds of an AdaBERT student's parts at one hidden size, sequence length and batch (from a table).

    A derived student of depth K runs ``scale * (fixed_ms + K * (cell_ms + sum of its 6 kept ops))``, ``scale``
    fitted on whole students timed beside the table (:func:`measure_latency_table`).
    """

    op_ms: dict[str, float]  # per primitive
    cell_ms: float  # per-cell glue
    fixed_ms: float  # embeddings + classifier
    k_max: int
    hidden: int
    seq_len: int
    batch: int
    scale: float = 1.0  # calibration on whole students: predicted = scale * sum of parts

    @classmethod
    def of(cls, table: LatencyTable, hidden: int, seq_len: int, batch: int, k_max: int) -> "LatencyCosts":
        get = lambda op: table.get(op, hidden, seq_len, batch)  # noqa: E731
        scale, _ = table.calibration.get(f"{seq_len}|{batch}", (1.0, 0.0))
        return cls({o: get(o) for o in PRIMITIVES}, get(CELL_OVERHEAD), get(EMBEDDINGS) + get(CLASSIFIER),
                   k_max, hidden, seq_len, batch, float(scale))

    def vector(self) -> torch.Tensor:
        """Op milliseconds in PRIMITIVES order."""
        return torch.tensor([self.op_ms[o] for o in PRIMITIVES], dtype=torch.float32)

    @property
    def max_ms(self) -> float:
        """The largest student of the space: K_max cells whose kept edges all run the slowest op."""
        return self.scale * (self.fixed_ms + self.k_max * (self.cell_ms + KEPT_EDGES * max(self.op_ms.values())))

    def predict(self, genotype: Genotype) -> float:
        """Predicted milliseconds of the derived student ``genotype`` (sum of its parts)."""
        ops = sum(self.op_ms[op] for _, _, op in genotype.edges)
        return self.scale * (self.fixed_ms + genotype.depth * (self.cell_ms + ops))

    def expected(self, op_probs: torch.Tensor, depth: torch.Tensor | float) -> torch.Tensor:
        """Expected milliseconds under op probabilities (9 edges x ops): every edge priced at its expected op,
        times the 6 edges a derived cell keeps; ``depth`` (may carry a straight-through gradient) cells."""
        per_edge = (op_probs * self.vector().to(op_probs)).sum(-1).mean()
        return self.scale * (self.fixed_ms + depth * (self.cell_ms + KEPT_EDGES * per_edge))

    def to_dict(self) -> dict:
        r = lambda x: round(float(x), 4)  # noqa: E731
        return {"hidden": self.hidden, "seq_len": self.seq_len, "batch": self.batch,
                "op_ms": {o: r(v) for o, v in self.op_ms.items()}, "cell_overhead_ms": r(self.cell_ms),
                "fixed_ms": r(self.fixed_ms), "calibration_scale": r(self.scale), "max_ms": r(self.max_ms)}
