"""The Dockerfile's facts that matter, checked against the project (no image can be built
here): a slim Python base that requires-python allows, extras that exist (the fleet's
pulling no opuslib, the pusher tools' and backfill's with libopus), a numeric non-root
user, exec-form entry points that name the real Celery app, queues and spool CLI, and a
build context (.dockerignore, COPY) from which the wheel builds."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TARGETS = ("fleet", "pusher-tools", "backfill")


@dataclass
class Stage:
    name: str
    base: str
    parent: Stage | None
    own: list[tuple[str, str]] = field(default_factory=list)

    def instructions(self) -> list[tuple[str, str]]:
        """Its instructions after those of the stage it is built FROM."""
        return (self.parent.instructions() if self.parent else []) + self.own

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions() if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return out


def _stages() -> dict[str, Stage]:
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in _instructions((ROOT / "Dockerfile").read_text()):
        if keyword == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            base, _, name = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], rest).partition(" AS ")
            current = Stage(name.strip(), base.strip(), stages.get(base.strip()))
            stages[current.name] = current
        else:
            assert current is not None, f"{keyword} before FROM"
            current.own.append((keyword, rest))
    return stages


STAGES = _stages()


def _exec_form(stage: Stage, keyword: str) -> list[str]:
    value = json.loads(stage.last(keyword))  # the shell form is not JSON: no shell needed
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), value
    return value


def _installed_requirements(stage: Stage) -> list[Requirement]:
    """The project requirements (``audiosync[...]`` or ``.[...]``) its pip commands name."""
    found = []
    for run in stage.all("RUN"):
        for command in run.split("&&"):
            words = shlex.split(command)
            if "pip" not in words or not {"install", "wheel"} & set(words):
                continue
            for word in words:
                if word.startswith(".["):
                    found.append(Requirement("audiosync" + word[1:]))
                elif canonicalize_name(re.split(r"[\[<>=!~ ]", word)[0]) == "audiosync":
                    found.append(Requirement(word))
    return found


def _distributions(extras: set[str]) -> set[str]:
    """Every distribution ``audiosync[extras]`` requires, its own extras followed."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    names: set[str] = {
        canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]
    }
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in map(Requirement, optional[extra]):
            if canonicalize_name(requirement.name) == "audiosync":
                todo += requirement.extras
            else:
                names.add(canonicalize_name(requirement.name))
    return names


def _extras(stage: Stage) -> set[str]:
    requirements = _installed_requirements(stage)
    assert requirements, f"stage {stage.name} installs no audiosync"
    return set().union(*(r.extras for r in requirements))


def _apt_packages(stage: Stage) -> set[str]:
    packages: set[str] = set()
    for run in stage.all("RUN"):
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                packages.update(w for w in words[2:] if not w.startswith("-"))
    return packages


def test_the_targets_exist_and_the_default_one_is_the_fleet() -> None:
    assert set(TARGETS) <= set(STAGES)
    assert list(STAGES)[-1] == "fleet"  # `docker build .` without --target


