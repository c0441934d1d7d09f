"""A ``bytes`` object filled in place: the in-memory reader's output without a copy.

``download_audio_chunks_and_merge`` returns ``bytes`` (what the backend's code, and e.g. a
Starlette ``Response``, expect), but the merged PCM arrives block by block and its final
length is known only at the end. Filling a ``bytearray`` and converting it copies the
whole output (peak twice the output); this fills one new ``bytes`` object instead, the way C
code builds one, through CPython's C API (``ctypes.pythonapi``):

- ``PyBytes_FromStringAndSize(NULL, n)``: a new bytes object of ``n`` uninitialised bytes,
  held here as a raw pointer, so no Python code can see it (or hash it) while it is filled;
- ``PyBytes_AsString``: where its bytes are; blocks are copied there with ``memmove``;
- ``_PyBytes_Resize``: the documented way to grow or shrink a bytes object that is being
  built (its reference count must be one: it is, nothing else holds it);
- ``finish`` hands the reference over to Python (``ctypes.py_object``) and forgets it.

On another interpreter (``sys.implementation.name != "cpython"``) it falls back to a
``bytearray`` and one copy at the end. ``close`` (or leaving the ``with`` block) without
``finish`` frees what was built.
"""

from __future__ import annotations

import ctypes
import sys
from types import TracebackType

_CPYTHON = sys.implementation.name == "cpython"
if _CPYTHON:
    _api = ctypes.pythonapi
    _new = _api.PyBytes_FromStringAndSize
    _new.argtypes, _new.restype = [ctypes.c_void_p, ctypes.c_ssize_t], ctypes.c_void_p
    _data = _api.PyBytes_AsString
    _data.argtypes, _data.restype = [ctypes.c_void_p], ctypes.c_void_p
    _resize = _api._PyBytes_Resize
    _resize.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_ssize_t]
    _resize.restype = ctypes.c_int
    _decref = _api.Py_DecRef
    _decref.argtypes, _decref.restype = [ctypes.c_void_p], None


def _address(block: bytes | bytearray | memoryview) -> bytes | ctypes.Array[ctypes.c_char]:
    """What ``memmove`` copies from: ``bytes`` as they are, a writable buffer in place, a
    read-only view copied once."""
    if isinstance(block, bytes):
        return block
    size = len(block) if isinstance(block, bytearray) else block.nbytes
    kind = ctypes.c_char * size
    if isinstance(block, memoryview) and block.readonly:
        return kind.from_buffer_copy(block)
    return kind.from_buffer(block)


class PcmBuffer:
    """``size_hint`` bytes to start with; ``write`` appends, growing when it must (by at
    least half, like a list); ``finish`` returns the ``bytes`` of exactly what was written."""

    def __init__(self, size_hint: int) -> None:
        if size_hint < 0:
            raise ValueError(f"size_hint must be >= 0, got {size_hint}")
        self.length = 0
        self._capacity = size_hint
        self._fallback: bytearray | None = None
        self._object: int | None = None  # the bytes object being built (a PyObject *)
        if not _CPYTHON:
            self._fallback = bytearray(size_hint)
            return
        pointer = _new(None, size_hint)
        if not pointer:
            raise MemoryError(f"cannot allocate {size_hint} bytes for the merged audio")
        self._object = pointer

    def __enter__(self) -> PcmBuffer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _resize(self, size: int) -> None:
        holder = ctypes.c_void_p(self._object)
        self._object = None  # on failure _PyBytes_Resize has freed it and set NULL
        if _resize(ctypes.byref(holder), size) != 0 or not holder.value:
            raise MemoryError(f"cannot resize the merged audio to {size} bytes")
        self._object, self._capacity = holder.value, size

    def write(self, block: bytes | bytearray | memoryview) -> None:
        size = len(block)
        end = self.length + size
        if self._fallback is not None:
            self._fallback[self.length : end] = block
            self.length = end
            return
        if self._object is None:
            raise ValueError("the buffer is finished or closed")
        if end > self._capacity:
            self._resize(max(end, self._capacity + self._capacity // 2))
        if size:
            ctypes.memmove(_data(self._object) + self.length, _address(block), size)
        self.length = end

    def finish(self) -> bytes:
        """The bytes written, as one ``bytes`` object; the buffer is empty afterwards."""
        if self._fallback is not None:
            out = bytes(self._fallback[: self.length])  # not CPython: one copy
            self._fallback = None
            return out
        if self._object is None:
            raise ValueError("the buffer is finished or closed")
        if self.length != self._capacity:
            self._resize(self.length)
        pointer = self._object
        self._object = None
        result = ctypes.cast(pointer, ctypes.py_object).value  # a new reference ...
        _decref(pointer)  # ... and ours dropped: Python holds the only one
        assert isinstance(result, bytes)
        return result

    def close(self) -> None:
        """Free what was built unless it was handed out (idempotent)."""
        self._fallback = None
        if self._object is not None:
            pointer, self._object = self._object, None
            _decref(pointer)
