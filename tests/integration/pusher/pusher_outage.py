"""Shared helpers of the pusher outage tests: a Redis of their own, a client on it with
short timeouts, the chunks they push and a read of a session's stream by identity (with
what it should find), and a real pusher process that spools its chunks (to be killed: a
dead pusher's spool)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from backend_hooks.contract.entries import ChunkEntry, parse_entry
from backend_hooks.contract.redis_keys import SessionKeys
from backend_hooks.contract.settings import Settings
from tests.integration.commands import ROOT

SECRET = "outage-test-secret-0123456789abcdef"


#: What the outage tests push: 8 kHz, chunks of 5 s, from ``T0`` on.
RATE = 8000
CHUNK = 5 * RATE  # samples of one 5 s chunk
T0 = float(int(time.time()))


def expected(chunks: int, tail: int = 0) -> list[tuple[str, int, int]]:
    """What ``stream`` reads of a session of ``chunks`` whole chunks (and a ``tail`` of
    that many samples), closed: each chunk once, in order, then the end marker."""
    out = [("chunk", seq, CHUNK) for seq in range(chunks)]
    if tail:
        out.append(("chunk", chunks, tail))
    return [*out, ("end", -1, 0)]


def quick_client(url: str) -> redis.Redis:
    """No retries, 1 s timeouts: a stopped or stalled Redis is an error at once."""
    return redis.Redis.from_url(
        url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )


def settings_for(env: dict[str, str], url: str, spool: Path | None, **extra: str) -> Settings:
    values = {
        **env,
        "AUDIOSYNC_REDIS_URL": url,
        "ENCRYPTION_SECRET": SECRET,
        "AUDIOSYNC_SPOOL_LEASE_SECONDS": "1",
        "AUDIOSYNC_BREAKER_SECONDS": "0.3",
        "AUDIOSYNC_CLOSE_SECONDS": "5",
        **extra,
    }
    if spool is not None:
        values["AUDIOSYNC_SPOOL_DIR"] = str(spool)
    return Settings.from_env(values)


def stream(url: str, keys: SessionKeys) -> list[tuple[str, int, int]]:
    """(kind, seq, samples) of every entry of the session's stream, in stream order."""
    client = redis.Redis.from_url(url)
    try:
        raw = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(keys.chunks))
    finally:
        client.close()
    out = []
    for entry_id, fields in raw:
        entry = parse_entry(entry_id, fields)
        if isinstance(entry, ChunkEntry):
            out.append(("chunk", entry.seq, entry.samples))
        else:
            out.append(("end", -1, 0))
    return out


def wait_for(what: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return what()


def noise(samples: int, seed: int = 1) -> bytes:
    """Random PCM: Opus cannot squeeze it, so each chunk has a realistic size."""
    return random.Random(seed).randbytes(2 * samples)


def spool_files(root: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.parent.name != "quarantine"
        and p.suffix in (".open", ".ready", ".uploading", ".done")
    ]


PUSHER = """
import os, sys, time
from backend_hooks import AudioSyncClient
from backend_hooks.pusher import spool
from backend_hooks.contract.settings import Settings
from tests.integration.pusher.pusher_outage import noise, quick_client

mode, chunks = sys.argv[1], int(sys.argv[2])
settings = Settings.from_env(role="pusher")
if mode == "crash-after-append":
    real_done = spool.Spool.done
    def done(self, path):  # the dangerous line: appended, not yet renamed
        os.kill(os.getpid(), 9)
    spool.Spool.done = done
client = AudioSyncClient(settings, redis_client=quick_client(settings.redis_url))
session = client.open_session("u1", "c1", 8000, "enhanced")
t0 = float(int(time.time()))
for k in range(chunks):
    session.push(noise(40000, seed=k), t0 + 5 * k)
print(session.session_id, session.redis_keys.shard, session.spooled_entries, flush=True)
time.sleep(120)  # until killed
"""


def spooling_pusher(
    mode: str, chunks: int, env: dict[str, str]
) -> tuple[subprocess.Popen[str], SessionKeys]:
    """A pusher process that pushes ``chunks`` 5 s chunks of one session at 8 kHz while
    Redis is away (``mode`` "spool"; "crash-after-append": it SIGKILLs itself after its
    first append of spooled entries, before their rename), then sleeps until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PUSHER, mode, str(chunks)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    session_id, shard, spooled = proc.stdout.readline().split()
    assert int(spooled) == chunks  # every chunk went to the spool
    return proc, SessionKeys(session_id, int(shard))


def spool_env(env: dict[str, str], url: str, spool_dir: Path) -> dict[str, str]:
    """The environment of a pusher process (or the spool CLI) on ``url`` and ``spool_dir``."""
    settings_for(env, url, spool_dir)  # validates
    return {
        **env,
        "AUDIOSYNC_REDIS_URL": url,
        "ENCRYPTION_SECRET": SECRET,
        "AUDIOSYNC_SPOOL_DIR": str(spool_dir),
        "AUDIOSYNC_SPOOL_LEASE_SECONDS": "1",
        "AUDIOSYNC_BREAKER_SECONDS": "0.3",
    }
