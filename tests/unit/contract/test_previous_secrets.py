"""Older encryption secrets (rotation): every secret ENCRYPTION_SECRET accepts can be listed
as a previous one, byte for byte, in ENCRYPTION_SECRET_PREVIOUS_JSON; the comma form of
ENCRYPTION_SECRET_PREVIOUS keeps reading what it read, and sends what it cannot hold to
the JSON form. The rotation itself, end to end: tests/integration/end_to_end/test_sealing.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backend_hooks.contract.errors import ConfigError
from backend_hooks.contract.settings import MIN_SECRET_BYTES, Settings

CURRENT = "the-current-secret-0123456789abcdef"
OLD = "an-old-secret-with-a-comma,-0123456789abcdef"

#: What an environment variable can hold: any text but NUL (and lone surrogates, which
#: os.environ makes only of bytes that are not UTF-8).
env_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    min_size=MIN_SECRET_BYTES,
)


@given(secret=env_text)
@example(secret=OLD)
@example(secret="a-secret-read-from-a-file-0123456789abcdef\n")
@example(secret=' surrounded by spaces, tabs\tand "quotes" \\ ')
@example(secret="[" + "x" * 40 + "]")
def test_every_accepted_secret_can_be_listed_as_a_previous_one(secret: str) -> None:
    """Rotation moves the current secret into the previous ones: whatever ENCRYPTION_SECRET
    took (a comma, a file's trailing newline, quotes), the JSON form holds exactly it."""
    assert Settings.from_env({"ENCRYPTION_SECRET": secret}).encryption_secret == secret.encode()
    rotated = Settings.from_env(
        {"ENCRYPTION_SECRET": CURRENT, "ENCRYPTION_SECRET_PREVIOUS_JSON": json.dumps([secret])}
    )
    assert rotated.encryption_secret_previous == (secret.encode(),)


def test_a_secret_keeps_its_surrounding_whitespace_in_every_variable() -> None:
    """Nothing is stripped anywhere: a secret read from a file with its newline has sealed
    with the newline as part of the key, so the same bytes must open its records later."""
    from_a_file = "a-secret-read-from-a-file-0123456789abcdef\n"
    assert Settings.from_env({"ENCRYPTION_SECRET": from_a_file}).encryption_secret == (
        from_a_file.encode()
    )
    listed = Settings.from_env(
        {"ENCRYPTION_SECRET": CURRENT, "ENCRYPTION_SECRET_PREVIOUS_JSON": json.dumps([from_a_file])}
    )
    assert listed.encryption_secret_previous == (from_a_file.encode(),)


def test_the_comma_form_and_the_json_form_add_up() -> None:
    plain, older = "p" * 32, "o" * 32
    settings = Settings.from_env(
        {
            "ENCRYPTION_SECRET": CURRENT,
            "ENCRYPTION_SECRET_PREVIOUS": plain,
            "ENCRYPTION_SECRET_PREVIOUS_JSON": json.dumps([OLD, older]),
        }
    )
    assert settings.encryption_secret_previous == (plain.encode(), OLD.encode(), older.encode())
    assert (
        Settings.from_env(
            {"ENCRYPTION_SECRET": CURRENT, "ENCRYPTION_SECRET_PREVIOUS_JSON": "[]"}
        ).encryption_secret_previous
        == ()
    )


@pytest.mark.parametrize("role", ["pusher", "reader", "backfill"])
def test_the_roles_that_open_records_read_the_json_form(role: str) -> None:
    env = {"ENCRYPTION_SECRET": CURRENT, "ENCRYPTION_SECRET_PREVIOUS_JSON": json.dumps([OLD])}
    assert Settings.from_env(env, role=role).encryption_secret_previous == (OLD.encode(),)


def test_the_fleet_ignores_the_json_form() -> None:
    env = {"ENCRYPTION_SECRET_PREVIOUS_JSON": "not json"}  # refused by the roles that read it
    assert Settings.from_env(env, role="fleet") == Settings.from_env({}, role="fleet")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(OLD, "not JSON", id="a-bare-secret"),
        pytest.param(json.dumps(OLD), "a JSON list of strings", id="a-string-not-a-list"),
        pytest.param(json.dumps({"old": OLD}), "a JSON list of strings", id="an-object"),
        pytest.param(json.dumps([OLD, 7]), "item 2 is not a string", id="a-number"),
        pytest.param(json.dumps([[OLD]]), "item 1 is not a string (a JSON list)", id="nested"),
        pytest.param("[" * 100_000 + "]" * 100_000, "not JSON", id="nested-too-deep"),
        pytest.param("[" + "9" * 5000 + "]", "not JSON", id="a-number-too-long"),
        pytest.param(json.dumps([OLD, "x" * 31]), "item 2 is 31 bytes", id="short"),
        pytest.param(json.dumps([OLD, ""]), "item 2 is 0 bytes", id="empty"),
        pytest.param('["\\ud800' + "x" * 40 + '"]', "item 1 is not UTF-8", id="lone-surrogate"),
    ],
)
def test_a_bad_json_list_is_refused_without_showing_a_secret(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match="ENCRYPTION_SECRET_PREVIOUS_JSON") as caught:
        Settings.from_env({"ENCRYPTION_SECRET": CURRENT, "ENCRYPTION_SECRET_PREVIOUS_JSON": value})
    assert message in str(caught.value)
    assert "0123456789abcdef" not in str(caught.value)


def test_the_json_form_needs_a_current_secret() -> None:
    with pytest.raises(
        ConfigError, match="ENCRYPTION_SECRET_PREVIOUS_JSON is set but ENCRYPTION_SECRET is not"
    ):
        Settings.from_env({"ENCRYPTION_SECRET_PREVIOUS_JSON": json.dumps([OLD])})


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("a-secret-read-from-a-file-0123456789abcdef\n", id="trailing-newline"),
        pytest.param(" a-secret-with-a-leading-space-0123456789", id="leading-space"),
    ],
)
def test_the_comma_form_sends_what_it_cannot_hold_to_the_json_form(secret: str) -> None:
    with pytest.raises(ConfigError, match="ENCRYPTION_SECRET_PREVIOUS_JSON"):
        Settings.from_env({"ENCRYPTION_SECRET": CURRENT, "ENCRYPTION_SECRET_PREVIOUS": secret})


@pytest.mark.parametrize(
    ("variable", "env"),
    [
        ("ENCRYPTION_SECRET", {"ENCRYPTION_SECRET": "x" * 40 + "\udcff"}),
        (
            "ENCRYPTION_SECRET_PREVIOUS item 1",
            {"ENCRYPTION_SECRET": CURRENT, "ENCRYPTION_SECRET_PREVIOUS": "x" * 40 + "\udcff"},
        ),
    ],
)
def test_a_secret_that_is_not_utf8_is_refused_naming_its_variable(
    variable: str, env: dict[str, str]
) -> None:
    """os.environ keeps bytes that are not UTF-8 as lone surrogates: a ConfigError, not a
    UnicodeEncodeError from the middle of start-up."""
    with pytest.raises(ConfigError, match=f"{variable} is not UTF-8"):
        Settings.from_env(env)
