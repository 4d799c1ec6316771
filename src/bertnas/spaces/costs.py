"""Per-op cost for the search's efficiency loss, measured from the op modules themselves.

AdaBERT penalises expensive ops during search. Rather than a hand-written table that drifts from the code,
each op in :data:`~bertnas.spaces.ops.PRIMITIVES` is built and measured (parameters and FLOPs at one hidden
size and sequence length) and the two are normalised by their maxima and averaged, so every cost is in
``[0, 1]``: the widest conv is near 1, ``zero`` is 0, and pooling (counted as compare/add work) is a little
dearer than ``skip_connect``.
"""
from __future__ import annotations

import copy
from functools import lru_cache

import torch

from ..errors import BertnasError
from ..measure.profile import count_flops, count_params
from .ops import PRIMITIVES, create_op


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
    """``{op: {"params", "flops", "cost"}}`` for every op at this size (cached; callers get a copy)."""
    if int(hidden) < 1 or int(seq_len) < 1:
        raise BertnasError(f"op costs need hidden >= 1 and seq_len >= 1, got hidden={hidden}, seq_len={seq_len}")
    return copy.deepcopy(_op_costs(int(hidden), int(seq_len)))


def cost_vector(hidden: int = 128, seq_len: int = 128) -> torch.Tensor:
    """Op costs as a float tensor in PRIMITIVES order, ready to dot with the architecture weights."""
    costs = measure_op_costs(hidden, seq_len)
    return torch.tensor([costs[name]["cost"] for name in PRIMITIVES], dtype=torch.float32)
