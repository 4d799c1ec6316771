"""NAS-BERT selection: the block-by-block pruned search returns exactly what enumerating every combination does."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from bertnas.measure.latency_table import LatencyTable, table_key
from bertnas.nasbert.costs import TeacherShape, model_params, predict_latency
from bertnas.nasbert.select import Constraint, cheapest, combine, pareto_top
from bertnas.nasbert.space import Architecture, BlockPath, SpaceConfig, enumerate_paths

SHAPE = TeacherShape(vocab_size=500, max_positions=64, type_vocab_size=2, hidden=96)
SIZES = (64, 128, 192)
SEQ, BATCH = 16, 1


def _table(rng: random.Random, calibrated: bool, sizes: tuple[int, ...] = SIZES) -> LatencyTable:
    """Per-part latencies that grow with size, with noise, like a measured table."""
    table = LatencyTable(stat="min")
    for h in sizes:
        for op, w in (("mha", 3.0), ("ffn", 2.0), ("sep3", 1.0), ("sep5", 1.2), ("sep7", 1.4)):
            table.entries[table_key(op, h, SEQ, BATCH)] = w * h / 64 * rng.uniform(0.7, 1.3)
    dims = sorted(set(sizes) | {SHAPE.hidden})
    for a in dims:
        for b in dims:
            table.entries[table_key("linear", f"{a}>{b}", SEQ, BATCH)] = a * b / 20000 * rng.uniform(0.8, 1.2)
    for e in (16, 32):
        table.entries[table_key("embedding", f"{e}>{SHAPE.hidden}", SEQ, BATCH)] = 0.3
    table.entries[table_key("head", SHAPE.hidden, SEQ, BATCH)] = 0.1
    if calibrated:
        table.calibration[f"{SEQ}|{BATCH}"] = [1.3, 0.4]
    return table


def _blocks(rng: random.Random, n_blocks: int, per_block: int, sizes: tuple[int, ...] = SIZES) -> list[list[dict]]:
    space = SpaceConfig(teacher_hidden=SHAPE.hidden, teacher_layers=n_blocks, num_blocks=n_blocks, layers_per_block=2,
                        hidden_sizes=sizes)
    paths = enumerate_paths(space)
    return [[{"path": str(p), "loss": rng.uniform(0.05, 1.0)} for p in rng.sample(paths, per_block)]
            for _ in range(n_blocks)]


def _brute_force(blocks, e, table, constraint, top_t):
    found = []
    for combo in itertools.product(*[[BlockPath.parse(c["path"]) for c in b] for b in blocks]):
        arch = Architecture(e, combo)
        params = model_params(arch, SHAPE)
        if constraint.max_params is not None and params > constraint.max_params:
            continue
        if constraint.max_latency_ms is not None and predict_latency(table, arch, SHAPE.hidden, SEQ, BATCH) > constraint.max_latency_ms:
            continue
        loss = sum(next(c["loss"] for c in blocks[n] if c["path"] == str(p)) for n, p in enumerate(combo))
        found.append((loss, str(arch)))
    return sorted(found)[:top_t]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pruned_search_equals_enumeration(seed):
    rng = random.Random(seed)
    table = _table(rng, calibrated=seed != 0)
    blocks = _blocks(rng, n_blocks=3, per_block=14)  # 2,744 combinations: enumerable
    all_params = sorted(model_params(Architecture(16, tuple(BlockPath.parse(c["path"]) for c in combo)), SHAPE)
                        for combo in itertools.product(*blocks))
    all_lat = sorted(predict_latency(table, Architecture(16, tuple(BlockPath.parse(c["path"]) for c in combo)),
                                     SHAPE.hidden, SEQ, BATCH) for combo in itertools.product(*blocks))
    budgets = [Constraint(all_params[len(all_params) // 4], None), Constraint(None, all_lat[len(all_lat) // 3]),
               Constraint(all_params[len(all_params) // 2], all_lat[len(all_lat) // 5]),
               Constraint(all_params[3], None),  # tight: only a few fit
               Constraint(all_params[-1], all_lat[-1] + 1)]  # slack: every combination fits
    for constraint in budgets:
        for top_t in (1, 5, 20):
            got = combine(blocks, 16, SHAPE, table, constraint, SEQ, BATCH, top_t)
            want = _brute_force(blocks, 16, table, constraint, top_t)
            assert [(pytest.approx(c.approx_loss), str(c.arch)) for c in got] == want, (constraint, top_t)
            for c in got:  # prices as the whole-model functions give them
                assert c.params == model_params(c.arch, SHAPE)
                assert c.latency_ms == pytest.approx(predict_latency(table, c.arch, SHAPE.hidden, SEQ, BATCH))
    assert combine(blocks, 16, SHAPE, table, Constraint(all_params[0] - 1, None), SEQ, BATCH, 5) == []


def test_cheapest_is_the_least_over_all_combinations():
    rng = random.Random(5)
    table = _table(rng, calibrated=True)
    blocks = _blocks(rng, n_blocks=3, per_block=10)
    archs = [Architecture(16, tuple(BlockPath.parse(c["path"]) for c in combo)) for combo in itertools.product(*blocks)]
    assert cheapest(blocks, 16, SHAPE, None, SEQ, BATCH, "params") == min(model_params(a, SHAPE) for a in archs)
    assert cheapest(blocks, 16, SHAPE, table, SEQ, BATCH, "latency") == pytest.approx(
        min(predict_latency(table, a, SHAPE.hidden, SEQ, BATCH) for a in archs))


def test_pareto_top_keeps_what_fewer_than_t_dominate():
    rng = np.random.default_rng(0)
    costs, loss = rng.random((300, 2)), rng.random(300)
    for top in (1, 3, 10):
        kept = set(pareto_top(costs, loss, top, chunk=37).tolist())  # a chunk size that splits the rows unevenly
        for i in range(300):
            dominators = int(np.sum((costs <= costs[i]).all(1) & (loss < loss[i])))
            assert (i in kept) == (dominators < top), (top, i, dominators)


@pytest.mark.parametrize("seed", [0, 1])
def test_budgets_just_under_the_largest_model(seed):
    """Where the largest hidden size is the teacher's, a budget just under the largest model still binds (an
    upper bound that counted one adapter too few once treated it as slack and returned models over it)."""
    rng = random.Random(seed)
    sizes = (64, SHAPE.hidden)
    table = _table(rng, calibrated=False, sizes=sizes)
    blocks = _blocks(rng, n_blocks=3, per_block=12, sizes=sizes)
    for block in blocks:  # the larger the path, the lower its loss: the budget is what keeps models out
        for c in block:
            c["loss"] = rng.uniform(1.0, 1.01) / (1 + model_params(Architecture(16, (BlockPath.parse(c["path"]),)), SHAPE))
    largest = max(model_params(Architecture(16, tuple(BlockPath.parse(c["path"]) for c in combo)), SHAPE)
                  for combo in itertools.product(*blocks))
    for below in (1, 500, 5000):
        constraint = Constraint(largest - below, None)
        for top_t in (1, 5):
            got = combine(blocks, 16, SHAPE, table, constraint, SEQ, BATCH, top_t)
            want = _brute_force(blocks, 16, table, constraint, top_t)
            assert [(pytest.approx(c.approx_loss), str(c.arch)) for c in got] == want, (below, top_t)
