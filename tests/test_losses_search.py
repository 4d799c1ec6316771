"""Loss math on hand-computed cases, Gumbel sampling and annealing, derivation and the collapse guard."""
from __future__ import annotations

import math

import pytest
import torch

from bertnas.adabert.derive import derive_genotype
from bertnas.adabert.genotype import EDGES, NUM_EDGES, Genotype, edge_index
from bertnas.adabert.gumbel import auto_decay, gumbel_softmax_st, temperature
from bertnas.adabert.objective import adabert_loss, efficiency_loss
from bertnas.adabert.ops import PARAMETER_FREE, PRIMITIVES
from bertnas.training.losses import distill_loss, hierarchical_kd, layer_map, task_loss


def test_distill_loss_matches_hand_computed_kl():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # teacher probs (0.75, 0.25)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert distill_loss(s, t, 1.0, regression=False).item() == pytest.approx(expected, rel=1e-5)
    # temperature 2: teacher probs softmax(log3/2, 0) and the T^2 factor
    p = torch.softmax(torch.tensor([math.log(3.0) / 2, 0.0]), 0)
    expected_t2 = 4 * float((p * (p / 0.5).log()).sum())
    assert distill_loss(s, t, 2.0, regression=False).item() == pytest.approx(expected_t2, rel=1e-5)
    assert distill_loss(t, t, 1.0, regression=False).item() == pytest.approx(0.0, abs=1e-7)


def test_regression_losses_are_squared_errors():
    s, t = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [1.0]])
    assert distill_loss(s, t, 1.0, regression=True).item() == pytest.approx((1 + 4) / 2)
    assert task_loss(s, torch.tensor([2.0, 1.0]), regression=True).item() == pytest.approx(2.5)


def test_layer_map_is_proportional_and_ends_at_the_last_layer():
    assert layer_map(4, 12) == [3, 6, 9, 12]
    assert layer_map(3, 4) == [1, 3, 4]  # round(4/3)=1, round(8/3)=3
    assert layer_map(8, 4) == [1, 1, 2, 2, 3, 3, 4, 4]  # 0.5 rounds up
    assert layer_map(1, 6) == [6]


