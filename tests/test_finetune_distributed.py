"""Fine-tuning under torchrun (2 gloo processes): NAS-BERT's fine-tuning with KD and teacher-labelled copies, and
teacher fine-tuning through the command line, end on both ranks as one process on the same global batches ends (up
to float rounding: the ranks' shard losses are summed). Rank 0 alone runs the teacher (the other rank reads the
cache it fills) and writes. Dropout is 0, so runs agree up to rounding."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertnas.cli import main
from bertnas.nasbert.config import FinetuneSettings
from bertnas.nasbert.finetune import finetune
from conftest import make_teacher

WORKER = r'''
import json, sys
from pathlib import Path
from bertnas.cli import main
from bertnas.nasbert.config import FinetuneSettings
from bertnas.nasbert.finetune import finetune
from bertnas.teacher import augment, knowledge
from bertnas.training import distributed as ddp

a = json.loads(sys.argv[1])
passes = []
for mod in (knowledge, augment):  # count this rank's teacher passes
    def counted(*args, _pass=mod.teacher_pass, **kwargs):
        passes.append(1)
        return _pass(*args, **kwargs)
    mod.teacher_pass = counted
r = finetune(a["student"], a["teacher"], "synthetic-pair", a["out"], FinetuneSettings(**a["settings"]),
             data_dir=a["data"], measure=False)
report = {"rank": ddp.rank(), "world": ddp.world_size(), "history": r["history"], "dev": r["dev"],
          "epoch_kept": r["epoch_kept"], "teacher_passes": len(passes)}
Path(a["reports"], f"rank{ddp.rank()}.json").write_text(json.dumps(report))
sys.exit(main(a["teacher_cli"]))  # last: the command line leaves the process group when it ends
'''


def _settings(cache: Path) -> dict:
    return dict(epochs=2, batch_size=16, lr=2e-3, max_seq_len=24, augment=1, val_examples=60, threads=1, device="cpu",
                seed=3, cache_dir=str(cache))


def _teacher_cli(bert: Path, data: Path, out: Path) -> list[str]:
    return ["teacher", "finetune", "--model", str(bert), "--task", "synthetic-pair", "--data-dir", str(data),
            "--out", str(out), "--epochs", "2", "--lr", "1e-3", "--batch-size", "16", "--max-seq-len", "24",
            "--seed", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from bertnas.data.synthetic import generate, write_task
    from bertnas.nasbert.modeling import NasBertConfig, NasBertForSequenceClassification

    root = tmp_path_factory.mktemp("ft-ddp")
    teacher = make_teacher(root / "teacher", seed=5)
    tok = AutoTokenizer.from_pretrained(teacher)
    torch.manual_seed(0)
    student = NasBertForSequenceClassification(NasBertConfig(
        vocab_size=len(tok), max_position_embeddings=64, hidden_size=32, dropout=0.0,
        architecture="E=16 | 16:mha,sep3 | 32:ffn,identity"))
    student.save_pretrained(root / "student")
    tok.save_pretrained(root / "student")
    bert = BertForSequenceClassification(BertConfig(  # a "pre-trained" BERT without dropout for the teacher command
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2))
    bert.save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    data = write_task(generate("pair", n_train=300, n_dev=40, seed=2), root / "pair")

    one = finetune(str(root / "student"), str(teacher), "synthetic-pair", root / "one",
                   FinetuneSettings(**_settings(root / "cache-one")), data_dir=str(data), measure=False)
    assert main(_teacher_cli(root / "bert", data, root / "teacher-one")) == 0

    (root / "reports").mkdir()
    (root / "worker.py").write_text(WORKER)
    args = {"student": str(root / "student"), "teacher": str(teacher), "out": str(root / "two"), "data": str(data),
            "settings": _settings(root / "cache-two"), "reports": str(root / "reports"),
            "teacher_cli": _teacher_cli(root / "bert", data, root / "teacher-two")}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(root / "worker.py"), json.dumps(args)], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((root / "reports" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return root, one, ranks, proc.stdout


def _losses(history: list[dict]) -> list[float]:
    return [x for h in history for x in (h["train_loss"], h["ce"], h["kd"])]


def test_nasbert_finetune_two_ranks_end_as_one_process(runs):
    root, one, ranks, _ = runs
    assert [r["world"] for r in ranks] == [2, 2]
    assert _losses(ranks[0]["history"]) == pytest.approx(_losses(one["history"]), rel=1e-4)
    assert _losses(ranks[1]["history"]) == _losses(ranks[0]["history"])  # the ranks agree exactly
    assert ranks[0]["epoch_kept"] == ranks[1]["epoch_kept"] == one["epoch_kept"]
    assert ranks[0]["dev"] == pytest.approx(one["dev"], abs=1e-6)
    a = load_file(str(root / "one" / "model" / "model.safetensors"))
    b = load_file(str(root / "two" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-3) for k in a)
    assert json.loads((root / "two" / "results.json").read_text())["ranks"] == 2


def test_only_rank_0_runs_the_teacher_and_writes(runs):
    root, _, ranks, stdout = runs
    assert ranks[0]["teacher_passes"] >= 2 and ranks[1]["teacher_passes"] == 0  # logits and the copy: rank 0 only
    files = lambda d: {str(p.relative_to(d)) for p in d.rglob("*")}  # noqa: E731
    assert files(root / "two") == files(root / "one")
    assert not any(p.name.startswith(".") for p in root.glob("two*/**/*"))  # no leftover temp files or checkpoints
    assert stdout.count("teacher saved to") == 1  # the command line: rank 0 reports


def test_teacher_finetune_two_ranks_end_as_one_process(runs):
    root = runs[0]
    one = json.loads((root / "teacher-one" / "teacher_metrics.json").read_text())
    two = json.loads((root / "teacher-two" / "teacher_metrics.json").read_text())
    assert two["ranks"] == 2 and one["ranks"] == 1
    assert two["dev"] == pytest.approx(one["dev"], abs=1e-6)
    a = load_file(str(root / "teacher-one" / "model.safetensors"))
    b = load_file(str(root / "teacher-two" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-3) for k in a)
    assert not list(root.glob(".teacher-two*"))  # the checkpoint beside it is gone
