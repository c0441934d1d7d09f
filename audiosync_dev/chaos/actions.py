"""The chaos thread: carries out the fault schedule during the push phase (kills,
pauses of a flush past its lease, Redis or cluster node restarts, poison, copies) and
records what it did (``ChaosLog``)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.cluster import RedisCluster

from audiosync_dev import processes
from audiosync_dev.chaos.config import ChaosConfig
from audiosync_dev.chaos.fleet import Fleet
from audiosync_dev.chaos.injections import POISON_KINDS, Poison, inject_duplicate, inject_poison
from audiosync_dev.chaos.pushing import LiveRegistry
from audiosync_dev.chaos.schedule import ChaosEvent, restart_order
from audiosync_dev.chaos.store import sessions_by_node
from audiosync_dev.faults import GcsFaultProxy
from audiosync_dev.localstack import LocalStack
from backend_hooks.adapters.redis_store import RedisClient
from backend_hooks.contract import envelope


@dataclass
class ChaosLog:
    kills: int = 0
    kills_mid_upload: int = 0
    pauses: int = 0
    lease_lost_lines: int = 0  # "lost its lease" in the worker logs: zombie writes refused
    duplicates: list[tuple[str, int]] = field(default_factory=list)  # (session, seq)
    redis_restarts: int = 0
    # (cluster node, sessions of it being pushed then), one per restart, in order
    restarted_nodes: list[tuple[int, int]] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: int = 0


ZOMBIE_GRACE = 1.0  # seconds a woken zombie gets to try its writes before the next action


def pause_mid_upload(
    proxy: GcsFaultProxy, fleet: Fleet, seconds: float, stop: threading.Event
) -> bool:
    """SIGSTOP the process that sends the next upload, once it is stored and before its
    answer; SIGCONT it ``seconds`` later. Its lease runs out meanwhile and another worker
    takes the session over; woken up, the flush reads its answer and tries to commit: a
    zombie, which the lease's fence must stop from writing anything."""
    paused: list[int] = []

    def act(address: tuple[str, int]) -> bool:
        owner = fleet.owner_of(address, proxy.port)
        if owner is not None:
            os.kill(owner[1], signal.SIGSTOP)
            paused.append(owner[1])
        return owner is not None

    proxy.hold_next_upload(act, 15.0, cut=False)
    if not paused:
        return False
    try:
        stop.wait(seconds)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(paused[0], signal.SIGCONT)
    stop.wait(ZOMBIE_GRACE)  # before the next action (a Redis restart, say): it writes now
    return True


def run_chaos(
    config: ChaosConfig,
    events: list[ChaosEvent],
    *,
    phase_start: float,
    stop: threading.Event,
    fleet: Fleet,
    stack: LocalStack,
    r: RedisClient,
    registry: LiveRegistry,
    keys: envelope.UserKeys,
    record: ChaosLog,
    say: Callable[[str], None],
    gcs_proxy: GcsFaultProxy | None = None,
) -> None:
    rng = random.Random(config.seed + 11)
    late_limit = config.seconds + 60.0
    order: list[int] = []  # the cluster nodes to restart, in turn
    if config.cluster:
        nodes = len(stack.cluster_node_urls)
        if not nodes:
            raise ValueError("a cluster run needs a LocalStack with a cluster")
        order = restart_order(random.Random(config.seed + 13), nodes, config.redis_restarts)
    restarts = iter(order)
    for event in events:
        delay = phase_start + event.at - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        if time.monotonic() - phase_start > late_limit:
            record.skipped += 1
            continue
        try:
            if event.kind == "kill":
                # Kill the sender of the next upload, once the object is stored and before
                # the flush hears so (and commits); a random worker if none comes in 15 s.
                victims: list[processes.CeleryProcess] = []

                def act(address: tuple[str, int], victims: list[Any] = victims) -> bool:
                    assert gcs_proxy is not None
                    owner = fleet.owner_of(address, gcs_proxy.port)
                    if owner is not None:
                        owner[0].kill()  # at once: the replacement starts below
                        victims.append(owner[0])
                    return owner is not None

                held = gcs_proxy.hold_next_upload(act, 15.0) if gcs_proxy else None
                if victims:
                    killed, started = fleet.replace_killed(victims[0])
                    record.kills_mid_upload += 1
                else:
                    killed, started = fleet.kill_one(rng)
                record.kills += 1
                say(
                    f"SIGKILLed worker {killed}"
                    + (" between an upload and its commit" if victims else f" (held {held})")
                    + f"; started {started}"
                )
            elif event.kind == "pause":
                if gcs_proxy is not None and pause_mid_upload(
                    gcs_proxy, fleet, config.lease_seconds + 3.0, stop
                ):
                    record.pauses += 1
                    say(f"paused a flush mid-upload for {config.lease_seconds + 3:.0f} s")
                else:
                    record.errors.append("pause: no upload whose sender was found in 15 s")
            elif event.kind == "duplicate":
                give_up = min(time.monotonic() + 10.0, phase_start + late_limit)
                dup = inject_duplicate(r, registry, rng, give_up)
                if dup is None:
                    record.errors.append("duplicate: no live session with a chunk entry")
                else:
                    record.duplicates.append(dup)
                    say(f"appended again: chunk {dup[0][:8]}/{dup[1]}")
            elif event.kind == "restart" and config.cluster:
                # One primary (SIGTERM, its AOF complete); back with its slots from its
                # nodes file, writable ~2 s later: its shards' commands fail meanwhile.
                number = next(restarts)
                assert isinstance(r, RedisCluster)
                live = [s.shard for s in registry.snapshot()]
                on_node = sessions_by_node(r, stack.cluster_node_urls, live)[number]
                begun = time.monotonic()
                stack.restart_redis_cluster_node(number)
                record.redis_restarts += 1
                record.restarted_nodes.append((number, on_node))
                say(
                    f"restarted cluster node {number} ({on_node} sessions of it being pushed; "
                    f"SIGTERM, AOF); cluster ok again after {time.monotonic() - begun:.1f} s"
                )
            elif event.kind == "restart":
                stack.restart_redis()
                record.redis_restarts += 1
                say("restarted Redis (SIGTERM, AOF) on the same port")
            else:
                kind = POISON_KINDS[event.k % len(POISON_KINDS)]
                give_up = min(time.monotonic() + 10.0, phase_start + late_limit)
                poison = inject_poison(r, event.k, kind, registry, keys, rng, give_up)
                if poison is None:
                    record.errors.append(f"poison {event.k} ({kind}): no live session to poison")
                else:
                    record.poison.append(poison)
                    say(f"poison {event.k} ({kind}) -> session {poison.session_id[:8]}")
        except Exception as exc:  # a failed action is reported, the run goes on
            record.errors.append(f"{event.kind}: {type(exc).__name__}: {exc}"[:300])
            say(f"chaos action {event.kind} failed: {exc!r}"[:300])
