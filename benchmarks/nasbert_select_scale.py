"""NAS-BERT selection at the paper's scale on this CPU: time and peak memory of one budget.

The paper's space: 4 blocks of 6 layers, hidden sizes 128-512, 5 ops, 97,650 paths per block, and ~100 paths
per block left after shrinking (100^4 = 10^8 whole models). A supernet of that shape with random weights
(BERT-base-sized teacher side: hidden 768, 30,522-word vocabulary), 100 random surviving paths per block scored
for real on random held-out states, a latency table measured here, then for each budget the real selection:
the block-by-block search for the top T = 100 (:func:`bertnas.nasbert.select.combine`), their exact chained
evaluation and the standalone model built from the winner.

  python benchmarks/nasbert_select_scale.py            # writes docs/nasbert_select_scale.json
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transformers import BertConfig, BertModel  # noqa: E402

from bertnas.measure.latency_table import measure_table  # noqa: E402
from bertnas.measure.profile import count_params, hardware_info  # noqa: E402
from bertnas.nasbert.costs import TeacherShape, op_specs, predict_latency  # noqa: E402
from bertnas.nasbert.distill import score_path  # noqa: E402
from bertnas.nasbert.select import Constraint, build_student, combine, select_best  # noqa: E402
from bertnas.nasbert.space import SpaceConfig, Supernet, enumerate_paths  # noqa: E402


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: KB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths-per-block", type=int, default=100)
    ap.add_argument("--top-t", type=int, default=100)
    ap.add_argument("--heldout-batches", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "docs" / "nasbert_select_scale.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    torch.manual_seed(0)
    t_all = time.time()

    shape = TeacherShape(vocab_size=30522, max_positions=512, type_vocab_size=2, hidden=768)
    space = SpaceConfig(teacher_hidden=768, teacher_layers=12, num_blocks=4, layers_per_block=6,
                        hidden_sizes=(128, 192, 256, 384, 512)).validate()
    paths = enumerate_paths(space)
    t0 = time.time()
    net = Supernet(space).eval()
    teacher = BertModel(BertConfig(vocab_size=shape.vocab_size, hidden_size=768, num_hidden_layers=1,
                                   num_attention_heads=12, intermediate_size=3072)).eval()
    setup = {"paths_per_block": len(paths), "supernet_params": count_params(net), "build_s": round(time.time() - t0, 1)}
    print(f"space: {len(paths)} paths per block; supernet {setup['supernet_params'] / 1e6:.0f}M params "
          f"({setup['build_s']} s); RSS {rss_gb():.2f} GB", flush=True)

    held_out = []
    for _ in range(args.heldout_batches):
        mask = torch.ones(args.batch_size, args.seq_len, dtype=torch.long)
        states = torch.nn.functional.layer_norm(torch.randn(args.batch_size, args.seq_len, 5, 768), (768,))
        held_out.append({"attention_mask": mask, "states": states})
    t0 = time.time()
    blocks = []
    for n in range(4):
        chosen = rng.sample(paths, args.paths_per_block)
        blocks.append([{"path": str(p), "loss": score_path(net, n, p, held_out)} for p in chosen])
    setup["score_s"] = round(time.time() - t0, 1)
    print(f"scored {4 * args.paths_per_block} surviving paths ({setup['score_s']} s); RSS {rss_gb():.2f} GB", flush=True)

    t0 = time.time()
    table = measure_table(op_specs(space, shape, [64, 128, 256]), [args.seq_len], [1], threads=args.threads, repeats=3,
                          stat="min")
    setup["latency_table_s"] = round(time.time() - t0, 1)
    print(f"latency table: {len(table.entries)} entries ({setup['latency_table_s']} s)", flush=True)

    budgets = [Constraint(10_000_000, None), Constraint(30_000_000, None), Constraint(60_000_000, None),
               Constraint(None, 10.0), Constraint(None, 20.0), Constraint(30_000_000, 15.0)]
    rows = []
    for c in budgets:
        t0 = time.time()
        e = 128
        found = combine(blocks, e, shape, table, c, args.seq_len, 1, args.top_t)
        t_combine = time.time() - t0
        if not found:
            rows.append({"budget": c.name, "found": 0, "combine_s": round(t_combine, 2)})
            print(f"{c.name}: nothing fits ({t_combine:.1f} s)", flush=True)
            continue
        best = select_best(found, net, held_out)
        t_exact = time.time() - t0 - t_combine
        model = build_student(best.arch, net, teacher, shape)
        total = time.time() - t0
        rows.append({"budget": c.name, "found": len(found), "architecture": str(best.arch), "params": count_params(model),
                     "predicted_ms_b1": round(predict_latency(table, best.arch, 768, args.seq_len, 1), 2),
                     "combine_s": round(t_combine, 2), "exact_eval_s": round(t_exact, 1), "total_s": round(total, 1),
                     "peak_rss_gb": round(rss_gb(), 2)})
        print(f"{c.name}: top {len(found)} in {t_combine:.2f} s, exact evaluation {t_exact:.1f} s, total {total:.1f} s; "
              f"best {best.arch} ({rows[-1]['params'] / 1e6:.1f}M); peak RSS {rss_gb():.2f} GB", flush=True)
    result = {"command": "python benchmarks/nasbert_select_scale.py", "args": vars(args), "setup": setup, "budgets": rows,
              "combinations": args.paths_per_block ** 4, "peak_rss_gb": round(rss_gb(), 2),
              "wall_s": round(time.time() - t_all, 1), "hardware": hardware_info(), "torch": torch.__version__}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}; peak RSS {rss_gb():.2f} GB; {result['wall_s']} s in all")


if __name__ == "__main__":
    main()
