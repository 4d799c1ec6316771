"""Checkpoint forms and tasks beyond SST-2: float16 weights, tokenizer.json only, 3 classes in the GLUE layout
(MNLI), label names in another order, regression end to end, and the knowledge cache being reused."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import bertnas
from bertnas.data.examples import TaskSpec
from bertnas.data.synthetic import build_tokenizer, generate
from bertnas.errors import BertnasError
from bertnas.teacher.loading import _label_order, load_teacher


def _teacher(directory: Path, num_labels: int, dtype=torch.float32, keep_vocab_txt: bool = True, **config) -> Path:
    torch.manual_seed(0)
    tok = build_tokenizer(directory)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=num_labels, **config)
    BertForSequenceClassification(cfg).to(dtype).save_pretrained(directory)
    tok.save_pretrained(directory)
    if not keep_vocab_txt:
        (directory / "vocab.txt").unlink()
        assert (directory / "tokenizer.json").is_file()
    return directory


def test_float16_checkpoint_loads_in_float32(tmp_path):
    teacher = load_teacher(str(_teacher(tmp_path / "fp16", 2, dtype=torch.float16)))
    assert next(teacher.model.parameters()).dtype == torch.float32
    words, positions = teacher.embedding_tables()
    assert words.dtype == torch.float32 and positions.shape == (128, 32)


def test_tokenizer_json_without_vocab_txt(tmp_path):
    teacher = load_teacher(str(_teacher(tmp_path / "tokjson", 2, keep_vocab_txt=False)))
    ids = teacher.tokenizer("the movie was good")["input_ids"]
    assert len(teacher.tokenizer) == 55 and ids[0] == teacher.tokenizer.cls_token_id
    assert teacher.tokenizer.unk_token_id not in ids


def test_label_names_in_another_order_are_realigned():
    spec = TaskSpec("x", ["neg", "pos"], False, ["accuracy"], "accuracy")
    cfg = BertConfig(num_labels=2, id2label={0: "pos", 1: "neg"})
    assert _label_order(cfg, spec, "t") == [1, 0]
    assert _label_order(BertConfig(num_labels=2), spec, "t") is None  # LABEL_0/LABEL_1: same order
    mnli = TaskSpec("mnli", ["contradiction", "entailment", "neutral"], True, ["accuracy"], "accuracy")
    hub = BertConfig(num_labels=3, id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"})
    assert _label_order(hub, mnli, "t") == [0, 2, 1]  # case-insensitive, realigned
    with pytest.raises(BertnasError, match="3 output"):
        _label_order(BertConfig(num_labels=3), spec, "t")


def _mnli_dir(root: Path) -> Path:
    """A tiny MNLI folder in the GLUE layout (11 columns + gold_label), from synthetic sentences."""
    pairs = generate("pair", n_train=60, n_dev=30, seed=2)
    labels = ["contradiction", "entailment", "neutral"]
    header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
              "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
    root.mkdir(parents=True)
    for name, split in (("train.tsv", pairs.train), ("dev_matched.tsv", pairs.dev), ("dev_mismatched.tsv", pairs.dev)):
        rows = [header]
        for i, (a, b) in enumerate(zip(split.texts, split.text_pairs)):
            gold = labels[i % 3]
            rows.append(f"{i}\t0\t0\tfiction\t-\t-\t-\t-\t{a}\t{b}\t{gold}\t{gold}")
        (root / name).write_text("\n".join(rows) + "\n")
    return root


def test_three_class_glue_task_and_cache_reuse(tmp_path, caplog):
    data_dir = _mnli_dir(tmp_path / "MNLI")
    teacher = _teacher(tmp_path / "t3", 3)
    cfg = bertnas.RunConfig(task="mnli", data_dir=str(data_dir), teacher=str(teacher), max_seq_len=48,
                            probe_epochs=1, device="cpu", cache_dir=str(tmp_path / "cache"))
    info = bertnas.probe(cfg, tmp_path / "run")
    assert info["task"] == "mnli" and len(info["probes_dev"]) == 3  # embeddings + 2 layers
    cached = list((tmp_path / "cache").glob("knowledge-*/meta.json"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="bertnas"):
        bertnas.probe(cfg, tmp_path / "run2")
    assert "cache hit" in caplog.text
    assert cached[0].stat().st_mtime_ns == mtime
    from safetensors.torch import load_file

    probes = load_file(str(tmp_path / "run" / "probes" / "probes.safetensors"))
    assert probes["train_logits"].shape == (3, 60, 3)
    # a different max length is different knowledge
    bertnas.probe(cfg.update({"max_seq_len": 40}), tmp_path / "run3")
    assert len(list((tmp_path / "cache").glob("knowledge-*/meta.json"))) == 2
    # the rest of the pipeline on 3 classes; MNLI's mismatched dev split is reported too
    tiny = {"hidden_size": 16, "k_max": 2, "search_epochs": 1, "retrain_epochs": 1, "eval_seq_len": 32,
            "latency_repeats": 1, "latency_threads": 1}
    results = bertnas.run(cfg.update(tiny), tmp_path / "run")
    assert results["metric"] == "accuracy" and set(results["student"]["extra_dev"]) == {"dev_mismatched"}
    model = bertnas.AdaBertForSequenceClassification.from_pretrained(tmp_path / "run" / "model")
    assert model.config.num_labels == 3 and model.config.id2label[1] == "entailment" and model.config.pair_input


def test_regression_task_end_to_end(tmp_path):
    """STS-B-like: float targets, a 1-output teacher, MSE losses, Pearson/Spearman."""
    pairs = generate("pair", n_train=80, n_dev=24, seed=3)
    for name, split in (("train", pairs.train), ("dev", pairs.dev)):
        rows = ["sentence1\tsentence2\tscore"]
        for i, (a, b) in enumerate(zip(split.texts, split.text_pairs)):
            rows.append(f"{a}\t{b}\t{(i % 6) * 1.0 + split.labels[i] * 0.5}")
        (tmp_path / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    teacher = _teacher(tmp_path / "reg", 1, problem_type="regression")
    cfg = bertnas.RunConfig(task="similarity", train_file=str(tmp_path / "train.tsv"), dev_file=str(tmp_path / "dev.tsv"),
                            text_column="sentence1", text_pair_column="sentence2", label_column="score",
                            labels="regression", teacher=str(teacher), max_seq_len=48, hidden_size=16, k_max=2,
                            search_epochs=1, retrain_epochs=1, probe_epochs=1, eval_seq_len=32, latency_repeats=1,
                            latency_threads=1, device="cpu", cache_dir=str(tmp_path / "cache"))
    results = bertnas.run(cfg, tmp_path / "run")
    assert results["metric"] == "pearson" and set(results["student"]["dev"]) == {"pearson", "spearman"}
    model = bertnas.AdaBertForSequenceClassification.from_pretrained(tmp_path / "run" / "model").eval()
    from transformers import AutoTokenizer

    from bertnas.data.metrics import pearson
    from bertnas.data.readers import read_custom

    tok = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    dev = read_custom(tmp_path / "train.tsv", tmp_path / "dev.tsv", text_column="sentence1",
                      text_pair_column="sentence2", label_column="score", labels="regression").dev
    with torch.no_grad():
        preds = [float(model(**tok(a, b, return_tensors="pt", truncation=True, max_length=48)).logits)
                 for a, b in zip(dev.texts, dev.text_pairs)]
    assert pearson(preds, dev.labels) == pytest.approx(results["student"]["metric"], abs=1e-5)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    out = model(input_ids=torch.tensor([[2, 10, 11, 3, 12, 3]]), token_type_ids=torch.tensor([[0, 0, 0, 0, 1, 1]]),
                labels=torch.tensor([1.5]))
    assert out.logits.shape == (1, 1) and out.loss is not None
    assert json.loads((tmp_path / "run" / "search" / "genotype.json").read_text())["genotype"]["depth"] in (1, 2)


def test_regression_probes_start_at_the_label_mean():
    """Standardized features: a probe's mean prediction is its bias, so it must start at the target mean."""
    from bertnas.data.examples import Examples, TaskData
    from bertnas.teacher.knowledge import Knowledge
    from bertnas.teacher.probes import train_probes

    g = torch.Generator().manual_seed(0)
    n = 64
    labels = (torch.rand(n, generator=g) * 5).tolist()
    spec = TaskSpec("stsb", None, True, ["pearson"], "pearson")
    ex = Examples(texts=["x"] * n, text_pairs=["y"] * n, labels=labels)
    feats = torch.randn(3, n, 8, generator=g).half()
    k = Knowledge(key="k", meta={"num_layers": 2}, tensors={"train_features": feats, "dev_features": feats})
    probes = train_probes(k, TaskData(spec, ex, ex), epochs=1, lr=1e-3)
    mean_pred = probes.logits("train").squeeze(-1).mean(1)
    assert torch.allclose(mean_pred, torch.full((3,), sum(labels) / n), atol=0.05)


def test_teacher_without_position_embeddings_table(tmp_path):
    """Teachers with no absolute position table (e.g. rotary/relative) get learned student positions."""
    from bertnas.adabert.supernet import ProjectedEmbeddings

    emb = ProjectedEmbeddings(torch.randn(30, 8), None, hidden=16, dropout=0.0, max_positions=64)
    out = emb(torch.tensor([[1, 2, 3]]), torch.ones(1, 3))
    assert out.shape == (1, 16, 3)
    words, positions = emb.folded()
    assert words.shape == (30, 16) and positions.shape == (64, 16)


def test_a_bare_vocab_txt_is_a_bert_tokenizer(tmp_path):
    """A folder with only vocab.txt (how BERT vocabularies are shipped) loads as BERT's WordPiece tokenizer,
    lower-cased; transformers v5's AutoTokenizer alone refuses it."""
    from bertnas.teacher.loading import load_tokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "##s", "on", "mat"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = load_tokenizer(str(tmp_path))
    assert len(tok) == len(vocab)
    assert tok("The cats sat on the MAT")["input_ids"] == [2, 5, 6, 8, 7, 9, 5, 10, 3]
    assert tok("dog")["input_ids"] == [2, 1, 3]
