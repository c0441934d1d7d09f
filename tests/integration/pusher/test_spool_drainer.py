"""``python -m backend_hooks.spool_cli drain --watch``: the spool drainer as a real process on
a spool that real pusher processes left (killed with SIGKILL while Redis was stopped),
against a real valkey stopped and started again. Every run audits the sessions' streams
by identity afterwards: each chunk sequence once, in order, with all its samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from tests.integration.pusher.drainer_processes import chunks, dead_pushers, drainers
from tests.integration.pusher.pusher_outage import spool_env, spool_files, stream, wait_for

pytestmark = pytest.mark.integration


def test_a_watching_drainer_drains_a_dead_pushers_spool_and_exits_0_on_sigterm(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    [keys] = dead_pushers(env, 1, 8)
    assert len(spool_files(spool_dir)) == 8
    own_redis.start()
    with drainers(env, tmp_path, 1, "--interval", "0.3") as [drainer]:
        assert wait_for(lambda: stream(own_redis.url, keys) == chunks(8), 60)
        assert wait_for(lambda: drainer.metric("audiosync_spool_files") == 0, 30)
        served = drainer.metrics()
        assert served["audiosync_spool_drained_entries_total"] == 8
        assert served["audiosync_spool_drain_errors_total"] == 0
        assert served["audiosync_spool_bytes"] == 0
        assert served["audiosync_spool_oldest_file_age_seconds"] == 0
        assert drainer.terminate() == 0
        log = drainer.text()
    assert "appended 8 entries" in log and "stopped" in log
    assert "\r" not in log and "8/8" not in log  # logs, no progress bar
    assert not spool_files(spool_dir)
    assert stream(own_redis.url, keys) == chunks(8)


def test_a_watching_drainer_counts_redis_errors_and_drains_everything_once_redis_is_back(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    [keys] = dead_pushers(env, 1, 8)
    with drainers(env, tmp_path, 1, "--interval", "0.2", "--max-backoff", "1") as [drainer]:
        assert wait_for(lambda: drainer.metric("audiosync_spool_drain_errors_total") >= 3, 60)
        assert drainer.process.poll() is None  # Redis errors do not kill it
        waiting = drainer.metrics()
        assert waiting["audiosync_spool_files"] == 8
        assert waiting["audiosync_spool_bytes"] > 8 * 1000  # Opus of noise: kilobytes a chunk
        assert waiting["audiosync_spool_oldest_file_age_seconds"] > 0
        assert waiting["audiosync_spool_drained_entries_total"] == 0
        own_redis.start()
        assert wait_for(lambda: stream(own_redis.url, keys) == chunks(8), 60)
        assert wait_for(lambda: drainer.metric("audiosync_spool_files") == 0, 30)
        assert drainer.metric("audiosync_spool_drained_entries_total") == 8
        assert drainer.terminate() == 0
        log = drainer.text()
    assert "next pass in" in log and "errors" in log
    assert stream(own_redis.url, keys) == chunks(8)  # nothing twice
    assert not spool_files(spool_dir)


def test_two_drainers_on_one_directory_append_every_entry_exactly_once(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """Two drainers on the spools of four dead pushers while Redis is stopped: each adopts
    a directory of its own (a failed append ends a pass, and a drainer tries what it holds
    first), so when Redis is back both drain at once. The first is stopped (SIGTERM) as
    soon as anything has been appended; the second appends the rest. Each entry is
    appended by exactly one of them (their counts add up to the entries) and every stream
    holds each chunk once, in order."""
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    sessions = dead_pushers(env, 4, 40)
    assert len(spool_files(spool_dir)) == 160
    args = ("--interval", "0.1", "--max-backoff", "0.5")
    with drainers(env, tmp_path, 2, *args) as [first, second]:
        assert wait_for(lambda: len(_adopters(spool_dir)) == 2, 60), _adopters(spool_dir)
        own_redis.start()

        def appended() -> int:
            return sum(len(stream(own_redis.url, keys)) for keys in sessions)

        assert wait_for(lambda: appended() > 0, 60)
        assert first.terminate() == 0
        assert wait_for(lambda: appended() == 160, 60)
        assert wait_for(lambda: second.metric("audiosync_spool_files") == 0, 30)
        by_second = second.metric("audiosync_spool_drained_entries_total")
        assert second.terminate() == 0
    by_first = _appended_count(first.text())
    assert by_first + by_second == 160, (by_first, by_second)
    for keys in sessions:
        assert stream(own_redis.url, keys) == chunks(40)
    assert not spool_files(spool_dir)


def _adopters(spool_dir: Path) -> set[str]:
    """The owners that hold an adopted directory (``<dead>~<adopter>``) now."""
    return {p.name.split("~", 1)[1] for p in spool_dir.iterdir() if "~" in p.name}


def _appended_count(log: str) -> int:
    """The entries a drainer says it appended since it started (its last log line)."""
    line = next(li for li in reversed(log.splitlines()) if "since it started" in li)
    return int(line.split("appended ", 1)[1].split(" ", 1)[0])


def test_a_session_redis_refuses_does_not_hold_back_other_dead_pushers_spools(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """Redis refuses one session's appends (WRONGTYPE: its stream key holds a string). The
    drainer keeps that session's files, counts the errors, and still drains a dead
    pusher's spool that appears later; once the key is cleared, the first one too."""
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    unreachable = {**env, "AUDIOSYNC_REDIS_URL": "redis://127.0.0.1:1/0"}  # the pushers spool
    [refused] = dead_pushers(unreachable, 1, 3)
    client = redis.Redis.from_url(own_redis.url)
    client.set(refused.chunks, b"not a stream")
    with drainers(env, tmp_path, 1, "--interval", "0.2", "--max-backoff", "0.5") as [drainer]:
        assert wait_for(lambda: drainer.metric("audiosync_spool_drain_errors_total") >= 2, 60)
        [later] = dead_pushers(unreachable, 1, 3)
        assert wait_for(lambda: stream(own_redis.url, later) == chunks(3), 60)
        assert len(spool_files(spool_dir)) == 3  # the refused session's, kept
        client.delete(refused.chunks)  # the operator clears the collision
        assert wait_for(lambda: stream(own_redis.url, refused) == chunks(3), 60)
        assert wait_for(lambda: not spool_files(spool_dir), 30)
        assert drainer.terminate() == 0
    assert stream(own_redis.url, later) == chunks(3)
