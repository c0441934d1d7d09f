"""Store and broker commands per session-hour, pusher, worker and broker apart.

Run: ``.venv/bin/python bench/bench_commands.py [--sessions N] [--minutes M] [--cluster]``.

N live sessions, paced in real time exactly as bench_latency.py paces them (bench/load.py:
one 5 s chunk every 5 s, the pusher's append script and urgent rule, a close at the end,
starts staggered over one object period), drained by one
``celery -A workers worker --concurrency=2 -B``. The stream store is one valkey, or with
``--cluster`` a 3-master valkey cluster; the Celery broker is always a valkey of its own,
so the two are counted apart.

Counting: a ``MONITOR`` on every server (each cluster node and the broker) sees every
command with the connection that sent it; the pusher's and the bench's own connections
carry a client name (``CLIENT SETNAME`` shows in the stream), every other connection is
the worker's (its main process, pool processes and embedded beat). Commands a Lua script
runs (``redis.call``) show as ``lua`` right after their script call and are counted apart,
for its caller: "sent" are the commands clients send (a script call is one), "in scripts"
the ones scripts run. ``INFO commandstats`` counts both; its delta is printed as a check
against what MONITOR saw.

Two windows: "all live" (every session open and appending, no opens or closes: the steady
state; session-hours = N x its length) and "whole run" (from the first append to the end
of the drain, the ramp, the closes and the idle tail included; session-hours = the audio
pushed). Per flushed object: the objects whose ``timeCreated`` falls in the window.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import redis

import backend_hooks.contract.lua_scripts
import workers.lua_scripts
from audiosync_dev import processes
from audiosync_dev.localstack import LocalStack
from bench.load import (
    BENCH_NAME,
    PUSHER_NAME,
    Plan,
    Pushers,
    StoredObject,
    bench_client,
    commandstats,
    list_objects,
    log_errors,
    node_clients,
    plan,
    pusher_client,
    pusher_settings,
    wait_drained,
    worker_log,
)

_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_SUBCOMMANDS = {b"CLIENT", b"SCRIPT", b"CLUSTER", b"CONFIG", b"COMMAND", b"XINFO", b"OBJECT"}


def script_names() -> dict[bytes, str]:
    """SHA1 of every audiosync Lua script (what EVALSHA sends) -> its name, upper case
    (``append.lua``: ``APPEND``)."""
    return {
        hashlib.sha1(text.encode()).hexdigest().encode(): name.upper()
        for table in (backend_hooks.contract.lua_scripts.SCRIPTS, workers.lua_scripts.SCRIPTS)
        for name, text in table.items()
    }


@dataclass(frozen=True)
class Event:
    at: float  # the server's timestamp
    side: str  # "pusher", "worker", "bench"
    command: str  # e.g. "EVALSHA APPEND", "XRANGE", "CLIENT SETNAME"
    in_script: bool


class MonitorTap(threading.Thread):
    """MONITOR on one server, read until ``stop`` sees its sentinel come through."""

    def __init__(self, host: str, port: int, scripts: dict[bytes, str]) -> None:
        super().__init__(name=f"monitor-{port}", daemon=True)
        self.host, self.port, self.scripts = host, port, scripts
        self.events: list[Event] = []
        self.names: dict[bytes, str] = {}  # connection address -> client name
        self.error: BaseException | None = None
        self._sentinel = f"bench-end-{uuid.uuid4().hex}".encode()
        self._ready = threading.Event()
        client = redis.Redis(host=host, port=port, socket_timeout=None)  # may be quiet
        for conn in client.client_list():  # connections older than the MONITOR
            if conn.get("name"):
                self.names[str(conn["addr"]).encode()] = str(conn["name"])
        self._client = client

    def start(self) -> None:
        super().start()
        if not self._ready.wait(10) or self.error:
            raise RuntimeError(f"MONITOR on {self.host}:{self.port} failed: {self.error}")

    def run(self) -> None:
        try:
            conn = self._client.connection_pool.get_connection()
            conn.send_command("MONITOR")  # type: ignore[no-untyped-call]
            conn.read_response()  # OK
            self._ready.set()
            side = "worker"
            while True:
                line = conn.read_response()
                assert isinstance(line, bytes)
                if self._sentinel in line:
                    return
                side = self._record(line, side)
        except BaseException as exc:  # reported by stop()
            self.error = exc
            self._ready.set()

    def _record(self, line: bytes, last_side: str) -> str:
        space = line.index(b" ")
        close = line.index(b"] ", space)
        addr = line[space + 2 : close].split(b" ", 1)[1]
        tokens = []
        for match in _TOKEN.finditer(line, close + 2):
            tokens.append(match.group(1))
            if len(tokens) == 3:
                break
        name = tokens[0].upper()
        if len(tokens) > 1 and name in _SUBCOMMANDS:
            name += b" " + tokens[1].upper()
        elif len(tokens) > 1 and name == b"EVALSHA":
            sha = tokens[1]
            name += b" " + (self.scripts[sha].encode() if sha in self.scripts else sha[:8])
        in_script = addr == b"lua"
        if in_script:
            side = last_side
        else:
            if name == b"CLIENT SETNAME" and len(tokens) == 3:
                self.names[addr] = tokens[2].decode()
            side = {PUSHER_NAME: "pusher", BENCH_NAME: "bench"}.get(
                self.names.get(addr, ""), "worker"
            )
        self.events.append(Event(float(line[:space]), side, name.decode(), in_script))
        return side

    def stop(self, timeout: float = 60.0) -> None:
        self._client.echo(self._sentinel)
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError(f"MONITOR on {self.host}:{self.port} did not catch up")
        if self.error:
            raise RuntimeError(f"MONITOR on {self.host}:{self.port}: {self.error!r}")


def host_port(client: redis.Redis) -> tuple[str, int]:
    kwargs = client.connection_pool.connection_kwargs
    return str(kwargs["host"]), int(kwargs["port"])


@dataclass
class Window:
    name: str
    start: float
    end: float
    session_hours: float
    objects: int = 0
    counts: dict[tuple[str, bool], int] = field(default_factory=dict)  # (side, in script)
    top: dict[str, Counter[str]] = field(default_factory=dict)  # side -> sent commands

    @property
    def seconds(self) -> float:
        return self.end - self.start


def tally(window: Window, server: str, events: list[Event]) -> None:
    for e in events:
        if window.start <= e.at < window.end and e.side != "bench":
            key = (f"{server}: {e.side}", e.in_script)
            window.counts[key] = window.counts.get(key, 0) + 1
            if not e.in_script:
                window.top.setdefault(key[0], Counter())[e.command] += 1


def between_info(events: list[Event]) -> int:
    """Commands MONITOR saw from the bench's first INFO (included) to its last (not)."""
    marks = [n for n, e in enumerate(events) if e.side == "bench" and e.command == "INFO"]
    return marks[-1] - marks[0] if len(marks) >= 2 else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=3.0, help="audio per session")
    parser.add_argument("--max-age", type=float, default=60.0)
    parser.add_argument("--sweep", type=float, default=5.0)
    parser.add_argument("--stagger", type=float, help="seconds the starts spread over")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="pusher threads")
    parser.add_argument("--cluster", action="store_true", help="streams on a 3-master cluster")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--dump", type=Path, help="write every command MONITOR saw (JSON lines)")
    args = parser.parse_args()
    wall_started = time.monotonic()
    scripts = script_names()

    with tempfile.TemporaryDirectory(prefix="audiosync-bench-") as tmp, ExitStack() as stack:
        info = stack.enter_context(LocalStack(workdir=Path(tmp) / "stack", cluster=args.cluster))
        if args.cluster:
            broker_url = info.redis_url  # the plain valkey: only the broker uses it here
        else:  # a second valkey (its stack's fake-gcs-server stays idle) for the broker
            broker_url = stack.enter_context(LocalStack(workdir=Path(tmp) / "broker")).redis_url
        env = {
            **info.env(),
            "CELERY_BROKER_URL": broker_url,
            "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": repr(args.max_age),
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": repr(args.sweep),
        }
        settings = pusher_settings(env)
        chunks = round(args.minutes * 60 / settings.chunk_seconds)
        stagger = (
            args.stagger if args.stagger is not None else min(settings.object_seconds, args.max_age)
        )
        the_plan = plan(settings, args.sessions, chunks, stagger)

        store_nodes = node_clients(settings)
        broker_node = redis.Redis.from_url(broker_url, client_name=BENCH_NAME)
        taps = {id(c): MonitorTap(*host_port(c), scripts) for c in [*store_nodes, broker_node]}
        for tap in taps.values():
            tap.start()
        worker = processes.worker(env, Path(tmp), name="bench", concurrency=args.concurrency)
        stats = bench_client(settings)
        client = pusher_client(settings)
        try:
            t0 = time.time() + 2.0
            info0 = [commandstats(c) for c in [*store_nodes, broker_node]]
            pushed = Pushers(the_plan, client, args.threads).run(t0)
            drained_at = wait_drained(stats, settings.due_shards, args.drain_timeout)
            info1 = [commandstats(c) for c in [*store_nodes, broker_node]]
            for tap in taps.values():
                tap.stop()
        finally:
            worker.stop()
        objects = list_objects(info.gcs_url, info.bucket, the_plan)
        errors = log_errors(worker.log)
        did = worker_log(worker.log)
    wall = time.monotonic() - wall_started

    end = drained_at if drained_at is not None else time.time()
    live_start, live_end = the_plan.all_live(t0)
    windows = [Window("whole run", t0, end + 1.0, the_plan.audio_hours)]
    if live_end > live_start:  # else the sessions are too short for their stagger
        hours = args.sessions * (live_end - live_start) / 3600
        windows.insert(0, Window("all live", live_start, live_end, hours))
    for window in windows:
        window.objects = sum(window.start <= o.created < window.end for o in objects)
        for c in store_nodes:
            tally(window, "store", taps[id(c)].events)
        tally(window, "broker", taps[id(broker_node)].events)

    if args.dump:
        with args.dump.open("w") as out:
            for tap in taps.values():
                for e in tap.events:
                    out.write(json.dumps({"server": tap.port, **dataclasses.asdict(e)}) + "\n")
    report(args, the_plan, objects, windows, t0)
    print("\ncheck: MONITOR against INFO commandstats, first append to end of drain")
    for c, before, after in zip([*store_nodes, broker_node], info0, info1, strict=True):
        host, port = host_port(c)
        delta = sum((after - before).values())
        print(
            f"  {host}:{port:<6} INFO delta {delta:>9,}   "
            f"MONITOR {between_info(taps[id(c)].events):>9,}"
        )
    pusher_sent = sum(
        1
        for c in store_nodes
        for e in taps[id(c)].events
        if e.side == "pusher" and not e.in_script and e.command == "EVALSHA APPEND"
    )
    print(
        f"  pusher: {len(pushed.appends):,} append calls made, {pusher_sent:,} EVALSHA APPEND "
        f"seen ({pushed.errors} failed)"
    )
    print(f"worker (from its log): {did.summary()}")
    print(f"worker log errors: {errors}; drained: {'yes' if drained_at else 'NO'}")
    print(f"run time: {wall:.0f} s")


