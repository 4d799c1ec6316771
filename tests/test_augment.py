"""Teacher-labelled augmentation: copies keep the example's structure, come from the teacher's embedding
neighbours, are seeded, and reach search/training aligned with their teacher and probe targets."""
from __future__ import annotations

import json

import numpy as np
import torch

import bertnas
from bertnas.data.encode import encode
from bertnas.data.readers import load_task
from bertnas.teacher.augment import AugmentSettings, augment_encoded, nearest_neighbours, word_starts
from bertnas.teacher.loading import load_teacher


def _pair_setup(tiny_teacher, synthetic_files):
    files = synthetic_files["pair"]
    data = load_task("synthetic", None, files / "train.tsv", files / "dev.tsv", text_column="sentence1",
                     text_pair_column="sentence2")
    teacher = load_teacher(str(tiny_teacher), data.spec)
    return data, teacher, encode(teacher.tokenizer, data.train, 48)


def test_copies_keep_structure_and_are_seeded(tiny_teacher, synthetic_files):
    data, teacher, enc = _pair_setup(tiny_teacher, synthetic_files)
    table = teacher.model.get_input_embeddings().weight.detach()
    settings = AugmentSettings(copies=3, replace_prob=0.5, edit_prob=0.1, seed=7)
    aug = augment_encoded(enc, teacher.tokenizer, table, settings)
    assert len(aug) == 3 * len(enc)
    tok = teacher.tokenizer
    changed = 0
    for j, (ids, types) in enumerate(zip(aug.input_ids, aug.token_type_ids)):
        src_ids = enc.input_ids[j % len(enc)]
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert ids.count(tok.sep_token_id) == src_ids.count(tok.sep_token_id) == 2  # still a pair
        assert types == sorted(types) and types[-1] == 1  # A then B, both present
        assert len(ids) <= len(src_ids) and len(types) == len(ids)
        changed += ids != src_ids
    assert changed > 0.8 * len(aug)
    again = augment_encoded(enc, tok, table, settings)
    assert again.input_ids == aug.input_ids  # seeded
    other = augment_encoded(enc, tok, table, AugmentSettings(copies=3, replace_prob=0.5, edit_prob=0.1, seed=8))
    assert other.input_ids != aug.input_ids


def test_replacements_are_embedding_neighbours(tiny_teacher, synthetic_files):
    data, teacher, enc = _pair_setup(tiny_teacher, synthetic_files)
    table = teacher.model.get_input_embeddings().weight.detach()
    starts, whole = word_starts(teacher.tokenizer)
    special = set(teacher.tokenizer.all_special_ids)
    assert not whole[list(special)].any() and whole.sum() > 20
    pool = np.nonzero(whole[: table.size(0)])[0]
    query = int(pool[0])
    nn = nearest_neighbours(table, np.array([query]), pool, k=3)[query]
    cos = torch.nn.functional.cosine_similarity(table[query][None], table[torch.as_tensor(pool)], dim=-1)
    cos[torch.as_tensor(pool) == query] = -2
    assert sorted(nn.tolist()) == sorted(pool[cos.topk(3).indices.numpy()].tolist())
    # with replacement only, every changed token is one of its original's neighbours
    aug = augment_encoded(enc, teacher.tokenizer, table, AugmentSettings(copies=1, replace_prob=1.0, edit_prob=0.0))
    all_nn = nearest_neighbours(table, pool, pool)
    for src, new in zip(enc.input_ids, aug.input_ids):
        assert len(src) == len(new)
        for a, b in zip(src, new):
            if a != b:
                assert b in all_nn[a]


