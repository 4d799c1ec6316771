"""Load a user's fine-tuned teacher (local directory or hub id) and its tokenizer, with checks.

Safe by default: weights through transformers' safetensors/weights-only loaders, no remote code unless
asked. Half-precision checkpoints are loaded in float32 so cached knowledge is exact on CPU.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from ..data.examples import TaskSpec
from ..errors import BertnasError, first_line

logger = logging.getLogger("bertnas")
_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


@dataclass
class Teacher:
    model: torch.nn.Module
    tokenizer: object
    source: str
    label_order: list[int] | None = None  # teacher output column for each task label, when they differ

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def embedding_tables(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(word table (V, H), absolute position table (P, H) or None) of the teacher."""
        words = self.model.get_input_embeddings().weight.detach().float().cpu()
        emb = getattr(self.model.base_model, "embeddings", None)
        pos = getattr(emb, "position_embeddings", None)
        if not isinstance(pos, torch.nn.Embedding):
            return words, None
        table = pos.weight.detach().float().cpu()
        if pos.padding_idx is not None:  # RoBERTa-style: real positions start after the padding row
            table = table[pos.padding_idx + 1 :]
        return words, table


def _looks_local(name: str) -> bool:
    """Hub ids are 'name' or 'org/name'; anything else is meant as a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/") or "\\" in name


def check_source(name: str) -> str:
    """The teacher as ``from_pretrained`` takes it (an existing checkpoint directory or a hub id), or a one-line
    error: nothing given, a file, a directory without config.json, a local-looking path that does not exist."""
    if not name:
        raise BertnasError("no teacher given: pass --teacher DIR_OR_HUB_ID (a fine-tuned sequence classifier)")
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise BertnasError(f"teacher {name} is a file: pass the checkpoint directory (with config.json) instead")
        if not (path / "config.json").is_file():
            raise BertnasError(f"teacher directory {name} has no config.json: not a Hugging Face checkpoint (save it with save_pretrained)")
        return str(path)
    if _looks_local(name):
        raise BertnasError(f"teacher directory {name} not found: check the path")
    return name  # a hub id


def _vocab_only(path: Path) -> bool:
    """A directory with a WordPiece vocab.txt and nothing that names a tokenizer class: read as BERT's,
    lower-cased as bert-base-uncased (a directory with a tokenizer_config.json goes to AutoTokenizer, which reads
    its casing from there)."""
    names = ("tokenizer.json", "tokenizer_config.json", "config.json")
    return path.is_dir() and (path / "vocab.txt").is_file() and not any((path / n).is_file() for n in names)


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """A tokenizer from a directory (tokenizer.json or vocab files; no model needed) or a hub id."""
    if not name:
        raise BertnasError("no tokenizer given: pass a directory with tokenizer.json or vocab.txt")
    path = Path(name).expanduser()
    if not path.exists() and _looks_local(name):
        raise BertnasError(f"tokenizer directory {name} not found: check the path")
    source = str(path) if path.exists() else name
    try:
        if _vocab_only(path):  # transformers v5's AutoTokenizer cannot tell the class from a bare vocab.txt
            from transformers import BertTokenizer

            return BertTokenizer.from_pretrained(source)
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as exc:
        raise BertnasError(
            f"no usable tokenizer in {name} ({first_line(exc, 120)}): save the tokenizer next to the model with tokenizer.save_pretrained"
        ) from exc


def load_teacher(
    name: str, spec: TaskSpec | None = None, device: torch.device | str = "cpu", trust_remote_code: bool = False,
    assume_label_order: bool = False,
) -> Teacher:
    """Load a sequence-classification teacher and check it fits the task and its tokenizer."""
    source = check_source(name)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        where = "the directory" if Path(source).exists() else "no local directory of that name, and the hub (offline?)"
        raise BertnasError(f"cannot load teacher {name!r} from {where}: {first_line(exc, 160)}") from exc
    archs = getattr(config, "architectures", None) or []
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise BertnasError(
            f"teacher {name} is a {archs[0]} checkpoint, not a sequence classifier: fine-tune it on the task first "
            "(bertnas teacher finetune --model ...)"
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise BertnasError(f"cannot load teacher weights from {name} ({first_line(exc, 160)}): "
                           "check that the checkpoint is complete, or save it again") from exc
    tokenizer = load_tokenizer(name, trust_remote_code)
    if len(tokenizer) > model.config.vocab_size:
        raise BertnasError(
            f"tokenizer of {name} has {len(tokenizer)} tokens but the teacher's embedding has only "
            f"{model.config.vocab_size} rows: the tokenizer does not belong to this teacher"
        )
    teacher = Teacher(model=model.to(device).eval(), tokenizer=tokenizer, source=source)
    if spec is not None:
        teacher.label_order = _label_order(model.config, spec, name, assume_label_order)
    return teacher


def _norm_label(label: object) -> str:
    """Compare label names loosely: 'NOT_ENTAILMENT' == 'not-entailment' == 'not_entailment'."""
    return str(label).strip().lower().replace("-", "_").replace(" ", "_")


def _label_order(config, spec: TaskSpec, name: str, assume_label_order: bool = False) -> list[int] | None:
    """Map task labels to teacher output columns; None when they are the same order."""
    n = int(config.num_labels)
    if n != spec.num_labels:
        kind = "regression (1 output)" if spec.is_regression else f"{spec.num_labels} labels {spec.labels}"
        raise BertnasError(f"teacher {name} has {n} output(s) but task {spec.name} is {kind}: use a teacher fine-tuned on this task")
    if spec.is_regression:
        return None
    names = [_norm_label(config.id2label[i]) for i in range(n)]
    wanted = [_norm_label(x) for x in spec.labels]
    if all(_GENERIC_LABEL.match(str(config.id2label[i])) for i in range(n)) or names == wanted:
        return None
    if sorted(names) == sorted(wanted):
        order = [names.index(label) for label in wanted]
        logger.info("teacher label names %s reordered to the task's %s", names, spec.labels)
        return order
    if not assume_label_order:  # guessing could invert every distillation target
        raise BertnasError(f"teacher {name} names its labels {names} but the task's labels are {spec.labels}: "
                           "pass --assume-label-order if its outputs follow the task's label order, or fix the "
                           "teacher's id2label")
    logger.warning("teacher labels %s do not name the task labels %s; assuming the same order (--assume-label-order)",
                   names, spec.labels)
    return None


def load_encoder(name: str, trust_remote_code: bool = False):
    """A pre-trained BERT-family encoder (any head is dropped) and its tokenizer, in float32, eval mode: the teacher
    of task-agnostic distillation (NAS-BERT), where :func:`load_teacher` loads a fine-tuned classifier."""
    source = check_source(name)
    try:
        model = AutoModel.from_pretrained(source, dtype=torch.float32, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise BertnasError(f"cannot load the teacher encoder from {name}: {first_line(exc, 160)}") from exc
    tokenizer = load_tokenizer(source, trust_remote_code)
    if not hasattr(model.config, "num_hidden_layers") or not hasattr(model.config, "hidden_size"):
        raise BertnasError(f"teacher {name} is not a BERT-family encoder (no num_hidden_layers/hidden_size in its config)")
    return model.eval(), tokenizer
