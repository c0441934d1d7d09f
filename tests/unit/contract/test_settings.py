"""backend_hooks.contract.settings: environment parsing; every refusal names its variable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend_hooks.contract.audio_format import DEFAULT_BITRATES, DEFAULT_COMPLEXITIES
from backend_hooks.contract.errors import ConfigError
from backend_hooks.contract.settings import ENV_DEFAULTS, MIN_SECRET_BYTES, ROLE_VARIABLES, Settings

SECRET = "s" * 32


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings(
        redis_url="redis://127.0.0.1:6379/0",
        redis_cluster=False,
        due_shards=16,
        broker_url="redis://127.0.0.1:6379/0",
        bucket="omi-private-cloud-sync",
        storage_emulator_host=None,
        encryption_secret=None,
        chunk_seconds=5.0,
        object_seconds=60.0,
        batch_max_age_seconds=60.0,
        batch_max_bytes=1_048_576,
        sweep_interval_seconds=5.0,
        lease_seconds=30.0,
        flush_max_attempts=16,
        flush_backoff_max_seconds=300.0,
        timestamp_window_seconds=604800.0,
        shutdown_seconds=20.0,
        flush_concurrency=8,
        shard_task_seconds=10.0,
        spool_dir=None,
        spool_max_bytes=1 << 30,
        spool_lease_seconds=30.0,
        pusher_threads=4,
        breaker_seconds=5.0,
        session_buffer_seconds=120.0,
        close_seconds=10.0,
        timestamp_tolerance_ms=200.0,
        push_timestamp_window_seconds=86400.0,
        opus_bitrates=DEFAULT_BITRATES,
        opus_complexities=DEFAULT_COMPLEXITIES,
    )
    assert isinstance(settings.batch_max_bytes, int)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AUDIOSYNC_REDIS_CLUSTER", "yes", "must be 0 or 1"),
        ("AUDIOSYNC_DUE_SHARDS", "0", "positive"),
        ("AUDIOSYNC_DUE_SHARDS", "2.5", "whole number"),
        ("AUDIOSYNC_DUE_SHARDS", "4097", "at most 4096"),
        ("AUDIOSYNC_FLUSH_CONCURRENCY", "65", "at most 64"),
        ("AUDIOSYNC_SHARD_TASK_SECONDS", "-1", "positive"),
        ("AUDIOSYNC_PUSHER_THREADS", "257", "at most 256"),
        ("AUDIOSYNC_PUSHER_THREADS", "0", "positive"),
        ("AUDIOSYNC_SPOOL_MAX_BYTES", "1.5", "whole number"),
        ("AUDIOSYNC_SPOOL_LEASE_SECONDS", "0", "positive"),
        ("AUDIOSYNC_BREAKER_SECONDS", "nan", "positive"),
        ("AUDIOSYNC_SESSION_BUFFER_SECONDS", "-5", "positive"),
        ("AUDIOSYNC_CLOSE_SECONDS", "x", "a number"),
        ("AUDIOSYNC_REDIS_STALL_SECONDS", "0", "positive"),
    ],
)
def test_scale_settings_are_bounded(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Settings.from_env({name: value})
    assert name in str(info.value)


def test_cluster_flag_and_shards() -> None:
    settings = Settings.from_env({"AUDIOSYNC_REDIS_CLUSTER": "1", "AUDIOSYNC_DUE_SHARDS": "64"})
    assert settings.redis_cluster and settings.due_shards == 64


def test_empty_values_mean_the_default() -> None:
    assert Settings.from_env(dict.fromkeys(ENV_DEFAULTS, "")) == Settings.from_env({})


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "AUDIOSYNC_REDIS_URL": "redis://r:1/2",
            "CELERY_BROKER_URL": "redis://b:3/4",
            "BUCKET_PRIVATE_CLOUD_SYNC": "my-bucket",
            "STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443",
            "ENCRYPTION_SECRET": SECRET,
            "AUDIOSYNC_CHUNK_SECONDS": "2.5",
            "AUDIOSYNC_OBJECT_SECONDS": "30",
            "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": "45",
            "AUDIOSYNC_BATCH_MAX_BYTES": "2048",
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.5",
            "AUDIOSYNC_LEASE_SECONDS": "90",
            "AUDIOSYNC_FLUSH_MAX_ATTEMPTS": "5",
            "AUDIOSYNC_FLUSH_BACKOFF_MAX_SECONDS": "7",
            "AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS": "3600",
            "AUDIOSYNC_SHUTDOWN_SECONDS": "12",
            "AUDIOSYNC_REDIS_CLUSTER": "1",
            "AUDIOSYNC_DUE_SHARDS": "3",
            "AUDIOSYNC_FLUSH_CONCURRENCY": "5",
            "AUDIOSYNC_SHARD_TASK_SECONDS": "4",
            "AUDIOSYNC_SPOOL_DIR": "/var/spool/audiosync",
            "AUDIOSYNC_SPOOL_MAX_BYTES": "4096",
            "AUDIOSYNC_SPOOL_LEASE_SECONDS": "3",
            "AUDIOSYNC_PUSHER_THREADS": "16",
            "AUDIOSYNC_BREAKER_SECONDS": "1.5",
            "AUDIOSYNC_SESSION_BUFFER_SECONDS": "30",
            "AUDIOSYNC_CLOSE_SECONDS": "8",
            "AUDIOSYNC_REDIS_STALL_SECONDS": "0.5",
            "AUDIOSYNC_TIMESTAMP_TOLERANCE_MS": "150",
            "AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS": "1800",
            "AUDIOSYNC_OPUS_BITRATES": "8000:10000,16000:20000",
            "AUDIOSYNC_OPUS_COMPLEXITY": "16000:3",
        }
    )
    assert settings == Settings(
        redis_url="redis://r:1/2",
        redis_cluster=True,
        due_shards=3,
        broker_url="redis://b:3/4",
        bucket="my-bucket",
        storage_emulator_host="http://127.0.0.1:4443",
        encryption_secret=SECRET.encode(),
        chunk_seconds=2.5,
        object_seconds=30.0,
        batch_max_age_seconds=45.0,
        batch_max_bytes=2048,
        sweep_interval_seconds=0.5,
        lease_seconds=90.0,
        flush_max_attempts=5,
        flush_backoff_max_seconds=7.0,
        timestamp_window_seconds=3600.0,
        shutdown_seconds=12.0,
        flush_concurrency=5,
        shard_task_seconds=4.0,
        spool_dir="/var/spool/audiosync",
        spool_max_bytes=4096,
        spool_lease_seconds=3.0,
        pusher_threads=16,
        breaker_seconds=1.5,
        session_buffer_seconds=30.0,
        close_seconds=8.0,
        redis_stall_seconds=0.5,
        timestamp_tolerance_ms=150.0,
        push_timestamp_window_seconds=1800.0,
        opus_bitrates={**DEFAULT_BITRATES, 8000: 10000, 16000: 20000},
        opus_complexities={**DEFAULT_COMPLEXITIES, 16000: 3},
    )


def test_broker_defaults_to_the_redis_url() -> None:
    settings = Settings.from_env({"AUDIOSYNC_REDIS_URL": "redis://elsewhere:6380/1"})
    assert settings.broker_url == "redis://elsewhere:6380/1"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIOSYNC_LEASE_SECONDS", "77")
    assert Settings.from_env().lease_seconds == 77.0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("AUDIOSYNC_REDIS_URL", "localhost:6379", id="redis-url-no-scheme"),
        pytest.param("CELERY_BROKER_URL", "localhost:6379", id="broker-url-no-scheme"),
        pytest.param("BUCKET_PRIVATE_CLOUD_SYNC", "bucket/prefix", id="bucket-with-slash"),
        pytest.param("ENCRYPTION_SECRET", "short", id="secret-5-bytes"),
        pytest.param("ENCRYPTION_SECRET", "x" * 31, id="secret-31-bytes"),
        pytest.param("AUDIOSYNC_CHUNK_SECONDS", "five", id="chunk-not-a-number"),
        pytest.param("AUDIOSYNC_CHUNK_SECONDS", "5s", id="chunk-with-unit"),
        pytest.param("AUDIOSYNC_CHUNK_SECONDS", "0", id="chunk-zero"),
        pytest.param("AUDIOSYNC_CHUNK_SECONDS", "-5", id="chunk-negative"),
        pytest.param("AUDIOSYNC_CHUNK_SECONDS", "nan", id="chunk-nan"),
        pytest.param("AUDIOSYNC_CHUNK_SECONDS", "inf", id="chunk-inf"),
        pytest.param("AUDIOSYNC_CHUNK_SECONDS", "0.03", id="chunk-not-whole-frames"),
        pytest.param("AUDIOSYNC_CHUNK_SECONDS", "5.01", id="chunk-5.01"),
        pytest.param("AUDIOSYNC_OBJECT_SECONDS", "sixty", id="object-not-a-number"),
        pytest.param("AUDIOSYNC_OBJECT_SECONDS", "0", id="object-zero"),
        pytest.param("AUDIOSYNC_OBJECT_SECONDS", "4", id="object-shorter-than-chunk"),
        pytest.param("AUDIOSYNC_BATCH_MAX_AGE_SECONDS", "-1", id="age-negative"),
        pytest.param("AUDIOSYNC_BATCH_MAX_AGE_SECONDS", "never", id="age-not-a-number"),
        pytest.param("AUDIOSYNC_BATCH_MAX_BYTES", "1.5", id="bytes-fraction"),
        pytest.param("AUDIOSYNC_BATCH_MAX_BYTES", "0", id="bytes-zero"),
        pytest.param("AUDIOSYNC_BATCH_MAX_BYTES", "1e400", id="bytes-overflow-inf"),
        pytest.param("AUDIOSYNC_BATCH_MAX_BYTES", "1MB", id="bytes-with-unit"),
        pytest.param("AUDIOSYNC_FLUSH_MAX_ATTEMPTS", "2.5", id="attempts-fraction"),
        pytest.param("AUDIOSYNC_FLUSH_MAX_ATTEMPTS", "0", id="attempts-zero"),
        pytest.param("AUDIOSYNC_FLUSH_BACKOFF_MAX_SECONDS", "-1", id="backoff-negative"),
        pytest.param("AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS", "nan", id="window-nan"),
        pytest.param("AUDIOSYNC_SHUTDOWN_SECONDS", "0", id="shutdown-zero"),
        pytest.param("AUDIOSYNC_SWEEP_INTERVAL_SECONDS", "0", id="sweep-zero"),
        pytest.param("AUDIOSYNC_SWEEP_INTERVAL_SECONDS", "-inf", id="sweep-minus-inf"),
        pytest.param("AUDIOSYNC_LEASE_SECONDS", "-120", id="lease-negative"),
        pytest.param("AUDIOSYNC_LEASE_SECONDS", "2 min", id="lease-not-a-number"),
        pytest.param("AUDIOSYNC_TIMESTAMP_TOLERANCE_MS", "0", id="tolerance-zero"),
        pytest.param("AUDIOSYNC_TIMESTAMP_TOLERANCE_MS", "-200", id="tolerance-negative"),
        pytest.param("AUDIOSYNC_TIMESTAMP_TOLERANCE_MS", "nan", id="tolerance-nan"),
        pytest.param("AUDIOSYNC_TIMESTAMP_TOLERANCE_MS", "200ms", id="tolerance-with-unit"),
        pytest.param("AUDIOSYNC_TIMESTAMP_TOLERANCE_MS", "10001", id="tolerance-over-10-s"),
        pytest.param("AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS", "0", id="push-window-zero"),
        pytest.param("AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS", "inf", id="push-window-inf"),
        pytest.param("AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS", "0.1", id="push-window-0.1s"),
        pytest.param(
            "AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS", "604800", id="push-window-=-fleet-window"
        ),
    ],
)
def test_invalid_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_secret_length_is_counted_in_utf8_bytes() -> None:
    # 16 characters, 32 bytes: accepted; 15 characters + "x" = 31 bytes: refused.
    accepted = Settings.from_env({"ENCRYPTION_SECRET": "é" * 16})
    assert accepted.encryption_secret == ("é" * 16).encode("utf-8")
    with pytest.raises(ConfigError, match="ENCRYPTION_SECRET"):
        Settings.from_env({"ENCRYPTION_SECRET": "é" * 15 + "x"})


def test_secret_of_minimum_length_is_accepted() -> None:
    secret = "k" * MIN_SECRET_BYTES
    assert Settings.from_env({"ENCRYPTION_SECRET": secret}).encryption_secret == secret.encode()


def test_previous_secrets_are_comma_separated() -> None:
    old, older = "o" * 32, "ü" * 20
    settings = Settings.from_env(
        {"ENCRYPTION_SECRET": SECRET, "ENCRYPTION_SECRET_PREVIOUS": f"{old},{older}"}
    )
    assert settings.encryption_secret_previous == (old.encode(), older.encode())
    for role in ("pusher", "reader"):
        assert Settings.from_env(
            {"ENCRYPTION_SECRET": SECRET, "ENCRYPTION_SECRET_PREVIOUS": old}, role=role
        ).encryption_secret_previous == (old.encode(),)
    assert Settings.from_env({"ENCRYPTION_SECRET": SECRET}).encryption_secret_previous == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("x" * 31, "item 1 is 31 bytes", id="short"),
        pytest.param("o" * 32 + ",short", "item 2 is 5 bytes", id="second-short"),
        pytest.param("o" * 32 + ",", "item 2 is 0 bytes", id="trailing-comma"),
        pytest.param("o" * 32 + ", " + "p" * 31, "item 2 starts or ends with", id="space"),
    ],
)
def test_a_bad_previous_secret_is_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"ENCRYPTION_SECRET_PREVIOUS.*({message})"):
        Settings.from_env({"ENCRYPTION_SECRET": SECRET, "ENCRYPTION_SECRET_PREVIOUS": value})


def test_previous_secrets_need_a_current_one() -> None:
    with pytest.raises(
        ConfigError, match="ENCRYPTION_SECRET_PREVIOUS is set but ENCRYPTION_SECRET"
    ):
        Settings.from_env({"ENCRYPTION_SECRET_PREVIOUS": "o" * 32})


def test_object_seconds_equal_to_chunk_seconds_is_accepted() -> None:
    settings = Settings.from_env({"AUDIOSYNC_CHUNK_SECONDS": "5", "AUDIOSYNC_OBJECT_SECONDS": "5"})
    assert settings.object_seconds == settings.chunk_seconds == 5.0


@given(frames=st.integers(min_value=1, max_value=30_000))
def test_any_whole_number_of_frames_is_a_valid_chunk(frames: int) -> None:
    text = repr(frames * 20 / 1000)
    settings = Settings.from_env(
        {"AUDIOSYNC_CHUNK_SECONDS": text, "AUDIOSYNC_OBJECT_SECONDS": "1000"}
    )
    assert settings.chunk_seconds == float(text)


@pytest.mark.parametrize(
    ("role", "variable", "value"),
    [
        ("pusher", "AUDIOSYNC_LEASE_SECONDS", "abc"),  # the fleet's
        ("pusher", "BUCKET_PRIVATE_CLOUD_SYNC", "a/b"),  # the reader's and the fleet's
        ("fleet", "ENCRYPTION_SECRET", "short"),  # the fleet holds no key
        ("fleet", "ENCRYPTION_SECRET_PREVIOUS", "short"),  # nor an old one
        ("fleet", "AUDIOSYNC_CHUNK_SECONDS", "5.01"),  # the pusher cuts chunks
        ("reader", "AUDIOSYNC_LEASE_SECONDS", "abc"),  # the fleet's
        ("reader", "AUDIOSYNC_PUSHER_THREADS", "0"),  # the pusher's
    ],
)
def test_a_role_ignores_what_it_does_not_read(role: str, variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})  # every setting checked
    settings = Settings.from_env({variable: value}, role=role)
    assert settings == Settings.from_env({}, role=role)  # ignored: the default stands


@pytest.mark.parametrize("role", sorted(ROLE_VARIABLES))
def test_a_role_still_refuses_what_it_reads(role: str) -> None:
    for variable in ROLE_VARIABLES[role]:
        if variable in ("STORAGE_EMULATOR_HOST", "CELERY_BROKER_URL"):
            continue  # free text / checked as a URL below
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env({variable: "a/b\\0"}, role=role)


@pytest.mark.parametrize("role", [None, "pusher"])
@pytest.mark.parametrize(
    ("push_window", "fleet_window", "ok"),
    [
        ("86400", "604800", True),
        ("3599", "3600", True),
        ("3600", "3600", False),
        ("7200", "3600", False),
    ],
)
def test_the_push_window_is_strictly_inside_the_fleet_window(
    role: str | None, push_window: str, fleet_window: str, ok: bool
) -> None:
    """The fleet quarantines chunks outside its window; a pusher re-anchors chunks outside
    its own, so its window must be shorter, checked wherever both are read."""
    env = {
        "AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS": push_window,
        "AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS": fleet_window,
    }
    if ok:
        settings = Settings.from_env(env, role=role)
        assert settings.push_timestamp_window_seconds == float(push_window)
    else:
        with pytest.raises(ConfigError, match="AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS") as info:
            Settings.from_env(env, role=role)
        assert "must be shorter than AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS" in str(info.value)


def test_the_fleet_does_not_read_the_pusher_timestamp_settings() -> None:
    env = {
        "AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS": "9999999",
        "AUDIOSYNC_TIMESTAMP_TOLERANCE_MS": "0",
    }
    assert Settings.from_env(env, role="fleet") == Settings.from_env({}, role="fleet")


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="role"):
        Settings.from_env({}, role="worker")
