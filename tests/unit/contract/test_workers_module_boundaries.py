"""The modules of ``workers`` (its subpackage workers/cli/ included) talk to one another
through public names only, as those of ``backend_hooks`` do (test_module_boundaries.py,
whose checker this reuses): the ``audiosync`` commands, one module each, share what
workers/cli/base.py makes public, and reach into no other module's insides.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.unit.contract.test_module_boundaries import _sources as backend_hooks_sources
from tests.unit.contract.test_module_boundaries import private_uses

PACKAGE = "workers"
ROOT = next(p for p in Path(__file__).resolve().parents if (p / PACKAGE / "__init__.py").exists())


def _sources() -> dict[str, str]:
    """The package's modules by dotted name, those of its subpackages included."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if path.stem == "__init__" else parts)] = path.read_text()
    return out


def private_imports(sources: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(module, statement) for every ``from workers... import _name`` of another module."""
    for module, source in sources.items():
        for node in ast.walk(ast.parse(source, module)):
            if not (isinstance(node, ast.ImportFrom) and node.module and not node.level):
                continue
            if node.module.split(".")[0] != PACKAGE or node.module == module:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.endswith("__"):
                    yield module, f"from {node.module} import {alias.name}"


def test_the_cli_commands_are_modules_of_their_own() -> None:
    sources = _sources()
    assert {"workers.cli.base", "workers.cli.status", "workers.cli.replay"} <= set(sources)
    assert {"workers.cli.backfill", "workers.cli.exporter"} <= set(sources)


def test_no_workers_module_uses_another_modules_private_names() -> None:
    sources = _sources()
    found = sorted(private_imports(sources)) + sorted(
        (module, expr) for module, expr, _ in private_uses(sources)
    )
    assert not found, "private names used across workers modules (make them public):\n" + (
        "\n".join(f"  {module}: {expr}" for module, expr in found)
    )


def test_no_workers_module_uses_a_private_name_of_backend_hooks() -> None:
    """The fleet reaches ``backend_hooks`` (the contract, the backfill's read side) through
    its public names too."""
    sources = {**backend_hooks_sources(), **_sources()}
    found = sorted(
        (module, expr)
        for module, expr, _ in private_uses(sources)
        if module.split(".")[0] == PACKAGE
    )
    assert not found, "private names of backend_hooks used in workers (make them public):\n" + (
        "\n".join(f"  {module}: {expr}" for module, expr in found)
    )


def test_the_checker_sees_a_private_name_imported_from_another_workers_module() -> None:
    sources = {
        "workers.cli.base": "def _emit(): ...\ndef emit(): ...\n",
        "workers.cli.status": "from workers.cli.base import _emit, emit\n",
        "workers.cli.replay": "from workers.cli import base\nbase._emit()\n",
    }
    assert list(private_imports(sources)) == [
        ("workers.cli.status", "from workers.cli.base import _emit")
    ]
    assert [(m, e) for m, e, _ in private_uses(sources)] == [("workers.cli.replay", "base._emit")]
