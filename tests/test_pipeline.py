"""End to end: `bertnas run` on the synthetic task with a tiny teacher built here; the saved student loads
through transformers' Auto classes and pipeline; stages resume; results.json has the promised keys."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY = ["--augment", "0", "--max-seq-len", "32", "--hidden-size", "16", "--k-max", "4", "--search-epochs", "2",
        "--retrain-epochs", "1", "--probe-epochs", "2", "--search-batch-size", "16", "--retrain-batch-size", "16",
        "--eval-seq-len", "32", "--latency-repeats", "2", "--latency-threads", "1", "--device", "cpu"]


def bertnas(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertnas.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_teacher, synthetic_files):
    out = tmp_path_factory.mktemp("run") / "single"
    data = synthetic_files["single"]
    proc = bertnas("run", "--teacher", str(tiny_teacher), "--task", "synthetic-single",
                   "--train-file", str(data / "train.tsv"), "--dev-file", str(data / "dev.tsv"), "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_run_writes_every_artifact(finished_run):
    out, proc = finished_run
    for rel in ["config.json", "tokenizer", "probes/probes.json", "probes/probes.safetensors", "search/genotype.json",
                "search/student/config.json", "model/config.json", "model/model.safetensors", "architecture.png",
                "results.json", "results.md"]:
        assert (out / rel).exists(), rel
    assert not (out / "checkpoints" / "search.pt").exists()  # removed once the stage completed
    assert (out / "architecture.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| student (AdaBERT) |" in proc.stdout


def test_results_json_has_the_promised_keys(finished_run):
    out, _ = finished_run
    r = json.loads((out / "results.json").read_text())
    assert r["task"] == "synthetic-single" and r["metric"] == "accuracy"
    for who in ("teacher", "student"):
        for key in ("params", "metric", "latency_ms_b1", "latency_ms_b32"):
            assert r[who][key] > 0 or key == "metric", (who, key)
        assert r[who]["metric"] == r[who]["dev"]["accuracy"]
    assert "architecture" in r["student"]
    # the student is the smaller, cheaper model (FLOPs: deterministic; latency of models this tiny is noise)
    assert r["student"]["params"] < r["teacher"]["params"] and r["student"]["flops"] < r["teacher"]["flops"]
    # sanity floors: the majority class on a single-sentence task, and the verdict against it
    majority = r["baselines"]["majority"]["accuracy"]
    assert set(r["baselines"]) == {"majority"} and 0.4 < majority < 0.6  # the synthetic task is balanced
    assert r["sanity"] == {"baseline": "majority", "baseline_metric": majority,
                           "student_beats_baseline": r["student"]["metric"] > majority}
    assert r["speedup_b1"] == pytest.approx(r["teacher"]["latency_ms_b1"] / r["student"]["latency_ms_b1"], rel=0.02)
    assert r["compression"] == pytest.approx(r["teacher"]["params"] / r["student"]["params"], rel=0.02)
    # params are counted over all weights, embeddings included
    from bertnas import AdaBertForSequenceClassification

    student = AdaBertForSequenceClassification.from_pretrained(out / "model")
    assert r["student"]["params"] == sum(p.numel() for p in student.parameters())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["_meta"]["torch"] == torch.__version__ and cfg["search_epochs"] == 2


def test_saved_student_loads_with_auto_classes_and_pipeline(finished_run):
    out, _ = finished_run
    import bertnas  # noqa: F401  registers the adabert model type
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    assert AutoConfig.from_pretrained(out / "model").model_type == "adabert"
    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    tok = AutoTokenizer.from_pretrained(out / "model")
    assert len(tok) == model.config.vocab_size
    enc = tok(["the movie was good", "the movie was not good"], padding=True, return_tensors="pt")
    logits = model(**enc).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    clf = pipeline("text-classification", model=model, tokenizer=tok)
    pred = clf("the movie was not very good")
    assert pred[0]["label"] in ("0", "1") and 0 <= pred[0]["score"] <= 1
    # same prediction as running the model by hand
    enc1 = tok("the movie was not very good", return_tensors="pt")
    assert pred[0]["label"] == model.config.id2label[int(model(**enc1).logits.argmax())]


def test_the_dev_metric_in_results_is_reproduced_by_the_saved_model(finished_run):
    out, _ = finished_run
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertnas.data.readers import read_custom

    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    tok = AutoTokenizer.from_pretrained(out / "model")
    cfg = json.loads((out / "config.json").read_text())
    dev = read_custom(cfg["train_file"], cfg["dev_file"]).dev
    correct = 0
    with torch.no_grad():
        for text, label in zip(dev.texts, dev.labels):
            correct += int(model(**tok(text, return_tensors="pt", truncation=True, max_length=32)).logits.argmax()) == label
    r = json.loads((out / "results.json").read_text())
    assert correct / len(dev) == pytest.approx(r["student"]["metric"], abs=1e-9)


def test_single_stage_commands_keep_stage_marks_honest(finished_run):
    """Re-running a step by hand clears the marks of the steps after it, so `run` redoes them."""
    out, _ = finished_run
    from bertnas.adabert.pipeline import completed_stages
    from bertnas.rundir import load_run_config

    cfg = load_run_config(out)
    assert completed_stages(out, cfg) == {"probe", "search", "retrain"}
    assert completed_stages(out, cfg.update({"beta": 1.0})) == {"probe"}  # search settings changed
    proc = bertnas("search", "--out", str(out))  # the same settings, by hand
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert completed_stages(out, load_run_config(out)) == {"probe", "search"}  # retrain must run again
    assert "retrain" not in json.loads((out / "stages.json").read_text())


def test_changed_data_of_the_same_size_is_refused(finished_run, tmp_path):
    out, _ = finished_run
    cfg = json.loads((out / "config.json").read_text())
    dev = Path(cfg["dev_file"]).read_text().splitlines()
    changed = tmp_path / "dev.tsv"
    changed.write_text("\n".join(dev[:1] + [dev[2], dev[1]] + dev[3:]) + "\n")  # same rows, other order
    proc = bertnas("evaluate", "--out", str(out), "--dev-file", str(changed))
    assert proc.returncode == 2 and "data changed" in proc.stderr and "Traceback" not in proc.stderr


def test_stages_rerun_from_the_run_directory(finished_run):
    """Each step reads what the previous one saved: re-run retrain then evaluate alone."""
    out, _ = finished_run
    before = json.loads((out / "search" / "genotype.json").read_text())["genotype_str"]
    proc = bertnas("retrain", "--out", str(out), "--retrain-epochs", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = bertnas("evaluate", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["student"]["architecture"] == before


def test_pair_task_end_to_end_with_python_api(tmp_path, synthetic_files):
    """Sentence-pair task through the Python API, teacher from `bertnas teacher finetune --from-scratch`."""
    import bertnas
    from bertnas.data.synthetic import build_tokenizer

    data = synthetic_files["pair"]
    vocab_dir = tmp_path / "tokenizer_only"  # no model files: just a tokenizer
    build_tokenizer(vocab_dir).save_pretrained(vocab_dir)
    teacher = tmp_path / "teacher"
    proc = bertnas_cli_finetune(vocab_dir, teacher, data)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = bertnas.RunConfig(task="pairs", train_file=str(data / "train.tsv"), dev_file=str(data / "dev.tsv"),
                            text_column="sentence1", text_pair_column="sentence2", teacher=str(teacher),
                            max_seq_len=48, hidden_size=16, k_max=3, search_epochs=1, retrain_epochs=1, probe_epochs=1,
                            eval_seq_len=48, latency_repeats=2, latency_threads=1, device="cpu")
    results = bertnas.run(cfg, tmp_path / "run")
    assert results["task"] == "pairs"
    model = bertnas.AdaBertForSequenceClassification.from_pretrained(tmp_path / "run" / "model")
    assert model.config.pair_input is True
    from transformers import pipeline, AutoTokenizer

    clf = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(tmp_path / "run" / "model"))
    assert clf({"text": "the cat was good", "text_pair": "the cat was not bad"})["label"] in ("0", "1")


def bertnas_cli_finetune(vocab_dir: Path, out: Path, data: Path) -> subprocess.CompletedProcess:
    return bertnas("teacher", "finetune", "--from-scratch", "--tokenizer", str(vocab_dir), "--layers", "1",
                   "--hidden", "32", "--heads", "2", "--epochs", "1", "--lr", "1e-3", "--task", "pairs",
                   "--train-file", str(data / "train.tsv"), "--dev-file", str(data / "dev.tsv"),
                   "--text-column", "sentence1", "--text-pair-column", "sentence2", "--max-seq-len", "48",
                   "--out", str(out), "--device", "cpu")


def assert_model_dir_loads(directory: Path) -> None:
    """AutoTokenizer and AutoModelForSequenceClassification load the directory and a forward pass runs."""
    import bertnas  # noqa: F401  registers the model types
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    enc = tok(["the movie was good", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (2, model.config.num_labels) and torch.isfinite(logits).all(), directory


def test_every_model_directory_carries_its_tokenizer(finished_run):
    """The searched student (search/student) and the final model (model/) each load on their own."""
    out, _ = finished_run
    for rel in ("search/student", "model"):
        assert_model_dir_loads(out / rel)


def test_evaluate_reports_onnxruntime_latency_beside_pytorch(finished_run):
    """`run` (through evaluate) exports the student to a temp directory and times it in onnxruntime at the same
    sequence length, threads and repeats as PyTorch; nothing of the export is left in the run directory."""
    pytest.importorskip("onnxruntime")
    out, proc = finished_run
    r = json.loads((out / "results.json").read_text())
    onnx = r["student"]["latency_onnx_ms"]
    assert set(onnx) == {"b1", "b32"} and all(v > 0 for v in onnx.values())
    assert r["student"]["onnx_speedup"]["b1"] == pytest.approx(r["student"]["latency_ms_b1"] / onnx["b1"], rel=0.02)
    m = r["measurement"]["onnx"]
    assert m["runtime"].startswith("onnxruntime") and m["exporter"] in ("dynamo", "torchscript")
    assert m["max_abs_diff"] <= 1e-4
    assert "| student, onnxruntime |" in proc.stdout and "Student in onnxruntime vs in PyTorch" in proc.stdout
    assert not list(out.rglob("*.onnx"))


def test_evaluate_without_onnx_latency_flag_or_onnxruntime(finished_run):
    out, _ = finished_run
    proc = bertnas("evaluate", "--out", str(out), "--no-onnx-latency")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "latency_onnx_ms" not in json.loads((out / "results.json").read_text())["student"]
    assert "onnxruntime" not in proc.stdout and "onnxruntime latency" not in proc.stderr
    # onnxruntime not importable: one line says how to get it, the evaluation completes without the numbers
    blocked = ("import sys; sys.modules['onnxruntime'] = None; from bertnas.cli import main; "
               f"sys.exit(main(['evaluate', '--out', {str(out)!r}]))")
    proc = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hints = [l for l in proc.stderr.splitlines() if "onnxruntime latency skipped" in l]
    assert len(hints) == 1 and 'pip install "bertnas[onnx]"' in hints[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "latency_onnx_ms" not in json.loads((out / "results.json").read_text())["student"]
