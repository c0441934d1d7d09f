"""``python -m audiosync_dev.chaos``: the command line (``audiosync_dev.chaos.cli``)."""

import sys

from audiosync_dev.chaos.cli import main

if __name__ == "__main__":
    sys.exit(main())
