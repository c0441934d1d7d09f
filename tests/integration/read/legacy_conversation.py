"""Adversary 8's reader fixtures: a reader context on the session's emulator and Redis,
and a one-chunk legacy conversation."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from audiosync_dev.localstack import StackInfo
from backend_hooks import storage
from backend_hooks.settings import Settings
from tests.legacy_objects import write_legacy

T0 = float(int(time.time())) - 3600


@pytest.fixture(scope="module")
def sctx(stack: StackInfo) -> storage.StorageContext:
    return storage.StorageContext.from_settings(Settings.from_env(stack.env(), role="reader"))


def _conversation(sctx: storage.StorageContext, tag: str) -> tuple[str, str]:
    uid, cid = f"adv8{tag}-{uuid.uuid4().hex[:8]}", "conv"
    pcm = random.Random(tag).randbytes(2 * 16000 * 2)
    write_legacy(sctx.bucket, uid, cid, ".bin", [T0], [pcm])
    return uid, cid
