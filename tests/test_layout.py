"""The package's house rules, computed from the source (ast), so that they keep holding.

One pipeline stage per folder; a module imports only from its own stage or the stages below it
(:data:`LAYERS`, bottom first); the import graph has no cycle; no module imports another module's
``_private`` name; no file is over 300 lines; robench modules are imported inside functions only
in ``cli/``, where it keeps ``robench --help`` fast.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "robench"
LAYERS = ["floor", "data", "models", "losses", "training", "attacks", "evaluation", "report", "pipeline", "cli", "api"]
"""Stages bottom first: a module may import from its own stage and those before it."""
FLOOR = {"errors", "registry", "checks", "files", "provenance", "results", "devices", "progress", "allocator",
         "version", "norms", "proportions"}
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "api"  # the package itself (load_checkpoint) and `python -m robench`
    return "floor" if parts[1] in FLOOR else parts[1]


def imports(module: str) -> list[tuple[str, str, bool]]:
    """(imported robench module, imported name, inside a function) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(node) for f in functions for node in ast.walk(f) if node is not f}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                if target in MODULES:
                    found.append((target, alias.name if target == base else "", id(node) in nested))
        elif isinstance(node, ast.Import):
            found += [(a.name, "", id(node) in nested) for a in node.names if a.name in MODULES]
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_is_in_a_known_stage():
    assert {layer(m) for m in MODULES} <= set(LAYERS)


def test_imports_go_down_the_stages():
    upward = [f"{m} ({layer(m)}) imports {t} ({layer(t)})" for m, edges in GRAPH.items() for t, _, _ in edges
              if LAYERS.index(layer(t)) > LAYERS.index(layer(m))]
    assert not upward, "\n".join(upward)


def test_import_graph_has_no_cycle():
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target, _, _ in GRAPH[module]:
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(sorted(set(cycles)))


def test_no_private_name_is_imported_from_another_module():
    private = [f"{m} imports {name} from {t}" for m, edges in GRAPH.items() for t, name, _ in edges
               if name.startswith("_") and not name.startswith("__")]
    assert not private, "\n".join(private)


def test_robench_imports_inside_functions_only_in_the_cli():
    inner = [f"{m} imports {t} inside a function" for m, edges in GRAPH.items() for t, _, inside in edges
             if inside and layer(m) not in ("cli", "api")]
    assert not inner, "\n".join(inner)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_at_most_300_lines(module):
    assert len(MODULES[module].read_text(encoding="utf-8").splitlines()) <= MAX_LINES


def test_the_graph_is_real():
    """The checks above see edges: a known downward import is found (so an empty graph cannot pass)."""
    assert ("robench.evaluation.store", "ResultStore", False) in GRAPH["robench.evaluation.sweep"]
    assert layer("robench.pipeline.run") == "pipeline" and layer("robench.results") == "floor"
