"""The push phase: each session's audio pushed, paced, through the real
``AudioSyncClient`` and mirrored into a pure ``Chunker``, which gives the chunks
that must be stored (``ExpectedChunk``); the sessions being pushed right now
(``LiveRegistry``) for the chaos actions."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from audiosync_dev.chaos.plan import SessionPlan
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient
from backend_hooks.contract.errors import EnqueueError
from backend_hooks.pusher.chunker import Chunker, RawChunk, timestamp_to_us
from backend_hooks.pusher.session import Session


@dataclass(frozen=True)
class ExpectedChunk:
    session_id: str
    seq: int
    uid: str
    cid: str
    rate: int
    level: str
    start_us: int
    samples: int
    offset: int = field(default=0, compare=False)  # first sample in the session's audio
    audio: bytes = field(default=b"", compare=False, repr=False)  # the session's PCM

    @property
    def end_us(self) -> int:
        return self.start_us + self.samples * 1_000_000 // self.rate

    @property
    def pcm(self) -> bytes:
        return self.audio[2 * self.offset : 2 * (self.offset + self.samples)]


@dataclass
class LiveSession:
    session_id: str
    shard: int
    uid: str
    cid: str
    rate: int
    level: str
    t0: float


class LiveRegistry:
    """Sessions being pushed right now, for the poison injector."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, LiveSession] = {}

    def update(self, live: LiveSession) -> None:
        with self._lock:
            self._live[live.session_id] = replace(live)

    def remove(self, session_id: str) -> None:
        with self._lock:
            self._live.pop(session_id, None)

    def snapshot(self) -> list[LiveSession]:
        with self._lock:
            return [replace(s) for s in self._live.values()]


