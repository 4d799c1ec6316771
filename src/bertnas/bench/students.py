"""Students the bench trains besides the searched one: fresh students of a given genotype (random draws, the
conv_3 stack, another task's architecture) and BERT-shaped students (a small fresh BERT, the truncated teacher).

Every student here is trained by the same loop as AdaBERT's further training (``adabert.retrain.retrain``),
on the same cached teacher knowledge: fresh genotype students are ordinary ``AdaBertForSequenceClassification``
models; BERT students go through :class:`BertStudent`, which gives a Hugging Face classifier the two methods the
loop calls (``pooled_states`` for the per-layer distillation heads, ``classifier`` for the logits).
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from ..config import RunConfig
from ..data.examples import TaskSpec
from ..errors import BertnasError
from ..adabert.modeling import AdaBertForSequenceClassification
from ..adabert.derive import derive_genotype
from ..adabert.searcher import build_supernet, student_config
from ..adabert.student import copy_embeddings
from ..adabert.genotype import Genotype
from ..adabert.objective import KDHeads, TargetScale


# ----------------------------------------------------------------------------- genotypes
def genotype_draws(k_max: int, min_parametric: int, seed: int) -> Iterator[Genotype]:
    """Endless genotypes drawn uniformly from the search space: i.i.d. uniform op and depth logits pushed
    through the search's own derivation (top-2 edges per node, strongest non-zero op, argmax depth, collapse
    guard), so every edge pair, op and depth 1..K_max is equally likely and the rules match the searched
    student's. ``seed`` seeds a generator of their own (the global torch state is left alone)."""
    from ..adabert.architecture import Architecture

    shape = Architecture(k_max).alpha.shape  # (edges, ops) as the search sees them
    g = torch.Generator().manual_seed(seed)
    while True:
        alpha, depth = torch.rand(shape, generator=g), torch.rand(k_max, generator=g)
        yield derive_genotype(alpha, depth, min_parametric)[0]


def random_genotypes(n: int, k_max: int, min_parametric: int, seed: int) -> list[Genotype]:
    """The ``--random-n`` uniform draws of a run seed (see :func:`genotype_draws`)."""
    return list(itertools.islice(genotype_draws(k_max, min_parametric, seed * 1000 + 104729), n))


def bench_genotypes(source: str, seeds: int) -> list[Genotype] | None:
    """The genotypes another bench's row ``full`` found, one per seed index (None if ``source`` is not a bench
    directory), so that the other-task row pairs seed with seed: the other task's search of seed i, trained here
    with seed i."""
    out = Path(source).expanduser()
    if not (out / "rows" / "full" / "search" / "genotype.json").is_file():
        return None
    found = []
    for i in range(seeds):
        path = out / "rows" / ("full" if i == 0 else f"full-s{i}") / "search" / "genotype.json"
        if not path.is_file():
            raise BertnasError(f"--genotype-from {source}: that bench's row full has {i} finished seed(s), this bench "
                               f"runs {seeds}: pass --seeds {i} or finish the other bench with --seeds {seeds}")
        found.append(Genotype.from_dict(json.loads(path.read_text(encoding="utf-8"))["genotype"]))
    return found


def load_genotype(source: str) -> Genotype:
    """A genotype from a run directory, a ``search/genotype.json``, a model ``config.json`` or a genotype string."""
    path = Path(source).expanduser()
    if path.is_dir():
        for rel in ("search/genotype.json", "genotype.json", "model/config.json", "config.json"):
            if (path / rel).is_file() and "genotype" in json.loads((path / rel).read_text(encoding="utf-8")):
                path = path / rel
                break
        else:
            raise BertnasError(f"{source} holds no genotype: pass OTHER_RUN/search/genotype.json or a run directory "
                               "whose search finished")
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BertnasError(f"{source} is not valid JSON ({exc.msg}): pass a search/genotype.json") from exc
        data = data.get("genotype", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise BertnasError(f"{source} holds no genotype: pass a search/genotype.json")
        return Genotype.from_dict(data)
    if "|" in source:
        return Genotype.parse(source)
    raise BertnasError(f"--genotype-from {source}: no such file or directory, and not a genotype string "
                       "like 'K=1 | n0: conv_3<0 conv_3<1 | n1: ... | n2: ...'")


# ----------------------------------------------------------------------------- fresh AdaBERT students
def fresh_adabert(cfg: RunConfig, spec: TaskSpec, genotype: Genotype, word_table: torch.Tensor,
                  position_table: torch.Tensor | None, pad_token_id: int, sep_token_id: int | None,
                  train_labels: torch.Tensor) -> tuple[AdaBertForSequenceClassification, KDHeads]:
    """A newly initialized student of ``genotype`` and its distillation heads, seeded by ``cfg.seed``.

    Its embedding tables are the teacher's tables through a fresh (seeded) projection, folded exactly as the
    searched student's are after search, so the two differ in what the search learned, not in where the
    embeddings come from. Cells, node attention and classifier start from the model's own initialization.
    """
    torch.manual_seed(cfg.seed)
    holder = build_supernet(cfg, spec, word_table, position_table, sep_token_id, k_max=1)
    config = student_config(cfg, spec, genotype, holder, pad_token_id, sep_token_id,
                            TargetScale.of(train_labels, spec.is_regression))
    torch.manual_seed(cfg.seed)
    student = AdaBertForSequenceClassification(config)
    copy_embeddings(student, holder.embeddings)  # the holder's norm is freshly initialized, as the student's
    heads = KDHeads(genotype.depth, cfg.hidden_size, spec.num_labels, pair=spec.pair)
    return student, heads


# ----------------------------------------------------------------------------- BERT-shaped students
class BertStudent(nn.Module):
    """A Hugging Face sequence classifier seen through the retraining loop's student interface.

    ``pooled_states`` runs the model once and returns each layer's [CLS] vector as a (B, 1, H) view for the
    per-layer distillation heads; ``classifier`` returns the logits of that same forward pass (kept from it,
    so any architecture's own head works unchanged). Regression: outputs are on the standardized scale inside
    training, mapped back in ``forward`` like the AdaBERT student does.
    """

    def __init__(self, model: nn.Module, scale: TargetScale) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.config.target_mean, self.config.target_std = scale.mean, scale.std
        self._logits: torch.Tensor | None = None

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    def get_input_embeddings(self) -> nn.Module:
        """The wrapped model's word table (``--retrain-freeze-words`` keeps it fixed)."""
        return self.model.get_input_embeddings()

    def pooled_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      token_type_ids: torch.Tensor | None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                         output_hidden_states=True)
        self._logits = out.logits
        states = list(out.hidden_states[1:])  # (B, L, H) per layer, embeddings excluded
        return [h[:, :1] for h in states], states

    def classifier(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        assert self._logits is not None, "classifier() reads the logits of the last pooled_states() call"
        logits, self._logits = self._logits, None
        return logits

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs) -> SequenceClassifierOutput:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
        if self.config.num_labels == 1:
            logits = logits * self.config.target_std + self.config.target_mean
        return SequenceClassifierOutput(logits=logits)


