#!/usr/bin/env bash
# e2e.sh: vattnctl install-driver / status / uninstall-driver against real DKMS, the
# installed bookworm headers and Debian's NVIDIA sources, for each version given
# (default: 535.261.03 550.163.01). No module is loaded. Run as root; called by
# dkms_test.go. For each version it first installs the stock driver with DKMS (package
# vattn-test-stock, standing in for a vendor install so nvidia.ko exists for the version
# check), and removes it again at the end. The rollback cases run for the first version
# (or VATTN_DKMS_ROLLBACK_VERSION; "none" skips them).
# Then, when 550.163.01 is among the versions (VATTN_DKMS_RENAMED=0 skips it), the path
# of a driver version with no series of its own (like the GPU machine's 580.159.04):
# Debian's 550.163.01 tree presented as 550.163.99 is installed with the 550.163.01
# series, and the same tree with a hook's anchor changed is refused before any change.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(535.261.03 550.163.01)
"$ROOT/scripts/dkms-deps.sh"
# shellcheck disable=SC1091
. "$ROOT/.cache/kernel/env.sh"
K=$KREL
W=$(mktemp -d /tmp/vattn-dkms-e2e.XXXXXX)
V="$W/vattnctl"
(cd "$ROOT" && go build -o "$V" ./cmd/vattnctl)
STOCK=vattn-test-stock
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "PASS: $*"; }

tarball_for() { # the Debian tarball of version $1
    case "$1" in
        535.*) dpkg -L nvidia-open-kernel-source | grep -E '^/usr/src/.*\.tar\.xz$' | head -n1 ;;
        550.*) local deb; deb=$(find "$ROOT/.cache/kernel/apt-trixie/debs" -name 'nvidia-open-kernel-source_550*.deb' | head -n1)
               [ -n "$deb" ] || fail "no 550 .deb (scripts/kernel-deps.sh)"
               mkdir -p "$W/x550" && dpkg-deb -x "$deb" "$W/x550"
               find "$W/x550/usr/src" -maxdepth 1 -name '*.tar.xz' | head -n1 ;;
    esac
}

stock_install() { # $1 version, $2 tarball
    if dkms status -m $STOCK -v "$1" -k "$K" 2>/dev/null | grep -q installed; then return; fi
    local d=/usr/src/$STOCK-$1
    rm -rf "$d" "$W/sx" && mkdir -p "$W/sx"
    tar -xf "$2" -C "$W/sx"
    mv "$(dirname "$(find "$W/sx" -maxdepth 4 -type d -name nvidia-uvm | head -n1)")" "$d"
    # 550.163.01 does not build on current bookworm kernels without the build-compat
    # patch from its series; a stock DKMS build needs it as much as ours.
    for p in "$ROOT"/kernel/nvidia-uvm-patch/series/"$1"/0000-build-compat-*.patch; do
        [ -f "$p" ] && patch -d "$d" -p1 --fuzz=0 -s <"$p"
    done
    cat >"$d/dkms.conf" <<CONF
PACKAGE_NAME="$STOCK"
PACKAGE_VERSION="$1"
MAKE[0]="'make' -j\$(nproc) KERNEL_UNAME=\${kernelver} NV_KERNEL_MODULES='nvidia nvidia-uvm' modules"
CLEAN="'make' KERNEL_UNAME=\${kernelver} clean"
BUILT_MODULE_NAME[0]="nvidia"
BUILT_MODULE_LOCATION[0]="."
DEST_MODULE_LOCATION[0]="/updates/dkms"
BUILT_MODULE_NAME[1]="nvidia-uvm"
BUILT_MODULE_LOCATION[1]="."
DEST_MODULE_LOCATION[1]="/updates/dkms"
CONF
    echo "installing stock $1 with DKMS (a full build)..."
    dkms add -m $STOCK -v "$1" >/dev/null
    dkms build -m $STOCK -v "$1" -k "$K" >"$W/stock-$1.log" 2>&1 || { tail -n 40 "$W/stock-$1.log"; fail "stock $1 build"; }
    dkms install -m $STOCK -v "$1" -k "$K" >>"$W/stock-$1.log" 2>&1 || { tail -n 40 "$W/stock-$1.log"; fail "stock $1 install"; }
}
stock_remove() {
    dkms remove -m $STOCK -v "$1" --all >/dev/null 2>&1 || true
    rm -rf "/usr/src/$STOCK-$1"
}

