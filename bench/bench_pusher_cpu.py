"""CPU of the whole pusher path per session-minute vs bare libopus on the same audio.

Run: ``.venv/bin/python bench/bench_pusher_cpu.py [--rounds R] [--seconds S] [--quick]
[--profile] [--against CHECKOUT --pairs P] [--callgrind]``.

Per configuration (16 and 8 kHz, ``enhanced`` and ``standard``), in the same process and
the same run, side by side:

- **pusher**: an ``AudioSyncClient`` (default settings, its thread pool, breaker and
  maintenance thread) against a real valkey of its own (``StandaloneValkey``); one
  session on an asyncio loop gets S seconds of ``audiosync_dev.speech.speech_like`` audio
  as 20 ms frames through ``await session.apush(frame, timestamp)``, then
  ``await session.aclose()``. Pushed faster than real time, but after each 5 s chunk's
  frames the loop waits (``asyncio.sleep(0.02)`` polls, counted for the pusher) until the
  chunk is in Redis, so every chunk is its own append as at real-time pace.
- **bare**: one ``opuslib.Encoder`` set up as the session's own (application, bitrate,
  complexity and VBR read from the session's encoder), encoding the same 20 ms frames,
  and nothing else. The overhead is against this.
- **direct**: the same, with ``opus_encode`` called through ctypes and nothing else
  (``DirectEncoder``: no opuslib objects per frame, as the pusher's own ``ChunkEncoder``
  calls it): the barest a Python caller encodes with, a stricter baseline ("vs direct").

CPU is ``time.process_time()`` of this process (every thread: the pool, the maintenance
thread, the loop); valkey's own CPU is not in it. The machine's load changes by the
second, so the three are measured side by side chunk by chunk: for each 5 s chunk, its
250 frames through the pusher (until the chunk is in Redis) and the same 250 frames
through the bare and the direct encoder, in rotating order (each of the three first,
second and last in turn, the rotation reversed in odd rounds); the session's
``open_session`` and ``aclose`` count for the pusher. A round is one session of S
seconds; the figures are medians over the rounds, the overhead the median of each round's
pusher / bare - 1. "apush us/frame"
is the loop thread's CPU in ``apush`` per 20 ms frame (``time.thread_time``; the encoding
runs on the pool, so this is what the event loop itself pays per frame).

The pusher encodes one 20 ms frame more per 5 s chunk than the bare encoder (each chunk is
its own Opus stream, padded to cover the 6.5 ms look-ahead: 251 frames instead of 250),
0.4 % of the encoding by construction.

``--against CHECKOUT [--pairs P]``: this bench run on this checkout and on another one
(a worktree of main, say) in alternating processes, ``PYTHONPATH`` set to each, P runs of
``--rounds`` each; a table of medians per checkout. Both are measured by this file's code,
so only the pusher differs.

``--callgrind [--against CHECKOUT]``: instructions instead of CPU time, every thread's,
counted by valgrind's callgrind (one process per configuration, instrumentation switched
on after the set-up and the warm-up, counters zeroed and dumped around each side with
``callgrind_control``): the same on a loaded machine as on an idle one. They leave out
what the kernel does for the process (the socket calls to Redis, the futex wake-ups of
the hand-offs between threads) and the cost of cold caches, which the CPU time includes.

``--profile``: one session-minute of 16 kHz ``enhanced`` under cProfile, with the pool
replaced by an inline executor (everything on the profiled thread), top functions by own
time; what is not libopus is where the overhead goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ctypes
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import opuslib
import opuslib.api

from audiosync_dev.localstack import StandaloneValkey
from audiosync_dev.speech import speech_like
from backend_hooks.contract.codec import frame_samples
from backend_hooks.contract.entries import ENHANCED, STANDARD
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.client import AudioSyncClient
from backend_hooks.pusher.session import Session

CONFIGS = ((16000, ENHANCED), (16000, STANDARD), (8000, ENHANCED), (8000, STANDARD))
FRAME_SECONDS = 0.02
SETTLE_SECONDS = 0.15
SECRET = "bench-secret-" + "s" * 32
T = TypeVar("T")


def frames_of(pcm: bytes, rate: int) -> list[bytes]:
    step = 2 * frame_samples(rate)
    return [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]


class DirectEncoder:
    """libopus's ``opus_encode`` called through ctypes with nothing else: the PCM passed as
    it is, one output buffer reused, the packet copied out (``string_at``). The barest a
    Python caller encodes with; opuslib's ``Encoder.encode`` adds three objects a frame."""

    def __init__(self, encoder: opuslib.Encoder, frame: int) -> None:
        self._state = ctypes.cast(encoder.encoder_state, ctypes.c_void_p).value
        self._encoder = encoder  # keeps the state alive
        self._encode = opuslib.api.libopus["opus_encode"]
        self._encode.argtypes = (
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int32,
        )
        self._encode.restype = ctypes.c_int32
        self._frame = frame
        self._room = 2 * frame  # as opuslib gives it
        self._out = ctypes.create_string_buffer(self._room)
        self._address = ctypes.addressof(self._out)

    def encode_all(self, frames: list[bytes]) -> None:
        encode, state, frame, room = self._encode, self._state, self._frame, self._room
        address, string_at = self._address, ctypes.string_at
        for pcm in frames:
            got = encode(state, pcm, frame, address, room)
            if got < 0:
                raise opuslib.OpusError(got)  # the code: its str() is libopus's message
            string_at(address, got)


