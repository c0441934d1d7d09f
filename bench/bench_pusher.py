"""Pusher CPU per chunk: Opus encode, container (Ogg pages + CRC), sealing; bytes out.

Run: ``.venv/bin/python bench/bench_pusher.py [--chunks N] [--seal-rounds R]``. Prints one
row per sample rate, all measured in this run on speech-like audio; the real-time factor
is audio seconds per CPU second of the whole per-chunk path on one core (sealing with
envelope v1, what the pusher writes). A second table seals the same 5 s containers with
envelope v0 and v1, interleaved, ``R`` rounds each, so the two costs are side by side.
"""

from __future__ import annotations

import argparse
import time

from audiosync_dev.speech import speech_like
from backend_hooks.contract import container, envelope
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.envelope import UserKeys

CHUNK_SECONDS = 5
UID = "bench-user"


def measure(rate: int, chunks: int) -> dict[str, float]:
    pcm = speech_like(CHUNK_SECONDS * chunks, rate, seed=rate)
    size = 2 * CHUNK_SECONDS * rate
    encoder = ChunkEncoder(rate)
    keys = UserKeys(b"b" * 32)
    t_encode = t_container = t_seal = 0.0
    out_bytes = 0
    for i in range(chunks):
        piece = pcm[i * size : (i + 1) * size]
        t0 = time.process_time()
        packets = encoder.encode(piece)
        t1 = time.process_time()
        info = container.ChunkInfo("0" * 32, i, 1_700_000_000_000_000, rate, size // 2)
        data = container.build_chunk(info, packets, encoder.pre_skip)
        t2 = time.process_time()
        sealed = envelope.seal(keys, UID, info, data)
        t3 = time.process_time()
        t_encode += t1 - t0
        t_container += t2 - t1
        t_seal += t3 - t2
        out_bytes += len(sealed)
    total = t_encode + t_container + t_seal
    return {
        "encode_ms": 1000 * t_encode / chunks,
        "container_ms": 1000 * t_container / chunks,
        "seal_ms": 1000 * t_seal / chunks,
        "realtime_x": CHUNK_SECONDS * chunks / total,
        "bytes_per_chunk": out_bytes / chunks,
        "raw_per_chunk": size,
    }


def measure_seal(rate: int, rounds: int) -> dict[str, float]:
    """µs of CPU per 5 s chunk to seal with v0 and with v1 (same containers, same cached
    user key, interleaved so both see the same machine), and their bytes of overhead."""
    pcm = speech_like(CHUNK_SECONDS * 4, rate, seed=rate + 1)
    size = 2 * CHUNK_SECONDS * rate
    encoder = ChunkEncoder(rate)
    keys = UserKeys(b"b" * 32)
    cipher = keys.cipher(UID)
    chunks = []
    for i in range(4):
        info = container.ChunkInfo("0" * 32, i, 1_700_000_000_000_000, rate, size // 2)
        packets = encoder.encode(pcm[i * size : (i + 1) * size])
        chunks.append((info, container.build_chunk(info, packets, encoder.pre_skip)))
    t_v0 = t_v1 = 0.0
    for _ in range(rounds):
        for info, data in chunks:
            t0 = time.process_time()
            envelope.seal_v0(cipher, data)
            t1 = time.process_time()
            envelope.seal(keys, UID, info, data)
            t2 = time.process_time()
            t_v0 += t1 - t0
            t_v1 += t2 - t1
    n = rounds * len(chunks)
    info, data = chunks[0]
    return {
        "v0_us": 1e6 * t_v0 / n,
        "v1_us": 1e6 * t_v1 / n,
        "v0_overhead": len(envelope.seal_v0(cipher, data)) - len(data),
        "v1_overhead": len(envelope.seal(keys, UID, info, data)) - len(data),
        "container_bytes": sum(len(d) for _, d in chunks) / len(chunks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=24)
    parser.add_argument("--seal-rounds", type=int, default=2000)
    args = parser.parse_args()
    print(
        f"{'rate':>6} {'encode ms':>10} {'container ms':>13} {'seal ms':>8} "
        f"{'x realtime':>11} {'bytes/5 s':>10} {'raw/5 s':>8} {'ratio':>6}"
    )
    for rate in (8000, 16000, 48000):
        m = measure(rate, args.chunks)
        print(
            f"{rate:>6} {m['encode_ms']:>10.2f} {m['container_ms']:>13.2f} "
            f"{m['seal_ms']:>8.3f} {m['realtime_x']:>11.0f} {m['bytes_per_chunk']:>10.0f} "
            f"{m['raw_per_chunk']:>8} {m['raw_per_chunk'] / m['bytes_per_chunk']:>6.1f}"
        )
    print()
    print(
        f"{'rate':>6} {'container B':>12} {'seal v0 us':>11} {'seal v1 us':>11} "
        f"{'v1/v0':>6} {'v0 +B':>6} {'v1 +B':>6}"
    )
    for rate in (8000, 16000, 48000):
        s = measure_seal(rate, args.seal_rounds)
        print(
            f"{rate:>6} {s['container_bytes']:>12.0f} {s['v0_us']:>11.1f} {s['v1_us']:>11.1f} "
            f"{s['v1_us'] / s['v0_us']:>6.2f} {s['v0_overhead']:>6.0f} {s['v1_overhead']:>6.0f}"
        )


if __name__ == "__main__":
    main()
