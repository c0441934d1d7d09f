"""Reading sealed v1 objects: the checks after opening, placement by authenticated time,
missing chunks reported.

Pure: real Ogg Opus chunks sealed in memory and the reader's pure functions
(``storage.sealed_segments``, ``storage.edge_suspects``, ``merge_segments``); the same
against the real bucket is tests/integration/end_to_end/test_sealing.py.
"""

from __future__ import annotations

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import storage
from backend_hooks.contract import container, envelope, naming
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.errors import FormatError, SplicedRecordError
from backend_hooks.read.merge import MergedAudio, MissingChunks, merge_segments

SECRET = b"sealed-read-secret-0123456789abcdef"
UID = "reader-user"
RATE = 8000
SAMPLES = 1600  # 0.2 s a chunk: real Opus, quick
SESSION = "a" * 32
OTHER_SESSION = "b" * 32
T0 = 1_700_000_000_000_000
KEYS = envelope.UserKeys(SECRET)


def info(seq: int, session: str = SESSION) -> container.ChunkInfo:
    return container.ChunkInfo(session, seq, T0 + seq * SAMPLES * 125, RATE, SAMPLES)


def plain(chunk: container.ChunkInfo) -> bytes:
    encoder = ChunkEncoder(RATE)
    pcm = speech_like(SAMPLES / RATE, RATE, seed=chunk.seq + 100 * (chunk.session_id == SESSION))
    return container.build_chunk(chunk, encoder.encode(pcm), encoder.pre_skip)


def record(chunk: container.ChunkInfo) -> bytes:
    return envelope.seal(KEYS, UID, chunk, plain(chunk))


RECORDS = [record(info(seq)) for seq in range(6)]


def name_of(records: list[bytes], seqs: range | list[int]) -> naming.ObjectName:
    """The name the fleet gives an object of chunks ``seqs`` (min start - max end)."""
    chunks = [info(s) for s in seqs]
    return naming.parse_object_name(
        naming.object_name(
            UID,
            "conv",
            start_us=min(c.start_us for c in chunks),
            end_us=max(c.end_us for c in chunks),
            sealed=True,
            data=b"".join(records),
        )
    )


def read(objects: list[tuple[naming.ObjectName, bytes]]) -> MergedAudio:
    """What download_merged_audio does with these objects' bytes."""
    segments, suspects = [], []
    for name, data in objects:
        segs = storage.sealed_segments(name, envelope.open_records(KEYS, UID, data, name=name.path))
        segments += segs
        suspects += storage.edge_suspects(name, segs)
    return merge_segments(segments, suspects=suspects)


WHOLE = name_of(RECORDS, range(6))


def test_a_whole_object_reads_every_chunk_and_misses_nothing() -> None:
    merged = read([(WHOLE, b"".join(RECORDS))])
    assert merged.start_us == T0 and merged.sample_rate == RATE
    assert merged.sample_count == 6 * SAMPLES
    assert merged.missing == ()


def test_a_dropped_record_is_reported() -> None:
    data = b"".join(RECORDS[:2] + RECORDS[3:])
    merged = read([(WHOLE, data)])
    assert merged.missing == (
        MissingChunks(SESSION, 2, 2, info(1).end_us, info(3).start_us, "sequence"),
    )
    assert merged.sample_count == 6 * SAMPLES  # the hole is filled with zeros, and said


def test_a_dropped_last_record_is_found_by_the_object_name() -> None:
    merged = read([(WHOLE, b"".join(RECORDS[:5]))])
    assert merged.missing == (
        MissingChunks(SESSION, 5, None, info(4).end_us, WHOLE.end_us or 0, WHOLE.path),
    )
    assert merged.sample_count == 5 * SAMPLES  # nothing after the end to place it against


def test_a_dropped_first_record_is_found_by_the_object_name() -> None:
    merged = read([(WHOLE, b"".join(RECORDS[1:]))])
    assert merged.missing == (
        MissingChunks(SESSION, None, 0, WHOLE.start_us, info(1).start_us, WHOLE.path),
    )


