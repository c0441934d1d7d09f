"""Pure: legacy raw-PCM objects (``.bin``, ``.enc``, ``.batch.bin``, ``.batch.enc``) and the
sample rate that their bytes do not carry (docs/FORMATS.md §6, LEGACY_FORMATS.md).

Bytes: PCM16LE mono at the session's rate. ``.bin`` is one chunk, ``.batch.bin`` several
chunks back to back; ``.enc`` and ``.batch.enc`` are envelope v0 records whose plaintexts,
concatenated, are that PCM (in a ``.batch.enc`` each record is one chunk). Every chunk of
an object is placed back to back from the start in the object's name (but the last record
of a ``first-last.batch.enc`` after a pause: ``placed_runs``). No odd length comes
out: a ``.batch.enc`` record of odd length loses its own trailing byte (so the chunks after
it stay aligned); any other object loses the odd byte at its end.

The rate is the caller's (``sample_rate``) when given; otherwise ``infer_sample_rate``
reads it from the spacing of the objects' names against their byte lengths (the rule is
in its docstring and in docs/FORMATS.md §6).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backend_hooks.contract import naming
from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.errors import FormatError, SampleRateUnknownError

RAW_EXTENSIONS = frozenset({".bin", ".enc", ".batch.bin", ".batch.enc"})
BATCH_EXTENSIONS = frozenset({".batch.bin", ".batch.enc"})
#: The rates raw legacy PCM may have: the session rates the old upload path took.
CANDIDATE_RATES = SUPPORTED_RATES
#: How far an implied rate may be from a candidate and still fit it (timestamps are
#: device or server times of ~5 s chunks; the candidates are >= 33 % apart).
RATE_TOLERANCE = 0.05
V0_OVERHEAD = 4 + 12 + 16  # u32 N, nonce, tag
_MIN_BODY = 12 + 16
_MAX_BODY = 1 << 24


def is_raw(name: naming.ObjectName) -> bool:
    return name.extension in RAW_EXTENSIONS


def kind_of(name: naming.ObjectName) -> str:
    """What ``list_audio_chunks`` reports as ``kind``."""
    if name.is_new:
        return "opus"
    if name.extension in BATCH_EXTENSIONS:
        return "legacy-pcm-batch"
    if name.extension in RAW_EXTENSIONS:
        return "legacy-pcm"
    return "legacy-opus"


def sealed_chunk_lengths(read: Callable[[int, int], bytes], size: int, path: str) -> list[int]:
    """Plaintext bytes of each v0 record of a sealed raw object of ``size`` bytes, from its
    framing alone (``read(offset, length)`` returns bytes of the object: a ranged read, or a
    slice of bytes already downloaded). ``FormatError`` naming the object and the record."""
    lengths: list[int] = []
    pos = 0
    if size == 0:
        raise FormatError(f"{path}: empty sealed object (no record)")
    while pos < size:
        where = f"{path}: sealed record {len(lengths)} (byte {pos})"
        if pos + 4 > size:
            raise FormatError(f"{where}: record header truncated at byte {size}")
        head = read(pos, 4)
        if head[0] != 0:
            raise FormatError(
                f"{where}: envelope version byte {head[0]:#04x}; a legacy raw-PCM object holds "
                "only v0 records (LEGACY_FORMATS.md), so it is corrupt or misnamed"
            )
        (body,) = struct.unpack(">I", head)
        if not _MIN_BODY <= body < _MAX_BODY:
            raise FormatError(f"{where}: declares a body of {body} bytes, too short or too long")
        if pos + 4 + body > size:
            raise FormatError(f"{where}: truncated ({size - pos - 4} of {body} body bytes)")
        lengths.append(body - _MIN_BODY)
        pos += 4 + body
    return lengths


@dataclass(frozen=True)
class RawObject:
    """What the rate rule and the listing need of one raw object: its name and the PCM bytes
    of each chunk it holds (each record of a sealed object; the whole object otherwise)."""

    name: naming.ObjectName
    chunk_bytes: tuple[int, ...]

    @property
    def sample_count(self) -> int:
        """Whole samples the object yields (the odd-byte rule of the module docstring)."""
        if self.name.extension == ".batch.enc":
            return sum(b // 2 for b in self.chunk_bytes)
        return sum(self.chunk_bytes) // 2


def raw_pcm(name: naming.ObjectName, plaintexts: Sequence[bytes]) -> bytes:
    """The PCM of a raw object from its plaintexts (one for ``.bin``/``.batch.bin``, one per
    record when sealed), never of odd length."""
    if name.extension == ".batch.enc":
        return b"".join(p[: len(p) - len(p) % 2] for p in plaintexts)
    joined = b"".join(plaintexts)
    return joined[: len(joined) - len(joined) % 2]


def placed_runs(
    name: naming.ObjectName, plaintexts: Sequence[bytes], sample_rate: int
) -> list[tuple[int, bytes]]:
    """Pure: where a raw object's PCM goes, as (start in us, PCM) runs.

    Everything is placed back to back from the name's start, except the last record of a
    ``first-last.batch.enc``: the name says where that chunk starts, so it starts at
    ``last`` when that is later than the end of the records before it (a pause before
    the last chunk: silence in between, and a legacy copy of that chunk at ``last``
    overlaps it exactly). When ``last`` is earlier (timestamps jitter by milliseconds)
    it follows them back to back: no audio is ever trimmed for a name's jitter."""
    if name.extension != ".batch.enc" or name.end_us is None or len(plaintexts) < 2:
        pcm = raw_pcm(name, plaintexts)
        return [(name.start_us, pcm)] if pcm else []
    before = raw_pcm(name, plaintexts[:-1])
    last = raw_pcm(name, plaintexts[-1:])
    follows = name.start_us + (len(before) // 2) * 1_000_000 // sample_rate
    runs = [(name.start_us, before)] if before else []
    if last:
        runs.append((max(follows, name.end_us), last))
    return runs


@dataclass(frozen=True)
class RateEvidence:
    """``samples`` of PCM followed, ``spacing_us`` later, by the start of the next chunk."""

    what: str  # the object(s) measured
    samples: int
    spacing_us: int

    @property
    def implied_rate(self) -> float:
        return self.samples * 1_000_000 / self.spacing_us


def rate_evidence(objects: Sequence[RawObject]) -> list[RateEvidence]:
    """Pure: what the names and lengths of raw objects say about their rate.

    - each raw object, against the next raw object that starts later (objects of the same
      start, e.g. a ``.bin`` and an ``.enc`` of one chunk, are duplicates, not evidence;
      for a batch named ``first-last``, later than ``last``: an object starting within
      it is a copy of one of its chunks);
    - a ``.batch.enc`` named ``first-last`` with two or more records: the records before
      the last, against ``last - first``.
    New and Opus objects are not used: their starts are other clocks (new names are
    truncated, legacy names printed with ``%.3f``) and a duplicate of legacy audio in a
    new object would read as an overlap.
    """
    ordered = sorted(objects, key=lambda o: (o.name.start_us, o.name.filename))
    out: list[RateEvidence] = []
    for index, obj in enumerate(ordered):
        # A batch named first-last holds a chunk starting at last: an object starting at or
        # before that lies inside it (a copy of one of its chunks), not after it.
        reach = (
            max(obj.name.start_us, obj.name.end_us or 0)
            if obj.name.extension in (BATCH_EXTENSIONS)
            else obj.name.start_us
        )
        later = [o for o in ordered[index + 1 :] if o.name.start_us > reach]
        if later:
            nxt = later[0]
            out.append(
                RateEvidence(
                    f"{obj.name.filename} -> {nxt.name.filename}",
                    obj.sample_count,
                    nxt.name.start_us - obj.name.start_us,
                )
            )
        end = obj.name.end_us
        if (
            obj.name.extension == ".batch.enc"
            and end is not None
            and end > obj.name.start_us
            and len(obj.chunk_bytes) >= 2
        ):
            out.append(
                RateEvidence(
                    f"{obj.name.filename} (its records before the last)",
                    sum(b // 2 for b in obj.chunk_bytes[:-1]),
                    end - obj.name.start_us,
                )
            )
    return out


def _fits(rate: float, candidate: int) -> bool:
    return abs(rate - candidate) <= RATE_TOLERANCE * candidate


def infer_sample_rate(objects: Sequence[RawObject], *, conversation: str) -> int:
    """The one rate of a conversation's raw objects, from ``rate_evidence``.

    Each piece of evidence implies ``samples / spacing``: exactly the rate when the next
    chunk follows without a gap, less when there is a gap, more only when chunks overlap.
    The rate is the candidate (``CANDIDATE_RATES``) that the most pieces fit within
    ``RATE_TOLERANCE``, provided no piece implies more than it (an overlap or a wrong
    guess). ``SampleRateUnknownError`` naming ``conversation`` and what was seen when no
    piece exists (a single object), no candidate or two candidates fit equally, or a piece
    implies a higher rate than the best fit.
    """
    evidence = rate_evidence(objects)
    shown = ", ".join(f"{e.what}: {e.implied_rate:.0f} Hz" for e in evidence[:6])
    if len(evidence) > 6:
        shown += f", ... ({len(evidence)} in all)"
    ask = (
        "pass sample_rate= (the session's rate: 8000 for the old default pcm8, 16000 for "
        "pcm16) to read it"
    )
    if not evidence:
        raise SampleRateUnknownError(
            f"{conversation}: cannot tell the sample rate of its {len(objects)} legacy raw-PCM "
            "object(s): the bytes do not carry it, and with no later object to measure the "
            f"spacing against there is no evidence; {ask}"
        )
    fits = Counter(c for e in evidence for c in CANDIDATE_RATES if _fits(e.implied_rate, c))
    ranked = fits.most_common()
    if not ranked:
        raise SampleRateUnknownError(
            f"{conversation}: the spacing of its legacy raw-PCM objects fits none of "
            f"{list(CANDIDATE_RATES)} Hz (bytes per chunk over the time to the next: {shown}); "
            f"{ask}"
        )
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        raise SampleRateUnknownError(
            f"{conversation}: the spacing of its legacy raw-PCM objects fits {ranked[0][0]} and "
            f"{ranked[1][0]} Hz equally often ({shown}); {ask}"
        )
    best = ranked[0][0]
    over = [e for e in evidence if e.implied_rate > best * (1 + RATE_TOLERANCE)]
    if over:
        seen = ", ".join(f"{e.what}: {e.implied_rate:.0f} Hz" for e in over[:6])
        raise SampleRateUnknownError(
            f"{conversation}: inconsistent spacing of its legacy raw-PCM objects: most fit "
            f"{best} Hz, but {len(over)} hold more audio than the time to the next chunk at "
            f"that rate ({seen}); {ask}"
        )
    return best
