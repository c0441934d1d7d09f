"""Who imports whom in backend_hooks/ and workers/ (docs/ARCHITECTURE.md, "Who imports whom").

Every module has one role, its folder (``role_of`` below; ``ROLES`` is derived from the
folders on disk): the contract, the pusher, the read side and the fleet. The graph is read
from the source with ``ast``: every import counts, module-level, function-local (a lazy
import is still a dependency) and under ``TYPE_CHECKING``. A role may import only the roles
``MAY_IMPORT`` names, and no module of either package may take part in an import cycle but
the ``KNOWN_CYCLES`` of test_module_boundaries.py (one table of cycles; that test also
checks backend_hooks for private names used across modules).

The second half checks what an import loads at run time, in a fresh interpreter: the fleet's
modules outside Celery load no Celery, and a flush worker (its task module and the
``celery audiosync`` command Celery loads at start) loads none of the read side.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The import cycles that exist, each with its reason, are one table for both packages:
# test_module_boundaries.py's (which also fails when one of them is gone).
from tests.unit.contract.test_module_boundaries import KNOWN_CYCLES, cycles

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("backend_hooks", "workers")

#: Each module's role is its folder: ``backend_hooks/<role>/`` for ``contract``, ``pusher``
#: and ``read``, ``workers/`` for ``fleet``. ``contract``: the formats, names, keys and
#: settings both sides share (``codec`` is here because the pusher encodes and the reader
#: decodes with it, but the fleet does not load it: ``FLEET_NEVER_LOADS``). ``pusher``: the
#: pusher process and its spool. ``read``: the reader (list, download, merge, delete).
#: ``fleet``: the workers. The rest, one table each:
#:
#: - ``backend_hooks/adapters/``: one module per outside system, each with its role. ``gcs``
#:   is its own role, for the read side and the fleet; ``redis_store`` is the contract's,
#:   the one Redis adapter that runs the contract's scripts (the pusher uses it too).
#: - the top level of ``backend_hooks``: the public paths, each the face of one role
#:   (``backend_hooks``: AudioSyncClient and Session; ``storage``: the read side's facade;
#:   ``usage``, ``spool_cli`` and ``settings``: re-exports of the moved modules).
#: - ``bridge``: the fleet module that reads what the read side reads, the backfill, which
#:   rewrites legacy objects with the reader's own code (workers/tasks.py imports it only
#:   when a backfill task runs).
FOLDER_ROLES = ("contract", "pusher", "read")
ADAPTER_ROLES: dict[str, str] = {
    "backend_hooks.adapters": "contract",  # its __init__: a docstring
    "backend_hooks.adapters.gcs": "gcs",
    "backend_hooks.adapters.redis_store": "contract",
}
PUBLIC_PATH_ROLES: dict[str, str] = {
    "backend_hooks": "pusher",
    "backend_hooks.settings": "contract",
    "backend_hooks.spool_cli": "pusher",
    "backend_hooks.storage": "read",
    "backend_hooks.usage": "pusher",
}
BRIDGE = frozenset({"workers.backfill"})


def role_of(module: str) -> str | None:
    """``module``'s role, from its folder (None: a module no rule places)."""
    parts = module.split(".")
    if parts[0] == "workers":
        return "bridge" if module in BRIDGE else "fleet"
    if len(parts) > 1 and parts[1] in FOLDER_ROLES:
        return parts[1]
    if len(parts) > 1 and parts[1] == "adapters":
        return ADAPTER_ROLES.get(module)
    return PUBLIC_PATH_ROLES.get(module)


#: The roles each role may import (its own included).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "contract": frozenset({"contract"}),
    "gcs": frozenset({"contract", "gcs"}),
    "pusher": frozenset({"contract", "pusher"}),
    "read": frozenset({"contract", "gcs", "read"}),
    "fleet": frozenset({"contract", "gcs", "fleet", "bridge"}),
    "bridge": frozenset({"contract", "gcs", "read", "fleet", "bridge"}),
}

