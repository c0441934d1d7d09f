"""Telling running flushes that their worker is shutting down, so they hand back.

Celery runs flushes in pool processes forked from the worker's main process. On SIGTERM
(warm shutdown) or SIGQUIT (cold, or SIGTERM with ``REMAP_SIGTERM=SIGQUIT``: soft
shutdown within ``worker_soft_shutdown_timeout``) only the main process is signalled.
Once the worker is ready, this module puts a handler in front of Celery's for SIGTERM,
SIGQUIT and SIGINT that first sets one byte of shared memory, which every pool process
inherited at its fork, and then runs Celery's handler. (Celery's own
``worker_shutting_down`` signal also sets it, as a fallback, but in a soft shutdown it is
sent only after the soft-shutdown wait, too late to help.) A flush looks at it before
each upload: once it is set, the flush hands its session back (due now, lease released,
its recorded plan left for whoever takes the session next) instead of starting another
upload. A worker therefore stops within one upload (at most half of
``AUDIOSYNC_LEASE_SECONDS``) of the signal, and the session is taken over at once rather
than when the lease runs out.

The flag is a lock-free shared byte, not a ``multiprocessing.Event``: a pool process
SIGKILLed while it held the event's lock would leave the main process's signal handler
blocked on that lock forever.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from types import FrameType
from typing import Any

from celery import signals

_flag: Any = multiprocessing.RawValue(ctypes.c_byte, 0)  # created before the pool forks


def stop_requested() -> bool:
    """Whether this worker is shutting down (read in pool processes, before each upload)."""
    return bool(_flag.value)


def request_stop() -> None:
    _flag.value = 1


def clear() -> None:
    """Back to running (for tests that shut down in-process)."""
    _flag.value = 0


_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)


def _chained(previous: Any, main_pid: int) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() == main_pid:  # a pool process forked later inherits this handler
            request_stop()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _on_worker_ready(**_: object) -> None:  # main process, after Celery set its handlers
    for signum in _SIGNALS:
        signal.signal(signum, _chained(signal.getsignal(signum), os.getpid()))


@signals.worker_shutting_down.connect  # type: ignore[untyped-decorator]
def _on_worker_shutting_down(**_: object) -> None:  # main process
    request_stop()