def bare_encoder(session: Session) -> opuslib.Encoder:
    """An encoder set up exactly as ``session``'s own (application VOIP, its bitrate,
    complexity and VBR, read from it: whatever the settings made them)."""
    pusher = session._encoder._encoder
    encoder = opuslib.Encoder(session.sample_rate, 1, opuslib.APPLICATION_VOIP)
    encoder.bitrate = pusher.bitrate
    encoder.complexity = pusher.complexity
    encoder.vbr = pusher.vbr
    return encoder


@dataclass(frozen=True)
class Round:
    pusher: float  # CPU seconds, every thread
    bare: float
    direct: float  # libopus through ctypes, nothing else (``DirectEncoder``)
    waits: float  # the loop thread's CPU while it waited for chunks (in ``pusher``)
    apush_per_frame: float  # the loop thread's CPU in ``apush``, seconds per frame


async def _settled(session: Session) -> float:
    """Wait until the session's chunks are in Redis; returns this thread's CPU for it."""
    c0 = time.thread_time()
    await asyncio.sleep(SETTLE_SECONDS)  # a chunk takes ~50-100 ms: few wake-ups
    while session.unsent_chunks:
        await asyncio.sleep(0.01)
    return time.thread_time() - c0


async def push_session(
    client: AudioSyncClient, frames: list[bytes], rate: int, level: str, t0: float
) -> Session:
    """The whole session (for the profiler): open, every frame, close."""
    per_chunk = round(client.settings.chunk_seconds / FRAME_SECONDS)
    session = client.open_session("bench-user", "bench-conversation", rate, level)
    for i, frame in enumerate(frames):
        await session.apush(frame, t0 + i * FRAME_SECONDS)
        if (i + 1) % per_chunk == 0:
            await _settled(session)
    await session.aclose()
    return session


