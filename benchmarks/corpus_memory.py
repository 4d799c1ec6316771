"""Memory and time of reading a big corpus: the two-pass `Corpus` (bertnas.data.corpus) against the list-and-set
reading it replaced, each in its own process (peak resident memory from the kernel, ru_maxrss, less a process that
only imports bertnas).

The corpus is synthetic text written to --work: N lines of 40-200 random lowercase words, a tenth of them repeats,
read with a seeded subset of --keep of the distinct lines (the supernet's --max-sentences). Both readings must give
the same items (checked by a hash of them). Results: docs/corpus_memory.json.

  python benchmarks/corpus_memory.py --lines 2000000 --keep 1000000 --work /tmp/corpus-bench
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import hashlib, json, random, resource, sys, time
from bertnas.data.corpus import Corpus, iter_source
path, keep, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
if how == "import only":  # what the interpreter, torch and transformers take before any reading
    items = []
elif how == "two-pass":
    items = Corpus(path, keep, 0)
else:  # the reading bertnas had before: every distinct line in a list and a set, then random.sample
    seen, items = set(), []
    for line in iter_source(path):
        if line not in seen:
            seen.add(line)
            items.append(line)
    if len(items) > keep:
        items = random.Random(0).sample(items, keep)
seconds = time.perf_counter() - t0
digest = hashlib.sha256()
for t in items:
    digest.update(t.encode() + b"\0")
print(json.dumps({"how": how, "items": len(items), "seconds": round(seconds, 1), "sha256": digest.hexdigest()[:16],
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def write_corpus(path: Path, lines: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(5000)]
    written = []
    with open(path, "w") as fh:
        for i in range(lines):
            if written and rng.random() < 0.1:
                line = rng.choice(written)
            else:
                line = " ".join(rng.choices(words, k=rng.randint(8, 30)))
                if len(written) < 10000:
                    written.append(line)
            fh.write(line + "\n")
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--keep", type=int, default=1_000_000)
    ap.add_argument("--work", default="/tmp/corpus-bench")
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent.parent / "docs" / "corpus_memory.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"corpus-{args.lines}.txt"
    if not path.is_file():
        print(f"writing {args.lines:,} lines to {path}", flush=True)
        write_corpus(path, args.lines)
    rows = []
    for how in ("import only", "two-pass", "list-and-set"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(args.keep), how], check=True,
                             capture_output=True, text=True, env={**os.environ, "BERTNAS_PROGRESS_INTERVAL": "3600"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    base = rows[0]["peak_rss_mb"]
    for row in rows:
        row["reading_mb"] = round(row["peak_rss_mb"] - base, 1)
    rows = rows[1:]
    same = rows[0]["sha256"] == rows[1]["sha256"]
    result = {"command": f"python benchmarks/corpus_memory.py --lines {args.lines} --keep {args.keep}",
              "lines": args.lines, "keep": args.keep, "corpus_mb": round(path.stat().st_size / 2**20, 1),
              "same_items": same, "import_only_rss_mb": base, "rows": rows, "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"same items: {same}; above the imports: two-pass {rows[0]['reading_mb']} MB, list-and-set "
          f"{rows[1]['reading_mb']} MB (import only: {base} MB) "
          f"-> {args.json}")
    if not same:
        sys.exit("the two readings gave different items")


if __name__ == "__main__":
    main()
