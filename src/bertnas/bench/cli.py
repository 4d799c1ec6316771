"""Command line of the bench: ``bertnas bench --teacher T --task X --data-dir D --out OUT [--rows ...]``.

Takes every run setting ``bertnas run`` takes (they apply to every row), plus the bench's own flags.
"""
from __future__ import annotations

import argparse

from ..flags import add_config_flags, resolve_config
from .rows import ROW_NAMES
from .settings import BenchSettings


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    text = "the searched student against random search, hand-designed students and ablations, side by side"
    p = sub.add_parser("bench", help=text, description=text + ". Writes bench.json, bench.md and pareto.png to --out.")
    p.add_argument("--out", required=True, help="bench directory (rows resume here)")
    p.add_argument("--config", help="YAML or JSON file of run settings (keys as the flags, with _ or -)")
    b = p.add_argument_group("bench settings")
    b.add_argument("--rows", default="default",
                   help=f"default (every row that applies), all, or comma-separated names: {', '.join(ROW_NAMES)}")
    b.add_argument("--random-n", type=int, default=BenchSettings.random_n, help="random genotypes to train (default: 5)")
    b.add_argument("--seeds", type=int, default=BenchSettings.seeds,
                   help="seeds per trained row (run seed = --seed + i, one run directory each); rows report mean, "
                        "sd and standard error, comparisons pair seeds (default: 1)")
    b.add_argument("--random-per-bin", type=int, default=BenchSettings.random_per_bin,
                   help="besides --random-n: random genotypes drawn until each cost bin holds this many "
                        "(default: 0, off)")
    b.add_argument("--latency-bins", type=int, default=BenchSettings.latency_bins,
                   help="cost bins (equal shares of the space) of predicted latency with --efficiency latency, else "
                        "of the cells' FLOPs (default: 3)")
    b.add_argument("--budgets-ms",
                   help="comma-separated latency budgets (predicted ms at --latency-table-batch; needs --efficiency "
                        "latency): one search per budget (rows full_<B>ms, searched_fresh_<B>ms), and the budgets "
                        "bin the random genotypes (bin b: between budget b-1 and b), e.g. 1.2,3,10")
    b.add_argument("--genotype-from", help="the other-task row: another bench's directory (its searched genotype of "
                                           "each seed), a run's search/genotype.json or run directory, or a genotype "
                                           "string")
    b.add_argument("--bert-base", action=argparse.BooleanOptionalAction, default=True,
                   help="measure a BERT-base-sized model (random weights) as a latency reference (default: on)")
    b.add_argument("--truncate-layers", type=int, default=BenchSettings.truncate_layers,
                   help="layers the truncated-teacher row keeps (default: 2)")
    b.add_argument("--pretrained-lr", type=float, default=BenchSettings.pretrained_lr,
                   help="learning rate of the truncated-teacher row (fresh rows use --retrain-lr) (default: 1e-4)")
    add_config_flags(p)


def run_bench_command(args: argparse.Namespace) -> None:
    from .settings import parse_budgets
    from .report import bench_table
    from .runner import run_bench

    cfg = resolve_config(args, from_run_dir=False)
    settings = BenchSettings(rows=args.rows, random_n=args.random_n, genotype_from=args.genotype_from,
                             bert_base=args.bert_base, truncate_layers=args.truncate_layers,
                             pretrained_lr=args.pretrained_lr, seeds=args.seeds,
                             random_per_bin=args.random_per_bin, latency_bins=args.latency_bins,
                             budgets_ms=parse_budgets(args.budgets_ms))
    print(bench_table(run_bench(cfg, settings, args.out)))
