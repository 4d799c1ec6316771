"""A sentence-pair regression task built from a pair classification task and its fine-tuned teacher.

The target of each pair is the teacher's score, its logit margin (logit of the task's last label minus logit of
its first, by label name: for MRPC, how sure it is the pair is a paraphrase). The script writes
  OUT/data/{train,dev}.tsv   STS-B's columns (sentence1, sentence2, score): `--task stsb --data-dir OUT/data`
  OUT/teacher/               the regression teacher: the same encoder, its head made one output (w1 - w0, b1 - b0),
                             so it computes the target exactly; a Hugging Face checkpoint (safetensors)
  OUT/pair_regression.json   sizes and the word-overlap baseline: the Pearson correlation of the pairs' word
                             overlap (Jaccard of lower-cased word sets) with the target, on dev
A student that learned the relation scores far above word overlap; one that learned lexical overlap scores near it.

  python benchmarks/pair_regression.py --teacher ../shared/teachers/mrpc-minilm-L6-H384 \
      --task mrpc --data-dir ../shared/data/glue/MRPC --out /tmp/mrpc-score
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from bertnas.data.readers import load_task
from bertnas.errors import BertnasError
from bertnas.utils import atomic_dir


def regression_teacher(classifier_dir: str, spec):
    """The classifier with its 2-way head replaced by one output, the margin logit[last] - logit[first] of the task's
    labels (the teacher's own output columns found by label name, ``load_teacher``'s label order)."""
    from bertnas.teacher.loading import load_teacher

    tch = load_teacher(classifier_dir, spec)  # one-line errors for a missing or wrong checkpoint
    model = tch.model.float()
    first, last = (tch.label_order or [0, 1])[0], (tch.label_order or [0, 1])[-1]
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear) or head.out_features != 2:
        raise BertnasError(f"{classifier_dir}: expected a BERT-style classifier with a 2-label linear head "
                           "(model.classifier); pass the teacher of a two-label pair task")
    margin = torch.nn.Linear(head.in_features, 1)
    with torch.no_grad():
        margin.weight.copy_(head.weight[last] - head.weight[first])
        margin.bias.copy_(head.bias[last : last + 1] - head.bias[first : first + 1])
    model.classifier = margin
    model.num_labels = 1
    model.config.num_labels = 1
    model.config.id2label, model.config.label2id = {0: "score"}, {"score": 0}
    model.config.problem_type = "regression"
    return model.eval(), tch.tokenizer


@torch.inference_mode()
def scores(model, tokenizer, texts: list[str], pairs: list[str], max_len: int, batch: int = 64) -> list[float]:
    out = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i:i + batch], pairs[i:i + batch], truncation=True, max_length=max_len, padding=True,
                        return_tensors="pt")
        out += model(**enc).logits.squeeze(-1).tolist()
    return out


def overlap(a: str, b: str) -> float:
    wa, wb = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    return len(wa & wb) / max(1, len(wa | wb))


def pearson(x: list[float], y: list[float]) -> float:
    return float(torch.corrcoef(torch.tensor([x, y], dtype=torch.float64))[0, 1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True, help="a fine-tuned 2-label pair classifier (Hugging Face directory)")
    ap.add_argument("--task", default="mrpc", help="its pair task (GLUE name), read from --data-dir")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = ap.parse_args(argv)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        data = load_task(args.task, args.data_dir)
        if not data.spec.pair or data.spec.is_regression:
            raise BertnasError(f"--task {args.task} is not a sentence-pair classification task: pass one (e.g. mrpc)")
        out = Path(args.out)
        if out.exists() and not args.force:
            raise BertnasError(f"{out} exists: pass --force to replace it, or another --out")
        model, tokenizer = regression_teacher(args.teacher, data.spec)
        with atomic_dir(out) as tmp:  # nothing half-written on an error
            summary = {"source_task": data.spec.name, "teacher": str(Path(args.teacher).resolve()),
                       "target": "teacher logit margin (last label - first)", "max_seq_len": args.max_seq_len}
            (tmp / "data").mkdir()
            for split, ex in (("train", data.train), ("dev", data.dev)):
                y = scores(model, tokenizer, ex.texts, ex.text_pairs, args.max_seq_len)
                clean = [(a.replace("\t", " "), b.replace("\t", " ")) for a, b in zip(ex.texts, ex.text_pairs)]
                rows = ["sentence1\tsentence2\tscore"] + [f"{a}\t{b}\t{s:.6f}" for (a, b), s in zip(clean, y)]
                (tmp / "data" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
                summary[split] = {"examples": len(y), "score_mean": sum(y) / len(y),
                                  "word_overlap_pearson": pearson([overlap(a, b) for a, b in clean], y)}
            model.save_pretrained(tmp / "teacher")
            tokenizer.save_pretrained(tmp / "teacher")
            (tmp / "pair_regression.json").write_text(json.dumps(summary, indent=2) + "\n")
    except BertnasError as exc:
        print(f"pair_regression: error: {exc}", file=sys.stderr)
        return 2
    print(f"{out}/data (--task stsb --data-dir), {out}/teacher; word overlap vs target on dev: "
          f"Pearson {summary['dev']['word_overlap_pearson']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
