"""Run the teacher once and cache what every later step needs from it.

Stored in one directory per (teacher weights + tokenizer + data + settings), ``knowledge-<key>/``:
  * ``{split}_logits.npy``   (N, num_labels) float32: the teacher's predictions, in task label order;
  * ``{split}_features.npy`` (L + 1, N, 2H) float16: for the embedding layer and each hidden layer, the
    [CLS] vector concatenated with the masked token mean -- the inputs of the per-layer probes. With
    ``max_feature_rows`` below the training set's size, train keeps the rows of a seeded sample only, listed
    (sorted) in ``train_feature_rows.npy``: the probes train on them and label the other rows from a second
    teacher pass (``teacher.probes.probe_unsampled``), so the cache grows with the sample, not the data;
  * ``tables.safetensors``: the word / position embedding tables the student projects;
  * ``meta.json``, written last (a directory without it is never used).
The arrays are written batch by batch into memory-mapped files and read back memory-mapped, so neither
this pass nor the later stages hold a big split in RAM. Search and retraining read only this directory:
the teacher never runs twice.

The pass is built for CPU speed: examples sorted by length (little padding), ``torch.inference_mode``, and
bfloat16 autocast where the hardware has it, kept only if it agrees with float32 on the dev split.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..data.encode import ENCODE_CHUNK, Encoded, collate, encode, inference_batches, lengths_of, to_device
from ..data.examples import Examples, TaskData, TaskSpec
from ..data.metrics import compute_metrics
from ..errors import BertnasError
from ..training.evaluation import evaluate
from ..utils import atomic_dir, atomic_write_text, hash_obj, progress
from .loading import Teacher

logger = logging.getLogger("bertnas")
CACHE_VERSION = 3
TEACHER_DTYPES = ("auto", "fp32", "bf16")
BF16_MIN_AGREEMENT = 0.995  # share of dev predictions bf16 must keep (argmax; regression: within 1% of the spread)
BF16_MAX_METRIC_CHANGE = 0.002  # 0.2 points of the headline dev metric


@dataclass
class Knowledge:
    """Cached teacher outputs; arrays are opened memory-mapped when first asked for."""

    key: str
    meta: dict
    path: Path | None = None  # the knowledge directory
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def array_path(self, name: str) -> Path | None:
        """The ``.npy`` file that stores array ``name`` (logits, features), or None: the one place that knows
        the cache's file names, for readers that map the file their own way (the probes)."""
        if self.path is None:
            return None
        path = self.path / f"{name}.npy"
        return path if path.is_file() else None

    def get(self, name: str) -> torch.Tensor | None:
        if name not in self.tensors:
            if self.path is None:
                return None
            array = self.array_path(name)
            if array is not None:
                self.tensors[name] = torch.from_numpy(np.load(array, mmap_mode="c", allow_pickle=False))
            else:
                with safe_open(str(self.path / "tables.safetensors"), framework="pt") as f:
                    if name not in f.keys():
                        return None
                    self.tensors[name] = f.get_tensor(name)
        return self.tensors[name]

    def logits(self, split: str) -> torch.Tensor:
        return self.get(f"{split}_logits")

    def features(self, split: str) -> torch.Tensor:
        return self.get(f"{split}_features")

    def feature_rows(self) -> np.ndarray | None:
        """The sorted training rows whose features are stored, or None when every row's are: row i of the train
        features belongs to example ``feature_rows()[i]``."""
        if not self.meta.get("train_feature_rows"):
            return None
        rows = self.get("train_feature_rows")
        if rows is None:
            raise BertnasError(f"cached teacher knowledge {self.path} lacks train_feature_rows.npy: delete it and run "
                               "`bertnas probe` again")
        return rows.numpy()

    @property
    def word_embeddings(self) -> torch.Tensor:
        return self.get("word_embeddings")

    @property
    def position_embeddings(self) -> torch.Tensor | None:
        return self.get("position_embeddings")

    @property
    def num_layers(self) -> int:
        return int(self.meta["num_layers"])

    @property
    def bf16(self) -> bool:
        """Whether the teacher pass ran in bfloat16: later passes over the same teacher (copies, unsampled rows)
        run as it did."""
        return self.meta.get("precision", {}).get("chosen") == "bf16"

    def check_data(self, data: TaskData) -> None:
        """Refuse to pair this knowledge with data it was not computed on (targets are looked up by index)."""
        if self.meta.get("train_hash") != hash_examples(data.train) or self.meta.get("dev_hash") != hash_examples(data.dev):
            raise BertnasError("the data changed since `bertnas probe` computed the teacher's knowledge: "
                               "run `bertnas probe` again")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: `cache_dir` when given, else $BERTNAS_CACHE_DIR, else ~/.cache/bertnas."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("BERTNAS_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bertnas"


