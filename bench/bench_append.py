"""Store CPU per append: the pusher's append script against a bare ``XADD`` of the same entry.

Run: ``.venv/bin/python bench/bench_append.py [--rounds R] [--block B] [--callgrind]
[--quick]``.

One valkey of its own (``StandaloneValkey``: the local stack's configuration, AOF
``everysec``; nothing else talks to it). The entries are real sealed 5 s chunk entries as
the pusher builds them (``Session._entry``): ``tests/data/speech_16k.wav`` (resampled to
8 kHz for the 8 kHz ones) cut in 5 s chunks, Opus-encoded by one ``ChunkEncoder`` per rate
at the default settings, put in the v1 container and sealed (envelope v1, ``enhanced``).
The same entries are appended by each path:

- **bare**: ``XADD <stream> * <fields>`` (redis-py's ``xadd``);
- **append**: the pusher's real path, ``Appender.append`` (backend_hooks/contract/lua/
  append.lua: mark, ``XADD``, due time);
- **previous**: the same Appender running the append script as it was before it was cut
  (``audiosync_dev.previous_append``: ``GET`` and ``SET`` of the mark, ``TIME``, ``ZADD``);
- **floor**: the same Appender running a script that only does the ``XADD`` s (``FLOOR``):
  what any Lua append costs before it does anything else, the script overhead's floor.

``--split`` adds two paths that keep the entry out of Lua, for comparison only (neither
keeps the guarantees: the transaction below is not atomic when a command in it fails,
and a missing script (``NOSCRIPT`` after a restart) fails after the ``XADD`` landed):

- **split**: ``MULTI``, the bare ``XADD``, an ``EVALSHA`` of a script that only sets the
  mark and the due time (``SPLIT_BOOKKEEPING``: ``SET ... GET``, ``TIME``, ``ZADD``), ``EXEC``;
- **plain**: ``MULTI``, ``XADD``, ``SET`` of the mark, ``ZADD LT`` of a client-side due
  time, ``EXEC``: no script at all, what writing a mark and a due entry costs by itself.

A block is B appends of one path at one rate: B / 12 sessions, each with 12 chunks (one
object at 60 s), appended round-robin (chunk 0 of every session, then chunk 1, ...) as
live sessions append every 5 s; every 12th append of a session is urgent (due now), the
others due after 60 s, as ``AUDIOSYNC_OBJECT_SECONDS`` makes them. Each path has its own
keys, deleted after its block (outside the measured window). The paths ALTERNATE: every
round runs one block of each path at each rate, in an order rotated each round.

Per block: the store's CPU (``INFO cpu`` ``used_cpu_user`` + ``used_cpu_sys`` delta: the
whole server process, its network reads and writes, AOF writes and fsyncs included) and
the command time ``INFO commandstats`` records (``usec`` of the ``XADD`` s, or of the
``EVALSHA`` s with everything inside them; after ``CONFIG RESETSTAT``). A path's ratio is
its block's figure over the bare block's of the same round and rate; printed: the median
over the rounds and its range (min-max).

``--callgrind``: the same rounds with valkey run under ``valgrind --tool=callgrind``
(instrumentation switched on after start-up, counters zeroed before and dumped after each
block with ``callgrind_control``): instructions per append, repeatable to a fraction of a
percent where the CPU figures move by several per cent on a shared machine. Kernel time
(the socket reads and writes) is not counted there, so those ratios are higher than the
CPU ones.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from audiosync_dev.localstack import LocalStack, StandaloneValkey, free_port
from audiosync_dev.previous_append import PREVIOUS_APPEND
from backend_hooks.adapters.redis_store import NodeScript
from backend_hooks.contract import container, envelope, redis_keys
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.entries import ENHANCED, KIND_CHUNK, NewEntry
from backend_hooks.contract.redis_keys import APPENDED_MARK_TTL_MS
from backend_hooks.pusher.appender import Appender
from backend_hooks.read.resample import resample_pcm16
from bench.load import machine_busy

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech_16k.wav"
SECRET = b"bench-secret-" + b"s" * 32
CHUNK_SECONDS = 5
CHUNKS_PER_OBJECT = 12  # AUDIOSYNC_OBJECT_SECONDS 60 / 5 s: every 12th append is urgent
MAX_AGE_SECONDS = 60.0
SHARDS = 16
RATES = (8000, 16000)
PATHS = ("bare", "append", "previous", "floor")
SPLIT_PATHS = ("split", "plain")


#: The XADDs alone, with the append's KEYS and ARGV: no mark, no due time.
FLOOR = """\
local pos = 7
for _ = 1, tonumber(ARGV[6]) do
  local count = tonumber(ARGV[pos])
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, pos + 1, pos + 2 * count))
  pos = pos + 1 + 2 * count
