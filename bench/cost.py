"""The cost report: a proof result (``bench/results/proof.json``, schema "audiosync-proof/1",
written by ``python -m bench.proof``) priced with ``bench/prices.toml``.

    python -m bench.cost          # the table and the paragraph, Markdown, on stdout
    python -m bench.cost --markdown docs/COST.md --markdown README.md \
        --markdown docs/BENCHMARKS.md --charts docs/img
    python bench/cost.py --proof other.json --retention-months 24 --duty 0.33

Every figure per session-hour comes from the proof (measured side by side, both paths, in one
run); prices from the price file; the rest is a stated assumption with a flag (``Model``).
Everything but ``main`` and the chart writer is pure: prices x quantities.

Sessions are concurrent sessions. With ``--duty D`` each is live a share D of the month:
usage (requests, bytes, CPU) is priced on sessions x D, while what is provisioned for the
peak (Redis nodes, the spool) is sized for all sessions live at once.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROOF = ROOT / "bench" / "results" / "proof.json"
DEFAULT_PRICES = ROOT / "bench" / "prices.toml"
SCHEMA = "audiosync-proof/1"
PATHS = ("baseline", "audiosync")
PATH_LABELS = {"baseline": "5 s baseline", "audiosync": "audiosync"}
#: The proposal's three scales: 1x, 100x, 10,000x of today's 200 concurrent sessions.
SCALES = (200, 20_000, 2_000_000)
GIB = float(2**30)

#: The cost lines, in the order the table shows them.
LINES: tuple[tuple[str, str], ...] = (
    ("gcs_class_a", "GCS Class A requests (object writes)"),
    ("gcs_class_b", "GCS Class B requests (reads)"),
    ("storage", "GCS Standard storage"),
    ("egress", "network egress"),
    ("redis_memory", "Redis memory (its share of the nodes)"),
    ("redis_nodes", "Redis nodes beyond memory (whole nodes, CPU bound)"),
    ("broker", "Celery broker (Memorystore Basic)"),
    ("pusher_cpu", "pusher CPU (encode, seal, append / seal, upload)"),
    ("fleet_cpu", "fleet CPU (workers)"),
    ("spool", "spool (Filestore)"),
)
LINE_LABELS = dict(LINES)
SHORT_LABELS = {
    "gcs_class_a": "object writes",
    "gcs_class_b": "reads",
    "storage": "storage",
    "egress": "egress",
    "redis_memory": "Redis memory",
    "redis_nodes": "Redis nodes",
    "broker": "the broker",
    "pusher_cpu": "the pusher's CPU",
    "fleet_cpu": "the fleet's CPU",
    "spool": "the spool",
}

#: The proposal's own figures (shared/seeds/opus-batching-spool-proposal.txt, "Cost Impact"):
#: GCS Class A writes only, per month, at 200 / 20,000 / 2,000,000 sessions.
PROPOSAL_CURRENT = {200: 518.0, 20_000: 51_840.0, 2_000_000: 5_184_000.0}
PROPOSAL_BATCHED = {200: 43.0, 20_000: 4_320.0, 2_000_000: 432_000.0}
PROPOSAL_FILESTORE = {200: 49.0, 20_000: 768.0}
PROPOSAL_DAYS = 30
PROPOSAL_CURRENT_SESSIONS = 200
PROPOSAL_CHUNK_SECONDS = 5
PROPOSAL_OBJECT_SECONDS = 60
PROPOSAL_CLASS_A_PER_10K = 0.05

#: The shape of the fleet's CPU per object against the object's length, from
#: bench/bench_flush.py (bench/README.md, "Before and after the flush's CPU cut", the code
#: after it, sweep every 5 s): 2.20 ms for a 1-chunk object (the burst of 20,000) and
#: 3.40 ms for a 12-chunk one (500 x 60 s), so 0.109 ms a chunk on top of 2.09 ms an
#: object. Two runs of one session, not one run. The proof's own figure at its object
#: length is scaled along this line.
FLUSH_MS_ONE_CHUNK = 2.20
FLUSH_MS_TWELVE_CHUNKS = 3.40
#: ``AUDIOSYNC_BATCH_MAX_BYTES``'s default: an object is cut at this size whatever its age, so
#: beyond it a longer ``AUDIOSYNC_OBJECT_SECONDS`` changes nothing.
BATCH_MAX_BYTES = 1_048_576
#: The store's CPU per session-hour at 60 s objects (docs/CAPACITY.md): 720 appends x 164 us
#: (does not depend on the object length) + 60 flushed objects x 1.9 ms (falls as 1/length).
STORE_APPEND_SHARE = (720 * 0.164) / (720 * 0.164 + 60 * 1.9)


@dataclass(frozen=True)
class Prices:
    """The price file (bench/prices.toml), flattened; every figure USD."""

    region: str
    read_on: str
    hours_per_month: float
    class_a_per_10k: float
    class_b_per_10k: float
    storage_per_gib_month: float
    egress_per_gib: float
    redis_node_type: str
    redis_node_hour: float
    redis_node_writable_gb: float
    redis_node_total_gb: float
    broker_gb_hour: float
    broker_gb: float
    vcpu_hour: float
    gib_hour: float
    hdd_per_gib_month: float
    hdd_min_gib: float
    ssd_per_gib_month: float
    ssd_min_gib: float
    sources: Mapping[str, str] = field(default_factory=dict)


def parse_prices(doc: Mapping[str, Any]) -> Prices:
    """Prices from the parsed TOML document (KeyError names a missing price)."""
    sources = {
        section: f"{doc[section]['source']} ({doc[section]['status']})"
        for section in (
            "gcs",
            "egress",
            "memorystore_cluster",
            "memorystore_basic",
            "compute",
            "filestore",
        )
    }
    return Prices(
        region=str(doc["meta"]["region"]),
        read_on=str(doc["meta"]["read_on"]),
        hours_per_month=float(doc["meta"]["hours_per_month"]),
        class_a_per_10k=float(doc["gcs"]["class_a_per_10k"]),
        class_b_per_10k=float(doc["gcs"]["class_b_per_10k"]),
        storage_per_gib_month=float(doc["gcs"]["standard_per_gib_month"]),
        egress_per_gib=float(doc["egress"]["same_region_per_gib"]),
        redis_node_type=str(doc["memorystore_cluster"]["node_type"]),
        redis_node_hour=float(doc["memorystore_cluster"]["node_hour"]),
        redis_node_writable_gb=float(doc["memorystore_cluster"]["node_writable_gb"]),
        redis_node_total_gb=float(doc["memorystore_cluster"]["node_total_gb"]),
        broker_gb_hour=float(doc["memorystore_basic"]["gb_hour"]),
        broker_gb=float(doc["memorystore_basic"]["broker_gb"]),
        vcpu_hour=float(doc["compute"]["vcpu_hour"]),
        gib_hour=float(doc["compute"]["gib_hour"]),
        hdd_per_gib_month=float(doc["filestore"]["basic_hdd_per_gib_month"]),
        hdd_min_gib=float(doc["filestore"]["basic_hdd_min_gib"]),
        ssd_per_gib_month=float(doc["filestore"]["basic_ssd_per_gib_month"]),
        ssd_min_gib=float(doc["filestore"]["basic_ssd_min_gib"]),
        sources=sources,
    )


def load_prices(path: Path) -> Prices:
    with path.open("rb") as f:
        return parse_prices(tomllib.load(f))


@dataclass(frozen=True)
class PathRates:
    """One path's measured figures, per session-hour (and per session for memory)."""

    gcs_class_a: float
    gcs_class_b: float
    objects: float
    bytes_stored: float
    pusher_cpu_seconds: float
    fleet_cpu_seconds: float
    redis_cpu_seconds: float
    broker_commands: float
    redis_peak_bytes_per_session: float
    store_bytes_per_audio_second: float

    @property
    def uses_redis(self) -> bool:
        return self.store_bytes_per_audio_second > 0 or self.redis_peak_bytes_per_session > 0


