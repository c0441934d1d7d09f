"""``AudioSyncClient.from_env()`` is the pusher's readiness: a deployment that could not
open the sessions it will be asked for fails there, not socket by socket. (No server is
contacted: the Redis client connects on its first call.)"""

from __future__ import annotations

import pytest

from backend_hooks import AudioSyncClient, ConfigError

SECRET = "readiness-test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def pusher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENCRYPTION_SECRET", "ENCRYPTION_SECRET_PREVIOUS", "AUDIOSYNC_SPOOL_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUDIOSYNC_REDIS_URL", "redis://127.0.0.1:9/0")


def test_without_the_secret_a_pusher_of_enhanced_sessions_is_not_ready() -> None:
    with pytest.raises(ConfigError, match="ENCRYPTION_SECRET is not set") as refused:
        AudioSyncClient.from_env()
    assert "protection_levels=('standard',)" in str(refused.value)  # the way out, named


def test_a_pusher_of_standard_sessions_only_needs_no_secret() -> None:
    client = AudioSyncClient.from_env(protection_levels=("standard",))
    try:
        with pytest.raises(ConfigError, match="ENCRYPTION_SECRET"):
            client.open_session("u", "c", 16000, "enhanced")  # as declared: not available
    finally:
        client.close()


def test_with_the_secret_every_level_is_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCRYPTION_SECRET", SECRET)
    client = AudioSyncClient.from_env()
    client.close()


@pytest.mark.parametrize("levels", [(), ("sealed",), "enhanced"])
def test_unknown_levels_are_refused(levels: tuple[str, ...] | str) -> None:
    with pytest.raises(ConfigError, match="protection_levels must be some of"):
        AudioSyncClient.from_env(protection_levels=levels)
