"""The run configuration: one typed, documented, validated object, saved into every run directory.

Every field is a CLI flag (``search_epochs`` -> ``--search-epochs``) and a key of the YAML/JSON config
file (``--config``); precedence is defaults < config file < command line. Defaults follow the AdaBERT
paper/code where they say something (METHODS.md section 1); choices they leave open are marked "(ours)"
and explained in docs/design.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, get_type_hints

from .errors import BertnasError, first_line

FLOAT32_MAX = 3.4028234663852886e38  # torch computes in float32: a larger setting overflows mid-run
INT_MAX = 2**31 - 1  # counts, sizes and lengths beyond this are typos, and overflow torch's int arguments
SEED_MAX = 2**32 - 1  # numpy's seed range
LR_MAX = 10.0  # Adam/AdamW diverge long before this; the defaults are 1e-3 to 3e-3
AMP_DTYPES = ("auto", "bf16", "fp16")  # --amp-dtype: training/amp.py
TEMPERATURE_MAX = 100.0  # softmax temperatures (Gumbel tau, distillation T): beyond this every sample is uniform


def setting(default: Any, help: str, group: str, **choices: Any) -> Any:
    """A settings field: its default, its help (the flag's and the docs'), its group (the flags' section) and,
    optionally, ``choices``. Every settings class of both methods declares its fields this way."""
    return field(default=default, metadata={"help": help, "group": group, **choices})


_f = setting


class Settings:
    """What every settings dataclass shares (AdaBERT's :class:`RunConfig`, NAS-BERT's stages): a dict form
    saved into run directories, typed updates from config files and flags (unknown names get a close match),
    and one style of validation error that names the value, the rule and the flag."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        from .utils import write_json

        write_json(path, self.to_dict())

    def update(self, values: dict[str, Any], source: str = "config"):
        """A copy with ``values`` applied; unknown keys and wrongly typed values raise BertnasError."""
        known = {f.name: f for f in fields(self)}
        hints = get_type_hints(type(self))
        out = dataclasses.replace(self)
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise BertnasError(f"{source}: unknown setting {key!r}{hint}")
            setattr(out, name, _coerce(name, value, hints[name], source))
        return out

    def invalid(self, name: str, rule: str) -> BertnasError:
        """The one-line error for a bad value: ``invalid config value name=value: rule (flag --name)``."""
        flag = "--" + name.replace("_", "-")
        return BertnasError(f"invalid config value {name}={getattr(self, name)!r}: {rule} (flag {flag})")

    def check_common(self) -> None:
        """The checks every field gets from its type and metadata, before the class's own rules: finite
        floats, ints within torch's int range (the seed within numpy's), the field's ``choices``."""
        import math

        hints = get_type_hints(type(self))
        for f in fields(self):
            value, kind = getattr(self, f.name), str(hints[f.name])
            if "float" in kind and isinstance(value, float) and not math.isfinite(value):
                raise self.invalid(f.name, "must be a finite number")
            if "int" in kind and isinstance(value, int) and not isinstance(value, bool):
                if f.name == "seed" and not 0 <= value <= SEED_MAX:
                    raise self.invalid("seed", f"must be in [0, {SEED_MAX}], numpy's seed range")
                if f.name != "seed" and value > INT_MAX:
                    raise self.invalid(f.name, f"must be at most {INT_MAX}")
            allowed = f.metadata.get("choices")
            if allowed and value not in allowed:
                raise self.invalid(f.name, f"must be one of {', '.join(allowed)}")

    def check_lr(self, *names: str) -> None:
        """Learning rates: > 0 and at most LR_MAX (a finite huge value would pass ``> 0`` and diverge)."""
        for name in names:
            if not 0 < getattr(self, name) <= LR_MAX:
                default = next(f.default for f in fields(self) if f.name == name)
                raise self.invalid(name, f"must be > 0 and at most {LR_MAX:g}; the default is {default:g}")

    def check_augmentation(self) -> None:
        """The teacher-labelled copies' settings (``augment``, ``augment_replace_prob``, ``augment_edit_prob``),
        which AdaBERT's run and NAS-BERT's fine-tuning both have."""
        if self.augment < 0:
            raise self.invalid("augment", "must be >= 0 (0 turns augmentation off)")
        for name in ("augment_replace_prob", "augment_edit_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise self.invalid(name, "must be in [0, 1]")

    def check_threads(self) -> None:
        """``threads``: >= 1, or unset for torch's default."""
        if self.threads is not None and self.threads < 1:
            raise self.invalid("threads", "must be >= 1 (or unset for torch's default)")

    def check_float32(self) -> None:
        """After the class's own rules (their messages are the more useful): the catch-all for a float
        setting without a tighter bound, within float32's range (torch computes in float32)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and abs(value) > FLOAT32_MAX:
                raise self.invalid(f.name, f"is beyond float32's range (at most {FLOAT32_MAX:.3g})"
                                           + (f"; the default is {f.default!r}" if f.default is not None else ""))


@dataclass
class SharedSettings(Settings):
    """The section every settings class of both methods starts with (the "general" flags): one definition of
    the seed and the device for AdaBERT's run and NAS-BERT's stages."""

    seed: int = _f(0, "random seed: the same seed gives the same result", "general")
    device: str = _f("auto", "auto (CUDA when available), cpu, cuda, cuda:N", "general")
    amp: bool = _f(False, "mixed-precision autocast in the training steps (AdaBERT's search and further training, NAS-BERT's supernet and fine-tuning, teacher fine-tuning), on CUDA and on CPU; losses stay float32 (what it gains and costs on CPU: docs/benchmarks.md, docs/results.md)", "general")
    amp_dtype: str = _f("auto", "with --amp: auto (float16 with a gradient scaler on GPUs without native bfloat16, such as V100 and T4; bfloat16 elsewhere), bf16 or fp16", "general", choices=AMP_DTYPES)


@dataclass
class RunConfig(SharedSettings):
    # --- data ---
    task: str = _f("", "GLUE task name (sst2, mrpc, cola, qqp, stsb, mnli, qnli, rte, wnli) or a name for custom --train-file/--dev-file data", "data")
    data_dir: str | None = _f(None, "GLUE task folder with train.tsv and dev.tsv (e.g. glue_data/SST-2)", "data")
    train_file: str | None = _f(None, "custom training file (.tsv, .csv or .jsonl) instead of --data-dir", "data")
    dev_file: str | None = _f(None, "custom dev file, same format as --train-file", "data")
    text_column: str = _f("sentence", "custom files: column with the text", "data")
    text_pair_column: str | None = _f(None, "custom files: column with the second text of a pair", "data")
    label_column: str = _f("label", "custom files: column with the label", "data")
    labels: str | None = _f(None, "custom files: comma-separated label set in model order, or 'regression' (default: from the training file)", "data")
    metric: str | None = _f(None, "headline metric (default: GLUE's for the task)", "data")
    max_seq_len: int = _f(128, "tokens per example (pairs together), longer inputs are truncated", "data")
    max_train_examples: int | None = _f(None, "use only the first N training examples (quick runs)", "data")
    val_examples: int | None = _f(None, "training examples held out as a validation split: every choice a run makes (the further-training epoch kept, the derived architecture among --derive-candidates, architecture steps with --arch-data val) reads it, and the dev set is only reported. Default: a tenth of the training data, at most 5,000, none below 200 examples; 0 holds nothing out: further training keeps the best dev epoch and the search is one-level, as before; pass --bn-recalibration 0 too for the old search exactly (ours)", "split")
    # --- teacher ---
    teacher: str = _f("", "fine-tuned teacher: local directory or hub id (sequence classifier + tokenizer)", "teacher")
    trust_remote_code: bool = _f(False, "allow custom code in the teacher checkpoint (off: safe loading)", "teacher")
    assume_label_order: bool = _f(False, "accept a teacher whose label names differ from the task's, taking its outputs in the task's label order", "teacher")
    teacher_batch_size: int = _f(64, "batch size when running the teacher once to cache its knowledge", "teacher")
    cache_dir: str | None = _f(None, "where teacher knowledge is cached (default: $BERTNAS_CACHE_DIR or ~/.cache/bertnas)", "teacher")
    teacher_dtype: str = _f("auto", "precision of the teacher pass: auto (bfloat16 where the hardware has it and it agrees with float32 on dev), fp32 or bf16", "teacher", choices=("auto", "fp32", "bf16"))
    teacher_token_budget: int | None = _f(None, "at most this many padded tokens per teacher batch (batches of short sentences grow up to --teacher-batch-size)", "teacher")
    augment: int = _f(1, "teacher-labelled augmentation: N extra copies of each training example (TinyBERT-style word replacement, deletion, swaps; paper: about 20); 0 turns it off. Default 1: with 2 epochs of further training, the recipe that was best at about one teacher fine-tuning epoch of wall time (docs/learning_curves.md) (ours)", "teacher")
    augment_replace_prob: float = _f(0.4, "augmentation: chance that a word is replaced by one of its nearest neighbours", "teacher")
    augment_edit_prob: float = _f(0.1, "augmentation: chance that a word is deleted, and separately that it is swapped with its neighbour", "teacher")
    # --- probes ---
    probe_epochs: int = _f(3, "epochs of training for each layer's linear probe", "probes")
    probe_lr: float = _f(1e-3, "probe learning rate (Adam)", "probes")
    probe_max_examples: int | None = _f(100000, "probes train on a random sample of at most N training examples (the same for every --seed: seed sweeps share one cache), whose per-layer features are cached; the other examples' probe predictions come from a second teacher pass that applies the trained probes on the fly, storing no features (a BERT-base teacher's features take about 40 KB an example); 0 or unset: every example (ours)", "probes")
    # --- search space ---
    hidden_size: int = _f(128, "student hidden size (AdaBERT: 128)", "space")
    k_max: int = _f(8, "largest number of stacked cells searched (AdaBERT: 8)", "space")
    dropout: float = _f(0.1, "dropout on embeddings and before the classifier", "space")
    pair_match: bool = _f(True, "sentence pairs: mark every token whose word piece also occurs in the other sentence with a learned vector (the exact-match input of DrQA-style readers); off leaves the comparison to the cells and the pair head (ours)", "space")
    # --- search ---
    search_epochs: int = _f(2, "search epochs, the first --search-warmup-epochs of them weight-only (paper: 80 on GPU). Default 2 on --search-max-examples 20,000: the recipe that was best at about one teacher fine-tuning epoch of wall time (docs/learning_curves.md) (ours)", "search")
    search_batch_size: int = _f(64, "search batch size", "search")
    search_lr: float = _f(2e-3, "weight learning rate during search (AdamW) (ours)", "search")
    arch_lr: float = _f(3e-3, "architecture-weight learning rate (Adam) (ours)", "search")
    arch_update_interval: int = _f(1, "update the architecture weights every N weight steps (1: alternate every batch)", "search")
    search_warmup_epochs: int = _f(1, "weight-only epochs before the architecture weights start to move (ours)", "search")
    sampled_only: bool = _f(True, "run only the sampled op on each edge (GDAS); off runs all 10 ops", "search")
    tau_max: float = _f(1.0, "initial Gumbel-softmax temperature", "search")
    tau_min: float = _f(0.2, "final Gumbel-softmax temperature", "search")
    tau_decay: float | None = _f(None, "temperature decay per epoch (code: 0.02); default reaches tau_min at the last epoch", "search")
    gamma: float = _f(0.8, "weight of distillation vs. cross-entropy", "search")
    beta: float = _f(4.0, "weight of the efficiency loss", "search")
    search_step: str = _f("joint", "how a search step updates weights and architecture: joint (one sample, one forward over all depths, one backward for both; timings in docs/design.md) or alternate (a weight step on the sampled depth, then a new sample and an architecture step); architecture steps on validation batches (--arch-data) always take the alternate form (ours)", "search", choices=("joint", "alternate"))
    temperature: float = _f(1.0, "distillation temperature T", "search")
    attentive_kd: bool = _f(True, "weight distillation pairs by how well each teacher layer predicts the gold label", "search")
    min_parametric: int = _f(1, "collapse guard: parametric ops each node keeps at derivation (0 disables)", "search")
    search_max_examples: int | None = _f(20000, "search on a random subset of N training examples (copies included; 0 or unset: all). Default 20,000: searching on more cost time without a better student (the measurement: docs/learning_curves.md) (ours)", "search")
    arch_data: str = _f("auto", "what the architecture steps learn from: val (batches of the held-out validation split, DARTS' bilevel), train (the weights' own batches, one level, as AdaBERT's code), or auto: val when there is a validation split (--val-examples), else train (ours)", "search", choices=("auto", "val", "train"))
    arch_entropy: float = _f(0.0, "weight of an entropy penalty on the op and depth distributions, ramped from 0 to this value over the architecture epochs; pushes the search to commit (0: off) (ours)", "search")
    bn_recalibration: int = _f(20, "batches of training data that re-estimate the search network's BatchNorm statistics for a derived architecture before it is scored (each epoch's check, --derive-candidates) or handed to further training; the statistics the search kept are a blend over every sampled architecture (0: off) (ours)", "search")
    derive_candidates: int = _f(8, "architectures drawn near the most likely one (the most likely first; Gumbel draws from the final distribution sharpened to tau_min) and scored with the supernet's weights on the validation split; the best is kept (1: the most likely, as AdaBERT; without a validation split only the most likely is kept) (ours)", "search")
    efficiency: str = _f("params_flops", "what the efficiency loss prices: params_flops (AdaBERT's cost per op) or latency (this CPU's measured op latencies, a per-op table cached in the cache dir) (ours)", "search", choices=("params_flops", "latency"))
    latency_budget_ms: float | None = _f(None, "with --efficiency latency: predicted milliseconds (at the table's batch and sequence length) the student may take; only the expected latency above it is penalized (default: no budget, all latency is penalized)", "search")
    latency_table_batch: int = _f(32, "with --efficiency latency: batch size the op latencies are measured (and the budget meant) at", "search")
    latency_table_seq_len: int | None = _f(None, "with --efficiency latency: sequence length of the op latencies (default: --eval-seq-len)", "search")
    latency_table_threads: int | None = _f(None, "with --efficiency latency: torch threads for the op latencies (default: --latency-threads)", "search")
    search_distill: str = _f("probes", "what the search distils: probes (each cell matched to a teacher layer's probe through its own head, and the last to the teacher's logits: AdaBERT) or logits (the teacher's logits only, no per-cell heads: the benchmark's ablation row; further training then distils the logits only too)", "search", choices=("probes", "logits"))
    # --- retraining ---
    retrain_epochs: int = _f(2, "epochs of training the derived model further (default 2: see --augment)", "retrain")
    retrain_batch_size: int = _f(32, "retraining batch size", "retrain")
    retrain_lr: float = _f(1e-3, "retraining learning rate (AdamW, linear decay) (ours)", "retrain")
    weight_decay: float = _f(0.01, "AdamW weight decay", "retrain")
    retrain_distill: str = _f("probes", "what further training distils: probes (each cell matched to a teacher layer's probe, as the search, and the last to the teacher's logits) or logits (the teacher's logits only) (ours; measured in docs/learning_curves.md)", "retrain", choices=("probes", "logits"))
    retrain_freeze_words: bool | None = _f(None, "keep the word-embedding table fixed during further training: it holds most of the student's parameters, and on small training sets it can memorize the examples instead of keeping the teacher's word similarities. Unset: on for sentence-pair tasks, off for single sentences (the measurements behind this: docs/design.md) (ours)", "retrain")
    # --- measurement ---
    eval_seq_len: int = _f(128, "sequence length for FLOPs and latency", "measure")
    latency_threads: int = _f(2, "torch threads for latency (same for student and teacher)", "measure")
    latency_repeats: int = _f(20, "timed repeats per latency measurement (median reported)", "measure")
    compare_bert_base: bool = _f(False, "also measure a BERT-base-sized model (random weights) side by side", "measure")
    # --- general ---
    resume: bool = _f(True, "continue a stage from its last checkpoint if one exists", "general")
    time_budget: str | None = _f(None, "wall time for the whole run, e.g. 20m, 2h or 1h30m: the run measures this machine's stage costs on a slice of the data, chooses teacher-labelled copies, search subset and epochs and further-training epochs to fit (the order of what buys the most accuracy per minute: docs/learning_curves.md; knobs you set yourself are kept), logs the plan, and holds the stages to it (`bertnas run` only; --dry-run prints the plan)", "general")

    # ------------------------------------------------------------------
    def validate(self) -> "RunConfig":
        """Raise BertnasError naming the field, its value, its flag and the fix for any invalid value.

        Every number is bounded as well as range-checked: a finite value beyond what float32 (torch) or
        numpy's seeding hold would pass a ``> 0`` test and then fail as a traceback in the middle of a run."""
        bad = self.invalid
        defaults = {f.name: f.default for f in fields(self)}
        self.check_common()  # NaN and inf pass every comparison below: they are refused first
        self.check_lr("probe_lr", "search_lr", "arch_lr", "retrain_lr")
        for name in ["tau_max", "tau_min", "temperature"]:
            if not 0 < getattr(self, name) <= TEMPERATURE_MAX:
                raise bad(name, f"must be > 0 and at most {TEMPERATURE_MAX:g}; the default is {defaults[name]:g}")
        positive_ints = ["max_seq_len", "teacher_batch_size", "hidden_size", "k_max", "search_epochs",
                         "search_batch_size", "retrain_batch_size", "eval_seq_len", "latency_threads",
                         "latency_repeats", "arch_update_interval", "latency_table_batch"]
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        for name in ["probe_epochs", "retrain_epochs", "search_warmup_epochs"]:
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        self.check_augmentation()
        if self.val_examples is not None and self.val_examples < 0:
            raise bad("val_examples", "must be >= 0 (0 holds nothing out; unset for a tenth of the training data)")
        if not 0 <= self.arch_entropy <= 100:
            raise bad("arch_entropy", "must be in [0, 100] (0 turns the penalty off)")
        if not 0 <= self.bn_recalibration <= 10000:
            raise bad("bn_recalibration", "must be in [0, 10000] batches (0 turns it off)")
        if not 1 <= self.derive_candidates <= 1000:
            raise bad("derive_candidates", "must be in [1, 1000] (1 keeps the most likely architecture)")
        for name in ["max_train_examples", "teacher_token_budget"]:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise bad(name, "must be >= 1 (or unset for all)")
        if self.probe_max_examples is not None and self.probe_max_examples < 0:
            raise bad("probe_max_examples", "must be >= 1, or 0 to train the probes on every training example")
        if self.search_max_examples is not None and self.search_max_examples < 0:
            raise bad("search_max_examples", "must be >= 1, or 0 to search on every training example")
        for name in ["gamma", "dropout"]:
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "must be in [0, 1]")
        for name, most in [("beta", 1e4), ("weight_decay", 10.0)]:
            if not 0 <= getattr(self, name) <= most:
                raise bad(name, f"must be in [0, {most:g}]; the default is {defaults[name]:g}")
        if self.tau_decay is not None and not 0 <= self.tau_decay <= TEMPERATURE_MAX:
            raise bad("tau_decay", f"must be in [0, {TEMPERATURE_MAX:g}], or unset to reach tau_min at the last epoch")
        if self.tau_min > self.tau_max:
            raise bad("tau_min", f"must not exceed tau_max={self.tau_max}")
        if self.k_max > 32:
            raise bad("k_max", "must be <= 32")
        for name in ["max_seq_len", "eval_seq_len", "hidden_size", "latency_table_batch", "latency_table_seq_len"]:
            if (getattr(self, name) or 0) > 4096:
                raise bad(name, "must be <= 4096")
        for name in ["latency_threads", "latency_table_threads"]:
            if (getattr(self, name) or 0) > 1024:
                raise bad(name, "must be <= 1024 threads")
        for name in ["latency_table_seq_len", "latency_table_threads"]:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise bad(name, "must be >= 1 (or unset for the default)")
        if self.latency_budget_ms is not None:
            if not 0 < self.latency_budget_ms <= 1e6:
                raise bad("latency_budget_ms", "must be > 0 milliseconds and at most 1e6 (or unset for no budget)")
            if self.efficiency != "latency":
                raise bad("latency_budget_ms", "applies to measured latency only: add --efficiency latency, or drop the budget")
        if self.time_budget is not None:
            from .utils import parse_duration

            try:
                parse_duration(self.time_budget)
            except BertnasError:
                raise bad("time_budget", "must be a duration with units, e.g. 20m, 2h, 1h30m or 90s (more than 0, "
                                         "at most 30 days)") from None
        if not 0 <= self.min_parametric <= 2:
            raise bad("min_parametric", "must be 0, 1 or 2 (each node keeps 2 edges)")
        self.check_float32()
        return self

    @property
    def table_seq_len(self) -> int:
        """Sequence length of the AdaBERT latency table: ``latency_table_seq_len`` or ``eval_seq_len``."""
        return self.latency_table_seq_len or self.eval_seq_len

    @property
    def table_threads(self) -> int:
        """Torch threads of the AdaBERT latency table: ``latency_table_threads`` or ``latency_threads``."""
        return self.latency_table_threads or self.latency_threads

    def require(self, *names: str) -> None:
        """Fail with a one-line message when a stage needs a field the user did not set."""
        for name in names:
            if not getattr(self, name):
                raise BertnasError(f"--{name.replace('_', '-')} is required for this step")
        if "task" in names and not (self.data_dir or self.train_file):
            raise BertnasError("no data given: pass --data-dir GLUE_TASK_DIR, or --train-file and --dev-file")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "RunConfig":
        return cls().update(values, source)


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """Check/convert a config-file value to the field's type."""
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise BertnasError(f"{source}: setting {name!r} cannot be empty")
    try:
        if "bool" in text:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if "int" in text:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if "float" in text:
            return float(value)
        if isinstance(value, (list, tuple)):  # a YAML list for a comma-separated setting (labels, hidden_sizes)
            return ",".join(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError):
        kind = "true/false" if "bool" in text else "an integer" if "int" in text else "a number" if "float" in text else "a string"
        raise BertnasError(f"{source}: setting {name!r} must be {kind}, got {value!r}") from None


def load_config_file(path: str | Path, known: Iterable[str] | None = None) -> dict[str, Any]:
    """Read a YAML or JSON mapping of settings, checking its keys against ``known`` (RunConfig's fields).

    Every way the file can be wrong (unreadable, not UTF-8, not parseable, not a mapping, a key that is not
    text or not a setting) is a one-line BertnasError naming the file: it is the user's input, never a bug."""
    path = Path(path)
    if not path.is_file():
        raise BertnasError(f"config file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except UnicodeDecodeError as exc:
        raise BertnasError(f"config file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise BertnasError(f"config file {path} cannot be read ({exc.strerror or exc}): check its permissions") from None
    except Exception as exc:  # yaml and json raise different types
        raise BertnasError(f"config file {path} cannot be parsed: {first_line(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BertnasError(f"config file {path} must hold a mapping of setting: value, got {type(data).__name__}")
    names = sorted(known if known is not None else (f.name for f in fields(RunConfig)))
    unknown = []
    for key in data:
        if not isinstance(key, str):
            raise BertnasError(f"config file {path}: setting names must be text, got {key!r}: use names like "
                               "search_epochs or search-epochs")
        if key.replace("-", "_") not in names:
            close = difflib.get_close_matches(key.replace("-", "_"), names, n=3, cutoff=0.6)
            unknown.append(f"{key!r}" + (f" (close matches: {', '.join(close)})" if close else ""))
    if unknown:
        raise BertnasError(f"config file {path}: unknown setting{'s' if len(unknown) > 1 else ''} {'; '.join(unknown)}; "
                           "settings are the names of the command's settings flags (its --help, under '... settings') with _ or -")
    return data


# ------------------------------------------------------------------ flags: one generator for every settings class
def add_settings_flags(parser: argparse.ArgumentParser, cls: type[Settings], groups: list[str] | None = None) -> None:
    """One flag per field of ``cls`` in ``groups`` (None: every group, in field order), in an argument group per
    settings group. A flag not given is absent from the parsed namespace, so only what the user typed overrides
    the defaults, the config file and the run."""
    hints = get_type_hints(cls)
    if groups is None:
        groups = sorted(dict.fromkeys(f.metadata["group"] for f in fields(cls)), key=lambda g: g == "general")
    sections = {g: parser.add_argument_group(f"{g} settings") for g in groups}
    for f in fields(cls):
        group = f.metadata["group"]
        if group not in sections:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(hints[f.name])
        default = f.default if f.default is not MISSING else None
        help_text = f"{f.metadata['help']} (default: {default})"
        if "bool" in kind:
            sections[group].add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            typ = int if "int" in kind else float if "float" in kind else str
            choices = f.metadata.get("choices")
            sections[group].add_argument(flag, type=typ, default=argparse.SUPPRESS, choices=choices,
                                         metavar="{" + ",".join(choices) + "}" if choices else f.name.upper(),
                                         help=help_text)


def given_flags(args: argparse.Namespace, cls: type[Settings]) -> dict:
    """The settings given as flags (the others are absent from ``args``, see :func:`add_config_flags`)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def read_config_file(path: str, cls: type[Settings] | None = None) -> dict:
    """``--config FILE`` read by :func:`load_config_file` against ``cls``'s fields, plus the checks it leaves
    to us: UTF-8 text and setting names that are text (YAML allows numbers, booleans and null as keys)."""
    try:
        values = load_config_file(path, [f.name for f in fields(cls or RunConfig)])
    except UnicodeDecodeError as exc:
        raise BertnasError(f"config file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    bad = [k for k in values if not isinstance(k, str)]
    if bad:
        raise BertnasError(f"config file {path}: setting names must be text, got {bad[0]!r}: use names like "
                           "search_epochs or search-epochs")
    return values


def resolve_settings(args: argparse.Namespace, cls: type[Settings], base: Settings | None = None) -> Settings:
    """The validated settings of a command: ``base`` (default: ``cls()``), then ``--config FILE``, then the flags."""
    file_values = read_config_file(args.config, cls) if getattr(args, "config", None) else {}
    cfg = (base if base is not None else cls()).update(file_values, str(args.config) if file_values else "config")
    return cfg.update(given_flags(args, cls), "command line").validate()
