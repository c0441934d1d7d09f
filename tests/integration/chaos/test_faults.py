"""The fault proxies of the chaos run, against the real servers and the official clients.

GcsFaultProxy in front of fake-gcs-server, driven by google-cloud-storage; each fault at
rate 1.0 must do exactly what the chaos run relies on. RedisReplyDropProxy in front of
valkey, driven by redis-py: the command runs, the client never sees its reply; and
RedisClusterReplyDropProxies, one in front of each node of a Redis Cluster, driven by
redis-py's RedisCluster through its address_remap.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from audiosync_dev.faults import (
    GcsFaultProxy,
    RedisClusterReplyDropProxies,
    RedisReplyDropProxy,
    command_name,
    is_append_command,
    is_object_upload,
)
from audiosync_dev.localstack import LocalStack, StackInfo

pytestmark = pytest.mark.integration
DATA = bytes(range(256)) * 40


def gcs_client(url: str) -> Any:
    return storage.Client(
        project="local",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
    )


def unique_name() -> str:
    return f"faults-test/{uuid.uuid4().hex}.bin"


@pytest.fixture
def direct(stack: StackInfo) -> Iterator[Any]:
    """A bucket handle straight on fake-gcs-server, bypassing every proxy."""
    client = gcs_client(stack.gcs_url)
    yield client.bucket(stack.bucket)
    client.close()


def upload_through(proxy: GcsFaultProxy, bucket_name: str, name: str, **kwargs: Any) -> Any:
    client = gcs_client(proxy.url)
    try:
        blob = client.bucket(bucket_name).blob(name)
        blob.upload_from_string(DATA, if_generation_match=0, **kwargs)
        return blob
    finally:
        client.close()


def test_matchers() -> None:
    assert is_object_upload("POST", "/upload/storage/v1/b/x/o?uploadType=multipart")
    assert is_object_upload("PUT", "/upload/storage/v1/b/x/o?uploadType=resumable")
    assert not is_object_upload("GET", "/upload/storage/v1/b/x/o")
    assert not is_object_upload("POST", "/storage/v1/b/x/o")
    assert command_name(b"*1\r\n$4\r\nEXEC\r\n") == "EXEC"
    assert command_name(b"*3\r\n$7\r\nevalsha\r\n$2\r\nab\r\n$1\r\n0\r\n") == "EVALSHA"
    assert command_name(b"PING\r\n") == "PING"
    assert is_append_command(b"*1\r\n$4\r\nEXEC\r\n")
    # audio bytes that spell EXEC inside an XADD are not the pusher's EXEC
    assert not is_append_command(b"*3\r\n$4\r\nXADD\r\n$1\r\nk\r\n$4\r\nEXEC\r\n")
    with pytest.raises(ValueError):
        GcsFaultProxy("http://127.0.0.1:1", error_rate=0.6, lost_response_rate=0.6)


def test_gcs_proxy_forwards_faithfully_with_keep_alive(stack: StackInfo, direct: Any) -> None:
    name = unique_name()
    with GcsFaultProxy(stack.gcs_url, seed=1) as proxy:
        client = gcs_client(proxy.url)
        bucket = client.bucket(stack.bucket)
        blob = bucket.blob(name)
        blob.metadata = {"k": "v"}
        blob.upload_from_string(DATA, content_type="audio/ogg", if_generation_match=0)
        with pytest.raises(gexc.PreconditionFailed):  # create-only: 412 passes through
            bucket.blob(name).upload_from_string(b"other", if_generation_match=0)
        got = bucket.get_blob(name)
        assert got is not None and got.size == len(DATA) and got.metadata == {"k": "v"}
        assert got.content_type == "audio/ogg"
        assert bucket.blob(name).download_as_bytes() == DATA
        assert name in [b.name for b in client.list_blobs(bucket, prefix="faults-test/")]
        assert bucket.get_blob(name + ".missing") is None  # 404 passes through
        bucket.blob(name).delete()
        client.close()
        stats = proxy.stats
    assert direct.get_blob(name) is None
    assert stats.faulted == 0 and stats.upstream_failures == 0
    assert stats.matched == 2  # the two uploads
    assert stats.requests >= 7
    assert stats.connections < stats.requests  # requests' keep-alive pool reuses connections


def test_gcs_error_is_a_503_that_stores_nothing(stack: StackInfo, direct: Any) -> None:
    name = unique_name()
    with GcsFaultProxy(stack.gcs_url, error_rate=1.0, seed=2) as proxy:
        with pytest.raises(gexc.ServiceUnavailable):
            upload_through(proxy, stack.bucket, name, retry=None)
        assert proxy.stats.errors == 1
    assert direct.get_blob(name) is None


def test_gcs_error_is_retried_by_the_client(stack: StackInfo, direct: Any) -> None:
    """Only the first upload is faulted (a custom match); the client's retry stores it."""
    name = unique_name()
    uploads: list[str] = []

    def first_upload_only(method: str, path: str) -> bool:
        if not is_object_upload(method, path):
            return False
        uploads.append(path)
        return len(uploads) == 1

    with GcsFaultProxy(stack.gcs_url, error_rate=1.0, seed=3, match=first_upload_only) as proxy:
        upload_through(proxy, stack.bucket, name)  # default retry: create-only is safe to retry
        stats = proxy.stats
    assert stats.errors == 1 and stats.matched == 1 and len(uploads) == 2
    assert direct.blob(name).download_as_bytes() == DATA


