"""Rollout flags (backend_hooks/contract/rollout.py, AudioSyncClient.enabled_for and
spool_enabled_for): deny beats allow beats the percentage; the percentage is a stable hash
of the uid, so a user never flips and raising it only adds users; bad values name their
variable."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend_hooks.contract import rollout
from backend_hooks.contract.errors import ConfigError, InvalidInputError
from backend_hooks.contract.rollout import BUCKETS, Rollout
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.client import AudioSyncClient

UIDS = [f"user-{n}" for n in range(20_000)]
uids = st.from_regex(r"[A-Za-z0-9_:@+=-][A-Za-z0-9._:@+=-]{0,40}", fullmatch=True).filter(
    lambda uid: ".." not in uid
)
percents = st.integers(min_value=0, max_value=BUCKETS).map(lambda steps: steps / 100)


MakeClient = Callable[..., AudioSyncClient]


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """``make_client(**env)``: a client of the pusher's settings from ``env``; its Redis
    client connects only when used, which these tests never do."""
    made: list[AudioSyncClient] = []

    def make(**env: str) -> AudioSyncClient:
        made.append(AudioSyncClient(Settings.from_env(env, role="pusher")))
        return made[-1]

    yield make
    for client in made:
        client.close()


# -- the bucket ---------------------------------------------------------------------------
def test_the_bucket_is_sha256_of_the_uid() -> None:
    # Computed with `printf %s UID | sha256sum`: first 16 hex digits, modulo 10,000. Pinned:
    # changing the hash would move users between the old path and the new one.
    assert [rollout.bucket(u) for u in ("user-1", "alice", "42")] == [2594, 207, 2637]


def test_buckets_spread_evenly() -> None:
    deciles = [0] * 10
    for uid in UIDS:
        deciles[rollout.bucket(uid) * 10 // BUCKETS] += 1
    assert all(1_800 <= count <= 2_200 for count in deciles), deciles  # 2,000 each ± 10 %


@pytest.mark.parametrize("percent", [0.01, 1, 5, 25, 50, 99.99])
def test_the_share_of_users_in_follows_the_percentage(percent: float) -> None:
    share = sum(Rollout(percent).includes(uid) for uid in UIDS) / len(UIDS)
    assert abs(share - percent / 100) <= 0.01 + percent / 1000


def test_zero_is_nobody_and_100_is_everybody() -> None:
    assert not any(Rollout(0).includes(uid) for uid in UIDS)
    assert all(Rollout(100).includes(uid) for uid in UIDS)


@given(uid=uids, percent=percents)
def test_the_same_uid_gets_the_same_answer(uid: str, percent: float) -> None:
    answers = {Rollout(percent).includes(uid) for _ in range(3)}
    assert answers == {rollout.bucket(uid) < round(percent * 100)}


@given(uid=uids, low=percents, high=percents)
def test_raising_the_percentage_only_adds_users(uid: str, low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    if Rollout(low).includes(uid):
        assert Rollout(high).includes(uid)


# -- deny beats allow beats the percentage ------------------------------------------------
@pytest.mark.parametrize(
    ("allowed", "denied", "percent", "expected"),
    [
        (False, False, 0, False),
        (False, False, 100, True),
        (True, False, 0, True),  # allow beats the percentage
        (True, False, 100, True),
        (False, True, 0, False),
        (False, True, 100, False),  # deny beats the percentage
        (True, True, 0, False),  # deny beats allow
        (True, True, 100, False),
    ],
)
def test_deny_beats_allow_beats_percentage(
    allowed: bool, denied: bool, percent: float, expected: bool
) -> None:
    uid = "user-1"
    policy = Rollout(
        percent,
        allow=frozenset({uid} if allowed else ()),
        deny=frozenset({uid} if denied else ()),
    )
    assert policy.includes(uid) is expected
    assert Rollout(percent).includes("user-2") is (percent == 100)  # lists are per uid


def test_a_bad_uid_is_refused() -> None:
    for bad in ("", "a/b", "a b", "{tag}", ".."):
        with pytest.raises(InvalidInputError, match="uid"):
            Rollout(100).includes(bad)


# -- settings -----------------------------------------------------------------------------
def test_defaults_nobody_on_audiosync_and_no_spool() -> None:
    settings = Settings.from_env({}, role="pusher")
    assert settings.rollout == Rollout(0)
    assert settings.spool_rollout == Rollout(100)  # the spool directory is the switch
    assert settings.spool_dir is None


def test_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "AUDIOSYNC_ROLLOUT_PERCENT": "12.5",
            "AUDIOSYNC_ROLLOUT_ALLOW_UIDS": " staff-1, staff-2,,",
            "AUDIOSYNC_ROLLOUT_DENY_UIDS": "vip@example.com",
            "AUDIOSYNC_SPOOL_DIR": "/var/spool/audiosync",
            "AUDIOSYNC_SPOOL_PERCENT": "0.01",
            "AUDIOSYNC_SPOOL_ALLOW_UIDS": "staff-1",
            "AUDIOSYNC_SPOOL_DENY_UIDS": "staff-2",
        },
        role="pusher",
    )
    assert settings.rollout == Rollout(
        12.5, allow=frozenset({"staff-1", "staff-2"}), deny=frozenset({"vip@example.com"})
    )
    assert settings.spool_rollout == Rollout(
        0.01, allow=frozenset({"staff-1"}), deny=frozenset({"staff-2"})
    )
    assert settings.spool_dir == "/var/spool/audiosync"


def test_empty_values_mean_the_defaults() -> None:
    names = [
        f"AUDIOSYNC_{flag}_{part}"
        for flag in ("ROLLOUT", "SPOOL")
        for part in ("PERCENT", "ALLOW_UIDS", "DENY_UIDS")
    ]
    empty = Settings.from_env(dict.fromkeys([*names, "AUDIOSYNC_SPOOL_DIR"], ""))
    assert empty == Settings.from_env({})


@pytest.mark.parametrize("flag", ["ROLLOUT", "SPOOL"])
@pytest.mark.parametrize(
    ("part", "value", "message"),
    [
        ("PERCENT", "-1", "percentage from 0 to 100"),
        ("PERCENT", "100.01", "percentage from 0 to 100"),
        ("PERCENT", "1e3", "percentage from 0 to 100"),
        ("PERCENT", "nan", "percentage from 0 to 100"),
        ("PERCENT", "inf", "percentage from 0 to 100"),
        ("PERCENT", "5%", "percentage from 0 to 100"),
        ("PERCENT", "half", "percentage from 0 to 100"),
        ("PERCENT", "12.345", "steps of 0.01"),
        ("ALLOW_UIDS", "ok,a/b", "'a/b'"),
        ("ALLOW_UIDS", "a b", "'a b'"),
        ("ALLOW_UIDS", "ok;other", "'ok;other'"),
        ("DENY_UIDS", "{tag}", "'{tag}'"),
        ("DENY_UIDS", "x" * 257, "longer than 256"),
        ("DENY_UIDS", "..", "'..'"),
    ],
)
def test_a_bad_value_names_its_variable(flag: str, part: str, value: str, message: str) -> None:
    name = f"AUDIOSYNC_{flag}_{part}"
    for role in ("pusher", None):
        with pytest.raises(ConfigError, match=message) as info:
            Settings.from_env({name: value}, role=role)
        assert name in str(info.value)
    Settings.from_env({name: value}, role="fleet")  # only the pusher reads it


def test_the_spool_dir_must_be_absolute() -> None:
    with pytest.raises(ConfigError, match="AUDIOSYNC_SPOOL_DIR"):
        Settings.from_env({"AUDIOSYNC_SPOOL_DIR": "spool"}, role="pusher")


# -- the client ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),  # the default: the old path
        ({"AUDIOSYNC_ROLLOUT_PERCENT": "100"}, True),
        ({"AUDIOSYNC_ROLLOUT_ALLOW_UIDS": "user-1"}, True),
        ({"AUDIOSYNC_ROLLOUT_ALLOW_UIDS": "user-2"}, False),
        ({"AUDIOSYNC_ROLLOUT_PERCENT": "100", "AUDIOSYNC_ROLLOUT_DENY_UIDS": "user-1"}, False),
        (
            {"AUDIOSYNC_ROLLOUT_ALLOW_UIDS": "user-1", "AUDIOSYNC_ROLLOUT_DENY_UIDS": "user-1"},
            False,
        ),
        ({"AUDIOSYNC_ROLLOUT_PERCENT": "25.94"}, False),  # user-1's bucket is 2594
        ({"AUDIOSYNC_ROLLOUT_PERCENT": "25.95"}, True),
        ({"AUDIOSYNC_SPOOL_PERCENT": "0", "AUDIOSYNC_SPOOL_DENY_UIDS": "user-1"}, False),
    ],
)
def test_enabled_for(make_client: MakeClient, env: dict[str, str], expected: bool) -> None:
    client = make_client(**env)
    assert client.enabled_for("user-1") is expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),  # no spool directory
        ({"AUDIOSYNC_SPOOL_ALLOW_UIDS": "user-1"}, False),  # still no directory
        ({"AUDIOSYNC_SPOOL_DIR": "/spool"}, True),  # the directory turns it on for all
        ({"AUDIOSYNC_SPOOL_DIR": "/spool", "AUDIOSYNC_SPOOL_DENY_UIDS": "user-1"}, False),
        ({"AUDIOSYNC_SPOOL_DIR": "/spool", "AUDIOSYNC_SPOOL_PERCENT": "0"}, False),
        (
            {
                "AUDIOSYNC_SPOOL_DIR": "/spool",
                "AUDIOSYNC_SPOOL_PERCENT": "0",
                "AUDIOSYNC_SPOOL_ALLOW_UIDS": "user-1",
            },
            True,
        ),
        (
            {
                "AUDIOSYNC_SPOOL_DIR": "/spool",
                "AUDIOSYNC_SPOOL_ALLOW_UIDS": "user-1",
                "AUDIOSYNC_SPOOL_DENY_UIDS": "user-1",
            },
            False,
        ),
        ({"AUDIOSYNC_SPOOL_DIR": "/spool", "AUDIOSYNC_SPOOL_PERCENT": "25.94"}, False),
        ({"AUDIOSYNC_SPOOL_DIR": "/spool", "AUDIOSYNC_SPOOL_PERCENT": "25.95"}, True),
        # the audiosync flag does not decide the spool's
        ({"AUDIOSYNC_SPOOL_DIR": "/spool", "AUDIOSYNC_ROLLOUT_DENY_UIDS": "user-1"}, True),
    ],
)
def test_spool_enabled_for(make_client: MakeClient, env: dict[str, str], expected: bool) -> None:
    client = make_client(**env)
    assert client.spool_enabled_for("user-1") is expected


def test_the_client_refuses_a_bad_uid(make_client: MakeClient) -> None:
    client = make_client(AUDIOSYNC_ROLLOUT_PERCENT="100", AUDIOSYNC_SPOOL_DIR="/spool")
    for ask in (client.enabled_for, client.spool_enabled_for):
        with pytest.raises(InvalidInputError, match="uid"):
            ask("a/b")


@given(uid=uids, spool=percents, audiosync=percents)
def test_spool_users_are_audiosync_users_at_a_lower_percentage(
    uid: str, spool: float, audiosync: float
) -> None:
    spool, audiosync = min(spool, audiosync), max(spool, audiosync)
    if Rollout(spool).includes(uid):  # one bucket for both flags
        assert Rollout(audiosync).includes(uid)
