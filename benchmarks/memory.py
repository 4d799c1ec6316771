"""Peak memory of `bertnas probe` (and optionally `bertnas search`) on a GLUE task and on a copy of it with every
training example repeated ``--factor`` times (issue #8, item 3: peak memory must not grow with the training set).

Writes the "Memory" section of docs/benchmarks.md (between its markers; other sections are left alone):

  python benchmarks/memory.py --data-dir ../shared/data/glue/SST-2 --teacher ../shared/teachers/sst2-minilm-L6-H384 --search

(about 10 minutes on 2 free cores: the teacher pass over 67k and 269k sentences is most of it). A quick check that
it works end to end: add ``--max-train-examples 300 --search-max-examples 200 --out /tmp/memory.md`` (2 minutes).

Each command runs as a real subprocess under ``/usr/bin/time -v`` with a fresh ``--cache-dir``, so the teacher
pass really runs. Two peaks are reported, because they answer different questions:

* "max RSS" is ``/usr/bin/time``'s "Maximum resident set size": every page mapped into the process, including
  pages of the memory-mapped knowledge files. Those are page cache: the kernel drops them when memory is short
  and reads them again from disk, so they do not need RAM the way the process's own memory does.
* "peak anon" is the process's own (anonymous) memory, ``RssAnon`` in ``/proc/PID/status``, sampled every
  ``--interval`` seconds: what the machine must really have.

With ``--keep DIR`` the data copies, run directories, caches, logs and one RSS trace per command
(``*.rss.csv``: clock, seconds, anon MB, file-backed MB) stay in DIR.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- memory:start -->", "<!-- memory:end -->"


class Failed(Exception):
    """A measured command failed: one line, with the error line of its log and where the log is."""


@dataclass
class Measured:
    """One command's peaks (MB), wall time and what it read and wrote."""

    label: str
    command: str
    rows: int
    n_examples: int | None = None
    max_rss_mb: float = 0.0
    peak_anon_mb: float = 0.0
    peak_file_mb: float = 0.0
    cache_mb: float = 0.0
    wall_seconds: float = 0.0
    peak_anon_at: str = ""  # the last log line before the anonymous-memory peak


def write_section(out: Path, section: str, start: str = START, end: str = END) -> None:
    """Replace the text between ``start`` and ``end`` in ``out`` (or append the block): other sections stay."""
    text = out.read_text() if out.is_file() else "# Benchmarks\n"
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    out.write_text(text)


