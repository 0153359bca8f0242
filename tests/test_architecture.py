"""The package's import rules, read statically from every module's source with ``ast``.

An edge ``a -> b`` is any import of ``b`` anywhere in ``a`` (module level or inside a function,
so a lazy import cannot hide a cycle) and any string constant naming ``b`` (modules imported by
name: the CLI's command list, the export formats, forkserver preloads). The one exception is
the package ``__init__``'s documented lazy attribute map (``armdistill.Student`` and friends).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "armdistill"
# Sides of the package that the student (models/) must never import.
NOT_FOR_MODELS = ("teachers", "distill", "eval", "cli", "demo", "pretrain", "export")


def _module_names() -> dict[str, Path]:
    names = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


MODULES = _module_names()


def _resolve(name: str) -> str | None:
    """The longest prefix of a dotted name that is one of our modules (None: not ours)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imported_names(module: str, tree: ast.Module) -> set[str]:
    is_package = MODULES[module].name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from pkg import sub" needs the module pkg.sub; "from pkg import name" needs pkg itself.
            names.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES:
            names.add(node.value)
    return names


def _lazy_map_names(tree: ast.Module) -> set[str]:
    """The module names in the root package's ``_LAZY`` attribute map."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            return {v.value for v in node.value.values}
    raise AssertionError(f"{ROOT}/__init__.py: no _LAZY map")


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        names = _imported_names(module, tree)
        if module == ROOT:
            names -= _lazy_map_names(tree)
        targets = {_resolve(n) for n in names} - {None, module}
        # Importing a.b.c also runs the __init__ of a and a.b, unless they enclose the importer.
        for target in list(targets):
            parts = target.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if not module.startswith(parent + ".") and parent != module:
                    targets.add(parent)
        graph[module] = targets
    return graph


GRAPH = _graph()


def _side(module: str) -> str:
    """``armdistill.models.student`` -> ``models``; a top-level module (``armdistill.frames``) is
    its own side (``frames``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a node list (first node repeated at the end), None if acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_every_kind_of_import():
    # Module level, function level (lazy), relative-free "from pkg import module", and by name.
    assert "armdistill.models.student" in GRAPH["armdistill.models.release"]
    assert "armdistill.demo.ablation" in GRAPH["armdistill.demo.commands"]
    assert "armdistill.teachers" in GRAPH["armdistill.eval.upstream"]
    assert "armdistill.models.commands" in GRAPH["armdistill.cli"]
    assert "armdistill.demo.plots" in GRAPH["armdistill.demo.pipeline"]
    assert GRAPH[ROOT] == set()


def test_find_cycle_reports_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _side(m) == "models"))
def test_the_student_stands_alone(module):
    reached = {_side(t) for t in GRAPH[module]}
    assert not reached & set(NOT_FOR_MODELS), f"{module} imports {sorted(GRAPH[module])}"


def test_data_imports_nothing_of_synth():
    offenders = {m: sorted(t for t in GRAPH[m] if _side(t) == "synth") for m in MODULES if _side(m) == "data"}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_teachers_do_not_reach_into_the_student():
    offenders = {m: sorted(t for t in GRAPH[m] if _side(t) == "models") for m in MODULES if _side(m) == "teachers"}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_eval_and_pretraining_take_frames_from_the_neutral_module():
    for module in MODULES:
        if _side(module) in ("eval", "pretrain"):
            assert "armdistill.models.frontend" not in GRAPH[module], module


def test_no_import_cycle_among_modules():
    assert _find_cycle(GRAPH) is None, " -> ".join(_find_cycle(GRAPH))


def test_no_import_cycle_among_sides_of_the_package():
    sides: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        sides.setdefault(_side(module), set()).update(_side(t) for t in targets if _side(t) != _side(module))
    assert _find_cycle(sides) is None, " -> ".join(_find_cycle(sides))
