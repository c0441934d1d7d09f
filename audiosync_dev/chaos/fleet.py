"""The processes the run starts besides the servers: the celery workers (killed and
replaced) and the beat, and the count of lines in their logs."""

from __future__ import annotations

import contextlib
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from audiosync_dev import processes

WORKER_STOP_SECONDS = 15.0


class Fleet:
    """The celery workers and the beat; every process it started is stopped by ``stop``."""

    def __init__(self, env: dict[str, str], workdir: Path, concurrency: int) -> None:
        self.env = env
        self.workdir = workdir
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._workers: list[processes.CeleryProcess] = []
        self._beat: processes.CeleryProcess | None = None
        self._started = 0

    def _name(self) -> str:
        with self._lock:
            self._started += 1
            return f"w{self._started}"

    def add_worker(self) -> processes.CeleryProcess:
        worker = processes.worker(
            self.env, self.workdir, beat=False, name=self._name(), concurrency=self.concurrency
        )
        with self._lock:
            self._workers.append(worker)
        return worker

    def start(self, workers: int) -> None:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for future in [pool.submit(self.add_worker) for _ in range(workers)]:
                future.result()
        self._beat = processes.beat(self.env, self.workdir)

    def running(self) -> list[processes.CeleryProcess]:
        with self._lock:
            return [w for w in self._workers if w.running()]

    def owner_of(
        self, address: tuple[str, int], server_port: int
    ) -> tuple[processes.CeleryProcess, int] | None:
        """The running worker, and the process of its group, that holds the TCP socket
        from ``address`` to ``server_port`` (Linux /proc): the sender of a request the
        proxy is holding. Both ends count: the kernel gives one local port to connections
        to different servers (a worker's Redis socket can share the sender's port)."""
        local_hex, remote_hex = f":{address[1]:04X}", f":{server_port:04X}"
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as f:
                for line in list(f)[1:]:
                    cols = line.split()
                    if cols[1].endswith(local_hex) and cols[2].endswith(remote_hex):
                        inodes.add(f"socket:[{cols[9]}]")
        for worker in self.running():
            for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
                try:
                    if os.getpgid(pid) != worker.pid:
                        continue
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                            return worker, pid
        return None

    def replace_killed(self, victim: processes.CeleryProcess) -> tuple[str, str]:
        """Forget a worker killed already and start a replacement; (killed, started)."""
        with self._lock:
            self._workers.remove(victim)
        return victim.name, self.add_worker().name

    def kill_one(self, rng: random.Random) -> tuple[str, str]:
        """SIGKILL a random worker and start a replacement; (killed, started) names."""
        candidates = self.running()
        if not candidates:
            raise RuntimeError("no running worker to kill")
        victim = rng.choice(candidates)
        victim.kill()
        with self._lock:
            self._workers.remove(victim)
        return victim.name, self.add_worker().name

    def stop(self) -> None:
        with self._lock:
            everything = [*self._workers, *([self._beat] if self._beat else [])]
            self._workers, self._beat = [], None
        if not everything:
            return
        with ThreadPoolExecutor(len(everything)) as pool:
            list(pool.map(lambda p: p.stop(WORKER_STOP_SECONDS), everything))


def count_in_logs(workdir: Path, text: str) -> int:
    """How often ``text`` appears in the worker logs of the run (killed workers' too)."""
    return sum(
        log.read_text(errors="replace").count(text)
        for log in workdir.glob("*.log")
        if log.name.startswith("w")
    )
