"""Fixtures of the integration tests: a worker context on the session's servers, a settable
clock, and a valkey of a test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks.redis_store import redis_time
from backend_hooks.settings import Settings
from tests.integration.flushing import FakeClock
from workers.context import WorkerContext


@pytest.fixture
def clock(redis_client: redis.Redis) -> FakeClock:
    """Starts at Redis server time, the clock the stream ids and due times come from."""
    return FakeClock(redis_time(redis_client))


@pytest.fixture
def ctx(stack: StackInfo, redis_client: redis.Redis, clock: FakeClock) -> WorkerContext:
    """A worker context on the (emptied) session servers, with ``clock`` as its clock."""
    return WorkerContext.from_settings(Settings.from_env(stack.env()), clock=clock)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[StandaloneValkey]:
    """A valkey of the test's own, to stop, stall (SIGSTOP) and restart."""
    with StandaloneValkey(tmp_path / "valkey") as server:
        yield server
