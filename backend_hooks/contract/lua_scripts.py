"""The Redis Lua scripts, one ``.lua`` file each, registered by name.

A package's scripts live in its ``lua/`` folder (``backend_hooks/contract/lua``: the pusher's append
and the scripts the reader and the fleet share; ``workers/lua``: the fleet's), shipped in
the wheel as package data, and are listed in one table per package (``SCRIPTS`` here and in
``workers.lua_scripts``): name -> the file's text, read once at import. A file's text is
exactly what Redis runs: ``redis_store.run_script`` sends its SHA1 (``EVALSHA``) and, on a
node that lacks it, the text itself (``EVAL``).

Each file starts with its flags line where it has one (``#!lua flags=allow-oom``: the
script runs at Redis's memory limit; it must stay the first line), then a comment block
stating its ``KEYS`` and ``ARGV``.

A fragment several scripts need (the lease fence, the quarantine move, ...) is written out
in each of them between ``-- <shared NAME>`` and ``-- </shared NAME>`` lines: no assembly
at load time, so each file runs as it reads, and tests/unit/fleet/test_lua_scripts.py pins every
copy of a fragment equal.

A script never unpacks a caller's list of any length into one command: Lua's ``unpack``
returns at most what its C stack holds (LUAI_MAXCSTACK, 8000 values), so such a list goes
in chunks (the ``call_in_chunks`` fragment). One stream entry's fields are unpacked whole
(an ``XADD`` takes them all at once): there are a handful.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from types import MappingProxyType


def load(package: str, names: Iterable[str]) -> Mapping[str, str]:
    """``package``'s scripts ``lua/<name>.lua``, by name (read-only)."""
    folder = resources.files(package) / "lua"
    return MappingProxyType(
        {name: (folder / f"{name}.lua").read_text(encoding="utf-8") for name in names}
    )


#: The pusher's append and the deleted conversations' re-check (reader and fleet).
SCRIPTS = load("backend_hooks.contract", ("append", "schedule_recheck"))
