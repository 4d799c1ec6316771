"""Settings of the NAS-BERT stages: typed, documented, validated, saved into the run directory.

Paper values are noted; defaults are small so a supernet trains on two CPU cores in minutes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from ..errors import BertnasError


BIN_AXES = ("params,latency", "params")


@dataclass
class SupernetSettings:
    """``bertnas nasbert supernet``: corpus, teacher pass, block-wise distillation, progressive shrinking.

    Args:
        teacher: pre-trained BERT-family encoder (directory with config.json) to distil from.
        corpus: comma-separated text files, folders of .txt files or GLUE task folders.
        max_sentences: random subset of the corpus (seeded) kept for CPU runs.
        corpus_pairs: "pairs" (a pair task's folder gives each pair as one input, A [SEP] B with token types 0/1,
            so the supernet learns the states pair tasks will feed it) or "split" (every sentence alone).
        heldout_sentences: sentences held out to score paths (never trained on).
        max_len: tokens per sentence (longer ones are truncated).
        num_blocks, layers_per_block, hidden_sizes: the space (paper: 4, 6, 128..512).
        epochs: passes over the training sentences (paper: 3 warm-up + shrinking epochs).
        batch_size, lr: AdamW on all supernet weights, linear decay.
        warmup_epochs: epochs before the first shrink (paper: 3).
        bins: B, ranges per axis of the bins per block (paper: 10). Fewer, wider ranges put the whole fast region
            in one bin that keeps only its m lowest-loss (widest) paths.
        bin_by: "params,latency" (the paper: a B x B grid of parameter and latency ranges, each non-empty cell
            a bin, so every latency range keeps at least m paths) or "params" (B parameter ranges only).
        latency_seq_len, latency_batch, latency_repeats: how the block ops are timed for the latency axis
            (minimum of the repeats, with ``threads``; the table is cached in OUT/supernet/op_latency.json).
        samples_per_bin: E, paths scored per bin per shrink (paper: 2000).
        keep_per_bin: m, shrinking stops at this many paths per bin (paper: 10).
        score_batches: held-out batches per scored path (paper: 5).
        teacher_batch_size: batch size of the one teacher pass.
        dropout: dropout inside every op of the supernet (and the models built from it).
        cache_dir: where the teacher states are cached (default: $BERTNAS_CACHE_DIR or ~/.cache/bertnas).
        max_cache_gb: the most disk the cached states may take (float16: tokens x (N + 1) x teacher hidden x 2
            bytes; a BERT-base teacher with 4 blocks takes 7.7 KB a token); a bigger corpus, or one that would fill
            the disk, gets its states computed per batch instead (the teacher then runs every epoch).
        threads: torch threads (default: torch's). Steps of a supernet are many small ops: on a shared or
            busy CPU one thread is far faster than two that wait on each other (measured: 0.08 s vs 3 s a step).
    """

    teacher: str = ""
    corpus: str = ""
    max_sentences: int = 20000
    corpus_pairs: str = "pairs"
    heldout_sentences: int = 256
    max_len: int = 64
    num_blocks: int = 3
    layers_per_block: int = 2
    hidden_sizes: str = "128,192,256,384"
    epochs: int = 4
    batch_size: int = 32
    lr: float = 5e-4
    warmup_epochs: int = 1
    bins: int = 10
    bin_by: str = "params,latency"
    latency_seq_len: int = 128
    latency_batch: int = 1
    latency_repeats: int = 10
    samples_per_bin: int = 16
    keep_per_bin: int = 4
    score_batches: int = 2
    teacher_batch_size: int = 64
    dropout: float = 0.1
    cache_dir: str | None = None
    max_cache_gb: float = 50.0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def hidden_list(self) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in str(self.hidden_sizes).split(",") if x.strip())
        except ValueError:
            raise BertnasError(f"--hidden-sizes {self.hidden_sizes!r}: expected comma-separated integers, e.g. 128,256") from None

    def validate(self) -> "SupernetSettings":
        if not self.teacher:
            raise BertnasError("no teacher given: pass --teacher DIR (a pre-trained BERT-family encoder)")
        if not self.corpus:
            raise BertnasError("no corpus given: pass --corpus FILE_OR_FOLDER[,MORE]")
        for name in ("max_sentences", "max_len", "num_blocks", "layers_per_block", "epochs", "batch_size", "bins",
                     "samples_per_bin", "keep_per_bin", "score_batches", "teacher_batch_size", "heldout_sentences",
                     "latency_seq_len", "latency_batch", "latency_repeats"):
            if getattr(self, name) < 1:
                raise BertnasError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise BertnasError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.max_cache_gb < 0:
            raise BertnasError(f"--max-cache-gb must be >= 0 (0: never cache), got {self.max_cache_gb}")
        if self.warmup_epochs < 0 or self.lr <= 0:
            raise BertnasError("--warmup-epochs must be >= 0 and --lr > 0")
        if self.corpus_pairs not in ("pairs", "split"):
            raise BertnasError(f"--corpus-pairs {self.corpus_pairs!r}: choose pairs or split")
        if self.bin_by not in BIN_AXES:
            raise BertnasError(f"--bin-by {self.bin_by!r}: choose {' or '.join(BIN_AXES)}")
        self.hidden_list()
        return self

    def to_dict(self) -> dict:
        return asdict(self)

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
        return d


@dataclass
class FinetuneSettings:
    """``bertnas nasbert finetune``: (1 - lambda) task loss + lambda KL(teacher || student).

    Args:
        kd_lambda: weight of the KL term (paper: 0.5).
        temperature: softmax temperature of both teacher and student in the KL term (ours: 1).
        max_train_examples: a seeded random subset of the training split (CPU runs), None or 0 for all; the
            validation split (``val_examples``) is then taken out of it.
        augment: teacher-labelled copies of each training example (TinyBERT-style word replacement, deletion
            and swaps, ``teacher.augment``, the same copies AdaBERT trains on); 0 turns it off.
        augment_replace_prob, augment_edit_prob: as AdaBERT's ``--augment-replace-prob/--augment-edit-prob``.
        val_examples: training examples held out to pick the epoch kept (default: 10%, at most 5,000, none
            below 200 examples; 0: none, the last epoch is kept, unlike AdaBERT's --val-examples 0, which keeps
            the best dev epoch). The dev set is only reported.
        threads: torch threads (default: torch's; see SupernetSettings.threads).
    """

    FLAG_HELP: ClassVar[dict[str, str]] = {
        "augment": "teacher-labelled copies of each training example (word replacement, deletion, swaps); 0: none",
        "augment_replace_prob": "chance that a word of a copy is replaced by a near neighbour",
        "augment_edit_prob": "chance that a word of a copy is deleted, and separately that it is swapped",
        "val_examples": "training examples held out to pick the epoch kept (None: 10%%, at most 5,000; 0: none, "
                        "the last epoch is kept); dev is only reported",
        "max_train_examples": "a seeded random subset of the training split (None or 0: all)",
        "kd_lambda": "weight of KL(teacher || student) against the task loss (paper: 0.5)",
    }

    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    kd_lambda: float = 0.5
    temperature: float = 1.0
    max_seq_len: int = 128
    max_train_examples: int | None = None
    augment: int = 0
    augment_replace_prob: float = 0.4
    augment_edit_prob: float = 0.1
    val_examples: int | None = None
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def validate(self) -> "FinetuneSettings":
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_seq_len < 2:
            raise BertnasError("--epochs, --batch-size must be >= 1, --lr > 0 and --max-seq-len >= 2")
        if not 0.0 <= self.kd_lambda <= 1.0:
            raise BertnasError(f"--kd-lambda must be in [0, 1], got {self.kd_lambda}")
        if self.temperature <= 0:
            raise BertnasError(f"--temperature must be > 0, got {self.temperature}")
        if self.max_train_examples is not None and self.max_train_examples < 0:
            raise BertnasError(f"--max-train-examples must be >= 0 (0: all), got {self.max_train_examples}")
        if self.augment < 0:
            raise BertnasError(f"--augment must be >= 0 (0 turns augmentation off), got {self.augment}")
        for name in ("augment_replace_prob", "augment_edit_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise BertnasError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        if self.val_examples is not None and self.val_examples < 0:
            raise BertnasError(f"--val-examples must be >= 0 (0 holds nothing out), got {self.val_examples}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)
