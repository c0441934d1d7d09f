"""End to end on real servers: pusher -> Redis stream -> a real celery worker -> GCS -> reader.

Timestamps are synthetic (audio is pushed faster than real time); only the age trigger
waits, with a short AUDIOSYNC_BATCH_MAX_AGE_SECONDS.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, Session, storage
from backend_hooks.adapters.gcs import GcsBucket, make_client
from backend_hooks.contract import container, envelope, naming
from backend_hooks.contract.errors import ObjectConflictError
from backend_hooks.contract.settings import Settings

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-0123456789abcdef"
MAX_AGE = 3.0
T0 = float(int(time.time()))  # synthetic pushes start now: the worker refuses far-off times


@pytest.fixture(scope="module")
def env(stack: StackInfo) -> dict[str, str]:
    return {
        **stack.env(),
        "ENCRYPTION_SECRET": SECRET,
        "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": str(MAX_AGE),
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.5",
        "AUDIOSYNC_LEASE_SECONDS": "10",
    }


@pytest.fixture(scope="module")
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


@pytest.fixture(scope="module")
def worker(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[processes.CeleryProcess]:
    redis.Redis.from_url(env["AUDIOSYNC_REDIS_URL"]).flushall()
    with processes.worker(env, tmp_path_factory.mktemp("worker")) as process:
        yield process


@pytest.fixture(scope="module")
def context(settings: Settings) -> storage.StorageContext:
    return storage.StorageContext.from_settings(settings)


@dataclass
class Pushed:
    uid: str
    conversation_id: str
    rate: int
    pcm: bytes  # what the merged read-back must equal in length, gaps as zeros
    start: float


def push_in_odd_pieces(session: Session, pcm: bytes, start: float, rate: int) -> None:
    """Push ``pcm`` in uneven pieces (odd lengths included) with matching timestamps."""
    sizes = [321, 4_001, 17, 9_999, 640, 1]
    offset = index = 0
    while offset < len(pcm):
        size = sizes[index % len(sizes)]
        session.push(pcm[offset : offset + size], start + (offset // 2) / rate)
        offset += size
        index += 1


def hold_flushes_off(client: redis.Redis, session: Session) -> None:
    """Hold the session's lease, as another worker's flush would, until the test deletes it.

    Pushing a session takes longer than ``MAX_AGE`` on a busy machine: the age trigger
    would cut its first object short in the middle of the push, and the objects' layout
    would depend on the machine's speed."""
    client.set(session.redis_keys.lease, "held-by-the-test", px=600_000)


