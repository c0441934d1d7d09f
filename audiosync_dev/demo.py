"""The demo: the whole pipeline on embedded servers, faster than real time.

Starts valkey and fake-gcs-server, a real ``celery -A workers worker``, ``celery beat``
(the periodic sweep) and Flower on loopback; streams 20 sessions of speech-like audio
through the asyncio pusher API (8 and 16 kHz, both protection levels, one conversation
switch, one gap); waits until every stream is drained; reads every conversation back;
prints what it cost; writes one WAV per conversation under ``demo-out/``.

Every ``AUDIOSYNC_*`` setting (and ``ENCRYPTION_SECRET``) in the environment is honoured;
the demo's own defaults (``DEMO_DEFAULTS``) apply only where one is unset, and the
addresses of its own servers always win. Its servers' and processes' logs are in a
``audiosync-demo-*`` directory under the temp dir: removed when the demo passes, kept (and
named) when it fails.

Run it with ``make demo`` (``python -m audiosync_dev.demo --help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import wave
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from audiosync_dev import processes
from audiosync_dev.localstack import LocalStack, LocalStackError
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import redis_keys
from backend_hooks.contract.errors import AudioSyncError, EnqueueError
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.session import Session

SESSIONS = 20
T0 = float(int(time.time()))  # synthetic timestamps from now on: pushed faster than real time
PUSH_SECONDS = 0.1  # one push per 100 ms of audio, as a pusher's websocket frames
OUT = Path("demo-out")
LEGACY_CHUNK_SECONDS = 5.0
#: Settings of the demo where the environment has none (an empty value counts as none).
DEMO_DEFAULTS = {
    "ENCRYPTION_SECRET": "demo-secret-not-for-production-0123456789",
    "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "1",
}
#: Generous bounds for waits whose length is the machine's speed (a busy laptop included).
ENCODE_TIMEOUT = 600.0  # the pusher encodes and appends the audio handed over
DRAIN_TIMEOUT = 300.0  # the fleet flushes every stream
FLOWER_TIMEOUT = 60.0
#: Errors that say what went wrong on their own: no traceback.
EXPECTED_ERRORS = (AudioSyncError, LocalStackError, processes.ProcessError, redis.RedisError)


class DemoError(RuntimeError):
    """A step of the demo did not finish in time; the message says which."""


class Interrupted(Exception):
    """Ctrl-C: the demo stops at its next step, pusher first, servers last."""


class CtrlC:
    """Ctrl-C noted, then acted on at the demo's next step (``check``).

    Python's own Ctrl-C raises KeyboardInterrupt wherever the main thread is: inside a
    finalizer it is printed as "Exception ignored" and lost, inside ``asyncio.run``'s
    loop set-up it leaves a traceback, and a cancellation that meets a finished
    ``wait_for`` is swallowed; the demo then ran on to the end and exited 0. A second
    Ctrl-C raises KeyboardInterrupt at once, for a demo stuck in a step."""

    def __init__(self) -> None:
        self.pressed = threading.Event()

    def handle(self, signum: int, frame: object) -> None:
        if self.pressed.is_set():
            raise KeyboardInterrupt
        self.pressed.set()

    def check(self) -> None:
        if self.pressed.is_set():
            raise Interrupted("Ctrl-C")

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """``handle`` as the SIGINT handler for the block, the previous one after it. A
        SIGINT ignored by whoever started the demo (a background job of a shell without job
        control: the terminal's Ctrl-C is not for it) stays ignored, as Python leaves it."""
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN:
            yield
            return
        signal.signal(signal.SIGINT, self.handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


#: The demo's Ctrl-C, installed by ``main``.
CTRL_C = CtrlC()


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


def plans(sessions: int = SESSIONS) -> list[Plan]:
    out = []
    for i in range(sessions):
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


async def push_session(
    client: AudioSyncClient, plan: Plan, progress: Progress
) -> tuple[Session, list[Conversation]]:
    """Hand the plan's audio over to a new session, faster than real time; not closed."""
    uid = f"demo-user-{plan.index:02d}"
    start = T0 + 3 * plan.index
    conv = Conversation(uid, f"demo-conv-{plan.index:02d}", plan.rate, start)
    conversations = [conv]
    pcm = speech_like(plan.seconds, plan.rate, seed=plan.index)
    session = client.open_session(uid, conv.conversation_id, plan.rate, plan.level)
    step = 2 * round(PUSH_SECONDS * plan.rate)
    shift = 0.0  # seconds of gap inserted so far
    for offset in range(0, len(pcm), step):
        CTRL_C.check()
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
    return session, conversations


async def wait_encoded(sessions: list[Session], timeout: float = ENCODE_TIMEOUT) -> None:
    """Until every chunk handed over is encoded and in Redis.

    A pusher fed in real time has encoded a call's audio by the time the call ends; the
    demo hands half an hour of audio over in a second. Closing at once would make each
    close wait for the encoding of that whole backlog on the client's thread pool (shared
    by all sessions), and a busy machine runs past ``AUDIOSYNC_CLOSE_SECONDS`` (10 s)."""
    deadline = time.monotonic() + timeout
    while any(s.unsent_chunks for s in sessions):
        CTRL_C.check()
        if time.monotonic() > deadline:
            left = sum(s.unsent_chunks for s in sessions)
            raise DemoError(f"{left} chunks still not encoded and appended after {timeout:.0f} s")
        await asyncio.sleep(0.1)


class Progress:
    """Audio seconds pushed so far and chunks left to encode, drawn as a bar when stdout
    is a terminal."""

    def __init__(self, client: AudioSyncClient, total_seconds: float) -> None:
        self.client = client
        self.total = total_seconds
        self.done = 0.0
        self.tty = sys.stdout.isatty()

    def draw(self, final: bool = False) -> None:
        if not self.tty:
            return
        filled = min(30, round(30 * self.done / self.total))
        queued = self.client.stats().queued_chunks
        print(
            f"\r  pushing [{'#' * filled}{'.' * (30 - filled)}] "
            f"{self.done:,.0f}/{self.total:,.0f} s of audio, {queued:4d} chunks to encode",
            end="\n" if final else "",
            flush=True,
        )

    async def run(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(0.25)


async def push_all(client: AudioSyncClient, sessions: int) -> list[Conversation]:
    """Every session's audio handed over, encoded and appended; then every session closed
    and the client with them (``aclose``)."""
    all_plans = plans(sessions)
    progress = Progress(client, sum(p.seconds for p in all_plans))
    drawer = asyncio.create_task(progress.run())
    try:
        results = await asyncio.gather(*(push_session(client, p, progress) for p in all_plans))
        await wait_encoded([session for session, _ in results])
        CTRL_C.check()
        await client.aclose()
    finally:
        drawer.cancel()
    progress.draw(final=True)
    return [c for _, group in results for c in group]


def stop_pusher(client: AudioSyncClient, *, retry_close: bool) -> None:
    """The pusher's threads end here, before the demo stops its servers (else they would
    go on appending to a stopped Redis). ``close`` is idempotent: after a clean ``aclose``
    it returns at once; after a failure it tries the sessions' tails once more; if that
    fails too, or ``retry_close`` is false (Ctrl-C), the pool finishes its running tasks and
    drops the rest, which the demo's servers would not outlive anyway."""
    if retry_close:
        try:
            client.close()
            return
        except EnqueueError:
            pass
    client.executor.shutdown(wait=True, cancel_futures=True)


def wait_drained(client: redis.Redis, timeout: float = DRAIN_TIMEOUT) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        CTRL_C.check()
        # An empty sorted set is no key: no due index left means no session is due.
        due = client.keys(redis_keys.DUE_KEY_PATTERN)
        if not due and not client.keys(redis_keys.session_key_pattern("chunks")):
            return time.monotonic() - started
        time.sleep(0.2)
    raise DemoError(f"streams not drained after {timeout:.0f} s")


def demo_env(stack_env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of the demo's pusher, fleet and reader: ``environ`` (every setting
    the user has set is honoured), ``DEMO_DEFAULTS`` where it has none, and the stack's
    addresses over both: the demo talks to its own servers only, never to a cluster."""
    unset = {k: v for k, v in DEMO_DEFAULTS.items() if not environ.get(k)}
    return {**environ, **unset, **stack_env, "AUDIOSYNC_REDIS_CLUSTER": "0"}


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in stats.items()}


def write_wav(path: Path, pcm: bytes | bytearray, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)


@dataclass
class ReadBack:
    exact: int = 0  # conversations read back sample-exact
    objects: int = 0
    stored: int = 0  # bytes
    legacy_writes: int = 0  # what the old 5 s path would have written


def read_back(conversations: list[Conversation], ctx: storage.StorageContext) -> ReadBack:
    """Every conversation read back and checked; one WAV each under ``OUT``."""
    OUT.mkdir(exist_ok=True)
    out = ReadBack()
    for conv in conversations:
        CTRL_C.check()
        listed = storage.list_audio_chunks(conv.uid, conv.conversation_id, context=ctx)
        out.objects += len(listed)
        out.stored += sum(o["size"] for o in listed)
        merged = storage.download_merged_audio(conv.uid, conv.conversation_id, context=ctx)
        ok = (
            merged.sample_count * 2 == len(conv.pcm)
            and merged.sample_rate == conv.rate
            and merged.start_us == round(conv.start * 1_000_000)
        )
        out.exact += ok
        if not ok:
            print(
                f"MISMATCH {conv.conversation_id}: {merged.sample_count} samples "
                f"read, {len(conv.pcm) // 2} pushed",
                file=sys.stderr,
            )
        out.legacy_writes += -(-len(conv.pcm) // (2 * int(LEGACY_CHUNK_SECONDS * conv.rate)))
        write_wav(OUT / f"{conv.conversation_id}.wav", merged.pcm, merged.sample_rate)
    return out


def print_report(
    sessions: int,
    conversations: list[Conversation],
    back: ReadBack,
    object_writes: int,
    calls: dict[str, int],
    elapsed: float,
) -> None:
    raw = sum(len(c.pcm) for c in conversations)
    audio_seconds = sum(len(c.pcm) / 2 / c.rate for c in conversations)
    rows = [
        (
            "sessions",
            f"{sessions} ({len(conversations)} conversations, 8 and 16 kHz, "
            "standard and enhanced, 1 switch, 1 gap)",
        ),
        ("audio pushed", f"{audio_seconds:,.1f} s"),
        (
            "objects written",
            f"{back.objects} (~{audio_seconds / max(back.objects, 1):.1f} s of audio each)",
        ),
        (
            "GCS object writes",
            f"{object_writes} (old 5 s path: {back.legacy_writes}, "
            f"{back.legacy_writes / max(object_writes, 1):.1f}x more)",
        ),
        (
            "bytes stored",
            f"{back.stored:,} vs {raw:,} raw PCM ({raw / max(back.stored, 1):.1f}x smaller)",
        ),
        (
            "Redis commands",
            f"{sum(calls.values()):,} in all, broker included; "
            f"XADD {calls.get('xadd', 0):,}, MULTI {calls.get('multi', 0):,}",
        ),
        ("round trip", f"{back.exact}/{len(conversations)} conversations sample-exact"),
        ("WAV files", f"{OUT}/ ({len(conversations)} files)"),
        ("elapsed", f"{elapsed:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def push(client: AudioSyncClient, sessions: int) -> list[Conversation]:
    """``push_all`` on an event loop; whatever happens, the pusher's threads have ended
    when this returns or raises."""
    try:
        return asyncio.run(push_all(client, sessions))
    except BaseException as exc:
        stop_pusher(client, retry_close=not isinstance(exc, (KeyboardInterrupt, Interrupted)))
        raise


def run(workdir: Path, sessions: int) -> bool:
    """The demo in ``workdir``; True if every conversation read back sample-exact.

    Stopped in order: the pusher (``push``), then Flower, beat and the worker, then the
    servers, so that nothing talks to a server that is gone."""
    started = time.monotonic()
    stack = LocalStack(workdir=workdir / "stack")
    with stack as info:
        env = demo_env(info.env(), os.environ)
        os.environ.update(env)
        settings = Settings.from_env(env)
        CTRL_C.check()
        r = redis.Redis.from_url(info.redis_url)
        print(f"local stack up: valkey {info.redis_url}, fake-gcs-server {info.gcs_url}")
        with (
            processes.worker(env, workdir, beat=False) as _worker,
            processes.beat(env, workdir) as _beat,
            processes.flower(env, workdir) as flower,
        ):
            with urllib.request.urlopen(f"{flower.url}/", timeout=FLOWER_TIMEOUT) as page:
                print(f"Flower: {flower.url} (answered {page.status})")
            CTRL_C.check()
            r.config_resetstat()
            writes_before = sum(q.is_object_write for q in stack.gcs_requests())
            pushed_at = time.monotonic()
            conversations = push(AudioSyncClient(settings), sessions)
            push_time = time.monotonic() - pushed_at
            drain_time = wait_drained(r)
            calls = command_calls(r)
            object_writes = sum(q.is_object_write for q in stack.gcs_requests()) - writes_before
            print(
                f"pushed {sessions} sessions in {push_time:.1f} s, drained {drain_time:.1f} s later"
            )
            back = read_back(conversations, storage.StorageContext.from_settings(settings))
        r.close()
        elapsed = time.monotonic() - started
        print_report(sessions, conversations, back, object_writes, calls, elapsed)
    if back.exact != len(conversations):
        print("round trip FAILED", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audiosync_dev.demo",
        description="The whole pipeline on embedded servers: push, flush, read back, report.",
    )
    parser.add_argument(
        "--sessions", type=int, default=SESSIONS, help=f"sessions to push (2 or more; {SESSIONS})"
    )
    args = parser.parse_args(argv)
    if args.sessions < 2:
        parser.error("--sessions must be 2 or more (one switches conversation, one has a gap)")
    # Warnings of the pusher and reader, readable; the servers and celery log to files.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="audiosync-demo-"))
    try:
        with CTRL_C.installed():
            passed = run(workdir, args.sessions)
            CTRL_C.check()  # a Ctrl-C during the last step
    except (KeyboardInterrupt, Interrupted):
        print("\ndemo interrupted", file=sys.stderr)
        say_where_logs_are(workdir)
        return 130
    except Exception as exc:
        if not isinstance(exc, (*EXPECTED_ERRORS, DemoError)):
            traceback.print_exc()
        print(f"demo FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        passed = False
    if not passed:
        say_where_logs_are(workdir)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def say_where_logs_are(workdir: Path) -> None:
    logs = ", ".join(sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*.log")))
    print(f"its logs are kept in {workdir} ({logs or 'none written'})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
