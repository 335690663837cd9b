"""The module layout keeps the data flow one way: no import cycle, no stage importing a later one.

Stages (docs/architecture.md): shared contracts -> read -> bins -> measure -> decide -> write
-> orchestration (pipeline.run and the modules over it) -> flows. A module may import its own
stage or an earlier one, never a later one; imports inside functions and under
``TYPE_CHECKING`` count too, so a cycle cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("kl_metrics", "pipeline", "flows")
SHARED = {"pipeline.errors", "pipeline.config", "pipeline.labels", "pipeline.formats",
          "pipeline.files", "pipeline.windows", "pipeline.parallel"}
STAGES = ("pipeline.read", "pipeline.bins", "pipeline.measure", "pipeline.decide",
          "pipeline.write")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules imported anywhere in the file (resolved to the longest known name)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            # a module's own package (its __init__) is loaded first anyway: not an edge
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


GRAPH = {name: _imports(path, name, set(_modules())) for name, path in _modules().items()}


def _rank(module: str) -> int:
    if module.startswith("kl_metrics"):
        return 0
    if module == "pipeline":
        # the package's __init__ is the public facade: it re-exports the API (pipeline.api,
        # pipeline.run) lazily, so it sits with the orchestration it exposes
        return len(STAGES) + 2
    if module in SHARED:
        return 1
    for rank, stage in enumerate(STAGES, start=2):
        if module == stage or module.startswith(stage + "."):
            return rank
    if module.startswith("pipeline."):
        return len(STAGES) + 2  # orchestration: pipeline.run, validate, demo
    return len(STAGES) + 3  # flows


def _cycle() -> list[str] | None:
    """One import cycle of the project, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_there_is_no_import_cycle() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_the_cycle_check_finds_a_planted_cycle() -> None:
    GRAPH["pipeline.windows"].add("pipeline.config")  # config imports windows: a 2-cycle
    try:
        assert _cycle() in (["pipeline.config", "pipeline.windows", "pipeline.config"],
                            ["pipeline.windows", "pipeline.config", "pipeline.windows"])
    finally:
        GRAPH["pipeline.windows"].discard("pipeline.config")


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_a_later_stage(module: str) -> None:
    later = sorted(t for t in GRAPH[module] if _rank(t) > _rank(module))
    assert not later, f"{module} (stage {_rank(module)}) imports later stages: {later}"


def test_kl_metrics_and_pipeline_stay_free_of_their_upstream_frameworks() -> None:
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if name.startswith("kl_metrics"):
            assert "polars" not in text and "prefect" not in text, name
        if name.startswith("pipeline"):
            assert "import prefect" not in text and "from prefect" not in text, name


def test_scipy_special_is_imported_only_through_kl_metrics_special() -> None:
    # kl_metrics.special defers numpy modules that importing scipy.special would execute
    # (0.1 s of every run); a direct import elsewhere could come first and undo that.
    for name, path in _modules().items():
        if name == "kl_metrics.special":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                # `from scipy.special import x` and `from scipy import special` alike
                imported = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            assert not any(m == "scipy.special" or m.startswith("scipy.special.")
                           for m in imported), f"{name} imports scipy.special directly"
