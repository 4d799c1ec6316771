"""bertnas: compress fine-tuned BERT models with neural architecture search.

Two methods over shared stages: ``bertnas.adabert`` (AdaBERT, task-specific search) and ``bertnas.nasbert``
(NAS-BERT, task-agnostic supernet); see docs/design.md for the layout. Importing the package registers the
``adabert`` and ``nasbert`` model types with transformers' Auto classes, so a saved student loads with
``AutoModelForSequenceClassification.from_pretrained(dir)``.

Python API for AdaBERT (each step reads/writes a run directory, like the CLI)::

    from bertnas import RunConfig, run, probe, search, retrain, evaluate, demo
    cfg = RunConfig(task="sst2", data_dir="glue/SST-2", teacher="my-teacher")
    results = run(cfg, "runs/sst2")
"""
__version__ = "0.1.0"

from .adabert.genotype import Genotype
from .adabert.modeling import AdaBertConfig, AdaBertForSequenceClassification, register_auto_classes
from .config import RunConfig
from .errors import BertnasError

register_auto_classes()
from .nasbert.modeling import register_auto_classes as _register_nasbert; _register_nasbert()  # noqa: E702


def __getattr__(name: str):
    """Stage functions load lazily so that ``import bertnas`` stays light.

    No submodule of ``bertnas`` may share a name with these: once imported, a submodule is an attribute of the
    package and would be returned instead of the function (tests/test_api.py checks this).
    """
    if name == "run":  # every stage, within cfg.time_budget when it is set
        from .budget import run

        return run
    if name in ("load_data", "load_run_config"):
        from . import rundir

        return getattr(rundir, name)
    if name in ("probe", "search", "retrain", "evaluate"):
        from .adabert import pipeline

        return getattr(pipeline, name)
    if name == "demo":
        from .adabert.demo import demo

        return demo
    raise AttributeError(f"module 'bertnas' has no attribute {name!r}")


__all__ = ["AdaBertConfig", "AdaBertForSequenceClassification", "BertnasError", "Genotype", "RunConfig",
           "run", "probe", "search", "retrain", "evaluate", "demo", "register_auto_classes"]
