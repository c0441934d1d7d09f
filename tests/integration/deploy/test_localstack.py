"""The local stack against its real servers: valkey (plain and as a 3-master Redis Cluster)
and fake-gcs-server, no mocks."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from google.api_core.exceptions import PreconditionFailed
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError

from audiosync_dev import localstack
from audiosync_dev.localstack import (
    CLUSTER_BUS_OFFSET,
    CLUSTER_SLOT_RANGES,
    LocalStack,
    LocalStackError,
    StackInfo,
    free_cluster_port,
)
from tests.integration.commands import ROOT

pytestmark = pytest.mark.integration


class Boom(Exception):
    pass


def gcs_client() -> storage.Client:
    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return storage.Client(project="local", credentials=credentials)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ports(info: StackInfo) -> list[int]:
    return [urlsplit(url).port or 0 for url in (info.redis_url, info.gcs_url)]


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains text."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            pass  # the process ended meanwhile
    return found


def test_env_is_exported(stack: StackInfo) -> None:
    env = stack.env()
    assert env == {
        "AUDIOSYNC_REDIS_URL": stack.redis_url,
        "CELERY_BROKER_URL": stack.redis_url,
        "BUCKET_PRIVATE_CLOUD_SYNC": stack.bucket,
        "STORAGE_EMULATOR_HOST": stack.gcs_url,
        "GOOGLE_CLOUD_PROJECT": "local",
    }
    assert stack.redis_url.startswith("redis://127.0.0.1:") and stack.redis_url.endswith("/0")
    assert stack.gcs_url.startswith("http://127.0.0.1:")
    assert {key: os.environ.get(key) for key in env} == env


def test_valkey_answers_with_appendonly(redis_client: redis.Redis) -> None:
    assert redis_client.ping()
    assert redis_client.config_get("appendonly") == {"appendonly": "yes"}
    redis_client.set("k", "v")
    assert redis_client.get("k") == b"v"


def test_bucket_exists(stack: StackInfo) -> None:
    bucket = gcs_client().get_bucket(stack.bucket)
    assert bucket.name == stack.bucket


def test_upload_if_generation_match_zero_succeeds_once(stack: StackInfo) -> None:
    name = f"tests/{uuid.uuid4().hex}.txt"
    bucket = gcs_client().bucket(stack.bucket)
    bucket.blob(name).upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob(name).upload_from_string(b"second", if_generation_match=0)
    assert bucket.blob(name).download_as_bytes() == b"first"


def test_write_survives_restart_redis() -> None:
    stack = LocalStack()
    with stack as info:
        client = redis.Redis.from_url(info.redis_url)
        client.set("survivor", "still here")
        time.sleep(1.5)  # appendfsync everysec: the write is on disk after a second
        pid_before = stack.pids["valkey"]
        stack.restart_redis()
        assert stack.pids["valkey"] != pid_before
        assert not alive(pid_before)
        # `--save ""` keeps no RDB snapshot: the value can only come back from the AOF.
        assert client.get("survivor") == b"still here"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()


def test_stop_ends_servers_and_frees_ports() -> None:
    stack = LocalStack()
    info = stack.start()
    pids = stack.pids
    assert set(pids) == {"valkey", "fake-gcs-server"}
    assert all(alive(pid) for pid in pids.values())
    stack.stop()
    assert not any(alive(pid) for pid in pids.values())
    assert all(refuses(port) for port in ports(info))
    assert not info.workdir.exists()
    stack.stop()  # idempotent


def test_stop_runs_when_with_body_raises() -> None:
    stack = LocalStack()
    with pytest.raises(Boom), stack as info:
        pids = stack.pids
        raise Boom
    assert pids and not any(alive(pid) for pid in pids.values())
    assert all(refuses(port) for port in ports(info))
    assert not info.workdir.exists()


def test_failed_start_stops_what_was_started(tmp_path: Path) -> None:
    (tmp_path / "gcs").write_text("a file where fake-gcs-server wants its directory")
    stack = LocalStack(workdir=tmp_path)
    with pytest.raises(LocalStackError, match="fake-gcs-server exited") as err:
        stack.start()
    assert "couldn't start the server" in str(err.value)  # the tail of the server's log
    assert (tmp_path / "valkey.log").exists()  # valkey was started first ...
    assert stack.pids == {}
    assert processes_mentioning(str(tmp_path)) == []  # ... and stopped again


def test_invalid_bucket_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LocalStackError, match="invalid bucket name"):
        LocalStack(bucket="Not A Bucket", workdir=tmp_path).start()
    assert processes_mentioning(str(tmp_path)) == []


# -- the Redis Cluster -------------------------------------------------------------------------

CLUSTER_NAMES = {"valkey-cluster-1", "valkey-cluster-2", "valkey-cluster-3"}


def node_client(host: str, port: int) -> redis.Redis:
    """A plain client of one cluster node (it follows no redirects)."""
    return redis.Redis(host=host, port=port, decode_responses=True)


Node = tuple[str, int]  # host, port


def masters(seed: str) -> dict[Node, tuple[int, int]]:
    """The slot range of each master, as the seed node (redis://HOST:PORT) knows them."""
    client = redis.Redis.from_url(seed, decode_responses=True)
    known = client.cluster("nodes")
    client.close()
    out = {}
    for address, node in known.items():
        assert "master" in node["flags"].split(",") and "fail" not in node["flags"], node
        (first, last), *more = node["slots"]
        assert not more
        host, port = address.rsplit(":", 1)
        out[host, int(port)] = (int(first), int(last))
    return out


def owner(nodes: dict[Node, tuple[int, int]], key: str) -> Node:
    slot = key_slot(key.encode())
    return next(node for node, (first, last) in nodes.items() if first <= slot <= last)


def tag_per_node(nodes: dict[Node, tuple[int, int]]) -> dict[Node, str]:
    """A hash tag whose keys live on each node."""
    tags: dict[Node, str] = {}
    for i in range(1000):
        tags.setdefault(owner(nodes, f"{{t{i}}}"), f"t{i}")
        if len(tags) == len(nodes):
            return tags
    raise AssertionError(f"1,000 tags reached only {len(tags)} nodes")


def seed_of_info(info: StackInfo) -> str:
    assert info.redis_cluster_url is not None
    return info.redis_cluster_url


def seed_of(stack: LocalStack) -> str:
    return seed_of_info(stack.info)


def test_free_cluster_port_has_a_free_bus_port() -> None:
    port = free_cluster_port()
    assert port + CLUSTER_BUS_OFFSET <= 65535
    for candidate in (port, port + CLUSTER_BUS_OFFSET):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", candidate))


def test_cluster_stack_env_and_processes(cluster_stack: LocalStack) -> None:
    info = cluster_stack.info
    seed = info.redis_cluster_url
    assert seed is not None and re.fullmatch(r"redis://127\.0\.0\.1:\d+", seed)
    assert info.env() == {
        "AUDIOSYNC_REDIS_CLUSTER": "1",
        "AUDIOSYNC_REDIS_URL": seed,
        "CELERY_BROKER_URL": info.redis_url,
        "BUCKET_PRIVATE_CLOUD_SYNC": info.bucket,
        "STORAGE_EMULATOR_HOST": info.gcs_url,
        "GOOGLE_CLOUD_PROJECT": "local",
    }
    assert os.environ.get("AUDIOSYNC_REDIS_URL") != seed  # not exported by the fixture
    assert "AUDIOSYNC_REDIS_CLUSTER" not in os.environ
    pids = cluster_stack.pids
    assert set(pids) == {"valkey", "fake-gcs-server", *CLUSTER_NAMES}
    assert all(alive(pid) for pid in pids.values())
    assert cluster_stack.check() is None
    urls = cluster_stack.cluster_node_urls
    assert list(urls) == [1, 2, 3] and urls[1] == seed
    assert {("127.0.0.1", int(u.rsplit(":", 1)[1])) for u in urls.values()} == set(masters(seed))
    assert LocalStack().cluster_node_urls == {}  # no cluster
    # The broker is the plain valkey, not a cluster node.
    broker = redis.Redis.from_url(info.redis_url)
    assert broker.info("server")["process_id"] == pids["valkey"]
    assert broker.info("cluster")["cluster_enabled"] == 0
    broker.close()


def test_every_node_says_ok_with_three_masters(
    cluster_stack: LocalStack, cluster_client: RedisCluster
) -> None:
    nodes = masters(seed_of(cluster_stack))
    assert sorted(nodes.values()) == list(CLUSTER_SLOT_RANGES)
    node_pids = {cluster_stack.pids[name] for name in CLUSTER_NAMES}
    for host, port in nodes:
        client = node_client(host, port)
        info = client.cluster("info")
        assert info["cluster_state"] == "ok"
        assert info["cluster_size"] == "3" and info["cluster_known_nodes"] == "3"
        assert info["cluster_slots_ok"] == "16384"
        assert masters(f"redis://{host}:{port}") == nodes  # every node knows the same masters
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        node_pids.discard(client.info("server")["process_id"])
        client.close()
    assert node_pids == set()  # every cluster node in pids answered, and no other server


def test_hash_tags_spread_over_nodes_and_a_script_with_one_tag_works(
    cluster_stack: LocalStack, cluster_client: RedisCluster
) -> None:
    nodes = masters(seed_of(cluster_stack))
    tags = tag_per_node(nodes)
    for tag in tags.values():
        cluster_client.set(f"{{{tag}}}:k", tag)
    for (host, port), tag in tags.items():
        client = node_client(host, port)
        assert client.keys("*") == [f"{{{tag}}}:k"]  # each key on its own node, only there
        client.close()

    script = cluster_client.register_script(
        "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[2])"
    )
    assert script(keys=["{s}:a", "{s}:b"], args=["x", 5]) == 5
    assert script(keys=["{s}:a", "{s}:b"], args=["y", 2]) == 7
    assert cluster_client.get("{s}:a") == b"y"
    assert cluster_client.get("{s}:b") == b"7"

    # The servers themselves refuse a script over two slots: this is a real cluster.
    home = owner(nodes, "{s}:a")
    other_tag = next(tag for node, tag in tags.items() if node != home)
    client = node_client(*home)
    with pytest.raises(ClusterCrossSlotError):  # the server's CROSSSLOT reply
        client.eval("return 1", 2, "{s}:a", f"{{{other_tag}}}:k")
    client.close()


def test_restart_redis_cluster_node_keeps_its_data(
    cluster_stack: LocalStack, cluster_client: RedisCluster
) -> None:
    def pid_of(node: Node) -> int:
        with node_client(*node) as client:
            return int(client.info("server")["process_id"])

    tags = tag_per_node(masters(seed_of(cluster_stack)))
    pid_before = cluster_stack.pids["valkey-cluster-2"]
    node_2 = next(node for node in tags if pid_of(node) == pid_before)
    key = f"{{{tags[node_2]}}}:survivor"
    cluster_client.set(key, "still here")
    # The restart stops the node with SIGTERM, and valkey writes its AOF out when it stops.
    cluster_stack.restart_redis_cluster_node(2)
    assert cluster_stack.pids["valkey-cluster-2"] == pid_of(node_2) != pid_before
    assert not alive(pid_before)
    for node in tags:
        with node_client(*node) as client:
            assert client.cluster("info")["cluster_state"] == "ok"
    assert cluster_client.get(key) == b"still here"  # the same client: the node is back
    with pytest.raises(LocalStackError, match="cluster node 4 is not running"):
        cluster_stack.restart_redis_cluster_node(4)


def test_cluster_not_ok_in_time_is_an_error_and_stops_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new master waits 2 s before it says ok: a 0.5 s bound always runs out.
    monkeypatch.setattr(localstack, "CLUSTER_TIMEOUT", 0.5)
    stack = LocalStack(workdir=tmp_path, cluster=True)
    with pytest.raises(LocalStackError, match=r"not ok within 0\.5 s") as err:
        stack.start()
    text = str(err.value)
    assert "valkey-cluster-1: cluster_state:fail" in text
    assert "Ready to accept connections" in text  # the tail of a node's log
    assert stack.pids == {}
    assert processes_mentioning(str(tmp_path)) == []


def test_cluster_in_a_reused_workdir_keeps_its_data(tmp_path: Path) -> None:
    with LocalStack(workdir=tmp_path, cluster=True) as info:
        tags = tag_per_node(masters(seed_of_info(info)))
        client = RedisCluster.from_url(seed_of_info(info))
        for tag in tags.values():
            client.set(f"{{{tag}}}:k", tag)
        client.close()
    # valkey writes its AOF out when it stops; the next run gets new ports and new node ids,
    # and each node its old dir and slots again.
    with LocalStack(workdir=tmp_path, cluster=True) as info:
        nodes = masters(seed_of_info(info))
        assert sorted(nodes.values()) == list(CLUSTER_SLOT_RANGES)
        client = RedisCluster.from_url(seed_of_info(info))
        assert {client.get(f"{{{tag}}}:k") for tag in tags.values()} == {
            tag.encode() for tag in tags.values()
        }
        client.close()
    assert len(list(tmp_path.glob("nodes-*.conf"))) == 3  # the first run's were removed


@pytest.mark.timeout(60)
def test_cli_cluster_prints_exports_and_stops_on_sigterm(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "audiosync_dev.localstack", "--cluster"]
    proc = subprocess.Popen(
        [*argv, "--workdir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]  # one export a variable
        exports = dict(
            line.removeprefix("export ").rstrip("\n").split("=", 1)
            for line in lines
            if line.startswith("export ")
        )
        assert len(exports) == 6, lines
        assert "export AUDIOSYNC_REDIS_CLUSTER=1\n" in lines
        assert exports["CELERY_BROKER_URL"].endswith("/0")
        nodes = masters(exports["AUDIOSYNC_REDIS_URL"])
        assert sorted(nodes.values()) == list(CLUSTER_SLOT_RANGES)
        client = RedisCluster.from_url(exports["AUDIOSYNC_REDIS_URL"])
        client.set("{cli}:k", "v")
        assert client.get("{cli}:k") == b"v"
        client.close()
        assert processes_mentioning(str(tmp_path))  # the servers run ...

        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "# local stack stopped" in stderr
    assert processes_mentioning(str(tmp_path)) == []  # ... and are stopped
    assert all(refuses(port) and refuses(port + CLUSTER_BUS_OFFSET) for _, port in nodes)
    # --workdir keeps the data: a dir with an AOF for each node, and its nodes file.
    for number in (1, 2, 3):
        assert (tmp_path / f"valkey-cluster-{number}" / "appendonlydir").is_dir()
    assert {f"nodes-{port}.conf" for _, port in nodes} <= {f.name for f in tmp_path.iterdir()}
