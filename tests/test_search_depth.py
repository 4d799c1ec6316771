"""The search decides depth and ops from the task: every depth is scored by its own loss, the efficiency loss
pulls towards K = 1, warm-up epochs leave the architecture alone, and convs keep their architecture gradient."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bertnas.adabert.genotype import NUM_EDGES
from bertnas.adabert.objective import Targets
from bertnas.adabert.ops import PRIMITIVES
from bertnas.adabert.searcher import build_supernet, search
from bertnas.adabert.supernet import AdaBertSupernet, ProjectedEmbeddings
from bertnas.config import RunConfig
from bertnas.data.encode import encode
from bertnas.data.synthetic import build_tokenizer, generate_distance


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors (conftest.py)


def _distance_search(tmp_path, beta: float, epochs: int, warmup: int, step: str = "joint"):
    """Search on "is 'never' within 3 tokens of 'excellent'?" in 16 filler words: one typical cell does not
    reach that far, a stack of cells does. Teacher and probes = the gold labels."""
    data = generate_distance(n_train=512, n_dev=128, seed=0, length=16, near=3, far=8, fillers=["the"])
    tok = build_tokenizer(tmp_path / "vocab")
    train, dev = encode(tok, data.train, 32), encode(tok, data.dev, 32)
    gold = F.one_hot(train.labels, 2).float() * 6 - 3
    targets = Targets(gold, gold[None].repeat(3, 1, 1), torch.device("cpu"))
    cfg = RunConfig(hidden_size=16, k_max=4, search_epochs=epochs, search_warmup_epochs=warmup, search_batch_size=32,
                    beta=beta, dropout=0.0, search_lr=0.01, arch_lr=0.02, seed=0, search_step=step).validate()
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the supernet's initial weights come from the global generator (the pipeline seeds it too)
    net = build_supernet(cfg, data.spec, torch.randn(len(tok), 16, generator=g), torch.randn(64, 16, generator=g),
                         tok.sep_token_id)
    arch, _, history = search(cfg, data.spec, train, dev, targets, net, torch.device("cpu"))
    return arch.depth_probs().detach(), history


@pytest.mark.parametrize("step", ["joint", "alternate"])
def test_depth_follows_the_task_without_efficiency_loss(tmp_path, step):
    """beta = 0: deeper stacks score a lower loss on this task, so the search leaves K = 1 (the old supernet
    only learned whether scaling the logits helps: its depth probabilities stayed near uniform, p(K=1) 0.2-0.6)."""
    probs, history = _distance_search(tmp_path, beta=0.0, epochs=12, warmup=4, step=step)
    assert int(probs.argmax()) + 1 > 1, probs
    assert float(probs[0]) < 0.15, probs
    assert history[-1]["dev_derived"]["accuracy"] > 0.75, history[-1]


def test_a_large_efficiency_weight_picks_one_cell(tmp_path):
    probs, history = _distance_search(tmp_path, beta=100.0, epochs=6, warmup=2)
    assert int(probs.argmax()) == 0 and float(probs[0]) > 0.4, probs
    assert [h["arch_updates"] for h in history] == [False, False, True, True, True, True]


def test_warmup_epochs_leave_the_architecture_alone(tmp_path):
    data = generate_distance(n_train=64, n_dev=16, seed=0, length=8, near=2, far=5, fillers=["the"])
    tok = build_tokenizer(tmp_path / "vocab")
    train, dev = encode(tok, data.train, 16), encode(tok, data.dev, 16)
    gold = F.one_hot(train.labels, 2).float()
    targets = Targets(gold, gold[None].repeat(3, 1, 1), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    words = torch.randn(len(tok), 8, generator=g)
    for warmup in (1, 5):  # 5 of 2 epochs: clamped, so that the architecture still gets one epoch
        cfg = RunConfig(hidden_size=8, k_max=2, search_epochs=2, search_warmup_epochs=warmup,
                        search_batch_size=32).validate()
        net = build_supernet(cfg, data.spec, words, None, tok.sep_token_id)
        before = [p.detach().clone() for p in net.parameters()]
        arch, _, history = search(cfg, data.spec, train, dev, targets, net, torch.device("cpu"))
        assert [h["arch_updates"] for h in history] == [False, True]
        assert history[0]["depth_probs"] == [0.5, 0.5] and history[0]["eff"] == 0.0  # untouched in warm-up
        assert history[1]["depth_probs"] != [0.5, 0.5] and arch.alpha.abs().sum() > 0
        assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))  # the weights trained


def test_a_sampled_conv_keeps_its_architecture_gradient():
    """With an affine BatchNorm after the conv, the op weight w scales w * (gamma * n + beta), so
    dL/dw = sum(gamma * dL/dgamma + beta * dL/dbeta): once the weight step has fitted gamma and beta, the conv's
    architecture gradient is zero, while pools and skip keep theirs. Search-time convs must not have such
    parameters: the architecture gradient must not be the op's own parameter gradient in disguise."""
    torch.manual_seed(0)
    emb = ProjectedEmbeddings(torch.randn(30, 8), torch.randn(32, 8), hidden=16, dropout=0.0)
    net = AdaBertSupernet(emb, hidden=16, k_max=1, num_labels=2, pair_input=False, dropout=0.0, sep_token_id=None)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 30, (16, 12), generator=g)
    labels = torch.randint(0, 2, (16,), generator=g)
    col = PRIMITIVES.index("conv_3")
    ops = F.one_hot(torch.full((NUM_EDGES,), col), len(PRIMITIVES)).float().requires_grad_(True)
    loss = F.cross_entropy(net.logits(net(ids, torch.ones_like(ids), None, ops, 1), 1), labels)
    loss.backward()
    for e, edge in enumerate(net.cells[0].edges):
        conv = edge.ops["conv_3"]
        # scale direction of the op's own parameters: sum <p, dL/dp> (a conv kernel before BN contributes ~0)
        own = sum(float((p.detach() * p.grad).sum()) for p in conv.parameters())
        arch = float(ops.grad[e, col])
        assert abs(arch) > 1e-6
        assert abs(arch - own) > 0.5 * abs(arch), (e, arch, own)


