"""Pure chunk assembly: pushed PCM bytes and timestamps in, whole chunks out.

Pushes are a byte stream: a push of odd length leaves its last byte waiting for the next
push, which completes that sample. A push's timestamp is the time of the first sample that
*starts* in it. Audio is continuous while each push's timestamp is within one 20 ms frame
of where the previous audio ended; otherwise (a gap, or a jump back) the current chunk is
closed and a new one starts at the push's own timestamp. Inside a continuous run, sample
``k`` is at ``anchor + k / rate``, so chunk timestamps never drift with push jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backend_hooks.audio_format import FRAME_MS
from backend_hooks.errors import InvalidInputError


@dataclass(frozen=True)
class RawChunk:
    seq: int
    start_us: int
    pcm: bytes  # PCM16LE mono, whole samples

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2


def timestamp_to_us(timestamp: object) -> int:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise InvalidInputError(f"timestamp must be Unix seconds (a number), got {timestamp!r}")
    if not math.isfinite(timestamp) or timestamp < 0:
        raise InvalidInputError(f"timestamp must be finite Unix seconds >= 0, got {timestamp!r}")
    return round(timestamp * 1_000_000)


class Chunker:
    def __init__(self, sample_rate: int, chunk_samples: int, first_seq: int = 0) -> None:
        self.sample_rate = sample_rate
        self.chunk_samples = chunk_samples
        self.next_seq = first_seq
        self._tolerance_us = FRAME_MS * 1000
        self._anchor_us = 0  # time of sample 0 of the current continuous run
        self._run_samples = 0  # samples of the run before the current chunk
        self._buffer = bytearray()  # whole samples of the current chunk
        self._carry = b""  # a lone low byte waiting for its high byte
        self._started = False

    def _position_us(self, sample_index: int) -> int:
        return self._anchor_us + round(sample_index * 1_000_000 / self.sample_rate)

    @property
    def expected_us(self) -> int:
        """Where the next sample would be if the audio were continuous."""
        return self._position_us(self._run_samples + len(self._buffer) // 2)

    @property
    def pending_samples(self) -> int:
        return len(self._buffer) // 2

    def push(self, pcm: bytes, timestamp_us: int) -> list[RawChunk]:
        if not isinstance(pcm, bytes | bytearray | memoryview):
            raise InvalidInputError(f"pcm must be bytes of PCM16LE, got {type(pcm).__name__}")
        data = bytes(pcm)
        if not data:
            return []
        out: list[RawChunk] = []
        if self._carry:
            # The first byte completes the previous push's last sample, at its place.
            self._buffer += self._carry + data[:1]
            self._carry, data = b"", data[1:]
            out += self._cut_full()
            if not data:
                return out
        if self._started and abs(timestamp_us - self.expected_us) > self._tolerance_us:
            out += self.flush()
            self._started = False
        if not self._started:
            self._anchor_us, self._run_samples, self._started = timestamp_us, 0, True
        whole = len(data) - len(data) % 2
        self._buffer += data[:whole]
        self._carry = data[whole:]
        out += self._cut_full()
        return out

    def _cut_full(self) -> list[RawChunk]:
        out = []
        size = 2 * self.chunk_samples
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
        """Close the current chunk early (conversation switch or end). The run goes on."""
        if not self._buffer:
            return []
        chunk = self._emit(bytes(self._buffer))
        self._buffer.clear()
        return [chunk]

    @property
    def dangling_byte(self) -> bool:
        """True when half a sample is waiting; it is dropped if the session closes now."""
        return bool(self._carry)
