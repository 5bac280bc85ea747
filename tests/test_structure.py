"""The package's shape: one place chooses the experiment kind, and no module imports another in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

from experiments import experiment
from experiments.config import REPO_ROOT
from tests.conftest import make_cfg


def _imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports, at any depth of the file (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == package)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """An import cycle of ``graph`` (module -> modules it imports) as a path, or [] when there is none."""
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> list[str]:
        if state.get(m) == 1:
            return [*trail, m]
        if state.get(m) == 2:
            return []
        state[m] = 1
        for n in sorted(graph[m]):
            found = visit(n, [*trail, m])
            if found:
                return found
        state[m] = 2
        return []

    for m in sorted(graph):
        found = visit(m, [])
        if found:
            return found
    return []


def test_no_import_cycle_in_experiments_or_analysis():
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]  # the check itself finds one
    for package in ("experiments", "analysis"):
        files = {f"{package}.{p.stem}": p for p in (REPO_ROOT / package).glob("*.py") if p.stem != "__init__"}
        graph = {m: {i for i in _imports(p, package) if i in files and i != m} for m, p in files.items()}
        assert _cycle(graph) == [], package


def test_one_dispatcher_chooses_the_kind():
    assert experiment.kind_of(make_cfg()) == "training"
    assert experiment.kind_of(make_cfg("experiment=compression")) == "compression"
    assert set(experiment.KINDS) == {"training", "compression"}
    # Only the dispatcher imports the kinds' modules together; the kinds never import the dispatcher.
    for name in ("training_run", "compression_run"):
        assert "experiments.experiment" not in _imports(REPO_ROOT / "experiments" / f"{name}.py", "experiments")
