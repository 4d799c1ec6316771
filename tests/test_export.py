"""`bertnas export`: a tiny finished run (single sentence and pair) goes to ONNX, onnxruntime loads it, its axes
are dynamic, it matches PyTorch, int8 writes a smaller file with a metric; bad inputs are one-line errors."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from bertnas.cli import main  # noqa: E402
from bertnas.export.onnx import DEFAULT_TOLERANCE, export_model  # noqa: E402
from conftest import check_int8_export, one_line_error  # noqa: E402

TINY = dict(augment=0, max_seq_len=32, hidden_size=16, k_max=3, search_epochs=1, retrain_epochs=1, probe_epochs=1,
            search_batch_size=16, retrain_batch_size=16, eval_seq_len=32, latency_repeats=2, latency_threads=1,
            device="cpu")


def _finished_run(out: Path, teacher: Path, data: Path, pair: bool) -> Path:
    import bertnas

    cols = dict(text_column="sentence1", text_pair_column="sentence2") if pair else {}
    cfg = bertnas.RunConfig(task="synthetic-pair" if pair else "synthetic-single", train_file=str(data / "train.tsv"),
                            dev_file=str(data / "dev.tsv"), teacher=str(teacher), **cols, **TINY)
    bertnas.run(cfg, out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_teacher, synthetic_files) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-runs")
    return {v: _finished_run(root / v, tiny_teacher, synthetic_files[v], v == "pair") for v in ("single", "pair")}


@pytest.fixture(scope="module")
def exported(runs) -> dict[str, dict]:
    """Both runs exported through the CLI (the single one with int8)."""
    out = {}
    for variant, run in runs.items():
        extra = ["--quantize", "int8"] if variant == "single" else []
        assert main(["export", "--out", str(run), *extra]) == 0
        out[variant] = json.loads((run / "export" / "export.json").read_text())
    return out


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _batch(tok, pair: bool, n: int, words: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(n * 100 + words)
    vocab = [w for w in tok.get_vocab() if w.isalpha()]
    texts = [" ".join(rng.choice(vocab, size=int(rng.integers(2, words + 1)))) for _ in range(n)]
    if pair:
        return dict(tok(texts, texts[::-1], padding=True, return_tensors="pt"))
    return dict(tok(texts, padding=True, return_tensors="pt"))


@pytest.mark.parametrize("variant", ["single", "pair"])
def test_export_loads_has_dynamic_axes_and_matches_pytorch(runs, exported, variant):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run, report = runs[variant], exported[variant]
    export = run / "export"
    for name in ("model.onnx", "config.json", "export.json", "tokenizer_config.json"):
        assert (export / name).is_file(), name
    assert not [p for p in run.iterdir() if p.name.startswith(".export")]  # no temp dirs left
    assert report["check"]["passed"] and report["check"]["max_abs_diff"] <= DEFAULT_TOLERANCE
    assert report["check"]["prediction_agreement"] == 1.0 and report["check"]["examples"] == 48
    assert report["exporter"] == "dynamo" and "dynamo_error" not in report and report["opset"] >= 17
    assert set(report["dev"]) >= {"pytorch", "onnx"} and report["metric"] == "accuracy"
    lat = report["latency"]
    assert lat["seq_len"] == 32 and lat["threads"] == 1
    assert all(lat[k]["latency_ms_b1"] > 0 and lat[k]["latency_ms_b32"] > 0 for k in ("pytorch", "onnx"))

    model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    tok = AutoTokenizer.from_pretrained(export)  # the tokenizer travels with the ONNX file
    sess = _session(export / "model.onnx")
    names = {i.name for i in sess.get_inputs()}
    assert names <= {"input_ids", "attention_mask", "token_type_ids"} and "input_ids" in names
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    for n, words in [(1, 3), (3, 3), (3, 9), (1, 9)]:  # batch 1 and 3, two sequence lengths
        batch = _batch(tok, variant == "pair", n, words)
        with torch.no_grad():
            ref = model(**batch).logits.numpy()
        got = sess.run(None, {k: v.numpy() for k, v in batch.items() if k in names})[0]
        assert got.shape == ref.shape == (n, 2)
        assert np.abs(got - ref).max() <= DEFAULT_TOLERANCE


def test_pair_export_handles_tokenizers_without_token_types(runs, exported):
    """RoBERTa-style all-zero token types: the student splits at [SEP]; the ONNX graph must do the same."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = runs["pair"]
    model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    tok = AutoTokenizer.from_pretrained(run / "export")
    sess = _session(run / "export" / "model.onnx")
    batch = _batch(tok, True, 3, 6)
    batch["token_type_ids"] = torch.zeros_like(batch["token_type_ids"])
    with torch.no_grad():
        ref = model(**batch).logits.numpy()
    got = sess.run(None, {k: v.numpy() for k, v in batch.items()})[0]
    assert np.abs(got - ref).max() <= DEFAULT_TOLERANCE