def test_gcs_lost_response_stores_the_object_but_the_client_sees_an_error(
    stack: StackInfo, direct: Any
) -> None:
    name = unique_name()
    with GcsFaultProxy(stack.gcs_url, lost_response_rate=1.0, seed=4) as proxy:
        with pytest.raises((requests.exceptions.ConnectionError, gexc.GoogleAPIError)):
            upload_through(proxy, stack.bucket, name, retry=None)
        assert proxy.stats.lost_responses == 1
        assert direct.blob(name).download_as_bytes() == DATA  # stored all the same
        proxy.pause_faults()
        with pytest.raises(gexc.PreconditionFailed):  # what the client's retry then meets
            upload_through(proxy, stack.bucket, name, retry=None)
        assert proxy.stats.lost_responses == 1


def test_gcs_stall_before_delays_the_write(stack: StackInfo, direct: Any) -> None:
    name = unique_name()
    with GcsFaultProxy(
        stack.gcs_url, stall_before_rate=1.0, stall_seconds=(0.8, 0.8), seed=5
    ) as proxy:
        result: list[BaseException | None] = []

        def upload() -> None:
            try:
                upload_through(proxy, stack.bucket, name, retry=None)
                result.append(None)
            except BaseException as exc:
                result.append(exc)

        started = time.monotonic()
        thread = threading.Thread(target=upload)
        thread.start()
        time.sleep(0.4)
        assert direct.get_blob(name) is None  # not forwarded yet
        thread.join(10)
        elapsed = time.monotonic() - started
        assert result == [None]
        assert elapsed >= 0.8
        assert proxy.stats.stalls_before == 1 and proxy.stats.stall_durations == (0.8,)
    assert direct.blob(name).download_as_bytes() == DATA


def test_gcs_stall_after_stores_first_and_answers_late(stack: StackInfo, direct: Any) -> None:
    name = unique_name()
    with GcsFaultProxy(
        stack.gcs_url, stall_after_rate=1.0, stall_seconds=(1.0, 1.0), seed=6
    ) as proxy:
        done = threading.Event()

        def upload() -> None:
            upload_through(proxy, stack.bucket, name, retry=None)
            done.set()

        started = time.monotonic()
        thread = threading.Thread(target=upload)
        thread.start()
        deadline = time.monotonic() + 5
        while direct.get_blob(name) is None:  # stored while the client still waits
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not done.is_set()
        thread.join(10)
        assert done.is_set() and time.monotonic() - started >= 1.0
        assert proxy.stats.stalls_after == 1 and proxy.stats.stalls_longer_than(0.5) == 1
        proxy.set_rates(stall_after_rate=0.0)
        before = proxy.stats
        upload_through(proxy, stack.bucket, unique_name(), retry=None)
        after = proxy.stats
        assert after.matched == before.matched + 1  # it went through the proxy
        assert after.faulted == before.faulted  # faults off: answered without a stall


# -- Redis -------------------------------------------------------------------------------