def test_augmented_run_aligns_targets(tmp_path, tiny_teacher, synthetic_files):
    files = synthetic_files["pair"]
    cfg = bertnas.RunConfig(task="synthetic", train_file=str(files / "train.tsv"), dev_file=str(files / "dev.tsv"),
                            text_column="sentence1", text_pair_column="sentence2", teacher=str(tiny_teacher),
                            max_seq_len=48, probe_epochs=1, device="cpu", cache_dir=str(tmp_path / "cache"),
                            augment=2, teacher_dtype="fp32")
    info = bertnas.probe(cfg, tmp_path / "run")
    n = 160
    assert info["augment_examples"] == 2 * n
    saved = json.loads((tmp_path / "run" / "probes" / "probes.json").read_text())
    assert saved["augment_key"] == info["augment_key"]
    from bertnas.adabert.pipeline import stage_inputs

    inputs = stage_inputs(cfg, tmp_path / "run")
    assert len(inputs.train) == 3 * n and inputs.targets.teacher.shape[0] == 3 * n
    assert inputs.targets.probes.shape[1] == 3 * n
    teacher = load_teacher(str(tiny_teacher), inputs.spec)
    idx = [n, n + 5, 3 * n - 1]  # augmented rows: the teacher on their ids gives the cached logits and labels
    from bertnas.data.encode import collate

    b = collate(inputs.train, idx)
    with torch.no_grad():
        live = teacher.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                             token_type_ids=b["token_type_ids"]).logits
    assert torch.allclose(live, inputs.targets.teacher[idx], atol=1e-4)
    assert torch.equal(b["labels"], live.argmax(-1))
    # the same settings are a cache hit; the search stage trains on the union
    again = bertnas.probe(cfg, tmp_path / "run2")
    assert again["augment_key"] == info["augment_key"]
    # a probes.json that names fewer copies reads the first ones (what benchmarks/learning_curves.py relies on)
    import shutil

    shutil.copytree(tmp_path / "run", tmp_path / "run1")
    info1 = json.loads((tmp_path / "run1" / "probes" / "probes.json").read_text())
    (tmp_path / "run1" / "probes" / "probes.json").write_text(json.dumps({**info1, "augment_examples": n}))
    one = stage_inputs(cfg, tmp_path / "run1")
    assert len(one.train) == 2 * n
    assert torch.equal(one.targets.teacher, inputs.targets.teacher[: 2 * n])
    assert torch.equal(one.targets.probes, inputs.targets.probes[:, : 2 * n])
    assert one.train.input_ids == inputs.train.input_ids[: 2 * n]
    tiny = {"hidden_size": 16, "k_max": 2, "search_epochs": 1, "retrain_epochs": 1}
    from bertnas.adabert.pipeline import search

    summary = search(cfg.update(tiny), tmp_path / "run")
    assert summary["history"]


def test_pairs_replace_a_shared_word_the_same_way_in_both_sentences(tiny_teacher, synthetic_files):
    """The copy keeps which words A and B share (else the teacher calls most paraphrase copies negative)."""
    data, teacher, enc = _pair_setup(tiny_teacher, synthetic_files)
    table = teacher.model.get_input_embeddings().weight.detach()
    aug = augment_encoded(enc, teacher.tokenizer, table, AugmentSettings(copies=2, replace_prob=0.5, edit_prob=0.0))
    shared_seen = replaced_shared = 0
    for j, (ids, types) in enumerate(zip(aug.input_ids, aug.token_type_ids)):
        src, src_types = enc.input_ids[j % len(enc)], enc.token_type_ids[j % len(enc)]
        assert len(ids) == len(src)  # no deletions: positions line up
        mapping: dict[int, set[int]] = {}
        for a, b in zip(src, ids):
            mapping.setdefault(a, set()).add(b)
        in_a = {t for t, s in zip(src, src_types) if s == 0}
        in_b = {t for t, s in zip(src, src_types) if s == 1}
        for word in (in_a & in_b) - set(teacher.tokenizer.all_special_ids):
            shared_seen += 1
            assert len(mapping[word]) == 1, "a word shared by A and B was replaced differently"
            replaced_shared += mapping[word] != {word}
    assert shared_seen > 0 and replaced_shared > 0  # the synthetic pairs share words, and some were replaced
