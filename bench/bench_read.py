"""The read side: listing and merging one conversation from the GCS emulator, in memory
and streaming, new 60 s objects and legacy 5 s chunks side by side in one run.

Run: ``.venv/bin/python bench/bench_read.py [--seconds 3600]`` (``--quick``: 60 s).

The same audio (tests/data/speech_16k.wav, 16 kHz speech, looped) is stored three ways
in one fake-gcs-server (audiosync_dev.localstack), each its own conversation:

- ``standard``: 60 s ``.opus`` objects as the fleet writes them (12 chunk containers of
  5 s, ``container.build_chunk``, concatenated; named by ``naming.object_name``, with the
  planner's metadata);
- ``enhanced``: the same chunks sealed (``envelope.seal``, v1), 60 s ``.opus.enc`` objects;
- ``legacy .bin``: 5 s raw PCM16 chunks named ``{ts:.3f}.bin`` (LEGACY_FORMATS.md).

The pusher's encoder runs once per 5 s chunk of the looped audio; the objects are
uploaded with 8 threads. Then, per conversation: ``list_audio_chunks`` (wall time),
``download_audio_chunks_and_merge`` (in memory) and ``iter_merged_audio`` consumed block
by block (streaming), each timed (best of ``--repeat``) and each run once more under
tracemalloc for its peak of Python allocations (threads included: every buffer the reader
makes, downloads and decoded PCM among them) against the output's size. (RSS is not
reported: after the first run the process holds memory the allocator keeps, so an RSS
delta says little about one call; libopus's own state is about 20 kB a decoder.)
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from audiosync_dev.localstack import LocalStack
from backend_hooks import storage
from backend_hooks.adapters import gcs
from backend_hooks.contract import container, envelope, naming
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.settings import Settings

RATE = 16000
CHUNK_SECONDS = 5
OBJECT_CHUNKS = 12  # 60 s objects
SPEECH = Path(__file__).resolve().parents[1] / "tests" / "data" / "speech_16k.wav"
SECRET = b"bench-read-secret-0123456789abcdef-0123"
SESSION = "0123456789abcdef0123456789abcdef"


def looped_speech(seconds: int) -> bytes:
    with wave.open(str(SPEECH)) as f:
        assert f.getframerate() == RATE and f.getnchannels() == 1 and f.getsampwidth() == 2
        loop = bytes(f.readframes(f.getnframes()))
    want = 2 * seconds * RATE
    return (loop * (want // len(loop) + 1))[:want]


@dataclass(frozen=True)
class Stored:
    label: str
    uid: str
    conversation_id: str
    objects: int
    stored_bytes: int


def store_all(bucket: gcs.GcsBucket, settings: Settings, seconds: int) -> list[Stored]:
    """The three conversations of the module docstring; what each holds."""
    pcm = looped_speech(seconds)
    t0_us = (int(time.time()) - seconds - 3600) * 1_000_000
    encoder = ChunkEncoder(RATE)
    step = 2 * CHUNK_SECONDS * RATE
    keys = envelope.UserKeys(SECRET)
    chunks = []  # (ChunkInfo, container bytes)
    for seq, at in enumerate(range(0, len(pcm), step)):
        piece = pcm[at : at + step]
        info = container.ChunkInfo(
            SESSION, seq, t0_us + seq * CHUNK_SECONDS * 1_000_000, RATE, len(piece) // 2
        )
        chunks.append((info, container.build_chunk(info, encoder.encode(piece), encoder.pre_skip)))
    uploads: list[tuple[str, bytes, dict[str, str]]] = []
    out = []
    run = f"{seconds}-{time.time_ns()}"  # a conversation of its own on a shared emulator
    for label, sealed in (("standard", False), ("enhanced", True)):
        uid, cid = f"bench-{label}", f"conv-{run}"
        count = size = 0
        for first in range(0, len(chunks), OBJECT_CHUNKS):
            group = chunks[first : first + OBJECT_CHUNKS]
            data = b"".join(
                envelope.seal(keys, uid, info, body) if sealed else body for info, body in group
            )
            name = naming.object_name(
                uid,
                cid,
                start_us=group[0][0].start_us,
                end_us=group[-1][0].end_us,
                sealed=sealed,
                data=data,
            )
            metadata = {
                "audiosync-format": "1",
                "audiosync-rate": str(RATE),
                "audiosync-samples": str(sum(info.sample_count for info, _ in group)),
                "audiosync-chunks": str(len(group)),
                "audiosync-session": SESSION,
                "audiosync-seq": f"{group[0][0].seq}-{group[-1][0].seq}",
            }
            uploads.append((name, data, metadata))
            count, size = count + 1, size + len(data)
        out.append(Stored(label, uid, cid, count, size))
    uid, cid = "bench-legacy", f"conv-{run}"
    for seq, at in enumerate(range(0, len(pcm), step)):
        start = naming.format_time(t0_us + seq * CHUNK_SECONDS * 1_000_000)
        uploads.append(
            (f"{naming.conversation_prefix(uid, cid)}{start}.bin", pcm[at : at + step], {})
        )
    out.append(Stored("legacy .bin", uid, cid, len(chunks), len(pcm)))

    def put(item: tuple[str, bytes, dict[str, str]]) -> None:
        name, data, metadata = item
        bucket.create_only(name, data, content_type="application/octet-stream", metadata=metadata)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, uploads))
    return out


@dataclass(frozen=True)
class Measured:
    seconds: float  # best wall time
    output_bytes: int
    traced_peak: int  # tracemalloc peak during one more run


def measure(run: Callable[[], int], repeat: int) -> Measured:
    """``run`` returns the bytes of audio it produced (and drops them)."""
    best, output = float("inf"), 0
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        output = run()
        best = min(best, time.perf_counter() - started)
    gc.collect()
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Measured(best, output, peak)


def in_memory(sctx: storage.StorageContext, item: Stored) -> Callable[[], int]:
    def run() -> int:
        pcm = storage.download_audio_chunks_and_merge(item.uid, item.conversation_id, context=sctx)
        return len(pcm)

    return run


def streaming(sctx: storage.StorageContext, item: Stored) -> Callable[[], int]:
    def run() -> int:
        stream = storage.iter_merged_audio(item.uid, item.conversation_id, context=sctx)
        return sum(len(block) for block in stream)

    return run


def bench(settings: Settings, seconds: int, repeat: int, say: Callable[[str], None]) -> list[str]:
    """Store, measure, print; the table's rows (for the smoke test)."""
    sctx = storage.StorageContext.from_settings(replace(settings, encryption_secret=SECRET))
    started = time.perf_counter()
    stored = store_all(sctx.bucket, settings, seconds)
    say(f"stored {sum(s.objects for s in stored)} objects in {time.perf_counter() - started:.1f} s")
    rows = []
    header = (
        f"{'conversation':<13} {'objects':>7} {'stored MB':>9} {'list s':>7} {'form':<9} "
        f"{'merge s':>8} {'x real time':>11} {'out MB':>7} {'peak MB':>8} {'peak/out':>8}"
    )
    say(header)
    for item in stored:
        t = time.perf_counter()
        listed = storage.list_audio_chunks(item.uid, item.conversation_id, context=sctx)
        list_s = time.perf_counter() - t
        assert len(listed) == item.objects, (len(listed), item)
        for form, make in (("in memory", in_memory), ("streaming", streaming)):
            m = measure(make(sctx, item), repeat)
            assert m.output_bytes == 2 * seconds * RATE, (m.output_bytes, item)
            row = (
                f"{item.label:<13} {item.objects:>7} {item.stored_bytes / 1e6:>9.2f} "
                f"{list_s:>7.3f} {form:<9} {m.seconds:>8.2f} {seconds / m.seconds:>11.0f} "
                f"{m.output_bytes / 1e6:>7.1f} {m.traced_peak / 1e6:>8.1f} "
                f"{m.traced_peak / m.output_bytes:>7.2f}x"
            )
            say(row)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=3600, help="audio per conversation")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs, best kept")
    parser.add_argument("--quick", action="store_true", help="60 s, one timed run")
    args = parser.parse_args()
    seconds, repeat = (60, 1) if args.quick else (args.seconds, args.repeat)
    with LocalStack() as info:
        settings = Settings.from_env(info.env())
        bench(settings, seconds, repeat, print)


if __name__ == "__main__":
    main()
