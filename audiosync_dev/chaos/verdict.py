"""The verdict: the audit, the faults that happened and the timings as one table of
checks, each PASS or FAIL (docs/CHAOS.md explains each line)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audiosync_dev.chaos.actions import ChaosLog
from audiosync_dev.chaos.audit import Audit
from audiosync_dev.chaos.config import ChaosConfig
from audiosync_dev.faults import GcsFaultStats, RedisDropStats


@dataclass(frozen=True)
class Check:
    label: str
    value: str
    ok: bool | None  # None: for information only


@dataclass
class Verdict:
    title: str
    checks: list[Check]
    problems: list[str] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)
    workdir: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok is not False for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]

    def render(self, problems: int = 8) -> str:
        width = max(len(c.label) for c in self.checks)
        value_width = max(len(c.value) for c in self.checks)
        lines = [self.title]
        for c in self.checks:
            mark = "" if c.ok is None else ("PASS" if c.ok else "FAIL")
            lines.append(f"  {c.label:<{width}}  {c.value:<{value_width}}  {mark}".rstrip())
        failed = self.failed
        if failed:
            where = f"; logs kept in {self.workdir}" if self.workdir else ""
            lines.append(f"VERDICT: FAIL ({len(failed)} of {len(self.checks)} lines){where}")
        else:
            lines.append("VERDICT: PASS (every chunk stored exactly once)")
        if failed and self.problems and problems > 0:
            lines.append(f"first problems ({len(self.problems)} noted; all in verdict.txt):")
            lines += [f"  - {p}" for p in self.problems[:problems]]
        return "\n".join(lines)


def _required(configured: float, ok: bool) -> bool | None:
    """A fault the run was asked for must have happened; one switched off (0) is shown only.

    The presets switch every fault on, so a preset run cannot pass without them.
    """
    return ok if configured > 0 else None


def build_verdict(
    config: ChaosConfig,
    audit: Audit,
    *,
    gcs: GcsFaultStats,
    drops: RedisDropStats,
    chaos: ChaosLog,
    pusher_errors: list[str],
    drained: bool,
    drain_seconds: float,
    push_seconds: float,
    total_seconds: float,
    pushes: int,
    sessions_by_node: dict[int, int] | None = None,
    drops_by_node: Sequence[RedisDropStats] = (),
) -> Verdict:
    """On a cluster, ``sessions_by_node``: the sessions that lived on each node (by number);
    ``drops_by_node``: the stats of each node's reply-drop proxy (``drops`` adds them up)."""
    a, left = audit, audit.left
    lease = config.lease_seconds
    long_stalls = gcs.stalls_longer_than(lease)
    needs_stalls = (
        config.require_stalls_past_lease
        and config.stall_seconds[1] > lease
        and config.fault_rate > 0
    )
    min_fraction = min(config.min_fault_fraction, config.fault_rate / 2)
    kinds = len({p.kind for p in chaos.poison})
    longest = max(gcs.stall_durations, default=0.0)
    by_node = sessions_by_node or {}
    restarted = ""
    if chaos.restarted_nodes:
        restarted = ": cluster node " + ", ".join(
            f"{n} ({live} live sessions)" for n, live in chaos.restarted_nodes
        )
    cluster_checks = []
    if config.cluster:
        spread = sum(1 for count in by_node.values() if count)
        cluster_checks.append(
            Check(
                "sessions by cluster node",
                ", ".join(f"node {n}: {c}" for n, c in sorted(by_node.items())) or "unknown",
                spread >= min(2, len(by_node), config.sessions) and spread > 0,
            )
        )
    checks = [
        Check(
            "chunks expected",
            f"{a.expected} in {config.sessions} sessions, {a.conversations} conversations, "
            f"{pushes} pushes",
            a.expected > 0,
        ),
        Check("objects in the bucket", f"{a.objects} ({a.bytes:,} bytes)", a.objects > 0),
        Check("chunks found in objects", f"{a.found} of {a.expected}", a.found == a.expected),
        Check("lost (found nowhere)", f"{a.lost} ({a.lost_in_redis} still in Redis)", a.lost == 0),
        Check(
            "stored more than once",
            f"{a.twice} ({a.twice_in_one_object} twice in one object)",
            a.twice == 0,
        ),
        Check("wrong uid/conv/level/rate/time/length", str(a.mismatched), a.mismatched == 0),
        Check("objects overlapping in time", f"{a.overlaps} pairs", a.overlaps == 0),
        Check(
            "undecodable objects / chunks",
            f"{a.undecodable_objects} / {a.undecodable_chunks}",
            a.undecodable_objects == 0 and a.undecodable_chunks == 0,
        ),
        Check("bad object names or digests", str(a.bad_names), a.bad_names == 0),
        Check("unexpected chunks", str(a.unexpected), a.unexpected == 0),
        Check("chunks whose audio is not what was pushed", str(a.wrong_audio), a.wrong_audio == 0),
        Check(
            "objects with chunks out of order / empty",
            f"{a.out_of_order} / {a.empty_objects}",
            a.out_of_order == 0 and a.empty_objects == 0,
        ),
        Check(
            "expected set vs the audio pushed (no Chunker)",
            f"{a.model_problems} problems",
            a.model_problems == 0,
        ),
        Check(
            "drained after the faults stopped",
            f"in {drain_seconds:.1f} s" if drained else f"NO (gave up after {drain_seconds:.0f} s)",
            drained,
        ),
        Check(
            "left in Redis",
            f"{left.entries} entries in {left.streams} streams, {left.plans} plans, "
            f"{left.intents} intents, {left.due} due",
            left.empty,
        ),
        Check(
            "poison injected",
            f"{a.poison_injected} of {config.poison} ({kinds} kinds)",
            _required(config.poison, a.poison_injected > 0 and a.poison_injected == config.poison),
        ),
        Check(
            "poison quarantined with a reason",
            f"{a.poison_quarantined} of {a.poison_injected}",
            a.poison_quarantined == a.poison_injected,
        ),
        Check("poison stored in the bucket", str(a.poison_in_bucket), a.poison_in_bucket == 0),
        Check("real entries in quarantine", str(a.real_quarantined), a.real_quarantined == 0),
        Check(
            "quarantine format / index",
            f"{a.quarantine_malformed} malformed, {a.quarantine_unindexed} not indexed",
            a.quarantine_malformed == 0 and a.quarantine_unindexed == 0,
        ),
        Check(
            "uploads faulted",
            f"{gcs.faulted} of {gcs.matched} ({gcs.faulted_fraction:.0%}): {gcs.errors} x 503, "
            f"{gcs.stalls_before}+{gcs.stalls_after} stalls, {gcs.lost_responses} lost",
            _required(config.fault_rate, gcs.faulted > 0 and gcs.faulted_fraction >= min_fraction),
        ),
        Check(
            "stalls past the lease",
            f"{long_stalls} (> {lease:g} s; longest {longest:.1f} s)",
            _required(float(needs_stalls), long_stalls > 0),
        ),
        Check(
            "workers SIGKILLed",
            f"{chaos.kills} of {config.kills}",
            _required(config.kills, chaos.kills == config.kills),
        ),
        Check(
            "kills between an upload and its commit",
            f"{chaos.kills_mid_upload} of {config.kills} (at least half)",
            _required(config.kills, 2 * chaos.kills_mid_upload >= config.kills > 0),
        ),
        Check(
            "flushes paused mid-upload past their lease",
            f"{chaos.pauses} of {config.pauses}",
            _required(config.pauses, chaos.pauses == config.pauses),
        ),
        # A paused flush wakes up to its upload's answer and tries to commit: the fence must
        # refuse it ('lost its lease'). One whose answer timed out while it was stopped
        # fails its attempt without writing instead (a retry meets the stored object, and
        # the check of it has no time left: StorageError), which the audit's lines hold;
        # the fence is exercised as long as most pauses reach it.
        Check(
            "zombie writes refused by the fence",
            f"{chaos.lease_lost_lines} 'lost its lease' in the worker logs for "
            f"{chaos.pauses} pauses (at least half)",
            _required(config.pauses, 2 * chaos.lease_lost_lines >= chaos.pauses > 0),
        ),
        Check(
            "chunks appended again (exact copies)",
            f"{len(chaos.duplicates)} of {config.duplicates}; "
            f"{a.duplicates_quarantined} quarantined as already stored, the rest dropped "
            "with their original",
            _required(config.duplicates, len(chaos.duplicates) == config.duplicates),
        ),
        Check(
            "Redis restarts",
            f"{chaos.redis_restarts} of {config.redis_restarts}" + restarted,
            _required(config.redis_restarts, chaos.redis_restarts == config.redis_restarts),
        ),
        Check(
            "append replies dropped",
            f"{drops.drops} of {drops.matched} appends"
            + (
                " (by node: " + ", ".join(f"{d.drops} of {d.matched}" for d in drops_by_node) + ")"
                if drops_by_node
                else ""
            ),
            _required(config.drop_rate, drops.drops > 0),
        ),
        *cluster_checks,
        Check(
            "pusher / chaos errors",
            f"{len(pusher_errors)} / {len(chaos.errors) + chaos.skipped}",
            not pusher_errors and not chaos.errors and not chaos.skipped,
        ),
        Check(
            "time",
            f"push {push_seconds:.0f} s, drain {drain_seconds:.0f} s, total {total_seconds:.0f} s",
            None,
        ),
    ]
    problems = [*pusher_errors, *chaos.errors, *a.problems]
    counts: dict[str, float] = {
        "expected": a.expected,
        "found": a.found,
        "lost": a.lost,
        "twice": a.twice,
        "overlaps": a.overlaps,
        "undecodable_objects": a.undecodable_objects,
        "unexpected": a.unexpected,
        "poison_injected": a.poison_injected,
        "poison_quarantined": a.poison_quarantined,
        "poison_in_bucket": a.poison_in_bucket,
        "real_quarantined": a.real_quarantined,
        "uploads": gcs.matched,
        "faulted": gcs.faulted,
        "stalls_past_lease": long_stalls,
        "kills": chaos.kills,
        "kills_mid_upload": chaos.kills_mid_upload,
        "pauses": chaos.pauses,
        "lease_lost_lines": chaos.lease_lost_lines,
        "duplicates": len(chaos.duplicates),
        "duplicates_quarantined": a.duplicates_quarantined,
        "wrong_audio": a.wrong_audio,
        "out_of_order": a.out_of_order,
        "redis_restarts": chaos.redis_restarts,
        "cluster_nodes_restarted": len({n for n, _ in chaos.restarted_nodes}),
        "cluster_nodes_with_sessions": sum(1 for count in by_node.values() if count),
        "drops": drops.drops,
        "left_entries": left.entries,
        "total_seconds": total_seconds,
    }
    title = (
        f"audiosync chaos run ({config.name}, seed {config.seed}): {config.sessions} sessions, "
        f"{config.workers} workers, {total_seconds:.0f} s"
    )
    return Verdict(title, checks, problems, counts)