def hash_examples(ex: Examples) -> str:
    h = hashlib.sha256()
    for i in range(len(ex)):
        h.update(ex.texts[i].encode())
        h.update(b"\x00" + (ex.text_pairs[i].encode() if ex.text_pairs else b"") + b"\x00")
        h.update(repr(ex.labels[i]).encode() + b"\x01")
    return h.hexdigest()


def hash_weights(model: torch.nn.Module, h=None):
    """A sha256 (``h``, or a new one) updated with every weight's name and float32 bytes, in name order: the one
    weights fingerprint of the teacher caches (knowledge, NAS-BERT block states and logits) and of resumable
    fine-tuning."""
    h = hashlib.sha256() if h is None else h
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h


def teacher_fingerprint(teacher: Teacher) -> str:
    """Hash of the teacher's weights and vocabulary: changes whenever its knowledge could change."""
    h = hash_weights(teacher.model)
    vocab = sorted(teacher.tokenizer.get_vocab().items())
    h.update(json.dumps(vocab).encode())
    h.update(json.dumps(teacher.label_order).encode())
    return h.hexdigest()


def is_sampled(n: int, most: int | None) -> bool:
    """Whether a training split of ``n`` rows keeps the features of a sample only (``most`` 0 or None: no bound)."""
    return bool(most) and n > most


def feature_rows(n: int, most: int | None, seed: int = 0) -> np.ndarray | None:
    """The sorted training rows whose features the cache keeps: None (all ``n``) unless ``n`` exceeds ``most``
    (0 or None: no bound), else a random sample of ``most`` rows drawn by a numpy generator seeded with ``seed``
    (0 from the pipeline, whatever the run's seed: runs of several seeds share one teacher pass and cache)."""
    if not is_sampled(n, most):
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=most, replace=False))


def knowledge_key(teacher: Teacher, data: TaskData, max_seq_len: int, teacher_dtype: str = "auto",
                  max_feature_rows: int | None = None, seed: int = 0) -> str:
    """The cache key; the feature sample enters it only when there is one, so an unsampled cache keeps its key."""
    settings = {
        "version": CACHE_VERSION,
        "teacher": teacher_fingerprint(teacher),
        "train": hash_examples(data.train),
        "dev": hash_examples(data.dev),
        "max_seq_len": max_seq_len,
        "teacher_dtype": teacher_dtype,
    }
    if is_sampled(len(data.train), max_feature_rows):
        settings["feature_sample"] = {"size": max_feature_rows, "seed": seed}
    return hash_obj(settings)[:24]


