"""torchrun with 2 gloo processes: teacher knowledge, probes, search and further training end with the same
architecture on both ranks, the same as one process on the same global batches finds (up to float rounding),
and only rank 0 writes files (every write of the other rank is recorded by an audit hook). Inside the same
processes, sharded steps give one process's gradients and BatchNorm statistics on the whole batch. Each rank leaves
the process group before its interpreter winds down (a gloo group alive at interpreter finalization can abort the
process: "terminate called without an active exception", once seen in CI). Further 2-process checks: ranks that
disagree on which parameters have gradients, and rank 0 failing (or being interrupted) in ``on_main``, end as
one error on every rank rather than a gloo abort or a rank waiting for the other; ranks that see different
checkpoints resume as rank 0 decides."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bertnas.training import distributed as ddp

TIMEOUT = 900  # seconds for one launch: generous, the CI machine may be busy with other jobs

# Run in every process: the stages through the Python API, then a report of what this rank found and of
# every file it created, changed, renamed or removed under the run and cache directories.
WORKER = r'''
import json, os, sys
from pathlib import Path

run_dir, cache_dir, report_dir, settings = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
roots = tuple(os.path.realpath(p) + os.sep for p in (run_dir, cache_dir))
written = []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
PATH_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate", "os.chmod",
               "os.link", "os.symlink", "shutil.copyfile", "shutil.move"}

def audit(event, args):
    if event == "open":
        path, mode, flags = args
        if not ((isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and flags & WRITE_FLAGS)):
            return
        paths = [path]
    elif event in PATH_EVENTS:
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    for p in paths:
        if isinstance(p, (str, bytes, os.PathLike)):
            full = os.path.realpath(os.fsdecode(p))
            if (full + os.sep).startswith(roots):
                written.append(f"{event} {full}")

sys.addaudithook(audit)
import atexit
import torch.distributed as dist

def group_state_at_exit():
    """Runs after bertnas's own atexit hook (registered later, run first): is the process group still up?"""
    state = {"initialized": dist.is_initialized()}
    (report_dir / f"exit{os.environ.get('RANK', '0')}.json").write_text(json.dumps(state))

atexit.register(group_state_at_exit)
import copy
import torch
from torch import nn
from bertnas import RunConfig
from bertnas.adabert import pipeline
from bertnas.training import distributed as ddp


