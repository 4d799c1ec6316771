"""How AdaBERT's stages grow with the training set (issue #21): a BERT-base-sized teacher (12 layers, hidden 768,
random weights: the cost does not depend on them), training sets of several sizes resampled from real sentences,
teacher-labelled copies, and for every size `bertnas run --dry-run`'s forecast beside what `bertnas probe`,
`search` and `retrain` measure: wall time, peak memory and cache disk. From the per-example costs it states the
400k-example x 20-copy job's time, disk and memory on this machine.

  python benchmarks/scale.py --data-dir ../shared/data/glue/SST-2 --vocab ../shared/data/vocab/bert-base-uncased

Each stage runs as a real subprocess (``benchmarks/memory.py``'s ``measure``: /usr/bin/time, RSS sampled from
/proc) with a fresh cache per size. The search and further training are held to a fixed work (``--search-max-examples``,
one epoch each), so their time grows with the data only where reading it does; the teacher pass (knowledge,
probes, copies) is the part that must grow with every example. Results: docs/scale.json and the "Scale"
section of docs/benchmarks.md. On a CPU a BERT-base teacher labels tens of examples a second, so the default sizes
are small; the extrapolation is what answers the 400k x 20 question.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import Failed, _short, measure, write_section  # noqa: E402  (a sibling benchmark script)

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- scale:start -->", "<!-- scale:end -->"
STAGES = ("probe", "search", "retrain")


def make_teacher(vocab_dir: Path, out: Path, layers: int, hidden: int, num_labels: int, seed: int) -> None:
    """A BERT classifier of the given shape with random weights and the vocabulary's tokenizer, saved to ``out``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from bertnas.teacher.loading import load_tokenizer

    tokenizer = load_tokenizer(str(vocab_dir))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden, num_labels=num_labels)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def resample(data_dir: Path, dest: Path, n: int, seed: int) -> None:
    """``dest``: ``data_dir`` with a train.tsv of ``n`` rows drawn with replacement (seeded) from its own."""
    dest.mkdir(parents=True)
    for item in data_dir.iterdir():
        if item.name != "train.tsv":
            (dest / item.name).symlink_to(item.resolve())
    lines = (data_dir / "train.tsv").read_text(encoding="utf-8").splitlines()
    rng = random.Random(seed)
    (dest / "train.tsv").write_text("\n".join([lines[0], *(rng.choice(lines[1:]) for _ in range(n))]) + "\n",
                                    encoding="utf-8")


def cache_layout(cache: Path) -> dict:
    """What the extrapolation needs from a run's cache: tokens per copy, the embedding tables' bytes, dev size."""
    import numpy as np

    offsets = [np.load(p) for p in cache.glob("augment-*/offsets.npy")]
    tables = [p.stat().st_size for p in cache.glob("knowledge-*/tables.safetensors")]
    meta = [json.loads(p.read_text()) for p in cache.glob("knowledge-*/meta.json")]
    return {"tokens_per_copy": float(offsets[0][-1] / max(len(offsets[0]) - 1, 1)) if offsets else None,
            "tables_bytes": tables[0] if tables else 0, "n_dev": meta[0]["n_dev"] if meta else 0,
            "num_layers": meta[0]["num_layers"] if meta else None, "hidden": meta[0]["teacher_hidden"] if meta else None}


