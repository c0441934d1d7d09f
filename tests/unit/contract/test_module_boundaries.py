"""The modules of ``backend_hooks`` talk to one another through public names only, and
import one another without a cycle (docs/ARCHITECTURE.md, "Modules and who depends on
whom").

Read from the source with ``ast``, nothing imported:

- a *private name* is one with a leading underscore (not a dunder). A module uses another
  module's private name when it reads ``x._name`` with ``x`` not ``self``/``cls``, and
  ``_name`` is defined (a function, class, assignment, ``self._name = ...``, parameter or
  import under that name) in another module of the package and nowhere in its own; or
  when it imports ``_name`` from another module of the package. A name both modules
  define cannot be told apart without types and is not counted: the rule catches
  reaching into another module's object, which is what couples two modules' insides.
- an *import* is any import statement of the module, those inside functions and under
  ``if TYPE_CHECKING:`` included (a cycle that only type checking closes is still two
  modules that cannot be understood, or changed, one without the other).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

PACKAGE = "backend_hooks"
# The checkout: the first directory above this file that holds the package (so the file
# may sit at any depth under tests/).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / PACKAGE / "__init__.py").exists())

# Known cycles, each with its reason; any other (or a larger one) fails the test.
KNOWN_CYCLES: dict[frozenset[str], str] = {}
# Known uses of another module's private name: (module, "expression"), each with its reason.
KNOWN_PRIVATE_USES: dict[tuple[str, str], str] = {}


def _sources() -> dict[str, str]:
    """The package's modules by dotted name, those of its folders included (a package by
    the name of its ``__init__``: ``backend_hooks``, ``backend_hooks.read``)."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if path.stem == "__init__" else parts)] = path.read_text()
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_private_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)  # its own object's attribute, not another's
        elif isinstance(node, ast.alias) and not _is_private(node.name):
            names.add((node.asname or node.name).split(".")[0])  # importing _x defines nothing
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {name for name in names if _is_private(name)}


def private_uses(sources: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
    """(module, line: expression, the modules defining the name) for every use of
    another module's private name (see the module docstring)."""
    trees = {module: ast.parse(source, module) for module, source in sources.items()}
    defined = {module: _defined_private_names(tree) for module, tree in trees.items()}
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                if node.module.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:
                    if _is_private(alias.name) and node.module != module:
                        yield module, f"from {node.module} import {alias.name}", node.module
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in defined[module]:
                continue
            owners = sorted(m for m, names in defined.items() if m != module and node.attr in names)
            if owners:
                yield module, ast.unparse(node), ", ".join(owners)


def import_graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its source."""
    graph: dict[str, set[str]] = {}
    for module, source in sources.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(source, module)):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in sources)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: none in the package, read as from its top
                    base = f"{PACKAGE}.{base}" if base else PACKAGE
                if base != PACKAGE and base not in sources:
                    continue
                for alias in node.names:  # `from pkg import module` imports the module
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in sources else base)
        targets &= set(sources)
        targets.discard(module)
        graph[module] = targets
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# -- the package ---------------------------------------------------------------------------


def test_no_module_uses_another_modules_private_names() -> None:
    uses = [(m, expr, owners) for m, expr, owners in private_uses(_sources())]
    new = [u for u in uses if (u[0], u[1]) not in KNOWN_PRIVATE_USES]
    assert not new, "private names used across modules (make them public, or pass a hook):\n" + (
        "\n".join(f"  {m}: {expr} (defined in {owners})" for m, expr, owners in new)
    )
    stale = set(KNOWN_PRIVATE_USES) - {(m, expr) for m, expr, _ in uses}
    assert not stale, f"known private uses that are gone: drop them from the list: {stale}"


def test_the_modules_import_one_another_without_cycles() -> None:
    found = cycles(import_graph(_sources()))
    new = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert not new, f"import cycles among backend_hooks modules: {new}"
    stale = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not stale, f"known cycles that are gone: drop them from the list: {stale}"


def test_the_pusher_pipeline_modules_are_in_no_cycle() -> None:
    graph = import_graph(_sources())
    at = f"{PACKAGE}.pusher"
    pusher = {f"{at}.{m}" for m in ("client", "session", "transport", "breaker", "spool")}
    assert pusher <= set(graph)
    assert not [sorted(c) for c in cycles(graph) if c & pusher]
    assert f"{at}.client" not in graph[f"{at}.session"]
    assert f"{at}.client" not in graph[f"{at}.transport"]
    assert f"{at}.session" not in graph[f"{at}.transport"]


# -- the checks themselves, on made-up modules -----------------------------------------------

_OWNER = """
_LIMIT = 3
class Thing:
    def __init__(self):
        self._count = 0
    def _bump(self):
        self._count += 1
"""


def test_reaching_into_another_modules_object_is_a_private_use() -> None:
    user = """
from backend_hooks.owner import Thing, _LIMIT
from backend_hooks import owner
class User:
    def __init__(self, thing):
        self._thing = thing
    def go(self, other):
        self._thing._bump()          # through an attribute of self
        other._count += 1            # through a parameter
        return owner._LIMIT          # through the module
"""
    found = {(m, expr) for m, expr, _ in private_uses({"owner": _OWNER, "user": user})}
    assert found == {
        ("user", "from backend_hooks.owner import _LIMIT"),
        ("user", "self._thing._bump"),
        ("user", "other._count"),
        ("user", "owner._LIMIT"),
    }


def test_own_private_names_and_foreign_ones_are_not_private_uses() -> None:
    user = """
import threading
class Other:
    def __init__(self):
        self._peer = None
    def go(self, pool, peer: "Other"):
        self._peer = peer
        peer._peer = self            # this module's own name, on another object
        return pool._shutdown        # a name no module of the package defines
"""
    assert list(private_uses({"owner": _OWNER, "user": user})) == []


def test_an_import_under_type_checking_or_in_a_function_closes_a_cycle() -> None:
    sources = {
        "backend_hooks.a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from backend_hooks.b import B\n",
        "backend_hooks.b": "def f():\n    from backend_hooks import a\n",
        "backend_hooks.c": "from backend_hooks import a, b\n",
    }
    assert cycles(import_graph(sources)) == [frozenset({"backend_hooks.a", "backend_hooks.b"})]
