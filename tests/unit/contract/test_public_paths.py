"""The public paths at the top of ``backend_hooks`` stay what callers, the chart and the
runbook name, now that the modules live in folders by role: ``backend_hooks.settings``,
``backend_hooks.usage`` (every public name of the moved module, the same object), and
``python -m backend_hooks.spool_cli``."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]

#: public path -> the module it re-exports
REEXPORTS = {
    "backend_hooks.settings": "backend_hooks.contract.settings",
    "backend_hooks.usage": "backend_hooks.pusher.usage",
    "backend_hooks.spool_cli": "backend_hooks.pusher.spool_cli",
}


def _public_definitions(module: ModuleType) -> set[str]:
    """The public names ``module`` defines at its top (its logger aside)."""
    assert module.__file__
    names: set[str] = set()
    for node in ast.parse(Path(module.__file__).read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_") and name != "log"}


@pytest.mark.parametrize(("public", "moved"), sorted(REEXPORTS.items()))
def test_a_public_path_names_every_public_name_of_its_module(public: str, moved: str) -> None:
    face, module = importlib.import_module(public), importlib.import_module(moved)
    names = _public_definitions(module)
    assert names
    assert {n for n in names if getattr(face, n, None) is not getattr(module, n)} == set()


def test_the_settings_tables_the_docs_name_are_on_the_public_path() -> None:
    from backend_hooks import settings

    assert "fleet" in settings.ROLE_VARIABLES
    assert settings.VARIABLES


def test_the_spool_command_runs_from_its_public_path() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "backend_hooks.spool_cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m backend_hooks.spool_cli")
    assert "drain" in done.stdout
