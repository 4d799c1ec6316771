"""The data layer: GLUE and custom-file readers, task specs, metrics and a synthetic task."""
from .examples import Examples, TaskData, TaskSpec
from .metrics import (
    METRICS,
    REGRESSION_METRICS,
    accuracy,
    compute_metrics,
    f1,
    macro_f1,
    mcc,
    pearson,
    spearman,
)
from .readers import infer_labels, load_task, read_custom, read_glue, read_table
from .synthetic import (
    build_tokenizer,
    generate,
    paraphrase_label,
    sentiment_label,
    vocabulary,
    write_task,
    write_vocab,
)
from .tasks import GLUE_TASKS, get_task, is_glue_task

__all__ = [
    "Examples", "TaskData", "TaskSpec",
    "METRICS", "REGRESSION_METRICS", "accuracy", "compute_metrics", "f1", "macro_f1", "mcc", "pearson", "spearman",
    "infer_labels", "load_task", "read_custom", "read_glue", "read_table",
    "build_tokenizer", "generate", "paraphrase_label", "sentiment_label", "vocabulary", "write_task", "write_vocab",
    "GLUE_TASKS", "get_task", "is_glue_task",
]
