"""The ``audiosync.backfill_conversation`` task's ``min_age_seconds``,
``delete`` and ``dry_run`` (``delete="false"`` from a producer is truthy).

The CLI bounds ``--min-age`` (``FloatRange(min=0)``), the task took whatever a producer
sent: NaN (every ``age < nan`` is False) or a negative age made every legacy object a
source, a live legacy uploader's newest one included (written, then deleted with
``delete``); a string crashed the task with a ``TypeError``. Real GCS emulator and Redis,
the task's body run in-process.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks.adapters.gcs import GcsBucket
from backend_hooks.contract.settings import Settings
from tests.integration.backfilling import SECRET
from tests.legacy_objects import write_legacy
from workers import tasks

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("min_age", [float("nan"), -1.0, "3600", True, None, [1]])
def test_a_bad_min_age_is_refused_and_a_live_object_left_alone(
    stack: StackInfo, monkeypatch: pytest.MonkeyPatch, min_age: Any
) -> None:
    env = {**stack.env(), "ENCRYPTION_SECRET": SECRET}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = GcsBucket.from_settings(Settings.from_env(env, role="backfill"))
    uid, cid = f"task-{uuid.uuid4().hex[:8]}", "conv"
    young = write_legacy(bucket, uid, cid, ".bin", [time.time() - 5], [speech_like(1, 16000, 1)])
    result = tasks.backfill_conversation.run(uid, cid, True, 16000, min_age)
    assert "min_age" in result.get("error", ""), result
    assert [o.name for o in bucket.list(f"chunks/{uid}/")] == [young]


@pytest.mark.parametrize(("delete", "dry_run"), [("false", False), (0, False), (False, "true")])
def test_delete_and_dry_run_must_be_booleans(
    stack: StackInfo, monkeypatch: pytest.MonkeyPatch, delete: Any, dry_run: Any
) -> None:
    """``delete="false"`` (a producer's string) is truthy: it deleted the sources."""
    env = {**stack.env(), "ENCRYPTION_SECRET": SECRET}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = GcsBucket.from_settings(Settings.from_env(env, role="backfill"))
    uid, cid = f"flag-{uuid.uuid4().hex[:8]}", "conv"
    old = time.time() - 3 * 3600
    sources = [
        write_legacy(bucket, uid, cid, ".bin", [old + 2 * i], [speech_like(2, 16000, i)])
        for i in range(2)
    ]
    result = tasks.backfill_conversation.run(uid, cid, delete, 16000, 3600.0, dry_run)
    assert "must be true or false" in result.get("error", ""), result
    assert sorted(o.name for o in bucket.list(f"chunks/{uid}/")) == sources
