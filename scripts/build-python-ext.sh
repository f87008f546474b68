#!/usr/bin/env bash
# Build python/vattn's C extension, _fast.abi3.so: the step calls without
# ctypes (python/vattn/_fast.c). It is built against Python 3.11's limited
# C API, so one build loads on every CPython from 3.11 on (the GPU
# machine's too); the package uses it when it is there and falls back to
# ctypes otherwise. Safe to re-run; the output is git-ignored.
#   scripts/build-python-ext.sh [DEST_DIR]   (default: python/vattn)
# PYTHON picks the interpreter whose headers are used (default python3);
# it must be 3.11 or newer.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-python/vattn}
py=${PYTHON:-python3}
inc=$("$py" -c 'import sys, sysconfig
if sys.version_info < (3, 11):
    sys.exit("the extension needs Python 3.11 or newer (its limited API has the buffer protocol); %s is %s" % (sys.executable, sys.version.split()[0]))
print(sysconfig.get_paths()["include"])')
if [[ ! -f $inc/Python.h ]]; then
	echo "build-python-ext: $inc/Python.h is missing (Debian/Ubuntu: apt-get install python3-dev)" >&2
	exit 1
fi
mkdir -p "$dest"
out=$dest/_fast.abi3.so
# Built beside its final name and renamed, so a running process that has
# the old one mapped keeps it intact.
tmp=$(mktemp "$dest/._fast.XXXXXX")
trap 'rm -f "$tmp"' EXIT
${CC:-gcc} -O2 -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden \
	-I "$inc" -o "$tmp" python/vattn/_fast.c
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
echo "$out"
