"""The Redis Lua scripts as files (backend_hooks/contract/lua_scripts.py): every file registered and
every name a file, each headed by its KEYS and ARGV, the flags lines each script had before
it was a file, the copies of a shared fragment equal, and no caller's list unpacked whole."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

import backend_hooks.contract.lua_scripts
import workers.lua_scripts
from backend_hooks.contract.entries import MAX_SEQ
from workers.store import ALLOW_OOM

ROOT = Path(__file__).resolve().parents[3]
TABLES: dict[str, Mapping[str, str]] = {
    "backend_hooks": backend_hooks.contract.lua_scripts.SCRIPTS,
    "workers": workers.lua_scripts.SCRIPTS,
}
#: Where each table's files are: the contract's folder of backend_hooks, workers'.
FOLDERS = {
    "backend_hooks": ROOT / "backend_hooks" / "contract" / "lua",
    "workers": ROOT / "workers" / "lua",
}
SCRIPTS = {
    (package, name): text for package, table in TABLES.items() for name, text in table.items()
}
#: What the fleet needs at Redis's memory limit runs there (docs/ARCHITECTURE.md, "Redis
#: memory"); the pusher's append does not (at the limit it spools or holds).
ALLOW_OOM_SCRIPTS = {
    ("backend_hooks", "schedule_recheck"),
    *(
        ("workers", name)
        for name in (
            "begin",
            "bump_quarantine_index",
            "claim",
            "claim_rechecks",
            "commit_object",
            "deletion_failed",
            "drop_intent",
            "fail",
            "finish",
            "hand_back",
            "hold_dispatch",
            "note_blind",
            "park",
            "quarantine",
            "recheck_done",
            "record_plan",
            "release",
            "renew",
            "resolve_blind",
            "schedule",
            "take",
        )
    ),
}
NO_WRITES_SCRIPTS = {("workers", "read_notes")}
SHARED = re.compile(r"^-- <shared (\w+)>.*?^-- </shared \1>$", re.MULTILINE | re.DOTALL)


def _header(text: str) -> list[str]:
    """The comment lines a script starts with (after its flags line)."""
    lines = text.splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    header = []
    for line in lines:
        if not line.startswith("--"):
            break
        header.append(line)
    return header


def _declared(header: list[str], table: str) -> tuple[list[int], bool]:
    """The numbers a header gives ``table``'s items ("-- KEYS: 1 lease, 2 plan"), and
    whether it lists more after them ("then ...")."""
    text, taking = "", False
    for line in header:
        if line.startswith(("-- KEYS:", "-- ARGV:")):
            taking = line.startswith(f"-- {table}:")
        elif not line.startswith("--       "):
            taking = False
        if taking:
            text += " " + line.removeprefix("--").strip()
    numbers = [int(n) for n in re.findall(r"(?:[:,]|\band)\s+(\d+)\s+\S", text)]
    return numbers, " then " in text


@pytest.mark.parametrize("package", sorted(TABLES))
def test_every_script_file_is_registered_and_every_name_has_a_file(package: str) -> None:
    files = {path.stem for path in FOLDERS[package].glob("*.lua")}
    assert files == set(TABLES[package])
    for name, text in TABLES[package].items():
        assert text == (FOLDERS[package] / f"{name}.lua").read_text(encoding="utf-8")


@pytest.mark.parametrize(("package", "name"), sorted(SCRIPTS))
def test_every_script_is_headed_by_its_keys_and_argv(package: str, name: str) -> None:
    text = SCRIPTS[package, name]
    header = _header(text)
    assert any(line.startswith("-- KEYS: ") for line in header), f"{name}: no KEYS line"
    assert any(line.startswith("-- ARGV: ") for line in header), f"{name}: no ARGV line"
    code = "\n".join(text.splitlines()[len(header) :])
    for table in ("KEYS", "ARGV"):
        numbers, more = _declared(header, table)
        assert numbers == list(range(1, len(numbers) + 1)), f"{name}: {table} {numbers}"
        used = {int(i) for i in re.findall(rf"{table}\[(\d+)\]", code)}
        if table == "KEYS" or not more:
            assert used <= set(numbers), f"{name}: {table} {sorted(used)} declared {numbers}"
        if table == "KEYS":  # a script with flags must declare every key it touches
            assert used == set(numbers), f"{name}: KEYS {sorted(used)} declared {numbers}"


@pytest.mark.parametrize(("package", "name"), sorted(SCRIPTS))
def test_each_script_keeps_its_flags_line(package: str, name: str) -> None:
    assert "\r" not in SCRIPTS[package, name]  # LF line ends (.gitattributes)
    lines = SCRIPTS[package, name].splitlines()
    flags = lines[0] if lines[0].startswith("#!") else None
    if (package, name) in ALLOW_OOM_SCRIPTS:
        assert flags == ALLOW_OOM.rstrip("\n")
    elif (package, name) in NO_WRITES_SCRIPTS:
        assert flags == "#!lua flags=no-writes"
    else:
        assert flags is None
    assert not any(line.startswith("#!") for line in lines[1:])


def test_every_copy_of_a_shared_fragment_is_the_same() -> None:
    copies: dict[str, set[str]] = {}
    count: dict[str, int] = {}
    for text in SCRIPTS.values():
        for match in SHARED.finditer(text):
            copies.setdefault(match.group(1), set()).add(match.group(0))
            count[match.group(1)] = count.get(match.group(1), 0) + 1
        opened = re.findall(r"^-- <shared (\w+)>", text, re.MULTILINE)
        closed = re.findall(r"^-- </shared (\w+)>", text, re.MULTILINE)
        assert opened == closed
    assert {"fence", "move", "now_ms", "call_in_chunks"} <= set(copies)
    for fragment, texts in copies.items():
        assert len(texts) == 1, f"the copies of fragment {fragment} differ"
        assert count[fragment] >= 2, f"fragment {fragment} is not shared"


def test_the_commit_script_checks_seqs_against_max_seq() -> None:
    text = SCRIPTS["workers", "commit_object"]
    assert re.findall(r"^local MAX_SEQ = (\d+)\b", text, re.MULTILINE) == [str(MAX_SEQ)]


def test_no_script_unpacks_a_callers_list_whole() -> None:
    """``unpack`` of ARGV only in ``call_in_chunks`` (at most 1000 a call) or of one entry's
    fields (the append's: an XADD takes them at once); other unpacks are of one stream
    entry's fields read back (the quarantine move, the replay)."""
    for (package, name), text in SCRIPTS.items():
        outside = SHARED.sub("", text)
        for line in outside.splitlines():
            if "unpack(ARGV" in line:
                assert (package, name) == ("backend_hooks", "append"), f"{name}: {line}"
                assert "unpack(ARGV, pos + 1, pos + 2 * count)" in line
            elif "unpack(" in line:
                assert "unpack(out)" in line, f"{name}: {line}"
