"""The pusher's local disk spool: where chunks wait while Redis is away (``AUDIOSYNC_SPOOL_DIR``).

One file per stream entry (backend_hooks/pusher/spool_format.py), in a directory of its own per
pusher process (its *owner* directory)::

    <AUDIOSYNC_SPOOL_DIR>/<owner>/<session>.<n>.open       being written
                                  <session>.<n>.ready      durable: fsynced, renamed, dir fsynced
                                  <session>.<n>.uploading  being appended to Redis
                                  <session>.<n>.done       appended; removed next
                         <owner>/lease                     touched every second by its owner
                         <owner>/.lock                     flock held by its owner while it lives
    <AUDIOSYNC_SPOOL_DIR>/.<owner>/                        an owner making its directory (renamed
                                                           into place once locked and leased)

An owner's name is ``<host>-<pid>-<8 hex digits>`` (``is_owner_directory``; the host name
with anything but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``). Anything
else under the root (``lost+found`` at the root of a volume, an operator's ``backups/``)
is not the spool's: never adopted, drained or counted, whatever it holds.

Every state change is an atomic ``rename``. An owner is *dead* when its lease is older
than ``AUDIOSYNC_SPOOL_LEASE_SECONDS`` and its ``.lock`` is not held (the kernel drops a
dead process's flock, so a process that is only slow is never taken over on a local
disk). A live process adopts a dead owner's directory by renaming it to
``<dead>~<adopter>`` (one adopter wins), then appends its files session by session in
``n`` order: ``.ready``, ``.uploading`` (its append may or may not have landed; the
stream's append mark makes a second append add nothing) and whole ``.open`` files; a torn
``.open`` file (the process died mid-write, before the chunk was durable anywhere) and any
file that does not decode go to ``<AUDIOSYNC_SPOOL_DIR>/quarantine/`` with a log line.

One entry the process cannot read, list or probe never stops a drain: an entry file that
is not a regular file (a FIFO, a directory, a symlink) or that it may not read
(``EACCES``, ``EIO``) is quarantined like a file that does not decode; an owner directory
whose lease or lock cannot be probed (another user's, ``ENOLCK`` on NFS) or that cannot be
listed is skipped, never adopted (its owner may live). Each is logged with its reason and
counted (``Spool.skipped``, the ``on_skip`` hook); the other entries go on. Errors of the
process or of the volume as a whole (``EMFILE``, ``ENOSPC``, the root itself unreadable)
still end the drain, retried later.

The spool holds at most ``AUDIOSYNC_SPOOL_MAX_BYTES`` (every owner's files together, as
this process counts them): a write beyond it raises ``SpoolFullError``.

This module owns the spool's files; it never talks to Redis (the caller passes an
``append`` function).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from backend_hooks.contract.errors import ConfigError, FormatError, SpoolFullError
from backend_hooks.pusher import spool_format
from backend_hooks.pusher.spool_format import SpoolRecord

log = logging.getLogger("backend_hooks.spool")

OPEN, READY, UPLOADING, DONE = ".open", ".ready", ".uploading", ".done"
QUARANTINE_DIR = "quarantine"
LEASE_FILE = "lease"
LOCK_FILE = ".lock"
STARTING = "."  # .<owner>: a process making its directory (no entry file yet)
ADOPTED = "~"  # <dead owner>~<adopter>: the adopter's liveness is the directory's
_OWNER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*-[0-9]+-[0-9a-f]{8}")
_NOT_IN_HOST = re.compile(r"[^A-Za-z0-9._-]|^\.")


#: Errors of one entry (a file or a directory) rather than of the process or the volume: the
#: entry is quarantined or skipped and the drain goes on. Anything else (EMFILE, ENFILE,
#: ENOMEM, ENOSPC, ESTALE, ...) ends the drain; it is retried later.
_ENTRY_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EIO,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ELOOP,
        errno.ENXIO,
        errno.EINVAL,
        errno.ENOLCK,
        errno.EOPNOTSUPP,
    }
)
#: Reasons an entry was skipped or quarantined (``Spool.skipped``, the drainer's
#: ``audiosync_spool_skipped_entries_total{reason}``).
UNREADABLE_FILE = "unreadable_file"
UNLISTABLE_DIRECTORY = "unlistable_directory"
UNPROBEABLE_OWNER = "unprobeable_owner"
SKIP_REASONS = (UNREADABLE_FILE, UNLISTABLE_DIRECTORY, UNPROBEABLE_OWNER)


def is_entry_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one entry's own failure (quarantine or skip it, go on)."""
    return isinstance(exc, OSError) and exc.errno in _ENTRY_ERRNOS


