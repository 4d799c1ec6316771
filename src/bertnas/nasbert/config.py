"""Settings of the NAS-BERT stages: typed, documented, validated, saved into the run directory.

Paper values are noted; defaults are small so a supernet trains on two CPU cores in minutes.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..config import TEMPERATURE_MAX, SharedSettings, setting
from ..errors import BertnasError


BIN_AXES = ("params,latency", "params")


@dataclass
class SupernetSettings(SharedSettings):
    """``bertnas nasbert supernet``: corpus, teacher pass, block-wise distillation, progressive shrinking.
    Every field is a flag (``max_sentences`` -> ``--max-sentences``) and a key of ``--config FILE``."""

    teacher: str = setting("", "pre-trained BERT-family encoder to distil from: a directory with config.json, or a hub id", "teacher")
    corpus: str = setting("", "comma-separated text files, folders of .txt files or GLUE task folders", "corpus")
    max_sentences: int = setting(20000, "a seeded random subset of the corpus (CPU runs)", "corpus")
    corpus_pairs: str = setting("pairs", "pairs: a pair task's folder gives each pair as one input, A [SEP] B with token types 0/1, so the supernet learns the states pair tasks will feed it; split: every sentence alone", "corpus", choices=("pairs", "split"))
    heldout_sentences: int = setting(256, "sentences held out to score paths (never trained on)", "corpus")
    max_len: int = setting(64, "tokens per sentence (longer ones are truncated)", "corpus")
    num_blocks: int = setting(3, "blocks the teacher is cut into (paper: 4)", "space")
    layers_per_block: int = setting(2, "searched layers per block (paper: 6)", "space")
    hidden_sizes: str = setting("128,192,256,384", "comma-separated hidden sizes of the searched layers (paper: 128 to 512)", "space")
    dropout: float = setting(0.1, "dropout inside every op of the supernet (and the models built from it)", "space")
    epochs: int = setting(4, "passes over the training sentences (paper: 3 warm-up + shrinking epochs)", "training")
    batch_size: int = setting(32, "sentences per step", "training")
    lr: float = setting(5e-4, "AdamW learning rate on all supernet weights, linear decay", "training")
    warmup_epochs: int = setting(1, "epochs before the first shrink (paper: 3)", "training")
    bins: int = setting(10, "B, ranges per axis of the bins per block (paper: 10); fewer, wider ranges put the whole fast region in one bin that keeps only its m lowest-loss (widest) paths", "shrink")
    bin_by: str = setting("params,latency", "params,latency: the paper's B x B grid of parameter and latency ranges, each non-empty cell a bin, so every latency range keeps at least m paths; params: B parameter ranges only", "shrink", choices=BIN_AXES)
    samples_per_bin: int = setting(16, "E, paths scored per bin per shrink (paper: 2000)", "shrink")
    keep_per_bin: int = setting(4, "m, shrinking stops at this many paths per bin (paper: 10)", "shrink")
    score_batches: int = setting(2, "held-out batches per scored path (paper: 5)", "shrink")
    latency_seq_len: int = setting(128, "sequence length the block ops are timed at for the latency axis", "measure")
    latency_batch: int = setting(1, "batch size the block ops are timed at", "measure")
    latency_repeats: int = setting(10, "timed calls per op (the minimum is kept; the table is cached in OUT/supernet/op_latency.json)", "measure")
    teacher_batch_size: int = setting(64, "batch size of the one teacher pass", "teacher")
    cache_dir: str | None = setting(None, "where the teacher states are cached (default: $BERTNAS_CACHE_DIR or ~/.cache/bertnas)", "teacher")
    max_cache_gb: float = setting(50.0, "the most disk the cached states may take (float16: tokens x (blocks + 1) x teacher hidden x 2 bytes; a BERT-base teacher with 4 blocks takes 7.7 KB a token); a bigger corpus, or one that would fill the disk, gets its states computed per batch instead (the teacher then runs every epoch); 0: never cache", "teacher")
    threads: int | None = setting(None, "torch threads (default: torch's); a supernet step is many small ops: on a shared or busy CPU one thread is far faster than two that wait on each other", "general")

    def hidden_list(self) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in str(self.hidden_sizes).split(",") if x.strip())
        except ValueError:
            raise self.invalid("hidden_sizes", "expected comma-separated integers, e.g. 128,256") from None

    def validate(self) -> "SupernetSettings":
        if not self.teacher:
            raise BertnasError("no teacher given: pass --teacher DIR (a pre-trained BERT-family encoder)")
        if not self.corpus:
            raise BertnasError("no corpus given: pass --corpus FILE_OR_FOLDER[,MORE]")
        self.check_common()
        for name in ("max_sentences", "max_len", "num_blocks", "layers_per_block", "epochs", "batch_size", "bins",
                     "samples_per_bin", "keep_per_bin", "score_batches", "teacher_batch_size", "heldout_sentences",
                     "latency_seq_len", "latency_batch", "latency_repeats"):
            if getattr(self, name) < 1:
                raise self.invalid(name, "must be >= 1")
        self.check_threads()
        if not 0.0 <= self.dropout < 1.0:
            raise self.invalid("dropout", "must be in [0, 1)")
        if self.max_cache_gb < 0:
            raise self.invalid("max_cache_gb", "must be >= 0 (0: never cache)")
        if self.warmup_epochs < 0:
            raise self.invalid("warmup_epochs", "must be >= 0")
        self.check_lr("lr")
        self.hidden_list()
        self.check_float32()
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "SupernetSettings":
        known = {f.name for f in fields(cls)}
        d = {"corpus_pairs": "split", **d}  # runs saved before the setting read every sentence alone
        return cls(**{k: v for k, v in d.items() if k in known})

    def training_key(self) -> dict:
        """The settings a checkpoint depends on: resuming with other values starts over."""
        d = self.to_dict()
        for k in ("epochs", "device", "cache_dir", "teacher_batch_size", "threads", "latency_repeats", "max_cache_gb"):
            d.pop(k)
        d.pop("amp_dtype")  # the type it resolves to enters the key where it is known (train.py: Precision.key())
        if not d["amp"]:  # added later: without it a checkpoint from before the setting still resumes
            d.pop("amp")
        return d


@dataclass
class FinetuneSettings(SharedSettings):
    """``bertnas nasbert finetune``: (1 - lambda) task loss + lambda KL(teacher || student).
    Every field is a flag and a key of ``--config FILE``."""

    epochs: int = setting(3, "passes over the training data", "training")
    batch_size: int = setting(32, "examples per step", "training")
    lr: float = setting(1e-4, "AdamW learning rate, linear warm-up and decay", "training")
    kd_lambda: float = setting(0.5, "weight of KL(teacher || student) against the task loss (paper: 0.5)", "training")
    temperature: float = setting(1.0, "softmax temperature of both teacher and student in the KL term (ours: 1)", "training")
    max_seq_len: int = setting(128, "tokens per example (pairs together), longer inputs are truncated", "data")
    max_train_examples: int | None = setting(None, "a seeded random subset of the training split (None or 0: all); the validation split is taken out of it", "data")
    augment: int = setting(0, "teacher-labelled copies of each training example (word replacement, deletion, swaps; the copies AdaBERT trains on); 0: none", "teacher")
    augment_replace_prob: float = setting(0.4, "chance that a word of a copy is replaced by a near neighbour", "teacher")
    augment_edit_prob: float = setting(0.1, "chance that a word of a copy is deleted, and separately that it is swapped", "teacher")
    cache_dir: str | None = setting(None, "where the teacher's logits and copies are cached (default: $BERTNAS_CACHE_DIR or ~/.cache/bertnas)", "teacher")
    val_examples: int | None = setting(None, "training examples held out to pick the epoch kept (None: 10%%, at most 5,000, none below 200 examples; 0: none, the last epoch is kept, unlike AdaBERT's --val-examples 0, which keeps the best dev epoch); dev is only reported", "data")
    weight_decay: float = setting(0.01, "AdamW weight decay", "training")
    threads: int | None = setting(None, "torch threads (default: torch's)", "general")

    def validate(self) -> "FinetuneSettings":
        self.check_common()
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise self.invalid(name, "must be >= 1")
        if self.max_seq_len < 2:
            raise self.invalid("max_seq_len", "must be >= 2 ([CLS] and [SEP])")
        self.check_lr("lr")
        if not 0.0 <= self.kd_lambda <= 1.0:
            raise self.invalid("kd_lambda", "must be in [0, 1]")
        if not 0 < self.temperature <= TEMPERATURE_MAX:
            raise self.invalid("temperature", f"must be > 0 and at most {TEMPERATURE_MAX:g}")
        if self.max_train_examples is not None and self.max_train_examples < 0:
            raise self.invalid("max_train_examples", "must be >= 0 (0: all)")
        self.check_augmentation()
        if self.val_examples is not None and self.val_examples < 0:
            raise self.invalid("val_examples", "must be >= 0 (0 holds nothing out)")
        if not 0 <= self.weight_decay <= 10.0:
            raise self.invalid("weight_decay", "must be in [0, 10]")
        self.check_threads()
        self.check_float32()
        return self
