"""Validation of user, conversation and session ids before they reach keys or object names."""

from __future__ import annotations

import re

from backend_hooks.contract.errors import InvalidInputError

_MAX_ID_LENGTH = 256
# Ids end up inside object names and Redis keys: no path separators, no braces (Redis
# Cluster hash tags), no whitespace or control characters.
_ID_PATTERN = re.compile(r"[A-Za-z0-9._:@+=-]+")


def validate_id(value: object, what: str) -> str:
    """Return ``value`` if it is a safe id, else raise ``InvalidInputError`` naming ``what``."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{what} must not be empty")
    if len(value) > _MAX_ID_LENGTH:
        raise InvalidInputError(f"{what} is longer than {_MAX_ID_LENGTH} characters")
    if value in (".", "..") or ".." in value:
        raise InvalidInputError(f"{what} {value!r} must not contain '..'")
    if not _ID_PATTERN.fullmatch(value):
        raise InvalidInputError(
            f"{what} {value!r} may only hold letters, digits and . _ : @ + = - "
            "(no '/', spaces, braces or control characters)"
        )
    return value
