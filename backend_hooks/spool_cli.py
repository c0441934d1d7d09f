"""The public path of the spool command: ``python -m backend_hooks.spool_cli status|drain
[--watch]`` (the chart's spool drainer, the runbook). The command is
``backend_hooks.pusher.spool_cli``; this module runs it."""

import sys

from backend_hooks.pusher.spool_cli import main as main

if __name__ == "__main__":
    sys.exit(main())
