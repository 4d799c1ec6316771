"""The in-memory dataset every stage works on: texts, optional text pairs and labels."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TaskSpec:
    """What a task is: its label set (None for regression) and how it is scored.

    ``labels`` are the label *names* as they appear in the data files; a model predicts their index.
    ``metrics`` lists every metric computed; ``headline`` is the one used for model selection and reports.
    """

    name: str
    labels: list[str] | None
    pair: bool
    metrics: list[str]
    headline: str

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)


@dataclass
class Examples:
    """One split of a task. ``labels`` hold class indices (int) or regression targets (float)."""

    texts: list[str]
    labels: list[int] | list[float]
    text_pairs: list[str] | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int]) -> "Examples":
        return Examples(
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in indices],
            source=self.source,
            meta=dict(self.meta),
        )


@dataclass
class TaskData:
    """A task with its train and dev splits (extra dev splits, e.g. MNLI mismatched, in ``extra_dev``)."""

    spec: TaskSpec
    train: Examples
    dev: Examples
    extra_dev: dict[str, Examples] = field(default_factory=dict)
