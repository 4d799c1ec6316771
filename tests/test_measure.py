"""Parameter/FLOP counting, op costs, latency and classifier profiling."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bertnas.adabert.costs import cost_vector, measure_op_costs
from bertnas.adabert.ops import PRIMITIVES, create_op
from bertnas.errors import BertnasError
from bertnas.measure import count_flops, count_params, hardware_info, measure_latency, profile_classifier


def test_count_params_linear_by_hand():
    assert count_params(nn.Linear(10, 7)) == 10 * 7 + 7
    assert count_params(nn.Linear(10, 7, bias=False)) == 70


def test_count_params_shared_weight_counted_once():
    emb = nn.Embedding(50, 8)
    head = nn.Linear(8, 50, bias=False)
    head.weight = emb.weight  # tied, as in an MLM head
    model = nn.ModuleDict({"emb": emb, "head": head})
    assert count_params(model) == 50 * 8


def test_count_flops_linear_and_conv_are_two_per_mac():
    assert count_flops(nn.Linear(10, 7), torch.randn(3, 10)) == 2 * 3 * 10 * 7
    conv = nn.Conv1d(4, 6, kernel_size=3, padding=1, bias=False)
    assert count_flops(conv, torch.randn(2, 4, 20)) == 2 * (2 * 6 * 20) * 4 * 3


def test_pool_flops_counted_identity_and_zero_free():
    x = torch.randn(1, 16, 32)
    for name in ("max_pool_3", "avg_pool_3"):
        assert count_flops(create_op(name, 16), x) == 16 * 32 * 3
    assert count_flops(create_op("skip_connect", 16), x) == 0
    assert count_flops(create_op("zero", 16), x) == 0


def test_pool_flops_counted_under_inference_mode_too():
    # pooling reaches a different aten op under inference_mode than under no_grad
    with torch.inference_mode():
        assert count_flops(create_op("max_pool_3", 8), torch.randn(1, 8, 10)) == 8 * 10 * 3


def test_count_flops_restores_training_and_leaves_batchnorm_stats():
    op = create_op("conv_3", 8).train()
    bn = op[2]
    before = bn.running_mean.clone()
    count_flops(op, torch.randn(2, 8, 10) + 5.0)
    assert op.training and bn.training
    assert torch.equal(bn.running_mean, before)


def test_measure_op_costs_shape_and_order():
    costs = measure_op_costs(128, 128)
    assert set(costs) == set(PRIMITIVES)
    assert costs["conv_7"]["params"] == 128 * 128 * 7 + 2 * 128
    for k in (3, 5, 7):
        assert costs[f"dil_conv_{k}"]["params"] == costs[f"conv_{k}"]["params"]
    assert costs["zero"]["cost"] == 0.0
    assert all(0.0 <= c["cost"] <= 1.0 for c in costs.values())
    assert costs["conv_7"]["cost"] == pytest.approx(1.0)
    assert costs["conv_7"]["cost"] >= costs["conv_5"]["cost"] >= costs["conv_3"]["cost"]
    assert costs["max_pool_3"]["cost"] > costs["skip_connect"]["cost"]
    assert costs["avg_pool_3"]["cost"] > costs["skip_connect"]["cost"]
    vec = cost_vector(128, 128)
    assert vec.shape == (len(PRIMITIVES),)
    assert vec.tolist() == pytest.approx([costs[p]["cost"] for p in PRIMITIVES])


def test_op_costs_follow_seq_len_and_cache_returns_copies():
    short, long = measure_op_costs(32, 16), measure_op_costs(32, 64)
    assert long["conv_3"]["flops"] == 4 * short["conv_3"]["flops"]
    assert long["max_pool_3"]["flops"] == 4 * short["max_pool_3"]["flops"]
    assert long["conv_3"]["params"] == short["conv_3"]["params"]
    short["conv_3"]["cost"] = 99.0
    assert measure_op_costs(32, 16)["conv_3"]["cost"] != 99.0
    with pytest.raises(BertnasError):
        measure_op_costs(0, 16)


def test_measure_latency_restores_threads():
    before = torch.get_num_threads()
    calls = []
    out = measure_latency(lambda: calls.append(torch.get_num_threads()), warmup=1, repeats=4, threads=1)
    assert torch.get_num_threads() == before
    assert calls == [1] * 5
    assert out["threads"] == 1 and out["repeats"] == 4
    assert 0.0 <= out["min_ms"] <= out["median_ms"]
    assert out["mean_ms"] >= out["min_ms"]


def test_measure_latency_runs_in_inference_mode():
    seen = []
    measure_latency(lambda: seen.append(torch.is_inference_mode_enabled()), warmup=0, repeats=2)
    assert seen == [True, True]


def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=160,
    )
    return transformers.BertForSequenceClassification(config)


def test_profile_classifier_tiny_bert():
    model = _tiny_bert()
    prof = profile_classifier(model, vocab_size=100, batch_sizes=(1, 4), seq_len=128, warmup=1, repeats=2)
    assert prof["params"] == sum(p.numel() for p in model.parameters())
    assert prof["params"] > 0 and prof["flops"] > 0
    assert prof["latency_ms_b1"] > 0 and prof["latency_ms_b4"] > 0
    assert prof["seq_len"] == 128 and prof["threads"] >= 1
    assert not model.training
    short = profile_classifier(model, vocab_size=100, batch_sizes=(1,), seq_len=64, warmup=0, repeats=1, threads=1)
    assert short["flops"] < prof["flops"]
    assert short["threads"] == 1


def test_bert_flops_include_attention_matmuls():
    # on CPU, sdpa runs aten._scaled_dot_product_flash_attention_for_cpu, which FlopCounterMode lacks
    model = _tiny_bert().eval()
    ids = torch.randint(5, 100, (1, 128))
    flops = count_flops(model, input_ids=ids, attention_mask=torch.ones_like(ids))
    layers, h, ffn, L = 2, 32, 64, 128
    linear = layers * (4 * 2 * L * h * h + 2 * 2 * L * h * ffn) + 2 * h * h + 2 * h * 2
    attention = layers * 2 * (2 * L * L * h)  # QK^T and AV over all heads
    assert flops == linear + attention


def test_profile_classifier_rejects_too_long_seq():
    with pytest.raises(BertnasError, match="max_position_embeddings"):
        profile_classifier(_tiny_bert(), vocab_size=100, seq_len=200, repeats=1)


def test_hardware_info_keys():
    info = hardware_info()
    assert {"cpu", "cores", "torch_threads", "torch_version", "device"} <= set(info)
    assert info["torch_version"] == torch.__version__