def duplicate_task(data_dir: Path, dest: Path, factor: int, first: int | None) -> int:
    """``dest`` = ``data_dir`` with train.tsv's rows (the first ``first``, or all) repeated ``factor`` times
    (whole file after whole file, header once); every other file is linked unchanged. Returns the data rows."""
    dest.mkdir(parents=True)
    for item in data_dir.iterdir():
        if item.name != "train.tsv":
            (dest / item.name).symlink_to(item.resolve())
    lines = (data_dir / "train.tsv").read_bytes().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    if rows and not rows[-1].endswith(b"\n"):
        rows[-1] += b"\n"
    rows = rows[:first] if first else rows
    with open(dest / "train.tsv", "wb") as f:
        f.write(header)
        for _ in range(factor):
            f.writelines(rows)
    return len(rows) * factor


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc; /usr/bin/time's child is the bertnas process)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _rss_kb(pid: int) -> tuple[int, int]:
    """(RssAnon, RssFile + RssShmem) of one process in kB; zeros once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    values = dict(re.findall(r"^(Rss\w+):\s+(\d+) kB", status, re.M))
    return int(values.get("RssAnon", 0)), int(values.get("RssFile", 0)) + int(values.get("RssShmem", 0))


def measure(label: str, command: str, argv: list[str], rows: int, cache: Path, log: Path, interval: float) -> Measured:
    """Run ``argv`` under ``/usr/bin/time -v``, sampling the anonymous/file RSS of its process tree."""
    timing = log.with_suffix(".time")
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, TQDM_DISABLE="1", BERTNAS_PROGRESS_INTERVAL="5", PYTHONPATH=path)
    full = ["/usr/bin/time", "-v", "-o", str(timing), *argv]
    peak_anon = peak_file = 0
    peak_clock = ""
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, env=env)
        pids: list[int] = []
        samples = 0
        trace = ["clock,seconds,anon_mb,file_mb"]  # written beside the log: where in the run the peaks are
        while proc.poll() is None:
            if samples % 50 == 0 or not pids:  # scanning /proc is the costly part: only now and then
                pids = _children(proc.pid)
            anon = file_ = 0
            for pid in pids:
                a, f = _rss_kb(pid)
                anon, file_ = anon + a, file_ + f
            if anon > peak_anon:
                peak_anon, peak_clock = anon, time.strftime("%H:%M:%S")
            peak_file = max(peak_file, file_)
            trace.append(f"{time.strftime('%H:%M:%S')},{time.perf_counter() - t0:.2f},{anon / 1024:.1f},{file_ / 1024:.1f}")
            samples += 1
            time.sleep(interval)
    wall = time.perf_counter() - t0
    log.with_suffix(".rss.csv").write_text("\n".join(trace) + "\n")
    if proc.returncode != 0:
        lines = [l.strip() for l in log.read_text(errors="replace").splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith("bertnas: error") or re.match(r"^\w+(Error|Exception)\b", l)]
        last = (errors or lines or ["(no output)"])[-1]
        raise Failed(f"{label} failed (exit {proc.returncode}): {last[:300]}; log: {log}")
    report = timing.read_text()
    max_rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", report).group(1))
    elapsed = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", report)
    if elapsed:
        wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(elapsed.group(1).split(":"))))
    knowledge = [p for p in cache.glob("knowledge-*") if (p / "meta.json").is_file()]
    n = None
    if knowledge:
        n = json.loads((knowledge[0] / "meta.json").read_text()).get("n_train")
    size = sum(f.stat().st_size for k in knowledge for f in k.rglob("*") if f.is_file())
    return Measured(label=label, command=command, rows=rows, n_examples=n, max_rss_mb=max_rss / 1024,
                    peak_anon_mb=peak_anon / 1024, peak_file_mb=peak_file / 1024, cache_mb=size / 2**20,
                    wall_seconds=wall, peak_anon_at=_stage_at(log, peak_clock))


def _stage_at(log: Path, clock: str) -> str:
    """The last bertnas log message at or before ``clock`` (HH:MM:SS): which step the peak was in."""
    last = ""
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"^(\d\d:\d\d:\d\d) (?:INFO|WARNING) (.*)", line)
        if m and clock and m.group(1) <= clock:
            last = m.group(2)
    return re.sub(r", (elapsed|left|[\d.]+ (steps|examples)/s).*", "", last)[:90]


def _short(argv: list[str], tmp: Path) -> str:
    """The command as a reader would type it (temp paths shortened)."""
    text = " ".join(["bertnas", *argv])
    return text.replace(str(tmp) + "/", "$TMP/")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "glue" / "SST-2")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--teacher", type=Path, default=ROOT.parent / "shared" / "teachers" / "sst2-minilm-L6-H384")
    ap.add_argument("--factor", type=int, default=4, help="copies of every training example in the larger run")
    ap.add_argument("--max-seq-len", type=int, default=64)
    ap.add_argument("--max-train-examples", type=int, help="use the first N training rows (quick check)")
    ap.add_argument("--search", action="store_true", help="also measure `bertnas search` on the probed runs")
    ap.add_argument("--search-max-examples", type=int, default=2000)
    ap.add_argument("--search-epochs", type=int, default=1)
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between RSS samples")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--keep", type=Path, help="keep run directories, caches and logs here (default: a temp dir)")
    args = ap.parse_args()
    problem = _check(args)
    if problem:
        sys.exit(f"memory.py: error: {problem}")

    tmp = Path(tempfile.mkdtemp(prefix="bertnas-memory-")) if args.keep is None else args.keep.resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    results: list[Measured] = []
    try:
        for factor in (1, args.factor):
            data = tmp / f"data-x{factor}"
            if data.exists():
                shutil.rmtree(data)
            rows = duplicate_task(args.data_dir.resolve(), data, factor, args.max_train_examples)
            run, cache = tmp / f"run-x{factor}", tmp / f"cache-x{factor}"
            for path in (run, cache):
                shutil.rmtree(path, ignore_errors=True)
            common = ["--cache-dir", str(cache), "--device", "cpu"]
            probe = ["probe", "--task", args.task, "--data-dir", str(data), "--teacher", str(args.teacher.resolve()),
                     "--max-seq-len", str(args.max_seq_len), "--out", str(run), *common]
            print(f"x{factor}: {rows} training rows; {_short(probe, tmp)}", flush=True)
            results.append(measure(f"probe x{factor}", _short(probe, tmp), [sys.executable, "-m", "bertnas.cli", *probe],
                                   rows, cache, tmp / f"probe-x{factor}.log", args.interval))
            if args.search:
                search = ["search", "--out", str(run), "--search-max-examples", str(args.search_max_examples),
                          "--search-epochs", str(args.search_epochs), "--search-warmup-epochs", "0", *common]
                print(f"x{factor}: {_short(search, tmp)}", flush=True)
                results.append(measure(f"search x{factor}", _short(search, tmp),
                                       [sys.executable, "-m", "bertnas.cli", *search], rows, cache,
                                       tmp / f"search-x{factor}.log", args.interval))
        section = render(args, results, load_before)
    except Failed as exc:  # the logs stay for reading
        sys.exit(f"memory.py: error: {exc}")
    except KeyboardInterrupt:
        sys.exit(f"memory.py: interrupted; partial outputs in {tmp}" if args.keep is None else "memory.py: interrupted")
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)
    write_section(args.out, section)
    print(section)


def _check(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments or the machine, as one line (or None)."""
    if args.factor < 2:
        return f"--factor must be >= 2, got {args.factor}"
    if args.max_train_examples is not None and args.max_train_examples < 1:
        return f"--max-train-examples must be >= 1, got {args.max_train_examples}"
    if args.interval <= 0:
        return f"--interval must be > 0 seconds, got {args.interval}"
    if not (args.data_dir / "train.tsv").is_file():
        return f"{args.data_dir / 'train.tsv'} not found: pass --data-dir with a GLUE task folder (train.tsv, dev.tsv)"
    if not (args.teacher / "config.json").is_file():
        return f"{args.teacher} is not a teacher directory (no config.json): pass --teacher"
    if not args.out.parent.is_dir():
        return f"the folder of --out {args.out} does not exist"
    if args.keep is not None and args.keep.exists() and not args.keep.is_dir():
        return f"--keep {args.keep} is a file, not a folder"
    if not Path("/usr/bin/time").is_file() or not Path("/proc/self/status").is_file():
        return "needs GNU time at /usr/bin/time (apt-get install time) and Linux's /proc"
    return None


