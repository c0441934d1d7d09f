"""Fault injection for the chaos run: a GCS proxy that fails uploads, a Redis proxy that
loses replies. Standard library only; both listen on a free loopback port.

``GcsFaultProxy`` sits between google-cloud-storage and fake-gcs-server. It forwards every
HTTP/1.1 request faithfully (keep-alive included) and, for the requests it matches (by
default object uploads), applies at most one fault drawn at random:

=================  ==========================================================================
``error``          answer 503 without forwarding: nothing is stored, the client retries
``stall_before``   sleep, then forward: the upload lands late (past a lease, say)
``stall_after``    forward (the object is stored), sleep, then answer
``lost_response``  forward (the object is stored), then close the connection without an
                   answer: the client sees a connection error for a write that happened
=================  ==========================================================================

``GcsFaultProxy.park_next_upload`` holds the next upload *before* it reaches GCS until the
test releases it: its client gives up on the attempt (its per-attempt timeout) and
retries, and the parked request lands when released, as an abandoned attempt does.

``RedisReplyDropProxy`` sits between a Redis client and Redis. It forwards bytes both ways
and, when a client read holds a command that ``match`` accepts and the random draw hits,
forwards it, waits until Redis has answered everything sent so far (at most
``reply_wait`` seconds), throws the answer away and closes the client's connection: the
command ran, but the client never learns it, so it (or its retry policy) sends it again.
The proxy parses RESP on both directions only to count commands and replies.

``RedisClusterReplyDropProxies`` puts one ``RedisReplyDropProxy`` in front of every node
of a Redis Cluster. A cluster client learns the nodes' addresses from ``CLUSTER SLOTS``
and connects to each itself, so a single proxy in front of the seed would only ever see
topology queries; redis-py's ``RedisCluster(address_remap=proxies.address_remap)`` maps
each node's own address to its proxy, so every command reaches its node through one.

Both are context managers::

    with GcsFaultProxy(gcs_url, error_rate=0.1, seed=1) as proxy:
        env["STORAGE_EMULATOR_HOST"] = proxy.url
        ...
        proxy.pause_faults()   # e.g. for a final drain
        print(proxy.stats)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import cast
from urllib.parse import urlsplit

__all__ = [
    "FAULT_KINDS",
    "GcsFaultProxy",
    "GcsFaultStats",
    "ParkedUpload",
    "RedisClusterReplyDropProxies",
    "RedisDropStats",
    "RedisReplyDropProxy",
    "command_name",
    "is_append_command",
    "is_object_upload",
]

ERROR = "error"
STALL_BEFORE = "stall_before"
STALL_AFTER = "stall_after"
LOST_RESPONSE = "lost_response"
FAULT_KINDS = (ERROR, STALL_BEFORE, STALL_AFTER, LOST_RESPONSE)

#: Headers that belong to one connection, never forwarded (RFC 9110 section 7.6.1), plus
#: ``Expect`` (the proxy has read the body already) and the framing it recomputes.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_UPSTREAM_TIMEOUT = 120.0  # seconds for fake-gcs-server to answer one request
_IDLE_TIMEOUT = 60.0  # seconds a kept-alive client connection may stay silent
_JOIN_TIMEOUT = 2.0
_PARK_TIMEOUT = 300.0  # seconds a parked upload waits for its release at most


def is_object_upload(method: str, path: str) -> bool:
    """The default GCS match: an object upload (a Class A write on real GCS)."""
    return method in ("POST", "PUT") and path.startswith("/upload/storage/v1/")


def _check_rate(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class GcsFaultStats:
    """What a ``GcsFaultProxy`` has done so far (a snapshot)."""

    connections: int = 0  # client connections accepted (keep-alive: fewer than requests)
    requests: int = 0  # every request received
    matched: int = 0  # requests the match accepted (fault candidates)
    errors: int = 0
    stalls_before: int = 0
    stalls_after: int = 0
    lost_responses: int = 0
    upstream_failures: int = 0  # requests the upstream did not answer (502 to the client)
    stall_durations: tuple[float, ...] = ()

    @property
    def faulted(self) -> int:
        return self.errors + self.stalls_before + self.stalls_after + self.lost_responses

    @property
    def faulted_fraction(self) -> float:
        return self.faulted / self.matched if self.matched else 0.0

    def stalls_longer_than(self, seconds: float) -> int:
        return sum(1 for d in self.stall_durations if d > seconds)


@dataclass
class _GcsCounters:
    connections: int = 0
    requests: int = 0
    matched: int = 0
    errors: int = 0
    stalls_before: int = 0
    stalls_after: int = 0
    lost_responses: int = 0
    upstream_failures: int = 0
    stall_durations: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Rates:
    error: float = 0.0
    stall_before: float = 0.0
    stall_after: float = 0.0
    lost_response: float = 0.0
    stall_seconds: tuple[float, float] = (1.0, 2.0)

    def __post_init__(self) -> None:
        total = 0.0
        for name in ("error", "stall_before", "stall_after", "lost_response"):
            total += _check_rate(f"{name}_rate", getattr(self, name))
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total:.3f}, more than 1")
        low, high = self.stall_seconds
        if not 0.0 <= low <= high:
            raise ValueError(f"stall_seconds must be (low, high), 0 <= low <= high: {low, high}")

    def draw(self, rng: random.Random) -> str | None:
        point = rng.random()
        for kind, rate in zip(
            FAULT_KINDS,
            (self.error, self.stall_before, self.stall_after, self.lost_response),
            strict=True,
        ):
            if point < rate:
                return kind
            point -= rate
        return None


class ParkedUpload:
    """An upload ``GcsFaultProxy.park_next_upload`` holds before it reaches the upstream."""

    def __init__(self) -> None:
        self.arrived = threading.Event()  # the upload reached the proxy and is held
        self.landed = threading.Event()  # released, forwarded, and the upstream answered
        self.path = ""  # its request path, once arrived
        self.status: int | None = None  # the upstream's answer (200: it stored the object)
        self._released = threading.Event()

    def release(self) -> None:
        """Let the held upload go on to the upstream (its client is long gone)."""
        self._released.set()

    def _landed(self, status: int) -> None:
        self.status = status
        self.landed.set()


class _GcsServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, proxy: GcsFaultProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _GcsHandler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: a client that went away (a SIGKILLed worker, say) is part of the game."""


