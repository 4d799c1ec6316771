"""NAS-BERT, stage by stage over one run directory, in the order of the paper's method section.

1. :func:`supernet`  - cut the teacher into N blocks, cache its block-edge states on the corpus, train every
   student block to map teacher state n-1 to teacher state n (one random path per step), and shrink each
   block's space progressively (bins by size, worse half dropped per epoch).
2. :func:`latency`   - measure every op at every size on this device into a lookup table.
3. :func:`select`    - per budget: combine surviving block paths by summed block loss under params/latency,
   evaluate the best T exactly, export the winner as a standalone ``nasbert`` model.
4. :func:`pretrain`  - (optional) pre-training distillation of a selected model on the corpus.
5. :func:`finetune`  - fine-tune with (1 - lambda) task loss + lambda KL to a fine-tuned teacher.
   :func:`baseline` builds the paper's comparison, trained the same way: a hand-designed BERT of the same
   size and one of the same latency, block-wise distilled by the supernet's own loop as one fixed path.

Run directory: ``settings.json space.json tokenizer/ supernet/{supernet.safetensors,candidates.json,log.json}
latency.json selection.json models/NAME/``.
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..data.corpus import Corpus, shuffled_indices
from ..data.encode import to_device
from ..errors import BertnasError
from ..measure.latency_table import LatencyTable, cached_table, measure_table
from ..measure.profile import random_batch, count_params, measure_latency
from ..teacher.knowledge import cache_root
from ..teacher.loading import load_encoder
from ..training import distributed as ddp
from ..utils import atomic_dir, read_json, resolve_device, run_metadata, set_seed, write_json
from .config import SupernetSettings
from .costs import (TeacherShape, block_op_specs, block_parts, model_parts, op_specs, path_latencies,
                    predict_latency)
from .distill import cache_key, chain_loss, compute_block_states, score_path, teacher_fingerprint
from .select import build_student, choose_embedding_size, combine, out_of_budget, parse_constraints, select_best
from .space import Architecture, SpaceConfig, Supernet, enumerate_paths, path_params
from .train import train_supernet

logger = logging.getLogger("bertnas")


def set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise BertnasError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def _split(n: int, heldout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of the corpus into training and held-out sentences (held out: at most a fifth); the draw of
    ``random.shuffle`` over ``range(n)``, kept in arrays."""
    order = shuffled_indices(random.Random(seed), n)
    k = max(1, min(heldout, n // 5))
    return np.sort(order[k:]), np.sort(order[:k])


def _cache_dir(settings: SupernetSettings) -> Path:
    return cache_root(settings.cache_dir)


def _read_texts(settings: SupernetSettings) -> Corpus:
    """The corpus subset, read in two passes (no list of every line in memory; the kept lines spill to a temporary
    file in the cache directory, deleted when closed)."""
    cache = _cache_dir(settings)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BertnasError(f"cannot write in the cache directory {cache} ({exc.strerror}): pass a writable --cache-dir") from None
    return Corpus(settings.corpus, settings.max_sentences + settings.heldout_sentences, settings.seed,
                  pairs=settings.corpus_pairs == "pairs", spill_dir=cache)


def _states(settings: SupernetSettings, teacher=None, tokenizer=None, boundaries=None, texts: Corpus | None = None,
            keep: bool = True):
    """The corpus' cached teacher states (computed once per teacher, corpus subset, length and blocks) and the
    train / held-out split; ``keep=False`` only fills the cache (returns None)."""
    own = texts is None
    texts = _read_texts(settings) if own else texts
    try:
        return _states_of(settings, texts, teacher, tokenizer, boundaries, keep)
    finally:
        if own:
            texts.close()


def _states_of(settings: SupernetSettings, texts: Corpus, teacher, tokenizer, boundaries, keep: bool):
    """:func:`_states` for an open corpus."""
    if len(texts) < 2:
        raise BertnasError(f"corpus {settings.corpus} has {len(texts)} sentence(s): at least 2 are needed (train + held out)")
    if teacher is None:
        teacher, tokenizer = load_encoder(settings.teacher)
    key = cache_key(teacher_fingerprint(teacher), texts, settings.max_len, boundaries)
    cache = _cache_dir(settings)
    states = compute_block_states(teacher, tokenizer, texts, boundaries, settings.max_len,
                                  cache / f"nasbert-states-{key}", settings.teacher_batch_size, resolve_device(settings.device),
                                  settings.max_cache_gb * 1e9)
    return (states, _split(len(texts), settings.heldout_sentences, settings.seed)) if keep else None


def _open_run(out: Path) -> tuple[SupernetSettings, SpaceConfig]:
    if not (Path(out) / "settings.json").is_file():
        raise BertnasError(f"{out} is not a NAS-BERT run directory (no settings.json): run `bertnas nasbert supernet --out {out}` first")
    return SupernetSettings.from_dict(read_json(Path(out) / "settings.json")), SpaceConfig.from_dict(read_json(Path(out) / "space.json"))


def supernet(settings: SupernetSettings, out: str | Path, resume: bool = True) -> dict:
    """Stage 1: block-wise distillation of the supernet with progressive shrinking."""
    settings.validate()
    out = Path(out)
    device = resolve_device(settings.device)
    ddp.setup(device)  # under torchrun: data-parallel steps; rank 0 runs the teacher, times ops and writes files
    set_seed(settings.seed)
    set_threads(settings.threads)
    t_start = time.time()
    texts = _read_texts(settings)  # the cheap checks first: a bad corpus fails before the teacher loads
    teacher, tokenizer = load_encoder(settings.teacher)
    shape = TeacherShape.of(teacher.config)
    space = SpaceConfig(teacher_hidden=shape.hidden, teacher_layers=int(teacher.config.num_hidden_layers),
                        num_blocks=settings.num_blocks, layers_per_block=settings.layers_per_block,
                        hidden_sizes=settings.hidden_list(), dropout=settings.dropout).validate()

    def write_run_files() -> None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "settings.json", settings.to_dict())
        write_json(out / "space.json", space.to_dict())
        write_json(out / "teacher_shape.json", shape.__dict__)
        write_json(out / "run_meta.json", run_metadata())
        with atomic_dir(out / "tokenizer") as tmp:
            tokenizer.save_pretrained(tmp)

    ddp.on_main(write_run_files)
    t0 = time.time()
    ddp.on_main(_states, settings, teacher, tokenizer, space.boundaries(), texts, keep=False)  # rank 0 fills the cache
    states, (train_idx, held_idx) = _states(settings, teacher, tokenizer, space.boundaries(), texts)  # then all open it
    texts.close()  # the token arrays and states hold what training reads; the spilled text can go
    teacher_seconds = time.time() - t0
    logger.info("teacher states: %d training + %d held-out sentences (%.0f s)", len(train_idx), len(held_idx), teacher_seconds)

    paths = enumerate_paths(space)
    t0 = time.time()
    timed = ddp.on_main(_path_latency, settings, space, paths, out)  # one timing, so every rank bins alike
    latencies = None if timed is None else {p: timed[str(p)] for p in paths}
    latency_seconds = time.time() - t0
    torch.manual_seed(settings.seed)
    net = Supernet(space)  # the same initial weights on every rank
    ddp.seed_per_rank(settings.seed)  # then each rank its own dropout masks, as one process over the batch
    t0 = time.time()
    state, log = train_supernet(net, states, train_idx, held_idx, settings, paths, out / "supernet", resume, device,
                                latencies)
    train_seconds = time.time() - t0
    net.cpu()
    teacher.cpu()

    def score_and_save() -> list:
        held_out = list(states.batches(held_idx, settings.batch_size))  # every held-out sentence
        blocks = [[{"path": str(p), "params": path_params(p), "loss": score_path(net, n, p, held_out)}
                   for p in state.candidates(n)] for n in range(space.num_blocks)]
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "supernet" / "supernet.safetensors"))
        write_json(out / "supernet" / "candidates.json", {"blocks": blocks})
        return blocks

    ddp.on_main(score_and_save)
    summary = {"paths_per_block_start": len(paths), "paths_per_block_end": [state.size(n) for n in range(space.num_blocks)],
               "space_size_start": len(paths) ** space.num_blocks, "space_size_end": state.space_size(),
               "shrinks": state.history, "epochs": log, "train_sentences": len(train_idx), "heldout_sentences": len(held_idx),
               "cache": str(states.directory), "supernet_params": count_params(net),
               "bins_per_block": [len(b) for b in state.bins],
               "seconds": {"teacher_states": round(teacher_seconds, 1), "op_latency": round(latency_seconds, 1),
                           "supernet_training": round(train_seconds, 1),
                           "total": round(time.time() - t_start, 1)}}
    ddp.on_main(write_json, out / "supernet" / "log.json", summary)
    return summary


