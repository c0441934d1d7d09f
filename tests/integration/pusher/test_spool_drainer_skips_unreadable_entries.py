"""One spool entry the drainer cannot read, list or probe never stops or blocks the drain.

A dead pusher's entry file that is not a regular file (a FIFO, whose open would wait for a
writer forever; a directory; a dangling symlink) or that the drainer may not read
(another user's file, mode 000) is quarantined with its reason and counted; the session's
other chunks are appended once each, in order. An owner directory whose lease or lock the
drainer cannot probe (another user's, mode 000 or 0600) is skipped with a logged, counted
reason, never adopted (its owner may live); every other dead pusher's spool is drained.

The refusals (EACCES, EIO) are raised at the drainer's os and io calls by a seam in its
process: the tests run as root, whom a mode of 000 does not stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from tests.integration.commands import ROOT
from tests.integration.pusher.drainer_processes import chunks, dead_pushers, drainers
from tests.integration.pusher.pusher_outage import spool_env, spool_files, stream, wait_for

pytestmark = pytest.mark.integration


def skipped(metrics: dict[str, float], reason: str) -> float:
    return sum(
        value
        for name, value in metrics.items()
        if name.startswith("audiosync_spool_skipped_entries_total{") and f"reason={reason}" in name
    )


def reasons(spool_dir: Path) -> list[str]:
    return sorted(p.read_text() for p in (spool_dir / "quarantine").glob("*.reason"))


@pytest.mark.parametrize("kind", ["fifo", "directory", "dangling-symlink"])
def test_an_entry_that_is_not_a_regular_file_is_quarantined_and_the_rest_drained(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path, kind: str
) -> None:
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    [keys] = dead_pushers(env, 1, 4)
    second = sorted(spool_files(spool_dir))[1]
    second.unlink()
    if kind == "fifo":
        os.mkfifo(second)
    elif kind == "directory":
        second.mkdir()
    else:
        second.symlink_to(tmp_path / "nowhere")
    own_redis.start()
    with drainers(env, tmp_path, 1, "--interval", "0.2", "--max-backoff", "0.5") as [drainer]:
        expected = [chunks(4)[0], *chunks(4)[2:]]
        assert wait_for(lambda: stream(own_redis.url, keys) == expected, 60), drainer.text()
        assert wait_for(lambda: drainer.metric("audiosync_spool_files") == 0, 30)
        assert wait_for(lambda: drainer.metric("audiosync_spool_quarantined_files") == 1, 30)
        served = drainer.scrape()
        assert skipped(served, "unreadable_file") == 1
        assert drainer.terminate() == 0
        log = drainer.text()
    assert "quarantined" in log
    assert not [p for p in spool_dir.iterdir() if "~" in p.name]  # emptied and removed
    [reason] = reasons(spool_dir)
    assert "not a regular file" in reason or "Too many levels" in reason
    assert stream(own_redis.url, keys) == expected  # nothing twice


#: The drainer, with the kernel refusing what the test names (SPOOL_TEST_REFUSE, JSON):
#: the seam is the os/io call itself (open, stat, listdir), so every line of the drainer
#: that touches such a path meets the error a real refusal raises. The tests run as root,
#: which a mode of 000 does not stop, and the venv's interpreter is not another user's.
REFUSING_DRAINER = """
import errno, io, json, os, sys, time

refuse = json.loads(os.environ["SPOOL_TEST_REFUSE"])


def refused(call, path, reading):
    path = os.fsdecode(path)
    name = os.path.basename(path)
    for directory in refuse["closed_directories"]:  # mode 000: not listed, nothing inside
        inside = "/" + directory + "/" in path
        if inside or (path.endswith("/" + directory) and call != "stat"):
            return errno.EACCES
    for directory in refuse["foreign_locks"]:  # another user's .lock, mode 0600
        if path.endswith("/" + directory + "/.lock") and call == "open":
            return errno.EACCES
    for directory in refuse.get("hanging_directories", []):  # an NFS server gone: hard mount
        hang = os.access(refuse["hang_from"], os.F_OK)
        if hang and "/" + directory in path and call == "list":
            time.sleep(3600)
    for stem in refuse["unreadable_files"]:  # EIO on read: a bad block
        if reading and name.startswith(stem) and not name.endswith(".reason"):
            return errno.EIO
    return None


def guard(call, kind, reading):
    def guarded(path, *args, **kwargs):
        if isinstance(path, (str, bytes, os.PathLike)):
            mode = args[0] if args else kwargs.get("mode", kwargs.get("flags", "r"))
            code = refused(kind, path, reading(mode))
            if code is not None:
                raise OSError(code, os.strerror(code), os.fsdecode(path))
        return call(path, *args, **kwargs)
    return guarded


os.open = guard(os.open, "open", lambda flags: flags & os.O_ACCMODE == os.O_RDONLY)
io.open = guard(io.open, "open", lambda mode: "r" in mode and "+" not in mode)
os.stat = guard(os.stat, "stat", lambda _mode: False)
os.lstat = guard(os.lstat, "stat", lambda _mode: False)
os.listdir = guard(os.listdir, "list", lambda _mode: False)
os.scandir = guard(os.scandir, "list", lambda _mode: False)

from backend_hooks.pusher import spool_cli