def target_disk(layout: dict, n: int, copies: int, labels: int, bound: int | None) -> float:
    """Cache bytes of ``n`` examples x ``copies`` by the package's own layout formulas (the dry run's, which the
    rows above check against the bytes written), with probe features for at most ``bound`` examples."""
    from bertnas.teacher.augment import augment_bytes
    from bertnas.teacher.knowledge import knowledge_bytes

    featured = (min(n, bound) if bound else n) + layout["n_dev"]
    return (knowledge_bytes(layout["num_layers"], layout["hidden"], n + layout["n_dev"], labels, featured)
            + layout["tables_bytes"] + augment_bytes(n * copies, round(layout["tokens_per_copy"] * n * copies),
                                                     layout["num_layers"] + 1, labels))


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def dry_run(argv: list[str], env: dict) -> dict:
    """The forecast `bertnas run --dry-run` prints: cache disk (bytes) and seconds per stage."""
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise Failed(f"dry run failed: {(proc.stderr.strip().splitlines() or ['(no output)'])[-1][:300]}")
    disk = re.search(r"cache disk to write: ([\d.]+) (GB|MB)", proc.stdout)
    seconds = {}
    for stage, text in re.findall(r"^\| (\w+) \| ([^|]+) \|", proc.stdout, re.M):
        if stage in STAGES:
            seconds[stage] = _seconds(text.strip())
    scale = {"GB": 1e9, "MB": 1e6}
    return {"disk_bytes": float(disk.group(1)) * scale[disk.group(2)] if disk else None, "seconds": seconds}


def _seconds(text: str) -> float | None:
    """``1h02m``, ``3m05s``, ``42s`` -> seconds (the package's format_duration), else None."""
    parts = re.findall(r"([\d.]+)\s*(h|m|s)", text)
    return sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts) if parts else None


def logged_seconds(log: Path) -> float | None:
    """Seconds from a stage's first bertnas log line to its last (HH:MM:SS, so +-1 s): the work, without
    starting Python and importing, which come before the first line."""
    clocks = re.findall(r"^(\d\d):(\d\d):(\d\d) (?:INFO|WARNING) ", log.read_text(errors="replace"), re.M)
    if len(clocks) < 2:
        return None
    first, last = (int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in (clocks[0], clocks[-1]))
    return float((last - first) % 86400)