def render(args: argparse.Namespace, results: list[Measured], load_before: float) -> str:
    """The markdown section: table of both runs and the big/small ratios."""
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from bertnas.measure.profile import hardware_info

    data_dir, teacher = (os.path.relpath(p.resolve(), ROOT) for p in (args.data_dir, args.teacher))
    cmd = (f"python benchmarks/memory.py --data-dir {data_dir} --teacher {teacher} --factor {args.factor} "
           f"--max-seq-len {args.max_seq_len}" + (f" --max-train-examples {args.max_train_examples}"
                                                   if args.max_train_examples else "")
           + (f" --search --search-max-examples {args.search_max_examples} --search-epochs {args.search_epochs}"
              if args.search else ""))
    lines = ["## Memory", "", f"Command: `{cmd}`  ",
             f"Machine: {hardware_info().get('cpu', 'CPU')}, {os.cpu_count()} cores, torch {torch.__version__}; "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load average (1 min) "
             f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after (other processes slow the wall times, "
             "not the memory).", "",
             f"Each command is a fresh process under `/usr/bin/time -v` with an empty `--cache-dir` (the teacher "
             f"pass runs). x{args.factor}: train.tsv with every row repeated {args.factor} times, dev unchanged. "
             "**max RSS**: `/usr/bin/time`'s maximum resident set size, which counts the pages of the memory-mapped "
             "knowledge files the process has touched (page cache, dropped by the kernel when memory is short). "
             f"**peak anon**: the process's own memory (`RssAnon`, sampled every {args.interval:g} s), what the "
             "machine must have. **file-backed**: peak of the mapped-file pages (`RssFile`), same sampling.", "",
             "| command | train rows | N examples | max RSS (MB) | peak anon (MB) | file-backed (MB) | knowledge cache (MB) | wall (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        n = f"{r.n_examples:,}" if r.n_examples is not None else "-"
        lines.append(f"| `{r.command}` | {r.rows:,} | {n} | "
                     f"{r.max_rss_mb:,.0f} | {r.peak_anon_mb:,.0f} | {r.peak_file_mb:,.0f} | {r.cache_mb:,.0f} | "
                     f"{r.wall_seconds:,.0f} |")
    lines += ["", "Where the anonymous peak was (the last log line before it):", ""]
    lines += [f"- {r.label}: {r.peak_anon_at or '(before the first log line)'}" for r in results]
    lines += ["", "Ratios (the knowledge cache also holds the teacher's embedding tables and the dev split, which "
              "do not grow):", ""]
    for stage in ("probe", "search"):
        pair = [r for r in results if r.label.startswith(stage)]
        if len(pair) != 2:
            continue
        small, big = pair

        def ratio(a: float, b: float) -> str:
            return f"{b / a:.2f}x" if a else "-"

        lines.append(f"- `{stage}` x{args.factor} vs x1: N {ratio(small.n_examples or 0, big.n_examples or 0)}, "
                     f"knowledge cache {ratio(small.cache_mb, big.cache_mb)}, max RSS "
                     f"{ratio(small.max_rss_mb, big.max_rss_mb)} ({big.max_rss_mb - small.max_rss_mb:+,.0f} MB), "
                     f"peak anon {ratio(small.peak_anon_mb, big.peak_anon_mb)} "
                     f"({big.peak_anon_mb - small.peak_anon_mb:+,.0f} MB), wall {ratio(small.wall_seconds, big.wall_seconds)}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
