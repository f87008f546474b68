#!/usr/bin/env bash
# kernel-check.sh: the checks of the patched nvidia-uvm that run without a GPU.
#
#   scripts/kernel-check.sh [--no-deps] [VERSION...]     (default: the versions Debian
#                                                         serves: 535.261.03, 550.163.01)
#
# For each NVIDIA branch (535.261.03, 550.163.01) against the bookworm kernel headers:
#   0. tools/series proves the version's own series exact: every hunk applies with no
#      fuzz where its text occurs once, at the line its header names (the code
#      install-driver applies series with);
#   1. the series applies with no fuzz (patch -p1 --fuzz=0) after our files are copied in;
#   2. the unpatched tree (plus only the labelled build-compat patches) builds: baseline;
#   3. the patched tree builds nvidia.ko and nvidia-uvm.ko;
#   4. no compiler warning names one of our files;
#   5. no warning is new compared with the baseline build;
#   6. sparse reports nothing for our files;
#   7. the two tracepoints exist and their record has the contract's fields, in order
#      (read from the built object's DWARF with gdb; see uvm_vattn_ioctl.h).
# Plus the userspace build of uvm_vattn.c under ASan/UBSan (tests/kernel/shim).
#
# Builds are cached under .cache/kernel/build, keyed by the source version, the kernel
# headers and a hash of the series and our files: a re-run with nothing changed only
# re-reads logs. The baseline tree is built in the same folder the patched build then
# reuses, so the patched build recompiles only what the patch touches.
# Non-interactive, idempotent; exits non-zero if any check fails; the last line is
# "N passed, N failed".
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATCHDIR=$ROOT/kernel/nvidia-uvm-patch
CACHE=$ROOT/.cache/kernel
BUILD=$CACHE/build
# Bump when the way trees are built changes (invalidates cached baselines).
RECIPE=1
JOBS=${KERNEL_CHECK_JOBS:-$(nproc)}

deps=1
versions=()
for a in "$@"; do
    case "$a" in
        --no-deps) deps=0 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) versions+=("$a") ;;
    esac
done
# The other series (570 to 595) have no Debian source: scripts/kernel-compile-check.sh
# checks them by hand against the public tags.
[ ${#versions[@]} -gt 0 ] || versions=(535.261.03 550.163.01)

passed=0
failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

if [ "$deps" = 1 ]; then
    if "$ROOT/scripts/kernel-deps.sh"; then pass "kernel-deps"; else fail "kernel-deps"; finish; fi
fi
if [ ! -f "$CACHE/env.sh" ]; then
    fail "kernel-deps not run: $CACHE/env.sh missing (run scripts/kernel-deps.sh)"
    finish
fi
# shellcheck disable=SC1091
. "$CACHE/env.sh"

OUR_FILES=(uvm_vattn.c uvm_vattn_os.h uvm_vattn_ioctl.h uvm_vattn_kernel.c
           uvm_vattn_kernel.h uvm_vattn_hooks.h uvm_vattn_trace.h)

src_of() {
    case "$1" in
        535.261.03) echo "$NV535_SRC" ;;
        550.163.01) echo "$NV550_SRC" ;;
        *) echo "" ;;
    esac
}

hash_files() { cat "$@" | sha256sum | cut -c1-16; }

# Warnings of a build log as "file: message" lines, paths made relative to the tree
# and line/column numbers dropped, so two builds compare by content.
warnings_of() { # $1 log, $2 tree
    grep -E '(warning|error): ' "$1" | sed -e "s|$2/||g" -e 's|^\([^:]*\):[0-9]*:[0-9]*:|\1:|' | sort -u
}

make_tree() { # $1 make target dir, extra args...
    local dir=$1; shift
    make -C "$dir" -j"$JOBS" modules SYSSRC="$SYSSRC" SYSOUT="$SYSOUT" \
        NV_KERNEL_MODULES="nvidia nvidia-uvm" "$@"
}

