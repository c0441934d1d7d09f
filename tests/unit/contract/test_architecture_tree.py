"""docs/ARCHITECTURE.md's tree of ``backend_hooks/`` and ``workers/`` ("Modules and who
depends on whom") lists exactly the modules on disk: a module added, moved or removed
without the tree fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("backend_hooks", "workers")


def tree_block(markdown: str) -> str:
    """The first fenced block of the section "Modules and who depends on whom"."""
    section = markdown.split("## Modules and who depends on whom", 1)[1]
    found = re.search(r"^```\n(.*?)^```", section, re.M | re.S)
    assert found, "no tree block in the section"
    return found.group(1)


def listed_paths(block: str) -> set[str]:
    """The paths a tree names: two spaces of indent a level, a folder's name ends in /,
    anything after the name is a note."""
    paths: set[str] = set()
    stack: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        del stack[depth:]
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
            paths.add("/".join(stack) + "/")
        else:
            paths.add("/".join([*stack, name]))
    return paths


def on_disk(root: Path) -> set[str]:
    """Every module of the packages, and every folder holding modules or Lua scripts."""
    paths: set[str] = set()
    for package in PACKAGES:
        for path in (root / package).rglob("*"):
            rel = path.relative_to(root).as_posix()
            if path.suffix == ".py":
                paths.add(rel)
            elif path.is_dir() and (any(path.glob("*.py")) or any(path.glob("*.lua"))):
                paths.add(rel + "/")
        paths.add(package + "/")
    return {p for p in paths if "__pycache__" not in p}


def test_the_architecture_tree_lists_the_modules_on_disk() -> None:
    block = tree_block((ROOT / "docs" / "ARCHITECTURE.md").read_text())
    listed = listed_paths(block)
    disk = on_disk(ROOT)
    assert listed - disk == set(), "the tree names modules that are not on disk"
    assert disk - listed == set(), "modules on disk missing from the tree"


def test_the_tree_reader_sees_a_module_missing_and_one_gone(tmp_path: Path) -> None:
    (tmp_path / "backend_hooks" / "read").mkdir(parents=True)
    (tmp_path / "workers").mkdir()
    for module in ("__init__", "read/__init__", "read/reader", "read/merge"):
        (tmp_path / "backend_hooks" / f"{module}.py").write_text("")
    block = (
        "backend_hooks/     a note\n"
        "  __init__.py\n"
        "  read/            a note\n"
        "    __init__.py\n"
        "    reader.py\n"
        "    wav.py\n"
        "workers/\n"
    )
    assert on_disk(tmp_path) - listed_paths(block) == {"backend_hooks/read/merge.py"}
    assert listed_paths(block) - on_disk(tmp_path) == {"backend_hooks/read/wav.py"}
