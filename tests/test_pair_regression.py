"""benchmarks/pair_regression.py: a pair regression task built from a pair classifier (its logit margin as the
target), read back as STS-B by `bertnas nasbert finetune`, and its one-line refusal of a teacher it cannot use."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bertnas.cli import main
from conftest import make_teacher

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pair_regression.py"
pytestmark = pytest.mark.usefixtures("one_thread")


def _build(teacher: Path, data: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--teacher", str(teacher), "--task", "synthetic-pair",
                           "--data-dir", str(data), "--out", str(out), "--max-seq-len", "24", "--threads", "1"],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    from bertnas.data.synthetic import generate, write_task

    root = tmp_path_factory.mktemp("pairreg")
    teacher = make_teacher(root / "teacher", seed=2)
    data = write_task(generate("pair", n_train=400, n_dev=40, seed=3), root / "pair")
    proc = _build(teacher, data, root / "out")
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "teacher": teacher, "data": data, "out": root / "out"}


def test_the_target_is_the_classifiers_margin_and_the_regression_teacher_computes_it(built):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = list(csv.DictReader(open(built["out"] / "data" / "dev.tsv"), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(rows) == 40 and set(rows[0]) == {"sentence1", "sentence2", "score"}
    clf = AutoModelForSequenceClassification.from_pretrained(built["teacher"]).eval()
    reg = AutoModelForSequenceClassification.from_pretrained(built["out"] / "teacher").eval()
    assert reg.config.num_labels == 1 and reg.config.problem_type == "regression"
    tok = AutoTokenizer.from_pretrained(built["out"] / "teacher")
    enc = tok([r["sentence1"] for r in rows[:8]], [r["sentence2"] for r in rows[:8]], truncation=True, max_length=24,
              padding=True, return_tensors="pt")
    with torch.no_grad():
        margin = clf(**enc).logits @ torch.tensor([-1.0, 1.0])
        pred = reg(**enc).logits.squeeze(-1)
    target = torch.tensor([float(r["score"]) for r in rows[:8]])
    assert torch.allclose(pred, margin, atol=1e-5) and torch.allclose(target, margin, atol=1e-5)
    summary = json.loads((built["out"] / "pair_regression.json").read_text())
    assert summary["dev"]["examples"] == 40 and -1.0 <= summary["dev"]["word_overlap_pearson"] <= 1.0


def test_nasbert_finetune_reads_it_as_stsb(built):
    out = built["root"] / "ft"
    code = main(["nasbert", "finetune", "--model", str(built["teacher"]), "--teacher", str(built["out"] / "teacher"),
                 "--task", "stsb", "--data-dir", str(built["out"] / "data"), "--out", str(out), "--max-seq-len", "24",
                 "--batch-size", "16", "--epochs", "1", "--augment", "1", "--threads", "1", "--no-measure"])
    assert code == 0
    r = json.loads((out / "results.json").read_text())
    assert r["headline"] == "pearson" and r["teacher_dev"]["pearson"] > 0.99  # the teacher computes the target
    assert r["val_examples"] == 40 and r["augmented_examples"] == r["train_examples"] == 360
    assert r["val"]["pearson"] == max(h["val"]["pearson"] for h in r["history"])


@pytest.mark.parametrize("case, words", [
    ("three labels", "has 3 output(s)"),
    ("missing teacher", "not found: check the path"),
    ("out exists", "exists: pass --force"),
])
def test_bad_input_is_refused_in_one_line_and_writes_nothing(built, case, words):
    teacher, out = built["teacher"], built["root"] / f"bad-{case.replace(' ', '-')}"
    if case == "three labels":
        teacher = make_teacher(built["root"] / "three", num_labels=3)
    elif case == "missing teacher":
        teacher = built["root"] / "no-such-teacher"
    else:
        out = built["out"]
    before = sorted(p.name for p in built["root"].iterdir())
    proc = _build(teacher, built["data"], out)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("pair_regression: error: ")
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in built["root"].iterdir()) == before  # nothing new, nothing replaced
    assert (built["out"] / "pair_regression.json").is_file()


def test_a_labels_order_other_than_the_tasks_gives_the_same_target(built, tmp_path):
    """A teacher whose output columns are the task's labels in the other order (by name) scores the same margin."""
    from transformers import AutoModelForSequenceClassification

    flipped = tmp_path / "flipped"
    model = AutoModelForSequenceClassification.from_pretrained(built["teacher"])
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.config.id2label = {0: "1", 1: "0"}  # the synthetic task's labels are "0", "1": named, in the other order
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(flipped)
    shutil.copytree(built["teacher"], flipped, dirs_exist_ok=True, ignore=shutil.ignore_patterns("config.json", "*.safetensors"))
    proc = _build(flipped, built["data"], tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    read = lambda d: [float(r["score"]) for r in csv.DictReader(open(d / "data" / "dev.tsv"), delimiter="\t",
                                                                   quoting=csv.QUOTE_NONE)]
    assert read(tmp_path / "out") == pytest.approx(read(built["out"]), abs=1e-5)
