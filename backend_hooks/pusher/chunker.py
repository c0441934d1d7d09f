"""Pure chunk assembly: pushed PCM bytes and timestamps in, whole chunks out.

Pushes are a byte stream: a push of odd length leaves its last byte waiting for the next
push, which completes that sample. A push's timestamp is the time of the first sample that
*starts* in it. The completed sample is placed where it started, at the end of the run it
started in, unless a flush (a conversation switch) came between: then it is the next
push's first sample, one sample before that push's time, in the next conversation's
audio (placed after the previous conversation's end, it would move the next
conversation's start there, hours early after a pause).

**Continuity is by sample count.** A run of audio starts at its first push's timestamp
(the anchor); sample ``k`` of the run is at ``anchor + k / rate`` (the sample clock), so
chunk timestamps never move with push jitter. A pushed timestamp steers only when it
disagrees with the sample clock by more than ``tolerance_us``
(``AUDIOSYNC_TIMESTAMP_TOLERANCE_MS``): then the current chunk is closed and a new run
starts at the push's own timestamp (a gap forward, a jump back). Because the anchor is
itself a pushed timestamp, two honest pushes disagree by up to the *width* of their
timing error (latest minus earliest), so the tolerance must cover that width, not half of
it. A gap shorter than the tolerance is absorbed: the audio after it is stamped up to
``tolerance_us`` early. docs/ARCHITECTURE.md ("Timestamps") has the rule and its effects.

**Implausible timestamps are kept, not refused.** A timestamp more than ``window_us``
(``AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS``) from the pusher's clock ``now_us``, or
negative, is counted in ``implausible_timestamps`` and carries no time. Its audio is placed
by the pusher's clock shifted by the device's offset from it (the offset: pushed timestamp
minus ``now_us``, measured where a run was last anchored by a plausible push; 0 before any),
but never before where the run's audio ends: at ``max(now_us + offset, sample clock)``.

- No run yet: the run starts at ``now_us``, the only time there is.
- Otherwise the audio continues the run when that time is within the tolerance of the
  sample clock, and starts a new run there (a gap) when it is past it by more; it never
  jumps back. A device syncing audio recorded offline pushes faster than real time, so
  its sample clock runs ahead of the pusher's clock shifted by its offset (hours): a stray
  ``0.0`` continues the sample clock, never inserts hours of silence. A live device
  (offset ~0) whose clock resets keeps its pauses: the pusher's clock shows them. A gap
  is how much less audio than pusher time arrived since the run's anchor (real time
  measured on one clock), never a difference between two clocks.

A run anchored by such a stand-in time takes its time from its first plausible push if
none of its chunks is cut yet (its audio is shorter than a chunk and no switch closed
one): the audio ends where that push starts, continuous, unless the stand-in time
re-measured with that push's offset ends more than the tolerance before it (a pause the
pusher's clock saw: kept as a gap). So a stray ``0.0`` as an offline sync's first push
stays with the audio after it. A chunk already cut keeps its time (it is on its way to
Redis): a plausible push then judges against the sample clock as any push does.

The time is passed in: this module reads no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backend_hooks.contract.errors import InvalidInputError


@dataclass(frozen=True)
class RawChunk:
    seq: int
    start_us: int
    pcm: bytes  # PCM16LE mono, whole samples

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2


# Tuples, not unions: isinstance with a tuple is about twice as fast (both run per push).
_NUMBER_TYPES = (int, float)
_PCM_TYPES = (bytes, bytearray, memoryview)


def timestamp_to_us(timestamp: object) -> int:
    """Unix seconds (any finite number, even absurd ones: the chunker judges them) to µs."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, _NUMBER_TYPES):
        raise InvalidInputError(f"timestamp must be Unix seconds (a number), got {timestamp!r}")
    if not math.isfinite(timestamp):
        raise InvalidInputError(f"timestamp must be finite Unix seconds, got {timestamp!r}")
    us = timestamp * 1_000_000
    if not math.isfinite(us):  # beyond ~1.8e302 s: exact enough, and implausible anyway
        return int(timestamp) * 1_000_000
    return round(us)