def test_int8_is_smaller_and_reports_its_metric(runs, exported):
    int8 = check_int8_export(runs["single"], exported["single"])
    _session(int8)  # loads
    assert "model.int8.onnx" not in json.dumps(exported["pair"])  # only when asked


def test_export_model_works_on_an_unsaved_model(tmp_path):
    """The function evaluate / bench can reuse: any HF classifier, no run directory."""
    from bertnas.adabert.modeling import AdaBertConfig, AdaBertForSequenceClassification

    torch.manual_seed(0)
    model = AdaBertForSequenceClassification(AdaBertConfig(vocab_size=50, max_position_embeddings=64, hidden_size=8,
                                                           num_labels=3)).eval()
    ids = torch.randint(5, 50, (2, 7))
    info = export_model(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                "token_type_ids": torch.zeros_like(ids)}, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").is_file() and info["exporter"] == "dynamo"
    seen = []  # a graph the check rejects is exported again with TorchScript, which the check sees too
    info = export_model(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                "token_type_ids": torch.zeros_like(ids)}, tmp_path / "m.onnx",
                        accept=lambda path: seen.append(path) or (None if len(seen) > 1 else "rejected"))
    assert info["exporter"] == "torchscript" and len(seen) == 2 and "rejected" in info["dynamo_error"]
    from bertnas.measure.onnx_latency import onnx_latency

    lat = onnx_latency(tmp_path / "m.onnx", 50, batch_sizes=(1, 4), seq_len=16, threads=1, warmup=1, repeats=2)
    assert lat["latency_ms_b1"] > 0 and lat["latency_ms_b4"] > 0 and lat["threads"] == 1


