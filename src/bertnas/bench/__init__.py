"""`bertnas bench`: the searched student against random search, hand-designed students and ablations.

One bench directory holds a shared probe run (the teacher runs once; its cached knowledge and probes serve
every row) and one sub run directory per row, each a resumable stage with a done-marker keyed by its
settings. Latency is measured for all rows side by side in one process at the end. See ``runner.run_bench``.
"""
from .settings import BenchSettings

__all__ = ["BenchSettings", "run_bench"]


def __getattr__(name: str):
    if name == "run_bench":  # lazy: the CLI parser imports this package and should stay light
        from .runner import run_bench

        return run_bench
    raise AttributeError(f"module 'bertnas.bench' has no attribute {name!r}")