end
return 0
"""


#: ``--split``: the mark and the due time alone, after a bare XADD in the same MULTI.
SPLIT_BOOKKEEPING = """\
local last = tonumber(ARGV[5]) + tonumber(ARGV[6]) - 1
local mark = tonumber(redis.call('SET', KEYS[2], last, 'PX', ARGV[4], 'GET') or '-1')
if mark > last then redis.call('SET', KEYS[2], mark, 'PX', ARGV[4]) end
local t = redis.call('TIME')
local due = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[2] ~= '1' then due = due + tonumber(ARGV[3]) end
redis.call('ZADD', KEYS[3], 'LT', due, ARGV[1])
return 0
"""


# -- entries -------------------------------------------------------------------------------
def speech(rate: int, seconds: int) -> bytes:
    """``seconds`` of the speech sample at ``rate``, looped."""
    with wave.open(str(SPEECH), "rb") as w:
        pcm = w.readframes(w.getnframes())
        source_rate = w.getframerate()
    if rate != source_rate:
        pcm = resample_pcm16(pcm, source_rate, rate)
    need = seconds * rate * 2
    return (pcm * (need // len(pcm) + 1))[:need]


def sealed_entries(rate: int, sessions: int) -> list[list[NewEntry]]:
    """``sessions`` x 12 chunk entries as the pusher builds them (``Session._entry``):
    encoded, in the v1 container, sealed. The sessions share the encoded audio (60 s of
    speech, each session starting at its own chunk); each entry is contained and sealed
    for its own session and seq."""
    encoder = ChunkEncoder(rate)
    samples = CHUNK_SECONDS * rate
    pcm = speech(rate, CHUNK_SECONDS * CHUNKS_PER_OBJECT)
    packets = [
        encoder.encode(pcm[i * samples * 2 : (i + 1) * samples * 2])
        for i in range(CHUNKS_PER_OBJECT)
    ]
    keys = envelope.UserKeys(SECRET)
    now_us = int(time.time() * 1_000_000)
    out = []
    for s in range(sessions):
        uid, sid = f"bench-u{s}", f"{rate}-{s:027x}"
        row = []
        for c in range(CHUNKS_PER_OBJECT):
            start_us = now_us + c * CHUNK_SECONDS * 1_000_000
            info = container.ChunkInfo(sid, c, start_us, rate, samples)
            data = container.build_chunk(
                info, packets[(s + c) % CHUNKS_PER_OBJECT], encoder.pre_skip
            )
            row.append(
                NewEntry(
                    kind=KIND_CHUNK,
                    uid=uid,
                    cid=f"bench-c{s}",
                    enq_us=start_us,
                    level=ENHANCED,
                    rate=rate,
                    seq=c,
                    start_us=start_us,
                    samples=samples,
                    data=envelope.seal(keys, uid, info, data),
                )
            )
        out.append(row)
    return out


# -- the paths -----------------------------------------------------------------------------
Append = Callable[[redis_keys.SessionKeys, NewEntry, int, bool], None]


def appender_path(client: redis.Redis, source: str | None) -> Append:
    """The pusher's Appender; with ``source``, running that script instead of its own."""
    appender = Appender(client)
    if source is not None:
        appender._script = NodeScript(client, source)

    def append(keys: redis_keys.SessionKeys, entry: NewEntry, n: int, urgent: bool) -> None:
        appender.append(keys, [entry], first_n=n, urgent=urgent, max_age_seconds=MAX_AGE_SECONDS)

    return append


def bare_path(client: redis.Redis) -> Append:
    def append(keys: redis_keys.SessionKeys, entry: NewEntry, n: int, urgent: bool) -> None:
        client.xadd(keys.chunks, entry.fields())  # type: ignore[arg-type]

    return append