class SessionPusher:
    """Pushes one session's audio, paced, and mirrors every push into a pure Chunker."""

    def __init__(
        self,
        plan: SessionPlan,
        client: AudioSyncClient,
        chunk_seconds: float,
        speed: float,
        registry: LiveRegistry,
    ) -> None:
        self.plan = plan
        self.client = client
        self.speed = speed
        self.registry = registry
        settings = client.settings
        self.chunker = Chunker(
            plan.rate,
            round(chunk_seconds * plan.rate),
            tolerance_us=round(settings.timestamp_tolerance_ms * 1000),
            window_us=round(settings.push_timestamp_window_seconds * 1_000_000),
        )
        self.rng = random.Random(plan.seed)
        self.total = round(plan.audio_seconds * plan.rate)  # samples
        self.pcm = b""
        self.pos = 0  # samples pushed
        self.conv = 0
        self.shift = 0.0
        self.session: Session | None = None
        self.expected: list[ExpectedChunk] = []
        self.done = False
        self.pushes = 0
        self.recorded = 0  # samples in self.expected
        self.switch_pos: int | None = None  # sample where the second conversation starts
        self.gap_pos: int | None = None  # first sample pushed with the shifted timestamps

    @property
    def cid(self) -> str:
        return self.plan.conversations[self.conv]

    def _record(self, chunks: Iterable[RawChunk], cid: str) -> None:
        assert self.session is not None
        for c in chunks:
            self.expected.append(
                ExpectedChunk(
                    session_id=self.session.session_id,
                    seq=c.seq,
                    uid=self.plan.uid,
                    cid=cid,
                    rate=self.plan.rate,
                    level=self.plan.level,
                    start_us=c.start_us,
                    samples=c.sample_count,
                    offset=self.recorded,
                    audio=self.pcm,
                )
            )
            self.recorded += c.sample_count

    def _live(self) -> LiveSession:
        assert self.session is not None
        return LiveSession(
            self.session.session_id,
            self.session.redis_keys.shard,
            self.plan.uid,
            self.cid,
            self.plan.rate,
            self.plan.level,
            self.plan.t0,
        )

    def step(self, now: float) -> None:
        """Push until the audio position catches up with ``now`` (wall seconds in)."""
        plan = self.plan
        if self.done or now < plan.start_after:
            return
        if self.session is None:
            self.pcm = speech_like(plan.audio_seconds, plan.rate, seed=plan.seed)
            self.total = len(self.pcm) // 2
            self.session = self.client.open_session(plan.uid, self.cid, plan.rate, plan.level)
            self.registry.update(self._live())
        target = min(self.total, round((now - plan.start_after) * self.speed * plan.rate))
        while self.pos < target:
            at = self.pos / plan.rate
            if plan.switch_at is not None and self.conv == 0 and at >= plan.switch_at:
                old = self.cid
                self.session.switch_conversation(plan.conversations[1])
                self._record(self.chunker.flush(), old)
                self.conv = 1
                self.switch_pos = self.pos
                self.registry.update(self._live())
            if plan.gap_at is not None and self.shift == 0.0 and at >= plan.gap_at:
                self.shift = plan.gap_seconds
                self.gap_pos = self.pos
            n = min(self.rng.randint(plan.rate // 50, plan.rate), self.total - self.pos)
            piece = self.pcm[2 * self.pos : 2 * (self.pos + n)]
            timestamp = plan.t0 + at + self.shift
            self.session.push(piece, timestamp)
            now_us = round(self.client.clock() * 1_000_000)  # plausible times: unused
            self._record(
                self.chunker.push(piece, timestamp_to_us(timestamp), now_us=now_us), self.cid
            )
            self.pos += n
            self.pushes += 1
        if self.pos >= self.total:
            self.close()

    def close(self) -> None:
        assert self.session is not None
        deadline = time.monotonic() + 60.0
        while True:
            try:
                self.session.close()
                break
            except EnqueueError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        self._record(self.chunker.flush(), self.cid)
        self.registry.remove(self.session.session_id)
        self.done = True

    def model_problems(self) -> list[str]:
        """The expected chunks against a model that does not use the Chunker: they must
        tile exactly the audio pushed, seq 0, 1, 2, ..., each at t0 + offset / rate (plus
        the gap once past it), in the conversation in force at its first sample."""
        plan, out = self.plan, []
        if [e.seq for e in self.expected] != list(range(len(self.expected))):
            out.append(f"{plan.uid}: seqs are not 0..{len(self.expected) - 1}")
        if self.recorded != self.pos:
            out.append(f"{plan.uid}: chunks hold {self.recorded} samples, {self.pos} pushed")
        for e in self.expected:
            shift = plan.gap_seconds if self.gap_pos is not None and e.offset >= self.gap_pos else 0
            want_us = timestamp_to_us(plan.t0 + e.offset / plan.rate + shift)
            conv = 1 if self.switch_pos is not None and e.offset >= self.switch_pos else 0
            if abs(e.start_us - want_us) > 50 or e.cid != plan.conversations[conv]:
                out.append(f"{plan.uid} seq {e.seq}: start/conversation not where it was pushed")
            if not 0 < e.samples <= self.chunker.chunk_samples:
                out.append(f"{plan.uid} seq {e.seq}: {e.samples} samples")
        return out


class CountingHandler(logging.Handler):
    """Counts the pusher's "chunks wait for Redis" warnings instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@contextlib.contextmanager
def quiet_pusher_log() -> Iterator[CountingHandler]:
    logger = logging.getLogger("backend_hooks.session")
    handler = CountingHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def push_thread(
    pushers: list[SessionPusher],
    phase_start: float,
    deadline: float,
    stop: threading.Event,
    errors: list[str],
) -> None:
    while not stop.is_set():
        now = time.monotonic() - phase_start
        active = [p for p in pushers if not p.done]
        if not active:
            return
        if time.monotonic() > deadline:
            errors.append(f"{len(active)} sessions still pushing at the deadline")
            return
        for pusher in active:
            try:
                pusher.step(now)
            except Exception as exc:
                errors.append(f"session {pusher.plan.uid}: {type(exc).__name__}: {exc}"[:300])
                pusher.done = True
        stop.wait(0.02)
