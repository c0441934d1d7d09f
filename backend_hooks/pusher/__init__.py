"""The pusher: ``AudioSyncClient``, its sessions, the transport to Redis, the spool on
local disk and its drainer, the usage counters. Its public faces are ``backend_hooks``
(``AudioSyncClient``, ``Session``), ``backend_hooks.usage`` and ``python -m
backend_hooks.spool_cli``."""