# ----------------------------------------------------------------------------- the teacher pass
@functools.lru_cache(maxsize=None)
def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_supported(device: torch.device) -> bool:
    """True where bfloat16 matmuls run natively (CUDA GPUs from Ampere on, CPUs with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        from ..training.amp import cuda_native_bf16

        return cuda_native_bf16(device)
    return device.type == "cpu" and _cpu_has_bf16()


def layer_features(hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
    """(L + 1, B, 2H): [CLS] and masked token mean of every layer; ``mask`` is (B, T)."""
    m = mask.unsqueeze(-1).to(hidden_states[0].dtype)  # (B, T, 1)
    count = m.sum(1).clamp(min=1)
    return torch.stack([torch.cat([h[:, 0], (h * m).sum(1) / count], -1) for h in hidden_states])


Sink = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
"""Receives (example indices (B,), logits (B, C) float32 in task label order, features (L+1, B, 2H))."""


def teacher_pass(
    teacher: Teacher,
    enc: Encoded,
    sink: Sink,
    device: torch.device,
    bf16: bool,
    batch_size: int = 64,
    token_budget: int | None = None,
    want_features: bool = True,
    desc: str = "teacher",
) -> None:
    """Run the teacher over ``enc`` once, on ``device`` (it is moved there), in length-sorted batches, handing each
    batch to ``sink``."""
    model = teacher.model.to(device).eval()
    plan = inference_batches(enc, batch_size, token_budget)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.inference_mode(), autocast:
        for indices in progress(plan, total=len(plan), desc=desc, examples=len(enc)):
            batch = to_device(collate(enc, indices), device)
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"], output_hidden_states=want_features)
            logits = out.logits.float()
            if teacher.label_order is not None:
                logits = logits[:, teacher.label_order]
            feats = layer_features(out.hidden_states, batch["attention_mask"]) if want_features else None
            sink(batch["index"].cpu(), logits.cpu(), None if feats is None else feats.float().cpu())


def _dev_agreement(spec: TaskSpec, fp32: torch.Tensor, bf16: torch.Tensor, labels: list) -> dict:
    """How far bf16 predictions are from fp32 ones on dev: agreement share and headline metric change."""
    if spec.is_regression:
        spread = float(fp32.std()) or 1.0
        agree = float(((bf16 - fp32).abs().squeeze(-1) <= 0.01 * spread).float().mean())
    else:
        agree = float((bf16.argmax(-1) == fp32.argmax(-1)).float().mean())
    m32 = compute_metrics(spec, fp32.numpy(), labels)[spec.headline]
    m16 = compute_metrics(spec, bf16.numpy(), labels)[spec.headline]
    return {"agreement": round(agree, 5), "metric_fp32": m32, "metric_bf16": m16, "metric_change": round(m16 - m32, 5)}


def _collect(n: int, layers: int | None) -> tuple[dict[str, torch.Tensor | None], Sink]:
    """In-memory arrays for a small split (dev) and the sink that fills them by index."""
    store: dict[str, torch.Tensor | None] = {"logits": None, "features": None}

    def sink(idx: torch.Tensor, logits: torch.Tensor, feats: torch.Tensor | None) -> None:
        if store["logits"] is None:
            store["logits"] = torch.empty((n, logits.size(1)), dtype=torch.float32)
            if feats is not None:
                store["features"] = torch.empty((feats.size(0), n, feats.size(2)), dtype=torch.float16)
        store["logits"][idx] = logits
        if feats is not None:
            store["features"][:, idx] = feats.half()

    return store, sink


def choose_precision(
    teacher: Teacher,
    dev: Encoded,
    spec: TaskSpec,
    dev_labels: list,
    requested: str,
    device: torch.device,
    batch_size: int = 64,
    token_budget: int | None = None,
) -> tuple[bool, dict[str, torch.Tensor], dict]:
    """Decide bf16 or fp32 for the teacher pass; returns (use bf16, fp32 dev outputs, the evidence).

    ``auto`` keeps bf16 only where the hardware has it and, on the dev split, it agrees with fp32 on at least
    99.5% of predictions and moves the headline metric by at most 0.2 points; ``fp32``/``bf16`` force one.
    The dev outputs stored are always the fp32 ones.
    """
    if requested not in TEACHER_DTYPES:
        raise BertnasError(f"invalid teacher dtype {requested!r}: use one of {', '.join(TEACHER_DTYPES)}")
    fp32, sink = _collect(len(dev), None)
    teacher_pass(teacher, dev, sink, device, bf16=False, batch_size=batch_size, token_budget=token_budget,
                 desc="teacher dev (fp32)")
    report: dict = {"requested": requested}
    if requested == "fp32" or (requested == "auto" and not bf16_supported(device)):
        if requested == "auto":
            logger.info("teacher pass in float32: this %s has no native bfloat16", device.type)
        report["chosen"] = "fp32"
        return False, fp32, report
    half, sink16 = _collect(len(dev), None)
    teacher_pass(teacher, dev, sink16, device, bf16=True, batch_size=batch_size, token_budget=token_budget,
                 want_features=False, desc="teacher dev (bf16 check)")
    report.update(_dev_agreement(spec, fp32["logits"], half["logits"], dev_labels))
    ok = report["agreement"] >= BF16_MIN_AGREEMENT and abs(report["metric_change"]) <= BF16_MAX_METRIC_CHANGE
    if requested == "bf16":
        report["chosen"] = "bf16"
        if not ok:
            logger.warning("teacher in bfloat16 (forced) agrees with float32 on only %.2f%% of dev predictions "
                           "(metric change %+.4f)", 100 * report["agreement"], report["metric_change"])
        return True, fp32, report
    report["chosen"] = "bf16" if ok else "fp32"
    if ok:
        logger.info("teacher pass in bfloat16: agrees with float32 on %.2f%% of dev predictions, metric change %+.4f",
                    100 * report["agreement"], report["metric_change"])
    else:
        logger.warning("teacher pass falls back to float32: bfloat16 agrees on only %.2f%% of dev predictions "
                       "(needs %.1f%%) and moves the dev %s by %+.4f (at most %.3f allowed); "
                       "--teacher-dtype bf16 forces it", 100 * report["agreement"], 100 * BF16_MIN_AGREEMENT,
                       spec.headline, report["metric_change"], BF16_MAX_METRIC_CHANGE)
    return ok, fp32, report


class _MemmapWriter:
    """The sink that writes a split's logits and features by index into .npy files on disk; with ``kept`` (sorted
    rows), the features of those rows only, in that order."""

    def __init__(self, directory: Path, split: str, n: int, kept: np.ndarray | None = None) -> None:
        self.directory, self.split, self.n = directory, split, n
        self.slot = None if kept is None else np.full(n, -1, np.int64)  # example -> its row in the features file
        if kept is not None:
            self.slot[kept] = np.arange(len(kept))
        self.logits: np.ndarray | None = None
        self.features: np.ndarray | None = None

    def __call__(self, idx: torch.Tensor, logits: torch.Tensor, feats: torch.Tensor | None) -> None:
        if self.logits is None:
            kept = self.n if self.slot is None else int((self.slot >= 0).sum())
            self.logits = np.lib.format.open_memmap(self.directory / f"{self.split}_logits.npy", mode="w+",
                                                    dtype=np.float32, shape=(self.n, logits.size(1)))
            self.features = np.lib.format.open_memmap(self.directory / f"{self.split}_features.npy", mode="w+",
                                                      dtype=np.float16, shape=(feats.size(0), kept, feats.size(2)))
        rows = idx.numpy()
        self.logits[rows] = logits.numpy()
        if self.slot is None:
            self.features[:, rows] = feats.half().numpy()
            return
        slots = self.slot[rows]
        keep = slots >= 0
        if keep.any():
            self.features[:, slots[keep]] = feats[:, torch.from_numpy(keep)].half().numpy()

    def close(self) -> None:
        for array in (self.logits, self.features):
            if array is not None:
                array.flush()
        self.logits = self.features = None


def knowledge_bytes(layers: int, hidden: int, examples: int, num_labels: int, featured: int | None = None) -> int:
    """Disk the knowledge of ``examples`` examples takes: float32 logits of all, float16 features (L + 1, N, 2H) of
    ``featured`` of them (default all; a feature sample's row numbers, 8 bytes a kept row, are not counted)."""
    featured = examples if featured is None else featured
    return examples * num_labels * 4 + featured * (layers + 1) * 2 * hidden * 2


def tables_bytes(teacher: Teacher) -> int:
    """Disk the teacher's embedding tables take in the knowledge cache (float32; the students start from them)."""
    return sum(int(t.numel()) * 4 for t in teacher.embedding_tables() if t is not None)


def free_bytes(directory: Path) -> int:
    """Free space on the disk ``directory`` is (or will be) on: that of its nearest existing folder."""
    probe = Path(directory)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def require_free_space(directory: Path, needed: int, what: str, flag: str) -> None:
    """Refuse, before any work, to write ``needed`` bytes where less than that (plus 5%) is free: a full disk under a
    memory-mapped write kills the process instead of raising an error."""
    free = free_bytes(directory)
    if needed * 1.05 > free:
        raise BertnasError(f"{what} needs {needed / 1e9:.1f} GB but {directory} has {free / 1e9:.1f} GB free: free "
                           f"space there or pass {flag} on a disk with room")


def compute_knowledge(
    teacher: Teacher,
    data: TaskData,
    max_seq_len: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    cache_dir: str | Path | None = None,
    teacher_dtype: str = "auto",
    token_budget: int | None = None,
    max_feature_rows: int | None = None,
    seed: int = 0,
) -> Knowledge:
    """Load the teacher's knowledge from the cache, or compute and store it (see the module docstring);
    ``max_feature_rows`` and ``seed``: the train features of at most that many rows (:func:`feature_rows`)."""
    device = torch.device(device)
    cache = cache_root(cache_dir)
    key = knowledge_key(teacher, data, max_seq_len, teacher_dtype, max_feature_rows, seed)
    final = cache / f"knowledge-{key}"
    if (final / "meta.json").is_file():
        logger.info("teacher knowledge: cache hit %s", final)
        return Knowledge(key=key, meta=json.loads((final / "meta.json").read_text()), path=final)

    kept = feature_rows(len(data.train), max_feature_rows, seed)
    logger.info("teacher knowledge: running the teacher once over %d train + %d dev examples%s", len(data.train),
                len(data.dev), "" if kept is None else f" (train features of a random {len(kept)} kept)")
    t0 = time.perf_counter()
    regression = data.spec.is_regression
    train, dev = (encode(teacher.tokenizer, ex, max_seq_len, regression) for ex in (data.train, data.dev))
    featured = len(train) if kept is None else len(kept)
    needed = knowledge_bytes(teacher.num_layers, int(teacher.model.config.hidden_size), len(train) + len(dev),
                             max(1, data.spec.num_labels), featured + len(dev)) + tables_bytes(teacher)
    require_free_space(cache, needed, f"the teacher's knowledge of {len(train)} + {len(dev)} examples", "--cache-dir")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".knowledge-{key}.tmp-", dir=cache))
    except OSError as exc:
        raise BertnasError(f"cannot write the knowledge cache in {cache} ({exc.strerror}): pass a writable --cache-dir") from exc
    try:
        bf16, dev_out, precision = choose_precision(teacher, dev, data.spec, data.dev.labels, teacher_dtype, device,
                                                    batch_size, token_budget)
        np.save(tmp / "dev_logits.npy", dev_out["logits"].numpy())
        np.save(tmp / "dev_features.npy", dev_out["features"].numpy())
        writer = _MemmapWriter(tmp, "train", len(train), kept)
        sample = {}
        if kept is not None:
            np.save(tmp / "train_feature_rows.npy", kept)
            sample = {"train_feature_rows": {"file": "train_feature_rows.npy", "size": len(kept), "seed": seed}}
        t_train = time.perf_counter()
        teacher_pass(teacher, train, writer, device, bf16, batch_size, token_budget,
                     desc=f"teacher train ({'bf16' if bf16 else 'fp32'})")
        writer.close()
        train_seconds = time.perf_counter() - t_train
        words, positions = teacher.embedding_tables()
        tables = {"word_embeddings": words.contiguous()}
        if positions is not None:
            tables["position_embeddings"] = positions.contiguous()
        save_file(tables, str(tmp / "tables.safetensors"))
        dev_metrics = compute_metrics(data.spec, dev_out["logits"].numpy(), data.dev.labels)
        meta = {
            "key": key, "teacher": teacher.source, "task": data.spec.name,
            "num_layers": teacher.num_layers, "teacher_hidden": int(teacher.model.config.hidden_size),
            "n_train": len(data.train), "n_dev": len(data.dev), "max_seq_len": max_seq_len,
            "train_hash": hash_examples(data.train), "dev_hash": hash_examples(data.dev),
            "teacher_dev_metrics": dev_metrics, "precision": precision,
            "train_examples_per_second": round(len(train) / max(train_seconds, 1e-9), 1),
            "seconds": round(time.perf_counter() - t0, 1), **sample,
        }
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2))
        if final.exists():  # an incomplete leftover (no meta.json)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("teacher knowledge: %d train examples at %.0f/s (%s); dev %s; saved to %s", len(train),
                meta["train_examples_per_second"], precision["chosen"], dev_metrics, final)
    return Knowledge(key=key, meta=meta, path=final)


