"""The demo's Ctrl-C is noted when it lands and acted on at the demo's next step.

Python's own SIGINT handling raises KeyboardInterrupt wherever the main thread is; landing
in a finalizer, it is printed as "Exception ignored" and lost, and the demo ran on and
exited 0 (seen with the demo's 20 sessions)."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import pytest

from audiosync_dev import demo


class _SignalledWhenCollected:
    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs here, inside the finalizer


def test_python_loses_a_ctrl_c_that_lands_in_a_finalizer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the demo's handler is for: with Python's own handler the interrupt is reported
    as unraisable and gone, nothing is raised to the code that runs on."""
    lost: list[type[BaseException] | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: lost.append(u.exc_type))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _SignalledWhenCollected()  # collected at once
        gc.collect()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert lost == [KeyboardInterrupt]


def test_a_ctrl_c_that_lands_in_a_finalizer_stops_the_demo_at_its_next_step() -> None:
    ctrl_c = demo.CtrlC()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with ctrl_c.installed():
            assert signal.getsignal(signal.SIGINT) == ctrl_c.handle
            ctrl_c.check()  # not pressed: goes on
            _SignalledWhenCollected()
            with pytest.raises(demo.Interrupted):
                ctrl_c.check()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_demo_started_with_ctrl_c_ignored_leaves_it_ignored() -> None:
    """A background job of a shell without job control starts with SIGINT ignored: the
    terminal's Ctrl-C is not for it (Python leaves it ignored too)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with demo.CtrlC().installed():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_second_ctrl_c_interrupts_at_once() -> None:
    ctrl_c = demo.CtrlC()
    ctrl_c.handle(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        ctrl_c.handle(signal.SIGINT, None)
