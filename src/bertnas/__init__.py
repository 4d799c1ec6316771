"""bertnas: compress fine-tuned BERT models with neural architecture search.

Importing the package registers the ``adabert`` model type with transformers' Auto classes, so a saved
student loads with ``AutoModelForSequenceClassification.from_pretrained(dir)``.

Python API (each step reads/writes a run directory, like the CLI)::

    from bertnas import RunConfig, run, probe, search, retrain, evaluate, demo
    cfg = RunConfig(task="sst2", data_dir="glue/SST-2", teacher="my-teacher")
    results = run(cfg, "runs/sst2")
"""
__version__ = "0.1.0"

from .config import RunConfig
from .errors import BertnasError
from .models.adabert import AdaBertConfig, AdaBertForSequenceClassification, register_auto_classes
from .spaces.genotype import Genotype

register_auto_classes()
from .nasbert.modeling import register_auto_classes as _register_nasbert; _register_nasbert()  # noqa: E702


def __getattr__(name: str):
    """Stage functions load lazily so that ``import bertnas`` stays light."""
    if name in ("run", "probe", "search", "retrain", "evaluate", "load_data", "load_run_config"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "demo":
        from .demo import demo

        return demo
    raise AttributeError(f"module 'bertnas' has no attribute {name!r}")


__all__ = ["AdaBertConfig", "AdaBertForSequenceClassification", "BertnasError", "Genotype", "RunConfig",
           "run", "probe", "search", "retrain", "evaluate", "demo", "register_auto_classes"]
