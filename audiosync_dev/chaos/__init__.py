"""The chaos run: the whole pipeline under faults, audited chunk by chunk.

    python -m audiosync_dev.chaos [--short | --long] [--cluster] [--sessions N] [--workers K]
        [--kills N] [--redis-restarts N] [--fault-rate F] [--poison N] [--seconds S] [--seed S]
        [--keep]

It starts its own valkey and fake-gcs-server (``LocalStack``), a ``GcsFaultProxy`` in front
of fake-gcs-server (the fleet's only way to GCS) and a ``RedisReplyDropProxy`` in front of
valkey (the pusher's only way to Redis; the fleet talks to valkey directly), K real
``celery -A workers worker`` processes and one ``celery -A workers beat``. It pushes N
sessions through the real ``AudioSyncClient`` while, from its own thread, it SIGKILLs
workers (and starts replacements), restarts Redis and injects poison entries; the proxies
fail, stall and lose GCS uploads and lose the replies of pusher appends all along.

It knows every chunk the pushers produced without reading Redis: the same pushes go into
a pure ``Chunker``, which cuts exactly the chunks the session cut. After the pushing, the
faults stop and the fleet drains; then every object in the bucket is read straight from
fake-gcs-server, its name and digest checked, opened, parsed and decoded, and every chunk
accounted for by identity (session, seq): stored exactly once, nothing lost, nothing
unexpected, no overlap; every poison entry quarantined with a reason and none stored.
The verdict is one table; the exit code is 0 only when every line passes. docs/CHAOS.md
explains each line.

``--cluster`` (``ChaosConfig.short_cluster()``): the stream store is a 3-master valkey Redis
Cluster (``LocalStack(cluster=True)``) and the plain valkey only the Celery broker; the
pusher reaches each node through its own reply-drop proxy (``RedisClusterReplyDropProxies``),
a "Redis restart" restarts one cluster node (each restart another), and everything the run
reads or writes in the store goes through a ``RedisCluster`` client, its scans over every
primary.

The phases, one module each (run in this order by ``runner.run``):

- ``config``: ``ChaosConfig``, its presets and the fault proxy they configure;
- ``plan``: the sessions drawn from the seed (``make_plans``);
- ``fleet``: the celery workers and the beat (``Fleet``), and their logs;
- ``store``: the stream store as the run reads it (its own client, the pusher's cluster
  client through the proxies, keys on every primary, sessions by cluster node);
- ``pushing``: the push phase (``SessionPusher``, the expected chunks, the live sessions);
- ``schedule``: the fault schedule drawn from the seed (``chaos_schedule``,
  ``restart_order``);
- ``injections``: poison entries and exact copies written into live streams;
- ``actions``: the chaos thread carrying out the schedule (``run_chaos``, ``ChaosLog``);
- ``drain``: the faults off, waiting until Redis is empty (``wait_drained``);
- ``audit``: the bucket and the quarantine against the expected chunks (``audit_run``);
- ``verdict``: the table of checks (``build_verdict``, ``Verdict``);
- ``runner``: one run from start to end (``run``);
- ``cli``: the command line (``parse_args``, ``main``; ``__main__`` runs it).

Every name in ``__all__`` is importable from ``audiosync_dev.chaos`` itself.
"""

from __future__ import annotations

from audiosync_dev.chaos.actions import ZOMBIE_GRACE, ChaosLog, pause_mid_upload, run_chaos
from audiosync_dev.chaos.audit import (
    SILENCE_RMS,
    Audit,
    FoundChunk,
    ObjectAudit,
    audit_object,
    audit_run,
    list_bucket,
    same_audio,
)
from audiosync_dev.chaos.cli import main, parse_args
from audiosync_dev.chaos.config import ENHANCED, SECRET, STANDARD, ChaosConfig
from audiosync_dev.chaos.drain import STUCK_SECONDS, RedisLeft, redis_left, wait_drained
from audiosync_dev.chaos.fleet import WORKER_STOP_SECONDS, Fleet, count_in_logs
from audiosync_dev.chaos.injections import (
    POISON_KINDS,
    POISON_SEQ_BASE,
    Poison,
    inject_duplicate,
    inject_poison,
    poison_fields,
)
from audiosync_dev.chaos.plan import AUDIO_START_AGO, SESSION_SPACING, SessionPlan, make_plans
from audiosync_dev.chaos.pushing import ExpectedChunk, LiveRegistry, LiveSession, SessionPusher
from audiosync_dev.chaos.runner import run
from audiosync_dev.chaos.schedule import ChaosEvent, chaos_schedule, restart_order
from audiosync_dev.chaos.store import (
    due_members,
    pusher_cluster_client,
    scan_keys,
    session_of_key,
    sessions_by_node,
    store_client,
)
from audiosync_dev.chaos.verdict import Check, Verdict, build_verdict

__all__ = [
    "AUDIO_START_AGO",
    "ENHANCED",
    "POISON_KINDS",
    "POISON_SEQ_BASE",
    "SECRET",
    "SESSION_SPACING",
    "SILENCE_RMS",
    "STANDARD",
    "STUCK_SECONDS",
    "WORKER_STOP_SECONDS",
    "ZOMBIE_GRACE",
    "Audit",
    "ChaosConfig",
    "ChaosEvent",
    "ChaosLog",
    "Check",
    "ExpectedChunk",
    "Fleet",
    "FoundChunk",
    "LiveRegistry",
    "LiveSession",
    "ObjectAudit",
    "Poison",
    "RedisLeft",
    "SessionPlan",
    "SessionPusher",
    "Verdict",
    "audit_object",
    "audit_run",
    "build_verdict",
    "chaos_schedule",
    "count_in_logs",
    "due_members",
    "inject_duplicate",
    "inject_poison",
    "list_bucket",
    "main",
    "make_plans",
    "parse_args",
    "pause_mid_upload",
    "poison_fields",
    "pusher_cluster_client",
    "redis_left",
    "restart_order",
    "run",
    "run_chaos",
    "same_audio",
    "scan_keys",
    "session_of_key",
    "sessions_by_node",
    "store_client",
    "wait_drained",
]
