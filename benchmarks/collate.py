"""Time to pad one training batch: the vectorized ``bertnas.data.encode.collate`` against the row-by-row padding
it replaced (a Python loop over the rows, ``tests/test_collate.py`` holds both to the same tensors), for token ids
held as lists (a task's own examples) and as a memory-mapped-style Ragged (teacher-labelled copies).

The sequences are SST-2-like lengths (uniform 4-64 tokens) or MNLI-like pairs (uniform 20-128); a batch is 32
random examples. Median of --repeats timings of --batches batches each. Results: docs/collate.json.

  python benchmarks/collate.py
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bertnas.data.encode import Encoded, Ragged, collate

ROOT = Path(__file__).resolve().parents[1]


def row_by_row(data: Encoded, indices: list[int]) -> dict[str, torch.Tensor]:
    """The padding before the vectorized one."""
    length = max(len(data.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), length), data.pad_id, dtype=torch.long)
    types = torch.zeros((len(indices), length), dtype=torch.long)
    mask = torch.zeros((len(indices), length), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(data.input_ids[i])
        ids[row, :n] = torch.tensor(data.input_ids[i])
        types[row, :n] = torch.tensor(data.token_type_ids[i])
        mask[row, :n] = 1
    index = torch.tensor(indices, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": data.labels[index],
            "index": index}


def timed(fn, data: Encoded, batches: list[list[int]], repeats: int) -> float:
    """Median microseconds per batch."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for b in batches:
            fn(data, b)
        times.append((time.perf_counter() - t0) / len(batches) * 1e6)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "collate.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(0)
    rows = []
    for shape, (lo, hi) in {"SST-2-like (4-64 tokens)": (4, 64), "MNLI-like pairs (20-128 tokens)": (20, 128)}.items():
        seqs = [[rng.randrange(1000, 30000) for _ in range(rng.randrange(lo, hi + 1))] for _ in range(args.examples)]
        types = [[0] * (len(s) // 2) + [1] * (len(s) - len(s) // 2) for s in seqs]
        labels = torch.tensor([rng.randrange(3) for _ in seqs])
        batches = [rng.sample(range(args.examples), args.batch_size) for _ in range(args.batches)]
        for form in ("lists", "Ragged"):
            data = (Encoded(seqs, types, labels, 0) if form == "lists" else
                    Encoded(Ragged.from_lists(seqs), Ragged.from_lists(types, np.int8), labels, 0))
            old, new = timed(row_by_row, data, batches, args.repeats), timed(collate, data, batches, args.repeats)
            rows.append({"sequences": shape, "held as": form, "row_by_row_us": round(old, 1),
                         "vectorized_us": round(new, 1), "speedup": round(old / new, 2)})
            print(json.dumps(rows[-1]), flush=True)
    result = {"command": "python benchmarks/collate.py", "batch_size": args.batch_size, "threads": 1,
              "load_average_before": round(os.getloadavg()[0], 2), "rows": rows}
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