check_version() {
    local ver=$1
    local src series tree base_key patched_key compat=() all=() p
    src=$(src_of "$ver")
    series=$PATCHDIR/series/$ver
    if [ -z "$src" ] || [ ! -d "$src" ] || [ ! -f "$series/series" ]; then
        fail "$ver: no source tree or series (known: 535.261.03, 550.163.01)"
        return
    fi
    while read -r p; do
        [ -z "$p" ] && continue
        all+=("$series/$p")
        case "$p" in 0000-build-compat-*) compat+=("$series/$p") ;; esac
    done <"$series/series"

    if (cd "$ROOT" && go run ./kernel/nvidia-uvm-patch/tools/series prove -exact "$src") >"$CACHE/prove-$ver.log" 2>&1; then
        pass "$ver: $(tail -n1 "$CACHE/prove-$ver.log")"
    else
        fail "$ver: tools/series prove -exact:"; tail -n5 "$CACHE/prove-$ver.log"
    fi

    tree=$BUILD/$ver-$KREL
    base_key=$(printf '%s\n' "$ver" "$KREL" "$RECIPE" | cat - "${compat[@]}" | sha256sum | cut -c1-16)
    patched_key=$(printf '%s\n' "$base_key" | cat - "${all[@]}" "${OUR_FILES[@]/#/$PATCHDIR/}" | sha256sum | cut -c1-16)
    mkdir -p "$BUILD"

    # --- baseline: pristine source + build-compat patches, built in $tree ---------------
    if [ ! -f "$tree.base/$base_key.ok" ] && [ ! -f "$tree.base/$base_key.failed" ]; then
        echo "building $ver baseline against $KREL (a few minutes)..."
        rm -rf "$tree" "$tree.base" && mkdir -p "$tree.base"
        cp -a "$src" "$tree"
        for p in "${compat[@]}"; do
            (cd "$tree" && patch -p1 --fuzz=0 --no-backup-if-mismatch -s <"$p") >"$tree.base/compat.log" 2>&1 ||
                { touch "$tree.base/$base_key.failed"; break; }
        done
        if [ ! -f "$tree.base/$base_key.failed" ]; then
            local t0=$SECONDS
            if make_tree "$tree" >"$tree.base/build.log" 2>&1; then
                echo $((SECONDS - t0)) >"$tree.base/seconds"
                cp -a "$tree" "$tree.base/tree"      # snapshot, same mtimes, restored in place
                touch "$tree.base/$base_key.ok"
            else
                touch "$tree.base/$base_key.failed"
            fi
        fi
        rm -f "$tree.patched"/*.ok "$tree.patched"/*.failed 2>/dev/null
    fi
    local base_secs
    base_secs=$(cat "$tree.base/seconds" 2>/dev/null || true)
    if [ -f "$tree.base/$base_key.ok" ]; then
        pass "$ver: unpatched tree (with build-compat patches) builds against $KREL${base_secs:+ (${base_secs}s when built)}"
    else
        fail "$ver: unpatched tree does not build; see $tree.base/build.log $tree.base/compat.log"
        return
    fi

    # --- patched: restore the baseline tree in place, add our files, apply, rebuild ------
    local pd=$tree.patched
    if [ ! -f "$pd/$patched_key.done" ]; then
        echo "building $ver with the vattn series..."
        rm -rf "$tree" "$pd" && mkdir -p "$pd"
        cp -a "$tree.base/tree" "$tree"
        cp "${OUR_FILES[@]/#/$PATCHDIR/}" "$tree/nvidia-uvm/"
        local applied=1
        for p in "${all[@]}"; do
            case "$p" in */0000-build-compat-*) continue ;; esac
            if ! (cd "$tree" && patch -p1 --fuzz=0 --no-backup-if-mismatch <"$p") >>"$pd/patch.log" 2>&1; then
                applied=0
                break
            fi
        done
        echo "$applied" >"$pd/applied"
        if [ "$applied" = 1 ]; then
            local t1=$SECONDS
            make_tree "$tree" >"$pd/build.log" 2>&1
            echo $? >"$pd/build.rc"
            echo $((SECONDS - t1)) >"$pd/seconds"
            # sparse on our files only: touch them and let kbuild re-run just those
            # objects with C=1 (check what is recompiled).
            touch "$tree/nvidia-uvm/uvm_vattn.c" "$tree/nvidia-uvm/uvm_vattn_kernel.c"
            make_tree "$tree" C=1 CHECK=sparse >"$pd/sparse.log" 2>&1
            echo $? >"$pd/sparse.rc"
        fi
        touch "$pd/$patched_key.done"
    fi

    if [ "$(cat "$pd/applied")" = 1 ] && ! grep -qiE 'fuzz|offset [0-9]+ lines|hunk .*FAILED' "$pd/patch.log"; then
        pass "$ver: series applies with -p1 --fuzz=0, no offsets"
    elif [ "$(cat "$pd/applied")" = 1 ]; then
        pass "$ver: series applies with -p1 --fuzz=0 (with line offsets; see $pd/patch.log)"
    else
        fail "$ver: series does not apply; see $pd/patch.log"
        return
    fi
    if [ "$(cat "$pd/build.rc")" = 0 ] && [ -f "$tree/nvidia-uvm.ko" ] && [ -f "$tree/nvidia.ko" ]; then
        pass "$ver: patched tree builds nvidia.ko and nvidia-uvm.ko against $KREL (incremental $(cat "$pd/seconds" 2>/dev/null)s)"
    else
        fail "$ver: patched build failed; see $pd/build.log"
        return
    fi
    local ours new
    ours=$(grep -E '(warning|error): ' "$pd/build.log" | grep -E 'uvm_vattn' || true)
    if [ -z "$ours" ]; then
        pass "$ver: no compiler warning from our files"
    else
        fail "$ver: warnings from our files:"; echo "$ours" | head -20
    fi
    new=$(comm -13 <(warnings_of "$tree.base/build.log" "$tree") <(warnings_of "$pd/build.log" "$tree"))
    if [ -z "$new" ]; then
        pass "$ver: no warning new compared with the unpatched build"
    else
        fail "$ver: new warnings:"; echo "$new" | head -20
    fi
    local sp
    sp=$(grep -E 'uvm_vattn[a-z_]*\.[ch]:[0-9]+:[0-9]+: ' "$pd/sparse.log" || true)
    if [ "$(cat "$pd/sparse.rc")" = 0 ] && grep -q 'CHECK .*uvm_vattn_kernel.c' "$pd/sparse.log" &&
       grep -q 'CHECK .*uvm_vattn.c' "$pd/sparse.log" && [ -z "$sp" ]; then
        pass "$ver: sparse clean on our files"
    else
        fail "$ver: sparse on our files (see $pd/sparse.log):"; echo "$sp" | head -20
    fi
    check_tracepoints "$ver" "$tree"
}