def startup_seconds(env: dict) -> float:
    """Median wall time of starting Python and importing bertnas, torch and transformers: in every stage's wall
    time but not in the dry run's forecast, which times the work alone."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import bertnas.cli, bertnas.adabert.pipeline, transformers"], env=env,
                       check=True)
        times.append(time.perf_counter() - t0)
    return sorted(times)[1]


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of ys on xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return my - slope * mx, slope


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "glue" / "SST-2")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--vocab", type=Path, default=ROOT.parent / "shared" / "data" / "vocab" / "bert-base-uncased",
                    help="folder with the teacher's vocab.txt (or tokenizer files)")
    ap.add_argument("--sizes", default="1000,2000,4000", help="training examples per run")
    ap.add_argument("--copies", type=int, default=2, help="teacher-labelled copies of every example (--augment)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--max-seq-len", type=int, default=64)
    ap.add_argument("--search-max-examples", type=int, default=1000)
    ap.add_argument("--target-examples", type=int, default=400_000, help="the job to extrapolate to")
    ap.add_argument("--target-copies", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between RSS samples")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "scale.json")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"), help="'' to skip the docs section")
    ap.add_argument("--keep", type=Path, help="keep data, runs, caches and logs here (default: a temp dir)")
    ap.add_argument("--reforecast", action="store_true",
                    help="with --keep: run only the dry runs again for the sizes measured before (a forecast changed "
                         "by the code since), keeping what the stages measured")
    args = ap.parse_args()
    try:
        sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    except ValueError:
        sys.exit(f"scale.py: error: --sizes {args.sizes!r}: expected comma-separated integers, e.g. 1000,2000,4000")
    problem = (f"{args.data_dir / 'train.tsv'} not found: pass --data-dir with a GLUE task folder"
               if not (args.data_dir / "train.tsv").is_file() else
               f"{args.vocab} has no vocab.txt or tokenizer.json: pass --vocab" if not any(
                   (args.vocab / f).is_file() for f in ("vocab.txt", "tokenizer.json")) else
               "--sizes needs at least two sizes of at least 100 examples" if len(sizes) < 2 or sizes[0] < 100 else
               f"--copies must be >= 0, got {args.copies}" if args.copies < 0 else
               "needs GNU time at /usr/bin/time and Linux's /proc" if not Path("/usr/bin/time").is_file() else None)
    if problem:
        sys.exit(f"scale.py: error: {problem}")

    tmp = Path(tempfile.mkdtemp(prefix="bertnas-scale-")) if args.keep is None else args.keep.resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=path)
    load_before = os.getloadavg()[0]
    rows = []
    startup = startup_seconds(env)
    try:
        teacher = tmp / "teacher"
        if not (teacher / "config.json").is_file():
            from bertnas.data.readers import load_task

            labels = load_task(args.task, str(args.data_dir)).spec.num_labels
            make_teacher(args.vocab, teacher, args.layers, args.hidden, max(1, labels), seed=0)
        for n in sizes:
            done = tmp / f"row-{n}.json"  # with --keep, a size measured before is read back, not run again
            data, run, cache = tmp / f"data-{n}", tmp / f"run-{n}", tmp / f"cache-{n}"

            def flags(out: Path, cache: Path) -> list[str]:
                return ["--task", args.task, "--data-dir", str(data), "--teacher", str(teacher), "--out", str(out),
                        "--cache-dir", str(cache), "--device", "cpu", "--max-seq-len", str(args.max_seq_len),
                        "--augment", str(args.copies), "--search-max-examples", str(args.search_max_examples),
                        "--search-epochs", "1", "--search-warmup-epochs", "0", "--retrain-epochs", "1",
                        "--derive-candidates", "1"]

            if done.is_file():
                row = json.loads(done.read_text())
                if args.reforecast:  # a fresh cache and run directory: the forecast of a first run
                    fresh = tmp / f"reforecast-{n}"
                    shutil.rmtree(fresh, ignore_errors=True)
                    print(f"{n} examples: dry run again", flush=True)
                    row["forecast"] = dry_run([sys.executable, "-m", "bertnas.cli", "run", "--dry-run",
                                               *flags(fresh / "run", fresh / "cache")], env)
                    shutil.rmtree(fresh, ignore_errors=True)
                    done.write_text(json.dumps(row))
                rows.append(row)
                continue
            for p in (data, run, cache):
                shutil.rmtree(p, ignore_errors=True)
            resample(args.data_dir.resolve(), data, n, seed=n)
            common = flags(run, cache)
            print(f"{n} examples: dry run", flush=True)
            forecast = dry_run([sys.executable, "-m", "bertnas.cli", "run", "--dry-run", *common], env)
            row = {"examples": n, "copies": args.copies, "forecast": forecast, "stages": {}}
            for stage in STAGES:
                argv = [stage, *common] if stage == "probe" else [stage, "--out", str(run), "--cache-dir", str(cache),
                                                                  "--device", "cpu"]
                print(f"{n} examples: {_short(argv, tmp)}", flush=True)
                m = measure(f"{stage} {n}", _short(argv, tmp), [sys.executable, "-m", "bertnas.cli", *argv], n, cache,
                            tmp / f"{stage}-{n}.log", args.interval)
                row["stages"][stage] = {"seconds": round(m.wall_seconds, 1),
                                        "work_seconds": round(logged if (logged := logged_seconds(
                                            tmp / f"{stage}-{n}.log")) is not None else max(0.0, m.wall_seconds - startup), 1),
                                        "peak_anon_mb": round(m.peak_anon_mb), "max_rss_mb": round(m.max_rss_mb)}
            row["cache_bytes"] = folder_bytes(cache)
            row["layout"] = cache_layout(cache)
            rows.append(row)
            done.write_text(json.dumps(row))
            print(json.dumps(row), flush=True)
    except Failed as exc:
        sys.exit(f"scale.py: error: {exc}")
    except KeyboardInterrupt:
        sys.exit(f"scale.py: interrupted; partial outputs in {tmp}")
    result = summarize(args, rows, load_before, startup)
    tmp_out = args.out.with_name(f".{args.out.name}.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    if args.doc:
        write_section(Path(args.doc), render(result), START, END)
    print(render(result))
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(args: argparse.Namespace, rows: list[dict], load_before: float, startup: float) -> dict:
    """Linear fits over examples labelled (originals + copies) and the target job's figures from them."""
    xs = [r["examples"] * (1 + r["copies"]) for r in rows]
    target = args.target_examples * (1 + args.target_copies)
    fits = {}
    for stage in STAGES:
        a, b = fit(xs, [r["stages"][stage]["work_seconds"] for r in rows])
        fits[stage] = {"seconds_fixed": round(a, 1), "seconds_per_1k_examples": round(b * 1000, 2)}
    from bertnas.config import RunConfig
    from bertnas.data.readers import load_task

    labels = max(1, load_task(args.task, str(args.data_dir)).spec.num_labels)
    layout, bound = rows[-1]["layout"], RunConfig().probe_max_examples
    growth = {stage: round(rows[-1]["stages"][stage]["work_seconds"] / max(rows[0]["stages"][stage]["work_seconds"], 0.1), 2)
              for stage in STAGES}
    peak = {stage: [r["stages"][stage]["peak_anon_mb"] for r in rows] for stage in STAGES}
    return {
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "teacher": f"BERT {args.layers} layers, hidden {args.hidden}, random weights",
        "load_average_before": round(load_before, 2), "cpu_threads": os.cpu_count(),
        "startup_seconds": round(startup, 1),
        "rows": rows, "fits": fits, "size_ratio": round(xs[-1] / xs[0], 2), "time_ratio": growth,
        "peak_anon_mb": peak, "cache_layout": layout,
        "target": {
            "examples": args.target_examples, "copies": args.target_copies,
            "cache_gb": round(target_disk(layout, args.target_examples, args.target_copies, labels, bound) / 1e9, 2),
            "cache_gb_every_feature": round(target_disk(layout, args.target_examples, args.target_copies, labels, 0) / 1e9, 2),
            "probe_max_examples": bound,
            "probe_hours": round((fits["probe"]["seconds_fixed"] + fits["probe"]["seconds_per_1k_examples"] / 1000 * (
                target + max(0, args.target_examples - (bound or args.target_examples)))) / 3600, 1),  # + the 2nd pass
            "retrain_epoch_hours": round(fits["retrain"]["seconds_per_1k_examples"] * target / 1000 / 3600, 1),
        },
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }


