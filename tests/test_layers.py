"""The layers import one way: front ends → services → store and model; no cycles anywhere.

Why a test: a cycle, or a service that reaches for Discord, is how "each flow written once"
quietly stops being true (the shell once imported logic out of a cog to reuse it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ("bot", "model")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_nodes(tree: ast.AST):
    """Every node, except inside ``if TYPE_CHECKING:`` (imports for annotations only, never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = getattr(child, "test", None)
            if isinstance(child, ast.If) and getattr(test, "id", getattr(test, "attr", "")) == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def project_imports() -> dict[str, set[str]]:
    """Every project module → what it imports (module level and inside functions; relative ones resolved)."""
    paths = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = module_name(path)
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
        graph[name] = {m for m in found if m != name}
    return graph


GRAPH = project_imports()


def project_deps(name: str) -> set[str]:
    return {m for m in GRAPH[name] if m.split(".")[0] in PACKAGES and m not in PACKAGES}


def test_the_reader_resolves_relative_and_function_level_imports():
    assert "bot.store.records" in GRAPH["bot.store"]  # from .records import ...
    assert "model.finetune" in GRAPH["model.jobs"]  # inside _child_main only


def test_train_and_finetune_share_plumbing_through_model_hf():
    assert {"model.hf", "model.data", "model.metrics"} <= project_deps("model.train")
    assert "model.finetune" not in project_deps("model.train")


def test_no_import_cycles():
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(d for d in project_deps(node) if d in GRAPH):
            if state.get(dep) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("layer", ["model", "bot.services", "bot.store", "bot.render"])
def test_below_the_front_ends_nothing_knows_discord(layer):
    for name, deps in GRAPH.items():
        if name == layer or name.startswith(layer + "."):
            assert not {d for d in deps if d.split(".")[0] == "discord"}, f"{name} imports discord"
            assert not {d for d in project_deps(name) if d.startswith(("bot.cogs", "bot.cli", "bot.shell",
                                                                           "bot.client"))}, name
    if layer == "model":
        assert not {d for n, deps in GRAPH.items() if n.startswith("model") for d in deps
                    if d.split(".")[0] == "bot"}


def test_only_the_store_speaks_sql():
    for name, deps in GRAPH.items():
        if not name.startswith("bot.store"):
            assert not deps & {"sqlite3", "aiosqlite"}, f"{name} talks to the database directly"
