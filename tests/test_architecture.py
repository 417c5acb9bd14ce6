"""The package's shape: no import cycles among stagegen's modules, and no module importing
another module's private (underscore) names.

The import graph is read from the source with ``ast``, never by importing anything: every
``import`` and ``from ... import`` statement counts, at the top of a module, inside a function
(a deferred import is still a dependency) or under ``if TYPE_CHECKING``. An import of a module's
own enclosing package (``from . import __version__``) is no edge: Python imports every parent
package before the module itself, so that dependency is always there and says nothing.

Cycles and private imports that are still in the code are listed below, each one exactly:
the test fails on a new one, and also when a listed one is gone (delete it from the list then),
so the lists cannot go stale. The aim is to empty both.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "stagegen"

# Exceptions, each a strongly connected component: none since issue 13 made one pipeline of the
# scalar modules and their array twins. A cycle added here must say why it cannot be broken.
KNOWN_CYCLES: set = set()

# (importing module, imported module, private name): none either.
KNOWN_PRIVATE: set = set()


# ------------------------------------------------------------------------------ the reader


def package_modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its own)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imports(module: str, path: Path, modules) -> list[tuple[str, str | None, ast.stmt]]:
    """What ``module`` imports, as (imported module, name or None, statement): ``from .x import
    y`` gives ("pkg.x", "y") and, when ``pkg.x.y`` is a module, ("pkg.x.y", None) too."""
    package = _package_of(module, path)
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise ValueError(f"{path}:{node.lineno}: a relative import above the package")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                if node.module:
                    base = f"{base}.{node.module}"
            else:
                base = node.module or ""
            for alias in node.names:
                out.append((base, alias.name, node))
                if f"{base}.{alias.name}" in modules:
                    out.append((f"{base}.{alias.name}", None, node))
    return out


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:k]) for k in range(1, len(parts))}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (an import of ``a.b.c`` imports ``a.b``
    too, but a module's own parent packages are left out: see the module docstring)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        skip = _ancestors(module) | {module}
        for target, _, _ in imports(module, path, modules):
            for name in {target} | _ancestors(target):
                if name in modules and name not in skip:
                    graph[module].add(name)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The components of more than one module (each holds a cycle), by Tarjan's algorithm,
    written without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def private_imports(modules: dict[str, Path]) -> dict[tuple[str, str, str], str]:
    """(module, from module, name) -> where, for every ``from m import _name`` of one of the
    package's modules. Dunder names (``__version__``) are public, and a module named with an
    underscore is the package's to import (it is private to the package, not to a module)."""
    found = {}
    for module, path in modules.items():
        for target, name, node in imports(module, path, modules):
            if target not in modules or name is None or f"{target}.{name}" in modules:
                continue
            if name.startswith("_") and not name.endswith("__"):
                found[(module, target, name)] = f"{path}:{node.lineno}"
    return found


def _show(cycle) -> str:
    return " <-> ".join(sorted(cycle))


# ------------------------------------------------------------------------------ the tests


@pytest.fixture(scope="module")
def modules():
    return package_modules(PACKAGE_DIR)


def test_no_new_import_cycles(modules):
    found = set(strongly_connected(import_graph(modules)))
    new = found - KNOWN_CYCLES
    assert not new, "new import cycles:\n" + "\n".join(_show(c) for c in sorted(new, key=_show))


def test_known_import_cycles_are_still_there(modules):
    found = set(strongly_connected(import_graph(modules)))
    gone = KNOWN_CYCLES - found
    assert not gone, "remove from KNOWN_CYCLES (gone, or changed):\n" + "\n".join(
        _show(c) for c in sorted(gone, key=_show)
    )


def test_no_new_private_imports(modules):
    found = private_imports(modules)
    new = sorted(set(found) - KNOWN_PRIVATE)
    assert not new, "imports of another module's private names:\n" + "\n".join(
        f"{found[k]}: {k[0]} imports {k[2]} from {k[1]}" for k in new
    )


def test_known_private_imports_are_still_there(modules):
    gone = sorted(KNOWN_PRIVATE - set(private_imports(modules)))
    assert not gone, "remove from KNOWN_PRIVATE:\n" + "\n".join(map(str, gone))


# ------------------------------------------------------------------------------ the checker


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    root = tmp_path / "stagegen"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return package_modules(root)


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    modules = _package(
        tmp_path,
        {
            "a.py": "from .b import f\n",
            "b.py": "def f():\n    from .sub.c import g\n",
            "sub/__init__.py": "",
            "sub/c.py": "def g():\n    from .. import a\n",
            "d.py": "from . import a\nfrom .sub import c\n",
        },
    )
    assert strongly_connected(import_graph(modules)) == [
        frozenset({"stagegen.a", "stagegen.b", "stagegen.sub.c"})
    ]


def test_the_checker_finds_absolute_imports_and_ignores_the_parent_package(tmp_path):
    modules = _package(
        tmp_path,
        {
            "__init__.py": "def api():\n    from .a import x\n",
            "a.py": "from . import __version__\nimport stagegen.b\n",
            "b.py": "if 0:\n    from stagegen.a import x\n",
        },
    )
    graph = import_graph(modules)
    assert graph["stagegen.a"] == {"stagegen.b"}  # not the package it sits in
    assert graph["stagegen"] == {"stagegen.a"}
    assert strongly_connected(graph) == [frozenset({"stagegen.a", "stagegen.b"})]


def test_the_checker_finds_private_imports(tmp_path):
    modules = _package(
        tmp_path,
        {
            "a.py": "_X = 1\n__version__ = '1'\n",
            "b.py": "from .a import __version__\ndef f():\n    from .a import _X as X\n",
            "_c.py": "",
            "d.py": "from . import _c\nimport stagegen._c\nfrom .a import X\n",
        },
    )
    assert set(private_imports(modules)) == {("stagegen.b", "stagegen.a", "_X")}
