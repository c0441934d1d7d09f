"""backend_hooks.pusher.usage against the real Redis: one pipelined INCRBY + EXPIREAT per flush,
the final flush on every exit path, exact totals across concurrent adders, a failed flush
keeping its amount."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import pytest
import redis

from audiosync_dev.localstack import LocalStack, StackInfo
from backend_hooks import AudioSyncClient
from backend_hooks.contract.errors import InvalidInputError
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher import usage

pytestmark = pytest.mark.integration
# 30 s before the end of today (UTC): the keys' EXPIREAT (the next midnight + 1 h) is then
# always in the future for the real Redis, whatever day the suite runs.
TODAY = dt.datetime.now(dt.UTC).date()
NOW = dt.datetime.combine(TODAY, dt.time(23, 59, 30), tzinfo=dt.UTC).timestamp()
KEY = f"fair_use:dg_budget:u1:{TODAY:%Y%m%d}"


def counter(client: redis.Redis, **kwargs: object) -> usage.UsageCounter:
    options: dict[str, object] = {"enabled": True, "limit_ms": 3_600_000, "clock": lambda: NOW}
    options.update(kwargs)
    return usage.UsageCounter(client, "u1", **options)  # type: ignore[arg-type]


def test_keys_and_expiry_follow_the_utc_day() -> None:
    assert usage.budget_key("u1", NOW) == KEY
    tomorrow = TODAY + dt.timedelta(days=1)
    assert usage.budget_key("u1", NOW + 31) == f"fair_use:dg_budget:u1:{tomorrow:%Y%m%d}"
    midnight = dt.datetime.combine(tomorrow, dt.time(), tzinfo=dt.UTC).timestamp()
    assert usage.expires_at(NOW) == midnight + 3600


def test_adding_writes_nothing_and_a_flush_writes_once(redis_client: redis.Redis) -> None:
    c = counter(redis_client)
    redis_client.config_resetstat()
    for _ in range(3000):  # a minute of 20 ms chunks
        c.add(20)
    ours = ("cmdstat_info", "cmdstat_config|resetstat")  # this test's own commands
    stats = redis_client.info("commandstats")
    assert {k: v for k, v in stats.items() if k not in ours} == {}  # memory only
    assert c.flush() == 60_000
    stats = redis_client.info("commandstats")
    assert {k: v["calls"] for k, v in stats.items() if k not in ours} == {
        "cmdstat_incrby": 1,
        "cmdstat_expireat": 1,
    }
    assert int(redis_client.get(KEY) or 0) == 60_000
    assert redis_client.expiretime(KEY) == usage.expires_at(NOW)
    assert c.flush() == 0 and c.pending == 0  # nothing new: nothing written


@pytest.mark.parametrize("kwargs", [{"enabled": False}, {"limit_ms": 0}, {"limit_ms": -1}])
def test_disabled_or_without_a_limit_writes_nothing(
    redis_client: redis.Redis, kwargs: dict[str, object]
) -> None:
    c = counter(redis_client, **kwargs)
    c.add(500)
    assert c.flush() == 0 and not redis_client.exists(KEY)


@pytest.mark.parametrize("bad", [-1, 1.5, "20", True, None])
def test_bad_amounts_are_refused(redis_client: redis.Redis, bad: object) -> None:
    with pytest.raises(InvalidInputError, match="whole number of ms"):
        counter(redis_client).add(bad)  # type: ignore[arg-type]


def test_bad_uids_are_refused(redis_client: redis.Redis) -> None:
    with pytest.raises(InvalidInputError, match="uid"):
        usage.UsageCounter(redis_client, "a/b", enabled=True, limit_ms=1)


def test_concurrent_adders_and_flushers_lose_and_double_nothing(
    redis_client: redis.Redis,
) -> None:
    c = counter(redis_client)
    flushed: list[int] = []

    def add() -> None:
        for _ in range(5000):
            c.add(3)

    def flush() -> None:
        for _ in range(50):
            flushed.append(c.flush())

    threads = [threading.Thread(target=add) for _ in range(4)]
    threads += [threading.Thread(target=flush) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flushed.append(c.flush())
    assert sum(flushed) == 4 * 5000 * 3 == int(redis_client.get(KEY) or 0)


def test_a_failed_flush_keeps_its_amount(local_stack: LocalStack) -> None:
    client = redis.Redis.from_url(local_stack.info.redis_url, socket_timeout=1)
    client.delete(KEY)
    c = counter(client)
    c.add(1234)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    failing = counter(dead)
    failing.add(1234)
    with pytest.raises(redis.ConnectionError):
        failing.flush()
    assert failing.pending == 1234  # kept for the next flush
    failing.client = client  # Redis is back
    assert failing.flush() == 1234 and int(client.get(KEY) or 0) == 1234


async def _in_periodic(c: usage.UsageCounter, ending: str) -> None:
    async with usage.periodic(c, interval=0.05):
        c.add(100)
        await asyncio.sleep(0.12)  # two periodic flushes
        c.add(7)
        if ending == "exception":
            raise RuntimeError("the websocket handler failed")
        if ending == "cancelled":
            await asyncio.sleep(3600)


@pytest.mark.parametrize(
    ("ending", "raised"),
    [("normal", None), ("exception", "RuntimeError"), ("cancelled", "CancelledError")],
)
def test_the_final_flush_runs_on_every_exit_path(
    redis_client: redis.Redis, ending: str, raised: str | None
) -> None:
    c = counter(redis_client)

    async def main() -> str | None:
        task = asyncio.create_task(_in_periodic(c, ending))
        if ending == "cancelled":
            await asyncio.sleep(0.2)
            task.cancel()
        try:
            await task
        except (RuntimeError, asyncio.CancelledError) as exc:
            return type(exc).__name__  # the block's own ending, not a flush's
        return None

    assert asyncio.run(main()) == raised
    assert int(redis_client.get(KEY) or 0) == 107 and c.pending == 0


def test_client_shutdown_flushes_its_counters(stack: StackInfo, redis_client: redis.Redis) -> None:
    client = AudioSyncClient(Settings.from_env(stack.env()), clock=lambda: NOW)
    c = client.usage_counter("u1", enabled=True, limit_ms=10)
    c.add(42)
    client.close()
    assert int(redis_client.get(KEY) or 0) == 42 and c.pending == 0


def test_the_client_holds_a_counter_only_until_its_final_flush_wrote(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    client = AudioSyncClient(Settings.from_env(stack.env()), clock=lambda: NOW)

    async def session() -> None:
        c = client.usage_counter("u1", enabled=True, limit_ms=10)
        async with usage.periodic(c):
            c.add(5)

    for _ in range(3):
        asyncio.run(session())
    assert client._counters == {}  # no counter per finished session held forever
    client.close()
    assert int(redis_client.get(KEY) or 0) == 15
