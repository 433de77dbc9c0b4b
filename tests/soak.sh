#!/bin/sh
# tests/soak.sh: run the daemon's network and Python suites many times in a
# row on a busy machine and count the failures per suite (issue 7, point 10).
# Not part of `make check`: it takes long (about 3-5 minutes per round on 2
# shared cores under ASan). The expected count is 0: a test that waits for
# "the next message" instead of its condition shows up here.
#
#   tests/soak.sh [-n ROUNDS] [-t MAX_SECONDS] [-j HOGS] [-m MULT] [BUILDDIR]
#
# BUILDDIR (default build-asan, the --enable-sanitizers --enable-debug
# build) must be configured and built. Each round runs, through the
# build's own `make check` (its test environment), the suites below under
# `nice -n 19` with CK_TIMEOUT_MULTIPLIER=MULT (default 3, as for the
# sanitizer build's make check) while HOGS (default 1) `yes`
# processes spin at normal priority. The run is bounded: ROUNDS rounds
# (default 20), and no new round starts after MAX_SECONDS (default 5400).
# Prints one line per round and a summary per suite; a failed suite's log
# is kept as BUILDDIR/soak/ROUND-SUITE.log. Exit status: 0 if nothing
# failed, 1 otherwise, 2 on bad usage.
set -u

rounds=20
max_s=5400
hogs=1
mult=3
while getopts n:t:j:m: opt; do
    case $opt in
    n) rounds=$OPTARG ;;
    t) max_s=$OPTARG ;;
    j) hogs=$OPTARG ;;
    m) mult=$OPTARG ;;
    *) echo "usage: $0 [-n ROUNDS] [-t MAX_SECONDS] [-j HOGS] [-m MULT] [BUILDDIR]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
build=${1:-build-asan}
if [ ! -f "$build/Makefile" ] || [ ! -x "$build/src/daemon/spacesimd" ]; then
    echo "soak.sh: $build is not a built build directory (configure --enable-sanitizers --enable-debug; make)" >&2
    exit 2
fi
build=$(cd "$build" && pwd)

SUITES="tests/net/check_daemon tests/net/check_malformed tests/net/check_resume tests/net/check_clients tests/net/check_fairness tests/net/check_ws"
SUITES="$SUITES tests/net/rpc_interop.sh tests/python/run.sh"
out="$build/soak"
mkdir -p "$out"

hog_pids=
stop_hogs() {
    for p in $hog_pids; do kill "$p" 2>/dev/null; done
    for p in $hog_pids; do wait "$p" 2>/dev/null; done
    hog_pids=
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM
i=0
while [ "$i" -lt "$hogs" ]; do
    yes >/dev/null &
    hog_pids="$hog_pids $!"
    i=$((i + 1))
done

# Per-suite failure counts, in variables fail_<n> (n = the suite's index).
n=0
for s in $SUITES; do n=$((n + 1)); eval "fail_$n=0"; done

start=$(date +%s)
done_rounds=0
r=1
while [ "$r" -le "$rounds" ]; do
    now=$(date +%s)
    if [ $((now - start)) -ge "$max_s" ]; then
        echo "soak.sh: time limit ($max_s s) reached before round $r"
        break
    fi
    t0=$now
    CK_TIMEOUT_MULTIPLIER=$mult nice -n 19 make -s -C "$build" check TESTS="$SUITES" >"$out/make.out" 2>&1
    line="round $r:"
    n=0
    for s in $SUITES; do
        n=$((n + 1))
        log="$build/${s%.sh}.log"
        trs="$build/${s%.sh}.trs"
        if grep -q '^:test-result: PASS' "$trs" 2>/dev/null; then
            line="$line ok"
        else
            eval "fail_$n=\$((fail_$n + 1))"
            name=$(basename "${s%.sh}")
            cp "$log" "$out/$r-$name.log" 2>/dev/null
            # What failed: Check's F/E lines, Python's FAIL/ERROR lines.
            why=$(grep -E ':[FE]:|^(FAIL|ERROR): ' "$log" 2>/dev/null | head -n 3 | tr '\n' ' ')
            line="$line FAIL($name: ${why:-see $out/$r-$name.log})"
        fi
    done
    echo "$line ($(($(date +%s) - t0)) s)"
    done_rounds=$r
    r=$((r + 1))
done
stop_hogs

echo "soak.sh: $done_rounds round(s) of $rounds in $(($(date +%s) - start)) s, nice -n 19 beside $hogs CPU hog(s)," \
    "CK_TIMEOUT_MULTIPLIER=$mult, build $build"
total=0
n=0
for s in $SUITES; do
    n=$((n + 1))
    eval "f=\$fail_$n"
    echo "  $s: $f failed of $done_rounds"
    total=$((total + f))
done
echo "soak.sh: $total failure(s)"
[ "$total" -eq 0 ]