def _student_batch(n: int, length: int, pair: bool, seed: int) -> dict[str, torch.Tensor]:
    """Padded rows ``[CLS] A [SEP] (B [SEP])`` of random lengths; pair rows alternate B types and all-zero types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (n, length), generator=g)
    mask, types = torch.zeros_like(ids), torch.zeros_like(ids)
    for i in range(n):
        real = int(torch.randint(min(4, length), length + 1, (1,), generator=g))
        ids[i, 0], ids[i, real - 1], ids[i, real:] = 1, 2, 0
        mask[i, :real] = 1
        if pair:
            ids[i, real // 2] = 2
            types[i, real // 2 + 1:real] = i % 2
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_students_export_with_dynamo_at_any_batch_and_length(tmp_path, pair):
    """Every op (max_pool_3 included), the pair split and the aligned pair head (its L x L soft alignment) are
    symbolic in batch and length: torch.export keeps both axes dynamic, so the dynamo graph is kept and runs at
    batch sizes and lengths it was not exported at, and on a pair row without B (masked softmax over no token)."""
    from bertnas.adabert.genotype import Genotype
    from bertnas.adabert.modeling import AdaBertConfig, AdaBertForSequenceClassification

    genotype = Genotype(edges=((0, 0, "max_pool_3"), (0, 1, "dil_conv_3"), (1, 0, "conv_5"), (1, 2, "avg_pool_3"),
                               (2, 1, "skip_connect"), (2, 3, "max_pool_3")), depth=2)
    torch.manual_seed(0)
    model = AdaBertForSequenceClassification(AdaBertConfig(
        vocab_size=50, max_position_embeddings=64, hidden_size=8, genotype=genotype.to_dict(), pair_input=pair,
        sep_token_id=2, num_labels=2, pair_head="aligned")).eval()
    checked = []
    no_b = _student_batch(2, 9, pair, seed=7)
    no_b["input_ids"][0, 4:], no_b["attention_mask"][0, 4:], no_b["token_type_ids"][0] = 0, 0, 0
    no_b["input_ids"][0, 3] = 2  # row 0: [CLS] a a [SEP] and padding, no B at all
    if pair:
        from bertnas.adabert.blocks import pair_layout

        layout = pair_layout(no_b["input_ids"], no_b["attention_mask"], no_b["token_type_ids"], True, 2)
        assert layout.mask_b[0].sum() == 0

    def accept(path: Path) -> str | None:
        sess = _session(path)
        for n, length in [(1, 5), (3, 11), (5, 29)]:  # none is the exported (4, 17)
            batch = _student_batch(n, length, pair, seed=n)
            with torch.no_grad():
                ref = model(**batch).logits.numpy()
            try:
                got = sess.run(None, {k: v.numpy() for k, v in batch.items()})[0]
            except Exception as exc:  # e.g. a length traced into the graph: "invalid dimensions"
                return f"batch {n} length {length}: {exc}"
            if got.shape != (n, 2) or np.abs(got - ref).max() > 1e-5:
                return f"batch {n} length {length}: {got.shape}, max diff {np.abs(got - ref).max()}"
            checked.append((n, length))
        with torch.no_grad():
            ref = model(**no_b).logits.numpy()
        got = sess.run(None, {k: v.numpy() for k, v in no_b.items()})[0]
        if not np.isfinite(got).all() or np.abs(got - ref).max() > 1e-5:
            return f"row without B: {got} vs {ref}"
        return None

    info = export_model(model, _student_batch(4, 17, pair, seed=0), tmp_path / "m.onnx", accept=accept)
    assert info["exporter"] == "dynamo" and "dynamo_error" not in info, info
    assert info["inputs"] == ["input_ids", "attention_mask", "token_type_ids"] and len(checked) == 3
    assert len({length for _, length in checked}) == 3 and len({n for n, _ in checked}) == 3


def test_bad_inputs_are_one_line_errors_and_write_nothing(runs, exported, tmp_path, capsys):
    run = runs["single"]
    assert "not a bertnas run directory" in one_line_error(capsys, ["export", "--out", str(tmp_path / "nothing")])
    no_model = tmp_path / "no-model"
    no_model.mkdir()
    shutil.copy(run / "config.json", no_model / "config.json")
    assert "bertnas retrain" in one_line_error(capsys, ["export", "--out", str(no_model)])
    (tmp_path / "demo" / "run").mkdir(parents=True)  # `bertnas demo --out demo` keeps its run in demo/run
    shutil.copy(run / "config.json", tmp_path / "demo" / "run" / "config.json")
    assert f"--out {tmp_path / 'demo' / 'run'}" in one_line_error(capsys, ["export", "--out", str(tmp_path / "demo")])
    assert not (no_model / "export").exists()
    before = (run / "export" / "export.json").read_bytes()
    assert "--format" in one_line_error(capsys, ["export", "--out", str(run), "--format", "tflite"])
    assert "--quantize" in one_line_error(capsys, ["export", "--out", str(run), "--quantize", "int4"])
    assert (run / "export" / "export.json").read_bytes() == before  # the earlier export is untouched
    assert not [p for p in run.iterdir() if p.name.startswith(".export")]


def test_missing_onnxruntime_names_the_extra(runs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    err = one_line_error(capsys, ["export", "--out", str(runs["single"])])
    assert 'pip install "bertnas[onnx]"' in err


def test_a_failed_check_keeps_the_previous_export(runs, exported, capsys):
    run = runs["pair"]
    before = (run / "export" / "model.onnx").read_bytes()
    err = one_line_error(capsys, ["export", "--out", str(run), "--tolerance", "1e-30", "--no-latency"])
    assert "differs from PyTorch" in err or "tolerance" in err
    assert (run / "export" / "model.onnx").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".export")]