#: Third-party packages a role never imports (the top-level name).
NEVER_IMPORTS: dict[str, frozenset[str]] = {
    "contract": frozenset({"celery", "kombu", "google", "flower"}),
    "gcs": frozenset({"celery", "kombu", "flower", "opuslib"}),
    "pusher": frozenset({"celery", "kombu", "google", "flower"}),
    "read": frozenset({"celery", "kombu", "flower"}),
    "fleet": frozenset({"opuslib", "soxr", "numpy"}),
    "bridge": frozenset(),
}

#: The fleet runs without libopus (tests/integration/fleet/test_fleet_without_opus.py): no
#: fleet module but the bridge imports the codec, although it is a contract module.
FLEET_NEVER_LOADS = frozenset({"backend_hooks.contract.codec"})


def _modules(root: Path) -> dict[str, Path]:
    """Every module of the packages, those of their subpackages (workers/cli/) included."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if path.stem == "__init__" else parts)
            found[name] = path
    return found


#: The modules of each role, as the folders have them.
ROLES: dict[str, frozenset[str]] = {
    role: frozenset(m for m in _modules(ROOT) if role_of(m) == role)
    for role in ("contract", "gcs", "pusher", "read", "fleet", "bridge")
}


#: Fleet modules that are Celery's own (the app, its config, its signals, its tasks and its
#: command): every other fleet module imports without Celery.
CELERY_MODULES = frozenset(
    {
        "workers.celery_app",
        "workers.celeryconfig",
        "workers.logs",
        "workers.shutdown",
        "workers.tasks",
    }
    | {m for m in ROLES["fleet"] if m == "workers.cli" or m.startswith("workers.cli.")}
)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Every module ``name`` imports, anywhere in its source: one of ``modules`` (a
    ``from package import submodule`` names the submodule) or a third-party top-level
    name; with the line."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _resolve(alias.name, modules), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of this module
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in modules else _resolve(base, modules)), node.lineno


def _resolve(dotted: str, modules: dict[str, Path]) -> str:
    """The longest prefix of ``dotted`` that is one of ``modules``, else its top level."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return parts[0]


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """Module -> {imported module or third-party top-level name: first line}."""
    modules = _modules(root)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in _imports(name, path, modules):
            if target != name and target != "__future__":
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def violations(graph: dict[str, dict[str, int]]) -> list[str]:
    """Every import that breaks a rule above, as ``module:line imports target (why)``."""
    found = []
    for module, edges in sorted(graph.items()):
        role = role_of(module)
        assert role is not None, f"{module} has no role: add it to ROLES"
        for target, line in sorted(edges.items()):
            where = f"{module.replace('.', '/')}.py:{line} imports {target}"
            if target in graph:
                target_role = role_of(target)
                if target_role not in MAY_IMPORT[role]:
                    found.append(f"{where} ({role} -> {target_role})")
                elif role == "fleet" and target in FLEET_NEVER_LOADS:
                    found.append(f"{where} (the fleet runs without libopus)")
            elif target in NEVER_IMPORTS[role]:
                found.append(f"{where} (no {role} module imports {target})")
    return found


# --- the graph, from the source ----------------------------------------------------------


def test_every_module_has_a_role_by_its_folder() -> None:
    """A module's folder is its role: a new module at the top of backend_hooks, or in
    adapters/, is placed by hand in a table here (the public paths, the adapters), and
    the tables name only modules that exist."""
    modules = set(_modules(ROOT))
    assert {m for m in modules if role_of(m) is None} == set(), "put it in its role's folder"
    named = set(ADAPTER_ROLES) | set(PUBLIC_PATH_ROLES) | BRIDGE
    assert named - modules == set(), "the tables name modules that do not exist"
    assert {m for members in ROLES.values() for m in members} == modules


def test_the_top_level_of_backend_hooks_is_the_public_paths() -> None:
    top = {p.stem for p in (ROOT / "backend_hooks").glob("*.py")}
    assert top == {"__init__", "settings", "spool_cli", "storage", "usage"}
    folders = {p.name for p in (ROOT / "backend_hooks").iterdir() if (p / "__init__.py").exists()}
    assert folders == {*FOLDER_ROLES, "adapters"}


def test_every_import_points_the_allowed_way() -> None:
    assert violations(import_graph()) == []


