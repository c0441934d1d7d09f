"""Pusher CPU per chunk: Opus encode, container (Ogg pages + CRC), sealing; bytes out.

Run: ``.venv/bin/python bench/bench_pusher.py [--chunks N]``. Prints one row per sample
rate, all measured in this run on speech-like audio; the real-time factor is audio
seconds per CPU second of the whole per-chunk path on one core.
"""

from __future__ import annotations

import argparse
import time

from audiosync_dev.speech import speech_like
from backend_hooks import container, envelope
from backend_hooks.codec import ChunkEncoder
from backend_hooks.envelope import UserKeys

CHUNK_SECONDS = 5


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
        sealed = envelope.seal(keys, "bench-user", info, data)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=24)
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


if __name__ == "__main__":
    main()
