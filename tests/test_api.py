"""The public API: every name in ``bertnas.__all__`` is what the README says, however much of the package
has been imported before (a submodule named like a lazily exported function would shadow it)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import bertnas

CHECK = """
import importlib, pkgutil, sys
import bertnas
if sys.argv[1:] == ["all"]:  # import every module of the package first, as a long session would have
    for info in pkgutil.walk_packages(bertnas.__path__, "bertnas."):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:  # an optional dependency (onnx, matplotlib, ...) that is not installed
            if (exc.name or "").startswith("bertnas"):
                raise
for name in bertnas.__all__:
    value = getattr(__import__("bertnas", fromlist=[name]), name)
    assert not isinstance(value, type(sys)), f"from bertnas import {name} gives the module {value.__name__}"
    assert callable(value), f"from bertnas import {name} gives {value!r}"
print("ok")
"""


@pytest.mark.parametrize("first", ["none", "all"], ids=["fresh", "after-every-submodule"])
def test_public_names_are_functions_and_classes(first):
    proc = subprocess.run([sys.executable, "-c", CHECK, first], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_no_submodule_shadows_an_exported_name():
    import pkgutil

    submodules = {m.name for m in pkgutil.iter_modules(bertnas.__path__)}
    assert not submodules & set(bertnas.__all__), "a submodule named like an exported function shadows it once imported"


def test_readme_api_names():
    from bertnas import RunConfig, evaluate, probe, retrain, run, search

    assert all(callable(f) for f in (run, probe, search, retrain, evaluate)) and isinstance(RunConfig, type)


SHARED = ("data", "teacher", "training", "measure", "export", "rundir", "config", "errors", "utils")
METHODS = ("adabert", "nasbert")


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of the bertnas modules a file imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("bertnas.")}


def test_imports_flow_from_methods_to_shared_stages():
    """Shared stages never import a method, and neither method imports the other (docs/design.md, Code layout)."""
    root = Path(bertnas.__file__).parent
    wrong = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        package = ".".join(("bertnas",) + (parts if parts[-1] == "__init__" else parts[:-1])).removesuffix(".__init__")
        top = parts[0]
        for name in _imports(path, package):
            target = name.split(".")[1]
            if target == top:  # within one package
                continue
            if (top in SHARED and target in METHODS) or (top in METHODS and target in METHODS) \
                    or (top in METHODS + SHARED and target in ("bench", "export", "cli", "estimate", "flags")):
                wrong.append(f"{'/'.join(parts)}.py imports {name}")
    assert not wrong, "\n".join(sorted(wrong))
