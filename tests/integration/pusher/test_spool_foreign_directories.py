"""The spool takes only what pushers left: directories of its root that are not named as a
pusher's owner directory (``lost+found`` at the root of a volume, an operator's
``backups/``) are never adopted, renamed, drained or counted, even when they hold copies
of spool files. A real dead pusher (SIGKILLed) next to them is still adopted and drained."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks import AudioSyncClient
from backend_hooks.pusher import spool, spool_cli
from tests.integration.pusher.pusher_outage import (
    CHUNK,
    quick_client,
    settings_for,
    spool_env,
    spooling_pusher,
    stream,
    wait_for,
)

pytestmark = pytest.mark.integration


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_directories_that_are_not_a_pushers_are_left_alone(
    stack: StackInfo,
    own_redis: StandaloneValkey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    proc, keys = spooling_pusher("spool", 2, env)  # a pusher killed with two chunks spooled
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [dead] = [p for p in spool_dir.iterdir() if p.is_dir() and p.name != "quarantine"]
    (spool_dir / "lost+found").mkdir()
    backups = spool_dir / "backups"
    shutil.copytree(dead, backups)  # an operator's copy of the dead pusher's files
    (backups / "notes.txt").write_text("copied before the upgrade\n")
    stray = spool_dir / "host-12-nothex00"  # almost an owner's name, not quite
    stray.mkdir()
    foreign = {
        name: _tree(spool_dir / name) for name in ("lost+found", "backups", "host-12-nothex00")
    }
    own_redis.start()

    client = AudioSyncClient(
        settings_for(stack.env(), own_redis.url, spool_dir),
        redis_client=quick_client(own_redis.url),
    )
    try:
        chunks = [("chunk", seq, CHUNK) for seq in range(2)]
        assert wait_for(lambda: stream(own_redis.url, keys) == chunks)  # once, not 2 times
        assert wait_for(lambda: not dead.exists() and not list(spool_dir.glob("*~*")))
        stats = client.stats().spool
        assert stats is not None and stats.adopted_owners == 1 and stats.files == 0
    finally:
        client.close()
    assert {name: _tree(spool_dir / name) for name in foreign} == foreign  # untouched
    assert not list((spool_dir / "quarantine").iterdir())
    assert spool.count_files(spool_dir) == 0  # the copies are not the spool's
    assert spool_cli.main(["status", "--dir", str(spool_dir)]) == 0
    status = capsys.readouterr().out
    assert "0 entries wait" in status and "backups" not in status


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("pod-7c9f-1234-0a1b2c3d", True),
        ("host.example.com-1-ffffffff", True),
        ("pod-1-0a1b2c3d~other-2-deadbeef", True),  # adopted
        ("lost+found", False),
        ("backups", False),
        ("quarantine", False),
        (".pod-1-0a1b2c3d", False),  # an owner still making its directory
        ("pod-1-0A1B2C3D", False),
        ("pod-x-0a1b2c3d", False),
        ("pod-1-0a1b2c3d~backups", False),
        ("backups~pod-1-0a1b2c3d", False),
        ("a~b~c", False),
    ],
)
def test_an_owner_directory_is_known_by_its_name(name: str, owner: bool) -> None:
    assert spool.is_owner_directory(name) is owner


def test_a_pushers_own_directory_has_an_owners_name(tmp_path: Path) -> None:
    own = spool.Spool(tmp_path, max_bytes=1 << 20, lease_seconds=30)
    try:
        assert spool.is_owner_directory(own.owner)
        assert spool.is_owner_directory(f"{own.owner}~{own.owner}")
    finally:
        own.close()
