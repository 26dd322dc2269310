"""dvc.yaml lists, for each stage, exactly the faceage modules its code imports (directly or through others).

A module missing from a stage's deps means `dvc repro` keeps stale results after that module changes (this test
found train.py's `hardware.py`, which picks the training precision, missing); an extra one reruns a stage for
nothing. Imports are read statically, including the ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PIPELINES = ["dvc.yaml", "pipelines/tune/dvc.yaml"]


def _imported_modules(path: Path) -> set[str]:
    """Dotted names of the faceage modules (and of names that may be modules) one file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "faceage":
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "faceage")
    return found


def _module_file(dotted: str) -> Path | None:
    base = SRC.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None  # a function or class imported from a module, not a module


def import_closure(start: Path) -> set[str]:
    """Every faceage source file `start` runs, as repo-relative paths (the docstring-only __init__ files left out)."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(f for f in map(_module_file, _imported_modules(path)) if f is not None and f not in seen)
    return {p.relative_to(REPO).as_posix() for p in seen if p.name != "__init__.py"}


def _stages() -> list[tuple[str, str, dict]]:
    return [(file, name, stage) for file in PIPELINES
            for name, stage in yaml.safe_load((REPO / file).read_text())["stages"].items()]


@pytest.mark.parametrize(("file", "name", "stage"), _stages(), ids=lambda v: v if isinstance(v, str) else "")
def test_stage_deps_are_exactly_the_modules_its_code_imports(file: str, name: str, stage: dict) -> None:
    assert stage["cmd"] == f"faceage {name}", "one name per stage: stage, module and CLI command"
    module = SRC / "faceage" / f"{name}.py"
    listed = {dep for dep in stage["deps"] if dep.startswith("src/")}
    needed = import_closure(module)
    missing, unused = sorted(needed - listed), sorted(listed - needed)
    assert missing == [], f"{file} stage {name}: its code imports these, add them to its deps"
    assert unused == [], f"{file} stage {name}: its code never imports these deps"


def test_import_closure_follows_imports_inside_functions() -> None:
    closure = import_closure(SRC / "faceage" / "serve.py")
    assert "src/faceage/predict.py" in closure        # imported inside a method of the served model
    assert "src/faceage/tracking.py" in closure       # imported inside serving_requirements()
    assert "src/faceage/train.py" not in closure      # serving needs no training code