def _path_latency(settings: SupernetSettings, space: SpaceConfig, paths: list, out: Path) -> dict | None:
    """Every path's layer latency on this device, for the bins' latency axis (None when binning by params only).
    The op table is cached in OUT/supernet/op_latency.json, so a resumed or repeated run bins the same way."""
    if settings.bin_by != "params,latency":
        return None
    (out / "supernet").mkdir(parents=True, exist_ok=True)
    table, measured = cached_table(out / "supernet" / "op_latency.json", block_op_specs(space), [settings.latency_seq_len],
                                   [settings.latency_batch], threads=settings.threads, repeats=settings.latency_repeats,
                                   stat="min")
    if measured:
        logger.info("timed %d block ops for the latency bins (batch %d, sequence %d)", measured, settings.latency_batch,
                    settings.latency_seq_len)
    return {str(p): ms for p, ms in path_latencies(table, paths, settings.latency_seq_len, settings.latency_batch).items()}


def _load_supernet(out: Path, space: SpaceConfig) -> Supernet:
    path = out / "supernet" / "supernet.safetensors"
    if not path.is_file():
        raise BertnasError(f"{path} not found: `bertnas nasbert supernet --out {out}` has not finished")
    net = Supernet(space)
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def latency(out: str | Path, seq_len: int = 128, batch_sizes: tuple[int, ...] = (1, 32),
            embedding_sizes: tuple[int, ...] = (64, 128, 256), threads: int | None = None, repeats: int = 10,
            stat: str = "median", calibration_models: int = 4, device: str = "cpu") -> LatencyTable:
    """Stage 2: every op, adapter, embedding and head any student can hold, timed on ``device`` (the one the
    models will serve on; on CUDA by CUDA events)."""
    out = Path(out)
    _, space = _open_run(out)
    shape = TeacherShape(**read_json(out / "teacher_shape.json"))
    path = out / "latency.json"
    table = LatencyTable.load(path) if path.is_file() else None
    device = resolve_device(device)
    if table is not None and threads is not None and table.threads not in (None, threads):
        table = None  # measured with another thread count: start over
    if table is not None and table.hardware.get("device", "cpu") != str(device):
        table = None  # measured on another device: start over
    table = measure_table(op_specs(space, shape, list(embedding_sizes)), [seq_len], list(batch_sizes), threads=threads,
                          repeats=repeats, table=table, stat=stat, device=device)
    if calibration_models:
        _calibrate(table, space, shape, list(embedding_sizes), seq_len, tuple(batch_sizes), calibration_models, repeats,
                   device)
    table.save(path)
    logger.info("latency table: %d entries in %s", len(table.entries), path)
    return table