def test_the_base_is_a_slim_python_pinned_by_tag_that_requires_python_allows() -> None:
    bases = {s.base for s in STAGES.values() if s.parent is None}
    assert len(bases) == 1, bases  # one Python for building and running
    (base,) = bases
    match = re.fullmatch(r"python:(\d+\.\d+)(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base)
    assert match, f"{base}: not a slim Python image pinned by its version tag"
    allowed = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert allowed.contains(match[1] + (match[2] or ".0")), (base, allowed)
    assert PYPROJECT["tool"]["mypy"]["python_version"] == match[1]  # checked for that Python


@pytest.mark.parametrize("stage", ["build", *TARGETS])
def test_the_extras_installed_exist_in_pyproject(stage: str) -> None:
    assert _extras(STAGES[stage]) <= set(PYPROJECT["project"]["optional-dependencies"])


def test_the_fleet_image_has_no_opus() -> None:
    fleet = STAGES["fleet"]
    assert _extras(fleet) == {"fleet"}
    assert "opuslib" not in _distributions(_extras(fleet))
    assert not {p for p in _apt_packages(fleet) if "opus" in p}


@pytest.mark.parametrize(("stage", "extra"), [("pusher-tools", "pusher"), ("backfill", "reader")])
def test_the_images_that_code_opus_have_opuslib_and_libopus(stage: str, extra: str) -> None:
    assert extra in _extras(STAGES[stage])
    assert "opuslib" in _distributions(_extras(STAGES[stage]))
    assert "libopus0" in _apt_packages(STAGES[stage])


@pytest.mark.parametrize("stage", TARGETS)
def test_the_images_run_as_a_numeric_non_root_user(stage: str) -> None:
    user = STAGES[stage].last("USER")
    assert re.fullmatch(r"\d+(:\d+)?", user), f"{user}: not numeric (runAsNonRoot needs it)"
    assert all(int(part) != 0 for part in user.split(":")), user


@pytest.mark.parametrize("stage", TARGETS)
def test_python_writes_no_bytecode_and_no_buffered_output(stage: str) -> None:
    env: dict[str, str] = {}
    for line in STAGES[stage].all("ENV"):
        env.update(word.split("=", 1) for word in shlex.split(line))  # type: ignore[misc]
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def _celery_queue(stage: Stage) -> tuple[Any, str]:
    """The Celery app its ENTRYPOINT names, and the one queue its CMD's worker consumes."""
    entrypoint, cmd = _exec_form(stage, "ENTRYPOINT"), _exec_form(stage, "CMD")
    assert entrypoint[:2] == ["celery", "-A"]
    scripts = metadata.entry_points(group="console_scripts", name="celery")
    assert {canonicalize_name(s.dist.name) for s in scripts if s.dist} & _distributions(
        _extras(stage)
    ), f"the extras of {stage.name} install no `celery` command"
    from celery import Celery

    app = getattr(__import__(entrypoint[2]), "app", None)
    assert isinstance(app, Celery), f"-A {entrypoint[2]}: no Celery app"
    assert cmd[0] == "worker"
    (queue,) = [a.split("=", 1)[1] for a in cmd if a.startswith("--queues=")]
    return app, queue


def test_the_fleet_entry_point_is_the_celery_app_on_its_queue() -> None:
    app, queue = _celery_queue(STAGES["fleet"])
    assert queue == app.conf.task_default_queue


def test_the_backfill_entry_point_is_a_worker_of_the_backfill_queue() -> None:
    from workers.tasks import BACKFILL_QUEUE

    app, queue = _celery_queue(STAGES["backfill"])
    assert queue == BACKFILL_QUEUE
    assert app.amqp.router.route({}, "audiosync.backfill_conversation")["queue"].name == queue


def test_the_pusher_tools_entry_point_is_the_spool_cli() -> None:
    tools = STAGES["pusher-tools"]
    entrypoint, cmd = _exec_form(tools, "ENTRYPOINT"), _exec_form(tools, "CMD")
    assert entrypoint[:2] == ["python", "-m"]
    spec = util.find_spec(entrypoint[2])
    assert spec is not None and spec.origin, entrypoint
    assert 'if __name__ == "__main__":' in Path(spec.origin).read_text()
    module = __import__(entrypoint[2], fromlist=["main"])
    usage = io.StringIO()
    with contextlib.redirect_stdout(usage), pytest.raises(SystemExit):
        module.main(["--help"])
    assert re.search(r"\{[a-z,]*\b" + re.escape(cmd[0]) + r"\b", usage.getvalue()), (
        f"{entrypoint} has no command {cmd[0]!r}"
    )


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore's rule: the last pattern matching the path or one of its parents wins
    (``!`` re-includes); ``*`` stays within a path segment, ``**`` crosses them."""
    parts = path.split("/")
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def test_the_wheel_builds_from_what_the_build_stage_copies(tmp_path: Path) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    context = tmp_path / "context"
    build = STAGES["build"]
    for copy in build.all("COPY"):
        *sources, _destination = shlex.split(copy)
        assert not any(s.startswith("--") for s in sources), copy
        for source in sources:
            here = ROOT / source
            assert here.exists(), f"COPY {source}: no such file in the repository"
            files = [here] if here.is_file() else [p for p in here.rglob("*") if p.is_file()]
            kept = [f for f in files if not _ignored(str(f.relative_to(ROOT)), patterns)]
            assert kept, f"COPY {source}: .dockerignore leaves it out of the build context"
            for f in kept:
                inside = context / f.relative_to(ROOT)
                inside.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, inside)
    packages = [p.replace(".", "/") for p in PYPROJECT["tool"]["setuptools"]["packages"]]
    for name in packages + PYPROJECT["project"].get("license-files", []):
        assert (context / name).exists(), f"the build stage does not copy {name}"
    out = tmp_path / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("audiosync-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {n.split("/")[0] for n in archive.namelist() if ".dist-info/" not in n}
    assert top == {p.split(".")[0] for p in PYPROJECT["tool"]["setuptools"]["packages"]}
