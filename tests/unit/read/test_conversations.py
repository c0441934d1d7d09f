"""Pure parts of backend_hooks.read.conversations: grouping into audio files (the gap
threshold at 89 s vs 91 s), records, ids, argument checks, the WAV header and the cache
fingerprint (sample counts: tests/unit/read/test_durations.py).

The same against the GCS emulator: tests/integration/read/test_conversations.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backend_hooks.adapters.gcs import ObjectVersion
from backend_hooks.contract.errors import ConfigError, InvalidInputError
from backend_hooks.contract.settings import Settings
from backend_hooks.read import conversations
from backend_hooks.read.conversations import ChunkSpan, audio_file_record, chunk_span, group_spans

T0 = 1_700_000_000.0
T0_US = 1_700_000_000_000_000


def item(start: float, duration: float | None, ext: str = ".bin") -> dict[str, object]:
    return {"timestamp": start, "path": f"chunks/u/c/{start:.3f}{ext}", "duration": duration}


def spans(*pairs: tuple[float, float | None]) -> list[ChunkSpan]:
    return [chunk_span(item(T0 + s, d)) for s, d in pairs]


# --- grouping ------------------------------------------------------------------------------


@pytest.mark.parametrize(("gap", "files"), [(89.0, 1), (90.0, 1), (90.001, 2), (91.0, 2)])
def test_a_gap_up_to_the_threshold_joins_and_a_longer_one_splits(gap: float, files: int) -> None:
    # Two 5 s chunks, then one starting ``gap`` seconds after the end of the second's audio.
    groups = group_spans(spans((0, 5.0), (5, 5.0), (10 + gap, 5.0)), 90)
    assert len(groups) == files
    records = [audio_file_record("u", "c", g) for g in groups]
    if files == 1:
        assert records[0]["duration"] == pytest.approx(15 + gap, abs=1e-6)
    else:
        assert [r["duration"] for r in records] == [10.0, 5.0]


def test_the_gap_is_measured_from_the_end_of_the_audio_not_from_the_start() -> None:
    # A 60 s object then one 140 s after its start: 80 s after its end, so one file
    # (start-to-start, the old rule, would split it).
    [group] = group_spans(spans((0, 60.0), (140, 60.0)), 90)
    assert audio_file_record("u", "c", group)["duration"] == 200.0
    # A short duplicate after a long object does not pull the group's end back.
    [group] = group_spans(spans((0, 60.0), (0, 5.0), (145, 5.0)), 90)
    assert audio_file_record("u", "c", group)["duration"] == 150.0


def test_an_unknown_duration_is_grouped_start_to_start() -> None:
    groups = group_spans(spans((0, None), (89, 5.0), (185, 5.0)), 90)
    assert [len(g) for g in groups] == [2, 1]
    assert audio_file_record("u", "c", groups[0])["duration"] == 94.0  # 89 s + 5 s
    [lone] = group_spans(spans((0, None)), 90)
    assert audio_file_record("u", "c", lone)["duration"] == 0.0


def test_a_duplicate_at_the_same_start_does_not_double_the_duration() -> None:
    legacy = chunk_span(item(T0, 5.0, ".bin"))
    new_name = f"chunks/u/c/{T0:.3f}-{T0 + 5:.3f}_0123456789abcdef.opus"
    new = chunk_span({"timestamp": T0, "path": new_name, "duration": 5.0})
    [group] = group_spans([legacy, new, chunk_span(item(T0 + 5, 5.0))], 90)
    record = audio_file_record("u", "c", group)
    assert record["duration"] == 10.0
    assert record["chunk_timestamps"] == [T0, T0 + 5]  # each start once


def test_a_new_object_with_a_gap_inside_ends_where_its_name_says() -> None:
    # 10 s of samples spanning 30 s (a gap inside the object): the name's end counts.
    path = f"chunks/u/c/{T0:.3f}-{T0 + 30:.3f}_0123456789abcdef.opus.enc"
    span = chunk_span({"timestamp": T0, "path": path, "duration": 10.0})
    assert (span.start_us, span.end_us) == (T0_US, T0_US + 30_000_000)
    no_duration = chunk_span({"timestamp": T0, "path": path, "duration": None})
    assert no_duration.end_us == T0_US + 30_000_000


def test_records_have_the_backend_fields_and_a_stable_id() -> None:
    [group] = group_spans(spans((0.125, 5.0), (5.125, 2.5)), 90)
    record = audio_file_record("user-1", "conv-1", group)
    assert set(record) == {
        "id",
        "uid",
        "conversation_id",
        "chunk_timestamps",
        "provider",
        "started_at",
        "duration",
    }
    assert record["provider"] == "gcp" and record["uid"] == "user-1"
    assert record["started_at"] == datetime(2023, 11, 14, 22, 13, 20, 125000, tzinfo=UTC)
    assert record["started_at"].tzinfo is UTC
    assert record["duration"] == 7.5
    again = audio_file_record("user-1", "conv-1", group_spans(spans((0.125, 5.0)), 90)[0])
    assert again["id"] == record["id"]  # keyed by the first chunk's start only
    other = audio_file_record("user-1", "conv-2", group)
    later = audio_file_record("user-1", "conv-1", group_spans(spans((5.125, 2.5)), 90)[0])
    assert len({record["id"], other["id"], later["id"]}) == 3


def test_bad_arguments_are_refused() -> None:
    for bad in (-1, float("nan"), "90", True):
        with pytest.raises(InvalidInputError, match="gap_seconds"):
            conversations._gap(bad, 90.0)
    assert conversations._gap(None, 42.0) == 42.0
    with pytest.raises(InvalidInputError, match="list of ids"):
        conversations._id_list("conv-1", "source conversation id")  # a bare string
    with pytest.raises(InvalidInputError, match="source conversation id"):
        conversations._id_list(["ok", "../x"], "source conversation id")
    assert conversations._id_list(["a", "b", "a"], "x") == ["a", "b"]
    for bad_ts in ([], "1.0", [float("inf")], [True]):
        with pytest.raises(InvalidInputError, match="chunk_timestamps"):
            conversations._timestamps(bad_ts)


def test_the_gap_setting_and_its_default() -> None:
    assert Settings.from_env({}).audio_file_gap_seconds == 90.0
    env = {"AUDIOSYNC_AUDIO_FILE_GAP_SECONDS": "30"}
    assert Settings.from_env(env, role="reader").audio_file_gap_seconds == 30.0
    with pytest.raises(ConfigError, match="AUDIOSYNC_AUDIO_FILE_GAP_SECONDS"):
        Settings.from_env({"AUDIOSYNC_AUDIO_FILE_GAP_SECONDS": "-5"})


# --- WAV and the cache fingerprint ---------------------------------------------------------


def test_the_fingerprint_changes_with_any_source_or_option() -> None:
    a = ObjectVersion("chunks/u/c/1.000.bin", 10, 1, "m", "c")
    b = ObjectVersion("chunks/u/c/6.000.bin", 10, 1, "m", "c")
    base = conversations.source_fingerprint([a, b], sample_rate=None, fill_gaps=True)
    assert base == conversations.source_fingerprint([b, a], sample_rate=None, fill_gaps=True)
    rewritten = ObjectVersion(b.name, 10, 2, "m", "c")
    changed = [
        conversations.source_fingerprint([a], sample_rate=None, fill_gaps=True),
        conversations.source_fingerprint([a, rewritten], sample_rate=None, fill_gaps=True),
        conversations.source_fingerprint([a, b], sample_rate=16000, fill_gaps=True),
        conversations.source_fingerprint([a, b], sample_rate=None, fill_gaps=False),
    ]
    assert base not in changed and len(set(changed)) == 4
