"""An example pusher: the backend's audio websocket wired to audiosync (docs/INTEGRATION.md).

Run it (``pip install '.[example]'``; the settings come from the environment, README.md)::

    AUDIOSYNC_ROLLOUT_PERCENT=100 ENCRYPTION_SECRET=... \\
        uvicorn examples.pusher:app --host 127.0.0.1 --port 8000

and connect to ``ws://127.0.0.1:8000/v1/audio?uid=U&conversation_id=C&sample_rate=16000``
(optional ``protection_level=standard``; the default is ``enhanced``, which needs
``ENCRYPTION_SECRET``). Each binary message is one frame, in the backend's format::

    uint32 LE 101 | float64 LE timestamp (Unix s of the first sample) | PCM16LE mono   audio
    uint32 LE 103 | the new conversation id, UTF-8                                   switch

and the end of the socket is the end of the session. A bad frame (unknown header, short,
undecodable, a bad id or timestamp), a text message or a bad query string closes that
socket with a close code and a reason that says what was wrong (``BadFrame``); the audio
received before it is kept, and the server goes on serving the other sockets.

Per socket: one ``Session`` (when ``client.enabled_for(uid)``; otherwise the backend's old
path, here ``old_path``) and one usage counter that adds the pushed milliseconds, flushed
every minute and at the end. At shutdown (uvicorn turns SIGTERM into the ASGI lifespan
shutdown, after telling every open socket 1012 "service restart" and waiting for its
handler) ``client.aclose()`` enqueues the tail of any session still open.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from backend_hooks import (
    AudioSyncClient,
    AudioSyncError,
    ConfigError,
    EnqueueError,
    InvalidInputError,
    Session,
    usage,
)
from backend_hooks.contract.ids import validate_id

log = logging.getLogger("examples.pusher")

HEADER_AUDIO = 101
HEADER_SWITCH = 103
_HEADER = struct.Struct("<I")
_TIMESTAMP = struct.Struct("<d")
AUDIO_PREFIX = _HEADER.size + _TIMESTAMP.size  # 12 bytes before the PCM

# Close codes (RFC 6455 section 7.4.1).
UNSUPPORTED_DATA = 1003  # a text message, an unknown header
INVALID_PAYLOAD = 1007  # a frame too short, not UTF-8, a bad id or timestamp
POLICY_VIOLATION = 1008  # a bad query string (uid, conversation id, rate, level)
INTERNAL_ERROR = 1011  # the pusher cannot take the audio (a missing setting)
_MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code

# The backend's own fair-use settings would decide these per user.
FAIR_USE_ENABLED = True
FAIR_USE_DAILY_LIMIT_MS = 4 * 3600 * 1000


class BadFrame(Exception):
    """What the client sent cannot be taken: the socket closes with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        encoded = reason.encode("utf-8")[:_MAX_REASON_BYTES]
        self.reason = encoded.decode("utf-8", errors="ignore")


@dataclass(frozen=True)
class Audio:
    timestamp: float
    pcm: bytes


@dataclass(frozen=True)
class Switch:
    conversation_id: str


@dataclass(frozen=True)
class Query:
    uid: str
    conversation_id: str
    sample_rate: int
    protection_level: str


def parse_frame(data: bytes) -> Audio | Switch:
    """One binary websocket message of the backend; raises ``BadFrame``."""
    if len(data) < _HEADER.size:
        raise BadFrame(
            INVALID_PAYLOAD, f"frame of {len(data)} bytes is shorter than the 4-byte header"
        )
    (header,) = _HEADER.unpack_from(data)
    if header == HEADER_AUDIO:
        if len(data) < AUDIO_PREFIX:
            raise BadFrame(
                INVALID_PAYLOAD,
                f"audio frame of {len(data)} bytes: needs the 4-byte header and an 8-byte "
                "float64 timestamp before the PCM",
            )
        (timestamp,) = _TIMESTAMP.unpack_from(data, _HEADER.size)
        if not math.isfinite(timestamp):
            raise BadFrame(INVALID_PAYLOAD, f"audio timestamp {timestamp!r} is not finite")
        return Audio(timestamp, data[AUDIO_PREFIX:])
    if header == HEADER_SWITCH:
        try:
            text = data[_HEADER.size :].decode("utf-8")
            return Switch(validate_id(text, "conversation_id"))
        except UnicodeDecodeError:
            raise BadFrame(INVALID_PAYLOAD, "switch frame: conversation id is not UTF-8") from None
        except InvalidInputError as exc:
            raise BadFrame(INVALID_PAYLOAD, f"switch frame: {exc}") from None
    raise BadFrame(
        UNSUPPORTED_DATA,
        f"unknown frame header {header}; expected {HEADER_AUDIO} (audio) or "
        f"{HEADER_SWITCH} (conversation switch)",
    )