snapshot() { # the state compared before/after: dkms status, module tree, modprobe.d, depmod.d, /usr/src, /var/lib/dkms
    {
        echo "# dkms status"; dkms status 2>/dev/null | sort
        echo "# module tree"; (cd "/lib/modules/$K" && find . -path ./kernel -prune -o -print0 | sort -z | xargs -0 -I{} sh -c 'if [ -f "{}" ] && [ ! -L "{}" ]; then sha256sum "{}"; else echo "{}"; fi')
        echo "# modprobe.d"; sha256sum /etc/modprobe.d/* 2>/dev/null || true
        echo "# depmod.d"; sha256sum /etc/depmod.d/* 2>/dev/null || true
        echo "# /usr/src"; ls /usr/src
        echo "# /var/lib/dkms"; find /var/lib/dkms -maxdepth 3 | sort
    } >"$1"
}
same_as() { # $1 reference snapshot, $2 label
    snapshot "$W/now"
    diff -u "$1" "$W/now" >"$W/diff" || { cat "$W/diff"; fail "$2: machine differs from before"; }
    pass "$2: machine exactly as before"
}
resolves_stock() {
    modprobe -S "$K" --show-depends nvidia-uvm | tail -n1 | grep -q "/updates/dkms/nvidia-uvm.ko" ||
        fail "modprobe does not resolve nvidia-uvm to the stock file: $(modprobe -S "$K" --show-depends nvidia-uvm)"
}
expect_fail() { # $1 label, rest: command; must exit non-zero and leave the machine as in $W/before
    local label=$1; shift
    if "$@" >"$W/out" 2>&1; then cat "$W/out"; fail "$label: succeeded"; fi
    grep -q "rolled back\|install-driver:" "$W/out" || { cat "$W/out"; fail "$label: no rollback report"; }
    sed -n '$p' "$W/out"
    same_as "${REF:-$W/before}" "$label"
}

for ver in "${VERSIONS[@]}"; do
    TB=$(tarball_for "$ver")
    [ -f "$TB" ] || fail "no tarball for $ver"
    stock_install "$ver" "$TB"
    resolves_stock
    snapshot "$W/before"
    I=("$V" install-driver --kernel "$K" --source "$TB" --no-load)

    # dry run: prints the steps, changes nothing
    "${I[@]}" --dry-run >"$W/out" || { cat "$W/out"; fail "dry-run"; }
    grep -q "dkms build -m vattn-uvm -v $ver-vattn1 -k $K" "$W/out" || { cat "$W/out"; fail "dry-run lacks the build step"; }
    same_as "$W/before" "$ver dry-run"

    # rollback: a failure at each step leaves the machine as it was
    if [ "$ver" = "${VATTN_DKMS_ROLLBACK_VERSION:-${VERSIONS[0]}}" ]; then
        printf -- '--- a/nvidia-uvm/uvm.c\n+++ b/nvidia-uvm/uvm.c\n@@ -1,3 +1,3 @@\n-this line is not there\n+nor this\n context\n' >"$W/bad.patch"
        VATTNCTL_TEST_EXTRA_PATCH="$W/bad.patch" expect_fail "$ver bad patch" "${I[@]}"
        for step in record stage dkms-add; do
            VATTNCTL_TEST_FAIL_STEP=$step expect_fail "$ver failure after step $step" "${I[@]}"
        done
        other=550.163.01; [ "$ver" = 550.163.01 ] && other=535.261.03
        OTB=$(tarball_for "$other")
        expect_fail "$ver version mismatch (source $other)" "$V" install-driver --kernel "$K" --source "$OTB" --no-load
        "$ROOT/dkms/vattn-pre-install.sh" "$K" "$other" >/dev/null 2>&1 && fail "PRE_INSTALL accepted $other with nvidia.ko $ver"
        "$ROOT/dkms/vattn-pre-install.sh" "$K" "$ver" >/dev/null || fail "PRE_INSTALL refused the matching version"
        pass "$ver PRE_INSTALL refuses $other, accepts $ver"
        # missing headers: hide the build link; dkms build fails; rollback
        mv "/lib/modules/$K/build" "$W/build-link"
        trap 'mv "$W/build-link" "/lib/modules/$K/build"' EXIT
        snapshot "$W/before-nohdr"
        REF="$W/before-nohdr" VATTNCTL_TEST_SKIP_HEADER_CHECK=1 expect_fail "$ver missing headers" "${I[@]}"
        mv "$W/build-link" "/lib/modules/$K/build"
        trap - EXIT
        same_as "$W/before" "$ver headers restored"
        VATTNCTL_TEST_CORRUPT_STAGE=1 expect_fail "$ver build fails on its first object" "${I[@]}"
        grep -q "corrupted by VATTNCTL_TEST_CORRUPT_STAGE" /var/lib/vattnctl/build-"$ver"-vattn1-"$K".log ||
            fail "build log does not show the injected error"
        # after a real build and install: fail on the last step, everything undone
        VATTNCTL_TEST_FAIL_STEP=modprobe-conf expect_fail "$ver failure after dkms install" "${I[@]}"
    fi

    # install for real
    "${I[@]}" >"$W/out" 2>&1 || { cat "$W/out"; fail "$ver install-driver"; }
    pass "$ver install-driver"
    "$V" status --kernel "$K" -o json >"$W/status.json" || [ $? = 9 ] || fail "status exit code"
    python3 - "$W/status.json" "$ver" <<'PY' || fail "$ver status json"
import json, sys
s = json.load(open(sys.argv[1])); v = sys.argv[2]
assert s["dkms"]["state"] == "installed", s["dkms"]
assert s["installed_nvidia_version"] == v, s["installed_nvidia_version"]
assert s["modprobe_resolves"].endswith("/updates/dkms/nvidia-uvm-vattn.ko"), s["modprobe_resolves"]
assert s["redirected"] and s["installed_srcversion"], s
assert not s["driver_loaded"] and s["small_pages"].startswith("unavailable"), s
PY
    pass "$ver status shows the package installed and modprobe resolving to ours"
    modprobe -S "$K" --show-depends nvidia-uvm | grep -q -- "--ignore-install nvidia-uvm-vattn" || fail "redirect not seen by modprobe"
    modprobe -S "$K" --show-depends nvidia-uvm-vattn | tail -n1 | grep -q "/updates/dkms/nvidia-uvm-vattn.ko" || fail "nvidia-uvm-vattn does not resolve"
    [ "$(modinfo -k "$K" -F name nvidia-uvm-vattn)" = nvidia_uvm ] || fail "module name is not nvidia_uvm"
    pass "$ver modprobe -S $K --show-depends nvidia-uvm resolves to nvidia-uvm-vattn.ko"
    "${I[@]}" >"$W/out" 2>&1 && grep -q "already installed" "$W/out" || { cat "$W/out"; fail "second install"; }
    "$V" uninstall-driver >"$W/out" 2>&1 || { cat "$W/out"; fail "$ver uninstall-driver"; }
    ! grep -q "differs from before install" "$W/out" || { cat "$W/out"; fail "uninstall reports differences"; }
    same_as "$W/before" "$ver uninstall-driver"
    resolves_stock
    pass "$ver modprobe resolves to the stock nvidia-uvm.ko again"
    "$V" uninstall-driver >"$W/out" 2>&1 && grep -q "nothing to do" "$W/out" || { cat "$W/out"; fail "second uninstall"; }
    same_as "$W/before" "$ver second uninstall-driver"
    stock_remove "$ver"
done
# --- a version with no series of its own --------------------------------------------------
# Stand-in for NVIDIA's install of version $1: a module named nvidia that carries only
# the version (all install-driver and PRE_INSTALL read of it), built with DKMS.
standin_install() {
    local d=/usr/src/$STOCK-$1
    rm -rf "$d" && mkdir -p "$d"
    cat >"$d/nvidia.c" <<C
#include <linux/module.h>
MODULE_LICENSE("GPL");
MODULE_VERSION("$1");
MODULE_DESCRIPTION("vattn e2e stand-in for an NVIDIA $1 install: its version only");
C
    echo 'obj-m := nvidia.o' >"$d/Kbuild"
    cat >"$d/dkms.conf" <<CONF
PACKAGE_NAME="$STOCK"
PACKAGE_VERSION="$1"
BUILT_MODULE_NAME[0]="nvidia"
DEST_MODULE_LOCATION[0]="/updates/dkms"
CONF
    dkms add -m $STOCK -v "$1" >/dev/null
    dkms build -m $STOCK -v "$1" -k "$K" >"$W/standin.log" 2>&1 || { tail -n 20 "$W/standin.log"; fail "stand-in $1 build"; }
    dkms install -m $STOCK -v "$1" -k "$K" >>"$W/standin.log" 2>&1 || { tail -n 20 "$W/standin.log"; fail "stand-in $1 install"; }
    [ "$(modinfo -k "$K" -F version nvidia)" = "$1" ] || fail "stand-in: modinfo does not say $1"
}

RENAMED=550.163.99
if [ "${VATTN_DKMS_RENAMED:-1}" = 1 ] && printf '%s\n' "${VERSIONS[@]}" | grep -qx 550.163.01; then
    mkdir -p "$W/rx" && tar -xf "$(tarball_for 550.163.01)" -C "$W/rx"
    R=$(dirname "$(find "$W/rx" -maxdepth 4 -type d -name nvidia-uvm | head -n1)")
    grep -rlI --null -F 550.163.01 "$R" | xargs -0 sed -i "s/550\.163\.01/$RENAMED/g"
    cp -a "$R" "$W/broken"
    sed -i 's|// Try the test ioctls if none of the above matched|// Try the test ioctls last|' "$W/broken/nvidia-uvm/uvm.c"
    standin_install "$RENAMED"
    snapshot "$W/before"

    # the nearest proven series does not fit: refused with exit 3 before any change
    set +e
    "$V" install-driver --kernel "$K" --source "$W/broken" --no-load >"$W/out" 2>&1
    rc=$?
    set -e
    [ $rc = 3 ] || { cat "$W/out"; fail "$RENAMED, hooks' anchor gone: exit $rc, want 3"; }
    grep -q "NVIDIA $RENAMED has no vattn series of its own, and that of the nearest proven version, 550.163.01, does not apply" "$W/out" ||
        { cat "$W/out"; fail "$RENAMED refusal does not name the nearest proven version"; }
    grep -q "nvidia-uvm/uvm.c hunk 2" "$W/out" || { cat "$W/out"; fail "$RENAMED refusal does not name the hunk"; }
    pass "$RENAMED with a hook's anchor changed: refused (exit 3), naming 550.163.01 and the hunk"
    same_as "$W/before" "$RENAMED refusal"

    # the nearest proven series fits: built against this exact source, installed
    "$V" install-driver --kernel "$K" --source "$R" --no-load >"$W/out" 2>&1 || { cat "$W/out"; fail "$RENAMED install-driver"; }
    grep -q "series 550.163.01, package $RENAMED-vattn1" "$W/out" || { cat "$W/out"; fail "$RENAMED: not built with the 550.163.01 series"; }
    "$V" status --kernel "$K" -o json >"$W/status.json" || [ $? = 9 ] || fail "status exit code"
    python3 - "$W/status.json" <<'PY' || fail "$RENAMED status json"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["dkms"]["state"] == "installed", s["dkms"]
assert s["installed_nvidia_version"] == "550.163.99" and s["series"] == "550.163.01", s
assert s["modprobe_resolves"].endswith("/updates/dkms/nvidia-uvm-vattn.ko"), s["modprobe_resolves"]
PY
    [ "$(modinfo -k "$K" -F version nvidia-uvm-vattn)" = "$RENAMED" ] || fail "the built nvidia-uvm is not $RENAMED"
    pass "$RENAMED: the 550.163.01 series fits its source, built and installed with DKMS as $RENAMED-vattn1"
    "$V" uninstall-driver >"$W/out" 2>&1 || { cat "$W/out"; fail "$RENAMED uninstall-driver"; }
    same_as "$W/before" "$RENAMED uninstall-driver"
    stock_remove "$RENAMED"
fi
rm -rf "$W"
echo "e2e: ok (${VERSIONS[*]} on $K)"
