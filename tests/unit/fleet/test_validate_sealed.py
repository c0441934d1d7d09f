"""The fleet's check of a sealed entry (workers/validate.py): a v1 record's cleartext
header must match the entry's own fields, or the entry is quarantined with the reason;
a legacy v0 record (no header) is still accepted, exactly one per chunk, unless the
session's pusher seals v1 (its ``:appended`` mark, or v1 records in the same read).
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from backend_hooks.contract import container, envelope
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.entries import (
    ENHANCED,
    KIND_CHUNK,
    STANDARD,
    BadEntry,
    ChunkEntry,
    Entry,
    NewEntry,
)
from workers.validate import Limits, foreign_v0_entries, v1_session_sign, validate_entry

KEYS = envelope.UserKeys(b"validate-sealed-secret-0123456789abcdef")
UID = "fleet-user"
RATE = 8000
SAMPLES = 1600
SESSION, OTHER_SESSION = "a" * 32, "b" * 32
NOW_US = int(time.time()) * 1_000_000
INFO = container.ChunkInfo(SESSION, 3, NOW_US, RATE, SAMPLES)


def plain(chunk: container.ChunkInfo) -> bytes:
    encoder = ChunkEncoder(RATE)
    return container.build_chunk(chunk, encoder.encode(bytes(2 * SAMPLES)), encoder.pre_skip)


def fields(
    data: bytes, *, rate: int = RATE, seq: int = 3, start_us: int = NOW_US, samples: int = SAMPLES
) -> dict[bytes, bytes]:
    """The raw fields of an enhanced chunk entry carrying ``data``."""
    new = NewEntry(
        kind=KIND_CHUNK,
        uid=UID,
        cid="conv",
        enq_us=NOW_US,
        level=ENHANCED,
        rate=rate,
        seq=seq,
        start_us=start_us,
        samples=samples,
        data=data,
    )
    return {
        k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in new.fields().items()
    }


SEALED_NOW = envelope.seal(KEYS, UID, INFO, plain(INFO))
ENTRY_ID = f"{NOW_US // 1000}-0".encode()
LIMITS = Limits(timestamp_window_seconds=3600)


def test_the_fleet_accepts_a_v1_record_whose_header_matches_the_entry() -> None:
    raw = fields(SEALED_NOW)
    assert isinstance(validate_entry(SESSION, ENTRY_ID, raw, LIMITS), ChunkEntry)


@pytest.mark.parametrize(
    ("session", "overrides"),
    [
        pytest.param(OTHER_SESSION, {}, id="another-session"),
        pytest.param(SESSION, {"seq": 4}, id="seq"),
        pytest.param(SESSION, {"start_us": NOW_US + 5_000_000}, id="start_us"),
        pytest.param(SESSION, {"samples": SAMPLES - 1}, id="samples"),
        pytest.param(SESSION, {"rate": 16000}, id="rate"),
    ],
)
def test_the_fleet_quarantines_a_sealed_entry_whose_header_disagrees(
    session: str, overrides: dict[str, int]
) -> None:
    raw = fields(SEALED_NOW, **overrides)
    verdict = validate_entry(session, ENTRY_ID, raw, LIMITS)
    assert isinstance(verdict, BadEntry)
    assert "the sealed record's header (session, seq, start_us, samples, rate)" in verdict.reason


def test_the_fleet_still_accepts_exactly_one_v0_record() -> None:
    v0 = envelope.seal_v0(KEYS.cipher(UID), plain(INFO))
    assert isinstance(validate_entry(SESSION, ENTRY_ID, fields(v0), LIMITS), ChunkEntry)
    two = validate_entry(SESSION, ENTRY_ID, fields(v0 + v0), LIMITS)
    assert isinstance(two, BadEntry) and "2 sealed records" in two.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"\x02" + SEALED_NOW[1:], "unknown envelope version byte 0x02", id="version"),
        pytest.param(SEALED_NOW[:-1], "truncated", id="truncated"),
        pytest.param(SEALED_NOW + SEALED_NOW, "2 sealed records", id="two-v1-records"),
    ],
)
def test_the_fleet_quarantines_sealed_data_it_cannot_frame(data: bytes, reason: str) -> None:
    verdict = validate_entry(SESSION, ENTRY_ID, fields(data), LIMITS)
    assert isinstance(verdict, BadEntry) and reason in verdict.reason


def _chunk(data: bytes, seq: int, level: str = ENHANCED) -> ChunkEntry:
    entry_id = f"{NOW_US // 1000}-{seq}".encode()
    entry = validate_entry(SESSION, entry_id, fields(data, seq=seq), LIMITS)
    assert isinstance(entry, ChunkEntry)
    return entry if level == ENHANCED else replace(entry, level=level, data=plain(INFO))


@pytest.mark.parametrize(
    ("appended_mark", "v1_in_the_read", "foreign"),
    [
        pytest.param(False, False, False, id="an-older-pushers-stream"),
        pytest.param(True, False, True, id="the-appended-mark"),
        pytest.param(False, True, True, id="v1-records-in-the-read"),
        pytest.param(True, True, True, id="both"),
    ],
)
def test_a_v0_chunk_is_foreign_in_a_session_whose_pusher_seals_v1(
    appended_mark: bool, v1_in_the_read: bool, foreign: bool
) -> None:
    v0 = _chunk(envelope.seal_v0(KEYS.cipher(UID), plain(INFO)), seq=3)
    v1 = _chunk(envelope.seal(KEYS, UID, replace(INFO, seq=4), plain(replace(INFO, seq=4))), 4)
    entries: list[Entry] = [v0, v1] if v1_in_the_read else [v0]
    bad = foreign_v0_entries(entries, v1_session_sign(appended_mark, entries))
    assert [b.entry_id for b in bad] == ([v0.entry_id] if foreign else [])
    assert all("an envelope v0 record in a session whose pusher seals v1" in b.reason for b in bad)


def test_standard_chunks_are_neither_v0_nor_a_sign_of_v1() -> None:
    standard = _chunk(SEALED_NOW, seq=3, level=STANDARD)
    assert v1_session_sign(False, [standard]) is None
    assert foreign_v0_entries([standard], v1_session_sign(True, [standard])) == []
