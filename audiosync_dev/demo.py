"""The demo: the whole pipeline on embedded servers, faster than real time.

Starts valkey and fake-gcs-server, a real ``celery -A workers worker``, ``celery beat``
(the periodic sweep) and Flower on loopback; streams 20 sessions of speech-like audio
through the asyncio pusher API (8 and 16 kHz, both protection levels, one conversation
switch, one gap); waits until every stream is drained; reads every conversation back;
prints what it cost; writes one WAV per conversation under ``demo-out/``.

Run it with ``make demo``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import urllib.request
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from audiosync_dev import processes
from audiosync_dev.localstack import LocalStack
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, redis_store, storage
from backend_hooks.settings import Settings

SESSIONS = 20
T0 = float(int(time.time()))  # synthetic timestamps from now on: pushed faster than real time
PUSH_SECONDS = 0.1  # one push per 100 ms of audio, as a pusher's websocket frames
OUT = Path("demo-out")
LEGACY_CHUNK_SECONDS = 5.0


@dataclass
class Conversation:
    uid: str
    conversation_id: str
    rate: int
    start: float
    pcm: bytearray = field(default_factory=bytearray)  # expected read-back, gaps as zeros


@dataclass
class Plan:
    index: int
    rate: int
    level: str
    seconds: float
    switch_at: float | None = None
    gap_at: float | None = None
    gap: float = 2.0


def plans() -> list[Plan]:
    out = []
    for i in range(SESSIONS):
        plan = Plan(
            index=i,
            rate=16000 if i % 2 == 0 else 8000,
            level="enhanced" if i % 4 < 2 else "standard",
            seconds=45.0 + (i * 37) % 90 + 0.37 * (i % 3),
        )
        if i == 0:
            plan.switch_at = round(plan.seconds / 2)
        if i == 1:
            plan.gap_at = 30.0
        out.append(plan)
    return out


async def run_session(
    client: AudioSyncClient, plan: Plan, progress: Progress
) -> list[Conversation]:
    uid = f"demo-user-{plan.index:02d}"
    start = T0 + 3 * plan.index
    conv = Conversation(uid, f"demo-conv-{plan.index:02d}", plan.rate, start)
    conversations = [conv]
    pcm = speech_like(plan.seconds, plan.rate, seed=plan.index)
    session = client.open_session(uid, conv.conversation_id, plan.rate, plan.level)
    step = 2 * round(PUSH_SECONDS * plan.rate)
    shift = 0.0  # seconds of gap inserted so far
    for offset in range(0, len(pcm), step):
        at = offset / 2 / plan.rate
        if plan.switch_at is not None and at == plan.switch_at:
            conv = Conversation(uid, f"{conv.conversation_id}-b", plan.rate, start + at)
            conversations.append(conv)
            await session.aswitch_conversation(conv.conversation_id)
        if plan.gap_at is not None and at == plan.gap_at:
            shift = plan.gap
            conv.pcm += bytes(2 * round(plan.gap * plan.rate))
        piece = pcm[offset : offset + step]
        conv.pcm += piece
        await session.apush(piece, start + at + shift)
        progress.done += len(piece) / 2 / plan.rate
    await session.aclose()
    return conversations


class Progress:
    """Audio seconds pushed so far, drawn as a bar when stdout is a terminal."""

    def __init__(self, total_seconds: float) -> None:
        self.total = total_seconds
        self.done = 0.0
        self.tty = sys.stdout.isatty()

    def draw(self, final: bool = False) -> None:
        if not self.tty:
            return
        filled = min(30, round(30 * self.done / self.total))
        print(
            f"\r  pushing [{'#' * filled}{'.' * (30 - filled)}] "
            f"{self.done:,.0f}/{self.total:,.0f} s of audio",
            end="\n" if final else "",
            flush=True,
        )

    async def run(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(0.25)


async def push_all(client: AudioSyncClient) -> list[Conversation]:
    all_plans = plans()
    progress = Progress(sum(p.seconds for p in all_plans))
    drawer = asyncio.create_task(progress.run())
    results = await asyncio.gather(*(run_session(client, p, progress) for p in all_plans))
    drawer.cancel()
    progress.draw(final=True)
    return [c for group in results for c in group]


def wait_drained(client: redis.Redis, logs: Path, timeout: float = 90.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        # An empty sorted set is no key: no due index left means no session is due.
        due = client.keys(redis_store.DUE_KEY_PATTERN)
        if not due and not client.keys(redis_store.session_key_pattern("chunks")):
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"streams not drained after {timeout:.0f} s; the logs are in {logs}")


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in stats.items()}


def write_wav(path: Path, pcm: bytes | bytearray, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)


def main() -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="audiosync-demo-"))
    stack = LocalStack(workdir=workdir / "stack")
    with stack as info:
        env = {
            **info.env(),
            "ENCRYPTION_SECRET": os.environ.get(
                "ENCRYPTION_SECRET", "demo-secret-not-for-production-0123456789"
            ),
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "1",
        }
        os.environ.update(env)
        settings = Settings.from_env(env)
        r = redis.Redis.from_url(info.redis_url)
        print(f"local stack up: valkey {info.redis_url}, fake-gcs-server {info.gcs_url}")
        with (
            processes.worker(env, workdir, beat=False) as _worker,
            processes.beat(env, workdir) as _beat,
            processes.flower(env, workdir) as flower,
        ):
            with urllib.request.urlopen(f"{flower.url}/", timeout=10) as page:
                print(f"Flower: {flower.url} (answered {page.status})")
            r.config_resetstat()
            writes_before = sum(q.is_object_write for q in stack.gcs_requests())
            client = AudioSyncClient(settings)
            pushed_at = time.monotonic()
            conversations = asyncio.run(push_all(client))
            client.close()
            push_time = time.monotonic() - pushed_at
            drain_time = wait_drained(r, logs=workdir)
            calls = command_calls(r)
            requests = stack.gcs_requests()
            object_writes = sum(q.is_object_write for q in requests) - writes_before
            print(
                f"pushed {SESSIONS} sessions in {push_time:.1f} s, drained {drain_time:.1f} s later"
            )

            OUT.mkdir(exist_ok=True)
            ctx = storage.StorageContext.from_settings(settings)
            exact = objects = stored = 0
            raw = sum(len(c.pcm) for c in conversations)
            audio_seconds = sum(len(c.pcm) / 2 / c.rate for c in conversations)
            legacy_writes = 0
            for conv in conversations:
                listed = storage.list_audio_chunks(conv.uid, conv.conversation_id, context=ctx)
                objects += len(listed)
                stored += sum(o["size"] for o in listed)
                merged = storage.download_merged_audio(conv.uid, conv.conversation_id, context=ctx)
                ok = (
                    merged.sample_count * 2 == len(conv.pcm)
                    and merged.sample_rate == conv.rate
                    and merged.start_us == round(conv.start * 1_000_000)
                )
                exact += ok
                if not ok:
                    print(
                        f"MISMATCH {conv.conversation_id}: {merged.sample_count} samples "
                        f"read, {len(conv.pcm) // 2} pushed",
                        file=sys.stderr,
                    )
                legacy_writes += -(-len(conv.pcm) // (2 * int(LEGACY_CHUNK_SECONDS * conv.rate)))
                write_wav(OUT / f"{conv.conversation_id}.wav", merged.pcm, merged.sample_rate)
        chunks = calls.get("xadd", 0)
        rows = [
            (
                "sessions",
                f"{SESSIONS} ({len(conversations)} conversations, 8 and 16 kHz, "
                "standard and enhanced, 1 switch, 1 gap)",
            ),
            ("audio pushed", f"{audio_seconds:,.1f} s"),
            (
                "objects written",
                f"{objects} (~{audio_seconds / max(objects, 1):.1f} s of audio each)",
            ),
            (
                "GCS object writes",
                f"{object_writes} (old 5 s path: {legacy_writes}, "
                f"{legacy_writes / max(object_writes, 1):.1f}x more)",
            ),
            (
                "bytes stored",
                f"{stored:,} vs {raw:,} raw PCM ({raw / max(stored, 1):.1f}x smaller)",
            ),
            (
                "Redis commands",
                f"{sum(calls.values()):,} in all, broker included; "
                f"XADD {chunks:,}, MULTI {calls.get('multi', 0):,}",
            ),
            ("round trip", f"{exact}/{len(conversations)} conversations sample-exact"),
            ("WAV files", f"{OUT}/ ({len(conversations)} files)"),
            ("elapsed", f"{time.monotonic() - started:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        print()
        for key, value in rows:
            print(f"  {key:<{width}}  {value}")
    if exact != len(conversations):
        print(f"round trip FAILED; logs kept in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
