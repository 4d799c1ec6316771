"""Learning curves of the AdaBERT recipe: dev metric against wall time on this machine (issue #22).

Every recipe is assembled from measured pieces, each run once per seed with the real pipeline stages:

* the teacher pass over the training and dev data, the probes, and the teacher-labelled copies (timed per loop);
* a search on a random subset of the training data (``--search-max-examples``) for some epochs;
* further training of that search's student with 0, 2, 4, ... copies, dev and validation metrics after every
  epoch (the LR decays linearly over the piece's epochs, so epoch e of an E-epoch piece stands for "e epochs");
* the evaluate stage (latency), once.

A recipe's wall time is the sum of its pieces' measured times: teacher + probes + copies' labelling + search +
further-training epochs so far + evaluate, which is what ``bertnas run`` with those settings spends (its
stages run the same code one after another). The copies come from seed 0's labelling for every seed (the seeds
vary the search and the training); fewer copies are the first copies of the set (``teacher.augment``).

    python benchmarks/learning_curves.py --task sst2 --data-dir ../shared/data/glue/SST-2 \\
        --teacher ../shared/teachers/sst2-minilm-L6-H384 --out /work/runs/curves-sst2

Resumable: every piece writes ``pieces/<name>.json`` when done and is skipped when it exists. While the file
``<out>/PAUSE`` exists no new piece starts (so a test run beside it does not distort the times).
The report (``learning_curves.md``/``.json``/``.png``) is written by ``--report``.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bertnas.adabert import pipeline  # noqa: E402
from bertnas.config import RunConfig  # noqa: E402
from bertnas.rundir import load_data, save_run_config  # noqa: E402
from bertnas.utils import read_json, recording_steps, write_json  # noqa: E402

logger = logging.getLogger("bertnas")


def _wait_unpaused(out: Path) -> None:
    while (out / "PAUSE").exists():
        time.sleep(5)


def _piece(out: Path, name: str, fn) -> dict:
    """Run ``fn() -> dict`` once; its result (with wall seconds) is kept in pieces/<name>.json."""
    path = out / "pieces" / f"{name}.json"
    if path.is_file():
        return read_json(path)
    _wait_unpaused(out)
    logger.info("=== piece %s", name)
    t0 = time.perf_counter()
    with recording_steps() as loops:
        result = fn()
    result = {"name": name, "seconds": round(time.perf_counter() - t0, 1), "loops": list(loops), **result}
    write_json(path, result)
    return result


def _prepare(base: Path, run: Path, cfg: RunConfig, copies: int, n_train: int) -> None:
    """A run directory reading the base probe run, with the first ``copies`` copies (or none)."""
    run.mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, run)
    for name in ("tokenizer", "probes"):
        if not (run / name).exists():
            shutil.copytree(base / name, run / name)
    info = read_json(base / "probes" / "probes.json")
    if copies:
        info["augment_examples"] = copies * n_train
    else:
        info.pop("augment_key", None), info.pop("augment_examples", None)
    write_json(run / "probes" / "probes.json", info)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--copies", default="0,2,4", help="copies for further training (every seed)")
    ap.add_argument("--subset", default="20000", help="search subset of the core recipe ('all' for everything)")
    ap.add_argument("--search-epochs", type=int, default=2)
    ap.add_argument("--retrain-epochs", default="3,3,2", help="epochs per --copies entry")
    ap.add_argument("--extra-subsets", default="5000", help="seed 0 only: other search subsets (+ 0 copies)")
    ap.add_argument("--extra-search-epochs", default="3", help="seed 0 only: other search epochs (+ 0 copies)")
    ap.add_argument("--extra-copies", default="", help="seed 0 only: copies:epochs pairs beyond --copies, e.g. 8:3")
    ap.add_argument("--logits-only", action="store_true", help="seed 0: further training distilling logits only")
    ap.add_argument("--core-only", action="store_true", help="only the every-seed pieces (the extras on a later call)")
    ap.add_argument("--set", action="append", default=[], help="extra run setting key=value (every piece)")
    ap.add_argument("--report", action="store_true", help="only write the report from the pieces done")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out)
    (out / "pieces").mkdir(parents=True, exist_ok=True)
    if args.report:
        from learning_curves_report import write_report

        write_report(out)
        return
    extra = dict(kv.split("=", 1) for kv in args.set)
    copies = [int(c) for c in args.copies.split(",")]
    epochs = [int(e) for e in args.retrain_epochs.split(",")]
    assert len(epochs) == len(copies), "--retrain-epochs needs one entry per --copies entry"
    seeds = [int(s) for s in args.seeds.split(",")]
    extra_copies = [tuple(int(v) for v in x.split(":")) for x in args.extra_copies.split(",") if x]
    more = [c for c, _ in extra_copies]
    base_cfg = RunConfig(task=args.task, data_dir=args.data_dir, teacher=args.teacher, cache_dir=str(out / "cache"),
                         augment=max(copies + more), search_epochs=args.search_epochs).update(extra, "--set")
    write_json(out / "study.json", {"args": vars(args), "config": base_cfg.to_dict()})
    base = out / "probe"

    def probe() -> dict:
        info = pipeline.probe(base_cfg, base)
        return {"n_train": len(load_data(base_cfg).train), "augment_examples": info.get("augment_examples", 0)}

    probed = _piece(out, "probe", probe)
    n_train = probed["n_train"]

    def subset_value(s: str) -> int | None:
        return None if s == "all" else int(s)

    def search_piece(seed: int, subset: str, search_epochs: int) -> tuple[str, Path]:
        name = f"s{seed}-search-{subset}-e{search_epochs}"
        run = out / "runs" / name
        cfg = base_cfg.update({"seed": seed, "augment": 0, "search_max_examples": subset_value(subset),
                               "search_epochs": search_epochs})

        def go() -> dict:
            _prepare(base, run, cfg, 0, n_train)
            summary = pipeline.search(cfg, run)
            return {"genotype": summary["genotype_str"], "history": summary["history"], "seed": seed,
                    "subset": subset, "search_epochs": search_epochs}

        _piece(out, name, go)
        return name, run

    def retrain_piece(seed: int, search: tuple[str, Path], copies_: int, epochs_: int, distill: str = "probes") -> None:
        sname, srun = search
        name = f"{sname}-c{copies_}-r{epochs_}" + ("-logits" if distill != "probes" else "")
        run = out / "runs" / name
        cfg = base_cfg.update({"seed": seed, "augment": copies_, "retrain_epochs": epochs_,
                               "retrain_distill": distill})

        def go() -> dict:
            _prepare(base, run, cfg, copies_, n_train)
            if not (run / "search").exists():
                shutil.copytree(srun / "search", run / "search")
            result = pipeline.retrain(cfg, run)
            return {"history": result["history"], "seed": seed, "search": sname, "copies": copies_,
                    "retrain_epochs": epochs_, "distill": distill}

        _piece(out, name, go)
        if not (out / "pieces" / "evaluate.json").is_file():
            _piece(out, "evaluate", lambda: {"results": pipeline.evaluate(cfg, run)["student"]})

    for seed in seeds:  # the core: every seed
        s = search_piece(seed, args.subset, args.search_epochs)
        for c, e in zip(copies, epochs):
            retrain_piece(seed, s, c, e)
    if args.core_only:
        return
    e0 = epochs[copies.index(0)] if 0 in copies else 3
    for subset in [x for x in args.extra_subsets.split(",") if x]:  # seed 0: the search's knobs
        retrain_piece(seeds[0], search_piece(seeds[0], subset, args.search_epochs), 0, e0)
    for se in [int(x) for x in args.extra_search_epochs.split(",") if x]:
        retrain_piece(seeds[0], search_piece(seeds[0], args.subset, se), 0, e0)
    if args.logits_only:
        retrain_piece(seeds[0], search_piece(seeds[0], args.subset, args.search_epochs), 0, e0, "logits")
    for c, e in extra_copies:
        retrain_piece(seeds[0], search_piece(seeds[0], args.subset, args.search_epochs), c, e)
    logger.info("study done: python benchmarks/learning_curves.py ... --out %s --report", out)


if __name__ == "__main__":
    main()