def _internal(graph: dict[str, dict[str, int]]) -> dict[str, set[str]]:
    return {module: {t for t in edges if t in graph} for module, edges in graph.items()}


def test_no_import_cycle_across_both_packages_but_the_known_ones() -> None:
    """backend_hooks and workers together (test_module_boundaries.py looks at
    backend_hooks alone): a workers module in a cycle fails here."""
    unexplained = [sorted(c) for c in cycles(_internal(import_graph())) if c not in KNOWN_CYCLES]
    assert unexplained == []


def test_the_checker_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    """A forbidden import hidden in a function or under TYPE_CHECKING is still one."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "backend_hooks" / "contract").mkdir()
    (tmp_path / "backend_hooks" / "contract" / "__init__.py").write_text("")
    (tmp_path / "backend_hooks" / "storage.py").write_text("")
    (tmp_path / "backend_hooks" / "contract" / "naming.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from backend_hooks.storage import StorageContext\n"
    )
    (tmp_path / "workers" / "planner.py").write_text(
        "def plan() -> None:\n    from backend_hooks import storage\n"
    )
    (tmp_path / "workers" / "flush.py").write_text(
        "from . import planner\nfrom .planner import plan\nimport celery\n"
    )
    graph = import_graph(tmp_path)
    assert graph["backend_hooks.contract.naming"] == {"typing": 1, "backend_hooks.storage": 3}
    assert graph["workers.planner"] == {"backend_hooks.storage": 2}
    assert graph["workers.flush"] == {"workers.planner": 1, "celery": 3}
    assert violations(graph) == [
        "backend_hooks/contract/naming.py:3 imports backend_hooks.storage (contract -> read)",
        "workers/planner.py:2 imports backend_hooks.storage (fleet -> read)",
    ]


def test_the_checker_finds_a_cycle_through_a_lazy_import_in_workers(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "workers" / "a.py").write_text("from workers import b\nimport celery\n")
    (tmp_path / "workers" / "b.py").write_text("def f() -> None:\n    import workers.a\n")
    (tmp_path / "workers" / "c.py").write_text("from workers.a import x\n")
    assert cycles(_internal(import_graph(tmp_path))) == [frozenset({"workers.a", "workers.b"})]


# --- what an import loads, in a fresh interpreter ----------------------------------------


def _loaded_by(statement: str) -> set[str]:
    """The modules ``statement`` leaves in sys.modules of a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("module", sorted((ROLES["fleet"] | ROLES["bridge"]) - CELERY_MODULES))
def test_a_fleet_module_outside_celery_imports_without_celery(module: str) -> None:
    """The pure ones (planner, validate, backfill_plan) and the I/O around them: a tool or
    a test using them does not start Celery's machinery (workers/__init__.py loads the app
    only when ``workers.app`` is asked for, as ``celery -A workers`` does)."""
    loaded = _loaded_by(f"import {module}")
    assert module in loaded
    assert {m for m in loaded if m.split(".")[0] in ("celery", "kombu")} == set()


def test_a_flush_worker_starts_without_the_read_side() -> None:
    """What ``celery -A workers worker`` imports at start, the task module (celeryconfig's
    ``imports``) and the ``audiosync`` command (a Celery plugin, loaded with the CLI):
    none of the reader's modules, no backfill, no codec."""
    loaded = _loaded_by("import workers.tasks, workers.cli")
    assert "celery" in loaded  # it did load what a worker loads
    assert loaded & (ROLES["read"] | ROLES["bridge"]) == set()
    assert loaded & {"backend_hooks.contract.codec", "opuslib", "soxr"} == set()


def test_the_key_names_load_without_redis() -> None:
    """redis_keys is the key names alone: a tool or a test reading them loads no Redis
    client (backend_hooks/adapters/redis_store.py is the one module that speaks Redis)."""
    loaded = _loaded_by("import backend_hooks.contract.redis_keys")
    assert "backend_hooks.contract.redis_keys" in loaded
    assert {m for m in loaded if m.split(".")[0] == "redis"} == set()
    assert "backend_hooks.adapters.redis_store" not in loaded