def check_sharded_steps():
    """Gradients and BatchNorm statistics of sharded steps equal one process's on the whole batch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.BatchNorm1d(6, affine=False), nn.ReLU(),
                          nn.Conv1d(6, 6, 3, padding=1), nn.BatchNorm1d(6))
    whole = copy.deepcopy(model)
    ddp.global_batchnorm(model)
    for step, rows in enumerate((7, 1, 6)):  # split 4/3, run whole on both ranks, split 3/3
        gen = torch.Generator().manual_seed(step)
        batch = {"input_ids": torch.randn(rows, 4, 5, generator=gen), "target": torch.randn(rows, 6, 5, generator=gen)}
        local, share = ddp.shard(batch)
        with ddp.sharded_step(share):
            model.zero_grad()
            ddp.scale_loss((model(local["input_ids"]) - local["target"]).square().mean()).backward()
        ddp.average_gradients(model.parameters())
        whole.zero_grad()
        (whole(batch["input_ids"]) - batch["target"]).square().mean().backward()
        for p, q in zip(model.parameters(), whole.parameters()):
            assert torch.allclose(p.grad, q.grad, atol=1e-6), (step, p.grad, q.grad)
        for (k, a), b in zip(model.state_dict().items(), whole.state_dict().values()):
            assert torch.allclose(a.float(), b.float(), atol=1e-6), (step, k, a, b)


cfg = RunConfig(**settings, cache_dir=cache_dir).validate()
pipeline.probe(cfg, run_dir)  # joins the process group under torchrun
check_sharded_steps()
searched = pipeline.search(cfg, run_dir)
trained = pipeline.retrain(cfg, run_dir)
rank = int(os.environ.get("RANK", "0"))
report = {"rank": rank, "world": int(os.environ.get("WORLD_SIZE", "1")), "genotype": searched["genotype_str"],
          "op_probs": searched["op_probs"], "depth_probs": searched["depth_probs"],
          "search_loss": [h["loss"] for h in searched["history"]], "retrain_dev": trained["dev"], "written": written}
(report_dir / f"rank{rank}.json").write_text(json.dumps(report))
'''


def _settings(teacher: Path, data: Path) -> dict:
    """A tiny task: 145 training examples in batches of 16 (the last batch of 1 is run whole on each rank),
    no dropout (its masks are drawn per rank, so with it runs agree in distribution only)."""
    return dict(teacher=str(teacher), task="synthetic-single", train_file=str(data / "train.tsv"),
                dev_file=str(data / "dev.tsv"), max_train_examples=145, max_seq_len=32, hidden_size=16, k_max=3,
                dropout=0.0, search_epochs=2, search_warmup_epochs=0, retrain_epochs=1, probe_epochs=1,
                search_batch_size=16, retrain_batch_size=15, arch_lr=0.03, teacher_dtype="fp32", device="cpu", seed=0)


def _launch(root: Path, settings: dict, processes: int) -> subprocess.Popen:
    (root / "reports").mkdir(parents=True)
    script = root / "worker.py"
    script.write_text(WORKER)
    args = [str(root / "run"), str(root / "cache"), str(root / "reports"), json.dumps(settings)]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                if processes > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):  # the one-process run must not look like torchrun
        env.pop(key, None)
    return subprocess.Popen([*launcher, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _reports(root: Path, proc: subprocess.Popen) -> list[dict]:
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr[-4000:]
    assert "terminate called" not in stderr, stderr[-4000:]
    reports = [json.loads(p.read_text()) for p in sorted((root / "reports").glob("rank*.json"))]
    for r in reports:  # every rank left the process group before its interpreter wound down
        r["group_at_exit"] = json.loads((root / "reports" / f"exit{r['rank']}.json").read_text())
    return reports


def _stop(proc: subprocess.Popen) -> None:
    """End a launch still running (after a timeout): SIGTERM first, so that torchrun ends its workers (each runs
    in a session of its own, so killing torchrun alone would leave them running), then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_teacher, synthetic_files) -> tuple[Path, list[dict], Path, list[dict]]:
    settings = _settings(tiny_teacher, synthetic_files["single"])
    two, one = tmp_path_factory.mktemp("torchrun"), tmp_path_factory.mktemp("one")
    procs = [_launch(two, settings, 2), _launch(one, settings, 1)]  # side by side: 3 processes, 1 thread each
    try:
        return two, _reports(two, procs[0]), one, _reports(one, procs[1])
    finally:
        for proc in procs:
            _stop(proc)


def test_two_ranks_find_the_architecture_one_process_finds(runs):
    _, ranks, _, single = runs
    assert [r["world"] for r in ranks] == [2, 2] and [r["world"] for r in single] == [1]
    first, second = ranks
    assert first["genotype"] == second["genotype"] == single[0]["genotype"]
    assert [r["group_at_exit"] for r in ranks] == [{"initialized": False}] * 2  # left by bertnas's atexit hook
    # identical on both ranks: same samples, same averaged gradients
    for key in ("op_probs", "depth_probs", "search_loss", "retrain_dev"):
        assert first[key] == second[key], key
    # one process on the same global batches: the same up to float rounding (sums over shards, BatchNorm
    # statistics summed over ranks)
    flat = lambda rows: [p for row in rows for p in row]  # noqa: E731
    assert flat(first["op_probs"]) == pytest.approx(flat(single[0]["op_probs"]), abs=1e-4)
    assert first["depth_probs"] == pytest.approx(single[0]["depth_probs"], abs=1e-4)
    assert first["search_loss"] == pytest.approx(single[0]["search_loss"], rel=1e-3)


def test_only_rank_0_writes(runs):
    two, ranks, one, _ = runs
    assert ranks[0]["written"], "the audit hook saw no write at all"  # it works: rank 0 wrote the run
    assert ranks[1]["written"] == []
    assert _files(two / "run") == _files(one / "run")  # no stray files of the other rank
    assert (two / "run" / "model" / "model.safetensors").is_file()
    assert not any(p.name.startswith(".") for p in (two / "cache").iterdir())  # no leftover temp dirs


