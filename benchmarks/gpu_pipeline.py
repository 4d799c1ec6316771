"""The whole AdaBERT pipeline and the NAS-BERT stages on a GPU at a small size: wall time and peak GPU memory per stage.

  python benchmarks/gpu_pipeline.py                       # the built-in demo's synthetic task and teacher, on CUDA
  python benchmarks/gpu_pipeline.py --data-dir glue/SST-2 --teacher teachers/sst2 [--pretrained pretrained/bert]
  python benchmarks/gpu_pipeline.py --device cpu --size tiny     # the same stages on the CPU (a check of the script)

Every stage is the real command line (``bertnas ...``) in a fresh process, wrapped by a few lines of Python that
reset CUDA's peak-memory counter before ``bertnas.cli.main`` and read ``torch.cuda.max_memory_allocated`` after it
(the CLI prints no memory itself). Stages, in order:

* without data flags, the demo: ``teacher finetune --from-scratch`` trains a small BERT on the demo's synthetic task
  (as ``bertnas/adabert/demo.py`` does, with fewer epochs), which is then the AdaBERT teacher and the NAS-BERT encoder;
* AdaBERT: ``probe``, ``search``, ``retrain``, ``evaluate`` (what ``bertnas run`` does, one process per step);
* NAS-BERT: ``nasbert supernet`` (encoder: ``--pretrained``, else the ``--teacher`` with its head dropped, on the
  task's training sentences as corpus), ``latency``, ``select`` (one model, half the encoder's parameters),
  ``baseline``, ``pretrain``, ``finetune`` (teacher: ``--teacher``).

Sizes are cut down (``--size small``: 2,000 examples, one or two epochs a stage; ``tiny``: a few hundred examples and
tiny models, what the tests run on a CPU). Prints a table (stage, seconds, peak GPU MB) and writes it with the
commands, versions and GPU to ``OUT/gpu_pipeline.json`` (temp file, then rename). Each stage's output is in
``OUT/logs/``; the run directories in ``OUT/work/`` (replaced on every run, so no stage resumes or skips).
Without CUDA, ``--device cuda`` (the default) prints one line and exits 2.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

WORK_MARK = ".gpu_pipeline-work"  # OUT/work is removed on a new run only when this file says the script made it

# One stage = `python -c WRAPPER DEVICE REPORT bertnas-args...`: the CLI's own entry point, with the peak GPU memory
# (and the time inside main) written to REPORT however it ends.
WRAPPER = """\
import json, sys, time
import torch
device, report, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
cuda = device.startswith("cuda")
if cuda:
    torch.cuda.reset_peak_memory_stats(device)
from bertnas.cli import main
start, code = time.perf_counter(), 1
try:
    code = main(argv)
