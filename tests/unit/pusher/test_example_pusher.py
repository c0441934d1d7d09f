"""The example pusher's pure parts (examples/pusher.py): the backend's frames and the
milliseconds it counts. The websocket itself:
tests/integration/end_to_end/test_example_pusher.py."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.pusher import (
    INVALID_PAYLOAD,
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
    Audio,
    BadFrame,
    Milliseconds,
    Query,
    Switch,
    parse_frame,
    parse_query,
)


def test_an_audio_frame() -> None:
    frame = struct.pack("<Id", 101, 1_790_000_000.25) + b"\x01\x02\x03\x04"
    assert parse_frame(frame) == Audio(1_790_000_000.25, b"\x01\x02\x03\x04")
    assert parse_frame(struct.pack("<Id", 101, 1.0)) == Audio(1.0, b"")  # no PCM: nothing


def test_a_switch_frame() -> None:
    assert parse_frame(struct.pack("<I", 103) + b"conv-2") == Switch("conv-2")


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        (b"", INVALID_PAYLOAD, "frame of 0 bytes"),
        (b"\x65\x00\x00", INVALID_PAYLOAD, "frame of 3 bytes"),
        (struct.pack("<I", 0), UNSUPPORTED_DATA, "unknown frame header 0"),
        (struct.pack("<I", 2**32 - 1), UNSUPPORTED_DATA, "unknown frame header 4294967295"),
        (struct.pack("<I", 101) + bytes(7), INVALID_PAYLOAD, "audio frame of 11 bytes"),
        (struct.pack("<Id", 101, float("inf")), INVALID_PAYLOAD, "not finite"),
        (struct.pack("<I", 103), INVALID_PAYLOAD, "must not be empty"),
        (struct.pack("<I", 103) + b"a{b}", INVALID_PAYLOAD, "'a{b}'"),
        (struct.pack("<I", 103) + b"\xc3", INVALID_PAYLOAD, "not UTF-8"),
    ],
)
def test_a_bad_frame(frame: bytes, code: int, reason: str) -> None:
    with pytest.raises(BadFrame, match=reason) as info:
        parse_frame(frame)
    assert info.value.code == code


def test_the_query_string() -> None:
    assert parse_query({"uid": "u", "conversation_id": "c"}) == Query("u", "c", 16000, "enhanced")
    assert parse_query(
        {"uid": "u", "conversation_id": "c", "sample_rate": "8000", "protection_level": "standard"}
    ) == Query("u", "c", 8000, "standard")
    for bad, reason in [
        ({"conversation_id": "c"}, "uid is missing"),
        ({"uid": "u"}, "conversation_id is missing"),
        ({"uid": "../u", "conversation_id": "c"}, "'..'"),
        ({"uid": "u", "conversation_id": "c", "sample_rate": "-1"}, "not Hz"),
    ]:
        with pytest.raises(BadFrame, match=reason) as info:
            parse_query(bad)
        assert info.value.code == POLICY_VIOLATION


def test_a_long_reason_is_cut_to_what_a_close_frame_holds() -> None:
    bad = BadFrame(INVALID_PAYLOAD, "é" * 100)  # 200 bytes of UTF-8
    assert len(bad.reason.encode("utf-8")) <= 123 and bad.reason == "é" * 61


@given(
    rate=st.sampled_from([8000, 12000, 16000, 24000, 48000]),
    sizes=st.lists(st.integers(min_value=0, max_value=9_999), max_size=60),
)
def test_milliseconds_add_up_to_the_pcm_pushed(rate: int, sizes: list[int]) -> None:
    counted = Milliseconds(rate)
    total = sum(counted.add(size) for size in sizes)  # odd sizes and partial ms included
    assert total == (sum(sizes) // 2) * 1000 // rate