def test_without_torchrun_nothing_is_distributed(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert not ddp.launched() and not ddp.active() and ddp.is_main() and ddp.world_size() == 1
    batch = {"input_ids": torch.zeros(3, 4)}
    assert ddp.shard(batch) == (batch, None)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not ddp.launched()  # torchrun with one process: plain one-process behaviour


# Run in both processes of a second, small launch: the ways one rank's trouble must reach the other as an error
# at the same point, never as a gloo abort (a collective of different sizes) or a rank waiting for a broadcast
# that does not come. Each rank records what it saw.
UNITS = r'''
import atexit, json, os, sys, time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from bertnas.errors import BertnasError
from bertnas.training import distributed as ddp

out_dir = Path(sys.argv[1])
seen = {}

def group_state_at_exit():  # registered before ddp.setup: runs after bertnas's own atexit hook
    (out_dir / f"exit{os.environ['RANK']}.json").write_text(json.dumps({"initialized": dist.is_initialized()}))

atexit.register(group_state_at_exit)
ddp.setup(torch.device("cpu"))
rank = ddp.rank()

# 1. a parameter with a gradient on rank 0 only: the same error on both ranks (the old single all-reduce of
# the local gradients had different sizes on the two ranks, and gloo aborted a process)
a, b, c = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(5)), nn.Parameter(torch.ones(2))
a.grad = torch.full((3,), float(rank + 1))
if rank == 0:
    b.grad = torch.ones(5)
try:
    ddp.average_gradients([a, b, c])
    seen["uneven"] = "no error"
except BertnasError as exc:
    seen["uneven"] = str(exc)
    seen["uneven_alike"] = ddp.failed_alike(exc)  # every rank raised it: they may meet at the closing barrier
# still in step: the next collective pairs up, and gradients present on every rank are averaged
b.grad = None
a.grad = torch.full((3,), float(rank + 1))
ddp.average_gradients([a, b, c])
seen["after_uneven"] = {"a": a.grad.tolist(), "b": b.grad, "c": c.grad}

# 2. rank 0 interrupted inside on_main: rank 1 is told, rather than waiting for a broadcast that never comes
def interrupted():
    raise KeyboardInterrupt

def failing():
    raise ValueError("no such file")

def unpicklable():
    return lambda: 0  # a result the other ranks cannot be sent

for name, fn in (("interrupted", interrupted), ("failing", failing), ("unpicklable", unpicklable)):
    try:
        ddp.on_main(fn)
        seen[name] = "returned"
    except ddp.MainRankFailed as exc:
        seen[name] = f"MainRankFailed: {exc}"
        seen[name + "_alike"] = ddp.failed_alike(exc)
    except BaseException as exc:  # rank 0: its own error, as raised
        seen[name] = type(exc).__name__
        seen[name + "_alike"] = ddp.failed_alike(exc)
seen["answer"] = ddp.on_main(lambda: {"answer": 42})  # and the ranks are still in step
ddp.check_same("a value", 7)

# 3. resuming: each rank gets a run directory of its own (a filesystem not shared), so the ranks see different
# checkpoints; rank 0's decides for all: its epoch, history and state on every rank, or a fresh start everywhere
from bertnas.training.checkpoints import save_checkpoint
from bertnas.training.loop import Resumable

def toy_stage(fill, inputs=2):
    model = nn.Linear(inputs, 2)
    nn.init.constant_(model.weight, fill), nn.init.constant_(model.bias, fill)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)

def write_checkpoint(path, fill, epoch, inputs=2):
    model, opt = toy_stage(fill, inputs)
    model(torch.ones(1, inputs)).sum().backward()
    opt.step()
    save_checkpoint(path, {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "resume_key": "K",
                           "history": [{"epoch": e} for e in range(1, epoch + 1)], "best": fill})

def resumed(path):
    model, opt = toy_stage(100.0 * (rank + 1))  # a fresh start differs between ranks
    try:
        state = Resumable("toy", path, True, "K", model=model, opt=opt)
    except BertnasError as exc:
        return f"{type(exc).__name__}: {exc}"
    return {"restored": state.restored, "epoch": state.epoch, "history": state.history, "extra": state.extra,
            "weights": [p.flatten().tolist() for p in model.parameters()],
            "steps": [float(s["step"]) for s in opt.state_dict()["state"].values()]}

seen["resume"] = {}
for case, (writer, fill, epoch, inputs) in {"rank 0 only": (0, 7.0, 2, 2), "rank 1 only": (1, 3.0, 1, 2),
                                            "misfit on rank 0": (0, 5.0, 1, 3)}.items():
    path = out_dir / f"run-rank{rank}" / case.replace(" ", "-") / "toy.pt"
    if rank == writer:
        write_checkpoint(path, fill, epoch, inputs)
    seen["resume"][case] = resumed(path)

# 4. rank 1 leaves (its group destroyed at exit); rank 0's next collective fails as a lost peer, at once
if rank == 1:
    (out_dir / "rank1.json").write_text(json.dumps(seen))
    sys.exit(0)
t0 = time.time()
try:
    dist.all_reduce(torch.ones(4))
    seen["lost_peer"] = "no error"
except RuntimeError as exc:
    seen["lost_peer"] = ddp.lost_peer(exc)
seen["lost_peer_seconds"] = time.time() - t0
(out_dir / "rank0.json").write_text(json.dumps(seen))
'''


@pytest.fixture(scope="module")
def unit_ranks(tmp_path_factory) -> tuple[list[dict], list[dict], str]:
    root = tmp_path_factory.mktemp("units")
    script = root / "units.py"
    script.write_text(UNITS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.Popen([*launcher, str(script), str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        _, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        _stop(proc)  # after a timeout: a rank left waiting, the very failure these checks are about
    assert proc.returncode == 0, stderr[-4000:]
    assert "terminate called" not in stderr, stderr[-4000:]
    seen = [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]
    exits = [json.loads((root / f"exit{r}.json").read_text()) for r in range(2)]
    return seen, exits, stderr


def test_ranks_with_different_gradients_fail_alike(unit_ranks):
    seen, _, _ = unit_ranks
    assert seen[0]["uneven"] == seen[1]["uneven"]
    assert "gradient on 1 of 2 ranks" in seen[0]["uneven"] and "shape (5,)" in seen[0]["uneven"]
    for s in seen:
        assert s["after_uneven"] == {"a": [1.5, 1.5, 1.5], "b": None, "c": None}


def test_rank_0_failing_in_on_main_reaches_the_other_rank(unit_ranks):
    seen, _, _ = unit_ranks
    assert seen[0]["interrupted"] == "KeyboardInterrupt"
    assert seen[1]["interrupted"] == "MainRankFailed: rank 0 failed: interrupted"
    assert seen[0]["failing"] == "ValueError"
    assert seen[1]["failing"] == "MainRankFailed: rank 0 failed: ValueError: no such file"
    assert seen[0]["unpicklable"] != "returned" and seen[1]["unpicklable"].startswith("MainRankFailed: rank 0 failed")
    assert seen[0]["answer"] == seen[1]["answer"] == {"answer": 42}
    for s in seen:  # raised by both ranks at the same point: the command line lets them meet before leaving
        assert s["interrupted_alike"] and s["failing_alike"] and s["unpicklable_alike"] and s["uneven_alike"]


def test_ranks_resume_as_rank_0_decides(unit_ranks):
    """Only rank 0 reads checkpoints: a checkpoint rank 1 cannot see is resumed on both ranks with rank 0's state;
    one only rank 1 sees is ignored on both; one that does not fit stops both with the same error."""
    seen, _, _ = unit_ranks
    first, second = (s["resume"] for s in seen)
    assert first["rank 0 only"] == second["rank 0 only"]
    resumed = first["rank 0 only"]
    assert resumed["restored"] and resumed["epoch"] == 2 and resumed["history"] == [{"epoch": 1}, {"epoch": 2}]
    assert resumed["extra"] == {"best": 7.0} and resumed["steps"] == [1.0, 1.0]
    assert resumed["weights"] == [pytest.approx([6.9] * 4), pytest.approx([6.9] * 2)]  # one Adam step from 7
    assert first["rank 1 only"]["epoch"] == second["rank 1 only"]["epoch"] == 0
    assert not first["rank 1 only"]["restored"] and not second["rank 1 only"]["restored"]
    assert first["rank 1 only"]["weights"][1] == [100.0] * 2 and second["rank 1 only"]["weights"][1] == [200.0] * 2
    error = first["misfit on rank 0"]
    assert error.startswith("BertnasError: checkpoint ") and "does not fit stage toy" in error
    assert error.endswith("delete it, or pass --no-resume, to start the stage over")
    assert second["misfit on rank 0"] == "MainRankFailed: rank 0 failed: " + error.removeprefix("BertnasError: ")


def test_every_rank_leaves_the_group_before_exit(unit_ranks):
    seen, exits, _ = unit_ranks
    assert exits == [{"initialized": False}] * 2
    assert seen[0]["lost_peer"] is True  # rank 1 gone: rank 0's collective fails at once, not after a timeout
    assert seen[0]["lost_peer_seconds"] < 120


def test_teardown_without_a_group_is_a_no_op():
    assert not ddp.active()
    ddp.teardown()
    ddp.teardown(wait=True)
    assert not ddp.lost_peer(RuntimeError("Connection closed by peer"))  # no group: not a distributed error
    assert not ddp.failed_alike(None) and not ddp.failed_alike(ValueError("one rank only"))