finally:
    out = {"cli_seconds": time.perf_counter() - start}
    if cuda:
        out["peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        out["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    with open(report, "w") as f:
        json.dump(out, f)
sys.exit(code)
"""


@dataclass(frozen=True)
class Size:
    """How small every stage runs (examples, epochs, model sizes, timing repeats)."""

    demo_train: int          # synthetic task (demo only): training and dev examples
    demo_dev: int
    teacher_hidden: int      # the demo's teacher BERT: 2 layers, 2 heads (demo.py: hidden 128, 8 epochs)
    teacher_epochs: int
    train_examples: int      # AdaBERT and NAS-BERT fine-tuning: training examples read (--max-train-examples)
    max_seq_len: int
    adabert: tuple[str, ...]           # flags of probe/search/retrain/evaluate beyond data and device
    sentences: int                     # NAS-BERT corpus sentences (--max-sentences)
    heldout: int
    nasbert_len: int                   # NAS-BERT sequence length: corpus, latency table, selection
    hidden_sizes: tuple[int, ...]      # the two largest of these up to the encoder's hidden size
    embedding_sizes: tuple[int, ...]   # those up to the encoder's hidden size
    supernet: tuple[str, ...]
    latency: tuple[str, ...]
    top_t: int


SIZES = {
    "small": Size(
        demo_train=2000, demo_dev=500, teacher_hidden=128, teacher_epochs=3, train_examples=2000, max_seq_len=64,
        adabert=("--probe-epochs", "1", "--augment", "0", "--search-epochs", "2", "--search-warmup-epochs", "1",
                 "--search-max-examples", "2000", "--retrain-epochs", "1", "--latency-repeats", "5"),
        sentences=2000, heldout=64, nasbert_len=64, hidden_sizes=(64, 128, 256, 384), embedding_sizes=(64, 128, 256),
        supernet=("--epochs", "2", "--warmup-epochs", "1", "--bins", "3", "--samples-per-bin", "4", "--keep-per-bin",
                  "2", "--score-batches", "1", "--latency-repeats", "3"),
        latency=("--batch-sizes", "1,32", "--repeats", "5", "--calibration-models", "2"), top_t=4),
    "tiny": Size(
        demo_train=240, demo_dev=48, teacher_hidden=64, teacher_epochs=1, train_examples=200, max_seq_len=32,
        adabert=("--probe-epochs", "1", "--augment", "0", "--search-epochs", "1", "--search-warmup-epochs", "0",
                 "--k-max", "2", "--hidden-size", "32", "--derive-candidates", "2", "--bn-recalibration", "2",
                 "--retrain-epochs", "1", "--latency-repeats", "2", "--latency-threads", "1"),
        sentences=200, heldout=16, nasbert_len=24, hidden_sizes=(32, 64), embedding_sizes=(32, 64),
        supernet=("--epochs", "2", "--warmup-epochs", "1", "--bins", "2", "--samples-per-bin", "4", "--keep-per-bin",
                  "2", "--score-batches", "1", "--latency-repeats", "2"),
        latency=("--batch-sizes", "1", "--repeats", "2", "--calibration-models", "1"), top_t=2),
}


def no_cuda_message(device: str) -> str | None:
    """One line when ``device`` is a CUDA device this machine does not have, else None."""
    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        why = "built without CUDA" if torch.version.cuda is None else "no GPU visible"
        return (f"gpu_pipeline: no CUDA device here (torch {torch.__version__}, {why}): run this on a machine with "
                f"a GPU, or pass --device cpu to try the script")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        return f"gpu_pipeline: no CUDA device {device} here ({torch.cuda.device_count()} visible): pass --device cuda:0"
    return None


def encoder_shape(model: str | Path) -> dict:
    """Layers, hidden size and a parameter estimate of a BERT-family model (directory or hub id), from its config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model))
    h, layers = int(config.hidden_size), int(config.num_hidden_layers)
    inner = int(getattr(config, "intermediate_size", 4 * h))
    rows = config.vocab_size + getattr(config, "max_position_embeddings", 512) + getattr(config, "type_vocab_size", 2)
    return {"layers": layers, "hidden": h, "params": int(rows * h + layers * (4 * h * h + 2 * h * inner))}


