"""The web package's shape: short views, and blueprints that never import the package.

Views parse the request, call a service and answer; rules live beside the services, and
refusals are answered by the blueprint's error handlers. The package (``create_app``)
imports the blueprints; a blueprint reads the runtime from :mod:`interphone.web.context`.
"""

from __future__ import annotations

import ast
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "interphone" / "web"
MAX_VIEW_LINES = 15
ROUTES = {"route", "get", "post", "put", "patch", "delete"}


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(WEB.glob("*.py"))}


def _views(tree: ast.Module) -> list[ast.FunctionDef]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any(
            isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ROUTES
            for d in node.decorator_list
        )
    ]


def test_every_view_is_fifteen_lines_at_most() -> None:
    long = [
        f"{name}.{view.name}: {(view.end_lineno or 0) - view.lineno + 1} lines"
        for name, tree in _modules().items()
        for view in _views(tree)
        if (view.end_lineno or 0) - view.lineno + 1 > MAX_VIEW_LINES
    ]
    assert long == []


def test_the_views_are_found() -> None:
    """The check above sees the views (a decorator spelled otherwise would hide them)."""
    names = {view.name for tree in _modules().values() for view in _views(tree)}
    assert {"login", "dashboard", "export", "cases_import", "put_case", "plan_run"} <= names


def _web_imports(tree: ast.Module, names: set[str]) -> set[str]:
    """The modules of the web package a module imports (``__init__``: the package)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = ["interphone", "web"][: 3 - node.level] if node.level else []
        target = ".".join([*base, node.module] if node.module else base)
        if target == "interphone":
            found |= {"__init__" for alias in node.names if alias.name == "web"}
        elif target == "interphone.web":
            found |= {a.name if a.name in names else "__init__" for a in node.names}
        elif target.startswith("interphone.web."):
            found.add(target.split(".")[2])
    return found


def test_no_module_of_the_web_package_imports_the_package_or_closes_a_cycle() -> None:
    trees = _modules()
    graph = {name: _web_imports(tree, set(trees)) - {name} for name, tree in trees.items()}
    # the WSGI entry point builds the app: the one module that may import the package
    into_package = sorted(n for n, deps in graph.items() if "__init__" in deps and n != "wsgi")
    assert into_package == []
    assert {"admin", "agent", "context"} <= graph["__init__"]  # the graph is read

    def cycle_from(start: str) -> list[str] | None:
        path, stack = [start], [iter(sorted(graph[start]))]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                stack.pop()
                path.pop()
            elif step == start:
                return [*path, start]
            elif step not in path:
                path.append(step)
                stack.append(iter(sorted(graph[step])))
        return None

    cycles = [c for name in graph if (c := cycle_from(name)) is not None]
    assert cycles == []
