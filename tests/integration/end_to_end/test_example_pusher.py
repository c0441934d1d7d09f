"""The example pusher (examples/pusher.py) in a real uvicorn process, driven by a real
websocket client, against the real valkey, fake-gcs-server and a real celery worker.

Every sample pushed through the websocket (20-100 ms frames, a conversation switch, the
socket's end) is read back from GCS; the usage counter's key holds the pushed
milliseconds; bad frames close their socket with a code and reason, and the server goes on;
a SIGTERM to the server mid-session still enqueues the session's tail.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import storage
from backend_hooks.contract.settings import Settings
from tests.integration.example_pusher import Uvicorn

pytestmark = pytest.mark.integration

SECRET = "example-pusher-test-secret-0123456789abcdef"
OLD_PATH_UID = "old-path-user"  # on the deny list: the backend's old path
FRAME_MS = [20, 40, 60, 100, 80, 20, 100]  # the backend's frame sizes, cycled
READ_BACK_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def env(stack: StackInfo) -> dict[str, str]:
    return {
        **stack.env(),
        "ENCRYPTION_SECRET": SECRET,
        "AUDIOSYNC_ROLLOUT_PERCENT": "100",
        "AUDIOSYNC_ROLLOUT_DENY_UIDS": OLD_PATH_UID,
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.5",
        "AUDIOSYNC_LEASE_SECONDS": "10",
    }


@dataclass
class Running:
    server: Uvicorn  # the example pusher most tests talk to
    spare: Uvicorn  # a second one, for the SIGTERM test
    worker: processes.CeleryProcess


@pytest.fixture(scope="module")
def running(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Two example pushers and a real celery worker (with the sweep), started side by side:
    each takes seconds to import."""
    redis.Redis.from_url(env["AUDIOSYNC_REDIS_URL"]).flushall()
    workdir = tmp_path_factory.mktemp("example-pusher")
    pushers = [Uvicorn(env, workdir / f"uvicorn-{n}.log") for n in (1, 2)]
    try:
        with processes.worker(env, workdir) as worker:
            yield Running(pushers[0].wait_ready(), pushers[1].wait_ready(), worker)
            pushers[0].terminate()  # idle: a clean, prompt exit
    finally:
        for pusher in pushers:
            pusher.kill()


@pytest.fixture(scope="module")
def server(running: Running) -> Uvicorn:
    return running.server


@pytest.fixture(scope="module")
def context(env: dict[str, str]) -> storage.StorageContext:
    return storage.StorageContext.from_settings(Settings.from_env(env, role="reader"))


@pytest.fixture(scope="module")
def store(env: dict[str, str]) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(env["AUDIOSYNC_REDIS_URL"])
    yield client
    client.close()


def audio_frame(timestamp: float, pcm: bytes) -> bytes:
    return struct.pack("<Id", 101, timestamp) + pcm


def switch_frame(conversation_id: str) -> bytes:
    return struct.pack("<I", 103) + conversation_id.encode("utf-8")


