"""backend_hooks.pusher.spool_format: round trip, and every damaged file is a FormatError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend_hooks.contract.entries import KIND_CHUNK, KIND_END, NewEntry
from backend_hooks.contract.errors import FormatError
from backend_hooks.pusher.spool_format import SpoolRecord, decode, encode

CHUNK = NewEntry(
    kind=KIND_CHUNK,
    uid="user-1",
    cid="conv-1",
    enq_us=1_764_633_600_000_000,
    level="enhanced",
    rate=16000,
    seq=7,
    start_us=1_764_633_595_000_000,
    samples=80000,
    data=b"\x00sealed bytes" * 10,
)
RECORD = SpoolRecord(session_id="a" * 32, shard=5, n=12, urgent=False, entry=CHUNK)


def test_round_trip_of_a_chunk_and_an_end() -> None:
    assert decode(encode(RECORD)) == RECORD
    end = SpoolRecord(
        session_id="s",
        shard=0,
        n=13,
        urgent=True,
        entry=NewEntry(kind=KIND_END, uid="u", cid="c", enq_us=5),
    )
    assert decode(encode(end)) == end


@given(
    st.text(min_size=1, max_size=40),
    st.integers(0, 4095),
    st.integers(0, 2**40),
    st.booleans(),
    st.binary(max_size=2000),
    st.integers(0, 2**21),
)
def test_round_trip_property(
    session_id: str, shard: int, n: int, urgent: bool, data: bytes, seq: int
) -> None:
    entry = NewEntry(
        kind=KIND_CHUNK,
        uid="u",
        cid="c",
        enq_us=1,
        level="standard",
        rate=8000,
        seq=seq,
        start_us=-3,
        samples=4,
        data=data,
    )
    record = SpoolRecord(session_id=session_id, shard=shard, n=n, urgent=urgent, entry=entry)
    assert decode(encode(record)) == record


def test_every_truncation_is_refused() -> None:
    data = encode(RECORD)
    for size in range(len(data)):
        with pytest.raises(FormatError):
            decode(data[:size])


def test_every_flipped_byte_is_refused() -> None:
    data = encode(RECORD)
    for pos in range(len(data)):
        damaged = bytearray(data)
        damaged[pos] ^= 0x01
        with pytest.raises(FormatError):
            decode(bytes(damaged))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"XXXX" + d[4:], "not a spool file"),
        (lambda d: d[:4] + b"\x02" + d[5:], "version 2"),
        (lambda d: d + b"extra", "torn write"),
        (lambda d: d[:5] + struct.pack(">I", 0) + d[9:], "CRC-32"),
    ],
)
def test_foreign_or_damaged_files(mutate: object, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decode(mutate(encode(RECORD)))  # type: ignore[operator]
