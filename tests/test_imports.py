"""Where imports may go: no cycle among the product's modules, the product never imports the
development tooling (``interphone.devtools``; the CLI's ``bench`` and ``dev`` groups, which
start the tooling, excepted), and no import statement below a definition ("import at the
bottom").

The graph is read from the source with :mod:`ast` (nothing is imported): every import of an
``interphone`` module, at module level or inside a function. Imports under
``if TYPE_CHECKING:`` are left out: they never run, so they close no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import interphone

PACKAGE = "interphone"
TOOLING = "interphone.devtools"
# entry points of the command line that start the tooling: the one place the product side of
# the tree may import it (``interphone bench ...``, ``interphone dev ...``)
TOOLING_ENTRY_POINTS = frozenset({"interphone.cli.bench", "interphone.cli.dev"})


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module
    line: int
    in_function: bool
    after_definition: bool  # at module level, below a def or a class


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root`` by dotted name (a package by its name)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _blocks(node: ast.stmt) -> Iterator[list[ast.stmt]]:
    """The statement lists nested in a statement (an if's branches, a try's handlers...)."""
    for field in ("body", "orelse", "finalbody"):
        inner = getattr(node, field, None)
        if isinstance(inner, list):
            yield inner
    for handler in getattr(node, "handlers", []):
        yield handler.body
    for case in getattr(node, "cases", []):
        yield case.body


def _statements(
    body: Iterable[ast.stmt], *, in_function: bool, after_definition: bool = False
) -> Iterator[tuple[ast.stmt, bool, bool]]:
    """Every statement with (inside a function, below a module-level definition)."""
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _statements(
                node.orelse, in_function=in_function, after_definition=after_definition
            )
            continue
        yield node, in_function, after_definition
        function = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for block in _blocks(node):
            yield from _statements(
                block, in_function=function, after_definition=after_definition and not function
            )
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            after_definition = not in_function


def _resolve(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules an import statement names (``from pkg import sub`` names ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        name = ".".join([*base, node.module] if node.module else base)
    else:
        name = node.module or ""
    return [name, *(f"{name}.{alias.name}" for alias in node.names)]


def imports(root: Path, package: str = PACKAGE) -> list[Import]:
    """Every import of one of the package's own modules, as written in its source."""
    known = modules(root, package)
    found = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node, in_function, after in _statements(tree.body, in_function=False):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _resolve(node, module, is_package)
            if isinstance(node, ast.ImportFrom):
                # ``from pkg import name``: the submodule when it is one, else the package
                targets = [n for n in names[1:] if n in known] or names[:1]
            else:
                targets = names
            for target in targets:
                if target in known and target != module:
                    found.append(Import(module, target, node.lineno, in_function, after))
    return found


@dataclass(frozen=True)
class Cycle:
    modules: frozenset[str]  # every module of the group that import each other
    path: list[str]  # a shortest cycle through the group's first module: [a, b, ..., a]

    def __str__(self) -> str:
        return " -> ".join(self.path) + f"  (group of {len(self.modules)}: {sorted(self.modules)})"


def cycles(edges: Iterable[tuple[str, str]]) -> list[Cycle]:
    """The import cycles: each group of modules that import each other (a strongly
    connected component of more than one module, Tarjan's algorithm), with a shortest
    cycle through it."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # recursion depth: the longest import chain
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [Cycle(frozenset(group), _shortest_cycle(graph, group)) for group in groups]


def _shortest_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module: ``[a, b, ..., a]``."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in {sorted(group)}")  # a component always has one


def _is_product(module: str) -> bool:
    return not (module == TOOLING or module.startswith(TOOLING + "."))


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    return imports(Path(interphone.__file__).parent)


def test_the_products_modules_import_each_other_without_a_cycle(graph: list[Import]) -> None:
    edges = [(i.source, i.target) for i in graph if _is_product(i.source) and _is_product(i.target)]
    found = [str(cycle) for cycle in cycles(edges)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_product_never_imports_the_tooling(graph: list[Import]) -> None:
    wrong = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in graph
        if _is_product(i.source)
        and i.source not in TOOLING_ENTRY_POINTS
        and not _is_product(i.target)
    ]
    assert not wrong, "\n".join(wrong)
    assert {i.source for i in graph} >= TOOLING_ENTRY_POINTS, "an exception names no module"


def test_imports_stand_above_the_definitions(graph: list[Import]) -> None:
    late = [
        f"{i.source}:{i.line} imports {i.target} below a definition"
        for i in graph
        if i.after_definition
    ]
    assert not late, "\n".join(late)


def test_the_queue_and_the_runtime_never_reach_up_to_the_job_hub(graph: list[Import]) -> None:
    """The hub builds on the runtime, which builds the services: ``queue/`` imports
    neither, and the runtime queues the hub's jobs by name (``interphone.jobqueue``)."""
    upward = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in graph
        if (
            i.source.startswith("interphone.queue")
            and i.target in {"interphone.runtime", "interphone.jobs"}
        )
        or (
            i.source in {"interphone.runtime", "interphone.jobqueue"}
            and i.target == "interphone.jobs"
        )
    ]
    assert not upward, "\n".join(upward)


