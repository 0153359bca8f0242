"""Self-contained model code for transformers' ``trust_remote_code``, generated from our sources.

The package keeps one copy of the model code. A *root* module (such as
``armdistill/export/hf_modeling.py``) is written out as one file of the export, with every
``armdistill`` module it needs (found by following ``armdistill`` imports at any depth,
absolute or relative) inlined above it in dependency order and those imports removed. Imports of
another root become relative imports of its file (``from .configuration_armdistill import ...``),
the form transformers resolves among a model's code files. The result needs torch and
transformers (with their own dependencies) only.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass, field

_BLANK_RUNS = re.compile(r"\n{4,}")


@dataclass
class _Module:
    name: str
    path: str
    source: str
    tree: ast.Module
    # imports from the same package: (statement, {module it reads: [(name, bound as)]})
    imports: list[tuple[ast.stmt, dict[str, list[tuple[str, str]]]]] = field(default_factory=list)


def _load(name: str) -> _Module:
    """Parse module ``name`` and find its imports from its own top-level package."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise RuntimeError(f"{name}: not a Python source module")
    with open(spec.origin, encoding="utf-8") as f:
        source = f.read()
    module = _Module(name, spec.origin, source, ast.parse(source, spec.origin))
    top = name.split(".")[0]
    is_package = spec.origin.endswith("__init__.py")
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == top for a in node.names):
            raise RuntimeError(f"{spec.origin}:{node.lineno}: write 'from MODULE import NAME' for remote code, "
                               f"not 'import {top}...'")
        if not isinstance(node, ast.ImportFrom):
            continue
        target = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
        if target is None or target.split(".")[0] != top:
            continue
        target_spec = importlib.util.find_spec(target)
        for alias in node.names:
            submodule = target_spec is not None and target_spec.submodule_search_locations is not None and (
                importlib.util.find_spec(f"{target}.{alias.name}") is not None)
            if alias.name == "*" or submodule:
                raise RuntimeError(f"{spec.origin}:{node.lineno}: import names from their module "
                                   f"('from {target}.{alias.name} import ...'), not modules or '*'")
        module.imports.append((node, {target: [(a.name, a.asname or a.name) for a in node.names]}))
    return module


def _defined_names(tree: ast.Module) -> set[str]:
    """Top-level names a module binds by def, class or assignment (dunders aside)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name))
    return {n for n in names if not (n.startswith("__") and n.endswith("__"))}


def _rewrite(module: _Module, roots: dict[str, str]) -> tuple[str, set[str]]:
    """The module's code without its docstring, ``__future__`` imports and armdistill imports
    (another root's become relative imports); returns it and the ``__future__`` features it used."""
    lines = module.source.splitlines()
    replace: dict[int, tuple[int, list[str]]] = {}  # first line -> (last line, new lines)
    features: set[str] = set()
    body = module.tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        replace[body[0].lineno] = (body[0].end_lineno, [])
    for node in body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            features.update(a.name for a in node.names)
            replace[node.lineno] = (node.end_lineno, [])
    for node, reads in module.imports:
        indent = " " * node.col_offset
        new = []
        for target, names in reads.items():
            if target in roots:
                listed = ", ".join(n if n == bound else f"{n} as {bound}" for n, bound in names)
                new.append(f"{indent}from .{roots[target]} import {listed}")
            else:
                new += [f"{indent}{bound} = {n}" for n, bound in names if n != bound]
        if not new and node.col_offset:
            new = [f"{indent}pass"]
        replace[node.lineno] = (node.end_lineno, new)
    out, i = [], 1
    while i <= len(lines):
        if i in replace:
            last, new = replace[i]
            out += new
            i = last + 1
        else:
            out.append(lines[i - 1])
            i += 1
    return "\n".join(out).strip("\n"), features


def generate(root: str, roots: dict[str, str]) -> str:
    """The source of file ``roots[root]`` + ``.py``: module ``root`` with what it needs from its own
    package (``armdistill``) inlined. ``roots`` maps every root module to its file stem in the export.
    """
    order: list[_Module] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name in chain:
            raise RuntimeError(f"import cycle: {' -> '.join(chain + (name,))}")
        module = _load(name)
        for _, reads in module.imports:
            for target in reads:
                if target not in roots:
                    visit(target, chain + (name,))
        seen.add(name)
        order.append(module)

    visit(root, ())
    owner: dict[str, str] = {}
    for module in order:
        for name in _defined_names(module.tree):
            if name in owner:
                raise RuntimeError(f"{name!r} is defined in both {owner[name]} and {module.name}; "
                                   "remote code inlines them into one module, so rename one")
            owner[name] = module.name
    parts, features = [], set()
    for module in order:
        code, used = _rewrite(module, roots)
        features |= used
        doc = "".join(f"\n# {line}".rstrip() for line in (ast.get_docstring(module.tree) or "").splitlines())
        parts.append(f"# ---- {module.name}{doc}\n\n{_BLANK_RUNS.sub(chr(10) * 3, code)}")
    header = (f'"""Generated by armdistill from its {root} module and the armdistill modules it imports; '
              'do not edit."""\n')
    future = f"from __future__ import {', '.join(sorted(features))}\n" if features else ""
    return header + "\n" + future + "\n\n" + "\n\n\n".join(parts) + "\n"
