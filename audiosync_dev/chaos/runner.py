"""One chaos run from start to end (``run``): the servers, proxies and fleet started,
the push phase with the chaos thread, the drain, the audit and the verdict; every
process and server it starts is stopped before it returns."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from redis.cluster import RedisCluster

from audiosync_dev.chaos.actions import ChaosLog, run_chaos
from audiosync_dev.chaos.audit import audit_run, list_bucket, reencoder
from audiosync_dev.chaos.config import SECRET, ChaosConfig
from audiosync_dev.chaos.drain import wait_drained
from audiosync_dev.chaos.fleet import Fleet, count_in_logs
from audiosync_dev.chaos.plan import make_plans
from audiosync_dev.chaos.pushing import LiveRegistry, SessionPusher, push_thread, quiet_pusher_log
from audiosync_dev.chaos.schedule import chaos_schedule
from audiosync_dev.chaos.store import (
    host_port,
    pusher_cluster_client,
    sessions_by_node,
    store_client,
)
from audiosync_dev.chaos.verdict import Verdict, build_verdict
from audiosync_dev.faults import GcsFaultProxy, RedisClusterReplyDropProxies, RedisReplyDropProxy
from audiosync_dev.localstack import LocalStack, StackInfo
from backend_hooks import AudioSyncClient
from backend_hooks.adapters.redis_store import RedisClient
from backend_hooks.contract import envelope
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.settings import Settings


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _join_all(threads: list[threading.Thread], deadline: float) -> bool:
    """Join (in small steps, so Ctrl-C gets through) until ``deadline``; True if all ended."""
    for thread in threads:
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.5)
    return not any(t.is_alive() for t in threads)


def run(config: ChaosConfig, *, say: Callable[[str], None] = _stderr) -> Verdict:
    """One chaos run; every process and server it starts is stopped before it returns."""
    started = time.monotonic()

    def log(text: str) -> None:
        say(f"[{time.monotonic() - started:6.1f}s] {text}")

    own_workdir = config.workdir is None
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="audiosync-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(workdir=workdir / "stack", cluster=config.cluster)
    gcs_proxy: GcsFaultProxy | None = None
    redis_proxy: RedisReplyDropProxy | RedisClusterReplyDropProxies | None = None
    fleet: Fleet | None = None
    client: AudioSyncClient | None = None
    pusher_redis: RedisClient | None = None  # None: the pusher connects by its settings
    stop = threading.Event()
    threads: list[threading.Thread] = []
    passed = False
    try:
        info: StackInfo = stack.start()
        gcs_proxy = config.gcs_proxy(info.gcs_url).start()
        if config.cluster:
            # One proxy per node: a cluster client connects to every node it learns of.
            nodes = [host_port(url) for url in stack.cluster_node_urls.values()]
            redis_proxy = RedisClusterReplyDropProxies(
                nodes, drop_rate=config.drop_rate, seed=config.seed + 1
            ).start()
            pusher_redis = pusher_cluster_client(redis_proxy)
        else:
            redis_proxy = RedisReplyDropProxy(
                *host_port(info.redis_url), drop_rate=config.drop_rate, seed=config.seed + 1
            ).start()
        fleet_env = {
            **info.env(),
            "STORAGE_EMULATOR_HOST": gcs_proxy.url,
            "ENCRYPTION_SECRET": SECRET,
            "AUDIOSYNC_LEASE_SECONDS": f"{config.lease_seconds:g}",
            "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": f"{config.batch_max_age_seconds:g}",
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": f"{config.sweep_interval_seconds:g}",
        }
        pusher_env = {**fleet_env, "AUDIOSYNC_REDIS_URL": redis_proxy.url}
        if isinstance(redis_proxy, RedisClusterReplyDropProxies):
            ports = ", ".join(str(port) for _, port in redis_proxy.nodes)
            proxies = ", ".join(str(proxy.port) for proxy in redis_proxy.proxies)
            where = (
                f"a valkey cluster on ports {ports} (pusher via {proxies}), the broker "
                f"{info.redis_url}"
            )
        else:
            where = f"valkey {info.redis_url} (pusher via {redis_proxy.url})"
        log(
            f"stack up in {workdir}: {where}, fake-gcs-server {info.gcs_url} "
            f"(fleet via {gcs_proxy.url})"
        )
        fleet = Fleet(fleet_env, workdir, config.worker_concurrency)
        fleet.start(config.workers)
        log(f"{config.workers} workers and beat ready")

        r = store_client(info)
        settings = Settings.from_env(pusher_env)
        keys = envelope.UserKeys(SECRET.encode())
        registry = LiveRegistry()
        client = AudioSyncClient(settings, redis_client=pusher_redis)
        pushers = [
            SessionPusher(p, client, settings.chunk_seconds, config.speed, registry)
            for p in make_plans(config)
        ]
        pusher_errors: list[str] = []
        chaos = ChaosLog()
        phase_start = time.monotonic()
        push_deadline = phase_start + config.seconds + 120.0
        groups = [pushers[i :: config.push_threads] for i in range(config.push_threads)]
        threads = [
            threading.Thread(
                target=push_thread,
                args=(g, phase_start, push_deadline, stop, pusher_errors),
                name=f"chaos-push-{i}",
                daemon=True,
            )
            for i, g in enumerate(groups)
            if g
        ]
        chaos_thread = threading.Thread(
            target=run_chaos,
            args=(config, chaos_schedule(config)),
            kwargs={
                "phase_start": phase_start,
                "stop": stop,
                "fleet": fleet,
                "stack": stack,
                "r": r,
                "registry": registry,
                "keys": keys,
                "record": chaos,
                "say": log,
                "gcs_proxy": gcs_proxy,
            },
            name="chaos",
            daemon=True,
        )
        threads.append(chaos_thread)
        log(f"pushing {config.sessions} sessions for ~{config.seconds:.0f} s with chaos")
        with quiet_pusher_log() as deferred:
            for t in threads:
                t.start()
            if not _join_all(threads, push_deadline + 30.0):
                pusher_errors.append("push or chaos threads did not end in time")
                stop.set()
            client.close()
        push_seconds = time.monotonic() - phase_start
        log(
            f"pushing done in {push_seconds:.0f} s ({deferred.count} appends failed and were "
            "sent again with a later one); faults off, draining"
        )
        gcs_proxy.pause_faults()
        redis_proxy.set_drop_rate(0.0)
        drained, drain_seconds = wait_drained(r, config.drain_timeout)
        log("drained" if drained else f"NOT drained after {drain_seconds:.0f} s")
        fleet.stop()
        if not gcs_proxy.wait_idle(30.0):  # a stalled upload still in the proxy may land
            pusher_errors.append("the GCS proxy still had requests in flight after 30 s")
        log("fleet stopped; auditing")

        expected = {(e.session_id, e.seq): e for p in pushers for e in p.expected}
        by_node = None
        if isinstance(r, RedisCluster):
            shards = [p.session.redis_keys.shard for p in pushers if p.session is not None]
            by_node = sessions_by_node(r, stack.cluster_node_urls, shards)
        objects = list_bucket(info.gcs_url, info.bucket)
        audit = audit_run(
            expected,
            chaos.poison,
            objects,
            r,
            keys,
            chaos.duplicates,
            reencoder(lambda rate: ChunkEncoder.from_settings(rate, settings)),
        )
        chaos.lease_lost_lines = count_in_logs(workdir, "lost its lease")
        model = [m for p in pushers if p.done and p.session is not None for m in p.model_problems()]
        audit.model_problems = len(model)
        for m in model:
            audit.note(f"expected set: {m}")
        r.close()
        verdict = build_verdict(
            config,
            audit,
            gcs=gcs_proxy.stats,
            drops=redis_proxy.stats,
            chaos=chaos,
            pusher_errors=pusher_errors,
            drained=drained,
            drain_seconds=drain_seconds,
            push_seconds=push_seconds,
            total_seconds=time.monotonic() - started,
            pushes=sum(p.pushes for p in pushers),
            sessions_by_node=by_node,
            drops_by_node=(
                [p.stats for p in redis_proxy.proxies]
                if isinstance(redis_proxy, RedisClusterReplyDropProxies)
                else ()
            ),
        )
        passed = verdict.passed
        if not passed or config.keep_workdir or not own_workdir:
            verdict.workdir = workdir
            (workdir / "verdict.txt").write_text(
                verdict.render(problems=0)
                + "\n\nevery problem noted:\n"
                + "".join(f"- {p}\n" for p in verdict.problems)
            )
        return verdict
    finally:
        stop.set()
        _join_all(threads, time.monotonic() + 10.0)
        if client is not None:
            with contextlib.suppress(Exception):
                client.executor.shutdown(wait=False)
        if fleet is not None:
            fleet.stop()
        if pusher_redis is not None:
            with contextlib.suppress(Exception):
                pusher_redis.close()
        if redis_proxy is not None:
            redis_proxy.close()
        if gcs_proxy is not None:
            gcs_proxy.close()
        stack.stop()
        if own_workdir and passed and not config.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
