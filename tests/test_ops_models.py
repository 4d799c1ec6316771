"""Every registered op and model: forward shapes, backward, every parameter gets a gradient, no NaN."""
from __future__ import annotations

import pytest
import torch

from bertnas.adabert.architecture import Architecture
from bertnas.adabert.blocks import PAIR_HEADS, pair_layout, pool_views
from bertnas.adabert.genotype import NUM_EDGES, Genotype
from bertnas.adabert.modeling import AdaBertConfig, AdaBertForSequenceClassification
from bertnas.adabert.ops import OPS, PARAMETER_FREE, PRIMITIVES, create_op
from bertnas.adabert.student import derive_student
from bertnas.adabert.supernet import AdaBertSupernet, ProjectedEmbeddings
from bertnas.errors import BertnasError

GENOTYPE = Genotype(edges=((0, 0, "conv_3"), (0, 1, "max_pool_3"), (1, 0, "skip_connect"), (1, 2, "dil_conv_5"),
                           (2, 1, "conv_7"), (2, 3, "avg_pool_3")), depth=3)


def _grads_ok(module: torch.nn.Module) -> None:
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


@pytest.mark.parametrize("name", PRIMITIVES)
def test_every_op_keeps_shape_and_trains(name):
    op = create_op(name, 16)
    x = torch.randn(3, 16, 11, requires_grad=True)
    y = op(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    y.square().sum().backward()
    if name == "zero":
        assert torch.equal(y, torch.zeros_like(y))
    else:
        assert x.grad is not None and x.grad.abs().sum() > 0
    _grads_ok(op)
    assert (sum(p.numel() for p in op.parameters()) == 0) == (name in PARAMETER_FREE)


def test_dilated_conv_really_dilates():
    """A dilated conv 3 (dilation 2) sees token t+-2 but not t+-1; a plain conv 3 sees t+-1."""
    torch.manual_seed(0)
    x = torch.zeros(1, 4, 9)
    x[0, :, 4] = 1.0  # impulse in the middle
    for name, reach in (("conv_3", {3, 4, 5}), ("dil_conv_3", {2, 4, 6})):
        op = create_op(name, 4).eval()
        conv = op[1]
        torch.nn.init.constant_(conv.weight, 1.0)
        y = conv(torch.relu(x))[0].abs().sum(0)
        assert {int(i) for i in torch.nonzero(y).flatten()} == reach, name


def test_unknown_op_lists_known_ones():
    with pytest.raises(BertnasError, match="known ops: conv_3"):
        create_op("conv_9", 8)
    assert set(OPS) == set(PRIMITIVES) and len(PRIMITIVES) == 10


def _batch(pair: bool, sep: int = 3):
    # [CLS] a a [SEP] b b b [SEP] (pair) or [CLS] a a a [SEP] pad (single)
    if pair:
        ids = torch.tensor([[2, 7, 8, sep, 9, 10, 11, sep], [2, 7, sep, 9, sep, 0, 0, 0]])
        types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0, 0]])
        mask = torch.tensor([[1] * 8, [1, 1, 1, 1, 1, 0, 0, 0]])
    else:
        ids = torch.tensor([[2, 7, 8, 9, sep, 0], [2, 7, sep, 0, 0, 0]])
        types = torch.zeros_like(ids)
        mask = (ids != 0).long()
    return ids, mask, types


