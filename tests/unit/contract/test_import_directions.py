"""Who imports whom in backend_hooks/ and workers/ (docs/ARCHITECTURE.md, "Who imports whom").

Every module has one role, in ``ROLES`` below: the one table of the contract, the pusher,
the read side and the fleet (the day these roles become folders, the table becomes the
folder names). The graph is read from the source with ``ast``: every import counts,
module-level, function-local (a lazy import is still a dependency) and under
``TYPE_CHECKING``. A role may import only the roles ``MAY_IMPORT`` names, and no module of
either package may take part in an import cycle but the ``KNOWN_CYCLES`` of
test_module_boundaries.py (one table of cycles; that test also checks backend_hooks for
private names used across modules).

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

#: Each module's role. ``contract``: the formats, names, keys and settings both sides share
#: (pure, or the one Redis adapter that runs the scripts of the contract; ``codec``
#: is here because the pusher encodes and the reader decodes with it, but the fleet does
#: not load it: ``FLEET_NEVER_LOADS``). ``gcs``: the GCS adapter, for the read side and the
#: fleet. ``pusher``: the pusher process and its spool. ``read``: the reader (list,
#: download, merge, delete). ``fleet``: the workers. ``bridge``: the fleet module that
#: reads what the read side reads, the backfill, which rewrites legacy objects with the
#: reader's own code (workers/tasks.py imports it only when a backfill task runs).
ROLES: dict[str, frozenset[str]] = {
    "contract": frozenset(
        f"backend_hooks.{name}"
        for name in (
            "audio_format",
            "build_info",
            "codec",
            "container",
            "entries",
            "envelope",
            "errors",
            "ids",
            "legacy_pcm",  # the legacy raw-PCM layout: pure, as container's legacy Opus
            "lua_scripts",
            "naming",
            "ogg",
            "redis_keys",  # the key names, pure
            "redis_store",  # the one Redis adapter: connection, scripts' runner, Redis time
            "rollout",
            "settings",
        )
    ),
    "gcs": frozenset({"backend_hooks.gcs"}),
    "pusher": frozenset(
        {"backend_hooks"}  # the package's face: AudioSyncClient and Session
        | {
            f"backend_hooks.{name}"
            for name in (
                "appender",  # the pusher's append script call (transport and drainer use it)
                "breaker",
                "chunker",
                "client",
                "handoff",
                "pusher_metrics",
                "session",
                "spool",
                "spool_cli",
                "spool_drainer",
                "spool_format",
                "transport",
                "usage",
            )
        }
    ),
    "read": frozenset(
        f"backend_hooks.{name}"
        for name in (
            "conversations",
            "durations",
            "merge",
            "object_reader",
            "pcm_buffer",
            "reader",
            "resample",
            "storage",
            "wav",
        )
    ),
    "fleet": frozenset(
        {"workers"}
        | {
            f"workers.{name}"
            for name in (
                "backfill_plan",
                "celery_app",
                "celeryconfig",
                "cli",  # the `audiosync` command group, as Celery lays out celery/bin:
                "cli.backfill",  # one module per command, the backfill's code loaded lazily
                "cli.base",
                "cli.exporter",
                "cli.replay",
                "cli.status",
                "context",
                "deletions",
                "drain",
                "exporter",
                "flush",
                "logs",
                "lua_scripts",
                "metrics",
                "operations",
                "planner",
                "quarantine",
                "shutdown",
                "store",
                "tasks",
                "validate",
            )
        }
    ),
    "bridge": frozenset({"workers.backfill"}),
}

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
FLEET_NEVER_LOADS = frozenset({"backend_hooks.codec"})

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


def _modules(root: Path) -> dict[str, Path]:
    """Every module of the packages, those of their subpackages (workers/cli/) included."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if path.stem == "__init__" else parts)
            found[name] = path
    return found


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


def role_of(module: str) -> str | None:
    for role, members in ROLES.items():
        if module in members:
            return role
    return None


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


def test_every_module_has_one_role() -> None:
    modules = set(_modules(ROOT))
    listed = [module for members in ROLES.values() for module in members]
    assert len(listed) == len(set(listed)), "a module in two roles"
    assert modules - set(listed) == set(), "modules without a role: add them to ROLES"
    assert set(listed) - modules == set(), "ROLES names modules that do not exist"


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
    (tmp_path / "backend_hooks" / "storage.py").write_text("")
    (tmp_path / "backend_hooks" / "naming.py").write_text(
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
    assert graph["backend_hooks.naming"] == {"typing": 1, "backend_hooks.storage": 3}
    assert graph["workers.planner"] == {"backend_hooks.storage": 2}
    assert graph["workers.flush"] == {"workers.planner": 1, "celery": 3}
    assert violations(graph) == [
        "backend_hooks/naming.py:3 imports backend_hooks.storage (contract -> read)",
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
    assert loaded & {"backend_hooks.codec", "opuslib", "soxr"} == set()


def test_the_key_names_load_without_redis() -> None:
    """redis_keys is the key names alone: a tool or a test reading them loads no Redis
    client (backend_hooks/redis_store.py is the one module that speaks Redis)."""
    loaded = _loaded_by("import backend_hooks.redis_keys")
    assert "backend_hooks.redis_keys" in loaded
    assert {m for m in loaded if m.split(".")[0] == "redis"} == set()
    assert "backend_hooks.redis_store" not in loaded