async def paired_round(
    client: AudioSyncClient, frames: list[bytes], rate: int, level: str, flip: bool
) -> Round:
    """CPU of one session over ``frames``, pusher and bare measured chunk by chunk in
    alternating order, so both see the same machine (its load changes by the second)."""
    per_chunk = round(client.settings.chunk_seconds / FRAME_SECONDS)
    samples = frame_samples(rate)
    t0 = time.time()
    pusher = bare = direct = waits = apush = 0.0

    c0 = time.process_time()
    session = client.open_session("bench-user", "bench-conversation", rate, level)
    pusher += time.process_time() - c0
    encoder = bare_encoder(session)
    direct_encoder = DirectEncoder(bare_encoder(session), samples)
    sides = ("pusher", "bare", "direct")
    for k, start in enumerate(range(0, len(frames), per_chunk)):
        piece = frames[start : start + per_chunk]
        order = sides[k % 3 :] + sides[: k % 3]  # each side first, second and last in turn
        for side in order[::-1] if flip else order:
            c0 = time.process_time()
            if side == "direct":
                direct_encoder.encode_all(piece)
                direct += time.process_time() - c0
                continue
            if side == "pusher":
                l0 = time.thread_time()
                for i, frame in enumerate(piece, start):
                    await session.apush(frame, t0 + i * FRAME_SECONDS)
                apush += time.thread_time() - l0
                waits += await _settled(session)
                pusher += time.process_time() - c0
            else:
                for frame in piece:
                    encoder.encode(frame, samples)
                bare += time.process_time() - c0
    c0 = time.process_time()
    await session.aclose()
    pusher += time.process_time() - c0
    return Round(pusher, bare, direct, waits, apush / len(frames))


def settings_for(url: str) -> Settings:
    return Settings.from_env(
        {"AUDIOSYNC_REDIS_URL": url, "ENCRYPTION_SECRET": SECRET}, role="pusher"
    )


HEADER = (
    f"{'rate':>6} {'level':>9} {'pusher ms/min':>14} {'bare ms/min':>12} "
    f"{'overhead':>9} {'min..max':>15} {'waits ms/min':>13} {'overhead w/o waits':>19} "
    f"{'apush us/frame':>14} {'direct ms/min':>13} {'vs direct':>9} {'w/o waits':>9}"
)


def table_row(rate: int, level: str, rounds_done: list[Round], seconds: float) -> str:
    """One configuration's medians over its rounds (the bench's printed line)."""
    minutes = seconds / 60
    overheads = [100 * (r.pusher / r.bare - 1) for r in rounds_done]
    net = [100 * ((r.pusher - r.waits) / r.bare - 1) for r in rounds_done]
    vs_direct = [100 * (r.pusher / r.direct - 1) for r in rounds_done]
    net_direct = [100 * ((r.pusher - r.waits) / r.direct - 1) for r in rounds_done]

    def per_min(values: list[float]) -> float:
        return 1000 * statistics.median(values) / minutes

    return (
        f"{rate:>6} {level:>9} {per_min([r.pusher for r in rounds_done]):>14.1f} "
        f"{per_min([r.bare for r in rounds_done]):>12.1f} "
        f"{statistics.median(overheads):>8.1f}% "
        f"{f'{min(overheads):.1f}..{max(overheads):.1f}%':>15} "
        f"{per_min([r.waits for r in rounds_done]):>13.1f} "
        f"{statistics.median(net):>18.1f}% "
        f"{1e6 * statistics.median(r.apush_per_frame for r in rounds_done):>14.2f} "
        f"{per_min([r.direct for r in rounds_done]):>13.1f} "
        f"{statistics.median(vs_direct):>8.1f}% {statistics.median(net_direct):>8.1f}%"
    )


def measure(
    url: str, rounds: int, seconds: float, *, quiet: bool = False
) -> dict[str, list[Round]]:
    """Every configuration's rounds, keyed ``"rate level"``; prints the table unless
    ``quiet``."""
    if not quiet:
        print(f"{rounds} rounds x {seconds:g} s of audio per configuration, order alternating")
        print(HEADER)
    results: dict[str, list[Round]] = {}
    loop = asyncio.new_event_loop()
    client = AudioSyncClient(settings_for(url))
    try:
        for rate, level in CONFIGS:
            frames = frames_of(speech_like(seconds, rate, seed=rate), rate)
            # a warm-up (first script load, first connections, caches)
            loop.run_until_complete(paired_round(client, frames[:500], rate, level, False))
            rounds_done = [
                loop.run_until_complete(paired_round(client, frames, rate, level, flip=r % 2 == 1))
                for r in range(rounds)
            ]
            results[f"{rate} {level}"] = rounds_done
            if not quiet:
                print(table_row(rate, level, rounds_done, seconds), flush=True)
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
    return results


