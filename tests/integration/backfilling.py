"""Shared by the backfill tests: the encryption secret their sealed legacy objects are
written with, the one the ``backfill_settings`` fixture (tests/integration/conftest.py)
opens them with."""

SECRET = "backfill-tests-secret-0123456789abcdef"
