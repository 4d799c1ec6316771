"""Command line of NAS-BERT: ``bertnas nasbert supernet|latency|select|pretrain|baseline|finetune``.

Every setting of :class:`~.config.SupernetSettings` and :class:`~.config.FinetuneSettings` is a flag and a key
of ``--config FILE``, by the same generator and validation as AdaBERT's (``bertnas.config``); the CLI in
``bertnas.cli`` prints a :class:`BertnasError` as one line and exits 2.
"""
from __future__ import annotations

import argparse
import logging

from ..errors import BertnasError
from ..config import AMP_DTYPES, add_settings_flags, resolve_settings
from .config import FinetuneSettings, SupernetSettings

logger = logging.getLogger("bertnas")


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BertnasError(f"{flag} {text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise BertnasError(f"{flag} {text!r}: expected positive integers")
    return values


def add_nasbert_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nasbert", help="NAS-BERT: one block-wise distilled supernet, models of several sizes",
                       description="NAS-BERT (KDD 2021): task-agnostic compression; see docs/nasbert.md")
    nsub = p.add_subparsers(dest="nasbert_command", required=True, metavar="COMMAND")

    s = nsub.add_parser("supernet", help="block-wise distillation + progressive shrinking (resumable)")
    s.add_argument("--out", required=True, help="run directory")
    s.add_argument("--no-resume", action="store_true", help="start over instead of continuing from the checkpoint")
    s.add_argument("--config", help="YAML or JSON file of settings (the flags' names); flags override it")
    add_settings_flags(s, SupernetSettings)

    lat = nsub.add_parser("latency", help="measure the per-op latency table on this device")
    lat.add_argument("--out", required=True)
    lat.add_argument("--seq-len", type=int, default=128)
    lat.add_argument("--batch-sizes", default="1,32")
    lat.add_argument("--embedding-sizes", default="64,128,256")
    lat.add_argument("--threads", type=int, default=None, help="torch threads while timing (default: torch's)")
    lat.add_argument("--repeats", type=int, default=10)
    lat.add_argument("--stat", choices=["median", "min"], default="median",
                     help="statistic of the timed calls (min is steadier on a CPU shared with other jobs)")
    lat.add_argument("--calibration-models", type=int, default=4,
                     help="random whole students timed to fit the table's scale and offset (0: plain sum of parts)")
    lat.add_argument("--device", default="cpu", help="device the models will serve on: cpu, cuda, cuda:1 (default: cpu)")

    sel = nsub.add_parser("select", help="one standalone model per budget from the trained supernet")
    sel.add_argument("--out", required=True)
    sel.add_argument("--max-params", help="comma-separated parameter budgets, e.g. 5M,10M")
    sel.add_argument("--max-latency-ms", help="latency budget(s) in ms at --seq-len and --latency-batch")
    sel.add_argument("--embedding-sizes", default="64,128,256")
    sel.add_argument("--embedding-fraction", type=float, default=0.5, help="largest share of a params budget the embedding may take")
    sel.add_argument("--top-t", type=int, default=20, help="candidates evaluated exactly per budget (paper: 100)")
    sel.add_argument("--seq-len", type=int, default=128)
    sel.add_argument("--latency-batch", type=int, default=1)
    sel.add_argument("--no-measure", action="store_true", help="skip measuring the selected models' latency")
    sel.add_argument("--device", default="cpu", help="device for the exact evaluation and the latency checks (default: cpu)")

    pre = nsub.add_parser("pretrain", help="(optional) pre-training distillation of a model on the run's corpus")
    pre.add_argument("--out", required=True, help="the supernet run directory (its cached teacher states are used)")
    pre.add_argument("--model", required=True)
    pre.add_argument("--save", required=True, help="where to write the distilled model")
    pre.add_argument("--epochs", type=int, default=1)
    pre.add_argument("--batch-size", type=int, default=32)
    pre.add_argument("--lr", type=float, default=5e-4)
    pre.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    pre.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1")
    pre.add_argument("--no-resume", action="store_true", help="start over instead of continuing from the checkpoint")
    pre.add_argument("--amp", action="store_true", help="mixed-precision autocast in the steps (CUDA and CPU); the loss in float32")
    pre.add_argument("--amp-dtype", default="auto", choices=AMP_DTYPES,
                     help="with --amp: auto (float16 with a gradient scaler on GPUs without native bfloat16, bfloat16 elsewhere), bf16 or fp16")

    base = nsub.add_parser("baseline", help="hand-designed BERTs of each selected model's size and latency, "
                           "block-wise distilled like the supernet (resumable)")
    base.add_argument("--out", required=True)
    base.add_argument("--no-resume", action="store_true", help="start every baseline's training over")
    base.add_argument("--no-measure", action="store_true", help="skip measuring the baselines' latency")
    base.add_argument("--models", help="comma-separated selected models to build baselines for (default: all)")

    ft = nsub.add_parser("finetune", help="fine-tune a selected model with distillation from a fine-tuned teacher")
    ft.add_argument("--model", required=True)
    ft.add_argument("--teacher", required=True)
    ft.add_argument("--task", required=True)
    ft.add_argument("--data-dir")
    ft.add_argument("--train-file")
    ft.add_argument("--dev-file")
    ft.add_argument("--out", required=True)
    ft.add_argument("--no-measure", action="store_true")
    ft.add_argument("--no-resume", action="store_true", help="start over instead of continuing from OUT/checkpoint.pt")
    ft.add_argument("--config", help="YAML or JSON file of settings (the flags' names); flags override it")
    add_settings_flags(ft, FinetuneSettings)