@dataclass(frozen=True)
class Proof:
    """What the cost report reads from a proof result."""

    path: str
    started_at: str
    command: str
    fixture: bool
    sessions: int
    object_seconds: float
    chunk_seconds: float
    session_hours: float
    audit_ok: bool
    rates: Mapping[str, PathRates]
    machine: str = ""
    #: the audit of each path: chunks, lost, duplicated (the proof's ``audit``)
    audit: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


#: Class B requests a client makes once when it starts (the bucket's metadata), not per
#: session: a proof of minutes would scale them into a per-session-hour cost they are not.
PER_CLIENT_CLASS_B = ("bucket_get",)


def _per_session_hour(figures: Mapping[str, Any], name: str) -> float:
    return float(figures[f"{name}_per_session_hour"])


def parse_proof(doc: Mapping[str, Any], source: str = "") -> Proof:
    """The figures the report needs from a proof document (ValueError: another schema)."""
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{source or 'proof'}: schema {doc.get('schema')!r}, expected {SCHEMA!r}")
    settings = doc["settings"]
    sessions = int(settings["sessions"])
    hours = float(doc["session_hours"])
    rates: dict[str, PathRates] = {}
    for name in PATHS:
        figures = doc["paths"][name]
        by_kind = figures.get("gcs_requests_by_kind", {})
        per_client = sum(float(by_kind.get(kind, 0)) for kind in PER_CLIENT_CLASS_B)
        rates[name] = PathRates(
            gcs_class_a=_per_session_hour(figures, "gcs_class_a"),
            gcs_class_b=max(0.0, float(figures["gcs_class_b"]) - per_client) / hours,
            objects=_per_session_hour(figures, "objects_stored"),
            bytes_stored=_per_session_hour(figures, "bytes_stored"),
            pusher_cpu_seconds=_per_session_hour(figures, "pusher_cpu_seconds"),
            fleet_cpu_seconds=_per_session_hour(figures, "fleet_cpu_seconds"),
            redis_cpu_seconds=_per_session_hour(figures, "redis_cpu_seconds"),
            broker_commands=_per_session_hour(figures, "broker_commands"),
            redis_peak_bytes_per_session=float(figures["redis_memory_peak_bytes"]) / sessions,
            store_bytes_per_audio_second=float(figures["store_bytes_per_audio_second"]),
        )
    return Proof(
        path=source,
        started_at=str(doc.get("started_at", "")),
        command=str(doc.get("command", "")),
        fixture=bool(doc.get("fixture", False)),
        sessions=sessions,
        object_seconds=float(settings["object_seconds"]),
        chunk_seconds=float(settings["chunk_seconds"]),
        session_hours=float(doc["session_hours"]),
        audit_ok=bool(doc.get("audit", {}).get("ok", False)),
        rates=rates,
        machine=machine_words(doc.get("machine", {})),
        audit={k: v for k, v in doc.get("audit", {}).items() if isinstance(v, dict)},
    )


def shown(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it (reports name it so)."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def machine_words(machine: Mapping[str, Any]) -> str:
    """The proof's machine in a few words: CPUs, model, load average at start and end."""
    if not machine:
        return ""

    def load(key: str) -> str:
        value = machine.get(key)
        return f"{value:.1f}" if isinstance(value, int | float) else "?"

    return (
        f"{machine.get('cpus', '?')} CPUs ({machine.get('cpu_model', '?')}), load average "
        f"{load('load_average_start')} at the start, {load('load_average_end')} at the end"
    )


def load_proof(path: Path) -> Proof:
    return parse_proof(json.loads(path.read_text()), shown(path))


@dataclass(frozen=True)
class Model:
    """The assumptions that are not prices and not measured; each has a flag."""

    retention_months: float = 12.0
    duty: float = 1.0
    #: Memorystore replicas per shard (1: each master has a replica in another zone).
    redis_replicas: int = 1
    #: The share of a Redis node's one command core to plan for (docs/CAPACITY.md: 60 %).
    redis_core_load: float = 0.6
    #: The share of a provisioned vCPU the pods use (1.0: priced at the CPU measured, a floor).
    cpu_utilisation: float = 1.0
    #: Memory provisioned per vCPU (GiB): Autopilot's smallest ratio.
    gib_per_vcpu: float = 1.0
    #: audiosync's spool: the outage of Redis it must hold (hours of every session's audio).
    spool: bool = True
    spool_outage_hours: float = 1.0
    #: The proposal's tiers: one Basic HDD (GKE) instance up to this many sessions...
    spool_hdd_max_sessions: int = 2_000
    #: ...else one Basic SSD instance per this many sessions (its 100x on one instance).
    spool_sessions_per_ssd: int = 20_000


@dataclass(frozen=True)
class CostLine:
    key: str
    monthly_usd: float
    quantity: str


@dataclass(frozen=True)
class PathCost:
    path: str
    sessions: int
    lines: tuple[CostLine, ...]

    @property
    def total(self) -> float:
        return sum(line.monthly_usd for line in self.lines)

    def line(self, key: str) -> CostLine:
        return next(line for line in self.lines if line.key == key)

    def dominant(self) -> CostLine:
        return max(self.lines, key=lambda line: line.monthly_usd)


@dataclass(frozen=True)
class RedisPlan:
    gb_peak: float
    cores: float
    shards: int
    nodes: int
    bound: str  # "memory", "cpu" or "one shard"


def redis_plan(sessions: int, rates: PathRates, prices: Prices, model: Model) -> RedisPlan:
    """Memorystore shards for the peak: memory (every session just before its flush) and
    the store's CPU, whichever needs more; at least one shard; each with its replicas."""
    if not rates.uses_redis:
        return RedisPlan(0.0, 0.0, 0, 0, "none")
    gb = sessions * rates.redis_peak_bytes_per_session / 1e9
    cores = sessions * rates.redis_cpu_seconds / 3600.0  # at the peak: every session live
    by_memory = math.ceil(gb / prices.redis_node_writable_gb)
    by_cpu = math.ceil(cores / model.redis_core_load)
    shards = max(1, by_memory, by_cpu)
    bound = (
        "one shard"
        if shards == 1 and max(by_memory, by_cpu) <= 1
        else ("memory" if by_memory >= by_cpu else "cpu")
    )
    return RedisPlan(gb, cores, shards, shards * (1 + model.redis_replicas), bound)


@dataclass(frozen=True)
class SpoolPlan:
    tier: str
    instances: int
    gib_each: float
    gib_needed: float


def spool_plan(sessions: int, rates: PathRates, prices: Prices, model: Model) -> SpoolPlan:
    """Filestore for the spool, by the proposal's tiers, at least the capacity that holds
    ``spool_outage_hours`` of every session's audio (as appended: the store's bytes)."""
    if not (model.spool and rates.uses_redis):
        return SpoolPlan("none", 0, 0.0, 0.0)
    needed = sessions * rates.store_bytes_per_audio_second * 3600.0 * model.spool_outage_hours / GIB
    if sessions <= model.spool_hdd_max_sessions:
        return SpoolPlan("Basic HDD", 1, max(prices.hdd_min_gib, needed), needed)
    instances = max(
        math.ceil(sessions / model.spool_sessions_per_ssd), math.ceil(needed / prices.ssd_min_gib)
    )
    return SpoolPlan("Basic SSD", instances, max(prices.ssd_min_gib, needed / instances), needed)


def _count(value: float) -> str:
    for limit, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:,.1f} {unit}"
    return f"{value:,.1f}"


