"""PcmBuffer: a bytes object filled in place (C API through ctypes), exact and safe."""

from __future__ import annotations

import gc
import random
import sys
import tracemalloc

import pytest

from backend_hooks.read import pcm_buffer
from backend_hooks.read.pcm_buffer import PcmBuffer


def blocks(seed: int, count: int) -> list[bytes | bytearray | memoryview]:
    rng = random.Random(seed)
    out: list[bytes | bytearray | memoryview] = []
    for i in range(count):
        data = rng.randbytes(rng.randrange(0, 5000))
        kinds: tuple[bytes | bytearray | memoryview, ...] = (
            data,
            bytearray(data),
            memoryview(data),
        )
        out.append(kinds[i % 3])
    return out


@pytest.mark.parametrize("hint_factor", [0.0, 0.5, 1.0, 1.0001, 3.0])
def test_the_result_is_exactly_what_was_written_whatever_the_hint(hint_factor: float) -> None:
    parts = blocks(int(hint_factor * 10), 60)
    want = b"".join(bytes(p) for p in parts)
    with PcmBuffer(int(len(want) * hint_factor)) as buffer:
        for part in parts:
            buffer.write(part)
        got = buffer.finish()
    assert type(got) is bytes and got == want and len(got) == len(want)
    assert hash(got) == hash(want)  # a normal bytes object: hashable, comparable
    assert got[:10] + got[-10:] == want[:10] + want[-10:]


def test_python_holds_the_only_reference_and_frees_it() -> None:
    buffer = PcmBuffer(16)
    buffer.write(b"abcd" * 8)
    got = buffer.finish()
    assert sys.getrefcount(got) == 2  # ``got`` and getrefcount's argument: no leak
    with pytest.raises(ValueError, match="finished"):
        buffer.write(b"x")
    buffer.close()  # after finish: nothing to free, no double free
    del got
    gc.collect()


def test_closing_unfinished_frees_it_and_is_idempotent() -> None:
    tracemalloc.start()  # traces PyBytes allocations (PyObject_Malloc), ours included
    try:
        for _ in range(100):  # a double free would crash; a leak is 1 MiB each
            buffer = PcmBuffer(1 << 20)
            buffer.write(b"\1" * 1000)
            buffer.close()
            buffer.close()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak >= 1 << 20  # the buffers were traced: the check below can see a leak
    assert current < 4 << 20, f"{current} bytes still held after 100 closed 1 MiB buffers"


def test_an_empty_buffer_gives_empty_bytes() -> None:
    with PcmBuffer(100) as buffer:
        assert buffer.finish() == b""


def test_a_negative_hint_is_refused() -> None:
    with pytest.raises(ValueError, match="size_hint"):
        PcmBuffer(-1)


def test_the_fallback_off_cpython_gives_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcm_buffer, "_CPYTHON", False)
    parts = blocks(7, 30)
    with PcmBuffer(10) as buffer:
        for part in parts:
            buffer.write(part)
        assert buffer.finish() == b"".join(bytes(p) for p in parts)
