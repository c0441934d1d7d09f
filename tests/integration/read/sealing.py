"""The encryption secret the read-side tests seal their objects with; the fixtures
``sealed_settings`` and ``sealed_sctx`` (tests/integration/read/conftest.py) open them."""

SECRET = b"read-tests-secret-0123456789abcdef012345"