def vcpus(sessions: int, cpu_seconds_per_session_hour: float, model: Model) -> float:
    return sessions * model.duty * cpu_seconds_per_session_hour / 3600.0 / model.cpu_utilisation


def monthly_cost(
    path: str, sessions: int, rates: PathRates, prices: Prices, model: Model
) -> PathCost:
    """Every cost line of one path at ``sessions`` concurrent sessions, USD a month."""
    hours = prices.hours_per_month
    session_hours = sessions * model.duty * hours
    class_a = session_hours * rates.gcs_class_a
    class_b = session_hours * rates.gcs_class_b
    written_gib = session_hours * rates.bytes_stored / GIB
    held_gib = written_gib * model.retention_months
    plan = redis_plan(sessions, rates, prices, model)
    node_month = prices.redis_node_hour * hours
    nodes_usd = plan.nodes * node_month
    memory_usd = min(
        nodes_usd,
        plan.gb_peak / prices.redis_node_writable_gb * (1 + model.redis_replicas) * node_month,
    )
    vcpu_month = (prices.vcpu_hour + model.gib_per_vcpu * prices.gib_hour) * hours
    pusher = vcpus(sessions, rates.pusher_cpu_seconds, model)
    fleet = vcpus(sessions, rates.fleet_cpu_seconds, model)
    spool = spool_plan(sessions, rates, prices, model)
    spool_price = (
        prices.hdd_per_gib_month if spool.tier == "Basic HDD" else prices.ssd_per_gib_month
    )
    broker_usd = (
        prices.broker_gb * prices.broker_gb_hour * hours if rates.broker_commands > 0 else 0.0
    )
    lines = (
        CostLine(
            "gcs_class_a", class_a / 1e4 * prices.class_a_per_10k, f"{_count(class_a)} requests"
        ),
        CostLine(
            "gcs_class_b", class_b / 1e4 * prices.class_b_per_10k, f"{_count(class_b)} requests"
        ),
        CostLine(
            "storage",
            held_gib * prices.storage_per_gib_month,
            f"{held_gib / 1024:,.2f} TiB held "
            f"({written_gib:,.1f} GiB a month x {model.retention_months:g})",
        ),
        CostLine(
            "egress",
            written_gib * prices.egress_per_gib,
            f"{written_gib:,.1f} GiB within the region",
        ),
        CostLine("redis_memory", memory_usd, f"{plan.gb_peak:,.3f} GB at the peak"),
        CostLine(
            "redis_nodes",
            nodes_usd - memory_usd,
            f"{plan.nodes} x {prices.redis_node_type} ({plan.shards} shard(s), "
            f"bound: {plan.bound}; {plan.cores:,.2f} cores)"
            if plan.nodes
            else "none",
        ),
        CostLine(
            "broker", broker_usd, f"{prices.broker_gb:g} GB instance" if broker_usd else "none"
        ),
        CostLine("pusher_cpu", pusher * vcpu_month, f"{pusher:,.2f} vCPU"),
        CostLine("fleet_cpu", fleet * vcpu_month, f"{fleet:,.2f} vCPU"),
        CostLine(
            "spool",
            spool.instances * spool.gib_each * spool_price,
            f"{spool.instances} x {spool.tier} {spool.gib_each:,.0f} GiB"
            if spool.instances
            else "none",
        ),
    )
    return PathCost(path, sessions, lines)


def report_costs(
    proof: Proof, prices: Prices, model: Model, scales: Sequence[int] = SCALES
) -> dict[int, dict[str, PathCost]]:
    return {
        sessions: {
            name: monthly_cost(name, sessions, proof.rates[name], prices, model) for name in PATHS
        }
        for sessions in scales
    }


# --- audiosync at another AUDIOSYNC_OBJECT_SECONDS (the second chart) -------------------


def rates_at_object_seconds(
    rates: PathRates, measured_seconds: float, seconds: float, chunk_seconds: float
) -> PathRates:
    """audiosync's per-session-hour figures modelled at objects of ``seconds`` of audio
    (with ``AUDIOSYNC_BATCH_MAX_AGE_SECONDS`` the same), from the proof's at
    ``measured_seconds``: requests and objects as 1/length; the fleet's CPU per object
    along the bench_flush line (fixed + per chunk); the store's CPU split into appends
    (unchanged) and flushes (1/length); Redis memory at the peak in proportion to the
    length (the measured bytes per audio second x the measured overhead factor); bytes
    stored and the pusher's CPU unchanged. An object is never longer than
    ``BATCH_MAX_BYTES`` holds at the path's bytes per audio second."""
    seconds = effective_seconds(rates, seconds)
    ratio = measured_seconds / seconds
    per_chunk = (FLUSH_MS_TWELVE_CHUNKS - FLUSH_MS_ONE_CHUNK) / 11.0
    fixed = FLUSH_MS_ONE_CHUNK - per_chunk

    def per_object(length: float) -> float:
        return fixed + per_chunk * max(1.0, length / chunk_seconds)

    fleet_per_object = per_object(seconds) / per_object(measured_seconds)
    return replace(
        rates,
        gcs_class_a=rates.gcs_class_a * ratio,
        gcs_class_b=rates.gcs_class_b * ratio,
        objects=rates.objects * ratio,
        fleet_cpu_seconds=rates.fleet_cpu_seconds * ratio * fleet_per_object,
        redis_cpu_seconds=rates.redis_cpu_seconds
        * (STORE_APPEND_SHARE + (1.0 - STORE_APPEND_SHARE) * ratio),
        redis_peak_bytes_per_session=rates.redis_peak_bytes_per_session / ratio,
    )


def effective_seconds(rates: PathRates, seconds: float) -> float:
    """The audio an object holds at ``AUDIOSYNC_OBJECT_SECONDS=seconds``: no more than
    ``BATCH_MAX_BYTES`` holds at the path's bytes stored per audio second."""
    bytes_per_second = rates.bytes_stored / 3600.0
    return min(seconds, BATCH_MAX_BYTES / bytes_per_second) if bytes_per_second else seconds


def overhead_factor(rates: PathRates, measured_seconds: float) -> float:
    """Redis memory held at the peak per byte of stream entries a session holds then."""
    held = rates.store_bytes_per_audio_second * measured_seconds
    return rates.redis_peak_bytes_per_session / held if held else 0.0