sys.exit(spool_cli.main(sys.argv[1:]))
"""


def test_entries_the_drainer_cannot_read_or_probe_are_skipped_and_the_rest_drained(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """Three dead pushers: one with a chunk file whose read fails (EIO), one whose directory
    the drainer may not enter (mode 000), one whose lock file it may not open (another
    user's, 0600). The first is drained around its unreadable chunk (quarantined); the
    other two are skipped, counted and logged every pass, never adopted (their owners may
    live), their files untouched; nothing stops the drain."""
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    sessions = dead_pushers(env, 3, 3)
    directory = {
        keys.session_id: next(p.parent for p in spool_files(spool_dir) if keys.session_id in p.name)
        for keys in sessions
    }
    readable, closed, locked = (directory[k.session_id] for k in sessions)
    unreadable = sorted(p for p in spool_files(spool_dir) if p.parent == readable)[1]
    refuse = {
        "closed_directories": [closed.name],
        "foreign_locks": [locked.name],
        "unreadable_files": [unreadable.name.rsplit(".", 1)[0]],
    }
    env = {**env, "SPOOL_TEST_REFUSE": json.dumps(refuse)}
    own_redis.start()
    args = ("--interval", "0.2", "--max-backoff", "0.5")
    program = ("-c", REFUSING_DRAINER)
    with drainers(env, tmp_path, 1, *args, program=program) as [drainer]:
        expected = [chunks(3)[0], chunks(3)[2]]
        assert wait_for(lambda: stream(own_redis.url, sessions[0]) == expected, 60), drainer.text()
        # The lock is probed once the lease is older than AUDIOSYNC_SPOOL_LEASE_SECONDS.
        assert wait_for(lambda: f"{locked.name} skipped (unprobeable_owner)" in drainer.text(), 60)
        assert wait_for(lambda: skipped(drainer.scrape(), "unprobeable_owner") >= 4, 60)
        served = drainer.scrape()
        assert skipped(served, "unreadable_file") == 1
        assert drainer.metric("audiosync_spool_quarantined_files") == 1
        assert drainer.process.poll() is None
        assert drainer.terminate() == 0
        log = drainer.text()
    assert closed.name in log and locked.name in log
    assert "cannot be probed" in log
    assert closed.exists() and locked.exists()  # never adopted (renamed)
    assert len([p for p in spool_files(spool_dir) if p.parent in (closed, locked)]) == 6
    assert stream(own_redis.url, sessions[1]) == []
    assert stream(own_redis.url, sessions[2]) == []
    [reason] = reasons(spool_dir)
    assert "Input/output error" in reason


def test_status_and_a_one_shot_drain_name_what_they_cannot_read_and_go_on(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """``status`` lists an owner directory it may not enter as unreadable (not a crash);
    the one-shot ``drain`` appends the readable dead pusher's spool, leaves the other,
    and exits 2 (something remains)."""
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    sessions = dead_pushers(env, 2, 2)
    directory = {
        keys.session_id: next(p.parent for p in spool_files(spool_dir) if keys.session_id in p.name)
        for keys in sessions
    }
    closed = directory[sessions[1].session_id]
    refuse = {"closed_directories": [closed.name], "foreign_locks": [], "unreadable_files": []}
    env = {
        **os.environ,
        **{k: v for k, v in env.items() if k != "ENCRYPTION_SECRET"},
        "SPOOL_TEST_REFUSE": json.dumps(refuse),
    }
    own_redis.start()
    time.sleep(1.5)  # the lease (AUDIOSYNC_SPOOL_LEASE_SECONDS=1) of the last one goes stale

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", REFUSING_DRAINER, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    status = run("status")
    assert status.returncode == 0, status.stderr
    assert f"{closed.name}: cannot be listed" in status.stdout
    drained = run("drain")
    assert drained.returncode == 2, drained.stdout + drained.stderr
    assert "appended 2 entries" in drained.stdout
    assert stream(own_redis.url, sessions[0]) == chunks(2)
    assert stream(own_redis.url, sessions[1]) == []
    assert "cannot be probed" in drained.stderr


def test_a_drain_pass_that_hangs_shows_in_the_last_pass_time(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """A pass stuck in the volume (a hard NFS mount whose server is gone: a listing that
    never returns) freezes every spool gauge at its last value while the metrics port and
    the TCP probe still answer. ``audiosync_spool_drain_pass_timestamp_seconds`` (the end
    of the last pass) stops moving: AudiosyncSpoolNotDraining reads it."""
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()  # stays down: the dead pusher's files stay, listed every pass
    [keys] = dead_pushers(env, 1, 2)
    hanging = next(p.parent for p in spool_files(spool_dir))
    hang_from = tmp_path / "hang-now"
    refuse = {
        "closed_directories": [],
        "foreign_locks": [],
        "unreadable_files": [],
        "hanging_directories": [hanging.name],
        "hang_from": str(hang_from),
    }
    args = ("--interval", "0.2", "--max-backoff", "0.5")
    program = ("-c", REFUSING_DRAINER)
    env = {**env, "SPOOL_TEST_REFUSE": json.dumps(refuse)}
    name = "audiosync_spool_drain_pass_timestamp_seconds"
    with drainers(env, tmp_path, 1, *args, program=program) as [drainer]:
        assert wait_for(lambda: drainer.metric(name) > 0, 30)
        first = drainer.metric(name)
        assert wait_for(lambda: drainer.metric(name) > first, 30)  # passes go on
        hang_from.touch()
        time.sleep(2)  # the pass in flight hangs in its listing
        stuck = drainer.metric(name)
        time.sleep(3)  # several intervals and backoffs
        assert drainer.metric(name) == stuck
        assert drainer.process.poll() is None  # alive, serving, stuck
    own_redis.start()
    assert stream(own_redis.url, keys) == []


def test_the_last_pass_time_moves_pass_after_pass(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    with drainers(env, tmp_path, 1, "--interval", "0.2") as [drainer]:
        name = "audiosync_spool_drain_pass_timestamp_seconds"
        assert wait_for(lambda: drainer.metric(name) > 0, 30)
        first = drainer.metric(name)
        assert abs(first - time.time()) < 60
        assert wait_for(lambda: drainer.metric(name) > first, 30)
