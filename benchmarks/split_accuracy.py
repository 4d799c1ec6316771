"""Accuracy of a saved sequence-pair classifier on a GLUE pair task's train and dev splits (a memorization check).

    python benchmarks/split_accuracy.py MODEL_DIR ../shared/data/glue/MRPC [--max-len 128]

Reads MRPC-layout files (label, id, id, sentence A, sentence B) and feeds the model ordinary tokenizer output of
each pair, as a user would.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import bertnas  # noqa: F401  (registers the model types)


def read_pairs(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[3] for r in rows], [r[4] for r in rows], torch.tensor([int(r[0]) for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--max-len", type=int, default=128)
    args = ap.parse_args()
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    for split in ("train", "dev"):
        a, b, y = read_pairs(args.data_dir / f"{split}.tsv")
        preds = []
        with torch.inference_mode():
            for i in range(0, len(a), 64):
                enc = tok(a[i : i + 64], b[i : i + 64], truncation=True, max_length=args.max_len, padding=True,
                          return_tensors="pt")
                preds.append(model(**enc).logits.argmax(-1))
        p = torch.cat(preds)
        print(f"{split}: accuracy {(p == y).float().mean():.4f} on {len(y)} pairs; predicted positive "
              f"{p.float().mean():.3f}, gold positive {y.float().mean():.3f}")


if __name__ == "__main__":
    main()