#: AUDIOSYNC_OBJECT_SECONDS from 30 s to 15 min, every 15 s (the chart and the paragraph).
OBJECT_SECONDS_GRID = tuple(range(30, 901, 15))


def object_seconds_sweep(
    proof: Proof,
    prices: Prices,
    model: Model,
    sessions: int,
    grid: Sequence[int] = OBJECT_SECONDS_GRID,
) -> list[tuple[int, PathCost]]:
    rates = proof.rates["audiosync"]
    return [
        (
            seconds,
            monthly_cost(
                "audiosync",
                sessions,
                rates_at_object_seconds(rates, proof.object_seconds, seconds, proof.chunk_seconds),
                prices,
                model,
            ),
        )
        for seconds in grid
    ]


def optimum(sweep: Sequence[tuple[int, PathCost]]) -> tuple[int, PathCost]:
    return min(sweep, key=lambda point: point[1].total)


# --- the proposal's table, checked ------------------------------------------------------


@dataclass(frozen=True)
class ProposalCheck:
    sessions: int
    path: str
    proposal_usd: float
    reproduced_usd: float  # the proposal's own arithmetic
    ours_usd: float  # our Class A line
    nominal_per_session_hour: float
    measured_per_session_hour: float
    month_factor: float
    requests_factor: float
    price_factor: float


def proposal_checks(proof: Proof, prices: Prices, model: Model) -> list[ProposalCheck]:
    """The proposal's GCS-operations figures, its arithmetic redone (sessions x 17,280
    writes a day x 30 days x $0.05 per 10,000; / 12 for 60 s objects), and ours, with the
    difference split into factors: month length, requests per session-hour, price (and
    the duty, folded into the month factor)."""
    checks = []
    for sessions in SCALES:
        for name, figures, object_seconds in (
            ("baseline", PROPOSAL_CURRENT, PROPOSAL_CHUNK_SECONDS),
            ("audiosync", PROPOSAL_BATCHED, PROPOSAL_OBJECT_SECONDS),
        ):
            nominal = 3600.0 / object_seconds
            reproduced = (
                sessions * 86_400 / object_seconds * PROPOSAL_DAYS / 1e4 * PROPOSAL_CLASS_A_PER_10K
            )
            ours = monthly_cost(name, sessions, proof.rates[name], prices, model).line(
                "gcs_class_a"
            )
            checks.append(
                ProposalCheck(
                    sessions=sessions,
                    path=name,
                    proposal_usd=figures[sessions],
                    reproduced_usd=reproduced,
                    ours_usd=ours.monthly_usd,
                    nominal_per_session_hour=nominal,
                    measured_per_session_hour=proof.rates[name].gcs_class_a,
                    month_factor=prices.hours_per_month * model.duty / (PROPOSAL_DAYS * 24),
                    requests_factor=proof.rates[name].gcs_class_a / nominal,
                    price_factor=prices.class_a_per_10k / PROPOSAL_CLASS_A_PER_10K,
                )
            )
    return checks


# --- the words: generated from the numbers ----------------------------------------------


def usd(value: float) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    return f"${value:,.2f}"


#: The issue's goals (issue 18, "Cut what the report shows is worth cutting"), and where
#: each stands today by the project's own benchmarks:
#: the fleet: <= 4 ms of worker CPU per 60 s object (the proof measures today's);
FLEET_GOAL_MS = 4.0
#: the store: <= 1.3x the CPU of a bare XADD per append, against 1.68x / 1.73x (8 / 16 kHz)
#: measured side by side after the append script's cut (bench/bench_append.py; a script
#: that only does the XADD is 1.43x / 1.47x); the appends are STORE_APPEND_SHARE of the
#: store's CPU;
STORE_GOAL_X, STORE_NOW_X = 1.3, 1.7
#: the pusher: within 5 % of bare libopus, against 3.6 / 4.2 / 13.0 / 11.8 % (16 kHz
#: enhanced, standard; 8 kHz enhanced, standard: docs/BENCHMARKS.md "Pusher", after the
#: per-frame cut): their mean for the proof's mix of rates and levels.
PUSHER_GOAL, PUSHER_NOW = 0.05, (0.036 + 0.042 + 0.130 + 0.118) / 4


@dataclass(frozen=True)
class Saving:
    key: str
    what: str
    monthly_usd: float
    note: str
    detail: str = ""


#: The savings table's rows (the object length's own length is in its cells).
SAVING_ROWS = {
    "fleet_goal": "the fleet goal",
    "store_goal": "the store goal",
    "pusher_goal": "the pusher goal",
    "object_length": "objects of the modelled cheapest length",
    "retention": "one month less of retention",
    "spool": "no Filestore spool",
}


def savings(
    sessions: int,
    proof: Proof,
    prices: Prices,
    model: Model,
    grid: Sequence[int] = OBJECT_SECONDS_GRID,
) -> list[Saving]:
    """What each cut would save audiosync a month at ``sessions``, largest first: the
    issue's three goals (their figures above), the modelled best object length (a trade
    against durability), one month less of retention, and the spool."""
    rates = proof.rates["audiosync"]
    now = monthly_cost("audiosync", sessions, rates, prices, model)

    def saved(**changes: float) -> float:
        cut = monthly_cost("audiosync", sessions, replace(rates, **changes), prices, model)
        return now.total - cut.total

    fleet_ms = rates.fleet_cpu_seconds / rates.objects * 1000 if rates.objects else 0.0
    store_cut = 1 - STORE_APPEND_SHARE * (1 - STORE_GOAL_X / STORE_NOW_X)
    best_seconds, best = optimum(object_seconds_sweep(proof, prices, model, sessions, grid))
    held = round(effective_seconds(rates, best_seconds))
    capped = (
        f" at AUDIOSYNC_OBJECT_SECONDS={best_seconds}: objects cut at "
        f"AUDIOSYNC_BATCH_MAX_BYTES, {held} s of audio"
        if held < best_seconds
        else ""
    )
    found = [
        Saving(
            "fleet_goal",
            f"the fleet goal ({FLEET_GOAL_MS:g} ms of worker CPU an object, "
            f"{fleet_ms:.1f} ms in the proof)",
            saved(fleet_cpu_seconds=rates.fleet_cpu_seconds * min(1.0, FLEET_GOAL_MS / fleet_ms))
            if fleet_ms
            else 0.0,
            "fleet CPU",
        ),
        Saving(
            "store_goal",
            f"the store goal ({STORE_GOAL_X:g}x a bare XADD per append, ~{STORE_NOW_X:g}x now)",
            saved(redis_cpu_seconds=rates.redis_cpu_seconds * store_cut),
            "Redis nodes, where they are CPU-bound",
        ),
        Saving(
            "pusher_goal",
            f"the pusher goal (within {PUSHER_GOAL:.0%} of bare libopus, "
            f"~{PUSHER_NOW:.1%} over it now)",
            saved(
                pusher_cpu_seconds=rates.pusher_cpu_seconds * (1 + PUSHER_GOAL) / (1 + PUSHER_NOW)
            ),
            "pusher CPU",
        ),
        Saving(
            "object_length",
            f"{held} s objects instead of {proof.object_seconds:g} s (the modelled "
            f"cheapest length{capped}; up to {held} s of audio a session in Redis, "
            "not yet durable)",
            now.total - best.total,
            "a trade against durability",
            f"at {held} s",
        ),
        Saving(
            "retention",
            "one month less of retention",
            now.line("storage").monthly_usd / model.retention_months,
            "storage",
        ),
        Saving(
            "spool",
            "no Filestore spool (audio waits in the pusher's memory while Redis is away)",
            now.line("spool").monthly_usd,
            "a trade against durability",
        ),
    ]
    return sorted(found, key=lambda saving: -saving.monthly_usd)