class EntrySkipped(Exception):
    """A session's entry could be neither read nor quarantined: its later entries wait
    (their order), the other sessions go on. ``drained``: its entries appended before."""

    def __init__(self, message: str, drained: int) -> None:
        super().__init__(message)
        self.drained = drained


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file (never a symlink, a FIFO, whose open
    would wait for a writer, a device or a directory); ``OSError`` otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def new_owner_name() -> str:
    """A name for this process's owner directory: ``<host>-<pid>-<8 hex digits>``."""
    host = _NOT_IN_HOST.sub("_", socket.gethostname()) or "_"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_owner_directory(name: str) -> bool:
    """Whether ``name`` is a pusher's owner directory, or one adopted (``<dead>~<adopter>``)."""
    return all(_OWNER_NAME.fullmatch(part) for part in name.split(ADOPTED, 1))


@dataclass(frozen=True)
class SpoolStats:
    files: int
    bytes: int
    max_bytes: int
    full_refusals: int
    adopted_owners: int
    quarantined_files: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_name(session_id: str, n: int, state: str) -> str:
    return f"{session_id}.{n:012d}{state}"


def _parse_name(name: str) -> tuple[str, int, str] | None:
    stem, dot, state = name.rpartition(".")
    session_id, dot2, number = stem.rpartition(".")
    if (
        not dot
        or not dot2
        or not number.isdigit()
        or f".{state}"
        not in (
            OPEN,
            READY,
            UPLOADING,
            DONE,
        )
    ):
        return None
    return session_id, int(number), f".{state}"


