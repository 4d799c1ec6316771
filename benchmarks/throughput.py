"""Throughput of the teacher pass and of the student's search/retrain steps on this machine.

Writes the "Throughput" section of docs/benchmarks.md (between its markers). Everything compared is measured
side by side in one process on the same sentences:

  python benchmarks/throughput.py --glue-dir ../shared/data/glue --teachers-dir ../shared/teachers

1. Teacher pass, per MiniLM teacher: the pass as it was before (file order, fp32, batches of 64) against the
   new one (length-sorted, inference mode, fp32 and bf16 autocast, with and without a token budget), and the
   bf16-vs-fp32 agreement on the dev split that ``--teacher-dtype auto`` checks.
2. Student steps (SST-2 only): one search epoch and one retraining epoch on a subset, with and without
   ``--amp`` (bfloat16 autocast on CPU), from the same cached knowledge; seconds and dev metric.
3. Peak RSS of the process.
"""
from __future__ import annotations

import argparse
import os
import cProfile
import logging
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bertnas import RunConfig  # noqa: E402
from bertnas.data.encode import batches, encode, num_batches  # noqa: E402
from bertnas.data.readers import load_task  # noqa: E402
from bertnas.measure.profile import hardware_info  # noqa: E402
from bertnas.teacher.knowledge import _collect, choose_precision, layer_features, teacher_pass  # noqa: E402
from bertnas.teacher.loading import load_teacher  # noqa: E402
from memory import write_section  # noqa: E402  (benchmarks/memory.py: the same marked-section writer)

START, END = "<!-- throughput:start -->", "<!-- throughput:end -->"


@torch.no_grad()
def old_pass(teacher, enc, batch_size: int) -> torch.Tensor:
    """The pass before this change: batches in file order, fp32, autograd bookkeeping off but not inference mode."""
    out = []
    for batch in batches(enc, batch_size):
        res = teacher.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch["token_type_ids"], output_hidden_states=True)
        layer_features(res.hidden_states, batch["attention_mask"])
        out.append(res.logits.float())
    return torch.cat(out)


def new_pass(teacher, enc, bf16: bool, batch_size: int, budget: int | None) -> torch.Tensor:
    store, sink = _collect(len(enc), None)
    teacher_pass(teacher, enc, sink, torch.device("cpu"), bf16, batch_size, budget, desc="bench")
    return store["logits"]


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def teacher_rows(name: str, task: str, data_dir: Path, teacher_dir: Path, n: int, max_len: int) -> tuple[list[str], dict]:
    data = load_task(task, data_dir)
    teacher = load_teacher(str(teacher_dir), data.spec, "cpu")
    train = encode(teacher.tokenizer, data.train.subset(list(range(min(n, len(data.train))))), max_len)
    dev = encode(teacher.tokenizer, data.dev, max_len)
    new_pass(teacher, encode(teacher.tokenizer, data.train.subset(list(range(64))), max_len), True, 64, None)  # warm-up
    rows, results = [], {}
    t_old, ref = timed(old_pass, teacher, train, 64)
    variants = [("before: file order, fp32, batch 64", None)]
    for label, bf16, budget in (("length-sorted, fp32, batch 64", False, None),
                                ("length-sorted, bf16, batch 64", True, None),
                                ("length-sorted, bf16, up to 256 / 8192 tokens", True, 8192)):
        seconds, logits = timed(new_pass, teacher, train, bf16, 256 if budget else 64, budget)
        same = float((logits.argmax(-1) == ref.argmax(-1)).float().mean())
        results[label] = (seconds, same, float((logits - ref).abs().max()))
        variants.append((label, seconds))
    for label, seconds in variants:
        rate = len(train) / (seconds if seconds is not None else t_old)
        speed = t_old / seconds if seconds else 1.0
        extra = ""
        if label in results:
            _, same, diff = results[label]
            extra = f"{100 * same:.2f}% | {diff:.1e}"
        else:
            extra = "- | -"
        rows.append(f"| {name} | {label} | {rate:,.0f} | {speed:.1f}x | {extra} |")
    use_bf16, _, report = choose_precision(teacher, dev, data.spec, data.dev.labels, "auto", torch.device("cpu"))
    return rows, {"name": name, "n": len(train), "max_len": max_len, "dev_check": report,
                  "best_speedup": max(t_old / r[0] for r in results.values())}


