"""benchmarks/gpu_pipeline.py (issue #21): one line and exit 2 without CUDA; on the CPU, every stage of the demo run
through the real CLI and timed; the stages built for a user's data are commands the CLI accepts."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bertnas.cli import build_parser
from conftest import make_teacher

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_pipeline.py"
STAGES = ["demo teacher", "adabert probe", "adabert search", "adabert retrain", "adabert evaluate", "nasbert supernet",
          "nasbert latency", "nasbert select", "nasbert baseline", "nasbert pretrain", "nasbert finetune"]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    said = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2, said
    assert "\n" not in said and "CUDA" in said and "--device cpu" in said and "Traceback" not in said, said
    assert not (tmp_path / "out").exists()  # nothing is written before the check


@pytest.mark.slow  # 11 CLI processes, mostly start-up: 70-120 s here beside another job
def test_cpu_tiny_runs_every_stage(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--size", "tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_pipeline.json").read_text())
    assert [s["stage"] for s in report["stages"]] == STAGES
    for s in report["stages"]:
        assert s["status"] == "ok" and s["seconds"] > 0 and 0 < s["cli_seconds"] <= s["seconds"], s
        assert s["peak_gpu_mb"] is None and s["command"].startswith("bertnas ") and Path(s["log"]).is_file(), s
    assert report["device"] == "cpu" and report["gpu"] is None and report["total_seconds"] > 0
    assert "| nasbert finetune |" in proc.stdout and "n/a (cpu)" in proc.stdout
    work = out / "work"  # each pipeline's end product
    assert (work / "adabert" / "results.json").is_file() and (work / "nasbert-finetuned" / "results.json").is_file()


@pytest.mark.parametrize("pretrained, amp", [(False, False), (True, True)])
def test_user_data_stages_are_commands_the_cli_accepts(tmp_path, synthetic_files, tiny_teacher, pretrained, amp):
    gp = load_script()
    data = tmp_path / "SST-2"  # the task comes from the GLUE folder name
    data.symlink_to(synthetic_files["single"], target_is_directory=True)
    argv = ["--device", "cpu", "--size", "tiny", "--data-dir", str(data), "--teacher", str(tiny_teacher)]
    encoder = make_teacher(tmp_path / "encoder") if pretrained else tiny_teacher
    args = gp.parse_args(argv + (["--pretrained", str(encoder)] if pretrained else []) + (["--amp"] if amp else []))
    assert args.task == "sst2"
    stages, later = gp.plan(args, tmp_path / "work", gp.SIZES["tiny"])
    stages += gp.after_select(later, str(tmp_path / "model"), gp.SIZES["tiny"], "cpu")
    assert [name for name, _ in stages] == STAGES[1:]  # no demo teacher with the user's data
    parser = build_parser()
    for name, stage_argv in stages:
        full = stage_argv + gp.encoder_flags(name, later["encoder"], gp.SIZES["tiny"])
        parsed = parser.parse_args(full)  # an unknown flag would exit here
        if name != "nasbert baseline":  # baseline has no --device: it trains on the supernet's
            assert parsed.device == "cpu", name
        assert bool(getattr(parsed, "amp", False)) == (amp and name in ("adabert probe", "nasbert supernet", "nasbert pretrain",
                                                                   "nasbert finetune")), name
        if name == "nasbert supernet":
            assert parsed.teacher == str(encoder) and parsed.num_blocks == 2
        if name == "nasbert select":
            budget = float(parsed.max_params.rstrip("KM")) * {"K": 1e3, "M": 1e6}[parsed.max_params[-1]]
            assert 0.4 < budget / gp.encoder_shape(encoder)["params"] < 0.6, parsed.max_params


def test_flag_mistakes_are_one_argparse_error(tmp_path, tiny_teacher, capsys):
    gp = load_script()
    for argv, fragment in ((["--teacher", str(tiny_teacher)], "--data-dir and --teacher go together"),
                           (["--data-dir", str(tmp_path), "--teacher", str(tiny_teacher)], "pass --task"),
                           (["--pretrained", str(tiny_teacher)], "--pretrained needs --data-dir"),
                           (["--device", "mps"], "use cuda, cuda:N or cpu")):
        with pytest.raises(SystemExit) as info:
            gp.parse_args(argv)
        assert info.value.code == 2 and fragment in capsys.readouterr().err


def test_failed_stage_ends_the_run_with_its_line(tmp_path, tiny_teacher):
    (tmp_path / "SST-2").mkdir()  # a GLUE folder without train.tsv: the first stage fails
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--size", "tiny", "--out", str(out),
                           "--data-dir", str(tmp_path / "SST-2"), "--teacher", str(tiny_teacher)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stage 'adabert probe' failed (exit 2): bertnas: error:" in proc.stderr and "Traceback" not in proc.stderr
    rows = json.loads((out / "gpu_pipeline.json").read_text())["stages"]
    assert [(r["stage"], r["status"], r["returncode"]) for r in rows] == [("adabert probe", "failed", 2)]