def parse_query(params: Mapping[str, str]) -> Query:
    """``uid``, ``conversation_id``, ``sample_rate`` (16000) and ``protection_level``
    (enhanced); raises ``BadFrame`` (1008) naming what is wrong."""
    for name in ("uid", "conversation_id"):
        if name not in params:
            raise BadFrame(POLICY_VIOLATION, f"query string: {name} is missing")
    try:
        uid = validate_id(params["uid"], "uid")
        conversation_id = validate_id(params["conversation_id"], "conversation_id")
    except InvalidInputError as exc:
        raise BadFrame(POLICY_VIOLATION, f"query string: {exc}") from None
    rate_text = params.get("sample_rate", "16000")
    if not rate_text.isdigit():
        raise BadFrame(POLICY_VIOLATION, f"query string: sample_rate {rate_text!r} is not Hz")
    return Query(uid, conversation_id, int(rate_text), params.get("protection_level", "enhanced"))


class Milliseconds:
    """Whole milliseconds of the PCM pushed so far, handed out once each (no rounding drift
    when frames are not a whole number of milliseconds)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._bytes = 0
        self._counted_ms = 0

    def add(self, pcm_bytes: int) -> int:
        """The milliseconds ``pcm_bytes`` more bytes complete."""
        self._bytes += pcm_bytes
        total_ms = (self._bytes // 2) * 1000 // self.sample_rate
        new, self._counted_ms = total_ms - self._counted_ms, total_ms
        return new


def old_path(query: Query, frame: Audio) -> None:
    """Where the backend's previous upload path would take a user audiosync is not enabled
    for (``client.enabled_for(uid)`` is false); this example drops the audio."""


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if not logging.getLogger().handlers:  # uvicorn configures its own loggers only
        logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    # One per process; a bad setting, or no ENCRYPTION_SECRET (sockets default to
    # `enhanced`), stops start-up: the deployment fails its readiness, not users' sockets.
    client = AudioSyncClient.from_env()
    app.state.audiosync = client
    try:
        yield
    finally:
        # Every socket's handler has ended by now (uvicorn waits for them); this enqueues
        # the tail of any session still open and flushes every usage counter once more.
        try:
            await client.aclose()
        except EnqueueError as exc:
            log.error("audiosync: shutting down with audio not enqueued: %s", exc)
        log.info("audiosync client closed")


app = FastAPI(lifespan=lifespan)


@app.websocket("/v1/audio")
async def audio_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    client: AudioSyncClient = websocket.app.state.audiosync
    session: Session | None = None
    try:
        query = parse_query(websocket.query_params)
        if client.enabled_for(query.uid):
            try:
                session = client.open_session(
                    query.uid, query.conversation_id, query.sample_rate, query.protection_level
                )
            except InvalidInputError as exc:
                raise BadFrame(POLICY_VIOLATION, f"query string: {exc}") from None
            except ConfigError as exc:
                raise BadFrame(INTERNAL_ERROR, str(exc)) from None
        counter = client.usage_counter(
            query.uid, enabled=FAIR_USE_ENABLED, limit_ms=FAIR_USE_DAILY_LIMIT_MS
        )
        async with usage.periodic(counter):
            await _receive(websocket, query, session, counter)
    except BadFrame as bad:
        log.warning("closing socket: %s (%d)", bad.reason, bad.code)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.close(bad.code, bad.reason)
    finally:
        if session is not None:
            try:
                await session.aclose()  # the tail is enqueued; the conversation ends
            except EnqueueError as exc:
                # Kept in the session; client.aclose() at shutdown tries again.
                log.error("session %s: tail not enqueued yet: %s", session.session_id, exc)


async def _receive(
    websocket: WebSocket, query: Query, session: Session | None, counter: usage.UsageCounter
) -> None:
    """Until the client closes (or the server shuts down: code 1012)."""
    elapsed = Milliseconds(query.sample_rate)
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            raise BadFrame(UNSUPPORTED_DATA, "text messages are not frames; send binary frames")
        frame = parse_frame(data)
        if isinstance(frame, Switch):
            if session is not None:
                await session.aswitch_conversation(frame.conversation_id)
            query = Query(
                query.uid, frame.conversation_id, query.sample_rate, query.protection_level
            )
            continue
        if session is None:
            old_path(query, frame)
        else:
            try:
                await session.apush(frame.pcm, frame.timestamp)
            except InvalidInputError as exc:
                raise BadFrame(INVALID_PAYLOAD, f"audio frame: {exc}") from None
            except AudioSyncError as exc:
                raise BadFrame(INTERNAL_ERROR, f"audio frame not taken: {exc}") from None
        counter.add(elapsed.add(len(frame.pcm)))