# The tracepoint record as the contract (tracepoint-contract.md, uvm_vattn_ioctl.h)
# fixes it: after the common trace_entry, these fields in this order.
CONTRACT_FIELDS="__u8 gpu_uuid[16]; __u64 page_size; __u32 count; __u32 done; __u32 status; __u32 pad; __u64 duration_ns;"

check_tracepoints() { # $1 version, $2 tree
    local obj=$2/nvidia-uvm/uvm_vattn_kernel.o got events
    if ! command -v gdb >/dev/null; then
        fail "$1: gdb missing (scripts/kernel-deps.sh installs it)"
        return
    fi
    got=$(gdb -batch -ex 'ptype struct trace_event_raw_vattn_batch' "$obj" 2>/dev/null |
          sed -n 's/^ *\(__u[0-9]* [a-z_]*\(\[16\]\)\{0,1\};\)$/\1/p' | tr '\n' ' ' | sed 's/ $//')
    events=$(nm "$obj" 2>/dev/null | grep -oE '__tracepoint_vattn_[a-z]+$' | sort -u | tr '\n' ' ')
    if [ "$got" = "$CONTRACT_FIELDS" ] && [ "$events" = "__tracepoint_vattn_map __tracepoint_vattn_unmap " ]; then
        pass "$1: tracepoints vattn_{map,unmap} with the contract's fields in order"
    else
        fail "$1: tracepoint layout: fields '$got', events '$events'"
    fi
}

check_userspace() {
    local out bin=$CACHE/vattn_test
    mkdir -p "$CACHE"
    if ! gcc -std=gnu11 -O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined \
        -fno-sanitize-recover=all -fno-omit-frame-pointer -DUVM_VATTN_USERSPACE \
        -I "$PATCHDIR" -I "$ROOT/tests/kernel/shim" -o "$bin" "$PATCHDIR/uvm_vattn.c" \
        "$ROOT/tests/kernel/shim/shim.c" "$ROOT/tests/kernel/shim/vattn_test.c" 2>"$CACHE/vattn_test.build.log"; then
        fail "userspace uvm_vattn.c build under ASan/UBSan; see $CACHE/vattn_test.build.log"
        return
    fi
    if out=$("$bin" 20261125 200000 2>&1) && echo "$out" | grep -q 'vattn_test: ok'; then
        pass "userspace uvm_vattn.c tests under ASan/UBSan ($(echo "$out" | grep -o '[0-9]* hostile argument sets'))"
    else
        fail "userspace uvm_vattn.c tests:"; echo "$out" | tail -20
    fi
}

check_userspace
for v in "${versions[@]}"; do
    check_version "$v"
done
finish