def report(
    args: argparse.Namespace,
    the_plan: Plan,
    objects: list[StoredObject],
    windows: list[Window],
    t0: float,
) -> None:
    store = "3-master valkey cluster (3 nodes summed)" if args.cluster else "one valkey"
    print(f"store                {store}; broker: a valkey of its own")
    print(
        f"sessions x audio     {args.sessions:,} x {the_plan.chunks} chunks of 5 s "
        f"({args.minutes:g} min), starts over {the_plan.stagger:g} s; max age {args.max_age:g} s, "
        f"sweep {args.sweep:g} s, worker concurrency {args.concurrency}"
    )
    print(
        f"objects              {len(objects):,} "
        f"(mean {sum(o.chunks for o in objects) / max(1, len(objects)):.2f} chunks)"
    )
    for w in windows:
        print(
            f"window {w.name:<13} {w.seconds:6.0f} s, {w.session_hours:.2f} session-hours, "
            f"{w.objects:,} objects, starts {w.start - t0:+.0f} s"
        )
    sides = sorted({side for w in windows for side, _ in w.counts})
    order = {"store: pusher": 0, "store: worker": 1, "broker: worker": 2}
    sides.sort(key=lambda s: order.get(s, 9))

    header = "".join(f"{w.name + ' sent':>16}{'in scripts':>12}" for w in windows)
    print(f"\ncommands per session-hour {header}")
    for side in sides:
        row = "".join(
            f"{w.counts.get((side, False), 0) / w.session_hours:16,.0f}"
            f"{w.counts.get((side, True), 0) / w.session_hours:12,.0f}"
            for w in windows
        )
        print(f"  {side:<23} {row}")
    print(f"commands per object       {header}")
    for side in sides:
        row = "".join(
            f"{w.counts.get((side, False), 0) / max(1, w.objects):16,.1f}"
            f"{w.counts.get((side, True), 0) / max(1, w.objects):12,.1f}"
            for w in windows
        )
        print(f"  {side:<23} {row}")
    print(f"commands per second       {header}")
    for side in sides:
        row = "".join(
            f"{w.counts.get((side, False), 0) / w.seconds:16,.1f}"
            f"{w.counts.get((side, True), 0) / w.seconds:12,.1f}"
            for w in windows
        )
        print(f"  {side:<23} {row}")
    live = windows[0]
    print(f"\nsent per session-hour, by command ({live.name} window)")
    for side in sides:
        top = live.top.get(side, Counter()).most_common()
        text = ", ".join(f"{cmd} {n / live.session_hours:,.1f}" for cmd, n in top)
        print(f"  {side}: {text}")


if __name__ == "__main__":
    main()