@pytest.fixture
def redis_proxy(stack: StackInfo) -> Iterator[RedisReplyDropProxy]:
    parts = urlsplit(stack.redis_url)
    assert parts.hostname and parts.port
    with RedisReplyDropProxy(parts.hostname, parts.port, drop_rate=0.0, seed=7) as proxy:
        yield proxy


def proxied(proxy: RedisReplyDropProxy, retries: int) -> redis.Redis:
    return redis.Redis.from_url(
        proxy.url, socket_timeout=5, retry=Retry(NoBackoff(), retries), health_check_interval=0
    )


def test_redis_proxy_forwards_faithfully(
    redis_client: redis.Redis, redis_proxy: RedisReplyDropProxy
) -> None:
    redis_proxy.set_drop_rate(1.0)  # nothing below matches: nothing is dropped
    client = proxied(redis_proxy, 0)
    big = bytes(range(256)) * 4096  # 1 MiB: many reads each way
    assert client.ping()
    client.set("faults:big", big)
    assert client.get("faults:big") == big
    pipe = client.pipeline(transaction=False)
    for i in range(100):
        pipe.rpush("faults:list", i)
    pipe.lrange("faults:list", 0, -1)
    assert len(pipe.execute()[-1]) == 100
    client.xadd("faults:stream", {"data": b"EXEC inside a value"})
    assert client.xlen("faults:stream") == 1
    client.close()
    stats = redis_proxy.stats
    assert stats.drops == 0 and stats.matched == 0 and stats.commands >= 105


def test_redis_dropped_exec_ran_but_the_client_saw_an_error(
    redis_client: redis.Redis, redis_proxy: RedisReplyDropProxy
) -> None:
    redis_proxy.set_drop_rate(1.0)
    client = proxied(redis_proxy, 0)
    pipe = client.pipeline(transaction=True)
    pipe.incr("faults:counter")
    pipe.xadd("faults:stream", {"seq": 0})
    with pytest.raises(redis.ConnectionError):
        pipe.execute()
    assert redis_client.get("faults:counter") == b"1"  # the MULTI ran
    assert redis_client.xlen("faults:stream") == 1
    redis_proxy.set_drop_rate(0.0)
    assert client.incr("faults:counter") == 2  # a fresh connection works again
    client.close()
    stats = redis_proxy.stats
    assert stats.drops == 1 and stats.reply_timeouts == 0 and stats.connections == 2


def test_redis_client_retry_repeats_the_dropped_command(
    redis_client: redis.Redis, redis_proxy: RedisReplyDropProxy
) -> None:
    """redis-py's own retry sends the transaction again: every attempt runs."""
    redis_proxy.set_drop_rate(1.0)
    client = proxied(redis_proxy, 2)
    pipe = client.pipeline(transaction=True)
    pipe.xadd("faults:stream", {"seq": 0})
    with pytest.raises(redis.ConnectionError):
        pipe.execute()
    assert redis_client.xlen("faults:stream") == 3  # one try and two retries, all applied
    assert redis_proxy.stats.drops == 3
    client.close()


def test_redis_dropped_evalsha(redis_client: redis.Redis, redis_proxy: RedisReplyDropProxy) -> None:
    script = "return redis.call('INCR', KEYS[1])"
    redis_client.script_load(script)  # so the proxied call is one EVALSHA
    redis_proxy.set_drop_rate(1.0)
    client = proxied(redis_proxy, 0)
    with pytest.raises(redis.ConnectionError):
        client.register_script(script)(keys=["faults:counter"])
    assert redis_client.get("faults:counter") == b"1"
    assert redis_proxy.stats.drops == 1
    client.close()


@pytest.mark.parametrize("cut", [True, False])
def test_hold_next_upload_acts_once_the_object_is_stored(
    stack: StackInfo, direct: Any, cut: bool
) -> None:
    """The chaos run's kill and pause hook: ``act`` runs while the upload is stored but
    unanswered; a declined upload is answered as usual and the next one is taken."""
    names = [unique_name(), unique_name()]
    seen: list[bool] = []

    def act(address: tuple[str, int]) -> bool:
        seen.append(direct.blob(names[len(seen)]).exists())  # stored before the answer
        return len(seen) == 2  # decline the first

    with GcsFaultProxy(stack.gcs_url) as proxy:
        results: list[object] = []
        holder = threading.Thread(
            target=lambda: results.append(proxy.hold_next_upload(act, 20, cut=cut))
        )
        holder.start()
        time.sleep(0.2)  # armed
        upload_through(proxy, stack.bucket, names[0], retry=None)  # declined: answered
        if cut:
            with pytest.raises((requests.exceptions.ConnectionError, gexc.GoogleAPIError)):
                upload_through(proxy, stack.bucket, names[1], retry=None)
        else:
            upload_through(proxy, stack.bucket, names[1], retry=None)
        holder.join(10)
        assert proxy.wait_idle(5)
    assert seen == [True, True]
    assert isinstance(results[0], tuple)  # the address acted on
    assert all(direct.blob(n).download_as_bytes() == DATA for n in names)