def student_rows(glue: Path, teacher_dir: Path, n: int, cache: Path) -> list[str]:
    from bertnas.adabert.pipeline import probe, retrain, search

    rows = []
    base = RunConfig(task="sst2", data_dir=str(glue / "SST-2"), teacher=str(teacher_dir), max_seq_len=64,
                     max_train_examples=n, search_epochs=1, retrain_epochs=1, device="cpu", cache_dir=str(cache))
    with tempfile.TemporaryDirectory() as tmp:
        for amp in (False, True):
            cfg = base.update({"amp": amp})
            out = Path(tmp) / f"amp{int(amp)}"
            probe(cfg, out)
            t0 = time.perf_counter()
            if amp:
                s = search(cfg, out)
            else:  # the fp32 epoch under cProfile too: where the time goes (overhead ~5%, same for all rows below)
                prof = cProfile.Profile()
                s = prof.runcall(search, cfg, out)
            t_search = time.perf_counter() - t0
            if not amp:
                profile_lines = search_profile(prof, t_search)
            t0 = time.perf_counter()
            r = retrain(cfg, out)
            t_retrain = time.perf_counter() - t0
            steps_s = num_batches(n, cfg.search_batch_size)
            steps_r = num_batches(n, cfg.retrain_batch_size)
            hist = s["history"][-1]
            rows.append(f"| {'bf16 autocast' if amp else 'fp32'} | {steps_s / t_search:.2f} | "
                        f"{hist.get('dev_derived', {}).get('accuracy', float('nan')):.4f} | {steps_r / t_retrain:.2f} | "
                        f"{r['dev']['accuracy']:.4f} | {s['genotype_str'].replace('|', '/')} |")
    return rows + profile_lines


def search_profile(prof: cProfile.Profile, seconds: float, top: int = 10) -> list[str]:
    """The fp32 search epoch's time by function (self time), as markdown lines."""
    stats = pstats.Stats(prof)
    rows = sorted(((v[2], v[1], k) for k, v in stats.stats.items()), reverse=True)[:top]
    lines = ["", f"Where the fp32 search's {seconds:.1f} s went (cProfile, self time, top {top}):", "",
             "| function | calls | seconds | share |", "|---|---:|---:|---:|"]
    for tottime, calls, (file, line, name) in rows:
        where = name if file == "~" else f"{Path(file).name}:{line}({name})"
        lines.append(f"| `{where}` | {calls} | {tottime:.2f} | {100 * tottime / seconds:.0f}% |")
    return lines


