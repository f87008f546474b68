#!/bin/sh
# deps-python.sh makes sure the Python tier can run on Debian 12: a python3
# (3.11 or newer) and its C headers, for the C extension
# (scripts/build-python-ext.sh). A python3 already on PATH (pyenv, a venv)
# is used as it is when it has its headers; otherwise Debian's python3 and
# python3-dev are installed. Idempotent and non-interactive.
set -eu

has_headers() {
	python3 -c 'import os, sys, sysconfig
sys.exit(0 if sys.version_info >= (3, 11) and os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' 2>/dev/null
}

if command -v python3 >/dev/null 2>&1 && has_headers; then
	exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends python3 python3-dev >/dev/null
if ! has_headers; then
	echo "deps-python: $(command -v python3) has no C headers (or is older than 3.11): the extension cannot build" >&2
	exit 1
fi
