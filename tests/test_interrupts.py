"""Interrupted runs: SIGKILL mid-search and Ctrl-C (SIGINT), then the same command again, end with the architecture
an uninterrupted run finds; Ctrl-C prints one line naming the stage and the command that resumes, exit 130."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# search epochs of ~10 steps each, 12 of them: still running after the first epoch's checkpoint, even with the
# fused optimizers on a quiet CPU (with 6, the search once finished within the 0.2 s the test used to wait)
SETTINGS = ["--max-seq-len", "32", "--hidden-size", "16", "--k-max", "3", "--search-epochs", "12",
            "--retrain-epochs", "1", "--probe-epochs", "1", "--search-batch-size", "16", "--retrain-batch-size", "16",
            "--eval-seq-len", "32", "--latency-repeats", "1", "--latency-threads", "1", "--device", "cpu", "--seed", "3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def _command(teacher: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "bertnas.cli", "run", "--teacher", str(teacher), "--task", "synthetic-single",
            "--train-file", str(data / "train.tsv"), "--dev-file", str(data / "dev.tsv"), "--out", str(out), *SETTINGS]


def _genotype(out: Path) -> str:
    return json.loads((out / "search" / "genotype.json").read_text())["genotype_str"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _sigint_as_at_a_terminal() -> None:
    """Give the child the SIGINT disposition of a command typed at a terminal. A test runner started in the
    background by a non-interactive shell (as CI may be) inherits SIGINT ignored, and Python keeps an inherited
    SIG_IGN instead of raising KeyboardInterrupt: the signal was then dropped and the search ran to its end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_stop_mid_search(cmd: list[str], out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start ``cmd``; once the first search checkpoint exists, wait a moment (into the next epoch) and send ``sig``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=_sigint_as_at_a_terminal)
    ckpt = out / "checkpoints" / "search.pt"
    deadline = time.monotonic() + 240
    try:
        while not ckpt.is_file():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no search checkpoint appeared: {proc.communicate()[1][-3000:]}")
            time.sleep(0.02)
        time.sleep(0.02)  # into the next epoch, well before the search ends
        assert proc.poll() is None, "the search finished before it could be interrupted: raise --search-epochs"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (out / "search" / "genotype.json").exists()  # stopped before the search finished
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_teacher, synthetic_files) -> str:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    _run(_command(tiny_teacher, synthetic_files["single"], out))
    return _genotype(out)


def test_sigkill_mid_search_then_the_same_command_finds_the_same_architecture(
        uninterrupted, tmp_path, tiny_teacher, synthetic_files):
    out = tmp_path / "run"
    cmd = _command(tiny_teacher, synthetic_files["single"], out)
    killed = _start_and_stop_mid_search(cmd, out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "checkpoints" / "search.pt").is_file()
    resumed = _run(cmd)
    assert "resuming" in resumed.stderr  # it continued from the checkpoint rather than starting over
    assert _genotype(out) == uninterrupted
    assert not (out / "checkpoints" / "search.pt").exists()


def test_ctrl_c_prints_one_line_with_the_stage_and_the_resume_command(
        uninterrupted, tmp_path, tiny_teacher, synthetic_files):
    out = tmp_path / "run"
    cmd = _command(tiny_teacher, synthetic_files["single"], out)
    stopped = _start_and_stop_mid_search(cmd, out, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "KeyboardInterrupt" not in stopped.stderr, stopped.stderr[-3000:]
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("bertnas:")]
    assert len(lines) == 1, stopped.stderr[-3000:]
    line = lines[0]
    assert line.startswith("bertnas: interrupted in stage search")
    assert str(out / "checkpoints" / "search.pt") in line
    assert line.endswith(" ".join(["bertnas", *cmd[3:]]))  # the command that resumes it, as typed
    assert _genotype_after(cmd, out) == uninterrupted


def _genotype_after(cmd: list[str], out: Path) -> str:
    _run(cmd)
    return _genotype(out)
