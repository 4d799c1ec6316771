"""`bertnas export` on NAS-BERT fine-tuning runs (a tiny nasbert student and a plain BERT baseline, fine-tuned by
the real `bertnas nasbert finetune` on the synthetic tasks), run-kind detection and its one-line errors, and the
NAS-BERT report's teacher row, which must come from the run's own results files."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from bertnas.cli import main  # noqa: E402
from bertnas.export.onnx import DEFAULT_TOLERANCE  # noqa: E402
from conftest import check_int8_export, keyword_task, make_teacher, one_line_error  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# every searchable op of the space, two hidden sizes (adapters between them), a factorized embedding E < T
ARCHITECTURE = "E=16 | 16:mha,sep3 | 32:sep5,ffn | 16:sep7,identity"


def _student(directory: Path, teacher: Path) -> Path:
    """A tiny NAS-BERT student with the teacher's vocabulary, as `nasbert select` would write it."""
    from transformers import AutoTokenizer

    from bertnas.nasbert.modeling import NasBertConfig, NasBertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(teacher)
    torch.manual_seed(0)
    model = NasBertForSequenceClassification(NasBertConfig(vocab_size=len(tok), max_position_embeddings=160,
                                                           hidden_size=32, architecture=ARCHITECTURE))
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def _finetune(model: Path, teacher: Path, task: str, data: list[str], out: Path, *extra: str) -> Path:
    code = main(["nasbert", "finetune", "--model", str(model), "--teacher", str(teacher), "--task", task, *data,
                 "--out", str(out), "--max-seq-len", "24", "--batch-size", "8", "--threads", "1", "--no-measure", *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("nbx-teacher"), seed=3)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, teacher, synthetic_files) -> dict[str, Path]:
    """Fine-tuning runs: a NAS-BERT student on the keyword task (--train-file/--dev-file) and on the synthetic pair
    task (--data-dir), and a BERT (the kind of the hand-designed baseline) on the keyword task."""
    root = tmp_path_factory.mktemp("nbx-runs")
    student = _student(root / "student", teacher)
    train, dev = keyword_task(root / "keyword")
    files = ["--train-file", str(train), "--dev-file", str(dev)]
    learn = ("--epochs", "20", "--lr", "3e-3")
    return {"single": _finetune(student, teacher, "keyword", files, root / "ft-single", *learn),
            "pair": _finetune(student, teacher, "synthetic-pair", ["--data-dir", str(synthetic_files["pair"])],
                              root / "ft-pair", "--epochs", "1"),
            "bert": _finetune(teacher, teacher, "keyword", files, root / "ft-bert", *learn)}


@pytest.fixture(scope="module")
def exported(runs) -> dict[str, dict]:
    """Every run exported through the CLI: the single one with int8, the BERT one without latency."""
    out = {}
    for variant, run in runs.items():
        extra = {"single": ["--quantize", "int8"], "pair": [], "bert": ["--no-latency"]}[variant]
        assert main(["export", "--out", str(run), *extra]) == 0
        out[variant] = json.loads((run / "export" / "export.json").read_text())
    return out


def test_finetune_records_the_data_and_the_teacher(runs, synthetic_files):
    results = json.loads((runs["pair"] / "results.json").read_text())
    assert results["data"] == {"task": "synthetic-pair", "data_dir": str(synthetic_files["pair"].resolve()),
                               "train_file": None, "dev_file": None}
    assert results["teacher_architecture"] == "2L-H32" and results["teacher_params"] > 10_000
    assert set(results["teacher_dev"]) >= {"accuracy"}
    single = json.loads((runs["single"] / "results.json").read_text())
    root = runs["single"].parent / "keyword"
    assert single["data"] == {"task": "keyword", "data_dir": None, "train_file": str((root / "train.tsv").resolve()),
                              "dev_file": str((root / "dev.tsv").resolve())}
    # the keyword runs learned (the export check below compares a metric that is not at chance)
    assert 0.6 < single["dev"]["accuracy"] < 1.0