def test_attentive_weights_favour_the_layer_that_is_right():
    labels = torch.tensor([0])
    good, bad = torch.tensor([[5.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    student = [torch.zeros(1, 2), torch.zeros(1, 2)]
    kd_good = distill_loss(student[0], good, 1.0, False).item()
    kd_bad = distill_loss(student[1], bad, 1.0, False).item()
    ce = [task_loss(good, labels, False).item(), task_loss(bad, labels, False).item()]
    w = torch.softmax(-torch.tensor(ce), 0)
    expected = float(w[0] * kd_good + w[1] * kd_bad)
    got = hierarchical_kd(student, [good, bad], labels, 1.0, regression=False, attentive=True).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert w[0] > 0.99  # the right layer dominates
    uniform = hierarchical_kd(student, [good, bad], labels, 1.0, regression=False, attentive=False).item()
    assert uniform == pytest.approx((kd_good + kd_bad) / 2, rel=1e-5)


def test_efficiency_loss_hand_computed():
    probs = torch.zeros(NUM_EDGES, len(PRIMITIVES))
    probs[:, 0] = 1.0  # every edge conv_3
    costs = torch.arange(len(PRIMITIVES), dtype=torch.float32)
    assert efficiency_loss(probs, costs, torch.tensor(4.0), 8).item() == pytest.approx(0.5 * 0.0)
    probs[:] = 0
    probs[:, 2] = 1.0  # cost 2 everywhere, K=4 of 8 -> 0.5 * 2
    assert efficiency_loss(probs, costs, torch.tensor(4.0), 8).item() == pytest.approx(1.0)


def test_op_costs_hand_computed_at_hidden_4_length_8():
    """EP = softmax(0.1311 * share), share = (params / max + FLOPs / max) / 2, by hand for C = 4, L = 8:
    conv_k: k*16 weights + 8 BatchNorm params, 2*k*16*8 FLOPs; pools: 4*8 outputs x 3; skip and zero: nothing."""
    from bertnas.adabert.costs import EP_SCALE, efficiency_costs

    params = {k: k * 16 + 8 for k in (3, 5, 7)}
    flops = {k: 2 * k * 16 * 8 for k in (3, 5, 7)}
    share = {}
    for k in (3, 5, 7):
        share[f"conv_{k}"] = share[f"dil_conv_{k}"] = 0.5 * params[k] / params[7] + 0.5 * flops[k] / flops[7]
    share["max_pool_3"] = share["avg_pool_3"] = 0.5 * (4 * 8 * 3) / flops[7]
    share["skip_connect"] = share["zero"] = 0.0
    z = sum(math.exp(EP_SCALE * share[o]) for o in PRIMITIVES)
    expected = [math.exp(EP_SCALE * share[o]) / z for o in PRIMITIVES]
    assert efficiency_costs(4, 8).tolist() == pytest.approx(expected, rel=1e-5)


def test_op_costs_match_the_adabert_code_scale():
    """At hidden 128, length 128 the costs sum to 1 and sit where the AdaBERT code's cost vector EP sits
    (0.0944 for identity/zero up to 0.1076 for the widest conv): L_E with beta = 4 means what it meant there."""
    from bertnas.adabert.costs import efficiency_costs

    ep = efficiency_costs(128, 128)
    code = [0.09987373, 0.10367607, 0.10762545, 0.09987373, 0.10367607, 0.10762545, 0.09442003, 0.09442003,
            0.09440472, 0.09440472]
    assert float(ep.sum()) == pytest.approx(1.0, abs=1e-6)
    assert ep.tolist() == pytest.approx(code, abs=2e-4)
    assert float(ep.max() - ep.min()) == pytest.approx(max(code) - min(code), rel=0.05)


def test_adabert_loss_combines_terms():
    parts = adabert_loss(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(0.5), gamma=0.8, beta=4.0)
    assert parts.total.item() == pytest.approx(0.2 * 1 + 0.8 * 2 + 4 * 0.5)
    assert parts.as_dict()["eff"] == 0.5


def test_gumbel_st_is_one_hot_forward_soft_backward():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]], requires_grad=True)
    y = gumbel_softmax_st(logits, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(y.detach().sum(-1), torch.ones(2))
    assert set(y.detach().flatten().tolist()) <= {0.0, 1.0}
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_gumbel_is_reproducible_and_follows_the_logits():
    logits = torch.tensor([2.0, 0.0, -2.0])
    a = [int(gumbel_softmax_st(logits, 1.0, g).argmax()) for g in [torch.Generator().manual_seed(3)] * 1 for _ in range(50)]
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert all(torch.equal(gumbel_softmax_st(logits, 1.0, g1), gumbel_softmax_st(logits, 1.0, g2)) for _ in range(5))
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(2000):
        counts[int(gumbel_softmax_st(logits, 1.0, g).argmax())] += 1
    # Gumbel-max: argmax frequencies follow softmax(logits)
    assert torch.allclose(counts / 2000, torch.softmax(logits, 0), atol=0.03)
    assert len(a) == 50


def test_temperature_anneals_to_the_floor():
    assert temperature(0, 1.0, 0.2, 0.02) == 1.0
    assert temperature(10, 1.0, 0.2, 0.02) == pytest.approx(math.exp(-0.2))
    assert temperature(1000, 1.0, 0.2, 0.02) == 0.2
    d = auto_decay(1.0, 0.2, 5)
    assert temperature(5, 1.0, 0.2, d) == pytest.approx(0.2)
    assert temperature(2.5, 1.0, 0.2, d) > 0.2
    with pytest.raises(ValueError):
        gumbel_softmax_st(torch.zeros(3), 0.0)


def _alpha_favouring(choice: dict[int, str], default: str = "zero") -> torch.Tensor:
    alpha = torch.zeros(NUM_EDGES, len(PRIMITIVES))
    for e in range(NUM_EDGES):
        alpha[e, PRIMITIVES.index(choice.get(e, default))] = 3.0
    return alpha


def test_derivation_keeps_two_strongest_non_zero_edges_and_argmax_depth():
    alpha = torch.zeros(NUM_EDGES, len(PRIMITIVES))
    alpha[:, PRIMITIVES.index("zero")] = 9.0  # zero is strongest everywhere but never chosen
    for e, (node, src) in enumerate(EDGES):
        alpha[e, PRIMITIVES.index("conv_5")] = 1.0 + src  # later sources stronger
    alpha[edge_index(2, 0), PRIMITIVES.index("dil_conv_7")] = 8.0
    depth = torch.tensor([0.0, 0.0, 5.0, 1.0])
    g, report = derive_genotype(alpha, depth, min_parametric=1)
    assert g.depth == 3
    assert g.ops_of(0) == [(0, "conv_5"), (1, "conv_5")]
    assert g.ops_of(1) == [(1, "conv_5"), (2, "conv_5")]
    assert g.ops_of(2) == [(0, "dil_conv_7"), (3, "conv_5")]
    assert not report.guard_applied and not report.collapsed


def test_collapse_is_detected_and_guarded():
    """All edges prefer avg_pool (the known collapse); the guard swaps in each edge's best parametric op."""
    alpha = _alpha_favouring({}, default="avg_pool_3")
    alpha[:, PRIMITIVES.index("conv_3")] = 1.0
    alpha[edge_index(1, 2), PRIMITIVES.index("conv_7")] = 2.0
    g, report = derive_genotype(alpha, torch.zeros(8), min_parametric=1)
    assert report.collapsed and report.guard_applied and report.warnings
    assert all(op == "avg_pool_3" for _, _, op in Genotype.parse(report.unguarded).edges)
    for node in range(3):
        ops = [op for _, op in g.ops_of(node)]
        assert sum(op not in PARAMETER_FREE for op in ops) == 1
    assert g.num_parametric == 3
    unguarded, r0 = derive_genotype(alpha, torch.zeros(8), min_parametric=0)
    assert unguarded.num_parametric == 0 and r0.collapsed and not r0.guard_applied
    g2, _ = derive_genotype(alpha, torch.zeros(8), min_parametric=2)
    assert g2.num_parametric == 6


def test_genotype_string_round_trip_and_validation():
    g = Genotype(edges=((0, 0, "conv_3"), (0, 1, "max_pool_3"), (1, 1, "skip_connect"), (1, 2, "conv_7"),
                        (2, 0, "dil_conv_3"), (2, 3, "avg_pool_3")), depth=5)
    assert Genotype.parse(str(g)) == g
    assert Genotype.from_dict(g.to_dict()) == g
    from bertnas.errors import BertnasError

    with pytest.raises(BertnasError, match="unknown op"):
        Genotype(edges=((0, 0, "conv_9"), (1, 0, "conv_3"), (2, 0, "conv_3")), depth=1)
    with pytest.raises(BertnasError, match="cannot parse"):
        Genotype.parse("K=x | n0 conv_3")
    with pytest.raises(BertnasError, match="depth"):
        Genotype(edges=g.edges, depth=0)


def test_amp_means_bfloat16_on_cpu_and_kd_stays_float32():
    from bertnas.training.amp import autocast

    lin = torch.nn.Linear(4, 2)
    x = torch.randn(3, 4)
    with autocast(torch.device("cpu"), True):
        y = lin(x)
        kd = distill_loss(y, torch.randn(3, 2), 1.0, regression=False)
    assert y.dtype == torch.bfloat16 and kd.dtype == torch.float32
    with autocast(torch.device("cpu"), False):
        assert lin(x).dtype == torch.float32