class Spool:
    """One process's spool: its owner directory under ``root``, and adoption of dead ones."""

    def __init__(
        self,
        root: Path | str,
        *,
        max_bytes: int,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.lease_seconds = lease_seconds
        self._clock = clock
        self.owner = new_owner_name()
        self.directory = self.root / self.owner
        # Made under a hidden name with its lock held and its lease touched, then renamed
        # into place: no other process ever sees this owner without a live lease (it could
        # take the directory of a process that is still starting).
        starting = self.root / f"{STARTING}{self.owner}"
        try:
            starting.mkdir(parents=True, exist_ok=False)
            (self.root / QUARANTINE_DIR).mkdir(exist_ok=True)
            self._lock_fd = os.open(starting / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            (starting / LEASE_FILE).touch()
            os.rename(starting, self.directory)
            _fsync_dir(self.root)
        except OSError as exc:
            raise ConfigError(
                f"AUDIOSYNC_SPOOL_DIR {self.root} cannot hold a spool ({exc}); give the pusher "
                "a writable directory on a local filesystem, or unset it to run without one"
            ) from exc
        self._counter_lock = threading.Lock()
        #: Entries skipped or quarantined because they could not be read, listed or
        #: probed, by reason (SKIP_REASONS); ``on_skip`` is called with each reason too.
        self.skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)
        self.on_skip: Callable[[str], None] | None = None
        self._files, self._bytes = self._scan()
        self.full_refusals = 0
        self.adopted_owners = 0
        self.quarantined_files = 0

    # -- writing (the session's sender thread) ------------------------------------------
    def write(self, record: SpoolRecord) -> Path:
        """Write ``record`` durably; its ``.ready`` path. ``SpoolFullError`` when full."""
        data = spool_format.encode(record)
        with self._counter_lock:
            if self._bytes + len(data) > self.max_bytes:
                self.full_refusals += 1
                raise SpoolFullError(
                    f"the spool {self.root} holds {self._bytes} of AUDIOSYNC_SPOOL_MAX_BYTES="
                    f"{self.max_bytes} bytes; entry {record.n} of session {record.session_id} "
                    "was not spooled (raise the limit or bring Redis back)"
                )
            self._bytes += len(data)
            self._files += 1
        path = self.directory / _file_name(record.session_id, record.n, OPEN)
        try:
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            ready = path.with_name(_file_name(record.session_id, record.n, READY))
            os.rename(path, ready)
            _fsync_dir(self.directory)
        except OSError:
            with self._counter_lock:
                self._bytes -= len(data)
                self._files -= 1
            path.unlink(missing_ok=True)
            raise
        return ready

    # -- draining -----------------------------------------------------------------------
    def claim(self, ready: Path) -> tuple[Path, SpoolRecord]:
        """Rename a ``.ready`` (or adopted ``.open``/``.uploading``) file to ``.uploading``
        and read it; ``FormatError`` if it does not decode (the caller quarantines it)."""
        session_id, n, state = _parse_name(ready.name) or ("", 0, "")
        uploading = ready.with_name(_file_name(session_id, n, UPLOADING))
        if state != UPLOADING:
            try:
                os.rename(ready, uploading)
            except FileNotFoundError:
                # Claimed by an earlier drain of ours whose read failed (EMFILE, EIO):
                # still ours, in its place in the order. Gone too: another process has it.
                if not uploading.exists():
                    raise
        return uploading, spool_format.decode(_read_regular_file(uploading))

    def unclaim(self, uploading: Path) -> None:
        """Its append failed: back to ``.ready``, appended again later."""
        session_id, n, _ = _parse_name(uploading.name) or ("", 0, "")
        os.rename(uploading, uploading.with_name(_file_name(session_id, n, READY)))

    def done(self, uploading: Path) -> None:
        """Appended: ``.done``, then removed."""
        session_id, n, _ = _parse_name(uploading.name) or ("", 0, "")
        size = uploading.stat().st_size
        done = uploading.with_name(_file_name(session_id, n, DONE))
        os.rename(uploading, done)
        done.unlink()
        with self._counter_lock:
            self._bytes = max(0, self._bytes - size)
            self._files = max(0, self._files - 1)

    def quarantine(self, path: Path, reason: str) -> None:
        target = self.root / QUARANTINE_DIR / f"{path.parent.name}.{path.name}"
        size = path.lstat().st_size if os.path.lexists(path) else 0
        os.replace(path, target)
        target.with_name(target.name + ".reason").write_text(reason + "\n")
        with self._counter_lock:
            self._bytes = max(0, self._bytes - size)
            self._files = max(0, self._files - 1)
            self.quarantined_files += 1
        log.error("spool file %s quarantined in %s: %s", path, target.parent, reason)

    def skip(self, reason: str, path: Path, detail: object) -> None:
        """Log and count an entry skipped (or quarantined) for ``reason``."""
        with self._counter_lock:
            self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if self.on_skip is not None:
            self.on_skip(reason)
        log.error("spool: %s skipped (%s): %s", path, reason, detail)

    def quarantine_unreadable(self, path: Path, exc: OSError) -> bool:
        """Quarantine an entry file that cannot be read (``exc``); False if it cannot be
        moved either (it stays where it is)."""
        self.skip(UNREADABLE_FILE, path, exc)
        try:
            self.quarantine(path, f"cannot be read: {exc}")
        except OSError as moved:
            log.error("spool: %s cannot be quarantined either: %s", path, moved)
            return False
        return True

    # -- liveness and adoption ----------------------------------------------------------
    def heartbeat(self) -> None:
        os.utime(self.directory / LEASE_FILE)

    def _alive(self, owner: str) -> bool:
        directory = self.root / owner
        if owner == self.owner:
            return True
        try:
            lease_age = self._clock() - (directory / LEASE_FILE).stat().st_mtime
        except FileNotFoundError:
            return False
        if lease_age < self.lease_seconds:
            return True
        try:
            fd = os.open(directory / LOCK_FILE, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True  # its process lives (only slow): never take its files
        finally:
            os.close(fd)  # closing drops our probe lock
        return False

    def dead_directories(self) -> list[Path]:
        """Owner directories (and adopted ones) whose owner is dead. ``.<owner>`` (empty
        by construction) and what is not an owner's (``is_owner_directory``) are not."""
        out = []
        for child in owner_directories(self.root):
            owner = child.name.rpartition(ADOPTED)[2]
            if child == self.directory:
                continue
            try:
                # An adopted directory's liveness is its adopter's; its lease and lock are
                # in the adopter's own directory.
                alive = self._alive(owner)
            except OSError as exc:
                if not is_entry_error(exc):
                    raise
                self.skip(UNPROBEABLE_OWNER, child, f"its owner cannot be probed: {exc}")
                continue
            if not alive:
                out.append(child)
        return out

    def adopted_directories(self) -> list[Path]:
        """Directories this process adopted and has not emptied yet (an append failed)."""
        return [
            child
            for child in owner_directories(self.root)
            if child.name.rpartition(ADOPTED)[2] == self.owner and child != self.directory
        ]

    def adopt(self, directory: Path) -> Path | None:
        """Take a dead owner's directory; its new path, or None if another process won."""
        base = directory.name.partition(ADOPTED)[0]
        target = self.root / f"{base}{ADOPTED}{self.owner}"
        try:
            os.rename(directory, target)
        except (FileNotFoundError, OSError):
            return None
        _fsync_dir(self.root)
        files, size = self._scan()  # its files count from now on (recounted from disk)
        with self._counter_lock:
            self.adopted_owners += 1
            self._files, self._bytes = files, size
        log.warning("spool: adopted the files of dead owner %s", directory.name)
        return target

    def pending(self, directory: Path) -> dict[str, list[Path]]:
        """An adopted directory's entry files by session, in ``n`` order."""
        by_session: dict[str, list[tuple[int, Path]]] = {}
        for path in directory.iterdir():
            parsed = _parse_name(path.name)
            if parsed is None:
                continue
            session_id, n, state = parsed
            if state == DONE:
                path.unlink()
                continue
            by_session.setdefault(session_id, []).append((n, path))
        return {s: [p for _, p in sorted(files)] for s, files in by_session.items()}

    def remove_if_empty(self, directory: Path) -> bool:
        try:
            if any(_parse_name(p.name) is not None for p in directory.iterdir()):
                return False
        except OSError:
            return False
        for leftover in (LEASE_FILE, LOCK_FILE):
            (directory / leftover).unlink(missing_ok=True)
        try:
            directory.rmdir()
        except OSError:
            return False
        return True

    # -- accounting ---------------------------------------------------------------------
    def _scan(self) -> tuple[int, int]:
        """(files, bytes) of every owner's entry files, as on disk now."""
        files = total = 0
        for path in self._entry_files():
            try:
                total += path.lstat().st_size
                files += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                if not is_entry_error(exc):
                    raise
        return files, total

    def _entry_files(self) -> Iterator[Path]:
        for child in owner_directories(self.root):
            try:
                names = list(child.iterdir())
            except FileNotFoundError:
                continue  # adopted (renamed) by another process meanwhile
            except OSError as exc:
                if not is_entry_error(exc):
                    raise
                continue  # not ours to count (another user's): skipped when drained
            yield from (p for p in names if _parse_name(p.name) is not None)

    def stats(self) -> SpoolStats:
        with self._counter_lock:
            return SpoolStats(
                files=self._files,
                bytes=self._bytes,
                max_bytes=self.max_bytes,
                full_refusals=self.full_refusals,
                adopted_owners=self.adopted_owners,
                quarantined_files=self.quarantined_files,
            )

    def close(self) -> None:
        """Release the owner lock; an empty owner directory is removed."""
        self.remove_if_empty(self.directory)
        os.close(self._lock_fd)


AppendFn = Callable[[list[SpoolRecord]], None]


def drain_files(spool: Spool, files: list[Path], append: AppendFn, batch: int = 32) -> int:
    """Append one session's ``files`` in order, ``batch`` per call; returns how many.

    Stops at the first failed append (the files stay, ``.ready``) and raises its error.
    A file that does not decode is quarantined; the session's later files still go
    (their append numbers are higher, so the stream's mark does not skip them).
    """
    drained = 0
    pos = 0
    stuck: str | None = None
    while pos < len(files) and stuck is None:
        claimed: list[tuple[Path, SpoolRecord]] = []
        while pos < len(files) and len(claimed) < batch:
            path = files[pos]
            pos += 1
            uploading = path.with_name(path.name.rsplit(".", 1)[0] + UPLOADING)
            try:
                claimed.append(spool.claim(path))
            except FormatError as exc:
                spool.quarantine(uploading if os.path.lexists(uploading) else path, str(exc))
            except FileNotFoundError:
                continue  # taken by another process (it adopted first)
            except OSError as exc:  # a symlink (ELOOP), a FIFO, EACCES, EIO: this file's own
                if not is_entry_error(exc):
                    raise
                current = uploading if os.path.lexists(uploading) else path
                if not spool.quarantine_unreadable(current, exc):
                    stuck = f"{current} can be neither read nor quarantined: {exc}"
                    break
        if not claimed:
            continue
        try:
            append([record for _, record in claimed])
        except Exception:
            for uploading, _ in claimed:
                spool.unclaim(uploading)
            raise
        for uploading, _ in claimed:
            spool.done(uploading)
        drained += len(claimed)
    if stuck is not None:
        raise EntrySkipped(stuck, drained)
    return drained


def drain_dead_owners(
    spool: Spool,
    append: AppendFn,
    *,
    may_try: Callable[[], bool] = lambda: True,
    deadline: float | None = None,
    progress: Callable[[int], None] | None = None,
    batch: int = 32,
    refused_session: Callable[[BaseException], bool] = lambda exc: False,
) -> int:
    """Adopt every dead owner's directory and append its files, session by session in
    ``n`` order, after what is left of directories this process adopted earlier (their
    append failed); the caller runs one drain at a time per ``spool``. Returns the entries
    appended. Stops early (files kept) when ``may_try`` says no, at ``deadline``
    (monotonic), or at the first append that fails, unless ``refused_session`` says the
    failure is that session's own (Redis refused its key, not Redis away): then that
    session's files stay and the next session goes on, so one poisoned session does not
    hold back every directory behind it."""
    drained = 0
    ours = spool.adopted_directories()  # adopted earlier, an append failed: theirs first
    for directory in ours + spool.dead_directories():
        if not may_try():
            return drained
        adopted = directory if directory in ours else spool.adopt(directory)
        if adopted is None:
            continue
        try:
            sessions = spool.pending(adopted)
        except OSError as exc:
            if not is_entry_error(exc):
                raise
            spool.skip(UNLISTABLE_DIRECTORY, adopted, f"cannot be listed: {exc}")
            continue
        for files in sessions.values():
            if deadline is not None and time.monotonic() >= deadline:
                return drained
            try:
                count = drain_files(spool, files, append, batch)
            except EntrySkipped as exc:
                log.error("spool: the rest of %s stays in %s: %s", files[0].name, adopted.name, exc)
                drained += exc.drained
                continue
            except Exception as exc:
                if refused_session(exc):
                    log.warning(
                        "spool: %s stays in %s for a later drain: %s",
                        files[0].name,
                        adopted.name,
                        exc,
                    )
                    continue
                log.warning("spool: %s stays for a later drain: %s", adopted.name, exc)
                return drained
            drained += count
            if progress is not None:
                progress(count)
        spool.remove_if_empty(adopted)
    return drained


def owner_directories(root: Path | str) -> list[Path]:
    """The owner directories (adopted ones included) under a spool root, by name."""
    return [
        child
        for child in sorted(Path(root).iterdir())
        if is_owner_directory(child.name) and child.is_dir()
    ]


def count_files(root: Path | str) -> int:
    """Entry files under a spool root (every owner's; the quarantine and what is not an
    owner's directory excluded)."""
    return sum(count_files_of(child) for child in owner_directories(root))


def count_files_of(directory: Path) -> int:
    """Entry files in one owner directory; 0 if it is gone or cannot be listed (another
    user's, EIO: ``listing_error`` says why)."""
    try:
        return sum(1 for p in directory.iterdir() if _parse_name(p.name) is not None)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        if not is_entry_error(exc):
            raise
        return 0


def listing_error(directory: Path) -> OSError | None:
    """Why ``directory`` cannot be listed (an entry's own error), or None."""
    try:
        os.listdir(directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if not is_entry_error(exc):
            raise
        return exc
    return None


@dataclass(frozen=True)
class SpoolSurvey:
    """What waits under a spool root now, as the files on disk say."""

    files: int  # entry files of every owner (live or dead), the quarantine excluded
    bytes: int
    oldest_mtime: float | None  # the oldest entry file's modification time; None: no file
    quarantined_files: int


def survey(root: Path | str) -> SpoolSurvey:
    """Count the entry files under ``root``, their bytes and the oldest one's age stamp
    (one ``stat`` per file: the spool drainer's gauges, once per pass)."""
    files = total = 0
    oldest: float | None = None
    for directory in owner_directories(root):
        try:
            names = list(directory.iterdir())
        except FileNotFoundError:
            continue  # adopted (renamed) meanwhile: counted under its new name next time
        except OSError as exc:
            if not is_entry_error(exc):
                raise
            continue  # cannot be listed: the drain skips it, counted there
        for path in names:
            if _parse_name(path.name) is None:
                continue
            try:
                status = path.lstat()
            except FileNotFoundError:
                continue  # appended and removed meanwhile
            files += 1
            total += status.st_size
            oldest = status.st_mtime if oldest is None else min(oldest, status.st_mtime)
    quarantine = Path(root) / QUARANTINE_DIR
    quarantined = (
        sum(1 for p in quarantine.iterdir() if p.suffix != ".reason") if quarantine.is_dir() else 0
    )
    return SpoolSurvey(files, total, oldest, quarantined)