def test_the_joint_step_gives_the_weights_the_sampled_depths_gradient(tmp_path):
    """--search-step joint scores every depth in one pass; y is one-hot in value, so the weights (supernet and
    distillation heads) must get exactly the gradient of the weight step on the sampled depth alone."""
    from bertnas.adabert.architecture import Architecture
    from bertnas.adabert.costs import efficiency_costs
    from bertnas.adabert.objective import KDHeads, adabert_loss, depth_loss, efficiency_loss
    from bertnas.adabert.searcher import SearchObjective

    data = generate_distance(n_train=64, n_dev=8, seed=1, length=16, near=3, far=8, fillers=["the"])
    tok = build_tokenizer(tmp_path / "vocab")
    train = encode(tok, data.train, 32)
    gold = F.one_hot(train.labels, 2).float() * 6 - 3
    targets = Targets(gold, gold[None].repeat(3, 1, 1), torch.device("cpu"))
    cfg = RunConfig(hidden_size=16, k_max=4, dropout=0.0, seed=0).validate()
    g = torch.Generator().manual_seed(0)
    net = build_supernet(cfg, data.spec, torch.randn(len(tok), 16, generator=g), torch.randn(64, 16, generator=g),
                         tok.sep_token_id)
    heads, arch = KDHeads(cfg.k_max, 16, 2), Architecture(cfg.k_max)
    objective = SearchObjective(cfg, data.spec, net, heads, arch, targets, efficiency_costs(16, 32))
    batch = {"input_ids": torch.nn.utils.rnn.pad_sequence([torch.tensor(x) for x in train.input_ids[:16]], True),
             "token_type_ids": None, "index": torch.arange(16)}
    batch["attention_mask"] = (batch["input_ids"] != tok.pad_token_id).long()
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    batch["labels"] = train.labels[:16]
    weights = list(net.parameters()) + list(heads.parameters())
    net.eval()  # BatchNorm in eval mode: both passes see the same statistics
    depths = []
    for seed in range(4):
        ops_w, depth_w = arch.sample(1.0, torch.Generator().manual_seed(seed))
        depths.append(int(depth_w.argmax()) + 1)
        alone = torch.autograd.grad(objective(batch, ops_w.detach(), depth_w.detach(), arch_step=False).total,
                                    weights, allow_unused=True)
        joint_parts = objective(batch, ops_w, depth_w, arch_step=True)
        joint = torch.autograd.grad(joint_parts.total, weights + list(arch.parameters()), allow_unused=True,
                                    retain_graph=True)
        for a, b in zip(alone, joint[: len(weights)]):  # deeper cells get no gradient at all, as in the weight step
            assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6, rtol=1e-5)
        assert any(x is not None and x.abs().sum() > 0 for x in joint[len(weights):])  # the architecture learns too
        # the same gradients as back-propagating every depth's loss through every cell (0 * dL_K for K != sampled)
        out = net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], ops_w, cfg.k_max)
        heads_out = heads(out.pooled[: cfg.k_max - 1])
        ce, kd = zip(*(depth_loss(net.logits(out, k), heads_out[: k - 1], batch, targets, False, cfg.temperature,
                                  cfg.attentive_kd) for k in range(1, cfg.k_max + 1)))
        eff = efficiency_loss(arch.op_probs(), objective.costs, (depth_w * torch.arange(1.0, cfg.k_max + 1)).sum(),
                              cfg.k_max)
        full = adabert_loss((depth_w * torch.stack(ce)).sum(), (depth_w * torch.stack(kd)).sum(), eff, cfg.gamma,
                            cfg.beta)
        assert torch.allclose(full.total, joint_parts.total)
        reference = torch.autograd.grad(full.total, weights + list(arch.parameters()), allow_unused=True)
        for a, b in zip(reference, joint):
            assert (b is None and (a is None or not a.any())) or torch.allclose(a, b, atol=1e-6, rtol=1e-5)
    assert min(depths) < cfg.k_max  # some sample leaves deeper cells whose losses must not reach the weights
