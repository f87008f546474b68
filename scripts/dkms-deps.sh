#!/usr/bin/env bash
# dkms-deps.sh installs what the DKMS end-to-end tests (tests/dkms) need on top of
# scripts/kernel-deps.sh: dkms and kmod from bookworm (main). Idempotent, non-interactive,
# quick when already installed. Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/kernel-deps.sh"
installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }
if ! installed dkms || ! installed kmod || ! installed patch; then
    [ "$(id -u)" = 0 ] || { echo "dkms-deps: must run as root" >&2; exit 1; }
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends dkms kmod patch >/dev/null ||
        { apt-get -o DPkg::Lock::Timeout=900 update -qq &&
          apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends dkms kmod patch >/dev/null; }
fi
command -v dkms >/dev/null || { echo "dkms-deps: dkms not on PATH after install" >&2; exit 1; }
echo "dkms-deps: ok ($(dkms --version 2>/dev/null | head -n1))"
