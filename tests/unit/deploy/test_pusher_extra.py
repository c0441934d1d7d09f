"""``pip install 'audiosync[pusher]'`` installs everything the pusher's modules import.

The pusher's modules are what its entry points (``backend_hooks.AudioSyncClient`` and its
sessions, ``backend_hooks.pusher.pusher_metrics``, ``python -m backend_hooks.spool_cli``)
import, transitively, at any depth of the code (imports inside functions included: the
metrics import prometheus-client only when scraped), but not those under ``TYPE_CHECKING``. Each
third-party module they import must belong to a distribution that pyproject.toml's
dependencies or its ``pusher`` extra name.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
ENTRY_POINTS = (
    "backend_hooks",
    "backend_hooks.pusher.client",
    "backend_hooks.pusher.session",
    "backend_hooks.pusher.pusher_metrics",
    "backend_hooks.spool_cli",
)


def _imports(module: str) -> set[str]:
    """Absolute names ``module``'s source imports (outside ``if TYPE_CHECKING:``)."""
    path = ROOT / Path(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(source.read_text(), str(source))
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _is_ours(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return name.split(".")[0] == "backend_hooks" and (
        path.is_dir() or path.with_suffix(".py").exists()
    )


def pusher_imports() -> tuple[set[str], set[str]]:
    """(the pusher's own modules, the top-level names of everything else they import)."""
    ours: set[str] = set()
    others: set[str] = set()
    todo = list(ENTRY_POINTS)
    while todo:
        module = todo.pop()
        if module in ours:
            continue
        ours.add(module)
        for name in _imports(module):
            if _is_ours(name):
                todo.append(name)
            elif name.split(".")[0] != "backend_hooks":
                others.add(name.split(".")[0])
    return ours, others


def declared_for_the_pusher() -> set[str]:
    """Canonical names of the distributions pyproject.toml installs with ``[pusher]``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {"pusher"}
    names: set[str] = set()
    pending = [*project["dependencies"], *project["optional-dependencies"]["pusher"]]
    while pending:
        requirement = Requirement(pending.pop())
        if canonicalize_name(requirement.name) == "audiosync":  # audiosync[other extras]
            for extra in requirement.extras - wanted:
                wanted.add(extra)
                pending.extend(project["optional-dependencies"][extra])
            continue
        names.add(canonicalize_name(requirement.name))
    return names


def test_the_pusher_extra_installs_what_the_pusher_imports() -> None:
    ours, others = pusher_imports()
    assert {"backend_hooks.pusher.client", "backend_hooks.pusher.pusher_metrics"} <= ours
    distributions = importlib.metadata.packages_distributions()
    needed: dict[str, str] = {}
    for top in sorted(others - set(sys.stdlib_module_names)):
        [distribution] = distributions[top]  # installed in the dev venv: its distribution
        needed[top] = canonicalize_name(distribution)
    assert needed.get("prometheus_client") == "prometheus-client"  # the metrics, when scraped
    missing = {top: dist for top, dist in needed.items() if dist not in declared_for_the_pusher()}
    assert not missing, f"imported by the pusher, not installed by [pusher]: {missing}"


def test_the_pusher_does_not_import_the_read_side() -> None:
    ours, _ = pusher_imports()
    assert (
        not {"backend_hooks.storage", "backend_hooks.read.reader", "backend_hooks.adapters.gcs"}
        & ours
    )
