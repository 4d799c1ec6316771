"""`bertnas nasbert finetune`: the epoch kept is chosen on a validation split carved from the training data (the dev
set is only reported), teacher-labelled augmentation adds copies whose labels are the teacher's, and bad settings
are one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertnas.cli import main
from conftest import keyword_task, make_teacher, one_line_error, stopped_after_first_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A tiny teacher, a tiny NAS-BERT student with its vocabulary, and a 400-example synthetic pair task."""
    from transformers import AutoTokenizer

    from bertnas.data.synthetic import generate, write_task
    from bertnas.nasbert.modeling import NasBertConfig, NasBertForSequenceClassification

    root = tmp_path_factory.mktemp("nbft")
    teacher = make_teacher(root / "teacher", seed=5)
    tok = AutoTokenizer.from_pretrained(teacher)
    torch.manual_seed(0)
    student = NasBertForSequenceClassification(NasBertConfig(vocab_size=len(tok), max_position_embeddings=160,
                                                             hidden_size=32, architecture="E=16 | 16:mha,sep3 | 32:ffn,identity"))
    student.save_pretrained(root / "student")
    tok.save_pretrained(root / "student")
    data = write_task(generate("pair", n_train=400, n_dev=48, seed=2), root / "pair")
    keyword = keyword_task(root / "keyword", n_train=400, flip_every=1)  # every dev label inverted
    return {"teacher": teacher, "student": root / "student", "data": data, "keyword": keyword, "root": root}


def _run(setup, name: str, *extra: str, keyword: bool = False, model: str = "student", exit_code: int = 0) -> dict:
    out = setup["root"] / name
    train, dev = setup["keyword"]
    data = (["--task", "keyword", "--train-file", str(train), "--dev-file", str(dev)] if keyword else
            ["--task", "synthetic-pair", "--data-dir", str(setup["data"])])
    code = main(["nasbert", "finetune", "--model", str(setup[model]), "--teacher", str(setup["teacher"]),
                 *data, "--out", str(out), "--max-seq-len", "24",
                 "--batch-size", "16", "--threads", "1", "--no-measure", "--lr", "2e-3", *extra])
    assert code == exit_code
    return json.loads((out / "results.json").read_text()) if code == 0 else {}


