"""The fleet's Redis Lua scripts (``workers/lua/<name>.lua``), by name; how scripts are
kept, loaded and run: backend_hooks/contract/lua_scripts.py."""

from __future__ import annotations

from backend_hooks.contract.lua_scripts import load

#: The fleet's scripts (workers/store.py runs them).
SCRIPTS = load(
    "workers",
    (
        "begin",
        "bump_quarantine_index",
        "claim",
        "claim_rechecks",
        "commit_object",
        "deletion_failed",
        "drop_intent",
        "fail",
        "finish",
        "forget",
        "hand_back",
        "hold_dispatch",
        "note_blind",
        "park",
        "quarantine",
        "read_notes",
        "recheck_done",
        "record_plan",
        "release",
        "renew",
        "replay",
        "resolve_blind",
        "schedule",
        "take",
    ),
)