def _labels(spec: TaskSpec) -> dict:
    labels = spec.labels or ["score"]
    return {"num_labels": spec.num_labels, "id2label": dict(enumerate(labels)),
            "label2id": {l: i for i, l in enumerate(labels)},
            "problem_type": "regression" if spec.is_regression else "single_label_classification"}


def small_bert_config(spec: TaskSpec, vocab_size: int, max_positions: int, hidden: int, pad_token_id: int,
                      layers: int = 2) -> BertConfig:
    """BERT's own proportions: heads = hidden / 64, FFN = 4 x hidden."""
    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                      max_position_embeddings=max_positions, pad_token_id=pad_token_id, **_labels(spec))


def small_bert_hidden(spec: TaskSpec, vocab_size: int, max_positions: int, pad_token_id: int,
                      target_params: int | None, hiddens: tuple[int, ...]) -> int:
    """The hidden size whose 2-layer BERT is closest in parameters to ``target_params`` (smallest if None)."""
    if target_params is None:
        return min(hiddens)

    def params(h: int) -> int:
        with torch.device("meta"):
            model = BertForSequenceClassification(small_bert_config(spec, vocab_size, max_positions, h, pad_token_id))
        return sum(p.numel() for p in model.parameters())

    return min(hiddens, key=lambda h: abs(params(h) - target_params))


def small_bert(spec: TaskSpec, vocab_size: int, max_positions: int, hidden: int, pad_token_id: int,
               seed: int) -> BertForSequenceClassification:
    """A freshly initialized 2-layer BERT classifier (seeded)."""
    torch.manual_seed(seed)
    return BertForSequenceClassification(small_bert_config(spec, vocab_size, max_positions, hidden, pad_token_id))


def truncate_teacher(model: nn.Module, layers: int, spec: TaskSpec, label_order: list[int] | None) -> nn.Module:
    """The teacher keeping only its first ``layers`` layers (BERT-PKD / DistilBERT-style initialization), with
    its classifier's outputs put in the task's label order."""
    encoder = getattr(getattr(model, "base_model", None), "encoder", None)
    blocks = getattr(encoder, "layer", None)
    if not isinstance(blocks, nn.ModuleList):
        raise BertnasError(f"cannot truncate a {type(model).__name__} teacher (no encoder.layer list): "
                           "drop the truncated_teacher row (--rows ...)")
    layers = min(layers, len(blocks))
    encoder.layer = nn.ModuleList(list(blocks)[:layers])
    model.config.num_hidden_layers = layers
    if label_order is not None:
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]  # the output layer
        with torch.no_grad():
            head.weight.copy_(head.weight[label_order].clone())
            head.bias.copy_(head.bias[label_order].clone())
    for key, value in _labels(spec).items():
        setattr(model.config, key, value)
    return model


def describe_bert(config) -> str:
    """A short shape string of a transformer classifier's config (fields missing in the config are left out)."""
    parts = [("L", "num_hidden_layers"), ("H", "hidden_size"), ("heads", "num_attention_heads"),
             ("FFN", "intermediate_size")]
    shape = " ".join(f"{k}={getattr(config, a)}" for k, a in parts if getattr(config, a, None) is not None)
    return f"{getattr(config, 'model_type', 'transformer')} {shape}"