def finetune_epoch_seconds(glue: Path, pretrained: Path, n: int) -> tuple[float, float]:
    """Seconds per step of fine-tuning the MiniLM encoder on SST-2 (batch 32, max length 64), timed on ``n``
    examples, and the implied seconds for one epoch over all of SST-2's training set (the #11 comparison)."""
    from bertnas.teacher.finetune import finetune, load_pretrained_for_finetune
    from bertnas.teacher.loading import load_tokenizer
    from bertnas.utils import recording_steps

    data = load_task("sst2", glue / "SST-2")
    full = len(data.train)
    data.train = data.train.subset(list(range(n)))
    model = load_pretrained_for_finetune(str(pretrained), 2)
    with tempfile.TemporaryDirectory() as tmp, recording_steps() as records:
        finetune(model, load_tokenizer(str(pretrained)), data, Path(tmp) / "t", epochs=1, batch_size=32,
                 max_seq_len=64, device="cpu")
    loop = [r for r in records if r["desc"].startswith("teacher 1/1")][0]
    per_step = loop["seconds"] / loop["steps"]
    return per_step, per_step * num_batches(full, 32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--glue-dir", type=Path, default=ROOT.parent / "shared" / "data" / "glue")
    ap.add_argument("--teachers-dir", type=Path, default=ROOT.parent / "shared" / "teachers")
    ap.add_argument("--n", type=int, default=3000, help="training sentences timed per teacher")
    ap.add_argument("--student-n", type=int, default=4000, help="training sentences for the student steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-student", action="store_true")
    ap.add_argument("--skip-teacher", action="store_true")
    ap.add_argument("--finetune-n", type=int, default=1600, help="SST-2 examples timed for the fine-tuning comparison (0: skip)")
    ap.add_argument("--pretrained", type=Path, default=ROOT.parent / "shared" / "pretrained" / "minilm-L6-H384-uncased")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    lines = ["## Throughput", "", f"Command: `python benchmarks/throughput.py --n {args.n} --student-n {args.student_n} "
             f"--threads {args.threads}`  ", f"Machine: {hardware_info().get('cpu', 'CPU')}, {args.threads} threads, "
             f"torch {torch.__version__}.", "", "### Teacher pass", "",
             "Same training sentences, one process; agreement = argmax equal to the old pass, max |logit diff|.", "",
             "| teacher | batches | examples/s | vs before | agreement | max diff |", "|---|---|---:|---:|---:|---:|"]
    notes = []
    teachers = () if args.skip_teacher else (("sst2-minilm-L6-H384", "sst2", "SST-2", 64),
                                             ("mrpc-minilm-L6-H384", "mrpc", "MRPC", 128))
    for name, task, folder, max_len in teachers:
        rows, info = teacher_rows(name, task, args.glue_dir / folder, args.teachers_dir / name, args.n, max_len)
        lines += rows
        c = info["dev_check"]
        notes.append(f"- {name} ({info['n']} sentences, max length {info['max_len']}): best speedup "
                     f"**{info['best_speedup']:.1f}x**; `--teacher-dtype auto` on dev: bf16 agrees on "
                     f"{100 * c.get('agreement', 1):.2f}% of predictions, headline metric {c.get('metric_fp32', 0):.4f} "
                     f"(fp32) vs {c.get('metric_bf16', 0):.4f} (bf16) -> chooses **{c['chosen']}**.")
    lines += [""] + notes
    if not args.skip_student:
        lines += ["", "### Student steps (SST-2, MiniLM teacher)", "",
                  f"One search epoch and one retraining epoch on the first {args.student_n} SST-2 training sentences "
                  "(max length 64), defaults otherwise; dev = 872 SST-2 dev sentences.", "",
                  "| precision | search steps/s | dev acc. (derived, after 1 epoch) | retrain steps/s | dev acc. | genotype |",
                  "|---|---:|---:|---:|---:|---|"]
        with tempfile.TemporaryDirectory() as cache:
            lines += student_rows(args.glue_dir, args.teachers_dir / "sst2-minilm-L6-H384", args.student_n, Path(cache))
    if args.finetune_n:
        per_step, epoch = finetune_epoch_seconds(args.glue_dir, args.pretrained, args.finetune_n)
        lines += ["", "### One epoch of fine-tuning the MiniLM teacher (the yardstick for a whole `bertnas run`)", "",
                  f"`bertnas teacher finetune`'s loop on the first {args.finetune_n} SST-2 sentences (batch 32, max length "
                  f"64): {per_step:.2f} s/step, so one epoch over all 67,349 sentences takes about "
                  f"**{epoch / 60:.1f} minutes** on this machine."]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines += ["", f"Peak RSS of the benchmark process: {peak:,.0f} MB. Load average at the end (1 min): "
              f"{os.getloadavg()[0]:.2f} (about {args.threads} means nothing else ran; other processes on these 2 cores "
              "make torch's OpenMP threads wait on each other and slow the small student steps by up to 30x)."]
    section = "\n".join(lines)
    write_section(args.out, section, START, END)
    print(section)


if __name__ == "__main__":
    main()
