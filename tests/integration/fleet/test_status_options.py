"""``celery -A workers audiosync status`` takes only the values its options mean: a probe's
``--max-lag`` a finite number of seconds (``nan`` passes every comparison: the probe could
never fail), ``--scan-limit`` at least 1 and at most ``operations.MAX_SCAN_LIMIT`` (0 read
the whole quarantine index: a ZRANGE 0 -1)."""

from __future__ import annotations

import time

import pytest
import redis

from audiosync_dev.localstack import StackInfo
from backend_hooks.contract.settings import Settings
from tests.integration.commands import as_json, celery
from tests.integration.flushing import keys
from workers import operations
from workers.store import WorkerStore

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_status_refuses_a_max_lag_that_is_not_a_finite_number_of_seconds(
    value: str, stack: StackInfo, redis_client: redis.Redis
) -> None:
    done = celery("audiosync", "status", "--max-lag", value, env=stack.env())
    assert done.returncode != 0, done.stdout
    assert "--max-lag" in done.stderr and "finite number of seconds" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_status_takes_a_max_lag_of_zero(stack: StackInfo, redis_client: redis.Redis) -> None:
    done = celery("audiosync", "status", "--max-lag", "0", env=stack.env())
    assert done.returncode == 0, done.stderr  # nothing held: no lag


@pytest.mark.parametrize("value", ["0", "-3", str(operations.MAX_SCAN_LIMIT + 1)])
def test_status_refuses_a_scan_limit_out_of_its_range(
    value: str, stack: StackInfo, redis_client: redis.Redis
) -> None:
    done = celery("audiosync", "status", "--scan-limit", value, env=stack.env())
    assert done.returncode != 0, done.stdout
    assert "--scan-limit" in done.stderr and f"{operations.MAX_SCAN_LIMIT}" in done.stderr


def quarantined(redis_client: redis.Redis, count: int) -> list[str]:
    sids = [f"quarantined-{i}" for i in range(count)]
    for sid in sids:
        redis_client.xadd(keys(sid).quarantine, {"reason": "rate 0 is not one of the Opus rates"})
        redis_client.zadd(keys(sid).quarantine_index, {sid: time.time()})
    return sids


def test_a_scan_limit_bounds_every_read_of_status(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    store = WorkerStore(redis_client, Settings.from_env(stack.env()).due_shards)
    quarantined(redis_client, 3)
    assert operations.quarantined_refs(store, 0) == []  # not the whole index
    assert len(operations.quarantined_refs(store, 2)) == 2
    with pytest.raises(ValueError, match="scan_limit"):
        operations.fleet_status(store, scan_limit=0)
    report = as_json(celery("audiosync", "status", "--json", "--scan-limit", "1", env=stack.env()))
    assert report["quarantined_sessions"] == 1  # of the first one the index lists