def test_pair_layout_keeps_b_at_its_offsets_and_restarts_its_positions():
    ids, mask, types = _batch(pair=True)
    lay = pair_layout(ids, mask, types, pair_input=True, sep_token_id=3)
    assert lay.mask_a[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0] and lay.mask_b[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert lay.mask_a[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0] and lay.mask_b[1].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert lay.position_ids[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert lay.position_ids[1].tolist() == [0, 1, 2, 0, 1, 0, 0, 0]
    # without token types, the first [SEP] splits the pair the same way
    lay2 = pair_layout(ids, mask, None, pair_input=True, sep_token_id=3)
    assert torch.equal(lay2.mask_b, lay.mask_b) and torch.equal(lay2.position_ids, lay.position_ids)
    single = pair_layout(ids, mask, types, pair_input=False, sep_token_id=3)
    assert torch.equal(single.mask_a, single.mask_b) and single.views().shape == (2, 1, 8)


def test_pair_layout_handles_roberta_style_zero_token_types():
    """<s> A </s></s> B </s> with all-zero types (RoBERTa, XLM-R): split at the separators, B after the run."""
    ids = torch.tensor([[0, 5, 6, 2, 2, 7, 8, 2, 1], [0, 5, 2, 2, 9, 2, 1, 1, 1]])
    mask = torch.tensor([[1] * 8 + [0], [1] * 6 + [0] * 3])
    for types in (torch.zeros_like(ids), None):
        lay = pair_layout(ids, mask, types, pair_input=True, sep_token_id=2)
        assert (ids * lay.mask_b)[0].tolist() == [0, 0, 0, 0, 0, 7, 8, 2, 0]
        assert (ids * lay.mask_b)[1].tolist() == [0, 0, 0, 0, 9, 2, 0, 0, 0]
        assert (ids * lay.mask_a)[0].tolist() == [0, 5, 6, 2, 2, 0, 0, 0, 0]
        assert lay.position_ids[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0]


def test_pair_tokens_are_not_overlaid():
    """Token i of A and token i of B do not meet in the first cell. With a cell of skips only (no mixing across
    positions), the cell output at A's first word must not depend on B's words; the old layout shifted B onto
    A, so it did."""
    torch.manual_seed(0)
    g = Genotype(edges=((0, 0, "skip_connect"), (0, 1, "skip_connect"), (1, 2, "skip_connect"), (1, 0, "zero"),
                        (2, 3, "skip_connect"), (2, 0, "zero")), depth=1)
    cfg = AdaBertConfig(vocab_size=20, max_position_embeddings=16, hidden_size=16, genotype=g.to_dict(),
                        pair_input=True, num_labels=2, sep_token_id=3, dropout=0.0)
    model = AdaBertForSequenceClassification(cfg).eval()
    ids, mask, types = _batch(pair=True)
    ids2 = ids.clone()
    ids2[0, 5] = 12  # B's second token (B starts at index 4)
    h1 = model(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True).hidden_states[0]
    h2 = model(input_ids=ids2, attention_mask=mask, token_type_ids=types, output_hidden_states=True).hidden_states[0]
    assert torch.allclose(h1[0, :, 1], h2[0, :, 1])  # A's first word: unchanged
    assert not torch.allclose(h1[0, :, 5], h2[0, :, 5])  # the changed token itself


@pytest.mark.parametrize("pair,pair_head", [(False, "aligned"), (True, "pooled"), (True, "aligned")])
def test_final_model_forward_backward_all_grads(pair, pair_head):
    torch.manual_seed(0)
    cfg = AdaBertConfig(vocab_size=20, max_position_embeddings=16, hidden_size=16, genotype=GENOTYPE.to_dict(),
                        pair_input=pair, num_labels=3, sep_token_id=3, pair_head=pair_head)
    model = AdaBertForSequenceClassification(cfg)
    ids, mask, types = _batch(pair)
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=torch.tensor([0, 2]),
                output_hidden_states=True)
    assert out.logits.shape == (2, 3)
    assert len(out.hidden_states) == GENOTYPE.depth
    out.loss.backward()
    _grads_ok(model)


def test_padding_does_not_change_the_prediction():
    torch.manual_seed(0)
    cfg = AdaBertConfig(vocab_size=20, max_position_embeddings=16, hidden_size=16, genotype=GENOTYPE.to_dict())
    model = AdaBertForSequenceClassification(cfg).eval()
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    padded = torch.tensor([[2, 7, 8, 9, 3, 0, 0, 0]])
    a = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    b = model(input_ids=padded, attention_mask=(padded != 0).long()).logits
    # conv windows at the sequence end see zeros in both cases, pads are masked after every cell
    assert torch.allclose(a, b, atol=1e-5)


def _pair_model(pair_head: str = "aligned", genotype: Genotype = GENOTYPE) -> AdaBertForSequenceClassification:
    torch.manual_seed(0)
    return AdaBertForSequenceClassification(AdaBertConfig(
        vocab_size=20, max_position_embeddings=16, hidden_size=16, genotype=genotype.to_dict(), pair_input=True,
        num_labels=2, sep_token_id=3, pair_head=pair_head)).eval()


@pytest.mark.parametrize("pair_head", PAIR_HEADS)
def test_pair_padding_does_not_change_the_prediction(pair_head):
    """Each pair row alone (no padding) and in a padded batch with a longer row: the same logits. The aligned
    head's softmax over the other sentence's tokens gives padding exactly zero weight."""
    model = _pair_model(pair_head)
    ids, mask, types = _batch(pair=True)
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        pad = torch.nn.functional.pad
        wider = model(input_ids=pad(ids, (0, 5)), attention_mask=pad(mask, (0, 5)),
                      token_type_ids=pad(types, (0, 5))).logits
        for row in range(2):
            n = int(mask[row].sum())
            alone = model(input_ids=ids[row:row + 1, :n], attention_mask=mask[row:row + 1, :n],
                          token_type_ids=types[row:row + 1, :n]).logits
            assert torch.allclose(alone, batch[row:row + 1], atol=1e-5)
    assert torch.allclose(wider, batch, atol=1e-5)


def test_aligned_head_is_finite_for_a_row_without_b():
    """Truncation can leave a pair row without any B token: the softmax over B's tokens then has no key at all.
    Logits and every gradient stay finite (no NaN from the empty softmax), in a batch with a normal row."""
    model = _pair_model().train()
    ids = torch.tensor([[2, 7, 8, 3, 9, 10, 3], [2, 7, 8, 9, 10, 11, 3]])
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0] * 7])  # row 1: A only
    mask = torch.ones_like(ids)
    lay = pair_layout(ids, mask, types, pair_input=True, sep_token_id=3)
    assert lay.mask_b[1].sum() == 0
    pooled = pool_views(torch.randn(2, 16, 7) * lay.mask[:, None], lay, "aligned")
    assert pooled.shape == (2, 6, 16) and torch.isfinite(pooled).all()
    assert torch.equal(pooled[1, [1, 4, 5]], torch.zeros(3, 16))  # B's mean and B's comparisons: nothing to pool
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=torch.tensor([0, 1]))
    assert torch.isfinite(out.logits).all()
    out.loss.backward()
    _grads_ok(model)