def paragraph(
    costs: Mapping[int, Mapping[str, PathCost]], proof: Proof, prices: Prices, model: Model
) -> str:
    """The report's answer, one sentence group per scale, every number computed."""
    parts = []
    for sessions, pair in costs.items():
        base, new = pair["baseline"], pair["audiosync"]
        top_new, top_base = new.dominant(), base.dominant()
        cuts = [cut for cut in savings(sessions, proof, prices, model) if cut.monthly_usd > 0]
        listed = "; ".join(
            f"{cut.what}: {usd(cut.monthly_usd)} ({cut.monthly_usd / new.total * 100:.1f} %)"
            for cut in cuts[:3]
        )
        floor = ""
        plan = redis_plan(sessions, proof.rates["audiosync"], prices, model)
        if top_new.key in ("redis_nodes", "redis_memory") and plan.bound == "one shard":
            floor = (
                f" The Redis line is the floor of one {prices.redis_node_type} shard with "
                f"its replica for {plan.gb_peak:,.3f} GB: a smaller node type would do at "
                "this scale."
            )
        parts.append(
            f"At {sessions:,} sessions audiosync costs {usd(new.total)} a month against "
            f"{usd(base.total)} on the old 5 s path ({new.total / base.total:.3f}x, "
            f"{usd(abs(base.total - new.total))} "
            f"{'less' if new.total <= base.total else 'more'}). The old path's largest line is "
            f"{LINE_LABELS[top_base.key]} ({usd(top_base.monthly_usd)}, "
            f"{top_base.monthly_usd / base.total * 100:.0f} %); audiosync's is "
            f"{LINE_LABELS[top_new.key]} ({usd(top_new.monthly_usd)}, "
            f"{top_new.monthly_usd / new.total * 100:.0f} %).{floor} Next savings, largest "
            f"first: {listed or 'none left in this model'}."
        )
    return "\n\n".join(parts)


