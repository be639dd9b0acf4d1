"""Static look at a plugin's source: its one-line description and sure signs it cannot import.

`kptoolkit list` must answer quickly and must not import every plugin (importing torch alone takes
longer than the whole listing may). This module reads a component's source with `ast` instead of
executing it. Every problem it reports is certain (a missing module, a syntax error, a missing
dependency, an unconditional `raise` at module level); anything subtler is only found by a real
import (`kptoolkit list --check`, `kptoolkit info NAME`).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from importlib.machinery import ModuleSpec

import attrs

_MAX_REEXPORT_HOPS = 4


@attrs.frozen
class StaticInfo:
    """What reading a component's source (without running it) tells."""

    description: str = ""
    problem: str | None = None


def find_spec_without_import(module_name: str) -> ModuleSpec | None:
    """Locate a module like `importlib.util.find_spec`, but never execute its parent packages."""
    if module_name in sys.modules:
        return getattr(sys.modules[module_name], "__spec__", None)
    parent, _, _ = module_name.rpartition(".")
    if not parent:
        return importlib.util.find_spec(module_name)
    parent_spec = find_spec_without_import(parent)
    if parent_spec is None or parent_spec.submodule_search_locations is None:
        return None
    search = list(parent_spec.submodule_search_locations)
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        spec = find_spec(module_name, search)
        if spec is not None:
            return spec
    return None


def first_doc_line(doc: str | None) -> str:
    """The first non-empty line of a docstring, stripped ('' when there is none)."""
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def inspect_target(target: str) -> StaticInfo:
    """Describe an entry-point target `module:attr` from its source, without importing it."""
    return _inspect(target, hops=0)


def _inspect(target: str, hops: int) -> StaticInfo:
    module_name, _, attr_path = target.partition(":")
    try:
        spec = find_spec_without_import(module_name)
    except (ImportError, ValueError) as exc:
        return StaticInfo(problem=f"cannot locate module '{module_name}': {exc}")
    if spec is None:
        return StaticInfo(problem=f"module '{module_name}' is not installed")
    if not spec.origin or not spec.origin.endswith(".py"):
        return StaticInfo()  # compiled or namespace module: nothing to read
    try:
        with open(spec.origin, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=spec.origin)
    except SyntaxError as exc:
        return StaticInfo(problem=f"syntax error in {spec.origin} line {exc.lineno}: {exc.msg}")
    except OSError as exc:
        return StaticInfo(problem=f"cannot read {spec.origin}: {exc}")

    problem = _certain_import_failure(tree, module_name, spec)
    if not attr_path:
        return StaticInfo(first_doc_line(ast.get_docstring(tree)), problem)
    name = attr_path.split(".")[0]
    node = _top_level_definition(tree, name)
    if node is None:
        if problem is None and not _may_define_dynamically(tree):
            problem = f"module '{module_name}' defines no '{name}'"
        return StaticInfo("", problem)
    if isinstance(node, ast.ImportFrom) and hops < _MAX_REEXPORT_HOPS:
        source_module = _resolve_import_from(node, module_name, spec)
        original = next(a.name for a in node.names if (a.asname or a.name) == name)
        followed = _inspect(f"{source_module}:{original}", hops + 1)
        return StaticInfo(followed.description, problem or followed.problem)
    doc = None
    if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        doc = ast.get_docstring(node)
    return StaticInfo(first_doc_line(doc), problem)


def _top_level_definition(tree: ast.Module, name: str) -> ast.AST | None:
    found = None
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if stmt.name == name:
                found = stmt
        elif isinstance(stmt, ast.Assign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found = stmt
        elif isinstance(stmt, ast.ImportFrom | ast.Import) and any(
            (alias.asname or alias.name).split(".")[0] == name for alias in stmt.names
        ):
            found = stmt
    return found


def _may_define_dynamically(tree: ast.Module) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
            return True
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "__getattr__":
            return True
        if not isinstance(
            stmt,
            ast.ClassDef
            | ast.FunctionDef
            | ast.AsyncFunctionDef
            | ast.Assign
            | ast.AnnAssign
            | ast.Import
            | ast.ImportFrom
            | ast.Expr
            | ast.Raise,
        ):
            return True  # conditional or looped definitions: do not guess
    return False


def _resolve_import_from(node: ast.ImportFrom, module_name: str, spec: ModuleSpec) -> str:
    if node.level == 0:
        return node.module or ""
    is_package = spec.submodule_search_locations is not None
    package = module_name if is_package else module_name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _certain_import_failure(tree: ast.Module, module_name: str, spec: ModuleSpec) -> str | None:
    """A problem that importing this module is sure to hit, found among its top-level statements."""
    for stmt in tree.body:
        if isinstance(stmt, ast.Raise):
            return f"module '{module_name}' raises at import (line {stmt.lineno})"
        missing = None
        if isinstance(stmt, ast.Import):
            missing = next((a.name for a in stmt.names if not _installed(a.name)), None)
        elif (
            isinstance(stmt, ast.ImportFrom)
            and stmt.level == 0
            and stmt.module not in (None, "__future__")
            and not _installed(stmt.module)
        ):
            missing = stmt.module
        if missing is not None:
            return f"module '{module_name}' imports '{missing}', which is not installed"
    return None


def _installed(module_name: str) -> bool:
    top = module_name.split(".")[0]
    if top in sys.modules or top in sys.builtin_module_names:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False