def run_stage(name: str, argv: list[str], device: str, logs: Path, index: int) -> dict:
    """Run ``bertnas ARGV`` in a fresh process; its wall time, peak GPU memory and exit code."""
    slug = f"{index:02d}-" + name.replace(" ", "-")
    log, report = logs / f"{slug}.log", logs / f"{slug}.json"
    report.unlink(missing_ok=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.run([sys.executable, "-c", WRAPPER, device, str(report), *argv], stdout=f,
                              stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    inside = json.loads(report.read_text()) if report.is_file() else {}
    peak = inside.get("peak_allocated_bytes")
    reserved = inside.get("peak_reserved_bytes")
    return {"stage": name, "command": shlex.join(["bertnas", *argv]), "status": "ok" if code == 0 else "failed",
            "returncode": code, "seconds": round(seconds, 3), "cli_seconds": round(inside.get("cli_seconds", 0.0), 3),
            "peak_gpu_mb": None if peak is None else round(peak / 2**20, 1),
            "peak_gpu_reserved_mb": None if reserved is None else round(reserved / 2**20, 1), "log": str(log)}


def prepare_demo(work: Path, size: Size) -> tuple[Path, Path]:
    """The demo's synthetic task (train.tsv/dev.tsv) and its word-level tokenizer; (data dir, tokenizer dir)."""
    from bertnas.data.synthetic import build_tokenizer, generate, write_task

    data_dir = write_task(generate("single", n_train=size.demo_train, n_dev=size.demo_dev, seed=0), work / "data")
    build_tokenizer(work / "vocab").save_pretrained(work / "vocab")
    return data_dir, work / "vocab"


def plan(args: argparse.Namespace, work: Path, size: Size) -> tuple[list[tuple[str, list[str]]], dict]:
    """The stages up to ``nasbert select`` (name, bertnas arguments) and what the rest needs to know."""
    dev = ["--device", args.device]
    amp = ["--amp"] if args.amp else []  # every training stage; auto: float16 + scaler on GPUs without bfloat16
    stages: list[tuple[str, list[str]]] = []
    if args.data_dir:
        task, teacher = args.task, Path(args.teacher)
        data = ["--task", task, "--data-dir", args.data_dir, "--max-train-examples", str(size.train_examples)]
        finetune_data = ["--task", task, "--data-dir", args.data_dir]
        corpus = args.data_dir
    else:
        data_dir, vocab = prepare_demo(work, size)
        task, teacher = "synthetic", work / "teacher"
        files = ["--train-file", str(data_dir / "train.tsv"), "--dev-file", str(data_dir / "dev.tsv")]
        data, finetune_data, corpus = ["--task", task, *files], ["--task", task, *files], str(data_dir)
        stages.append(("demo teacher", ["teacher", "finetune", "--from-scratch", "--tokenizer", str(vocab), *data,
                                        "--layers", "2", "--hidden", str(size.teacher_hidden), "--heads", "2",
                                        "--epochs", str(size.teacher_epochs), "--lr", "5e-4", "--batch-size", "32",
                                        "--max-seq-len", str(size.max_seq_len), "--out", str(teacher), *dev, *amp]))
    run = str(work / "adabert")
    stages += [
        ("adabert probe", ["probe", "--teacher", str(teacher), *data, "--max-seq-len", str(size.max_seq_len),
                           "--cache-dir", str(work / "cache"), *size.adabert, "--out", run, *dev, *amp]),
        ("adabert search", ["search", "--out", run, *dev]),
        ("adabert retrain", ["retrain", "--out", run, *dev]),
        ("adabert evaluate", ["evaluate", "--out", run, "--no-onnx-latency", "--eval-seq-len", str(size.max_seq_len),
                              *dev]),
    ]
    encoder = Path(args.pretrained) if args.pretrained else teacher
    nb, seq = str(work / "nasbert"), str(size.nasbert_len)
    stages.append(("nasbert supernet", [  # the encoder's shape is read when the stage starts (the demo trains it first)
        "nasbert", "supernet", "--teacher", str(encoder), "--corpus", corpus, "--max-sentences", str(size.sentences),
        "--heldout-sentences", str(size.heldout), "--max-len", seq, "--latency-seq-len", seq, *size.supernet,
        "--cache-dir", str(work / "cache"), "--out", nb, *dev, *amp]))
    stages.append(("nasbert latency", ["nasbert", "latency", "--out", nb, "--seq-len", seq, *size.latency, *dev]))
    stages.append(("nasbert select", ["nasbert", "select", "--out", nb, "--seq-len", seq, "--top-t", str(size.top_t),
                                      *dev]))
    later = {"nb": nb, "encoder": encoder, "teacher": teacher, "finetune_data": finetune_data, "work": work, "amp": amp}
    return stages, later


def after_select(later: dict, model_dir: str, size: Size, device: str) -> list[tuple[str, list[str]]]:
    """The NAS-BERT stages that use the selected model in ``model_dir``."""
    nb, work, dev = later["nb"], later["work"], ["--device", device, *later["amp"]]
    pretrained = str(work / "nasbert-pretrained")
    return [
        ("nasbert baseline", ["nasbert", "baseline", "--out", nb]),  # no --device flag: trains on the supernet's
        ("nasbert pretrain", ["nasbert", "pretrain", "--out", nb, "--model", model_dir, "--save", pretrained,
                              "--epochs", "1", *dev]),
        ("nasbert finetune", ["nasbert", "finetune", "--model", pretrained, "--teacher", str(later["teacher"]),
                              *later["finetune_data"], "--out", str(work / "nasbert-finetuned"), "--epochs", "1",
                              "--max-seq-len", str(size.nasbert_len), "--max-train-examples", str(size.train_examples),
                              *dev]),
    ]


def encoder_flags(name: str, encoder: Path, size: Size) -> list[str]:
    """The NAS-BERT flags that depend on the encoder: blocks, hidden sizes, embedding sizes, the parameter budget."""
    shape = encoder_shape(encoder)
    hidden = [h for h in size.hidden_sizes if h <= shape["hidden"]][-2:] or [min(size.hidden_sizes)]
    emb = [e for e in size.embedding_sizes if e <= shape["hidden"]] or [min(size.embedding_sizes)]
    if name == "nasbert supernet":
        return ["--num-blocks", str(min(3, shape["layers"])), "--hidden-sizes", ",".join(map(str, hidden))]
    if name == "nasbert latency":
        return ["--embedding-sizes", ",".join(map(str, emb))]
    if name == "nasbert select":
        half = shape["params"] / 2  # a round budget, so the model's name reads well (5.5M)
        budget = f"{round(half / 1e5) / 10:g}M" if half >= 1e6 else f"{max(1, round(half / 1e2)) / 10:g}K"
        return ["--embedding-sizes", ",".join(map(str, emb)), "--max-params", budget]
    return []


def table(rows: list[dict], device: str) -> str:
    """Stage, wall seconds (process start to end), peak GPU MB, and the seconds inside ``bertnas.cli.main`` (the rest
    is starting Python, importing torch, transformers and bertnas and, on a GPU, creating the CUDA context)."""
    lines = ["| stage | seconds | peak GPU MB | of which in main() s |", "|---|---:|---:|---:|"]
    for r in rows:
        if r["status"] == "skipped":
            lines.append(f"| {r['stage']} | - | skipped: {r['reason']} | - |")
            continue
        seconds = f"{r['seconds']:.1f}" + ("" if r["status"] == "ok" else f" (failed, exit {r['returncode']})")
        peak = ("n/a (cpu)" if not device.startswith("cuda") else "-" if r["peak_gpu_mb"] is None
                else f"{r['peak_gpu_mb']:,.0f}")
        lines.append(f"| {r['stage']} | {seconds} | {peak} | {r['cli_seconds']:.1f} |")
    done = [r for r in rows if r["status"] != "skipped"]
    lines.append(f"| total | {sum(r['seconds'] for r in done):.1f} | | {sum(r['cli_seconds'] for r in done):.1f} |")
    return "\n".join(lines)


def save(out: Path, args: argparse.Namespace, rows: list[dict]) -> Path:
    from bertnas.utils import run_metadata, write_json  # write_json: a temp file, then one rename

    gpu = None
    if args.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(args.device))
        gpu = {"name": props.name, "total_mb": round(props.total_memory / 2**20), "cuda": torch.version.cuda,
               "capability": f"{props.major}.{props.minor}"}
    path = out / "gpu_pipeline.json"
    write_json(path, {
        "device": args.device, "gpu": gpu, "size": args.size, "data": "demo" if not args.data_dir else {
            "data_dir": args.data_dir, "task": args.task, "teacher": args.teacher, "pretrained": args.pretrained},
        "peak_gpu_memory": "torch.cuda.max_memory_allocated per stage process (reserved: max_memory_reserved)",
        "total_seconds": round(sum(r["seconds"] for r in rows if r["status"] != "skipped"), 3),
        "stages": rows, "meta": run_metadata()})
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="gpu_pipeline.py", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    ap.add_argument("--amp", action="store_true", help="--amp in every training stage (--amp-dtype auto: bfloat16, or "
                    "float16 with a gradient scaler on GPUs without native bfloat16)")
    ap.add_argument("--out", default="runs/gpu-pipeline", help="directory for gpu_pipeline.json, logs/ and work/")
    ap.add_argument("--size", choices=sorted(SIZES), default="small",
                    help="small (default): 2,000 examples, 1-2 epochs a stage; tiny: the tests' CPU setting")
    ap.add_argument("--data-dir", help="a GLUE task folder (train.tsv, dev.tsv); needs --teacher")
    ap.add_argument("--task", help="GLUE task name (default: from the --data-dir folder name, e.g. SST-2 -> sst2)")
    ap.add_argument("--teacher", help="a BERT fine-tuned on the task (HF directory or hub id)")
    ap.add_argument("--pretrained", help="a pre-trained BERT encoder for NAS-BERT (default: --teacher, head dropped)")
    args = ap.parse_args(argv)
    if bool(args.data_dir) != bool(args.teacher):
        ap.error("--data-dir and --teacher go together (neither: the built-in demo)")
    if args.pretrained and not args.data_dir:
        ap.error("--pretrained needs --data-dir and --teacher (the demo's NAS-BERT encoder is its own teacher)")
    if args.data_dir and not args.task:
        from bertnas.data.tasks import get_task, is_glue_task

        folder = Path(args.data_dir).name or Path(args.data_dir).resolve().name  # as given: a link keeps its name
        if not is_glue_task(folder):
            ap.error(f"cannot tell the GLUE task from the folder name {folder!r}: pass --task")
        args.task = get_task(folder).name
    if args.device != "cpu" and not args.device.startswith("cuda"):
        ap.error(f"--device {args.device!r}: use cuda, cuda:N or cpu")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    message = no_cuda_message(args.device)
    if message:
        print(message, file=sys.stderr)
        return 2
    size, out = SIZES[args.size], Path(args.out)
    work, logs = out / "work", out / "logs"
    if work.exists():
        if not (work / WORK_MARK).is_file():
            print(f"gpu_pipeline: {work} exists and was not made by this script: pass another --out", file=sys.stderr)
            return 2
        shutil.rmtree(work)
    shutil.rmtree(logs, ignore_errors=True)
    work.mkdir(parents=True)
    logs.mkdir()
    (work / WORK_MARK).write_text("made by benchmarks/gpu_pipeline.py; removed on its next run\n")

    stages, later = plan(args, work, size)
    rows: list[dict] = []

    def run_all(todo: list[tuple[str, list[str]]]) -> bool:
        for name, stage_argv in todo:
            if name.startswith("nasbert "):
                stage_argv = stage_argv + encoder_flags(name, later["encoder"], size)
            row = run_stage(name, stage_argv, args.device, logs, len(rows) + 1)
            rows.append(row)
            peak = "" if row["peak_gpu_mb"] is None else f", peak GPU {row['peak_gpu_mb']:,.0f} MB"
            print(f"{name}: {row['status']} in {row['seconds']:.1f} s{peak}", flush=True)
            if row["status"] != "ok":
                tail = Path(row["log"]).read_text().strip().splitlines()[-1:] or ["(no output)"]
                print(f"gpu_pipeline: stage {name!r} failed (exit {row['returncode']}): {tail[0]}; log: {row['log']}",
                      file=sys.stderr)
                return False
        return True

    ok = run_all(stages)
    if ok:
        nb = Path(later["nb"])
        models = json.loads((nb / "selection.json").read_text()).get("models", [])
        rest = ["nasbert baseline", "nasbert pretrain", "nasbert finetune"]
        if not models:
            rows += [{"stage": s, "status": "skipped", "reason": "select found no model within the budget"}
                     for s in rest]
        else:
            ok = run_all(after_select(later, models[0]["dir"], size, args.device))
    print(table(rows, args.device))
    print(f"written: {save(out, args, rows)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