def savings_markdown(
    costs: Mapping[int, Mapping[str, PathCost]], proof: Proof, prices: Prices, model: Model
) -> str:
    """Every cut priced at every scale (USD a month, and % of audiosync's bill)."""
    by_scale = {s: {cut.key: cut for cut in savings(s, proof, prices, model)} for s in costs}
    rows = [
        "| cut | what it trades | " + " | ".join(f"{s:,} sessions" for s in costs) + " |",
        "|---|---|" + "---|" * len(costs),
    ]
    for key, label in SAVING_ROWS.items():
        cells = []
        for s in costs:
            cut = by_scale[s][key]
            share = cut.monthly_usd / costs[s]["audiosync"].total * 100
            cells.append(f"{usd(cut.monthly_usd)} ({share:.1f} %) {cut.detail}".strip())
        note = next(iter(by_scale.values()))[key].note
        rows.append(f"| {label} | {note} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def table_markdown(costs: Mapping[int, Mapping[str, PathCost]]) -> str:
    scales = list(costs)
    head = (
        "| cost line (USD a month) | "
        + " | ".join(f"{s:,}: {PATH_LABELS[p]}" for s in scales for p in PATHS)
        + " |"
    )
    rule = "|---|" + "---|" * (len(scales) * len(PATHS))
    rows = [head, rule]
    for key, label in LINES:
        cells = [usd(costs[s][p].line(key).monthly_usd) for s in scales for p in PATHS]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    totals = [f"**{usd(costs[s][p].total)}**" for s in scales for p in PATHS]
    rows.append("| **total** | " + " | ".join(totals) + " |")
    ratio = []
    for s in scales:
        ratio += ["", f"{costs[s]['audiosync'].total / costs[s]['baseline'].total:.3f}x"]
    rows.append("| audiosync / baseline | " + " | ".join(ratio) + " |")
    return "\n".join(rows)


def quantities_markdown(costs: Mapping[int, Mapping[str, PathCost]]) -> str:
    rows = ["| sessions | path | " + " | ".join(label for _, label in LINES) + " |"]
    rows.append("|---|---|" + "---|" * len(LINES))
    for sessions, pair in costs.items():
        for name in PATHS:
            cost = pair[name]
            rows.append(
                f"| {sessions:,} | {PATH_LABELS[name]} | "
                + " | ".join(cost.line(key).quantity for key, _ in LINES)
                + " |"
            )
    return "\n".join(rows)


def checks_markdown(checks: Sequence[ProposalCheck]) -> str:
    rows = [
        "| sessions | path | proposal | its arithmetic | ours | month (730 h / 720 h, x duty) "
        "| requests per session-hour (measured / nominal) | price |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        rows.append(
            f"| {c.sessions:,} | {PATH_LABELS[c.path]} | {usd(c.proposal_usd)} | "
            f"{usd(c.reproduced_usd)} | {usd(c.ours_usd)} | x{c.month_factor:.4f} | "
            f"x{c.requests_factor:.4f} ({c.measured_per_session_hour:,.1f} / "
            f"{c.nominal_per_session_hour:,.0f}) | x{c.price_factor:.4f} |"
        )
    return "\n".join(rows)


def checks_words(checks: Sequence[ProposalCheck], proof: Proof, prices: Prices) -> str:
    """The differences from the proposal's figures, explained from the numbers."""
    base = next(c for c in checks if c.path == "baseline")
    new = next(c for c in checks if c.path == "audiosync")
    rounding = max(abs(c.proposal_usd - c.reproduced_usd) / c.reproduced_usd for c in checks)
    per_day = 86_400 // PROPOSAL_CHUNK_SECONDS
    today = PROPOSAL_CURRENT_SESSIONS * per_day * PROPOSAL_DAYS / 1e4 * PROPOSAL_CLASS_A_PER_10K
    hours_each = proof.session_hours / max(proof.sessions, 1)
    return "\n".join(
        [
            f"- The proposal's arithmetic holds: {PROPOSAL_CURRENT_SESSIONS} sessions x "
            f"{per_day:,} five-second chunks a day = {PROPOSAL_CURRENT_SESSIONS * per_day:,} "
            f'writes a day (its "3.5 M"), x {PROPOSAL_DAYS} days x $0.05 per 10,000 = '
            f"${today:,.2f}; its 60 s column is exactly 1/12 of it (${today / 12:,.2f}). Its "
            f"figures differ from that arithmetic by at most {rounding * 100:.2f} % (rounding "
            f"${today:,.2f} to $518 and ${today / 12:,.2f} to $43).",
            f"- Month: Google bills {730:g} hours a month, the proposal counted {PROPOSAL_DAYS} "
            f"days ({PROPOSAL_DAYS * 24} h): x{730 / (PROPOSAL_DAYS * 24):.4f} on every usage "
            f"line"
            + (
                f", and x{base.month_factor * PROPOSAL_DAYS * 24 / 730:g} for --duty."
                if abs(base.month_factor * PROPOSAL_DAYS * 24 / 730 - 1) > 1e-9
                else "."
            ),
            _requests_words(base, hours_each, proof),
            _requests_words(new, hours_each, proof),
            f"- Price: ${prices.class_a_per_10k:g} per 10,000 Class A requests here, "
            f"${PROPOSAL_CLASS_A_PER_10K:g} in the proposal (x{base.price_factor:.4f}). The "
            "proposal prices operations only: storage, Redis, CPU and the spool are the other "
            "lines of the table above.",
            f"- Filestore: the proposal's ~{usd(PROPOSAL_FILESTORE[20_000])} a month at 100x is "
            f"a Basic SSD of the tier's minimum {prices.ssd_min_gib:,.0f} GiB at "
            f"${prices.ssd_per_gib_month:.2f} per GiB-month "
            f"({usd(prices.ssd_min_gib * prices.ssd_per_gib_month)}). Its "
            f"~{usd(PROPOSAL_FILESTORE[200])} at 1x for a {prices.hdd_min_gib:,.0f} GiB Basic "
            f"HDD would be ${PROPOSAL_FILESTORE[200] / prices.hdd_min_gib:.2f} per GiB-month; "
            f"the list price read here is ${prices.hdd_per_gib_month:.2f}, "
            f"{usd(prices.hdd_min_gib * prices.hdd_per_gib_month)} for "
            f"{prices.hdd_min_gib:,.0f} GiB. Its Phase 3 column (~$92 at 1x, ~$5,088 at "
            "100x) is its 60 s column plus these two; ours is the whole audiosync column, "
            "the spool one line of it.",
        ]
    )


def _requests_words(check: ProposalCheck, hours_each: float, proof: Proof) -> str:
    """Why one path's Class A requests per session-hour differ from the nominal."""
    said = (
        f"- Requests, {PATH_LABELS[check.path]}: measured {check.measured_per_session_hour:,.2f} "
        f"Class A requests per session-hour against the nominal "
        f"{check.nominal_per_session_hour:,.0f} (x{check.requests_factor:.4f})"
    )
    extra_per_session = (
        check.measured_per_session_hour - check.nominal_per_session_hour
    ) * hours_each
    if abs(extra_per_session) < 0.05:
        return said + ": the nominal count, one write per object."
    return said + (
        f": {extra_per_session:+.2f} requests per session over the proof's "
        f"{hours_each * 60:.1f}-minute sessions. One more per session is a session's last, "
        "shorter object (its audio does not fill the last object or chunk); more are lists, "
        "composes or retried uploads, each Class A. One request per session weighs "
        f"{1 / hours_each:.2f} per session-hour here and 1 in hour-long calls, so longer sessions "
        "come closer to the nominal."
    )


def render_markdown(
    proof: Proof, prices: Prices, model: Model, costs: Mapping[int, Mapping[str, PathCost]]
) -> str:
    checks = proposal_checks(proof, prices, model)
    new = proof.rates["audiosync"]
    warning = (
        "\n> **FIXTURE**: this proof result is a hand-written fixture, not a measurement.\n"
        if proof.fixture
        else ""
    )
    if not proof.audit_ok:
        warning += (
            "\n> **The proof's audit did not pass**: audio was lost or duplicated in that run.\n"
        )
    return "\n".join(
        [
            f"Proof: `{proof.path}` ({proof.started_at}; `{proof.command}`), "
            f"{proof.sessions} sessions, {proof.session_hours:,.2f} session-hours"
            + (f" on {proof.machine}" if proof.machine else "")
            + f", objects of "
            f"{proof.object_seconds:g} s; Redis held at most "
            f"{new.redis_peak_bytes_per_session / 1000:,.1f} kB a session, "
            f"{overhead_factor(new, proof.object_seconds):.2f}x the bytes of the "
            f"{proof.object_seconds:g} s of audio an object holds (the overhead factor the "
            f"object-length model uses). Prices: {prices.region}, read on {prices.read_on} "
            f"(bench/prices.toml). Retention {model.retention_months:g} months (storage at "
            f"its steady state), duty {model.duty:g}, Redis {model.redis_replicas} replica(s) "
            f"a shard at {model.redis_core_load:.0%} of a core, CPU at "
            f"{model.cpu_utilisation:.0%} use, spool for {model.spool_outage_hours:g} h "
            f"{'on' if model.spool else 'off'}.",
            warning,
            table_markdown(costs),
            "",
            "Quantities behind each line:",
            "",
            quantities_markdown(costs),
            "",
            paragraph(costs, proof, prices, model),
            "",
            "Each cut priced (the object length differs by scale: the paragraph names it):",
            "",
            savings_markdown(costs, proof, prices, model),
            "",
            "The proposal's GCS-operations figures against ours:",
            "",
            checks_markdown(checks),
            "",
            checks_words(checks, proof, prices),
            "",
        ]
    )


def headline(
    proof: Proof, prices: Prices, model: Model, costs: Mapping[int, Mapping[str, PathCost]]
) -> str:
    """One paragraph for the README: the totals at each scale and the largest line."""
    cells = []
    for sessions, pair in costs.items():
        base, new = pair["baseline"], pair["audiosync"]
        cells.append(
            f"{sessions:,} sessions: {usd(new.total)} against {usd(base.total)} "
            f"({new.total / base.total:.3f}x)"
        )
    largest = ", ".join(
        f"{SHORT_LABELS[pair['audiosync'].dominant().key]} at {sessions:,}"
        for sessions, pair in costs.items()
    )
    label = "a FIXTURE (hand-written, not a measurement)" if proof.fixture else "the"
    return (
        f"Monthly cost, every line ({label} proof of {proof.started_at}, {prices.region} list "
        f"prices read {prices.read_on}, {model.retention_months:g} months of retention), "
        f"audiosync against the old 5 s path: " + "; ".join(cells) + f". audiosync's largest "
        f"line: {largest}."
    )


#: The proof's figures the headline table shows: (label, PathRates field, its unit).
PROOF_HEADLINE_ROWS = (
    ("GCS Class A requests (object writes)", "gcs_class_a", ""),
    ("objects stored", "objects", ""),
    ("MB stored", "bytes_stored", "MB"),
    ("pusher CPU seconds", "pusher_cpu_seconds", ""),
    ("fleet (worker) CPU seconds", "fleet_cpu_seconds", ""),
    ("store (Redis) CPU seconds", "redis_cpu_seconds", ""),
)


def proof_headline(proof: Proof) -> str:
    """The proof's measured figures per session-hour for both paths and their ratio (the
    same run), and its audit: for the top of docs/BENCHMARKS.md and the README."""
    base, new = proof.rates["baseline"], proof.rates["audiosync"]
    label = "A FIXTURE (hand-written, not a measurement)" if proof.fixture else "Measured"
    lines = [
        f"{label} by `{proof.command}` ({proof.started_at}; {proof.machine}): "
        f"{proof.sessions} sessions, {proof.session_hours:.2f} session-hours of the same "
        f"speech through both paths, objects of {proof.object_seconds:g} s.",
        "",
        "| per session-hour | old 5 s path | audiosync | audiosync / old |",
        "|---|---|---|---|",
    ]
    for what, name, unit in PROOF_HEADLINE_ROWS:
        old, now = float(getattr(base, name)), float(getattr(new, name))
        scale = 1e6 if unit == "MB" else 1.0
        ratio = f"{now / old:.3f}" if old else "(none on the old path)"
        lines.append(f"| {what} | {old / scale:,.2f} | {now / scale:,.2f} | {ratio} |")
    audits = []
    for name in PATHS:
        audit = proof.audit.get(name, {})
        chunks = audit.get("chunks")
        audits.append(
            f"{name}: {chunks if not isinstance(chunks, int) else f'{chunks:,}'} chunks, "
            f"{audit.get('lost', '?')} lost, "
            f"{audit.get('duplicated', '?')} duplicated"
        )
    verdict = "passed" if proof.audit_ok else "FAILED"
    lines += ["", f"Audit {verdict} (every chunk by identity; " + "; ".join(audits) + ")."]
    return "\n".join(lines)


def fill_blocks(text: str, blocks: Mapping[str, str]) -> str | None:
    """``text`` with each ``<!-- bench.cost:begin NAME -->`` ... ``<!-- bench.cost:end NAME -->``
    block's body replaced by ``blocks[NAME]``; None when it has no such block."""
    found = False
    for name, body in blocks.items():
        begin, end = f"<!-- bench.cost:begin {name} -->", f"<!-- bench.cost:end {name} -->"
        if begin not in text:
            continue
        head, rest = text.split(begin, 1)
        if end not in rest:
            raise ValueError(f"{begin} without {end}")
        _old, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{body.strip()}\n{end}{tail}"
        found = True
    return text if found else None


def render_json(
    proof: Proof, prices: Prices, model: Model, costs: Mapping[int, Mapping[str, PathCost]]
) -> dict[str, Any]:
    return {
        "schema": "audiosync-cost/1",
        "proof": proof.path,
        "fixture": proof.fixture,
        "prices": {k: v for k, v in asdict(prices).items()},
        "model": asdict(model),
        "scales": {
            str(sessions): {
                name: {
                    "total": cost.total,
                    "lines": {
                        line.key: {"usd": line.monthly_usd, "quantity": line.quantity}
                        for line in cost.lines
                    },
                }
                for name, cost in pair.items()
            }
            for sessions, pair in costs.items()
        },
        "proposal_checks": [asdict(check) for check in proposal_checks(proof, prices, model)],
        "object_seconds_optimum": {
            str(sessions): optimum(object_seconds_sweep(proof, prices, model, sessions))[0]
            for sessions in costs
        },
        "paragraph": paragraph(costs, proof, prices, model),
    }


# --- charts ------------------------------------------------------------------------------

SESSIONS_GRID = tuple(round(10 ** (2 + i * 0.1)) for i in range(0, 45))  # 100 .. 2.5 M
CHART_FILES = ("cost_vs_sessions.png", "cost_vs_object_seconds.png")
COLORS = {
    "gcs_class_a": "#d62728",
    "gcs_class_b": "#ff9896",
    "storage": "#1f77b4",
    "egress": "#c7c7c7",
    "redis_memory": "#2ca02c",
    "redis_nodes": "#98df8a",
    "broker": "#bcbd22",
    "pusher_cpu": "#9467bd",
    "fleet_cpu": "#8c564b",
    "spool": "#17becf",
}


def write_charts(proof: Proof, prices: Prices, model: Model, directory: Path) -> list[Path]:
    """The two PNGs: cost against sessions (totals log-log, and every line stacked as its
    share of each path's bill), and audiosync's cost against the object length at each
    scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

    directory.mkdir(parents=True, exist_ok=True)
    dollars = FuncFormatter(lambda v, _pos: f"${v:,.0f}")
    subtitle = (
        f"{prices.region} list prices read {prices.read_on}; retention "
        f"{model.retention_months:g} months; proof of {proof.started_at or 'unknown date'}"
    )
    if proof.fixture:
        subtitle += "; FIXTURE proof, not a measurement"

    # 1. monthly cost against sessions
    fig, axes = plt.subplots(1, 3, figsize=(17, 6.2))
    curves = {
        name: [monthly_cost(name, s, proof.rates[name], prices, model) for s in SESSIONS_GRID]
        for name in PATHS
    }
    keys = [
        key
        for key, _ in LINES
        if any(c.line(key).monthly_usd > 0 for n in PATHS for c in curves[n])
    ]
    ax = axes[0]
    for name, style in (("baseline", "#d62728"), ("audiosync", "#1f77b4")):
        ax.plot(
            SESSIONS_GRID,
            [c.total for c in curves[name]],
            color=style,
            lw=2,
            label=f"{PATH_LABELS[name]}: every line",
        )
        for s in SCALES:
            total = monthly_cost(name, s, proof.rates[name], prices, model).total
            ax.plot([s], [total], "o", color=style)
            last = s == SCALES[-1]
            ax.annotate(
                usd(total),
                (s, total),
                textcoords="offset points",
                xytext=(-8 if last else 8, 6 if name == "baseline" else -12),
                ha="right" if last else "left",
                fontsize=8,
            )
    for figures, marker, label in (
        (PROPOSAL_CURRENT, "s", "the proposal, 5 s writes (operations only)"),
        (PROPOSAL_BATCHED, "^", "the proposal, 60 s batches (operations only)"),
    ):
        ax.plot(
            list(figures), list(figures.values()), marker, color="grey", mfc="none", label=label
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent sessions (log)")
    ax.set_ylabel("USD per month (log)")
    ax.yaxis.set_major_formatter(dollars)
    ax.set_title("total monthly cost")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    for ax, name in zip(axes[1:], PATHS, strict=True):
        totals = [c.total for c in curves[name]]
        ax.stackplot(
            SESSIONS_GRID,
            [
                [c.line(key).monthly_usd / t for c, t in zip(curves[name], totals, strict=True)]
                for key in keys
            ],
            labels=[LINE_LABELS[key] for key in keys],
            colors=[COLORS[key] for key in keys],
            alpha=0.9,
        )
        ax.set_xscale("log")
        ax.set_xlim(SESSIONS_GRID[0], SESSIONS_GRID[-1])
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        for s in SCALES:
            ax.axvline(s, color="black", ls=":", lw=0.8)
        length = (
            "one object per 5 s chunk"
            if name == "baseline"
            else f"{proof.object_seconds:g} s objects"
        )
        ax.set_title(f"{PATH_LABELS[name]} ({length}): each line's share")
        ax.set_xlabel("concurrent sessions (log); dotted: 200 / 20,000 / 2,000,000")
    axes[1].set_ylabel("share of the monthly bill")
    handles, labels = axes[2].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=9, frameon=False)
    fig.suptitle("Monthly cost against concurrent sessions\n" + subtitle, fontsize=11)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    first = directory / CHART_FILES[0]
    fig.savefig(first, dpi=110)
    plt.close(fig)

    # 2. audiosync's cost against AUDIOSYNC_OBJECT_SECONDS, one panel per scale
    fig, axes = plt.subplots(1, len(SCALES), figsize=(17, 6.2))
    for ax, sessions in zip(axes, SCALES, strict=True):
        sweep = object_seconds_sweep(proof, prices, model, sessions)
        xs = [seconds for seconds, _ in sweep]
        stack_keys = [key for key in keys if any(c.line(key).monthly_usd > 0 for _, c in sweep)]
        ax.stackplot(
            xs,
            [[c.line(key).monthly_usd for _, c in sweep] for key in stack_keys],
            labels=[LINE_LABELS[key] for key in stack_keys],
            colors=[COLORS[key] for key in stack_keys],
            alpha=0.85,
        )
        ax.plot(xs, [c.total for _, c in sweep], color="black", lw=1.5, label="audiosync total")
        baseline = monthly_cost("baseline", sessions, proof.rates["baseline"], prices, model)
        best_seconds, best_cost = optimum(sweep)
        held = round(effective_seconds(proof.rates["audiosync"], best_seconds))
        measured = monthly_cost("audiosync", sessions, proof.rates["audiosync"], prices, model)
        top = max(c.total for _, c in sweep) * 1.35
        ax.axvline(proof.object_seconds, color="black", ls=":", lw=1)
        ax.annotate(
            f"{proof.object_seconds:g} s, measured: {usd(measured.total)}",
            (proof.object_seconds, measured.total),
            textcoords="offset points",
            xytext=(8, 22),
            fontsize=8,
            arrowprops={"arrowstyle": "-", "lw": 0.6},
        )
        ax.plot([best_seconds], [best_cost.total], "o", color="black")
        ax.annotate(
            f"lowest modelled: {held} s, {usd(best_cost.total)}",
            (best_seconds, best_cost.total),
            textcoords="offset points",
            xytext=(0, 12),
            ha="right",
            fontsize=8,
        )
        verdict = (
            f"{proof.object_seconds:g} s is a stated trade, not the optimum:\n"
            f"{held} s would cost {(1 - best_cost.total / measured.total) * 100:.1f} % "
            f"less\nand hold up to {held} s of audio a session\nin Redis, not yet in GCS"
            if best_cost.total < measured.total - 0.005
            else f"{proof.object_seconds:g} s is the modelled optimum"
        )
        ax.text(
            0.03,
            0.97,
            verdict,
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85},
        )
        ax.set_ylim(0, top)
        ax.set_xscale("log")
        ax.set_xlim(xs[0], xs[-1])
        ticks = [30, 60, 120, 300, 600, 900]
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("AUDIOSYNC_OBJECT_SECONDS (= the max age), s (log)")
        ax.set_title(f"{sessions:,} sessions (5 s baseline: {usd(baseline.total)} a month)")
        ax.yaxis.set_major_formatter(dollars)
        ax.grid(True, alpha=0.3)
        memory_ax = ax.twinx()
        memory_ax.plot(
            xs,
            [
                redis_plan(
                    sessions,
                    rates_at_object_seconds(
                        proof.rates["audiosync"], proof.object_seconds, seconds, proof.chunk_seconds
                    ),
                    prices,
                    model,
                ).gb_peak
                for seconds in xs
            ],
            color="#2ca02c",
            ls="--",
            lw=1.4,
            label="Redis memory at the peak, GB (right axis): audio not yet in GCS",
        )
        memory_ax.set_ylim(bottom=0)
        memory_ax.set_ylabel("GB held in Redis at the peak", color="#2ca02c", fontsize=8)
        memory_ax.tick_params(axis="y", labelcolor="#2ca02c", labelsize=8)
    axes[0].set_ylabel("audiosync, USD per month (lines stacked)")
    handles, labels = axes[-1].get_legend_handles_labels()
    more, more_labels = memory_ax.get_legend_handles_labels()
    fig.legend(
        handles + more, labels + more_labels, loc="lower center", ncol=4, fontsize=9, frameon=False
    )
    fig.suptitle(
        "audiosync's monthly cost against the object length: modelled from the proof at "
        f"{proof.object_seconds:g} s (requests and objects 1/length, Redis memory x length, "
        f"objects capped at {BATCH_MAX_BYTES:,} bytes)\n" + subtitle,
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    second = directory / CHART_FILES[1]
    fig.savefig(second, dpi=110)
    plt.close(fig)
    return [first, second]


# --- command line ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cost", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--proof", type=Path, default=DEFAULT_PROOF, help="a proof result (JSON)")
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES, help="the price file (TOML)")
    parser.add_argument(
        "--markdown",
        type=Path,
        action="append",
        default=[],
        help="write the report (Markdown) here; a file with <!-- bench.cost:begin NAME --> / "
        "<!-- bench.cost:end NAME --> blocks (report, headline) gets only those replaced "
        "(repeatable: docs/COST.md and README.md)",
    )
    parser.add_argument("--json", type=Path, help="write the figures (JSON) here")
    parser.add_argument("--charts", type=Path, help="write the two PNG charts into this folder")
    parser.add_argument(
        "--retention-months",
        type=float,
        default=Model.retention_months,
        help="months each object is kept (storage at its steady state)",
    )
    parser.add_argument(
        "--duty",
        type=float,
        default=Model.duty,
        help="share of the month a session is live (1: 24/7)",
    )
    parser.add_argument("--redis-replicas", type=int, default=Model.redis_replicas)
    parser.add_argument("--redis-core-load", type=float, default=Model.redis_core_load)
    parser.add_argument("--cpu-utilisation", type=float, default=Model.cpu_utilisation)
    parser.add_argument("--gib-per-vcpu", type=float, default=Model.gib_per_vcpu)
    parser.add_argument(
        "--no-spool", action="store_true", help="audiosync without the Filestore spool"
    )
    parser.add_argument("--spool-outage-hours", type=float, default=Model.spool_outage_hours)
    return parser


def model_from_args(args: argparse.Namespace) -> Model:
    if not 0 < args.duty <= 1:
        raise SystemExit("--duty must be in (0, 1]")
    if args.retention_months <= 0:
        raise SystemExit("--retention-months must be positive")
    return Model(
        retention_months=args.retention_months,
        duty=args.duty,
        redis_replicas=args.redis_replicas,
        redis_core_load=args.redis_core_load,
        cpu_utilisation=args.cpu_utilisation,
        gib_per_vcpu=args.gib_per_vcpu,
        spool=not args.no_spool,
        spool_outage_hours=args.spool_outage_hours,
    )


def main(argv: Sequence[str] | None = None, out: Callable[[str], object] = print) -> int:
    args = build_parser().parse_args(argv)
    if not args.proof.exists():
        out(
            f"no proof result at {args.proof}: "
            f"run `python -m bench.proof --json {args.proof}` first"
        )
        return 2
    proof = load_proof(args.proof)
    prices = load_prices(args.prices)
    model = model_from_args(args)
    costs = report_costs(proof, prices, model)
    markdown = render_markdown(proof, prices, model, costs)
    blocks = {
        "report": markdown,
        "headline": headline(proof, prices, model, costs),
        "proof": proof_headline(proof),
    }
    for target in args.markdown:
        filled = fill_blocks(target.read_text(), blocks) if target.exists() else None
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(markdown if filled is None else filled)
        out(f"wrote {shown(target)}" + (" (its bench.cost blocks)" if filled is not None else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(render_json(proof, prices, model, costs), indent=1) + "\n")
    if args.charts:
        for path in write_charts(proof, prices, model, args.charts):
            out(f"wrote {shown(path)}")
    if not (args.markdown or args.json):
        out(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