def compare(against: Path, pairs: int, rounds: int, seconds: float) -> None:
    """This checkout's pusher and ``against``'s (another checkout, e.g. a worktree of
    main), measured by this same bench in alternating processes (``PYTHONPATH`` set to
    each checkout), ``pairs`` times each: the same machine for both, minute by minute."""
    trees = {"this checkout": Path(__file__).resolve().parents[1], "against": against.resolve()}
    results: dict[str, dict[str, list[Round]]] = {name: {} for name in trees}
    print(f"{pairs} alternating runs per checkout x {rounds} rounds x {seconds:g} s of audio")
    for name, tree in trees.items():
        commit = subprocess.run(
            ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        print(f"  {name}: {tree} ({commit[:70] or 'not a git checkout'})")
    for i in range(pairs):
        order = list(trees.items())
        for name, tree in order if i % 2 == 0 else order[::-1]:
            env = dict(os.environ, PYTHONPATH=str(tree))
            command = [sys.executable, __file__, "--rounds", str(rounds), "--seconds", str(seconds)]
            done = subprocess.run(
                [*command, "--json"], cwd=tree, env=env, capture_output=True, text=True, check=True
            )
            for config, rows in json.loads(done.stdout.splitlines()[-1]).items():
                results[name].setdefault(config, []).extend(Round(**row) for row in rows)
            print(f"  run {i + 1}/{pairs}: {name} done (load {os.getloadavg()[0]:.1f})", flush=True)
    for name in trees:
        print(f"{name}: medians over {pairs * rounds} rounds")
        print(HEADER)
        for config, rows in results[name].items():
            rate, level = config.split()
            print(table_row(int(rate), level, rows, seconds))


def _callgrind(command: str) -> None:
    """``callgrind_control`` on this process (run under ``valgrind --tool=callgrind``)."""
    subprocess.run(
        ["callgrind_control", command, str(os.getpid())], check=True, capture_output=True
    )


def _instructions_so_far(out_dir: Path) -> int:
    """Dump callgrind's counters (every thread's) and read the dump's total instructions."""
    before = set(out_dir.glob("callgrind.out.*"))
    _callgrind("--dump")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in set(out_dir.glob("callgrind.out.*")) - before:
            for line in path.read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
        time.sleep(0.1)
    raise RuntimeError("callgrind wrote no dump")


def callgrind_child(url: str, rate: int, level: str, seconds: float, out_dir: Path) -> None:
    """Under callgrind (instrumentation off until here): one session of ``seconds`` through
    the pusher (chunk by chunk, as ``paired_round``), then the same frames through the bare
    and the direct encoder; each side's instructions, every thread's, as one JSON line."""
    frames = frames_of(speech_like(seconds, rate, seed=rate), rate)
    loop = asyncio.new_event_loop()
    client = AudioSyncClient(settings_for(url))
    try:
        warm = loop.run_until_complete(push_session(client, frames[:500], rate, level, time.time()))
        bare, samples = bare_encoder(warm), frame_samples(rate)
        direct = DirectEncoder(bare_encoder(warm), samples)
        for frame in frames[:50]:
            bare.encode(frame, samples)
        direct.encode_all(frames[:50])
        _callgrind("--instr=on")
        counts = {}
        for side in ("pusher", "bare", "direct"):
            _callgrind("--zero")
            if side == "pusher":
                loop.run_until_complete(push_session(client, frames, rate, level, time.time()))
            elif side == "bare":
                for frame in frames:
                    bare.encode(frame, samples)
            else:
                direct.encode_all(frames)
            counts[side] = _instructions_so_far(out_dir)
        _callgrind("--instr=off")
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
    print(json.dumps(counts))


def callgrind(
    against: Path | None, seconds: float, configs: tuple[tuple[int, str], ...] = CONFIGS
) -> None:
    """Instructions (valgrind's callgrind: the same on a loaded machine as on an idle one)
    of the pusher path, the bare and the direct encoder, one process per configuration
    under callgrind; this checkout, then ``against`` if given."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--callgrind needs valgrind and callgrind_control on PATH")
    trees = {"this checkout": Path(__file__).resolve().parents[1]}
    if against is not None:
        trees["against"] = against.resolve()
    print(f"instructions (callgrind, every thread) per {seconds:g} s session, in millions")
    print(
        f"{'checkout':>13} {'rate':>6} {'level':>9} {'pusher':>9} {'bare':>9} {'direct':>9} "
        f"{'overhead':>9} {'vs direct':>10}"
    )
    for name, tree in trees.items():
        for rate, level in configs:
            with tempfile.TemporaryDirectory() as out:
                command = [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={out}/callgrind.out.%p",
                    sys.executable,
                    __file__,
                    "--callgrind-child",
                    f"{rate} {level} {out}",
                    "--seconds",
                    str(seconds),
                ]
                env = dict(os.environ, PYTHONPATH=str(tree))
                done = subprocess.run(
                    command, cwd=tree, env=env, capture_output=True, text=True, check=True
                )
            n = json.loads(done.stdout.splitlines()[-1])
            print(
                f"{name:>13} {rate:>6} {level:>9} {n['pusher'] / 1e6:>9.1f} "
                f"{n['bare'] / 1e6:>9.1f} {n['direct'] / 1e6:>9.1f} "
                f"{100 * (n['pusher'] / n['bare'] - 1):>8.2f}% "
                f"{100 * (n['pusher'] / n['direct'] - 1):>9.2f}%",
                flush=True,
            )


class InlineExecutor(ThreadPoolExecutor):
    """Runs what is submitted at once, on the caller's thread (for the profiler only)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def profile(url: str, seconds: float) -> None:
    rate, level = 16000, ENHANCED
    frames = frames_of(speech_like(seconds, rate, seed=rate), rate)
    loop = asyncio.new_event_loop()
    client = AudioSyncClient(settings_for(url))
    pool = client.executor
    client.executor = InlineExecutor()
    try:
        loop.run_until_complete(push_session(client, frames[:500], rate, level, time.time()))
        profiler = cProfile.Profile()
        profiler.enable()
        loop.run_until_complete(push_session(client, frames, rate, level, time.time()))
        profiler.disable()
    finally:
        client.executor = pool
        loop.run_until_complete(client.aclose())
        loop.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    print(f"cProfile, {seconds:g} s of {rate} Hz {level}, inline executor:")
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per round")
    parser.add_argument("--quick", action="store_true", help="1 round x 5 s (a few seconds)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="CHECKOUT",
        help="also measure another checkout's pusher (e.g. a worktree of main), in "
        "alternating processes: --pairs runs of --rounds rounds each",
    )
    parser.add_argument("--pairs", type=int, default=4, help="with --against")
    parser.add_argument("--json", action="store_true", help="the rounds as one JSON line")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="instructions under valgrind's callgrind instead of CPU time (with --against: "
        "both checkouts)",
    )
    parser.add_argument("--callgrind-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds, seconds = (1, 5.0) if args.quick else (args.rounds, args.seconds)
    if args.callgrind:  # --quick: one configuration, 5 s
        callgrind(args.against, seconds, CONFIGS[:1] if args.quick else CONFIGS)
        return
    if args.callgrind_child:
        rate, level, out = args.callgrind_child.split()
        with tempfile.TemporaryDirectory() as tmp, StandaloneValkey(Path(tmp)) as valkey:
            callgrind_child(valkey.url, int(rate), level, seconds, Path(out))
        return
    if args.against is not None:
        compare(args.against, args.pairs, rounds, seconds)
        return
    with tempfile.TemporaryDirectory() as tmp, StandaloneValkey(Path(tmp)) as valkey:
        if args.profile:
            profile(valkey.url, seconds)
        elif args.json:
            results = measure(valkey.url, rounds, seconds, quiet=True)
            print(json.dumps({k: [asdict(r) for r in v] for k, v in results.items()}))
        else:
            measure(valkey.url, rounds, seconds)


if __name__ == "__main__":
    main()
