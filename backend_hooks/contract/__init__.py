"""The contract: the formats, names, keys and settings the pusher, the read side and the
fleet share. Its modules import one another and nothing else of the package: no libopus
at import (``codec`` loads it, and only a pusher or a reader imports ``codec``), no
Celery, no GCS (tests/unit/contract/test_import_directions.py)."""
