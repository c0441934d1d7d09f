"""The wheel, installed as an adopter installs it: it ships the roles' packages only
(``backend_hooks``, ``workers``: no development harness, no top-level ``celeryconfig`` to
clash with the adopter's own), typed and licensed, and ``celery -A workers
worker|beat|flower`` and the ``audiosync`` command run from it, outside the checkout.

The wheel is built from a copy of the source tree (build artefacts left out: setuptools
would ship stale files of an earlier build) and installed with ``--no-deps`` into a fresh
venv under the test's temporary directory, whose dependencies come from this venv's
site-packages (added as a plain path: its ``.pth`` files, which put the checkout on the
path, are not read).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from audiosync_dev.localstack import StackInfo, free_port
from audiosync_dev.processes import CeleryProcess
from backend_hooks.contract.lua_scripts import SCRIPTS as SHARED_SCRIPTS
from tests.integration.commands import ROOT
from workers.lua_scripts import SCRIPTS as FLEET_SCRIPTS
from workers.store import WorkerStore

pytestmark = pytest.mark.integration
SHIPPED_PACKAGES = {"backend_hooks", "workers"}
BUILD_LEFTOVERS = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "demo-out", "celerybeat-schedule*",
)  # fmt: skip


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: str  # the fresh venv's interpreter
    site: Path  # its site-packages
    home: Path  # a working directory outside the checkout


def _run(
    args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(ROOT, source, ignore=BUILD_LEFTOVERS)
    out = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)])
    (wheel,) = out.glob("audiosync-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / "bin" / "python")
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .stdout.strip())  # fmt: skip
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
          "--no-index", "-q", str(wheel)])  # fmt: skip
    home = root / "home"
    home.mkdir()
    yield Installed(wheel, python, site, home)


def test_the_wheel_ships_the_roles_packages_typed_and_licensed(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == SHIPPED_PACKAGES | {info}
    for package in SHIPPED_PACKAGES:
        assert f"{package}/py.typed" in names
        for path in (ROOT / package).rglob("*.py"):  # subpackages (workers/cli/) included
            assert path.relative_to(ROOT).as_posix() in names
    assert "License-Expression: MIT" in metadata.splitlines()
    assert f"{info}/licenses/LICENSE" in names
    assert "audiosync = workers.cli:audiosync" in entry_points


def test_the_installed_wheel_has_no_dev_harness_nor_a_top_level_celeryconfig(
    installed: Installed, stack: StackInfo
) -> None:
    code = (
        "import importlib.util\n"
        "import backend_hooks, workers\n"
        "for module in (backend_hooks, workers):\n"
        f"    assert module.__file__.startswith({str(installed.site)!r}), module.__file__\n"
        "for name in ('audiosync_dev', 'celeryconfig'):\n"
        "    assert importlib.util.find_spec(name) is None, name\n"
        "from workers import app\n"
        "app.loader.import_default_modules()\n"
        "assert app.conf.task_default_queue == 'audiosync'\n"
        "assert 'audiosync-sweep' in app.conf.beat_schedule\n"
        "assert 'audiosync.flush_shard' in app.tasks\n"
    )
    _run([installed.python, "-c", code], cwd=installed.home, env=_env(stack))
    version = _run([installed.python, "-m", "celery", "-A", "workers", "audiosync", "--version"],
                   cwd=installed.home, env=_env(stack))  # fmt: skip
    assert version.stdout.startswith("audiosync ")


def test_worker_beat_and_flower_start_from_the_installed_wheel(
    installed: Installed, stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    roles = {
        "worker": (
            ["worker", "--loglevel=INFO", "--concurrency=1", "--hostname=wheel@%h",
             "--without-gossip", "--without-mingle"],
            " ready.",
        ),
        "beat": (["beat", "--loglevel=INFO", f"--schedule={tmp_path / 'schedule'}"],
                 "beat: Starting"),
        "flower": (["flower", "--address=127.0.0.1", f"--port={free_port()}"], "Visit me at"),
    }  # fmt: skip
    with contextlib.ExitStack() as running:
        for name, (args, ready) in roles.items():
            process = CeleryProcess(
                name, args, _env(stack), tmp_path / f"{name}.log",
                python=installed.python, cwd=installed.home,
            )  # fmt: skip
            running.enter_context(process.start(ready))


def test_the_installed_wheel_ships_and_runs_the_lua_scripts(
    installed: Installed, stack: StackInfo, redis_client: redis.Redis
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        shipped = {n for n in wheel.namelist() if n.endswith(".lua")}
    checkout = {
        f"{folder}/lua/{name}.lua"
        for folder, table in (
            ("backend_hooks/contract", SHARED_SCRIPTS),
            ("workers", FLEET_SCRIPTS),
        )
        for name in table
    }
    assert shipped == checkout
    code = (
        "import json, sys, redis\n"
        "import backend_hooks.contract.lua_scripts, workers.lua_scripts\n"
        "from workers.store import WorkerStore\n"
        "tables = {'backend_hooks': backend_hooks.contract.lua_scripts.SCRIPTS,\n"
        "          'workers': workers.lua_scripts.SCRIPTS}\n"
        "store = WorkerStore(redis.Redis.from_url(sys.argv[1]), 1)\n"
        "took = store.acquire_lease('wheel-session', 'wheel-token', 60)\n"
        "files = [backend_hooks.contract.lua_scripts.__file__, workers.lua_scripts.__file__]\n"
        "scripts = {p: dict(t) for p, t in tables.items()}\n"
        "print(json.dumps({'took': took, 'scripts': scripts, 'files': files}))\n"
    )
    run = _run([installed.python, "-c", code, stack.redis_url], cwd=installed.home, env=_env(stack))
    out = json.loads(run.stdout)
    assert all(file.startswith(str(installed.site)) for file in out["files"]), out["files"]
    assert out["scripts"] == {"backend_hooks": dict(SHARED_SCRIPTS), "workers": dict(FLEET_SCRIPTS)}
    assert out["took"] is True
    lease = WorkerStore(redis_client, 1).keys("wheel-session").lease
    assert redis_client.get(lease) == b"wheel-token"


def _env(stack: StackInfo) -> dict[str, str]:
    """The local stack's settings, and nothing that would put the checkout on the path (an
    empty PYTHONPATH is no path)."""
    return {**os.environ, **stack.env(), "PYTHONPATH": ""}