def test_aligned_head_sees_a_shared_word_anywhere():
    """The comparison views depend on which B words occur in A, not on where: with a cell that does not mix
    positions, moving A's words around leaves the aligned views unchanged (B's tokens find their match wherever
    it is), while swapping one of B's words for one of A's changes them."""
    g = Genotype(edges=((0, 0, "skip_connect"), (0, 1, "skip_connect"), (1, 2, "skip_connect"), (1, 0, "zero"),
                        (2, 3, "skip_connect"), (2, 0, "zero")), depth=1)
    model = _pair_model(genotype=g)
    model.embeddings.position_embeddings.weight.data.zero_()  # words only, so a moved word is the same vector
    types = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1]])

    def views(ids):
        with torch.no_grad():
            pooled, _ = model.pooled_states(ids, torch.ones_like(ids), types)
        return pooled[0][0, 2:]

    base = views(torch.tensor([[2, 7, 8, 9, 3, 10, 11, 3]]))
    moved = views(torch.tensor([[2, 9, 7, 8, 3, 10, 11, 3]]))
    shared = views(torch.tensor([[2, 7, 8, 9, 3, 10, 8, 3]]))
    assert torch.allclose(base, moved, atol=1e-5)
    assert not torch.allclose(base, shared, atol=1e-3)


def _supernet(pair: bool, k_max: int = 3, pair_head: str = "aligned", pair_match: bool = True) -> AdaBertSupernet:
    torch.manual_seed(0)
    emb = ProjectedEmbeddings(torch.randn(20, 12), torch.randn(16, 12), hidden=16, dropout=0.0,
                              pair_match=pair and pair_match)
    return AdaBertSupernet(emb, hidden=16, k_max=k_max, num_labels=2, pair_input=pair, dropout=0.0, sep_token_id=3,
                           pair_head=pair_head)