def split_path(client: redis.Redis, plain: bool) -> Append:
    sha = client.script_load(SPLIT_BOOKKEEPING)

    def append(keys: redis_keys.SessionKeys, entry: NewEntry, n: int, urgent: bool) -> None:
        pipe = client.pipeline(transaction=True)
        pipe.xadd(keys.chunks, entry.fields())  # type: ignore[arg-type]
        if plain:
            pipe.set(keys.appended, n, px=APPENDED_MARK_TTL_MS)
            pipe.zadd(keys.due, {keys.session_id: time.time() + MAX_AGE_SECONDS}, lt=True)
        else:
            args = (keys.session_id, int(urgent), MAX_AGE_SECONDS, APPENDED_MARK_TTL_MS, n, 1)
            pipe.evalsha(sha, 3, keys.chunks, keys.appended, keys.due, *args)
        pipe.execute()

    return append


def paths(client: redis.Redis, split: bool) -> dict[str, Append]:
    out = {
        "bare": bare_path(client),
        "append": appender_path(client, None),
        "previous": appender_path(client, PREVIOUS_APPEND),
        "floor": appender_path(client, FLOOR),
    }
    if split:
        out.update(split=split_path(client, False), plain=split_path(client, True))
    return out


# -- measuring -----------------------------------------------------------------------------
class Meter:
    """What one block cost the store: CPU seconds, command microseconds, instructions."""

    def __init__(self, client: redis.Redis, callgrind_pid: int | None, workdir: Path) -> None:
        self.client = client
        self.callgrind_pid = callgrind_pid
        self.workdir = workdir

    def cpu(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def command_usec(self, path: str) -> float:
        stats = self.client.info("commandstats")
        names = {
            "bare": ("cmdstat_xadd",),
            "split": ("cmdstat_xadd", "cmdstat_evalsha", "cmdstat_multi", "cmdstat_exec"),
            "plain": ("cmdstat_multi", "cmdstat_exec"),  # EXEC's time holds its commands'
        }.get(path, ("cmdstat_evalsha", "cmdstat_eval"))
        return sum(float(stats[n]["usec"]) for n in names if n in stats)

    def callgrind(self, command: str) -> None:
        assert self.callgrind_pid is not None
        subprocess.run(
            ["callgrind_control", command, str(self.callgrind_pid)],
            check=True,
            capture_output=True,
        )

    def instructions(self) -> float:
        """Dump the counters; the instructions since they were zeroed."""
        self.callgrind("-d")
        dumps = sorted(self.workdir.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
        for line in dumps[-1].read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return float(line.split()[1])
        raise RuntimeError(f"no totals in {dumps[-1]}")


@dataclass
class Block:
    cpu: float  # seconds
    usec: float  # INFO commandstats
    ir: float = math.nan  # instructions (callgrind)


@dataclass
class Results:
    blocks: dict[tuple[int, str], list[Block]] = field(default_factory=dict)

    def add(self, rate: int, path: str, block: Block) -> None:
        self.blocks.setdefault((rate, path), []).append(block)


def run_block(
    client: redis.Redis,
    meter: Meter,
    append: Append,
    path: str,
    rows: list[list[NewEntry]],
) -> Block:
    keys = [
        redis_keys.SessionKeys(f"{path}-{s:027x}", redis_keys.shard_of(f"{path}-{s}", SHARDS))
        for s in range(len(rows))
    ]
    client.config_resetstat()
    cpu0 = meter.cpu()
    if meter.callgrind_pid is not None:
        meter.callgrind("-z")
    for c in range(CHUNKS_PER_OBJECT):
        urgent = c == CHUNKS_PER_OBJECT - 1
        for k, row in zip(keys, rows, strict=True):
            append(k, row[c], c, urgent)
    ir = meter.instructions() if meter.callgrind_pid is not None else math.nan
    cpu1 = meter.cpu()
    usec = meter.command_usec(path)
    for k in keys:
        client.unlink(k.chunks, k.appended)
    client.unlink(*{k.due for k in keys})
    return Block(cpu=cpu1 - cpu0, usec=usec, ir=ir)


def measure(
    client: redis.Redis, meter: Meter, rounds: int, block: int, names: tuple[str, ...]
) -> Results:
    sessions = max(1, block // CHUNKS_PER_OBJECT)
    entries = {rate: sealed_entries(rate, sessions) for rate in RATES}
    by_path = paths(client, split=len(names) > len(PATHS))
    for rate in RATES:  # warm-up: every script loaded, the allocator grown
        for path, append in by_path.items():
            run_block(client, meter, append, path, entries[rate][:2])
    results = Results()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for rate in RATES:
            for path in order:
                results.add(
                    rate, path, run_block(client, meter, by_path[path], path, entries[rate])
                )
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return results


# -- valkey --------------------------------------------------------------------------------
@contextmanager
def valkey(workdir: Path, callgrind: bool) -> Iterator[tuple[redis.Redis, int | None]]:
    """A valkey of its own: (its client, the callgrind pid or None)."""
    if not callgrind:
        with StandaloneValkey(workdir / "valkey") as server:
            client = redis.Redis.from_url(server.url)
            yield client, None
            client.close()
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--callgrind needs valgrind and callgrind_control on PATH")
    port = free_port()
    argv = LocalStack._valkey_argv(port, workdir, workdir / "valkey.log")
    tool = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={workdir / 'callgrind.out'}",
    ]
    with open(workdir / "valgrind.log", "w") as log:
        proc = subprocess.Popen([*tool, *argv], stdout=subprocess.DEVNULL, stderr=log)
    try:
        client = redis.Redis(port=port, socket_timeout=60)
        deadline = time.monotonic() + 120
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        "valkey under valgrind did not start: "
                        + (workdir / "valgrind.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.2)
        subprocess.run(
            ["callgrind_control", "-i", "on", str(proc.pid)],
            check=True,
            capture_output=True,
        )
        yield client, proc.pid
        client.close()
    finally:
        proc.terminate()
        proc.wait(60)


# -- report --------------------------------------------------------------------------------
def ratio_text(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def report(results: Results, block: int, callgrind: bool, names: tuple[str, ...]) -> None:
    appends = max(1, block // CHUNKS_PER_OBJECT) * CHUNKS_PER_OBJECT
    if callgrind:
        print("| rate | path | instructions / append | ratio to bare (min-max) |")
        print("|---|---|---|---|")
    else:
        print(
            "| rate | path | store CPU us / append | ratio to bare (min-max) "
            "| commandstats us / append | ratio to bare (min-max) |"
        )
        print("|---|---|---|---|---|---|")
    for rate in RATES:
        bare = results.blocks[(rate, "bare")]
        for path in names:
            blocks = results.blocks[(rate, path)]
            if callgrind:
                ir = [b.ir / appends for b in blocks]
                ratios = [b.ir / a.ir for b, a in zip(blocks, bare, strict=True)]
                print(f"| {rate} | {path} | {statistics.median(ir):,.0f} | {ratio_text(ratios)} |")
                continue
            cpu = [b.cpu / appends * 1e6 for b in blocks]
            cpu_ratios = [b.cpu / a.cpu for b, a in zip(blocks, bare, strict=True)]
            usec = [b.usec / appends for b in blocks]
            usec_ratios = [b.usec / a.usec for b, a in zip(blocks, bare, strict=True)]
            print(
                f"| {rate} | {path} | {statistics.median(cpu):.1f} | {ratio_text(cpu_ratios)} "
                f"| {statistics.median(usec):.2f} | {ratio_text(usec_ratios)} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=20, help="blocks of each path and rate")
    parser.add_argument("--block", type=int, default=600, help="appends per block")
    parser.add_argument("--callgrind", action="store_true", help="instruction counts")
    parser.add_argument("--split", action="store_true", help="the MULTI paths too (unsafe)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 2 small rounds")
    args = parser.parse_args()
    names = PATHS + SPLIT_PATHS if args.split else PATHS
    rounds, block = (2, 24) if args.quick else (args.rounds, args.block)
    if args.callgrind and not args.quick:
        rounds, block = min(rounds, 5), min(block, 120)  # ~50x slower under valgrind
    busy0, total0 = machine_busy()
    with (
        tempfile.TemporaryDirectory(prefix="bench-append-") as tmp,
        valkey(Path(tmp), args.callgrind) as (client, pid),
    ):
        server = client.info("server")
        print(
            f"valkey {server.get('valkey_version', server.get('redis_version'))}, "
            f"{rounds} rounds x {len(RATES)} rates x {len(names)} paths, "
            f"{max(1, block // CHUNKS_PER_OBJECT) * CHUNKS_PER_OBJECT} appends a block"
            + (", under callgrind" if pid else ""),
            flush=True,
        )
        results = measure(client, Meter(client, pid, Path(tmp)), rounds, block, names)
    busy1, total1 = machine_busy()
    cores = os.cpu_count() or 1
    print(
        f"machine busy {100 * (busy1 - busy0) / max(total1 - total0, 1e-9):.0f} % of "
        f"{cores} cores during the run"
    )
    report(results, block, args.callgrind, names)


if __name__ == "__main__":
    main()
