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
"""
from __future__ import annotations

import copy
from functools import lru_cache

import torch

from ..errors import BertnasError
from ..measure.profile import count_flops, count_params
from .ops import PRIMITIVES, create_op

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