@pytest.mark.parametrize("variant", ["single", "pair", "bert"])
def test_export_matches_pytorch_on_the_runs_dev_data(runs, exported, variant):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run, report = runs[variant], exported[variant]
    results = json.loads((run / "results.json").read_text())
    for name in ("model.onnx", "config.json", "export.json", "tokenizer_config.json"):
        assert (run / "export" / name).is_file(), name
    assert not [p for p in run.iterdir() if p.name.startswith(".export")]  # no temp dirs left
    assert report["run_kind"] == "nasbert" and report["task"] == results["task"] and report["max_seq_len"] == 24
    check = report["check"]
    assert check["passed"] and check["max_abs_diff"] <= DEFAULT_TOLERANCE and check["prediction_agreement"] == 1.0
    assert check["examples"] == 48 and check["rows_checked"] == 48  # no zero-token-type copies: not an AdaBERT pair
    assert report["exporter"] == "dynamo" and report["metric"] == "accuracy"
    # the same dev data and length as fine-tuning: PyTorch's dev metric is the one the run recorded for its model
    assert report["dev"]["pytorch"]["accuracy"] == pytest.approx(results["dev"]["accuracy"], abs=1e-9)
    assert report["dev"]["onnx"]["accuracy"] == pytest.approx(results["dev"]["accuracy"], abs=1e-9)
    if variant == "bert":
        assert "latency" not in report
    else:
        lat = report["latency"]
        assert lat["seq_len"] == 128 and lat["threads"] == 1 and lat["repeats"] == 10
        assert all(lat[k]["latency_ms_b1"] > 0 and lat[k]["latency_ms_b32"] > 0 for k in ("pytorch", "onnx"))

    model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    tok = AutoTokenizer.from_pretrained(run / "export")
    sess = ort.InferenceSession(str(run / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    vocab = [w for w in tok.get_vocab() if w.isalpha()]
    for n, words in [(1, 3), (5, 11)]:  # neither is a dev batch's shape
        texts = [" ".join(rng.choice(vocab, size=int(rng.integers(2, words + 1)))) for _ in range(n)]
        batch = dict(tok(texts, texts[::-1], padding=True, return_tensors="pt") if variant == "pair"
                     else tok(texts, padding=True, return_tensors="pt"))
        with torch.no_grad():
            ref = model(**batch).logits.numpy()
        names = {i.name for i in sess.get_inputs()}
        got = sess.run(None, {k: v.numpy() for k, v in batch.items() if k in names})[0]
        assert got.shape == ref.shape == (n, 2) and np.abs(got - ref).max() <= DEFAULT_TOLERANCE


def test_int8_is_smaller_and_reports_its_dev_metric(runs, exported):
    check_int8_export(runs["single"], exported["single"])
    assert not (runs["pair"] / "export" / "model.int8.onnx").exists()  # only when asked


def test_directories_of_no_known_kind_are_one_line_errors(runs, exported, tmp_path, capsys):
    run = runs["single"]
    empty = tmp_path / "empty"
    empty.mkdir()
    err = one_line_error(capsys, ["export", "--out", str(empty)])
    assert "not a bertnas run directory" in err and "results.json + model/" in err
    assert "bertnas nasbert finetune --out DIR" in err and "bertnas run" in err

    old = tmp_path / "old"  # results.json from before the data source was recorded
    shutil.copytree(run / "model", old / "model")
    results = json.loads((run / "results.json").read_text())
    (old / "results.json").write_text(json.dumps({k: v for k, v in results.items() if k != "data"}))
    err = one_line_error(capsys, ["export", "--out", str(old)])
    assert "does not say where the task data is" in err and f"--out {old}` again" in err
    assert "bertnas nasbert finetune --model" in err

    no_model = tmp_path / "no-model"
    no_model.mkdir()
    shutil.copy(run / "results.json", no_model / "results.json")
    err = one_line_error(capsys, ["export", "--out", str(no_model)])
    assert str(no_model / "model") in err and "bertnas nasbert finetune" in err

    stranger = tmp_path / "stranger"  # some other tool's results.json
    stranger.mkdir()
    (stranger / "results.json").write_text('{"accuracy": 0.9}')
    assert "not written by `bertnas nasbert finetune`" in one_line_error(capsys, ["export", "--out", str(stranger)])

    supernet = tmp_path / "nb"
    (supernet / "supernet").mkdir(parents=True)
    (supernet / "settings.json").write_text("{}")
    err = one_line_error(capsys, ["export", "--out", str(supernet)])
    assert "supernet run" in err and "bertnas nasbert finetune --model" in err

    err = one_line_error(capsys, ["export", "--out", str(run / "model")])  # the model dir, not its run
    assert "model directory" in err and f"--out {run}" in err
    for d in (empty, old, no_model, stranger, supernet, run / "model"):
        assert not (d / "export").exists() and not [p for p in d.iterdir() if p.name.startswith(".export")]


def test_a_failed_check_keeps_the_previous_export(runs, exported, capsys):
    run = runs["bert"]
    before = (run / "export" / "export.json").read_bytes()
    err = one_line_error(capsys, ["export", "--out", str(run), "--tolerance", "1e-30", "--no-latency"])
    assert "tolerance" in err
    assert (run / "export" / "export.json").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".export")]