@pytest.mark.parametrize("sampled_only,pair_head", [(True, "aligned"), (False, "aligned"), (True, "pooled")])
def test_supernet_with_all_ops_gives_every_parameter_a_gradient(sampled_only, pair_head):
    """Full mixed ops over all depths: every op of every cell and both projections receive gradients."""
    net = _supernet(pair=True, pair_head=pair_head)
    assert net.classifier.dense.in_features == (8 if pair_head == "aligned" else 4) * 16
    ids, mask, types = _batch(pair=True)
    ops_w = torch.full((NUM_EDGES, len(PRIMITIVES)), 1.0 / len(PRIMITIVES), requires_grad=True)
    if sampled_only:  # cycle every op through every edge so each one runs once
        loss = 0
        for j in range(len(PRIMITIVES)):
            onehot = torch.nn.functional.one_hot(torch.full((NUM_EDGES,), j), len(PRIMITIVES)).float()
            out = net(ids, mask, types, onehot, 3, sampled_only=True)
            loss = loss + net.logits(out, 3).square().sum() + sum(s.square().mean() for s in out.states)
    else:
        out = net(ids, mask, types, ops_w, 3, sampled_only=False)
        loss = net.logits(out, 3).square().sum() + sum(s.square().mean() for s in out.states)
    loss.backward()
    _grads_ok(net)
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bn and not any(m.affine for m in bn)  # search-time BatchNorm has no affine parameters


def test_gdas_mode_sends_gradient_to_the_architecture():
    net = _supernet(pair=False)
    arch = Architecture(k_max=3)
    ids, mask, types = _batch(pair=False)
    ops_w, depth_w = arch.sample(1.0, torch.Generator().manual_seed(0))
    out = net(ids, mask, types, ops_w, 3, sampled_only=True)
    assert len(out.states) == 3 and out.pooled[0].shape == (2, 1, 16)
    losses = torch.stack([net.logits(out, k).square().sum() for k in (1, 2, 3)])
    (depth_w * losses).sum().backward()
    assert arch.alpha.grad is not None and arch.alpha.grad.abs().sum() > 0
    assert arch.depth_logits.grad.abs().sum() > 0
    assert not any(p is arch.alpha for p in net.parameters())  # kept out of the weights by construction


@pytest.mark.parametrize("pair_head,pair_match", [(head, True) for head in PAIR_HEADS] + [("aligned", False)])
def test_derived_student_keeps_the_searched_weights(pair_head, pair_match):
    """The student built from a genotype computes exactly what the supernet computes for that genotype
    (exact-match vectors included: the [SEP] that ends both sentences matches)."""
    net = _supernet(pair=True, pair_head=pair_head, pair_match=pair_match).eval()
    cfg = AdaBertConfig(vocab_size=20, max_position_embeddings=16, hidden_size=16, genotype=GENOTYPE.to_dict(),
                        pair_input=True, num_labels=2, sep_token_id=3, dropout=0.0, pair_head=pair_head,
                        pair_match=pair_match)
    other = AdaBertConfig.from_dict({**cfg.to_dict(), "pair_head": "aligned" if pair_head == "pooled" else "pooled"})
    with pytest.raises(ValueError, match="pair_head"):
        derive_student(net, GENOTYPE, other)
    with pytest.raises(ValueError, match="pair_match"):
        derive_student(net, GENOTYPE, AdaBertConfig.from_dict({**cfg.to_dict(), "pair_match": not pair_match}))
    student = derive_student(net, GENOTYPE, cfg).eval()
    ids, mask, types = _batch(pair=True)
    ops_w, depth_w = Architecture(k_max=3).genotype_weights(GENOTYPE)
    assert ops_w.sum() == NUM_EDGES and ops_w[:, PRIMITIVES.index("zero")].sum() == NUM_EDGES - 6
    expected = net.logits(net(ids, mask, types, ops_w, GENOTYPE.depth, sampled_only=True), GENOTYPE.depth)
    got = student(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert torch.allclose(expected, got, atol=1e-5)
    bn = [m for m in student.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bn and all(m.affine and torch.equal(m.weight, torch.ones_like(m.weight)) for m in bn)  # fresh affine