def select(out: str | Path, max_params: str | None = None, max_latency_ms: str | None = None,
           embedding_sizes: tuple[int, ...] = (64, 128, 256), embedding_fraction: float = 0.5, top_t: int = 20,
           seq_len: int = 128, latency_batch: int = 1, measure: bool = True, device: str = "cpu") -> list[dict]:
    """Stage 3: one standalone model per budget, written to ``out/models/NAME``; returns their summaries.
    ``device`` runs the exact evaluation and times the selected models (the latency table's device)."""
    out = Path(out)
    constraints = parse_constraints(max_params, max_latency_ms)
    if top_t < 1:
        raise BertnasError(f"--top-t must be >= 1, got {top_t}")
    settings, space = _open_run(out)
    shape = TeacherShape(**read_json(out / "teacher_shape.json"))
    table = LatencyTable.load(out / "latency.json") if (out / "latency.json").is_file() else None
    blocks = read_json(out / "supernet" / "candidates.json")["blocks"] if (out / "supernet" / "candidates.json").is_file() else None
    if blocks is None:
        raise BertnasError(f"{out}/supernet/candidates.json not found: `bertnas nasbert supernet --out {out}` has not finished")
    net = _load_supernet(out, space)
    teacher, tokenizer = load_encoder(settings.teacher)
    states, (_, held_idx) = _states(settings, teacher, tokenizer, space.boundaries())
    device = resolve_device(device)
    held_out = [to_device(b, device) for b in states.batches(held_idx, settings.batch_size)]  # every held-out sentence
    net.to(device)
    results = []
    for c in constraints:
        t0 = time.time()
        chosen = choose_embedding_size(list(embedding_sizes), shape, c.max_params, embedding_fraction)
        for e in [chosen] + sorted((x for x in embedding_sizes if x < chosen), reverse=True):  # smaller E if need be
            found = combine(blocks, e, shape, table, c, seq_len, latency_batch, top_t)
            if found:
                break
        if not found:
            raise out_of_budget(blocks, e, shape, table, c, seq_len, latency_batch)
        if e != chosen:
            logger.info("budget %s: nothing fits with embedding size %d, selected with %d", c.name, chosen, e)
        best = select_best(found, net, held_out)
        model = build_student(best.arch, net.cpu(), teacher, shape)
        net.to(device)
        target = out / "models" / c.name
        with atomic_dir(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        entry = {"name": c.name, "dir": str(target), "max_params": c.max_params, "max_latency_ms": c.max_latency_ms,
                 "architecture": str(best.arch), "params": count_params(model), "approx_loss": best.approx_loss,
                 "exact_loss": best.exact_loss, "candidates_evaluated": len(found), "seq_len": seq_len}
        if table is not None:
            for b in (1, 32):
                try:
                    entry[f"predicted_ms_b{b}"] = predict_latency(table, best.arch, shape.hidden, seq_len, b)
                    entry[f"sum_of_parts_ms_b{b}"] = table.sum_of_parts(model_parts(best.arch, shape.hidden), seq_len, b)
                except BertnasError:
                    pass
        if measure:
            entry.update(measure_model(model, shape.vocab_size, seq_len, table, device=device))
            for b in (1, 32):
                if f"predicted_ms_b{b}" in entry:
                    entry[f"error_b{b}"] = entry[f"predicted_ms_b{b}"] / entry[f"measured_ms_b{b}"] - 1
        entry["seconds"] = round(time.time() - t0, 1)
        write_json(target / "selection.json", entry)
        logger.info("selected %s: %s (%.2fM params)", c.name, best.arch, entry["params"] / 1e6)
        results.append(entry)
    previous = read_json(out / "selection.json")["models"] if (out / "selection.json").is_file() else []
    names = {r["name"] for r in results}
    write_json(out / "selection.json", {"models": [p for p in previous if p["name"] not in names] + results})
    return results


def _calibrate(table: LatencyTable, space: SpaceConfig, shape: TeacherShape, embedding_sizes: list[int], seq_len: int,
               batch_sizes: tuple[int, ...], count: int, repeats: int, device: torch.device = torch.device("cpu")) -> None:
    """Time ``count`` whole students and fit the table's per-batch scale and offset: with 3 or more, the fastest
    and the slowest the space can build (the ends of the range selection works in; random students are all
    mid-range) and the rest random (seeded)."""
    from .modeling import NasBertConfig, NasBertForSequenceClassification
    from .space import Architecture

    rng = random.Random(1234)
    paths = enumerate_paths(space)
    archs = []
    if count >= 3:
        def cost(p) -> float:
            return table.sum_of_parts(block_parts(p), seq_len, batch_sizes[0])

        archs += [Architecture(min(embedding_sizes), (min(paths, key=cost),) * space.num_blocks),
                  Architecture(max(embedding_sizes), (max(paths, key=cost),) * space.num_blocks)]
    while len(archs) < count:
        archs.append(Architecture(rng.choice(embedding_sizes), tuple(rng.choice(paths) for _ in range(space.num_blocks))))
    sums: dict[int, list[float]] = {b: [] for b in batch_sizes}
    measured: dict[int, list[float]] = {b: [] for b in batch_sizes}
    for arch in archs:
        model = NasBertForSequenceClassification(NasBertConfig(
            vocab_size=shape.vocab_size, max_position_embeddings=shape.max_positions, type_vocab_size=shape.type_vocab_size,
            hidden_size=shape.hidden, architecture=str(arch))).eval().to(device)
        for b in batch_sizes:
            batch = random_batch(shape.vocab_size, b, seq_len, torch.Generator().manual_seed(b), device)
            measured[b].append(measure_latency(lambda: model(**batch), warmup=3, repeats=repeats,
                                               threads=table.threads, device=device)[f"{table.stat}_ms"])
            sums[b].append(table.sum_of_parts(model_parts(arch, shape.hidden), seq_len, b))
    for b in batch_sizes:
        scale, offset = table.calibrate(sums[b], measured[b], seq_len, b)
        logger.info("latency calibration at batch %d: measured = %.3f x sum of parts %+.3f ms (%d models)", b, scale, offset, count)


def measure_model(model, vocab_size: int, seq_len: int, table: LatencyTable | None, repeats: int = 20,
                  device: torch.device | str = "cpu") -> dict:
    """Whole-model latency at batch 1 and 32, with the table's threads and statistic (so they compare)."""
    threads = table.threads if table else None
    stat = table.stat if table else "median"
    out = {"measured_stat": stat}
    model.eval().to(device)
    for b in (1, 32):
        batch = random_batch(vocab_size, b, seq_len, torch.Generator().manual_seed(b), device)
        out[f"measured_ms_b{b}"] = measure_latency(lambda: model(**batch), warmup=3, repeats=repeats, threads=threads,
                                                   device=device)[f"{stat}_ms"]
    model.cpu()
    return out


def pretrain(out: str | Path, model_dir: str, save: str | Path, epochs: int = 1, batch_size: int = 32, lr: float = 5e-4,
             threads: int | None = None, device: str = "auto", resume: bool = True, amp: bool = False,
             amp_dtype: str = "auto") -> dict:
    """Stage 4 (optional): pre-training distillation of ``model_dir`` on the run's corpus states (resumable;
    ``amp``: mixed-precision autocast in the steps, ``amp_dtype`` auto, bf16 or fp16)."""
    from .pretrain import pretrain_distill

    set_threads(threads)
    settings, space = _open_run(Path(out))
    device = resolve_device(device)
    ddp.setup(device)  # under torchrun: data-parallel steps, rank 0 writes
    ddp.on_main(_states, settings, boundaries=space.boundaries(), keep=False)  # rank 0 fills the cache if needed
    states, (train_idx, _) = _states(settings, boundaries=space.boundaries())
    return pretrain_distill(model_dir, states, train_idx, save, epochs, batch_size, lr, settings.seed, device, resume,
                            amp, amp_dtype)


def baseline(out: str | Path, resume: bool = True, measure: bool = True, models: list[str] | None = None) -> list[dict]:
    """Two hand-designed BERTs per selected model, trained as the NAS-BERT models are: ``out/models/bert-NAME-params``
    (closest in parameters) and ``out/models/bert-NAME-latency`` (closest in predicted latency at batch 1; needs
    the latency table). Each distinct shape is block-wise distilled once, for the supernet's epochs."""
    from .baseline import layers_and_hidden, match_latency, match_params, train_baseline

    out = Path(out)
    settings, space = _open_run(out)
    if not (out / "selection.json").is_file():
        raise BertnasError(f"{out}/selection.json not found: run `bertnas nasbert select --out {out}` first")
    set_seed(settings.seed)
    set_threads(settings.threads)
    shape = TeacherShape(**read_json(out / "teacher_shape.json"))
    table = LatencyTable.load(out / "latency.json") if (out / "latency.json").is_file() else None
    table_device = table.hardware.get("device", "cpu") if table is not None else "cpu"  # where models are timed
    teacher, tokenizer = load_encoder(settings.teacher)
    states, (train_idx, held_idx) = _states(settings, teacher, tokenizer, space.boundaries())
    held_out = list(states.batches(held_idx, settings.batch_size))
    device = resolve_device(settings.device)
    wanted: list[tuple[dict, str, Architecture]] = []
    selected = read_json(out / "selection.json")["models"]
    unknown = sorted(set(models or []) - {m["name"] for m in selected})
    if unknown:
        raise BertnasError(f"--models {','.join(unknown)}: not selected in {out} (selected: "
                           f"{', '.join(m['name'] for m in selected)})")
    for m in selected:
        if models and m["name"] not in models:
            continue
        arch = Architecture.parse(m["architecture"])
        e, n = arch.embedding_size, len(arch.blocks)
        wanted.append((m, "params", match_params(int(m["params"]), e, n, shape, space.hidden_sizes)))
        target = m.get("predicted_ms_b1")  # both sides from the same table: predicted against predicted
        if table is None or target is None:
            logger.warning("no latency-matched baseline for %s: run `bertnas nasbert latency --out %s` before select",
                           m["name"], out)
            continue
        wanted.append((m, "latency", match_latency(float(target), e, n, shape, table, int(m.get("seq_len", 128)), 1,
                                                   space.hidden_sizes, table_device)))
    if table is not None:
        table.save(out / "latency.json")  # with any parts the baselines' sizes added
    trained: dict[str, tuple] = {}
    built = []
    for m, match, arch in wanted:
        key = str(arch)
        t0 = time.time()
        if key not in trained:
            slug = f"{arch.blocks[0].hidden}x{arch.blocks[0].depth // 2}-E{arch.embedding_size}"  # hidden x layers a block
            net, log = train_baseline(arch, settings, space.teacher_layers, shape, states, train_idx, held_idx,
                                      out / "baselines" / slug, resume, device)
            trained[key] = (net, log, chain_loss(net, list(arch.blocks), held_out))
        net, log, exact = trained[key]
        model = build_student(arch, net, teacher, shape)
        name = f"bert-{m['name']}-{match}"
        target = out / "models" / name
        with atomic_dir(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        layers, hidden = layers_and_hidden(arch)
        info = {"name": name, "like": m["name"], "match": match, "architecture": key, "layers": layers, "hidden": hidden,
                "params": count_params(model), "target_params": m["params"], "exact_loss": exact,
                "like_exact_loss": m.get("exact_loss"), "train_block_mse": log[-1]["train_block_mse"] if log else None,
                "epochs": len(log), "dir": str(target), "seq_len": int(m.get("seq_len", 128))}
        if table is not None:
            info["predicted_ms_b1"] = predict_latency(table, arch, shape.hidden, info["seq_len"], 1)
            info["target_ms_b1"] = m.get("predicted_ms_b1")
        if measure:
            info.update(measure_model(model, shape.vocab_size, info["seq_len"], table, device=table_device))
        info["seconds"] = round(time.time() - t0, 1)
        logger.info("baseline %s: BERT %d layers, hidden %d, %.2fM params, held-out chained loss %.4f (%s: %.4f)", name,
                    layers, hidden, info["params"] / 1e6, exact, m["name"], m.get("exact_loss") or float("nan"))
        built.append(info)
    previous = read_json(out / "baselines.json")["models"] if (out / "baselines.json").is_file() else []
    names = {b["name"] for b in built}
    write_json(out / "baselines.json", {"models": [p for p in previous if p["name"] not in names] + built})
    return built


__all__ = ["supernet", "latency", "select", "pretrain", "baseline", "measure_model"]