# --- the benchmark report (python -m bertnas.nasbert.report RUN) -------------------------------------------------


def _benchmark_dir(root: Path, runs: dict[str, Path]) -> Path:
    """The layout benchmarks/nasbert.sh leaves: selection.json and {sst2,mrpc}/NAME/results.json."""
    results = json.loads((runs["single"] / "results.json").read_text())
    (root / "sst2" / "S").mkdir(parents=True)
    (root / "mrpc" / "S").mkdir(parents=True)
    shutil.copy(runs["single"] / "results.json", root / "sst2" / "S" / "results.json")
    shutil.copy(runs["pair"] / "results.json", root / "mrpc" / "S" / "results.json")
    (root / "selection.json").write_text(json.dumps({"models": [{"name": "S", "architecture": ARCHITECTURE,
                                                                 "params": results["params"]}]}))
    return root


def _teacher_row(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| fine-tuned teacher")]


def test_report_teacher_row_comes_from_the_runs_results(runs, teacher, tmp_path):
    from bertnas.nasbert.report import report

    run = _benchmark_dir(tmp_path / "bench", runs)
    single = json.loads((runs["single"] / "results.json").read_text())
    pair = json.loads((runs["pair"] / "results.json").read_text())
    text = report(run)
    assert "0.8876" not in text and "0.8620" not in text and "MiniLM" not in text  # the old fixed row
    [row] = _teacher_row(text)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == f"fine-tuned teacher ({teacher.name})" and cells[1] == "2L-H32"
    assert cells[2] == f"{single['teacher_params'] / 1e6:.2f}M" and cells[3] == cells[4] == "-"
    assert cells[7] == f"{single['teacher_dev']['accuracy']:.4f}" and cells[8] == f"{pair['teacher_dev']['accuracy']:.4f}"
    assert "- teacher latency: the run has no teacher_latency.json" in text

    # the teacher's latency as the benchmark measures it: its row and the speed-up lines use it
    from transformers import AutoModelForSequenceClassification

    from bertnas.measure.profile import profile_classifier

    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    lat = profile_classifier(model, model.config.vocab_size, (1, 32), seq_len=32, threads=1, repeats=2)
    (run / "teacher_latency.json").write_text(json.dumps(lat))
    results = json.loads((run / "sst2" / "S" / "results.json").read_text())
    results.update(latency_ms_b1=0.5, latency_ms_b32=5.0)
    (run / "sst2" / "S" / "results.json").write_text(json.dumps(results))
    proc = subprocess.run([sys.executable, "-m", "bertnas.nasbert.report", str(run)], capture_output=True, text=True,
                          timeout=120)  # as benchmarks/nasbert.sh calls it
    assert proc.returncode == 0, proc.stderr[-2000:]
    [row] = _teacher_row(proc.stdout)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == f"{lat['latency_ms_b1']:.2f}" and cells[2] == f"{lat['params'] / 1e6:.2f}M"
    assert f"- NAS-BERT S: {lat['latency_ms_b1'] / 0.5:.1f}x faster than the teacher at b1" in proc.stdout
    assert "teacher latency: the run has no" not in proc.stdout


def test_report_says_what_the_run_lacks_instead_of_inventing_it(runs, tmp_path):
    from bertnas.nasbert.report import report

    run = _benchmark_dir(tmp_path / "bench", runs)
    for task in ("sst2", "mrpc"):  # results written without the teacher's dev metric, and no teacher latency
        path = run / task / "S" / "results.json"
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "teacher_dev"}))
    text = report(run)
    assert not _teacher_row(text) and "No teacher row" in text and "teacher_dev" in text

    # two students of one task distilled from different teachers: no single number is claimed for the teacher
    shutil.copytree(run / "sst2" / "S", run / "sst2" / "T")
    for name, acc in (("S", 0.5), ("T", 0.75)):
        path = run / "sst2" / name / "results.json"
        r = json.loads(path.read_text())
        r.update(teacher_dev={"accuracy": acc}, teacher=f"/teachers/t-{name}")
        path.write_text(json.dumps(r))
    text = report(run)
    [row] = _teacher_row(text)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "fine-tuned teacher (t-S, t-T)" and cells[7] == "varies" and cells[8] == "-"
    assert "sst2: the students were distilled from 2 different teachers" in text
    assert "t-S 0.5000 (S)" in text and "t-T 0.7500 (T)" in text
    assert "teacher dev metric for mrpc: not in the run's fine-tuning results" in text


