"""The package's layout: no import circles, and every module imports on its own.

The import graph is read from the source (every ``import`` statement, including those
inside functions, which is how circles usually hide), so a circle fails here before it can
bite as a half-initialised module at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import graphc

PACKAGE = Path(graphc.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the graphc modules it imports (anywhere in its source)."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in mods else module for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in mods and t != name}
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    graph = import_graph()
    found = cycles(graph)
    detail = "\n".join(f"{c}: " + "; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in found)
    assert not found, "import circles:\n" + detail


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


SCRIPT = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for key in [k for k in sys.modules if k == "graphc" or k.startswith("graphc.")]:
        del sys.modules[key]  # graphc anew; numpy, numba and sympy stay loaded
    try:
        importlib.import_module(name)
    except Exception as err:
        failed.append(f"{name}: {err!r}")
print("\\n".join(failed))
"""


def test_every_module_imports_alone():
    """Each module imported first, with no other graphc module loaded (what a circle breaks);
    one interpreter, graphc's modules cleared between imports."""
    names = [m for m in modules() if m != "graphc.__main__"]
    run = subprocess.run([sys.executable, "-c", SCRIPT, *names], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not run.stdout.strip(), run.stdout


# each stage is a folder; the package's top level holds the pipeline and what every stage reads
STAGES = {
    "graphc.ir": {"graph", "ops", "special", "fold", "indexing", "interop"},
    "graphc.planning": {"schedule", "blocked", "plan", "plancache"},
    "graphc.codegen": {"printer", "loops", "passes", "cpu", "parallel", "cuda", "blocked", "forward", "mathlib"},
    "graphc.runtime": {"loader", "binding", "cuda", "threads", "collector", "distributed"},
    "graphc.training": {"train", "optim", "checkpoint", "validation"},
    "graphc.tools": {"cli", "bench", "demo", "explain", "plot", "drawing", "notebook"},
    "graphc.lsq": {"tangents", "build", "levmar", "result"},
    "graphc": {"__main__", "compile", "forward", "autodiff", "targets", "nn", "errors", "timings", "version"},
}


def test_the_layout_shows_the_pipeline():
    """A newcomer finds each stage from the file names alone: derivatives in autodiff.py, the
    plan in planning/, CUDA code printed in codegen/cuda.py and run by runtime/cuda.py."""
    found: dict[str, set[str]] = {}
    for name in modules():
        package, _, leaf = name.rpartition(".")
        if name in STAGES:  # a package itself
            continue
        found.setdefault(package, set()).add(leaf)
    assert {p: found.get(p, set()) for p in STAGES} | {"graphc.codegen": found["graphc.codegen"] - {"helpers"}} == STAGES