def test_hold_next_upload_gives_up_after_its_timeout(stack: StackInfo) -> None:
    with GcsFaultProxy(stack.gcs_url) as proxy:
        started = time.monotonic()
        assert proxy.hold_next_upload(lambda address: True, 0.3) is None
        assert time.monotonic() - started < 2


# -- Redis Cluster: one proxy per node -------------------------------------------------


def _cluster_through(proxies: RedisClusterReplyDropProxies, retries: int) -> RedisCluster:
    return RedisCluster.from_url(
        proxies.url,
        socket_timeout=5,
        address_remap=proxies.address_remap,
        retry=Retry(NoBackoff(), retries),
    )


def _key_per_node(client: RedisCluster) -> dict[str, str]:
    """A key on each primary, by node name (host:port)."""
    keys: dict[str, str] = {}
    for i in range(1000):
        node = client.get_node_from_key(f"{{faults-{i}}}:k")  # type: ignore[no-untyped-call]
        keys.setdefault(node.name, f"{{faults-{i}}}:k")
    assert len(keys) == len(client.get_primaries()) == 3  # type: ignore[no-untyped-call]
    return keys


def test_cluster_proxies_carry_every_command_to_its_node(
    cluster_stack: LocalStack, cluster_client: RedisCluster
) -> None:
    nodes = [(n.host, n.port) for n in cluster_client.get_primaries()]  # type: ignore[no-untyped-call]
    with RedisClusterReplyDropProxies(nodes, drop_rate=1.0, seed=3) as proxies:
        client = _cluster_through(proxies, 0)
        keys = _key_per_node(cluster_client)
        # The client knows the nodes by their proxies' addresses, none by its own.
        proxy_names = {f"127.0.0.1:{p.port}" for p in proxies.proxies}
        assert {n.name for n in client.get_primaries()} == proxy_names  # type: ignore[no-untyped-call]
        for name, key in keys.items():
            client.set(key, name)  # nothing that matches: nothing dropped
        for name, key in keys.items():
            assert cluster_client.get(key) == name.encode()  # on its node, read directly
        each = [p.stats for p in proxies.proxies]
        assert all(s.commands >= 1 for s in each), each  # every node through its proxy
        assert proxies.stats.drops == 0 and proxies.stats.commands == sum(s.commands for s in each)
        client.close()


def test_cluster_proxies_drop_an_evalsha_on_every_node_and_the_client_retries_it(
    cluster_stack: LocalStack, cluster_client: RedisCluster
) -> None:
    """A dropped reply is a connection error to RedisCluster, which retries the command
    (after a topology refresh, through the proxies too): every attempt runs."""
    script = "return redis.call('INCR', KEYS[1])"
    cluster_client.script_load(script)  # on every primary: each proxied call is one EVALSHA
    nodes = [(n.host, n.port) for n in cluster_client.get_primaries()]  # type: ignore[no-untyped-call]
    with RedisClusterReplyDropProxies(nodes, drop_rate=1.0, seed=3) as proxies:
        client = _cluster_through(proxies, 2)
        keys = _key_per_node(cluster_client)
        for key in keys.values():
            with pytest.raises(redis.ConnectionError):
                client.register_script(script)(keys=[key])
            assert cluster_client.get(key) == b"3"  # one try and two retries, all applied
        assert proxies.stats.drops == 3 * len(keys)
        assert all(p.stats.drops == 3 for p in proxies.proxies)
        proxies.set_drop_rate(0.0)
        assert [int(client.incr(key)) for key in keys.values()] == [4, 4, 4]
        client.close()
