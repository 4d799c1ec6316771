"""Command line: ``bertnas run|probe|search|retrain|evaluate|demo|teacher finetune``.

Flags come from :class:`bertnas.config.RunConfig` (one flag per field, :mod:`bertnas.flags`); ``--config FILE``
(YAML or JSON) sets the same keys. Precedence: defaults < saved run config (later stages) < config file < flags.
User errors print one line ``bertnas: error: ...`` and exit 2, with no traceback.
Under ``torchrun`` (``torchrun --nproc_per_node N -m bertnas run ...``) the AdaBERT stages run on every
process and only rank 0 prints results and writes files.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .errors import BertnasError, first_line
from .flags import add_config_flags, given_settings, resolve_config
from .rundir import save_run_config
from .utils import process_age_s

logger = logging.getLogger("bertnas")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertnas", description="Compress a fine-tuned BERT by architecture search (AdaBERT).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    descriptions = {
        "run": "every step: teacher knowledge, probes, search, retrain, evaluate",
        "probe": "step 1: cache the teacher's knowledge and train one probe per layer",
        "search": "step 2: search the cell and depth (reads the run directory)",
        "retrain": "step 3: train the derived student further; writes OUT/model",
        "evaluate": "step 4: dev metrics, size and latency of student vs teacher; writes results.json",
    }
    for name, text in descriptions.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--out", required=True, help="run directory")
        p.add_argument("--config", help="YAML or JSON file of settings (keys as the flags, with _ or -)")
        if name in ("run", "evaluate"):
            p.add_argument("--no-onnx-latency", dest="onnx_latency", action="store_false",
                           help="skip the student's onnxruntime latency (measured by default when onnx and "
                                "onnxruntime are installed; it exports the student to a temp directory)")
        if name != "evaluate":
            p.add_argument("--dry-run", action="store_true",
                           help="print data sizes, cache hits and the estimated time per stage (from a few timed "
                                "steps on this machine), then exit without writing anything")
        add_config_flags(p)

    d = sub.add_parser("demo", help="the whole pipeline on the built-in synthetic task (no downloads)",
                       description="Train a tiny teacher on a synthetic task, then run every AdaBERT step.")
    d.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    d.add_argument("--variant", default="single", choices=["single", "pair"], help="single sentence or sentence pair")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="auto")
    d.add_argument("--n-train", type=int, default=2000)

    t = sub.add_parser("teacher", help="teacher utilities")
    tsub = t.add_subparsers(dest="teacher_command", required=True, metavar="COMMAND")
    f = tsub.add_parser("finetune", help="fine-tune a BERT on a task to make a teacher",
                        description="Fine-tune a pre-trained checkpoint (--model) or a fresh BERT (--from-scratch).")
    f.add_argument("--out", required=True, help="where to save the fine-tuned teacher")
    f.add_argument("--model", help="pre-trained checkpoint: local directory or hub id")
    f.add_argument("--from-scratch", action="store_true", help="start from random weights (needs --tokenizer)")
    f.add_argument("--tokenizer", help="tokenizer directory (default: the --model's)")
    f.add_argument("--layers", type=int, default=4)
    f.add_argument("--hidden", type=int, default=256)
    f.add_argument("--heads", type=int, default=4)
    f.add_argument("--epochs", type=int, default=3)
    f.add_argument("--lr", type=float, default=5e-5)
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--config", help="YAML or JSON file of data settings")
    add_config_flags(f, ["data", "general"])

    from .bench.cli import add_bench_parser  # subcommands that live with their own code
    from .export.cli import add_export_parser
    from .nasbert.cli import add_nasbert_parser

    add_nasbert_parser(sub)
    add_bench_parser(sub)
    add_export_parser(sub)
    return parser


def _teacher_finetune(args: argparse.Namespace) -> None:
    from .rundir import load_data
    from .teacher.finetune import finetune, load_pretrained_for_finetune, new_bert
    from .teacher.loading import load_tokenizer
    from .utils import resolve_device, set_seed

    cfg = resolve_config(args, from_run_dir=False)
    cfg.require("task")
    if args.epochs < 1 or args.lr <= 0 or args.batch_size < 1:
        raise BertnasError("--epochs and --batch-size must be >= 1 and --lr > 0")
    if bool(args.model) == bool(args.from_scratch):
        raise BertnasError("pass exactly one of --model CHECKPOINT or --from-scratch (with --tokenizer)")
    tok_source = args.tokenizer or args.model
    if not tok_source:
        raise BertnasError("--from-scratch needs --tokenizer DIR (a directory with vocab.txt or tokenizer.json)")
    data = load_data(cfg)
    tokenizer = load_tokenizer(tok_source, cfg.trust_remote_code)
    set_seed(cfg.seed)  # the new weights (a fresh BERT, or a new head) follow --seed: a rerun resumes and repeats
    if args.from_scratch:
        model = new_bert(tokenizer, data.spec.num_labels, args.layers, args.hidden, args.heads,
                         max_positions=max(512, cfg.max_seq_len))
    else:
        model = load_pretrained_for_finetune(args.model, data.spec.num_labels, cfg.trust_remote_code)
    metrics = finetune(model, tokenizer, data, args.out, args.epochs, args.lr, args.batch_size, cfg.max_seq_len,
                       cfg.seed, resolve_device(cfg.device), resume=cfg.resume, amp=cfg.amp,
                       amp_dtype=cfg.amp_dtype)
    from .training import distributed as ddp

    if ddp.is_main():  # torchrun: rank 0 reports
        print(f"teacher saved to {args.out}; dev {metrics}")


def _check_out(out: str | None) -> None:
    """Refuse an --out that cannot be a directory before any work is done."""
    if out and Path(out).exists() and not Path(out).is_dir():
        raise BertnasError(f"--out {out} is an existing file: pass a directory path (it is created if missing)")


_DISTRIBUTED_COMMANDS = ("run", "probe", "search", "retrain", "evaluate", "teacher finetune", "nasbert supernet",
                         "nasbert pretrain", "nasbert finetune")


def main(argv: list[str] | None = None) -> int:
    from .training import distributed as ddp
    from .utils import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if not args.verbose:  # transformers' own per-file progress bars add noise to ours
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    succeeded, ending = False, None  # torchrun: how this rank ends decides whether it meets the others at the end
    try:
        import bertnas  # noqa: F401  (registers the adabert model type)
        from .adabert import pipeline

        _check_out(getattr(args, "out", None))
        command = " ".join(filter(None, [args.command, getattr(args, "nasbert_command", None),
                                           getattr(args, "teacher_command", None)]))
        if ddp.launched() and (command not in _DISTRIBUTED_COMMANDS or getattr(args, "dry_run", False)):
            what = f"{command} --dry-run" if getattr(args, "dry_run", False) else command
            raise BertnasError(f"`bertnas {what}` runs in one process: start it without torchrun (under torchrun: "
                               f"{', '.join(_DISTRIBUTED_COMMANDS)})")

        if args.command == "demo":
            from .adabert.demo import demo

            from .measure.report import results_table

            print(results_table(demo(args.out, args.variant, args.seed, args.device, n_train=args.n_train)))
        elif args.command == "teacher":
            _teacher_finetune(args)
        elif args.command == "nasbert":
            from .nasbert.cli import run_nasbert_command

            run_nasbert_command(args)
        elif args.command == "bench":
            from .bench.cli import run_bench_command

            run_bench_command(args)
        elif args.command == "export":
            from .export.cli import run_export_command

            run_export_command(args)
        elif getattr(args, "dry_run", False):
            from .estimate import dry_run

            cfg = resolve_config(args, from_run_dir=args.command not in ("run", "probe"))
            stages = ("probe", "search", "retrain", "evaluate") if args.command == "run" else (args.command,)
            plan = None
            if args.command == "run" and cfg.time_budget:
                from .budget import planner

                plan = planner(cfg, given_settings(args))
            print(dry_run(cfg, args.out, stages, plan))
        else:
            from .measure.report import probes_table, results_table

            cfg = resolve_config(args, from_run_dir=args.command not in ("run", "probe"))
            options = {"onnx_latency": args.onnx_latency} if args.command in ("run", "evaluate") else {}
            if args.command == "run" and cfg.time_budget:  # the budget counts from the command's start
                options.update(started_at=time.monotonic() - process_age_s(), keep=given_settings(args))
            if args.command == "run":
                from .budget import run as run_all

                result = run_all(cfg, args.out, **options)
            else:
                result = getattr(pipeline, args.command)(cfg, args.out, **options)
            if not ddp.is_main():  # torchrun: rank 0 writes and prints
                succeeded = True
                return 0
            if args.command not in ("run", "probe"):
                save_run_config(cfg, Path(args.out))  # only a step that succeeded changes the saved settings
            if args.command == "probe":
                print(probes_table(result))
            elif args.command in ("run", "evaluate"):
                print(results_table(result))
        succeeded = True
    except ddp.MainRankFailed as exc:  # rank 0 printed the error
        ending = exc
        return 2
    except RuntimeError as exc:
        if not ddp.lost_peer(exc):
            raise
        first = first_line(exc)
        print(f"bertnas: error (rank {ddp.rank()}): another rank ended while this one waited for it (its own error "
              f"says why): {first}", file=sys.stderr)
        return 2
    except BertnasError as exc:
        ending = exc
        rank = f" (rank {ddp.rank()})" if not ddp.is_main() else ""
        print(f"bertnas: error{rank}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # one line: which stage stopped, its last checkpoint, the command that resumes
        import shlex
        import traceback

        ending = exc
        if not ddp.is_main():  # torchrun: rank 0 says where it stopped
            return 130
        stage = next((f.f_code.co_name for f, _ in reversed(list(traceback.walk_tb(exc.__traceback__)))
                      if str(f.f_globals.get("__name__", "")).endswith("pipeline")
                      and f.f_code.co_name in ("probe", "search", "retrain", "evaluate")), None)
        out = getattr(args, "out", None)
        ckpt = Path(out, "checkpoints", f"{stage}.pt") if out and stage else None
        where = f"in stage {stage}" if stage else f"in `bertnas {args.command}`"
        saved = f", last checkpoint {ckpt}" if ckpt and ckpt.is_file() else ""
        redo = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--no-resume"]  # that flag would start over
        print(f"bertnas: interrupted {where}{saved}; to resume, run: {shlex.join(['bertnas', *redo])}",
              file=sys.stderr)
        return 130
    finally:  # torchrun: ranks that all succeeded, or all failed alike, meet at a closing barrier
        ddp.teardown(wait=succeeded or ddp.failed_alike(ending))
    return 0


if __name__ == "__main__":
    sys.exit(main())
