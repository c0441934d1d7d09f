"""backend_hooks.contract.ids: ids that end up in Redis keys and object names."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend_hooks.contract.errors import InvalidInputError
from backend_hooks.contract.ids import validate_id

VALID_CHARS = string.ascii_letters + string.digits + "._:@+=-"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a", id="one-char"),
        pytest.param("user-123", id="dashes"),
        pytest.param("Zx9Q2mK8eLrT5sWvB7nH4cJ1", id="firebase-like"),
        pytest.param("8c1f2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b", id="uuid"),
        pytest.param("google-oauth2|123".replace("|", ":"), id="colon"),
        pytest.param("user@example.com", id="email"),
        pytest.param("a+b=c_d.e", id="plus-equals-underscore-dot"),
        pytest.param("x" * 256, id="256-chars"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("a.b.c", id="single-dots"),
    ],
)
def test_valid_ids_pass(value: str) -> None:
    assert validate_id(value, "uid") == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("", "must not be empty", id="empty"),
        pytest.param("/", "may only hold", id="slash"),
        pytest.param("a/b", "may only hold", id="inner-slash"),
        pytest.param("..", "'..'", id="dot-dot"),
        pytest.param(".", "'..'", id="dot"),
        pytest.param("a..b", "'..'", id="inner-dot-dot"),
        pytest.param("{abc}", "may only hold", id="braces"),
        pytest.param("a}", "may only hold", id="closing-brace"),
        pytest.param("a b", "may only hold", id="space"),
        pytest.param(" a", "may only hold", id="leading-space"),
        pytest.param("a\tb", "may only hold", id="tab"),
        pytest.param("abc\n", "may only hold", id="trailing-newline"),
        pytest.param("abc\r\n", "may only hold", id="trailing-crlf"),
        pytest.param("a\x00b", "may only hold", id="nul"),
        pytest.param("a\\b", "may only hold", id="backslash"),
        pytest.param("a*b", "may only hold", id="glob-star"),
        pytest.param("a?b", "may only hold", id="question-mark"),
        pytest.param("ü", "may only hold", id="non-ascii"),
        pytest.param("x" * 257, "longer than 256", id="257-chars"),
        pytest.param(123, "must be a string", id="int"),
        pytest.param(None, "must be a string", id="none"),
        pytest.param(b"abc", "must be a string", id="bytes"),
    ],
)
def test_invalid_ids_are_refused(value: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        validate_id(value, "conversation_id")
    assert "conversation_id" in str(info.value)


def test_invalid_input_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_id("", "uid")


@given(st.text(alphabet=VALID_CHARS, min_size=1, max_size=256))
def test_ids_of_allowed_characters_pass_unless_they_hold_dot_dot(value: str) -> None:
    if ".." in value or value == ".":
        with pytest.raises(InvalidInputError):
            validate_id(value, "uid")
    else:
        assert validate_id(value, "uid") == value


@given(st.text(min_size=1, max_size=20).filter(lambda v: any(c not in VALID_CHARS for c in v)))
def test_any_other_character_is_refused(value: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_id(value, "uid")
