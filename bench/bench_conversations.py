"""What the conversation functions cost in GCS requests and wall time, on the emulator.

Run: ``.venv/bin/python bench/bench_conversations.py [--objects N]``.

One conversation of N legacy single-chunk Opus objects (5 s, 16 kHz; half ``.opus``,
half ``.opus.enc`` of one v0 record, written per LEGACY_FORMATS.md by tests/legacy_opus.py)
is measured through the real google-cloud-storage client against fake-gcs-server on
loopback: ``list_audio_chunks`` (exact durations: an 8-byte ranged read per ``.opus``, a
download per ``.opus.enc``), ``create_audio_files_from_chunks``, ``copy_audio_chunks_for_merge``
twice (the second copies nothing), ``get_or_create_merged_audio`` made then cached, and
``delete_conversation_audio``. Requests are counted from the emulator's access log. The
emulator is not GCS: its latencies are loopback ones; the request counts carry over.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audiosync_dev.localstack import LocalStack
from backend_hooks import storage
from backend_hooks.contract.settings import Settings
from tests.legacy_opus import write_legacy_opus

SECRET = b"bench-conversations-secret-0123456789abc"
T0 = 1_700_000_000.0


def signer() -> Any:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        {
            "type": "service_account",
            "client_email": "bench@audiosync.iam.gserviceaccount.com",
            "private_key": pem,
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=120)
    args = parser.parse_args()
    stack = LocalStack()
    with stack as info:
        settings = replace(Settings.from_env(info.env(), role="reader"), encryption_secret=SECRET)
        ctx = storage.StorageContext.from_settings(settings)
        uid, cid = "bench-user", "bench-conv"
        rng = random.Random(1)
        for i in range(args.objects):
            ext = ".opus" if i % 2 == 0 else ".opus.enc"
            pcm = rng.randbytes(2 * 5 * 16000)
            write_legacy_opus(ctx.bucket, uid, cid, ext, T0 + 5 * i, pcm, secret=SECRET)
        credentials = signer()
        [record] = storage.create_audio_files_from_chunks(uid, cid, context=ctx)
        steps: list[tuple[str, Callable[[], object]]] = [
            ("list_audio_chunks", lambda: storage.list_audio_chunks(uid, cid, context=ctx)),
            (
                "create_audio_files_from_chunks",
                lambda: storage.create_audio_files_from_chunks(uid, cid, context=ctx),
            ),
            (
                "copy_audio_chunks_for_merge",
                lambda: storage.copy_audio_chunks_for_merge(uid, [cid], "copy", context=ctx),
            ),
            (
                "copy_audio_chunks_for_merge again",
                lambda: storage.copy_audio_chunks_for_merge(uid, [cid], "copy", context=ctx),
            ),
            (
                "get_or_create_merged_audio (made)",
                lambda: storage.get_or_create_merged_audio(
                    uid, cid, record["id"], signing_credentials=credentials, context=ctx
                ),
            ),
            (
                "get_or_create_merged_audio (cached)",
                lambda: storage.get_or_create_merged_audio(
                    uid, cid, record["id"], signing_credentials=credentials, context=ctx
                ),
            ),
            (
                "delete_conversation_audio",
                lambda: storage.delete_conversation_audio(uid, cid, context=ctx),
            ),
        ]
        print(f"{args.objects} legacy Opus objects, {args.objects * 5} s of 16 kHz audio")
        print(f"{'step':40} {'seconds':>8} {'requests':>9}  by method")
        for label, step in steps:
            before = len(stack.gcs_requests())
            started = time.perf_counter()
            step()
            elapsed = time.perf_counter() - started
            requests = stack.gcs_requests()[before:]
            methods = Counter(r.method for r in requests)
            shown = ", ".join(f"{m} {n}" for m, n in sorted(methods.items()))
            print(f"{label:40} {elapsed:8.3f} {len(requests):9d}  {shown}")


if __name__ == "__main__":
    main()