def run_nasbert_command(args: argparse.Namespace) -> None:
    from ..training import distributed as ddp
    from . import pipeline

    cmd = args.nasbert_command  # under torchrun the main CLI lets only supernet, pretrain and finetune through
    report = print if ddp.is_main() else (lambda *_: None)  # torchrun: rank 0 reports
    if cmd == "supernet":
        summary = pipeline.supernet(resolve_settings(args, SupernetSettings), args.out, resume=not args.no_resume)
        report(f"supernet trained: {summary['paths_per_block_end']} paths left per block "
              f"(space {summary['space_size_start']} -> {summary['space_size_end']}); {args.out}/supernet")
    elif cmd == "latency":
        table = pipeline.latency(args.out, args.seq_len, _ints(args.batch_sizes, "--batch-sizes"),
                                 _ints(args.embedding_sizes, "--embedding-sizes"), args.threads, args.repeats, args.stat,
                                 args.calibration_models, args.device)
        report(f"latency table: {len(table.entries)} entries in {args.out}/latency.json")
    elif cmd == "select":
        for m in pipeline.select(args.out, args.max_params, args.max_latency_ms, _ints(args.embedding_sizes, "--embedding-sizes"),
                                 args.embedding_fraction, args.top_t, args.seq_len, args.latency_batch, not args.no_measure,
                                 args.device):
            lat = " ".join(f"b{b}: predicted {m[f'predicted_ms_b{b}']:.2f} ms, measured {m[f'measured_ms_b{b}']:.2f} ms"
                           for b in (1, 32) if f"predicted_ms_b{b}" in m and f"measured_ms_b{b}" in m)
            report(f"{m['name']}: {m['params'] / 1e6:.2f}M params  {m['architecture']}  {lat}  -> {m['dir']}")
    elif cmd == "pretrain":
        result = pipeline.pretrain(args.out, args.model, args.save, args.epochs, args.batch_size, args.lr, args.threads,
                                   args.device, resume=not args.no_resume, amp=args.amp,
                                   amp_dtype=args.amp_dtype)
        report(f"pre-training KD done ({result['seconds']} s): {args.save}")
    elif cmd == "baseline":
        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        for b in pipeline.baseline(args.out, resume=not args.no_resume, measure=not args.no_measure, models=models):
            lat = f", predicted {b['predicted_ms_b1']:.2f} ms at batch 1" if "predicted_ms_b1" in b else ""
            report(f"{b['name']}: BERT {b['layers']} layers, hidden {b['hidden']}, {b['params'] / 1e6:.2f}M params{lat}, "
                  f"held-out loss {b['exact_loss']:.4f} ({b['like']}: {b['like_exact_loss']:.4f}) -> {b['dir']}")
    elif cmd == "finetune":
        from .finetune import finetune

        r = finetune(args.model, args.teacher, args.task, args.out, resolve_settings(args, FinetuneSettings),
                     args.data_dir, args.train_file, args.dev_file, measure=not args.no_measure,
                     resume=not args.no_resume)
        report(f"{r['task']}: dev {r['dev']} (teacher {r['teacher_dev']}); {r['params'] / 1e6:.2f}M params; {args.out}/model")
    else:  # argparse already refuses unknown commands
        raise BertnasError(f"unknown nasbert command {cmd!r}")
