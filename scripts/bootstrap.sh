#!/usr/bin/env bash
# Idempotent development set-up (used by `make venv`):
#   - checks python3 >= 3.11 and the libopus shared library (installs it with apt-get as root),
#   - creates .venv and installs the project with its dev extras when pyproject.toml changed,
#   - puts the checkout on .venv's path (audiosync_dev is not in the wheel).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "bootstrap: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || die "python3 not found; install Python 3.11 or newer"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "Python >= 3.11 is required, but python3 is $(python3 -V 2>&1)"

has_opus() {
    python3 -c "import ctypes.util,sys; sys.exit(0 if ctypes.util.find_library('opus') else 1)"
}
if ! has_opus; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: libopus not found, installing libopus0 with apt-get" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopus0
        has_opus || die "libopus0 was installed but python still cannot find libopus"
    elif [ "$(uname -s)" = Darwin ]; then
        die "libopus not found; install it with: brew install opus"
    else
        die "libopus not found; install it with: sudo apt-get install libopus0"
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv" >&2
    python3 -m venv .venv
fi

if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "bootstrap: installing the project and its dev dependencies into .venv" >&2
    .venv/bin/pip install -q -e '.[dev]'
    touch .venv/.installed
fi

# The wheel ships backend_hooks and workers only; the development tree (audiosync_dev: local
# stack, chaos harness, demo) is imported from the checkout by every process of .venv.
.venv/bin/python - <<'PY'
import os, sysconfig
path = os.path.join(sysconfig.get_paths()["purelib"], "audiosync-checkout.pth")
with open(path, "w") as pth:
    pth.write(os.getcwd() + "\n")
PY
