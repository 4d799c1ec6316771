"""NAS-BERT under torchrun (2 gloo processes): the supernet's block-wise distillation with progressive shrinking and
pre-training KD end alike on both ranks and as one process on the same global batches ends (up to float
rounding: the ranks' shard losses are summed), and only rank 0 writes. Dropout is 0, so runs agree exactly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertnas.nasbert import pipeline
from bertnas.nasbert.config import SupernetSettings

WORKER = r'''
import json, os, sys
from pathlib import Path
from bertnas.nasbert import pipeline
from bertnas.nasbert.config import SupernetSettings

run, model, save, reports, settings = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), json.loads(sys.argv[5])
summary = pipeline.supernet(SupernetSettings(**settings), run)
pre = pipeline.pretrain(run, model, save, epochs=1, batch_size=16, lr=1e-3, threads=1, device="cpu")
from bertnas.training import distributed as ddp
rank = ddp.rank()
(reports / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "world": ddp.world_size(), "shrinks": summary["shrinks"],
    "mse": [e["train_block_mse"] for e in summary["epochs"]],
    "pretrain": [{k: v for k, v in e.items() if k != "seconds"} for e in pre["log"]],  # each rank times itself
    "examples": summary["epochs"][0]["examples_this_rank"], "train": summary["train_sentences"]}))
'''


def _settings(teacher: Path, corpus: Path, cache: Path) -> dict:
    return dict(teacher=str(teacher), corpus=str(corpus), max_sentences=90, heldout_sentences=16, max_len=24,
                num_blocks=2, layers_per_block=2, hidden_sizes="16,32", epochs=3, warmup_epochs=1, bins=2,
                samples_per_bin=6, keep_per_bin=2, score_batches=1, batch_size=15, bin_by="params", dropout=0.0,
                threads=1, device="cpu", cache_dir=str(cache))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_teacher, synthetic_files):
    root = tmp_path_factory.mktemp("nb-ddp")
    settings = _settings(tiny_teacher, synthetic_files["single"], root / "cache")
    one = root / "one"
    summary = pipeline.supernet(SupernetSettings(**settings), one)  # one process, as the reference
    pipeline.select(one, max_params="80K", embedding_sizes=(16,), measure=False)
    model = one / "models" / "80K"
    pre_one = pipeline.pretrain(one, str(model), root / "pre-one", epochs=1, batch_size=16, lr=1e-3, threads=1,
                                device="cpu")
    (root / "reports").mkdir()
    (root / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(root / "worker.py"), str(root / "two"), str(model), str(root / "pre-two"),
                           str(root / "reports"), json.dumps(settings)], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "terminate called" not in proc.stderr, proc.stderr[-4000:]
    ranks = [json.loads((root / "reports" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return root, summary, pre_one, ranks


def test_two_ranks_train_the_supernet_one_process_trains(runs):
    root, summary, _, ranks = runs
    assert [r["world"] for r in ranks] == [2, 2]
    # each rank trained on its own share of every batch (together: every training sentence once per epoch)
    assert ranks[0]["examples"] + ranks[1]["examples"] == ranks[0]["train"] and 0 < ranks[1]["examples"] < ranks[0]["train"]
    assert ranks[0] == {**ranks[1], "rank": 0, "examples": ranks[0]["examples"]}  # identical otherwise: same paths,
    # same averaged gradients
    # the same shrink decisions and, up to float rounding, the same losses and weights as one process
    assert [(h["paths_before"], h["paths_after"]) for h in ranks[0]["shrinks"]] == \
        [(h["paths_before"], h["paths_after"]) for h in summary["shrinks"]]
    one_mse = [e["train_block_mse"] for e in summary["epochs"]]
    assert [x for e in ranks[0]["mse"] for x in e] == pytest.approx([x for e in one_mse for x in e], rel=1e-4)
    one_w = load_file(str(root / "one" / "supernet" / "supernet.safetensors"))
    two_w = load_file(str(root / "two" / "supernet" / "supernet.safetensors"))
    assert one_w.keys() == two_w.keys()
    assert all(torch.allclose(one_w[k], two_w[k], atol=1e-4, rtol=1e-3) for k in one_w)
    one_c = json.loads((root / "one" / "supernet" / "candidates.json").read_text())["blocks"]
    two_c = json.loads((root / "two" / "supernet" / "candidates.json").read_text())["blocks"]
    assert [[c["path"] for c in b] for b in one_c] == [[c["path"] for c in b] for b in two_c]


def test_two_ranks_pretrain_as_one_process(runs):
    root, _, pre_one, ranks = runs
    assert [e["mse"] for e in ranks[0]["pretrain"]] == pytest.approx([e["mse"] for e in pre_one["log"]], rel=1e-4)
    one_w = load_file(str(root / "pre-one" / "model.safetensors"))
    two_w = load_file(str(root / "pre-two" / "model.safetensors"))
    assert all(torch.allclose(one_w[k], two_w[k], atol=1e-4, rtol=1e-3) for k in one_w)
    assert json.loads((root / "pre-two" / "pretrain.json").read_text())["ranks"] == 2


def test_only_rank_0_writes_the_run(runs):
    root = runs[0]
    files = lambda d: {str(p.relative_to(d)) for p in d.rglob("*")}  # noqa: E731
    assert files(root / "two") == files(root / "one") - {p for p in files(root / "one") if p.startswith(("models",
                                                                                                         "selection"))}
    assert not any(p.name.startswith(".") for p in (root / "two").rglob("*"))  # no leftover temp files or dirs


def test_one_process_stages_refuse_torchrun(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                           "bertnas.cli", "nasbert", "select", "--out", str(tmp_path), "--max-params", "1M"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0  # (torchrun's own launcher then prints its ChildFailedError report)
    ours = [line for line in proc.stderr.splitlines() if line.startswith("bertnas: error")]
    assert ours and all("`bertnas nasbert select` runs in one process" in line for line in ours), proc.stderr[-2000:]
    assert all("nasbert supernet, nasbert pretrain" in line for line in ours)