def send_audio(ws: ClientConnection, pcm: bytes, start: float, rate: int) -> float:
    """``pcm`` in the backend's frame sizes, each stamped with its first sample's time;
    returns the time right after its last sample."""
    offset = index = 0
    while offset < len(pcm):
        size = 2 * rate * FRAME_MS[index % len(FRAME_MS)] // 1000
        ws.send(audio_frame(start + offset // 2 / rate, pcm[offset : offset + size]))
        offset += size
        index += 1
    return start + len(pcm) // 2 / rate


def eventually(check: Callable[[], object], what: str) -> None:
    """Polls ``check`` until it returns true (the worker flushes on its own schedule)."""
    deadline = time.monotonic() + READ_BACK_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {READ_BACK_TIMEOUT:.0f} s: {what}")
        time.sleep(0.2)


def stored_samples(context: storage.StorageContext, uid: str, conversation_id: str) -> int:
    listed = storage.list_audio_chunks(uid, conversation_id, context=context)
    return sum(round(o["duration"] * 16000) for o in listed)  # 16 kHz in these tests


def us(timestamp: float) -> int:
    """A pushed timestamp in µs: where the pusher puts the first sample of a run."""
    return round(timestamp * 1_000_000)


def after_us(run_start_us: int, samples: int, rate: int) -> int:
    """Where the pusher puts the sample ``samples`` after a run's first: by the sample
    clock from the run's start (backend_hooks/pusher/chunker.py), not by the float timestamp of
    the push that carries it (``start + samples / rate`` in float is up to 1 µs off)."""
    return run_start_us + round(samples * 1_000_000 / rate)


def assert_read_back(
    context: storage.StorageContext, uid: str, conversation_id: str, pcm: bytes, start_us: int
) -> None:
    """Every sample, from ``start_us`` on, and the audio is the audio that was sent."""
    samples = len(pcm) // 2
    eventually(
        lambda: stored_samples(context, uid, conversation_id) >= samples,
        f"{samples} samples of {uid}/{conversation_id} stored",
    )
    merged = storage.download_merged_audio(uid, conversation_id, context=context)
    assert (merged.sample_rate, merged.sample_count) == (16000, samples)
    assert merged.start_us == start_us
    sent = np.frombuffer(pcm, "<i2").astype(np.float64)
    got = np.frombuffer(merged.pcm, "<i2").astype(np.float64)
    # Opus is lossy: the decoded audio follows the sent waveform, sample-aligned. Measured
    # here: 0.89 to 0.93; the same audio 10 ms off -0.28 to 0.20; another seed's |r| < 0.04.
    assert np.corrcoef(sent, got)[0, 1] > 0.7


def usage_ms(store: redis.Redis, uid: str) -> int:
    return sum(int(store.get(key) or 0) for key in store.scan_iter(f"fair_use:dg_budget:{uid}:*"))


def closed_by_server(ws: ClientConnection) -> tuple[int, str]:
    """Waits for the server's close frame: (code, reason)."""
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    assert info.value.rcvd is not None, "the server did not send a close frame"
    return info.value.rcvd.code, info.value.rcvd.reason


def a_start_whose_float_end_is_off(samples: int, rate: int) -> float:
    """A start near now at which ``start + samples / rate`` in float is 1 µs away from the
    sample clock, so that the second conversation's start tells the two apart.

    Whether it is depends on the start's last bits: consecutive floats from now (about 1
    in 20 is such a start; 2**16 of them take every value those bits can have)."""
    now = start = time.time()
    for _ in range(2**16):
        if us(start + samples / rate) != after_us(us(start), samples, rate):
            return start
        start = math.nextafter(start, math.inf)
    raise AssertionError(f"no start from {now} on whose float end is off")


def test_audio_of_both_conversations_arrives_whole(
    server: Uvicorn,
    context: storage.StorageContext,
    store: redis.Redis,
) -> None:
    first, second = speech_like(6.3, 16000, seed=11), speech_like(3.7, 16000, seed=12)
    t0 = a_start_whose_float_end_is_off(len(first) // 2, 16000)
    with connect(server.url(uid="ws-user", conversation_id="ws-a", sample_rate="16000")) as ws:
        middle = send_audio(ws, first, t0, 16000)  # a whole 5 s chunk and a tail
        ws.send(switch_frame("ws-b"))
        send_audio(ws, second, middle, 16000)
    # The backend's old path for a user audiosync is not enabled for: counted, not stored.
    with connect(server.url(uid=OLD_PATH_UID, conversation_id="old-c")) as ws:
        send_audio(ws, speech_like(1.0, 16000, seed=13), t0, 16000)

    assert_read_back(context, "ws-user", "ws-a", first, us(t0))
    # The switch starts no new run: the second conversation goes on by the sample clock
    # of the first, not from the float timestamp of its first push.
    assert_read_back(context, "ws-user", "ws-b", second, after_us(us(t0), len(first) // 2, 16000))
    eventually(lambda: usage_ms(store, "ws-user") == 10_000, "10,000 ms counted for ws-user")
    eventually(lambda: usage_ms(store, OLD_PATH_UID) == 1_000, "1,000 ms for the old path")
    assert storage.list_audio_chunks(OLD_PATH_UID, "old-c", context=context) == []
    assert not store.keys("audiosync:{*:chunks")  # nothing else left behind


BAD = [
    pytest.param({}, b"\x65\x00", 1007, "shorter than the 4-byte header", id="short"),
    pytest.param({}, struct.pack("<I", 102) + b"x", 1003, "unknown frame header 102", id="header"),
    pytest.param({}, struct.pack("<I", 101) + b"12345", 1007, "8-byte float64", id="audio-short"),
    pytest.param({}, audio_frame(float("nan"), b"\0\0"), 1007, "not finite", id="timestamp-nan"),
    pytest.param({}, audio_frame(float("inf"), b"\0\0"), 1007, "not finite", id="timestamp-inf"),
    pytest.param({}, switch_frame("a/b"), 1007, "conversation_id 'a/b'", id="switch-bad-id"),
    pytest.param({}, switch_frame(""), 1007, "must not be empty", id="switch-empty"),
    pytest.param({}, struct.pack("<I", 103) + b"\xff", 1007, "not UTF-8", id="switch-not-utf8"),
    pytest.param({}, "hello", 1003, "text messages", id="text-message"),
    pytest.param({"uid": "a b"}, None, 1008, "uid 'a b'", id="query-bad-uid"),
    pytest.param({"uid": None}, None, 1008, "uid is missing", id="query-no-uid"),
    pytest.param({"sample_rate": "44100"}, None, 1008, "unsupported sample rate", id="rate"),
    pytest.param({"sample_rate": "16k"}, None, 1008, "is not Hz", id="rate-not-a-number"),
    pytest.param({"protection_level": "x"}, None, 1008, "protection_level", id="level"),
]


@pytest.mark.parametrize(("query", "frame", "code", "reason"), BAD)
def test_a_bad_frame_closes_its_socket_with_a_reason(
    server: Uvicorn,
    query: dict[str, str | None],
    frame: bytes | str | None,
    code: int,
    reason: str,
) -> None:
    params = {"uid": "bad-user", "conversation_id": "bad-c", **query}
    url = server.url(**{k: v for k, v in params.items() if v is not None})
    with connect(url) as ws:
        if frame is not None:
            ws.send(frame)
        got_code, got_reason = closed_by_server(ws)
    assert got_code == code and reason in got_reason, (got_code, got_reason)
    assert server.process.poll() is None  # the server goes on


def test_audio_before_a_bad_frame_is_kept(server: Uvicorn, context: storage.StorageContext) -> None:
    t0 = time.time()
    pcm = speech_like(1.5, 16000, seed=21)
    with connect(server.url(uid="ws-bad", conversation_id="kept")) as ws:
        send_audio(ws, pcm, t0, 16000)
        ws.send(struct.pack("<I", 7))
        assert closed_by_server(ws)[0] == 1003
    assert_read_back(context, "ws-bad", "kept", pcm, us(t0))
    with connect(server.url(uid="ws-bad", conversation_id="after")) as ws:  # still serving
        send_audio(ws, pcm, t0 + 10, 16000)
    assert_read_back(context, "ws-bad", "after", pcm, us(t0 + 10))


def test_sigterm_mid_session_enqueues_the_tail(
    running: Running, context: storage.StorageContext, store: redis.Redis
) -> None:
    server = running.spare
    try:
        t0 = time.time()
        short, long = speech_like(2.5, 16000, seed=31), speech_like(7.1, 16000, seed=32)
        with (
            connect(server.url(uid="term-1", conversation_id="c")) as a,
            connect(server.url(uid="term-2", conversation_id="c")) as b,
        ):
            send_audio(a, short, t0, 16000)  # less than a chunk: all of it in the session
            send_audio(b, long, t0, 16000)  # one chunk sent, 2.1 s in the session
            a.ping().wait(10)  # the server has read every frame before it
            b.ping().wait(10)
            server.terminate()
            assert closed_by_server(a)[0] == 1012  # "service restart"
            assert closed_by_server(b)[0] == 1012
    finally:
        server.kill()
    assert "audiosync client closed" in server.text()
    assert_read_back(context, "term-1", "c", short, us(t0))
    assert_read_back(context, "term-2", "c", long, us(t0))
    eventually(lambda: usage_ms(store, "term-1") == 2_500, "2,500 ms counted for term-1")
    assert usage_ms(store, "term-2") == 7_100
