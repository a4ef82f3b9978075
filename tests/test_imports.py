"""Import hygiene: light modules stay light, and ``model/`` imports one way (no cycles, never ``bot``).

Why: the bot, the shell and the CLI import the light modules to start fast and to render
training events without torch (about 1.4 s); a cycle between model modules is how that
lightness, and import order, get broken without anyone noticing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "model"

LIGHT = ["model.finetune_config", "model.progress", "model.labels", "model.defaults", "model.registry",
         "model.jobs", "bot.settings"]
HEAVY = ("torch", "transformers")


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_do_not_import_torch_or_transformers(module):
    """A fresh interpreter per module: in this one, other tests have long imported torch."""
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import {module} loads {out.stdout.strip()}"


def model_imports() -> dict[str, set[str]]:
    """``model.x`` → the ``model.*`` and ``bot.*`` modules it imports, at module level or inside functions."""
    modules = {f"model.{p.stem}" for p in MODEL.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for path in sorted(MODEL.glob("*.py")):
        name = "model" if path.stem == "__init__" else f"model.{path.stem}"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                # ``from model import data`` imports the module model.data
                found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        graph[name] = {m for m in found if m.split(".")[0] in ("model", "bot") and m != "model" and m != name}
    return graph


def test_the_graph_reader_sees_function_level_imports():
    graph = model_imports()
    assert "model.finetune" in graph["model.jobs"]  # imported inside _child_main only
    assert {"model.data", "model.hf", "model.metrics"} <= graph["model.train"]


def test_model_imports_have_no_cycles_and_never_reach_bot():
    graph = model_imports()
    assert not {m for deps in graph.values() for m in deps if m.split(".")[0] == "bot"}, graph
    assert "model.finetune" not in graph["model.train"]  # train shares plumbing via model.hf, not finetune

    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