def wait_drained(client: redis.Redis, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not client.keys("audiosync:{s*}:due") and not client.keys("audiosync:{*:chunks"):
            return
        time.sleep(0.2)
    raise AssertionError(f"streams not drained after {timeout} s: {client.keys('audiosync:*')}")


def object_bytes(context: storage.StorageContext, path: str) -> bytes:
    return context.bucket.download(path)


def test_sessions_round_trip_exactly(
    worker: processes.CeleryProcess, settings: Settings, context: storage.StorageContext
) -> None:
    client = AudioSyncClient(settings)
    r = redis.Redis.from_url(settings.redis_url)
    expected: list[Pushed] = []

    # 1. 16 kHz enhanced, 130 s with a 2.5 s gap at 70 s: 26 chunks, objects of 12+12+2.
    s1 = client.open_session("user-1", "conv-1", 16000, "enhanced")
    hold_flushes_off(r, s1)
    a, b = speech_like(70, 16000, seed=1), speech_like(60, 16000, seed=2)
    push_in_odd_pieces(s1, a, T0, 16000)
    push_in_odd_pieces(s1, b, T0 + 72.5, 16000)
    s1.close()
    expected.append(Pushed("user-1", "conv-1", 16000, a + bytes(2 * 40000) + b, T0))

    # 2. 8 kHz standard with a conversation switch after 20 s.
    s2 = client.open_session("user-2", "conv-2a", 8000, "standard")
    hold_flushes_off(r, s2)
    c, d = speech_like(20, 8000, seed=3), speech_like(17.3, 8000, seed=4)
    push_in_odd_pieces(s2, c, T0 + 5, 8000)
    s2.switch_conversation("conv-2b")
    push_in_odd_pieces(s2, d, T0 + 25, 8000)
    s2.close()
    r.delete(s1.redis_keys.lease, s2.redis_keys.lease)  # both closed: flush them whole
    expected.append(Pushed("user-2", "conv-2a", 8000, c, T0 + 5))
    expected.append(Pushed("user-2", "conv-2b", 8000, d, T0 + 25))

    # 3. 16 kHz standard, left open: only the age trigger can flush it.
    s3 = client.open_session("user-3", "conv-3", 16000, "standard")
    e = speech_like(12.5, 16000, seed=5)
    push_in_odd_pieces(s3, e, T0 + 100, 16000)  # 2 chunks sent, 2.5 s still in the session
    wait_drained(r)
    aged = storage.list_audio_chunks("user-3", "conv-3", context=context)
    assert [round(o["duration"], 3) for o in aged] == [10.0]  # flushed by age alone
    s3.close()
    expected.append(Pushed("user-3", "conv-3", 16000, e, T0 + 100))
    wait_drained(r)

    for want in expected:
        merged = storage.download_merged_audio(want.uid, want.conversation_id, context=context)
        assert merged.sample_rate == want.rate
        assert merged.sample_count == len(want.pcm) // 2, want.conversation_id
        assert merged.start_us == round(want.start * 1_000_000)
        assert (
            storage.download_audio_chunks_and_merge(want.uid, want.conversation_id, context=context)
            == merged.pcm
        )

    # The gap in session 1 comes back as 2.5 s of exact silence, at its place.
    merged1 = storage.download_merged_audio("user-1", "conv-1", context=context)
    gap = merged1.pcm[2 * 70 * 16000 : 2 * (72 * 16000 + 8000)]
    assert gap == bytes(len(gap)) and len(gap) == 2 * 40000
    assert merged1.pcm[2 * 72 * 16000 + 2 * 8000 :][:2000] != bytes(2000)

    listed = storage.list_audio_chunks("user-1", "conv-1", context=context)
    assert [round(o["duration"], 3) for o in listed] == [60.0, 60.0, 10.0]
    assert all(o["path"].endswith(".opus.enc") for o in listed)
    assert [o["timestamp"] for o in listed] == sorted(o["timestamp"] for o in listed)
    assert [
        round(o["duration"], 3)
        for o in storage.list_audio_chunks("user-2", "conv-2a", context=context)
    ] == [20.0]


def test_names_are_content_digests_and_objects_play(
    worker: processes.CeleryProcess, settings: Settings, context: storage.StorageContext
) -> None:
    keys = envelope.UserKeys(settings.encryption_secret or b"")
    for uid, conversation_id in (("user-1", "conv-1"), ("user-2", "conv-2b")):
        for item in storage.list_audio_chunks(uid, conversation_id, context=context):
            data = object_bytes(context, item["path"])
            name = naming.parse_object_name(item["path"])
            assert name.digest == hashlib.sha256(data).hexdigest()[: naming.DIGEST_HEX]
            payload = data
            if name.sealed:
                assert data[:4] != b"OggS"  # nothing readable without the key
                payload = b"".join(
                    r.plaintext for r in envelope.open_records(keys, uid, data, name=item["path"])
                )
            chunks = container.parse_chunks(payload)
            assert name.start_us == min(c.info.start_us for c in chunks)
            assert (
                name.end_us is not None
                and abs(name.end_us - max(c.info.end_us for c in chunks)) < 1000
            )
            samples = sum(c.info.sample_count for c in chunks)
            rate = chunks[0].info.sample_rate
            # ffmpeg plays the chained Ogg Opus file to exactly the stored sample count.
            with av.open(io.BytesIO(payload), mode="r") as media:
                played = sum(f.samples for f in media.decode(media.streams.audio[0]))
            assert played == samples * 48000 // rate


def test_a_replayed_flush_writes_nothing_new(
    worker: processes.CeleryProcess,
    settings: Settings,
    context: storage.StorageContext,
    tmp_path: Path,
) -> None:
    """The same chunks flushed again land on the same names: a 412, checked equal."""
    listed = storage.list_audio_chunks("user-2", "conv-2b", context=context)
    path = listed[0]["path"]
    data = object_bytes(context, path)
    bucket = GcsBucket(make_client(settings), settings.bucket)
    assert bucket.create_only(path, data, content_type="audio/ogg", metadata={}) == (
        "already_stored"
    )
    with pytest.raises(ObjectConflictError):
        bucket.create_only(path, data + b"x", content_type="audio/ogg", metadata={})
    assert storage.list_audio_chunks("user-2", "conv-2b", context=context) == listed


def test_select_by_timestamp_and_delete(
    worker: processes.CeleryProcess, context: storage.StorageContext
) -> None:
    listed = storage.list_audio_chunks("user-1", "conv-1", context=context)
    second = listed[1]["timestamp"]
    only = storage.download_merged_audio("user-1", "conv-1", [second], context=context)
    assert only.sample_count == 62.5 * 16000  # 60 s of audio around the 2.5 s gap
    assert only.start_us == round(second * 1_000_000)
    assert (
        storage.download_audio_chunks_and_merge("user-1", "conv-1", [123.0], context=context) == b""
    )  # no such object

    storage.delete_audio_chunks("user-1", "conv-1", [second], context=context)
    left = storage.list_audio_chunks("user-1", "conv-1", context=context)
    assert [o["path"] for o in left] == [listed[0]["path"], listed[2]["path"]]
    merged = storage.download_merged_audio("user-1", "conv-1", context=context)
    # The deleted minute comes back as silence between its neighbours.
    assert merged.sample_count == (130 + 2.5) * 16000
    without_gaps = storage.download_merged_audio(
        "user-1", "conv-1", fill_gaps=False, context=context
    )
    assert without_gaps.sample_count == 70 * 16000