def render(result: dict) -> str:
    lines = ["## Scale (issue #21)", "", f"`{result['command']}` ({result['teacher']}; run alone on the machine).", "",
             "Work seconds run from a stage's first log line to its last (starting Python and importing, about "
             f"{result['startup_seconds']} s, come before; the dry run's forecast times the work alone).", "",
             "| examples (+copies) | stage | work s | forecast s | peak anon MB | max RSS MB |", "|---|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        for stage in STAGES:
            s = r["stages"][stage]
            f = r["forecast"]["seconds"].get(stage)
            lines.append(f"| {r['examples']:,} (+{r['examples'] * r['copies']:,}) | {stage} | {s['work_seconds']} | "
                         f"{'' if f is None else round(f)} | {s['peak_anon_mb']} | {s['max_rss_mb']} |")
    lines += ["", "| examples | cache MB | forecast MB |", "|---|---:|---:|"]
    for r in result["rows"]:
        fd = r["forecast"]["disk_bytes"]
        lines.append(f"| {r['examples']:,} | {r['cache_bytes'] / 2**20:.0f} | {'' if fd is None else f'{fd / 2**20:.0f}'} |")
    t = result["target"]
    growth = ", ".join(f"{stage} {ratio}x" for stage, ratio in result["time_ratio"].items())
    lines += ["", f"Examples labelled grew {result['size_ratio']}x; work time grew: {growth}. Extrapolated to "
              f"{t['examples']:,} examples x {t['copies']} copies on this machine: teacher pass and probes "
              f"{t['probe_hours']} h (linear in examples labelled, sentences of this data's length), cache "
              f"{t['cache_gb']} GB with --probe-max-examples {t['probe_max_examples']:,} ({t['cache_gb_every_feature']} GB "
              f"with every example's features; by the cache's layout formulas, which the table above checks against "
              f"the bytes written), one further-training epoch over every copy {t['retrain_epoch_hours']} h."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