def test_a_dropped_object_between_two_others_is_reported() -> None:
    objects = [
        (name_of(RECORDS[a:b], range(a, b)), b"".join(RECORDS[a:b])) for a, b in ((0, 2), (4, 6))
    ]
    merged = read(objects)
    assert merged.missing == (
        MissingChunks(SESSION, 2, 3, info(1).end_us, info(4).start_us, "sequence"),
    )


def test_a_dropped_tail_record_followed_by_another_object_is_reported_once() -> None:
    first, second = name_of(RECORDS[:3], range(3)), name_of(RECORDS[3:], range(3, 6))
    merged = read([(first, b"".join(RECORDS[:2])), (second, b"".join(RECORDS[3:]))])
    assert merged.missing == (
        MissingChunks(SESSION, 2, 2, info(1).end_us, info(3).start_us, "sequence"),
    )


def test_swapped_records_are_placed_by_their_authenticated_time() -> None:
    swapped = [RECORDS[0], RECORDS[3], RECORDS[2], RECORDS[1], RECORDS[5], RECORDS[4]]
    assert read([(WHOLE, b"".join(swapped))]) == read([(WHOLE, b"".join(RECORDS))])


def test_a_record_of_another_session_spliced_in_is_refused() -> None:
    stranger = record(info(3, OTHER_SESSION))  # same user, same key: it authenticates
    data = b"".join([*RECORDS[:3], stranger, *RECORDS[4:]])
    with pytest.raises(
        SplicedRecordError, match=rf"{WHOLE.path}: sealed record 3 is of session b+.*spliced"
    ):
        read([(WHOLE, data)])


def test_a_plaintext_chunk_that_disagrees_with_its_header_is_refused() -> None:
    # a pusher bug (or a key holder) sealing chunk 2's container under chunk 3's header
    lying = envelope.seal(KEYS, UID, info(3), plain(info(2)))
    data = b"".join([*RECORDS[:3], lying, *RECORDS[4:]])
    with pytest.raises(FormatError, match=rf"{WHOLE.path}: sealed record 3: its chunk says"):
        read([(WHOLE, data)])


def test_a_record_holding_two_chunks_is_refused() -> None:
    two = envelope.seal(KEYS, UID, info(0), plain(info(0)) + plain(info(1)))
    with pytest.raises(FormatError, match="sealed record 0: holds 2 chunks"):
        read([(WHOLE, two)])


def test_v0_records_of_an_older_pusher_still_read_as_one_payload() -> None:
    cipher = KEYS.cipher(UID)
    data = b"".join(envelope.seal_v0(cipher, plain(info(s))) for s in range(6))
    assert read([(WHOLE, data)]).sample_count == 6 * SAMPLES


def forged_v0(chunk: container.ChunkInfo) -> bytes:
    """A v0 record of the same user (it opens with the user's key) holding other audio
    for ``chunk``: v0 authenticates neither the chunk's place nor its session."""
    encoder = ChunkEncoder(RATE)
    other = speech_like(SAMPLES / RATE, RATE, seed=999)
    return envelope.seal_v0(
        KEYS.cipher(UID), container.build_chunk(chunk, encoder.encode(other), encoder.pre_skip)
    )


@pytest.mark.parametrize(
    ("position", "index"),
    [pytest.param(6, 6, id="appended"), pytest.param(0, 0, id="prepended")],
)
def test_a_v0_record_spliced_into_an_object_of_v1_records_is_refused(
    position: int, index: int
) -> None:
    """The pusher seals every chunk of a new object as v1, so a v0 record among v1 ones
    was written in by someone else. Read as it was, the prepended one replaced chunk 2's
    audio (1,596 of 9,600 samples changed), nothing reported."""
    records = list(RECORDS)
    records.insert(position, forged_v0(info(2)))
    with pytest.raises(
        SplicedRecordError, match=rf"{WHOLE.path}: sealed record {index} is envelope v0"
    ):
        read([(WHOLE, b"".join(records))])
