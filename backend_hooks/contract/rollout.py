"""Rollout flags: which users go through audiosync, and which of them use the disk spool.

Pure policy, no I/O. A ``Rollout`` answers ``includes(uid)`` from three settings:

1. the deny list: a uid on it is out, whatever else says;
2. the allow list: a uid on it is in (canaries, staff, a user who asked);
3. the percentage: everyone else is in when their bucket is below ``percent`` * 100.

A uid's bucket is the first 8 bytes of SHA-256 of its UTF-8 bytes, big-endian, modulo
10,000 (``bucket``): the same uid lands in the same bucket in every process, pod and
release, so a user is either in or out, never flapping between the old path and the new
one; and raising the percentage only adds users (a user in at 5 % is in at 10 %).
The percentage has steps of 0.01 % (one bucket).

Both flags use the same bucket, so with the spool's percentage at or below audiosync's,
the users on the spool are a subset of the users on audiosync.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from backend_hooks.contract.errors import ConfigError, InvalidInputError
from backend_hooks.contract.ids import validate_id

BUCKETS = 10_000  # 0.01 % each


def bucket(uid: str) -> int:
    """The stable rollout bucket of ``uid``, in ``range(BUCKETS)``."""
    digest = hashlib.sha256(uid.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class Rollout:
    """Who is in: ``deny`` beats ``allow`` beats ``percent`` (0 to 100, steps of 0.01)."""

    percent: float
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ValueError(f"percent must be within 0..100, got {self.percent!r}")

    @property
    def threshold(self) -> int:
        """Buckets below this are in (0: nobody by percentage, ``BUCKETS``: everybody)."""
        return round(self.percent * BUCKETS / 100)

    def includes(self, uid: str) -> bool:
        """Whether ``uid`` is in; raises ``InvalidInputError`` for an id audiosync refuses."""
        validate_id(uid, "uid")
        if uid in self.deny:
            return False
        if uid in self.allow:
            return True
        return bucket(uid) < self.threshold

    @classmethod
    def parse(
        cls,
        *,
        percent: tuple[str, str | None],
        allow: tuple[str, str | None],
        deny: tuple[str, str | None],
    ) -> Rollout:
        """From the environment's text: each argument is ``(variable name, value)``; a bad
        value raises ``ConfigError`` naming its variable."""
        return cls(
            percent=parse_percent(*percent),
            allow=parse_uids(*allow),
            deny=parse_uids(*deny),
        )


def parse_percent(name: str, value: str | None) -> float:
    """A percentage from 0 to 100 in steps of 0.01 (one bucket)."""
    try:
        number = float(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a percentage from 0 to 100, got {value!r}") from None
    if not math.isfinite(number) or not 0 <= number <= 100:
        raise ConfigError(f"{name} must be a percentage from 0 to 100, got {value!r}")
    steps = number * BUCKETS / 100
    if abs(steps - round(steps)) > 1e-6:
        raise ConfigError(
            f"{name} has steps of 0.01 (one bucket of {BUCKETS}), got {value!r}; round it"
        )
    return number


def parse_uids(name: str, value: str | None) -> frozenset[str]:
    """Comma-separated uids (spaces around them and empty items are ignored), each a valid
    id (backend_hooks/contract/ids.py)."""
    uids = set()
    for item in (value or "").split(","):
        uid = item.strip()
        if not uid:
            continue
        try:
            uids.add(validate_id(uid, "uid"))
        except InvalidInputError as exc:
            raise ConfigError(f"{name}: {exc}; give comma-separated uids") from None
    return frozenset(uids)


NOBODY = Rollout(0.0)
EVERYBODY = Rollout(100.0)