def test_report_has_a_column_for_the_pair_regression_task(runs, tmp_path):
    from bertnas.nasbert.report import report

    run = _benchmark_dir(tmp_path / "bench", runs)
    assert "MRPC-score" not in report(run)  # a run without the regression task: no column, no note
    task = run / "mrpc-score" / "task"
    (task / "teacher").mkdir(parents=True)
    (task / "pair_regression.json").write_text(json.dumps({"teacher": "/t/mrpc-minilm", "dev": {"word_overlap_pearson": 0.531}}))
    r = json.loads((runs["pair"] / "results.json").read_text())
    r.update(task="stsb", headline="pearson", dev={"pearson": 0.8123, "spearman": 0.8}, teacher_dev={"pearson": 0.999},
             teacher=str(task / "teacher"))
    (run / "mrpc-score" / "S").mkdir(parents=True)
    (run / "mrpc-score" / "S" / "results.json").write_text(json.dumps(r))
    text = report(run)
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    row = next(line for line in text.splitlines() if line.startswith("| NAS-BERT S"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert header.rstrip(" |").endswith("MRPC-score Pearson") and cells[-1] == "0.8123"
    [teacher] = _teacher_row(text)
    assert teacher.rstrip(" |").endswith("0.9990") and "mrpc-minilm margin" in teacher  # named after its classifier
    assert "word overlap (Jaccard) vs the target on dev: Pearson 0.531" in text
    from bertnas.nasbert.report import main as report_main

    assert report_main([str(run), "--json", str(tmp_path / "numbers.json")]) == 0  # what docs/ keeps beside the tables
    numbers = json.loads((tmp_path / "numbers.json").read_text())
    assert numbers["finetune"]["mrpc-score"]["S"][0]["dev"]["pearson"] == 0.8123
    assert numbers["pair_regression"]["dev"]["word_overlap_pearson"] == 0.531 and numbers["selection"][0]["name"] == "S"
