"""The sessions a run pushes (``make_plans``): lengths, rates, levels, conversation
switches, timestamp gaps and start times, all drawn from the seed."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from audiosync_dev.chaos.config import ENHANCED, STANDARD, ChaosConfig

# The first session's audio starts 12 h before the run, inside the pusher's one-day
# AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS (farther, the pusher places it at its own clock).
AUDIO_START_AGO = 43_200.0
SESSION_SPACING = 300.0  # and each further session up to 5 minutes later (all in those 12 h)


@dataclass(frozen=True)
class SessionPlan:
    index: int
    uid: str
    conversations: tuple[str, ...]  # the second one, if any, starts at switch_at
    rate: int
    level: str
    audio_seconds: float
    switch_at: float | None  # audio seconds
    gap_at: float | None  # audio seconds; the timestamps jump by gap_seconds there
    gap_seconds: float
    t0: float  # timestamp of the first sample
    start_after: float  # wall seconds into the push phase
    seed: int


def make_plans(config: ChaosConfig, now: float | None = None) -> list[SessionPlan]:
    """The sessions of a run; their audio is timestamped in the 12 h before ``now``.

    Timestamps are synthetic (the audio is pushed faster than real time) but recent, so a
    worker that refuses implausible timestamps accepts them.
    """
    rng = random.Random(config.seed)
    base = float(int(time.time() if now is None else now) - AUDIO_START_AGO)
    spacing = min(SESSION_SPACING, 0.9 * AUDIO_START_AGO / max(1, config.sessions))
    lengths = [
        round(config.audio_seconds * rng.uniform(0.75, 1.25), 2) for _ in range(config.sessions)
    ]
    order = list(range(config.sessions))
    rng.shuffle(order)
    plans = []
    for i in range(config.sessions):
        audio = lengths[i]
        window = min(audio / config.speed, config.seconds)
        slot = order[i] / max(1, config.sessions - 1)
        uid = f"chaos-u{i:03d}"
        switch = round(audio * rng.uniform(0.3, 0.7), 2) if i % 3 == 1 else None
        convs = (f"chaos-c{i:03d}a", f"chaos-c{i:03d}b") if switch else (f"chaos-c{i:03d}a",)
        plans.append(
            SessionPlan(
                index=i,
                uid=uid,
                conversations=convs,
                rate=16000 if i % 2 == 0 else 8000,
                level=ENHANCED if (i // 2) % 2 == 0 else STANDARD,
                audio_seconds=audio,
                switch_at=switch,
                gap_at=round(audio / 2, 2) if i % 5 == 2 else None,
                gap_seconds=2.5,
                t0=base + spacing * i,
                start_after=slot * (config.seconds - window),
                seed=config.seed * 1000 + i,
            )
        )
    return plans
