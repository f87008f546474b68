#!/usr/bin/env bash
# kernel-deps.sh installs and unpacks what the kernel checks (scripts/kernel-check.sh) need:
#   - bookworm contrib (a sources.list.d file) and from it nvidia-open-kernel-source 535.261.03,
#   - linux-headers-amd64 (whatever bookworm/bookworm-security currently serve), sparse, and
#     gdb (kernel-check reads the tracepoint record layout from the built object's DWARF),
#   - the 550.163.01 nvidia-open-kernel-source .deb from trixie contrib, fetched with a private
#     apt configuration under .cache/ and unpacked with dpkg-deb -x. Nothing from trixie is
#     ever installed: apt would pull a newer libc.
# It writes .cache/kernel/env.sh, which names the unpacked trees and the kernel headers.
# Idempotent and non-interactive; quick when everything is already there.
set -euo pipefail

WANT_535=535.261.03
WANT_550=550.163.01
PKG=nvidia-open-kernel-source

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=$ROOT/.cache/kernel
mkdir -p "$CACHE"
export DEBIAN_FRONTEND=noninteractive
APT_LOCK=(-o DPkg::Lock::Timeout=900)

die() { echo "kernel-deps: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root to install packages ($*)"; }

# --- 1. bookworm contrib -------------------------------------------------------------------
CONTRIB=/etc/apt/sources.list.d/vattn-bookworm-contrib.sources
if [ ! -f "$CONTRIB" ]; then
    need_root "adding $CONTRIB"
    cat >"$CONTRIB" <<'SRC'
# Added by vattn scripts/kernel-deps.sh: NVIDIA's open kernel module source lives in contrib.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get "${APT_LOCK[@]}" update -qq
fi

installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }

if ! installed "$PKG" || ! installed linux-headers-amd64 || ! installed sparse || ! installed xz-utils ||
   ! installed gdb; then
    need_root "installing $PKG linux-headers-amd64 sparse"
    cand=$(apt-cache policy "$PKG" | awk '/Candidate:/ {print $2}')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
        apt-get "${APT_LOCK[@]}" update -qq
        cand=$(apt-cache policy "$PKG" | awk '/Candidate:/ {print $2}')
    fi
    case "$cand" in
        "$WANT_535"-*) ;;
        *) die "bookworm contrib serves $PKG version '${cand:-none}', expected $WANT_535; update WANT_535 and the 535 patch series" ;;
    esac
    apt-get "${APT_LOCK[@]}" install -y -qq --no-install-recommends "$PKG" linux-headers-amd64 sparse xz-utils gdb >/dev/null
fi
have=$(dpkg-query -W -f='${Version}' "$PKG")
case "$have" in
    "$WANT_535"-*) ;;
    *) die "installed $PKG is version $have, expected $WANT_535" ;;
esac

# The headers linux-headers-amd64 currently points at: whatever bookworm serves today.
hdr_pkg=$(dpkg-query -W -f='${Depends}' linux-headers-amd64 | tr ',' '\n' | sed -n 's/^ *\(linux-headers-[^ ]*-amd64\).*/\1/p' | head -n1)
[ -n "$hdr_pkg" ] || die "cannot tell which headers linux-headers-amd64 depends on"
KREL=${hdr_pkg#linux-headers-}
SYSOUT=/usr/src/linux-headers-$KREL
SYSSRC=/usr/src/linux-headers-${KREL%-amd64}-common
[ -d "$SYSOUT" ] && [ -d "$SYSSRC" ] || die "kernel headers for $KREL not found under /usr/src"

# --- 2. unpack the 535 source -------------------------------------------------------------
unpack_tarball() { # $1 tarball, $2 destination (made fresh)
    local tmp="$2.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    tar -xf "$1" -C "$tmp"
    # Debian's tarball holds upstream's kernel-open/ contents under modules/nvidia-open-kernel/;
    # keep the folder that has nvidia-uvm/ and the top Makefile, so patches apply with -p1
    # relative to kernel-open/ (paths like nvidia-uvm/uvm.c), as in a DKMS source tree.
    local top
    top=$(dirname "$(find "$tmp" -maxdepth 4 -type d -name nvidia-uvm | head -n1)")
    [ -f "$top/Makefile" ] && [ -d "$top/nvidia" ] || die "$1 has no kernel-open tree (nvidia/, nvidia-uvm/, Makefile)"
    rm -rf "$2" && mv "$top" "$2" && rm -rf "$tmp"
}

SRC535=$CACHE/src/$WANT_535
if [ ! -f "$SRC535/.unpacked" ]; then
    tb=$(dpkg -L "$PKG" | grep -E '/usr/src/.*\.tar\.(xz|gz|bz2)$' | head -n1)
    [ -n "$tb" ] || die "$PKG installs no source tarball under /usr/src"
    mkdir -p "$CACHE/src"
    unpack_tarball "$tb" "$SRC535"
    touch "$SRC535/.unpacked"
fi

# --- 3. fetch and unpack the 550 source from trixie, never installing it -----------------
SRC550=$CACHE/src/$WANT_550
if [ ! -f "$SRC550/.unpacked" ]; then
    S=$CACHE/apt-trixie
    mkdir -p "$S/lists/partial" "$S/cache/archives/partial" "$S/debs"
    cat >"$S/sources.list" <<'SRC'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie contrib
SRC
    O=(-o "Dir::Etc::SourceList=$S/sources.list" -o Dir::Etc::SourceParts=/dev/null
       -o "Dir::State::Lists=$S/lists" -o "Dir::Cache=$S/cache" -o Debug::NoLocking=1)
    apt-get "${O[@]}" update -qq
    cand=$(apt-cache "${O[@]}" policy "$PKG" | awk '/Candidate:/ {print $2}')
    case "$cand" in
        "$WANT_550"-*) ;;
        *) die "trixie contrib serves $PKG version '${cand:-none}', expected $WANT_550; update WANT_550 and the 550 patch series" ;;
    esac
    (cd "$S/debs" && rm -f ./*.deb && apt-get "${O[@]}" download -qq "$PKG=$cand")
    deb=$(find "$S/debs" -name "${PKG}_*.deb" | head -n1)
    [ -n "$deb" ] || die "download of $PKG $cand from trixie produced no .deb"
    rm -rf "$S/x" && mkdir -p "$S/x"
    dpkg-deb -x "$deb" "$S/x"
    tb=$(find "$S/x/usr/src" -maxdepth 1 -name '*.tar.*' | head -n1)
    [ -n "$tb" ] || die "$deb holds no source tarball under /usr/src"
    mkdir -p "$CACHE/src"
    unpack_tarball "$tb" "$SRC550"
    rm -rf "$S/x"
    touch "$SRC550/.unpacked"
fi

cat >"$CACHE/env.sh.tmp" <<ENV
# written by scripts/kernel-deps.sh
NV535_SRC=$SRC535
NV550_SRC=$SRC550
KREL=$KREL
SYSSRC=$SYSSRC
SYSOUT=$SYSOUT
ENV
mv "$CACHE/env.sh.tmp" "$CACHE/env.sh"
echo "kernel-deps: ok (nvidia $WANT_535, $WANT_550; headers $KREL)"
