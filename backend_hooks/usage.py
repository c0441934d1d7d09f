"""The public path of the usage counters: ``backend_hooks.usage`` (``UsageCounter``,
``periodic``; README). The module is ``backend_hooks.pusher.usage``;
this one re-exports its public names."""

from backend_hooks.pusher.usage import (
    EXPIRY_AFTER_MIDNIGHT_SECONDS as EXPIRY_AFTER_MIDNIGHT_SECONDS,
)
from backend_hooks.pusher.usage import FLUSH_INTERVAL_SECONDS as FLUSH_INTERVAL_SECONDS
from backend_hooks.pusher.usage import UsageCounter as UsageCounter
from backend_hooks.pusher.usage import budget_key as budget_key
from backend_hooks.pusher.usage import expires_at as expires_at
from backend_hooks.pusher.usage import periodic as periodic
