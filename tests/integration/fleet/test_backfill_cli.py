"""``celery -A workers audiosync backfill`` as operators run it, and its Celery task on a
real worker of the ``audiosync.backfill`` queue (``celery -A workers worker -Q
audiosync.backfill``), against
the session's valkey and fake-gcs-server."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import storage
from backend_hooks.adapters.gcs import GcsBucket
from backend_hooks.contract import naming
from backend_hooks.contract.errors import ConfigError
from backend_hooks.contract.settings import Settings
from tests.integration.commands import as_json, celery
from tests.legacy_objects import write_legacy
from tests.legacy_opus import write_legacy_opus
from workers import backfill, tasks

pytestmark = pytest.mark.integration
SECRET = "backfill-cli-secret-0123456789abcdef"
T0 = float(int(time.time())) - 2 * 3600


@pytest.fixture(scope="module")
def env(stack: StackInfo) -> dict[str, str]:
    return {**stack.env(), "ENCRYPTION_SECRET": SECRET}


@pytest.fixture(scope="module")
def bucket(env: dict[str, str]) -> GcsBucket:
    return GcsBucket.from_settings(Settings.from_env(env, role="backfill"))


def conversation(bucket: GcsBucket, uid: str, cid: str) -> list[str]:
    """A plain and a sealed raw source at 16 kHz and a legacy Opus one; their paths."""
    return [
        write_legacy(bucket, uid, cid, ".bin", [T0], [speech_like(2, 16000, seed=1)]),
        write_legacy(
            bucket,
            uid,
            cid,
            ".enc",
            [T0 + 2],
            [speech_like(2, 16000, seed=2)],
            secret=SECRET.encode(),
        ),
        write_legacy(bucket, uid, cid, ".bin", [T0 + 4], [speech_like(2, 16000, seed=3)]),
        write_legacy_opus(bucket, uid, cid, ".opus", T0 + 6, speech_like(1, 16000, seed=4)),
    ]


def listed(bucket: GcsBucket, uid: str) -> list[str]:
    return sorted(o.name for o in bucket.list(f"chunks/{uid}/"))


def test_the_command_backfills_reports_and_a_second_run_writes_nothing(
    env: dict[str, str], bucket: GcsBucket
) -> None:
    uid = f"bfcli-{uuid.uuid4().hex[:8]}"
    sources = conversation(bucket, uid, "a") + conversation(bucket, uid, "b")
    dry = celery("audiosync", "backfill", "--uid", uid, "--dry-run", "--json", env=env)
    report = as_json(dry)
    assert report["dry_run"] and len(report["would_write"]) == 4 and report["written"] == []
    assert listed(bucket, uid) == sorted(sources)

    done = celery("audiosync", "backfill", "--uid", uid, env=env)
    assert done.returncode == 0, done.stderr
    assert "backfilling" in done.stderr  # the progress bar
    assert "wrote 4 object(s), 0 already stored; verified 4; deleted 0" in done.stdout
    assert "GCS operations: list 1, get" in done.stdout and "put 4, delete 0" in done.stdout

    again = as_json(celery("audiosync", "backfill", "--uid", uid, "--json", env=env))
    assert again["written"] == [] and again["already_stored"] == []
    assert again["ops"]["put"] == 0 and len(again["verified"]) == 4

    one = as_json(
        celery(
            "audiosync",
            "backfill",
            "--uid",
            uid,
            "--conversation",
            "a",
            "--delete",
            "--json",
            env=env,
        )
    )
    assert sorted(one["deleted"]) == [p for p in sources if "/a/" in p]
    assert one["conversations"] == 1 and one["legacy_objects_after"] == 0
    left = listed(bucket, uid)
    assert [p for p in left if "/a/" in p and not naming.parse_object_name(p).is_new] == []

    bad = celery("audiosync", "backfill", "--uid", "no/such", env=env)
    assert bad.returncode != 0 and "uid" in bad.stderr and "Traceback" not in bad.stderr
    rate = celery("audiosync", "backfill", "--uid", uid, "--sample-rate", "11025", env=env)
    assert rate.returncode != 0 and "11025" in rate.stderr


def test_without_opuslib_the_command_says_what_to_install(
    env: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "no-opus" / "opuslib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("opuslib is blocked by the test")\n')
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    done = celery("audiosync", "backfill", "--uid", "u", env={**env, "PYTHONPATH": path})
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "needs opuslib and libopus" in done.stderr and ".[fleet,reader]" in done.stderr
    # The status command of the same key-less, opus-less host still works.
    assert celery("audiosync", "status", env={**env, "PYTHONPATH": path}).returncode == 0


def test_the_task_refuses_clearly_where_opuslib_is_missing(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> Any:
        raise ConfigError("backfill ... needs opuslib and libopus (blocked by the test)")

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(backfill, "load_codec", missing)
    result = tasks.backfill_conversation.run("u", "c")
    assert result == {
        "uid": "u",
        "conversation_id": "c",
        "error": "backfill ... needs opuslib and libopus (blocked by the test)",
    }


@pytest.fixture
def backfill_worker(env: dict[str, str], tmp_path: Path) -> Iterator[processes.CeleryProcess]:
    """A worker of the backfill queue only, as deployed: `-Q audiosync.backfill`, with the
    key."""
    redis.Redis.from_url(env["AUDIOSYNC_REDIS_URL"]).flushall()
    args = [
        "worker",
        "-Q",
        tasks.BACKFILL_QUEUE,
        "--loglevel=INFO",
        "--concurrency=2",
        "--hostname=backfill@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    with processes.CeleryProcess("backfill", args, env, tmp_path / "backfill.log") as worker:
        yield worker.start(" ready.")


def test_fleet_mode_runs_one_task_per_conversation_twice_at_once(
    env: dict[str, str], bucket: GcsBucket, backfill_worker: processes.CeleryProcess
) -> None:
    uid = f"bffleet-{uuid.uuid4().hex[:8]}"
    sources = conversation(bucket, uid, "a") + conversation(bucket, uid, "b")
    reader = storage.StorageContext.from_settings(Settings.from_env(env, role="reader"))
    before = {cid: storage.download_merged_audio(uid, cid, context=reader) for cid in "ab"}
    for _ in range(2):  # two operators at once: both sets of tasks race
        sent = as_json(
            celery(
                *("audiosync", "backfill", "--uid", uid, "--fleet", "--delete", "--json"),
                *("--inspect-timeout", "10"),  # a loaded machine's worker answers late
                env=env,
            )
        )
        assert sent == {
            "enqueued": ["a", "b"],
            "queue": "audiosync.backfill",
            "consumers": [f"backfill@{socket.gethostname()}"],
            "warnings": [],
        }
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        log = backfill_worker.log.read_text(errors="replace")
        ends = [line for line in log.splitlines() if f"backfill {uid}/" in line]
        if sum(" conversation(s): " in line for line in ends) >= 4:  # each task's report
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"4 backfill tasks did not finish:\n{backfill_worker.tail()}")
    assert "Traceback" not in log and "FAILED" not in log, backfill_worker.tail()
    left = listed(bucket, uid)
    assert not set(left) & set(sources)  # every legacy object verified and deleted
    # The race may have sealed one group twice (same session): a last run drops the copy.
    final = as_json(celery("audiosync", "backfill", "--uid", uid, "--delete", "--json", env=env))
    assert final["written"] == [] and final["failed"] == [], final
    objects = bucket.list(f"chunks/{uid}/")
    sessions = [o.metadata["audiosync-session"] for o in objects]
    assert len(sessions) == len(set(sessions)) == 4
    for cid in "ab":
        after = storage.download_merged_audio(uid, cid, context=reader)
        assert (after.start_us, after.sample_count) == (
            before[cid].start_us,
            before[cid].sample_count,
        )