def hash_encoded(*splits: Encoded) -> str:
    """A sha256 of tokenized splits (lengths, ids, token types and labels), read a block at a time: what a
    teacher's outputs on them depend on, cheap for millions of examples."""
    h = hashlib.sha256()
    for enc in splits:
        lengths = lengths_of(enc.input_ids)
        h.update(lengths.tobytes())
        for start in range(0, len(enc), ENCODE_CHUNK):
            stop = min(start + ENCODE_CHUNK, len(enc))
            for seqs, dtype in ((enc.input_ids, np.int32), (enc.token_type_ids, np.int8)):
                h.update(np.concatenate([np.asarray(seqs[i], dtype) for i in range(start, stop)]).tobytes())
        h.update(enc.labels.numpy().tobytes())
    return h.hexdigest()


def cached_logits(teacher: Teacher, train: Encoded, dev: Encoded, spec: TaskSpec, device: torch.device, bf16: bool,
                  batch_size: int = 64, token_budget: int | None = None,
                  cache_dir: str | Path | None = None) -> tuple[torch.Tensor, dict, str]:
    """(the teacher's logits on ``train`` in task label order, its dev metrics, the cache key): the teacher's
    outputs without per-layer features, for students that distil from its logits only (NAS-BERT's fine-tuning),
    cached in ``logits-KEY/`` beside the knowledge cache so that every student of a comparison shares one pass.
    Dev is evaluated in float32, as the teacher's reported dev metric."""
    key = hash_obj({"version": CACHE_VERSION, "teacher": teacher_fingerprint(teacher), "task": spec.name,
                    "data": hash_encoded(train, dev), "bf16": bf16})[:24]
    cache = cache_root(cache_dir)
    final = cache / f"logits-{key}"
    if (final / "meta.json").is_file():
        logger.info("teacher logits: cache hit %s", final)
        meta = json.loads((final / "meta.json").read_text())
        return torch.from_numpy(np.load(final / "train_logits.npy")), meta["teacher_dev_metrics"], key
    require_free_space(cache, len(train) * max(1, spec.num_labels) * 4, f"the teacher's logits on {len(train)} "
                       "examples", "--cache-dir" if cache_dir else "BERTNAS_CACHE_DIR")
    logits = torch.zeros(len(train), max(1, spec.num_labels))

    def sink(idx: torch.Tensor, lg: torch.Tensor, _: torch.Tensor | None) -> None:
        logits[idx] = lg

    teacher_pass(teacher, train, sink, device, bf16, batch_size, token_budget, want_features=False,
                 desc=f"teacher logits ({'bf16' if bf16 else 'fp32'})")
    order = teacher.label_order or slice(None)
    with torch.inference_mode():
        dev_metrics = evaluate(lambda b: teacher.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                                       token_type_ids=b["token_type_ids"]).logits[:, order],
                               dev, spec, device, batch_size=batch_size)
    with atomic_dir(final) as tmp:
        np.save(tmp / "train_logits.npy", logits.numpy())
        atomic_write_text(tmp / "meta.json", json.dumps({"key": key, "teacher": teacher.source, "task": spec.name,
                                                         "n_train": len(train), "n_dev": len(dev), "bf16": bf16,
                                                         "teacher_dev_metrics": dev_metrics}, indent=2))
    return logits, dev_metrics, key


def load_knowledge(key: str, cache_dir: str | Path | None = None) -> Knowledge:
    """Load cached knowledge by key (as recorded in a run directory)."""
    cache = cache_root(cache_dir)
    path = cache / f"knowledge-{key}"
    if not (path / "meta.json").is_file():
        raise BertnasError(f"teacher knowledge {key} not in cache {cache}: run `bertnas probe` again (or pass the same --cache-dir)")
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BertnasError(f"cached teacher knowledge {path} is damaged ({exc}): delete it and run `bertnas probe` again") from exc
    return Knowledge(key=key, meta=meta, path=path)
