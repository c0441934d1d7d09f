"""The fault schedule: when, into the push phase, each kill, pause, copy, Redis
restart and poison entry comes, and which cluster node each restart stops; all
drawn from the seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

from audiosync_dev.chaos.config import ChaosConfig


def restart_order(rng: random.Random, nodes: int, restarts: int) -> list[int]:
    """Which cluster node (1 to ``nodes``) each of ``restarts`` restarts stops: a random
    order in which every node comes once before any comes again, and none twice in a row
    (when there are two or more)."""
    if nodes < 1:
        raise ValueError(f"a cluster has at least one node, got {nodes}")
    order: list[int] = []
    while len(order) < restarts:
        batch = list(range(1, nodes + 1))
        rng.shuffle(batch)
        if order and len(batch) > 1 and batch[0] == order[-1]:
            batch[0], batch[-1] = batch[-1], batch[0]
        order += batch
    return order[:restarts]


@dataclass(frozen=True)
class ChaosEvent:
    at: float  # wall seconds into the push phase
    kind: str  # kill | pause | duplicate | restart | poison
    k: int = 0


def chaos_schedule(config: ChaosConfig) -> list[ChaosEvent]:
    rng = random.Random(config.seed + 7)
    s = config.seconds
    events = []
    for j in range(config.kills):
        lo, hi = 0.10 + 0.75 * j / config.kills, 0.10 + 0.75 * (j + 1) / config.kills
        events.append(ChaosEvent(s * rng.uniform(lo, hi), "kill"))
    for j in range(config.redis_restarts):
        events.append(ChaosEvent(s * (j + 1) / (config.redis_restarts + 1), "restart"))
    for k in range(config.poison):  # kinds in turn: k % len(POISON_KINDS)
        events.append(ChaosEvent(s * rng.uniform(0.10, 0.80), "poison", k))
    for _ in range(config.pauses):
        events.append(ChaosEvent(s * rng.uniform(0.10, 0.80), "pause"))
    for _ in range(config.duplicates):
        events.append(ChaosEvent(s * rng.uniform(0.10, 0.85), "duplicate"))
    return sorted(events, key=lambda e: e.at)