def _no_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_killed_after_an_epoch_resumes_to_the_uninterrupted_result(setup, monkeypatch):
    """Fine-tuning checkpoints every epoch (the shared resumable loop): interrupted right after epoch 1's
    checkpoint and run again with the same command, it ends where an uninterrupted run ends."""
    from safetensors.torch import load_file

    args = ("--epochs", "3", "--val-examples", "60", "--augment", "1")
    full = _run(setup, "full", *args)
    with stopped_after_first_checkpoint(monkeypatch):
        _run(setup, "cut", *args, exit_code=130)  # the CLI's exit code for an interruption (it prints how to resume)
    out = setup["root"] / "cut"
    assert not (out / "results.json").exists()  # nothing half-written: the model and results come at the end
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = _run(setup, "cut", *args)
    assert _no_seconds(resumed["history"]) == _no_seconds(full["history"])
    assert resumed["dev"] == full["dev"] and resumed["epoch_kept"] == full["epoch_kept"]
    assert not (out / "checkpoint.pt").exists()  # removed once the model and results.json are written
    a, b = load_file(setup["root"] / "full" / "model" / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # other settings never resume from it: a new run from the start
    other = _run(setup, "cut", "--epochs", "3", "--val-examples", "60", "--augment", "1", "--lr", "1e-3")
    assert len(other["history"]) == 3 and _no_seconds(other["history"]) != _no_seconds(full["history"])


def test_the_epoch_kept_is_the_best_on_validation_and_dev_is_only_reported(setup):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertnas.data.encode import encode
    from bertnas.data.readers import load_task
    from bertnas.training.evaluation import evaluate

    # a BERT (the kind of the hand-designed baseline) learns the keyword task in one epoch or two
    r = _run(setup, "val", "--epochs", "4", "--lr", "3e-3", "--batch-size", "8", "--val-examples", "80", keyword=True,
             model="teacher")
    assert r["val_examples"] == 80 and r["train_examples"] == 320 and r["augmented_examples"] == 0
    val_scores = [h["val"]["accuracy"] for h in r["history"]]
    dev_scores = [h["dev"]["accuracy"] for h in r["history"]]
    assert r["epoch_kept"] == 1 + val_scores.index(max(val_scores))  # the first best epoch on validation
    # (the run is one where keeping the last epoch, or the best on dev, would keep another epoch)
    assert r["epoch_kept"] != 1 + dev_scores.index(max(dev_scores)) and r["epoch_kept"] != len(r["history"])
    kept = r["history"][r["epoch_kept"] - 1]
    assert r["dev"] == kept["dev"] and r["val"] == kept["val"]
    # the saved model is the kept epoch's: its dev metric is the one reported
    model = AutoModelForSequenceClassification.from_pretrained(setup["root"] / "val" / "model")
    data = load_task("keyword", train_file=str(setup["keyword"][0]), dev_file=str(setup["keyword"][1]))
    dev = encode(AutoTokenizer.from_pretrained(setup["root"] / "val" / "model"), data.dev, 24)
    got = evaluate(lambda b: model(**{k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits,
                   dev, data.spec, torch.device("cpu"))
    assert got["accuracy"] == pytest.approx(r["dev"]["accuracy"], abs=1e-9)


def test_without_a_validation_split_the_last_epoch_is_kept(setup):
    r = _run(setup, "noval", "--epochs", "2", "--val-examples", "0")
    assert r["val_examples"] == 0 and r["val"] is None and r["epoch_kept"] == 2
    assert r["dev"] == r["history"][-1]["dev"]


def test_augmentation_adds_teacher_labelled_copies_and_is_seeded(setup):
    a = _run(setup, "aug-a", "--epochs", "1", "--augment", "2", "--val-examples", "40")
    assert a["train_examples"] == 360 and a["augmented_examples"] == 720
    assert a["settings"]["augment"] == 2
    b = _run(setup, "aug-b", "--epochs", "1", "--augment", "2", "--val-examples", "40")
    assert _no_seconds(a["history"]) == _no_seconds(b["history"])  # same seed, same run


def test_copies_are_labelled_with_the_teachers_prediction(setup):
    from bertnas.data.encode import Ragged, encode
    from bertnas.data.readers import load_task
    from bertnas.nasbert.config import FinetuneSettings
    from bertnas.nasbert.finetune import with_teacher
    from bertnas.teacher.loading import load_teacher

    data = load_task("synthetic-pair", str(setup["data"]))
    tch = load_teacher(str(setup["teacher"]), data.spec)
    train = encode(tch.tokenizer, data.train, 24)
    dev = encode(tch.tokenizer, data.dev, 24)
    gold = train.labels.clone()
    out, soft, _ = with_teacher(tch, train, dev, data.spec, FinetuneSettings(augment=1))
    n = len(train)
    assert len(out) == 2 * n and soft.shape == (2 * n, 2)
    assert torch.equal(out.labels[:n], gold)  # the originals keep their gold labels
    assert torch.equal(out.labels[n:], soft[n:].argmax(-1))  # a copy's label is the teacher's prediction
    assert not torch.equal(out.labels[n:], gold)  # (a random teacher disagrees with the gold labels somewhere)
    changed = sum(list(a) != list(b) for a, b in zip(out.input_ids[n:], out.input_ids[:n]))
    assert changed > n // 4  # most copies differ from their original
    again, _, _ = with_teacher(tch, train, dev, data.spec, FinetuneSettings(augment=1))
    other, _, _ = with_teacher(tch, train, dev, data.spec, FinetuneSettings(augment=1, seed=1))
    assert again.input_ids == out.input_ids and other.input_ids[n:] != out.input_ids[n:]  # copies follow the seed
    assert all(1 in t for t in out.token_type_ids[n:])  # pairs stay pairs (segment B kept)
    assert isinstance(out.input_ids, Ragged)  # the copies are read back memory-mapped, as AdaBERT's


@pytest.mark.parametrize("flag, value, words", [
    ("--augment", "-1", "invalid config value augment=-1: must be >= 0 (0 turns augmentation off) (flag --augment)"),
    ("--augment-replace-prob", "1.5", "augment_replace_prob=1.5: must be in [0, 1] (flag --augment-replace-prob)"),
    ("--val-examples", "300", "--val-examples 300 would leave 100 of 400"),
])
def test_bad_settings_are_one_line_errors(setup, capsys, flag, value, words):
    err = one_line_error(capsys, ["nasbert", "finetune", "--model", str(setup["student"]), "--teacher",
                                  str(setup["teacher"]), "--task", "synthetic-pair", "--data-dir", str(setup["data"]),
                                  "--out", str(setup["root"] / "bad"), "--no-measure", flag, value])
    assert words in err
    assert not (setup["root"] / "bad").exists()