# What each package may not import: docs/architecture.md ("Packages"), as a table. A
# package is named by its prefix; "interphone.*" is the top-level modules but the wiring
# (the runtime, the job hub, the worker and the job queue build on everything).
WIRING = frozenset(
    {"interphone.runtime", "interphone.jobs", "interphone.jobqueue", "interphone.worker"}
)
FORBIDDEN: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # package: (interphone modules it may not import, third-party packages it may not import)
    "interphone.prompts": (frozenset({"interphone"}), frozenset({"flask", "twilio", "redis"})),
    "interphone.queue": (
        frozenset({"interphone.voice", "interphone.web", "interphone.sim", "interphone.cli"})
        | WIRING,
        frozenset({"flask", "werkzeug", "twilio", "rq"}),
    ),
    "interphone.sim": (
        frozenset({"interphone.voice", "interphone.web", "interphone.cli", "interphone.jobs"}),
        frozenset({"flask", "twilio"}),
    ),
    "interphone.voice": (
        frozenset({"interphone.web", "interphone.sim", "interphone.cli", "interphone.jobs"}),
        frozenset(),
    ),
    "interphone.web": (frozenset({"interphone.cli", "interphone.worker"}), frozenset()),
    "interphone.*": (
        frozenset({"interphone.web", "interphone.sim", "interphone.cli"}) | WIRING,
        frozenset(),
    ),
}


def _package_of(module: str) -> str | None:
    for package in FORBIDDEN:
        if package != "interphone.*" and (module == package or module.startswith(package + ".")):
            return package
    top_level = module.count(".") == 1 and module not in WIRING
    return "interphone.*" if top_level and module != "interphone.cli" else None


def _under(module: str, names: Iterable[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in names)


def _third_party(root: Path) -> Iterator[tuple[str, int, str]]:
    """(module, line, top-level package) for every absolute import of another package."""
    for module, path in modules(root, PACKAGE).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                yield module, node.lineno, name.partition(".")[0]


def test_each_package_imports_only_what_the_architecture_allows(graph: list[Import]) -> None:
    wrong = []
    for i in graph:
        package = _package_of(i.source)
        if package is None or _under(i.target, [package]):
            continue
        internal, _ = FORBIDDEN[package]
        if _under(i.target, internal):
            wrong.append(f"{i.source}:{i.line} imports {i.target} ({package} may not)")
    for module, line, name in _third_party(Path(interphone.__file__).parent):
        package = _package_of(module)
        if package is not None and name in FORBIDDEN[package][1]:
            wrong.append(f"{module}:{line} imports {name} ({package} may not)")
    assert not wrong, "\n".join(wrong)


def test_the_table_names_real_packages() -> None:
    known = set(modules(Path(interphone.__file__).parent, PACKAGE))
    for package, (internal, _) in FORBIDDEN.items():
        assert package == "interphone.*" or package in known
        assert all(name == "interphone" or name in known for name in internal), package
    assert _package_of("interphone.queue.store") == "interphone.queue"
    assert _package_of("interphone.events") == "interphone.*"
    assert _package_of("interphone.runtime") is None


# -- the finder itself, on a package planted in a temporary folder ----------------------------
def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "planted" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "planted"


def test_the_finder_reports_a_cycle_closed_inside_a_function(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": "def f():\n    from .sub import c\n",
            "sub/__init__.py": "",
            "sub/c.py": "from ..a import thing\n",
            "d.py": "from .a import thing\n",  # imports the cycle, is not part of it
        },
    )
    found = imports(root, "planted")
    (cycle,) = cycles((i.source, i.target) for i in found)
    assert cycle.path == ["planted.a", "planted.b", "planted.sub.c", "planted.a"]
    assert cycle.modules == {"planted.a", "planted.b", "planted.sub.c"}
    assert [i.in_function for i in found if i.source == "planted.b"] == [True]


def test_the_finder_ignores_type_checking_imports_and_sees_late_ones(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n",
            "b.py": "import planted.a\n\ndef f():\n    pass\n\nfrom . import c\n",
            "c.py": "",
        },
    )
    found = imports(root, "planted")
    assert cycles((i.source, i.target) for i in found) == []
    assert [(i.source, i.target, i.after_definition) for i in found] == [
        ("planted.b", "planted.a", False),
        ("planted.b", "planted.c", True),
    ]