class Chunker:
    def __init__(
        self,
        sample_rate: int,
        chunk_samples: int,
        first_seq: int = 0,
        *,
        tolerance_us: int,
        window_us: int,
    ) -> None:
        if tolerance_us <= 0 or window_us <= tolerance_us:
            raise ValueError(
                f"need 0 < tolerance_us < window_us, got {tolerance_us} and {window_us}"
            )
        self.sample_rate = sample_rate
        self.chunk_samples = chunk_samples
        self._chunk_bytes = 2 * chunk_samples
        self.next_seq = first_seq
        self.tolerance_us = tolerance_us
        self.window_us = window_us
        self.implausible_timestamps = 0  # pushes whose timestamp was replaced
        self.runs = 0  # runs started: 1 + the re-anchors (gaps and jumps)
        self._anchor_us = 0  # time of sample 0 of the current continuous run
        self._run_samples = 0  # samples of the run before the current chunk
        self._buffer = bytearray()  # whole samples of the current chunk
        self._carry = b""  # a lone low byte waiting for its high byte
        self._carry_past_flush = False  # a flush came after it: its sample goes with the next push
        self._started = False
        self._offset_us = 0  # the device's clock minus now_us, at the last pushed anchor
        self._stood_in = False  # the current run's anchor is a stand-in time, not a push's

    def _position_us(self, sample_index: int) -> int:
        return self._anchor_us + round(sample_index * 1_000_000 / self.sample_rate)

    @property
    def expected_us(self) -> int:
        """Where the next sample would be if the audio were continuous."""
        return self._position_us(self._run_samples + len(self._buffer) // 2)

    @property
    def pending_samples(self) -> int:
        return len(self._buffer) // 2

    def plausible(self, timestamp_us: int, now_us: int) -> bool:
        return timestamp_us >= 0 and abs(timestamp_us - now_us) <= self.window_us

    def push(self, pcm: bytes, timestamp_us: int, *, now_us: int) -> list[RawChunk]:
        """Add ``pcm`` whose first new sample is at ``timestamp_us``; ``now_us`` is the
        pusher's clock at the push. Returns the chunks completed."""
        # The usual push, in a few comparisons: whole samples of ``bytes`` continuing a run
        # that a plausible push anchored, no half sample waiting, a plausible timestamp
        # within the tolerance of the sample clock. Exactly what the general path below
        # does with it; anything else takes that path.
        if (
            self._started
            and type(pcm) is bytes
            and not self._carry
            and not self._stood_in
            and pcm
            and not len(pcm) & 1
            and timestamp_us >= 0
            and -self.window_us <= timestamp_us - now_us <= self.window_us
        ):
            buffer = self._buffer
            expected_us = self._anchor_us + round(
                (self._run_samples + len(buffer) // 2) * 1_000_000 / self.sample_rate
            )
            if -self.tolerance_us <= timestamp_us - expected_us <= self.tolerance_us:
                buffer += pcm
                if len(buffer) < self._chunk_bytes:
                    return []
                return self._cut_full()
        if not isinstance(pcm, _PCM_TYPES):
            raise InvalidInputError(f"pcm must be bytes of PCM16LE, got {type(pcm).__name__}")
        data = bytes(pcm)
        if not data:
            return []
        out: list[RawChunk] = []
        carried = self._carry_past_flush and bool(self._carry)
        if carried:
            # A flush (a switch) closed the chunk the half sample was in: the sample it
            # completes is this push's first, one sample before the push's own time.
            data, self._carry, self._carry_past_flush = self._carry + data, b"", False
        elif self._carry:
            # The first byte completes the previous push's last sample, at its place.
            self._buffer += self._carry + data[:1]
            self._carry, data = b"", data[1:]
            out += self._cut_full()
            if not data:
                return out
        plausible = self.plausible(timestamp_us, now_us)
        if carried:
            timestamp_us -= round(1_000_000 / self.sample_rate)
        if not plausible:
            self.implausible_timestamps += 1
            timestamp_us = self._stand_in_us(now_us)
        elif self._started and self._stood_in and not self._run_samples:
            self._re_place(timestamp_us, timestamp_us - now_us)
        if self._started and abs(timestamp_us - self.expected_us) > self.tolerance_us:
            out += self._close_chunk()
            self._started = False
        if not self._started:
            self._anchor_us, self._run_samples, self._started = timestamp_us, 0, True
            self._stood_in = not plausible
            if plausible:
                self._offset_us = timestamp_us - now_us
            self.runs += 1
        whole = len(data) - len(data) % 2
        self._buffer += data[:whole]
        self._carry = data[whole:]
        out += self._cut_full()
        return out

    def _stand_in_us(self, now_us: int) -> int:
        """The time given to a push whose own timestamp is implausible (module docstring)."""
        if not self._started:
            return now_us
        # A pause is a gap; audio arriving faster than real time (a backlog) no rewind.
        return max(now_us + self._offset_us, self.expected_us)

    def _re_place(self, timestamp_us: int, offset_us: int) -> None:
        """The first plausible push of a run a stand-in time anchored, none of whose chunks
        is cut yet: the run's audio takes its time from the push (module docstring)."""
        pending_us = self.expected_us - self._anchor_us
        # The run's stand-in time re-measured with the offset this push shows.
        by_pushers_clock = self._anchor_us - self._offset_us + offset_us
        if timestamp_us - (by_pushers_clock + pending_us) > self.tolerance_us:
            self._anchor_us = by_pushers_clock  # a pause the pusher's clock saw: a gap
            return
        self._anchor_us = timestamp_us - pending_us  # it ends where the push starts
        self._offset_us, self._stood_in = offset_us, False

    def _cut_full(self) -> list[RawChunk]:
        out = []
        size = self._chunk_bytes
        while len(self._buffer) >= size:
            out.append(self._emit(bytes(self._buffer[:size])))
            del self._buffer[:size]
        return out

    def _emit(self, pcm: bytes) -> RawChunk:
        chunk = RawChunk(seq=self.next_seq, start_us=self._position_us(self._run_samples), pcm=pcm)
        self.next_seq += 1
        self._run_samples += len(pcm) // 2
        return chunk

    def flush(self) -> list[RawChunk]:
        """Close the current chunk early (conversation switch or end). The run goes on; a
        half sample waiting is completed by the next push, in that push's audio."""
        self._carry_past_flush = bool(self._carry)
        return self._close_chunk()

    def _close_chunk(self) -> list[RawChunk]:
        if not self._buffer:
            return []
        chunk = self._emit(bytes(self._buffer))
        self._buffer.clear()
        return [chunk]

    @property
    def dangling_byte(self) -> bool:
        """True when half a sample is waiting; it is dropped if the session closes now."""
        return bool(self._carry)
