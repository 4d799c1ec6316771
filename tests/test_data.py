"""Tests of the data layer on real files in tmp_path: GLUE readers, generic readers, metrics, synthetic task."""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bertnas.data import (
    GLUE_TASKS,
    METRICS,
    Examples,
    TaskData,
    accuracy,
    build_tokenizer,
    compute_metrics,
    f1,
    generate,
    get_task,
    infer_labels,
    load_task,
    macro_f1,
    mcc,
    paraphrase_label,
    pearson,
    read_custom,
    read_glue,
    read_table,
    sentiment_label,
    spearman,
    vocabulary,
    write_task,
)
from bertnas.data.examples import TaskSpec
from bertnas.errors import BertnasError


def write(path: Path, rows: list[list[str]] | str, bom: bool = False) -> Path:
    """Write a TSV from rows of fields (or raw text) exactly as given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = rows if isinstance(rows, str) else "".join("\t".join(r) + "\n" for r in rows)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(BertnasError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "user errors must be one line"
    return message


# ------------------------------------------------------------------------------------------- tasks


def test_task_registry_and_aliases():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert get_task("SST-2").name == get_task("sst-2").name == "sst2"
    assert get_task("STS-B").is_regression and get_task("sts-b").num_labels == 1
    assert get_task("MNLI").labels == ["contradiction", "entailment", "neutral"]
    assert get_task("cola").headline == "mcc" and not get_task("cola").pair
    assert get_task("mrpc").metrics == ["f1", "accuracy"] and get_task("mrpc").headline == "f1"
    assert get_task("rte").labels == ["entailment", "not_entailment"] and get_task("rte").pair
    spec = get_task("mrpc")
    spec.metrics.append("mcc")  # a copy: the registry is untouched
    assert GLUE_TASKS["mrpc"].metrics == ["f1", "accuracy"]
    message = error_of(get_task, "glue-foo")
    assert "'glue-foo'" in message and "sst2" in message and "mnli" in message


# -------------------------------------------------------------------------------------- GLUE files


def test_sst2_with_quote_characters(tmp_path):
    folder = tmp_path / "SST-2"
    write(folder / "train.tsv", [["sentence", "label"], ['a "charming film ', "1"], ["it 's dull", "0"]])
    write(folder / "dev.tsv", [["sentence", "label"], ['he said " no', "0"]])
    data = read_glue("SST-2", folder)
    assert data.spec.name == "sst2"
    assert data.train.texts == ['a "charming film', "it 's dull"]
    assert data.train.labels == [1, 0] and data.train.text_pairs is None
    assert data.dev.texts == ['he said " no'] and data.dev.labels == [0]
    assert data.train.source == str(folder / "train.tsv")


def test_cola_headerless(tmp_path):
    rows = [["gj04", "1", "", "Our friends won't buy this analysis."], ["gj04", "0", "*", 'They drank the pub "dry.']]
    write(tmp_path / "CoLA" / "train.tsv", rows)
    write(tmp_path / "CoLA" / "dev.tsv", rows[:1])
    data = read_glue("cola", tmp_path / "CoLA")
    assert data.train.texts == ["Our friends won't buy this analysis.", 'They drank the pub "dry.']
    assert data.train.labels == [1, 0] and data.dev.labels == [1]


def test_mrpc_with_bom_header(tmp_path):
    header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    write(tmp_path / "train.tsv", [header, ["1", "1", "2", "He left .", "He went away ."]], bom=True)
    write(tmp_path / "dev.tsv", [header, ["0", "3", "4", "A cat .", "A dog ."]])
    data = read_glue("mrpc", tmp_path)
    assert data.spec.pair and data.train.texts == ["He left ."] and data.train.text_pairs == ["He went away ."]
    assert data.train.labels == [1] and data.dev.labels == [0]


def test_qqp_skips_malformed_rows(tmp_path):
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    write(tmp_path / "train.tsv", [header, ["1", "1", "2", "How?", "How so?", "1"], ["2", "3", "broken row"],
                                   ["3", "4", "5", "Why?", "When?", "0"]])
    write(tmp_path / "dev.tsv", [header, ["4", "6", "7", "Who?", "Whom?", "1"]])
    data = read_glue("qqp", tmp_path)
    assert data.train.labels == [1, 0] and data.train.meta["skipped_rows"] == 1
    assert data.train.text_pairs == ["How so?", "When?"]


def test_stsb_float_labels(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]
    row = ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A plane is taking off.",
           "An air plane is taking off.", "5.000"]
    write(tmp_path / "train.tsv", [header, row, row[:-1] + ["0.8"]])
    write(tmp_path / "dev.tsv", [header, row[:-1] + ["3.25"]])
    data = read_glue("sts-b", tmp_path)
    assert data.spec.is_regression
    assert data.train.labels == [5.0, 0.8] and data.dev.labels == [3.25]
    write(tmp_path / "dev.tsv", [header, row[:-1] + ["high"]])
    message = error_of(read_glue, "stsb", tmp_path)
    assert "dev.tsv: line 2" in message and "'high'" in message and "not a number" in message


def test_mnli_matched_and_mismatched(tmp_path):
    train_header = ["index", "promptID", "pairID", "genre", "s1b", "s2b", "s1p", "s2p", "sentence1", "sentence2",
                    "label1", "gold_label"]
    dev_header = train_header[:10] + ["label1", "label2", "label3", "label4", "label5", "gold_label"]
    pre = ["0", "1", "1e", "fiction", "(", ")", "(", ")"]
    write(tmp_path / "train.tsv", [train_header, pre + ["A man sleeps.", "A person rests.", "entailment", "entailment"],
                                   pre + ["It rains.", "It's dry.", "contradiction", "contradiction"]])
    write(tmp_path / "dev_matched.tsv", [dev_header, pre + ["A", "B"] + ["neutral"] * 6])
    data = read_glue("mnli", tmp_path)
    assert data.train.labels == [1, 0] and data.dev.labels == [2] and data.extra_dev == {}
    write(tmp_path / "dev_mismatched.tsv", [dev_header, pre + ["C", "D"] + ["entailment"] * 6,
                                            pre + ["E", "F"] + ["contradiction"] * 6])
    data = read_glue("MNLI", tmp_path)
    mismatched = data.extra_dev["dev_mismatched"]
    assert mismatched.texts == ["C", "E"] and mismatched.text_pairs == ["D", "F"] and mismatched.labels == [1, 0]


@pytest.mark.parametrize("task,header,label", [
    ("qnli", ["index", "question", "sentence", "label"], "not_entailment"),
    ("rte", ["index", "sentence1", "sentence2", "label"], "entailment"),
    ("wnli", ["index", "sentence1", "sentence2", "label"], "1"),
])
def test_other_pair_tasks(tmp_path, task, header, label):
    write(tmp_path / "train.tsv", [header, ["0", "first", "second", label]])
    write(tmp_path / "dev.tsv", [header, ["0", "third", "fourth", label]])
    data = read_glue(task, tmp_path)
    assert data.train.texts == ["first"] and data.train.text_pairs == ["second"]
    assert data.train.labels == [data.spec.labels.index(label)]


def test_glue_errors(tmp_path):
    message = error_of(read_glue, "sst2", tmp_path / "nope")
    assert "directory not found" in message and "--data-dir" in message and "glue_data/SST-2" in message

    write(tmp_path / "train.tsv", [["sentence", "label"], ["good", "1"]])
    message = error_of(read_glue, "sst2", tmp_path)
    assert "dev.tsv" in message and "file not found" in message and "--data-dir" in message

    write(tmp_path / "dev.tsv", [["text", "label"], ["good", "1"]])
    message = error_of(read_glue, "sst2", tmp_path)
    assert "column 'sentence' not found" in message and "found: text, label" in message and "--text-column" in message
    write(tmp_path / "renamed" / "train.tsv", [["text", "label"], ["good", "1"]])
    write(tmp_path / "renamed" / "dev.tsv", [["text", "label"], ["bad", "0"]])
    assert read_glue("sst2", tmp_path / "renamed", text_column="text").dev.texts == ["bad"]  # the suggested fix works

    write(tmp_path / "dev.tsv", [["sentence", "label"], ["good", "1"], ["bad", "maybe"]])
    message = error_of(read_glue, "sst2", tmp_path)
    assert "dev.tsv: line 3" in message and "'maybe'" in message and "0, 1" in message

    write(tmp_path / "dev.tsv", [["sentence", "label"], ["good", "1", "extra"]])
    message = error_of(read_glue, "sst2", tmp_path)
    assert "line 2 has 3" in message and "expected 2" in message

    write(tmp_path / "dev.tsv", "")
    assert "empty" in error_of(read_glue, "sst2", tmp_path)
    write(tmp_path / "dev.tsv", "sentence\tlabel\n")
    assert "no data rows" in error_of(read_glue, "sst2", tmp_path)

    write(tmp_path / "CoLA" / "train.tsv", [["gj04", "1", "sentence without star column"]])
    message = error_of(read_glue, "cola", tmp_path / "CoLA")
    assert "line 1 has 3" in message and "expected 4" in message


# --------------------------------------------------------------------------------- generic tables


def test_read_table_formats(tmp_path):
    tsv = write(tmp_path / "a.tsv", [["id", "txt", "other", "y"], ["1", 'say "hi', "x", "pos"], ["2", "bye", "y", "neg"]])
    ex = read_table(tsv, "txt", "y", text_pair_column="other")
    assert ex.texts == ['say "hi', "bye"] and ex.text_pairs == ["x", "y"] and ex.labels == ["pos", "neg"]
    assert read_table(tsv, "txt", "y", labels=["neg", "pos"]).labels == [1, 0]

    csv_path = tmp_path / "a.csv"
    csv_path.write_text('text,score\n"hello, world",0.5\nplain,2\n', encoding="utf-8")
    ex = read_table(csv_path, "text", "score", labels="regression")
    assert ex.texts == ["hello, world", "plain"] and ex.labels == [0.5, 2.0]

    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [{"q": "one", "l": 1}, {"q": "two", "l": 0}, {"q": "x", "l": True}]),
                     encoding="utf-8")
    assert read_table(jsonl, "q", "l").labels == ["1", "0", "1"]
    assert read_table(jsonl, "q", "l", labels=["0", "1"]).labels == [1, 0, 1]
    data_txt = tmp_path / "data.txt"
    data_txt.write_text(tsv.read_text())
    assert read_table(data_txt, "txt", "y", fmt="tsv").texts == ['say "hi', "bye"]


def test_read_table_errors(tmp_path):
    tsv = write(tmp_path / "a.tsv", [["text", "label"], ["x", "1"]])
    message = error_of(read_table, tsv, "sentence", "label")
    assert "column 'sentence' not found" in message and "found: text, label" in message and "--text-column" in message
    assert "--label-column" in error_of(read_table, tsv, "text", "y")
    assert "unknown file format 'xml'" in error_of(read_table, tsv, "text", "label", fmt="xml")
    (tmp_path / "a.xml").write_text("x")
    assert "--format" in error_of(read_table, tmp_path / "a.xml", "text", "label")
    assert "file not found" in error_of(read_table, tmp_path / "missing.tsv", "text", "label")
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{"text": oops}\n')
    message = error_of(read_table, bad, "text", "label")
    assert "line 2" in message and "not valid JSON" in message
    assert read_table(tsv, "text", "label", labels="regression").labels == [1.0]
    write(tmp_path / "r.tsv", [["text", "label"], ["x", "one"]])
    assert "not a number" in error_of(read_table, tmp_path / "r.tsv", "text", "label", labels="regression")


def test_infer_labels():
    assert infer_labels(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert infer_labels(["pos", "neg", "pos"]) == ["neg", "pos"]
    assert infer_labels(["-1", "1", "0"]) == ["-1", "0", "1"]


def test_read_custom(tmp_path):
    header = [["sentence", "label"]]
    train = write(tmp_path / "train.tsv", header + [["a", "pos"], ["b", "neg"], ["c", "pos"]])
    dev = write(tmp_path / "dev.tsv", header + [["d", "neg"]])
    data = read_custom(train, dev, task_name="mine")
    assert data.spec == TaskSpec("mine", ["neg", "pos"], False, ["accuracy", "f1"], "accuracy")
    assert data.train.labels == [1, 0, 1] and data.dev.labels == [0]
    assert read_custom(train, dev, metric="f1").spec.headline == "f1"
    assert "'pearson'" in error_of(read_custom, train, dev, metric="pearson")

    write(tmp_path / "dev.tsv", header + [["d", "meh"]])
    message = error_of(read_custom, train, dev)
    assert "'meh'" in message and "train" in message and "neg, pos" in message

    three = write(tmp_path / "three.tsv", header + [["a", "x"], ["b", "y"], ["c", "z"]])
    assert read_custom(three, three).spec.metrics == ["accuracy"]
    one = write(tmp_path / "one.tsv", header + [["a", "x"]])
    assert "only one label" in error_of(read_custom, one, one)

    reg = write(tmp_path / "reg.csv", "sentence,label\na,0.1\nb,0.9\n")
    data = read_custom(reg, reg, labels="regression")
    assert data.spec.is_regression and data.spec.metrics == ["pearson", "spearman"] and data.train.labels == [0.1, 0.9]


def test_load_task(tmp_path):
    write(tmp_path / "SST-2" / "train.tsv", [["sentence", "label"], ["good", "1"], ["bad", "0"]])
    write(tmp_path / "SST-2" / "dev.tsv", [["sentence", "label"], ["fine", "1"]])
    assert load_task("SST-2", data_dir=tmp_path / "SST-2").spec.name == "sst2"
    # GLUE data in the user's own files keeps the GLUE labels and metrics
    data = load_task("sst2", train_file=tmp_path / "SST-2" / "train.tsv", dev_file=tmp_path / "SST-2" / "dev.tsv")
    assert data.spec.labels == ["0", "1"] and data.train.labels == [1, 0]
    # a name that is no GLUE task does not read a folder as a custom task: it names the GLUE tasks and the fix
    message = error_of(load_task, "mytask", data_dir=tmp_path / "SST-2")
    assert "unknown task 'mytask'" in message and "sst2" in message and "--train-file" in message
    assert "did you mean 'sst2'?" in error_of(load_task, "sst-3", data_dir=tmp_path / "SST-2")
    assert load_task("mytask", train_file=tmp_path / "SST-2" / "train.tsv",
                     dev_file=tmp_path / "SST-2" / "dev.tsv").spec.name == "mytask"
    assert load_task("synthetic-pair").spec.name == "synthetic-pair"
    assert "--data-dir" in error_of(load_task, "sst2")
    assert "--train-file" in error_of(load_task, "mytask")
    assert "--dev-file" in error_of(load_task, "mytask", train_file=tmp_path / "SST-2" / "train.tsv")
    assert "not both" in error_of(load_task, "sst2", data_dir=tmp_path, train_file=tmp_path / "x.tsv")
    assert "--text-pair-column" in error_of(load_task, "mrpc", train_file=tmp_path / "a", dev_file=tmp_path / "b")


# -------------------------------------------------------------------------------------------- metrics


def test_classification_metrics_by_hand():
    # confusion matrix: TP=3, FN=1, FP=2, TN=4
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    preds = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    assert accuracy(preds, labels) == pytest.approx(0.7)
    assert f1(preds, labels) == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert mcc(preds, labels) == pytest.approx((3 * 4 - 2 * 1) / math.sqrt(5 * 4 * 6 * 5))
    f1_neg = 2 * 4 / (2 * 4 + 1 + 2)
    assert macro_f1(preds, labels) == pytest.approx((6 / 9 + f1_neg) / 2)
    # multiclass MCC: perfect -> 1, degenerate (constant prediction) -> 0 not nan
    assert mcc([0, 1, 2, 2], [0, 1, 2, 2]) == pytest.approx(1.0)
    assert mcc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0
    assert f1([0, 0], [0, 0]) == 0.0
    assert set(METRICS) == {"accuracy", "f1", "macro_f1", "mcc", "pearson", "spearman"}


def test_correlation_metrics():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0]
    xc, yc = np.array(x) - 2.5, np.array(y) - 5.25
    assert pearson(x, y) == pytest.approx(float(xc @ yc / math.sqrt((xc @ xc) * (yc @ yc))))
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0 and spearman([1, 2, 3], [5, 5, 5]) == 0.0
    # ties: ranks of [1, 2, 2, 3] are [1, 2.5, 2.5, 4]
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(pearson([1, 2.5, 2.5, 4], [1, 2, 3, 4]))
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 50).astype(float), rng.integers(0, 7, 50).astype(float)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b).statistic)


def test_compute_metrics():
    logits = np.array([[2.0, 1.0], [0.1, 0.9], [0.3, 0.2], [0.0, 1.0]])
    out = compute_metrics(get_task("mrpc"), logits, [0, 1, 1, 1])
    assert out == pytest.approx({"f1": 0.8, "accuracy": 0.75})
    assert list(compute_metrics(get_task("cola"), np.array([1, 0]), [1, 0])) == ["mcc"]
    reg = compute_metrics(get_task("stsb"), np.array([[0.5], [1.5], [3.0]]), [1.0, 2.0, 3.0])
    assert reg["pearson"] > 0.9 and reg["spearman"] == pytest.approx(1.0)


# -------------------------------------------------------------------------------------- synthetic


def bag(*texts: str) -> Counter:
    return Counter(" ".join(texts).split())


@pytest.mark.parametrize("variant", ["single", "pair"])
def test_synthetic_determinism_balance_and_labels(variant):
    start = time.perf_counter()
    data = generate(variant, n_train=2000, n_dev=500, seed=0)
    assert time.perf_counter() - start < 1.0
    again = generate(variant, n_train=2000, n_dev=500, seed=0)
    other = generate(variant, n_train=2000, n_dev=500, seed=1)
    assert data.train == again.train and data.dev == again.dev
    assert data.train.texts != other.train.texts and data.dev.texts != other.dev.texts
    assert generate(variant, n_train=100, n_dev=500, seed=0).dev == data.dev  # dev does not depend on n_train
    assert data.spec.name == f"synthetic-{variant}" and data.spec.labels == ["0", "1"]
    assert data.spec.pair == (variant == "pair") and data.spec.headline == "accuracy"
    assert len(data.train) == 2000 and len(data.dev) == 500
    assert Counter(data.train.labels) == {0: 1000, 1: 1000} and Counter(data.dev.labels) == {0: 250, 1: 250}
    odd = generate(variant, n_train=7, n_dev=3, seed=0)
    assert abs(sum(odd.train.labels) * 2 - 7) == 1 and len(odd.dev) == 3
    # every label agrees with the language's semantics; no dev example is in train; all words in vocab
    pairs = data.dev.text_pairs or [None] * len(data.dev)
    for text, pair, label in zip(data.dev.texts, pairs, data.dev.labels):
        assert label == (sentiment_label(text) if pair is None else paraphrase_label(text, pair))
    train_keys = set(zip(data.train.texts, data.train.text_pairs or data.train.texts))
    assert not train_keys & set(zip(data.dev.texts, data.dev.text_pairs or data.dev.texts))
    vocab = set(vocabulary(variant))
    assert set(bag(*data.train.texts, *(data.train.text_pairs or []))) <= vocab


@pytest.mark.parametrize("variant", ["single", "pair"])
def test_synthetic_needs_word_order(variant):
    """Dev holds examples with identical bags of words and opposite labels: bag-of-words cannot solve it."""
    data = generate(variant, n_train=10, n_dev=200, seed=3)
    pairs = data.dev.text_pairs or [""] * len(data.dev)
    labels_by_bag: dict[tuple, set] = {}
    for text, pair, label in zip(data.dev.texts, pairs, data.dev.labels):
        labels_by_bag.setdefault(tuple(sorted(bag(text, pair).elements())), set()).add(label)
    assert sum(1 for labels in labels_by_bag.values() if labels == {0, 1}) >= 10


def test_synthetic_semantics():
    assert sentiment_label("the movie was good") == 1
    assert sentiment_label("the movie was not good") == 0
    assert sentiment_label("the movie was not very good") == 0
    assert sentiment_label("the movie was never very bad") == 1
    assert sentiment_label("the movie was not good but the acting was terrible") == 0
    assert sentiment_label("the acting was terrible but the movie was not good") == 0
    assert sentiment_label("the movie was good but the acting was terrible") == 0
    assert sentiment_label("the acting was terrible but the movie was good") == 1  # same words, other order
    assert paraphrase_label("the movie was good and the cast was bad", "the cast was poor and the film was not bad") == 1
    assert paraphrase_label("the movie was good and the cast was bad", "the cast was good and the movie was bad") == 0
    assert paraphrase_label("the movie was good", "the movie was not good") == 0
    with pytest.raises(ValueError):
        sentiment_label("the movie was very not good")
    assert "'single'" in error_of(generate, "triple")


def test_write_task_round_trip(tmp_path):
    for variant in ("single", "pair"):
        data = generate(variant, n_train=50, n_dev=20, seed=2)
        out = write_task(data, tmp_path / variant)
        pair_column = "sentence2" if variant == "pair" else None
        text_column = "sentence1" if variant == "pair" else "sentence"
        back = read_custom(out / "train.tsv", out / "dev.tsv", text_column=text_column, text_pair_column=pair_column)
        assert back.spec.labels == ["0", "1"]
        assert back.train.texts == data.train.texts and back.train.labels == data.train.labels
        assert back.dev.text_pairs == data.dev.text_pairs and back.dev.labels == data.dev.labels
        loaded = load_task(f"synthetic-{variant}", data_dir=out)  # pair columns are found by default
        assert loaded.train.text_pairs == data.train.text_pairs and loaded.dev.labels == data.dev.labels


def test_tokenizer_vocab(tmp_path):
    tok = build_tokenizer(tmp_path)
    words = sorted(set(vocabulary("single")) | set(vocabulary("pair")))
    assert len(tok) == 5 + len(words)
    assert tok.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]
    assert tok.pad_token_id == 0 and tok.cls_token_id == 2 and tok.sep_token_id == 3
    ids = tok(" ".join(words), add_special_tokens=False)["input_ids"]
    assert len(ids) == len(words) and tok.unk_token_id not in ids
    assert sorted(ids) == list(range(5, 5 + len(words)))
    data = generate("pair", n_train=10, n_dev=10)
    enc = tok(data.dev.texts[0], data.dev.text_pairs[0])
    assert enc["input_ids"][0] == 2 and enc["input_ids"].count(3) == 2 and 1 not in enc["input_ids"]