class _GcsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT

    @property
    def _proxy(self) -> GcsFaultProxy:
        return cast(_GcsServer, self.server).proxy

    def setup(self) -> None:
        super().setup()
        self._proxy._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._proxy._track(self.connection, False)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the chaos run reads the counters, not a log."""

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line:
                    raise ConnectionError("client closed inside a chunked body")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(16)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        proxy = self._proxy
        proxy._busy(+1)
        try:
            self._handle_one(proxy)
        finally:
            proxy._busy(-1)

    def _handle_one(self, proxy: GcsFaultProxy) -> None:
        try:
            body = self._read_body()
        except (ValueError, ConnectionError):
            self.close_connection = True
            return
        matched, fault, stall = proxy._decide(self.command, self.path)
        if fault == ERROR:
            message = json.dumps(
                {
                    "error": {
                        "code": 503,
                        "message": "Service Unavailable (injected by GcsFaultProxy)",
                        "errors": [{"reason": "backendError", "message": "injected fault"}],
                    }
                }
            ).encode()
            json_type = [("Content-Type", "application/json")]
            self._answer(503, "Service Unavailable", json_type, message)
            return
        if fault == STALL_BEFORE:
            time.sleep(stall)
        parked = proxy._park_if_armed(matched and fault is None, self.path)
        try:
            status, reason, headers, payload = proxy._forward(
                self.command, self.path, list(self.headers.items()), body
            )
        except (OSError, http.client.HTTPException) as exc:
            proxy._count_upstream_failure()
            if parked is not None:
                parked._landed(502)
            self._answer(502, "Bad Gateway", [("Content-Type", "text/plain")], str(exc).encode())
            return
        if parked is not None:  # its client gave up long ago: the answer reaches no one
            parked._landed(status)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._answer(status, reason, headers, payload)
            return
        held = proxy._hold_if_armed(matched and fault is None, self.client_address)
        if held == "cut":
            # The upload is stored; the chaos run killed its sender before it could commit.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == STALL_AFTER:
            time.sleep(stall)
        if fault == LOST_RESPONSE:
            # The upload happened; the client never hears about it.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._answer(status, reason, headers, payload)

    def _answer(
        self, status: int, reason: str, headers: list[tuple[str, str]], payload: bytes
    ) -> None:
        self.send_response(status, reason)
        upstream_length: str | None = None
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                upstream_length = value
            if lower in _HOP_BY_HOP or lower in ("server", "date"):
                continue
            self.send_header(name, value)
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        if self.command == "HEAD":
            if upstream_length is not None:
                self.send_header("Content-Length", upstream_length)
        elif not no_body:
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not no_body:
            self.wfile.write(payload)
        self.wfile.flush()


class GcsFaultProxy:
    """An HTTP/1.1 proxy in front of fake-gcs-server that fails some requests on purpose.

    Rates are probabilities in [0, 1] whose sum is at most 1; a matched request gets at
    most one fault. ``stall_seconds`` is the (low, high) of the uniform stall length.
    ``match(method, path)`` selects the requests that may be faulted (default: uploads).
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        error_rate: float = 0.0,
        stall_before_rate: float = 0.0,
        stall_after_rate: float = 0.0,
        lost_response_rate: float = 0.0,
        stall_seconds: tuple[float, float] = (1.0, 2.0),
        seed: int = 0,
        match: Callable[[str, str], bool] | None = None,
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream_url must be http://host:port, got {upstream_url!r}")
        self.upstream_url = upstream_url
        self._upstream = (parts.hostname, parts.port or 80)
        self._rates = _Rates(
            error_rate, stall_before_rate, stall_after_rate, lost_response_rate, stall_seconds
        )
        self._paused: _Rates | None = None
        self._rng = random.Random(seed)
        self._match = match or is_object_upload
        self._lock = threading.Lock()
        self._counters = _GcsCounters()
        self._connections: set[socket.socket] = set()
        self._server: _GcsServer | None = None
        self._thread: threading.Thread | None = None
        self._armed: dict[str, object] | None = None  # hold_next_upload's rendezvous
        self._parking: ParkedUpload | None = None  # park_next_upload's
        self._parked: list[ParkedUpload] = []
        self._in_flight = 0
        self._idle = threading.Condition()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> GcsFaultProxy:
        if self._server is None:
            self._server = _GcsServer(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="gcs-fault-proxy",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        with self._lock:
            for parked in self._parked:
                parked.release()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # kept-alive clients and stalled handlers
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT)

    def __enter__(self) -> GcsFaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the value for STORAGE_EMULATOR_HOST."""
        return f"http://127.0.0.1:{self.port}"

    # -- control -------------------------------------------------------------------------
    @property
    def stats(self) -> GcsFaultStats:
        with self._lock:
            c = self._counters
            return GcsFaultStats(
                connections=c.connections,
                requests=c.requests,
                matched=c.matched,
                errors=c.errors,
                stalls_before=c.stalls_before,
                stalls_after=c.stalls_after,
                lost_responses=c.lost_responses,
                upstream_failures=c.upstream_failures,
                stall_durations=tuple(c.stall_durations),
            )

    def set_rates(
        self,
        *,
        error_rate: float | None = None,
        stall_before_rate: float | None = None,
        stall_after_rate: float | None = None,
        lost_response_rate: float | None = None,
        stall_seconds: tuple[float, float] | None = None,
    ) -> None:
        """Change some rates (the others stay); this also ends a pause."""
        with self._lock:
            old = self._paused or self._rates
            self._rates = _Rates(
                old.error if error_rate is None else error_rate,
                old.stall_before if stall_before_rate is None else stall_before_rate,
                old.stall_after if stall_after_rate is None else stall_after_rate,
                old.lost_response if lost_response_rate is None else lost_response_rate,
                old.stall_seconds if stall_seconds is None else stall_seconds,
            )
            self._paused = None

    def pause_faults(self) -> None:
        """Forward everything untouched from now on (requests already stalling go on)."""
        with self._lock:
            if self._paused is None:
                self._paused = self._rates
                self._rates = _Rates(stall_seconds=self._rates.stall_seconds)

    def resume_faults(self) -> None:
        """Back to the rates in force before ``pause_faults``."""
        with self._lock:
            if self._paused is not None:
                self._rates, self._paused = self._paused, None

    def hold_next_upload(
        self, act: Callable[[tuple[str, int]], bool], timeout: float, *, cut: bool = True
    ) -> tuple[str, int] | None:
        """Wait for the next upload forwarded without a fault; once upstream stored it, and
        before its answer, call ``act(client_address)`` (the chaos run kills or pauses the
        sender there), then close that connection unanswered (``cut``) or answer it as
        usual. ``act`` returns False when it could not act (the sender already hung up, say):
        the next upload is taken then. Returns the address acted on, None after ``timeout``."""
        ends = time.monotonic() + timeout
        while (left := ends - time.monotonic()) > 0:
            got, done = threading.Event(), threading.Event()
            slot: dict[str, object] = {"got": got, "done": done, "address": None, "cut": cut}
            with self._lock:
                self._armed = slot
            try:
                if not got.wait(left):
                    return None
                address = cast(tuple[str, int], slot["address"])
                acted = False
                try:
                    acted = act(address)
                finally:
                    slot["acted"] = acted
                    done.set()
                if acted:
                    return address
            finally:
                with self._lock:
                    if self._armed is slot:
                        self._armed = None
        return None

    def park_next_upload(self) -> ParkedUpload:
        """Hold the next upload forwarded without a fault before it reaches the upstream,
        until ``ParkedUpload.release``: its client gives up on it after its per-attempt
        timeout (and retries); released, it lands, as an abandoned attempt can at any time.
        ``close`` releases what is still parked."""
        parked = ParkedUpload()
        with self._lock:
            self._parking = parked
        return parked

    def _park_if_armed(self, eligible: bool, path: str) -> ParkedUpload | None:
        """The parked upload once released (None if this request is not the one parked)."""
        if not eligible:
            return None
        with self._lock:
            parked, self._parking = self._parking, None
            if parked is not None:
                self._parked.append(parked)
        if parked is None:
            return None
        parked.path = path
        parked.arrived.set()
        parked._released.wait(_PARK_TIMEOUT)
        return parked

    def _hold_if_armed(self, eligible: bool, address: tuple[str, int]) -> str | None:
        """None if not held; else "cut" or "answer", once the armed action is done.
        ``eligible``: an upload forwarded without a fault."""
        if not eligible:
            return None
        with self._lock:
            slot, self._armed = self._armed, None
        if slot is None:
            return None
        slot["address"] = address
        cast(threading.Event, slot["got"]).set()
        cast(threading.Event, slot["done"]).wait(30.0)
        if not slot.get("acted"):
            return None  # the action declined (or timed out): answer as usual
        return "cut" if slot["cut"] else "answer"

    def _busy(self, delta: int) -> None:
        with self._idle:
            self._in_flight += delta
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in the proxy (a stalled upload may still land)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # -- called by the handler threads ---------------------------------------------------
    def _track(self, conn: socket.socket, active: bool) -> None:
        with self._lock:
            if active:
                self._connections.add(conn)
                self._counters.connections += 1
            else:
                self._connections.discard(conn)

    def _decide(self, method: str, path: str) -> tuple[bool, str | None, float]:
        """(matched, the fault drawn or None, stall seconds) for one request."""
        with self._lock:
            c = self._counters
            c.requests += 1
            if not self._match(method, path):
                return False, None, 0.0
            c.matched += 1
            fault = self._rates.draw(self._rng)
            stall = 0.0
            if fault in (STALL_BEFORE, STALL_AFTER):
                stall = self._rng.uniform(*self._rates.stall_seconds)
                c.stall_durations.append(stall)
            if fault == ERROR:
                c.errors += 1
            elif fault == STALL_BEFORE:
                c.stalls_before += 1
            elif fault == STALL_AFTER:
                c.stalls_after += 1
            elif fault == LOST_RESPONSE:
                c.lost_responses += 1
            return True, fault, stall

    def _count_upstream_failure(self) -> None:
        with self._lock:
            self._counters.upstream_failures += 1

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self._upstream, timeout=_UPSTREAM_TIMEOUT)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if not any(name.lower() == "host" for name, _ in headers):
                conn.putheader("Host", f"{self._upstream[0]}:{self._upstream[1]}")
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, resp.reason, resp.getheaders(), payload
        finally:
            conn.close()


# -- Redis ---------------------------------------------------------------------------------


def _resp_end(buf: bytes | bytearray, pos: int) -> int | None:
    """Offset just past the RESP value (request or reply) at ``pos``; None if incomplete.

    Knows RESP2 and RESP3 types and inline commands; a malformed header counts as a line.
    """
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return None
    after = line_end + 2
    kind = buf[pos : pos + 1]
    if kind in (b"$", b"!", b"=", b"*", b"~", b">", b"%", b"|"):
        try:
            count = int(buf[pos + 1 : line_end])
        except ValueError:
            return after
        if count < 0:
            return after  # null bulk or array
        if kind in (b"$", b"!", b"="):
            end = after + count + 2
            return end if end <= len(buf) else None
        if kind in (b"%", b"|"):
            count *= 2
        position: int | None = after
        for _ in range(count):
            assert position is not None
            position = _resp_end(buf, position)
            if position is None:
                return None
        if kind == b"|":  # an attribute is followed by the reply it annotates
            assert position is not None
            return _resp_end(buf, position)
        return position
    return after  # simple types (+ - : _ , # ( ) and inline commands: one line


def _split_complete(buf: bytearray) -> list[bytes]:
    """Remove and return every complete RESP value at the start of ``buf``."""
    out: list[bytes] = []
    pos = 0
    while pos < len(buf):
        end = _resp_end(buf, pos)
        if end is None:
            break
        out.append(bytes(buf[pos:end]))
        pos = end
    del buf[:pos]
    return out


def command_name(request: bytes) -> str:
    """The upper-cased name of the command in one RESP request (``""`` if none)."""
    if request.startswith(b"*"):
        first = request.find(b"\r\n")
        if first < 0 or request[first + 2 : first + 3] != b"$":
            return ""
        header_end = request.find(b"\r\n", first + 2)
        try:
            length = int(request[first + 3 : header_end])
        except ValueError:
            return ""
        start = header_end + 2
        return request[start : start + length].decode("latin-1").upper()
    words = request.split(None, 1)
    return words[0].decode("latin-1").upper() if words else ""


def is_append_command(request: bytes) -> bool:
    """The default Redis match: the pusher's append (``EVALSHA``, or ``EXEC`` of a MULTI).

    Matches on the command name, so audio bytes that happen to spell EXEC do not count.
    """
    return command_name(request) in ("EVALSHA", "EXEC")


@dataclass(frozen=True)
class RedisDropStats:
    """What a ``RedisReplyDropProxy`` has done so far (a snapshot)."""

    connections: int = 0
    commands: int = 0  # complete commands forwarded
    matched: int = 0  # client reads holding a matching command
    drops: int = 0  # replies thrown away (connection closed after the command ran)
    reply_timeouts: int = 0  # drops where Redis had not answered within reply_wait
    upstream_failures: int = 0  # client connections that could not reach Redis


@dataclass
class _RedisCounters:
    connections: int = 0
    commands: int = 0
    matched: int = 0
    drops: int = 0
    reply_timeouts: int = 0
    upstream_failures: int = 0


class RedisReplyDropProxy:
    """A TCP proxy in front of Redis that, now and then, runs a command and loses its reply.

    ``drop_rate`` is the chance that a client read holding a command accepted by
    ``match(request_bytes)`` (one complete RESP command) loses its reply.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        drop_rate: float,
        seed: int,
        match: Callable[[bytes], bool] = is_append_command,
        reply_wait: float = 2.0,
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._drop_rate = _check_rate("drop_rate", drop_rate)
        self._rng = random.Random(seed)
        self._match = match
        self._reply_wait = reply_wait
        self._lock = threading.Lock()
        self._counters = _RedisCounters()
        self._listener: socket.socket | None = None
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> RedisReplyDropProxy:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(0.2)
        self._listener = listener
        self._closing.clear()
        thread = threading.Thread(target=self._accept_loop, name="redis-drop-proxy", daemon=True)
        self._threads = [thread]
        thread.start()
        return self

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._closing.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(_JOIN_TIMEOUT)
        listener.close()

    def __enter__(self) -> RedisReplyDropProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the proxy is not running")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def stats(self) -> RedisDropStats:
        with self._lock:
            c = self._counters
            return RedisDropStats(
                connections=c.connections,
                commands=c.commands,
                matched=c.matched,
                drops=c.drops,
                reply_timeouts=c.reply_timeouts,
                upstream_failures=c.upstream_failures,
            )

    def set_drop_rate(self, drop_rate: float) -> None:
        rate = _check_rate("drop_rate", drop_rate)
        with self._lock:
            self._drop_rate = rate

    # -- internals -----------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._counters.connections += 1
                self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(
                target=self._serve, args=(client,), name="redis-drop-conn", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _register(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.update(socks)

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.difference_update(socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()

    def _serve(self, client: socket.socket) -> None:
        self._register(client)
        try:
            upstream = socket.create_connection(self._upstream, timeout=5.0)
        except OSError:
            with self._lock:
                self._counters.upstream_failures += 1
            self._forget(client)
            return
        self._register(upstream)
        try:
            self._pump(client, upstream)
        except OSError:
            pass
        finally:
            self._forget(client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        requests, replies = bytearray(), bytearray()
        sent = answered = 0
        while not self._closing.is_set():
            readable, _, _ = select.select([client, upstream], [], [], 0.5)
            if client in readable:
                data = client.recv(65536)
                if not data:
                    return
                requests += data
                commands = _split_complete(requests)
                upstream.sendall(data)
                sent += len(commands)
                with self._lock:
                    self._counters.commands += len(commands)
                    hit = False
                    if any(self._match(c) for c in commands):
                        self._counters.matched += 1
                        hit = self._rng.random() < self._drop_rate
                if hit:
                    self._drop_reply(upstream, replies, sent, answered)
                    return
            if upstream in readable:
                data = upstream.recv(65536)
                if not data:
                    return
                replies += data
                answered += len(_split_complete(replies))
                client.sendall(data)

    def _drop_reply(
        self, upstream: socket.socket, replies: bytearray, sent: int, answered: int
    ) -> None:
        """Wait until Redis answered every command sent (or ``reply_wait``); discard it."""
        deadline = time.monotonic() + self._reply_wait
        while answered < sent:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            readable, _, _ = select.select([upstream], [], [], remaining)
            if not readable:
                continue
            data = upstream.recv(65536)
            if not data:
                break
            replies += data
            answered += len(_split_complete(replies))
        with self._lock:
            self._counters.drops += 1
            if answered < sent:
                self._counters.reply_timeouts += 1


class RedisClusterReplyDropProxies:
    """A ``RedisReplyDropProxy`` in front of each node of a Redis Cluster.

    ``nodes`` are the nodes' own (host, port), as ``CLUSTER SLOTS`` gives them; node ``i``
    gets ``seed + i`` as its proxy's seed. Give a ``redis.cluster.RedisCluster``
    ``url`` as its seed and ``address_remap``: it then reaches every node through that
    node's proxy (its topology queries too, which never match). An address that is not
    one of ``nodes`` (a node added later) is left alone: that node would be reached
    directly.
    """

    def __init__(
        self,
        nodes: Sequence[tuple[str, int]],
        *,
        drop_rate: float,
        seed: int,
        match: Callable[[bytes], bool] = is_append_command,
        reply_wait: float = 2.0,
    ) -> None:
        if not nodes:
            raise ValueError("a cluster has at least one node")
        self.nodes = [(host, int(port)) for host, port in nodes]
        self.proxies = [
            RedisReplyDropProxy(
                host, port, drop_rate=drop_rate, seed=seed + i, match=match, reply_wait=reply_wait
            )
            for i, (host, port) in enumerate(self.nodes)
        ]
        self._remap: dict[tuple[str, int], tuple[str, int]] = {}

    def start(self) -> RedisClusterReplyDropProxies:
        for proxy in self.proxies:
            proxy.start()
        self._remap = {
            node: ("127.0.0.1", proxy.port)
            for node, proxy in zip(self.nodes, self.proxies, strict=True)
        }
        return self

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()

    def __enter__(self) -> RedisClusterReplyDropProxies:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT``: the first node's proxy, a seed for a cluster client."""
        return f"redis://127.0.0.1:{self.proxies[0].port}"

    def address_remap(self, address: tuple[str, int]) -> tuple[str, int]:
        """Where a cluster client reaches the node at ``address``: its proxy."""
        return self._remap.get((address[0], int(address[1])), address)

    @property
    def stats(self) -> RedisDropStats:
        """The proxies' stats, added up."""
        each = [proxy.stats for proxy in self.proxies]
        return RedisDropStats(
            connections=sum(s.connections for s in each),
            commands=sum(s.commands for s in each),
            matched=sum(s.matched for s in each),
            drops=sum(s.drops for s in each),
            reply_timeouts=sum(s.reply_timeouts for s in each),
            upstream_failures=sum(s.upstream_failures for s in each),
        )

    def set_drop_rate(self, drop_rate: float) -> None:
        for proxy in self.proxies:
            proxy.set_drop_rate(drop_rate)
