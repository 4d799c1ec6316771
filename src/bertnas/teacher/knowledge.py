"""Run the teacher once and cache what every later step needs from it.

Stored (safetensors, keyed by a hash of teacher weights + tokenizer + data + settings):
  * ``{split}_logits``   (N, num_labels) the teacher's predictions, in task label order;
  * ``{split}_features`` (L + 1, N, 2H) float16: for the embedding layer and each hidden layer, the
    [CLS] vector concatenated with the masked token mean -- the inputs of the per-layer probes;
  * ``word_embeddings`` / ``position_embeddings``: the tables the student projects.
Search and retraining read only this file, so the teacher never runs twice.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..data.encode import Encoded, batches, encode, num_batches, to_device
from ..data.examples import Examples, TaskData
from ..data.metrics import compute_metrics
from ..utils import atomic_write_text, hash_obj, progress
from .loading import Teacher

logger = logging.getLogger("bertnas")
CACHE_VERSION = 2


@dataclass
class Knowledge:
    """Cached teacher outputs; tensors are read from the file only when first asked for (features are big)."""

    key: str
    meta: dict
    path: Path | None = None
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor | None:
        if name not in self.tensors:
            if self.path is None:
                return None
            with safe_open(str(self.path), framework="pt") as f:
                if name not in f.keys():
                    return None
                self.tensors[name] = f.get_tensor(name)
        return self.tensors[name]

    def logits(self, split: str) -> torch.Tensor:
        return self.get(f"{split}_logits")

    def features(self, split: str) -> torch.Tensor:
        return self.get(f"{split}_features")

    @property
    def word_embeddings(self) -> torch.Tensor:
        return self.get("word_embeddings")

    @property
    def position_embeddings(self) -> torch.Tensor | None:
        return self.get("position_embeddings")

    @property
    def num_layers(self) -> int:
        return int(self.meta["num_layers"])

    def check_data(self, data: TaskData) -> None:
        """Refuse to pair this knowledge with data it was not computed on (targets are looked up by index)."""
        from ..errors import BertnasError

        if self.meta.get("train_hash") != hash_examples(data.train) or self.meta.get("dev_hash") != hash_examples(data.dev):
            raise BertnasError("the data changed since `bertnas probe` computed the teacher's knowledge: "
                               "run `bertnas probe` again")


def default_cache_dir() -> Path:
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


def teacher_fingerprint(teacher: Teacher) -> str:
    """Hash of the teacher's weights and vocabulary: changes whenever its knowledge could change."""
    h = hashlib.sha256()
    for name, tensor in sorted(teacher.model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    vocab = sorted(teacher.tokenizer.get_vocab().items())
    h.update(json.dumps(vocab).encode())
    h.update(json.dumps(teacher.label_order).encode())
    return h.hexdigest()


def knowledge_key(teacher: Teacher, data: TaskData, max_seq_len: int) -> str:
    return hash_obj({
        "version": CACHE_VERSION,
        "teacher": teacher_fingerprint(teacher),
        "train": hash_examples(data.train),
        "dev": hash_examples(data.dev),
        "max_seq_len": max_seq_len,
    })[:24]


@torch.no_grad()
def _run_teacher(teacher: Teacher, enc: Encoded, batch_size: int, device: torch.device, desc: str):
    model = teacher.model
    n, layers = len(enc), teacher.num_layers + 1
    hidden = int(model.config.hidden_size)
    features = torch.empty((layers, n, 2 * hidden), dtype=torch.float16)
    logits = None
    for batch in progress(batches(enc, batch_size), total=num_batches(n, batch_size), desc=desc):
        idx = batch["index"]
        b = to_device(batch, device)
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                    token_type_ids=b["token_type_ids"], output_hidden_states=True)
        mask = b["attention_mask"].unsqueeze(-1).float()  # (B, L, 1)
        for layer, h in enumerate(out.hidden_states):  # each (B, L, H)
            mean = (h * mask).sum(1) / mask.sum(1).clamp(min=1)
            features[layer, idx] = torch.cat([h[:, 0], mean], -1).half().cpu()
        lg = out.logits.float().cpu()
        if teacher.label_order is not None:
            lg = lg[:, teacher.label_order]
        if logits is None:
            logits = torch.empty((n, lg.size(1)), dtype=torch.float32)
        logits[idx] = lg
    return logits, features


def compute_knowledge(
    teacher: Teacher,
    data: TaskData,
    max_seq_len: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    cache_dir: str | Path | None = None,
) -> Knowledge:
    """Load the teacher's knowledge from the cache, or compute and store it."""
    device = torch.device(device)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key = knowledge_key(teacher, data, max_seq_len)
    path, meta_path = cache / f"knowledge-{key}.safetensors", cache / f"knowledge-{key}.json"
    if path.is_file() and meta_path.is_file():
        logger.info("teacher knowledge: cache hit %s", path)
        return Knowledge(key=key, meta=json.loads(meta_path.read_text()), path=path)

    logger.info("teacher knowledge: running the teacher once over %d train + %d dev examples", len(data.train), len(data.dev))
    regression = data.spec.is_regression
    tensors: dict[str, torch.Tensor] = {}
    for split, examples in (("train", data.train), ("dev", data.dev)):
        enc = encode(teacher.tokenizer, examples, max_seq_len, regression)
        tensors[f"{split}_logits"], tensors[f"{split}_features"] = _run_teacher(
            teacher, enc, batch_size, device, f"teacher {split}"
        )
    words, positions = teacher.embedding_tables()
    tensors["word_embeddings"] = words.contiguous()
    if positions is not None:
        tensors["position_embeddings"] = positions.contiguous()
    dev_metrics = compute_metrics(data.spec, tensors["dev_logits"].numpy(), data.dev.labels)
    meta = {
        "key": key, "teacher": teacher.source, "task": data.spec.name,
        "num_layers": teacher.num_layers, "teacher_hidden": int(teacher.model.config.hidden_size),
        "n_train": len(data.train), "n_dev": len(data.dev), "max_seq_len": max_seq_len,
        "train_hash": hash_examples(data.train), "dev_hash": hash_examples(data.dev),
        "teacher_dev_metrics": dev_metrics,
    }
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"bertnas_key": key})
    os.replace(tmp, path)
    atomic_write_text(meta_path, json.dumps(meta, indent=2))
    logger.info("teacher dev %s (from cached logits); knowledge saved to %s", dev_metrics, path)
    return Knowledge(key=key, meta=meta, path=path, tensors=tensors)


def load_knowledge(key: str, cache_dir: str | Path | None = None) -> Knowledge:
    """Load cached knowledge by key (as recorded in a run directory)."""
    from ..errors import BertnasError

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path, meta_path = cache / f"knowledge-{key}.safetensors", cache / f"knowledge-{key}.json"
    if not (path.is_file() and meta_path.is_file()):
        raise BertnasError(f"teacher knowledge {key} not in cache {cache}: run `bertnas probe` again (or pass the same --cache-dir)")
    return Knowledge(key=key, meta=json.loads(meta_path.read_text()), path=path)
