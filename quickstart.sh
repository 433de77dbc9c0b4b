#!/usr/bin/env bash
# quickstart.sh: one entry point for a fresh Debian 12 machine.
#
#   ./quickstart.sh demo [spacesimd options]
#                           install what is missing, build, start spacesimd with a demo world
#   ./quickstart.sh test    install what is missing, build, run the whole test suite:
#                           make check (gcc, -Werror), again under ASan+UBSan, and the
#                           concurrency tests under ThreadSanitizer; then the whole tree,
#                           tests included, compiled with clang -Werror
#   ./quickstart.sh bench   install, build, run the benchmarks (make bench)
#   ./quickstart.sh cluster [contrib/cluster.sh options]
#                           install, build, start one world over 4 daemons on this machine:
#                           nats-server -js on a free port (store in a temporary folder), the
#                           daemons on ports 7777-7780, cells moved one per daemon
#
# Idempotent: packages already installed are not touched, configured build trees are
# reused, and make only rebuilds what changed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
mode=${1:-demo}
shift || true
jobs=$(nproc 2>/dev/null || echo 2)

# Debian packages the project needs (build, tests, the Python client's tests, the optional
# Concurrency Kit benchmark baseline; libedit and Lua for the clients, man-db to test their pages).
pkgs="gcc make autoconf automake libtool pkg-config libuv1-dev libmsgpack-dev check libck-dev python3 python3-msgpack"
pkgs="$pkgs libedit-dev liblua5.4-dev man-db python3-setuptools python3-pip"
# spacesimd's --config (libinih), sd_notify (libsystemd); the ops tests run systemd-analyze.
pkgs="$pkgs libinih-dev libsystemd-dev systemd"
# The web view (--http-port): libwebsockets and its libuv plugin (a separate package).
pkgs="$pkgs libwebsockets-dev libwebsockets-evlib-uv"
# The cluster (spacesimd --nats): nats.c to build, nats-server (JetStream) for its tests
# and for `./quickstart.sh cluster`.
pkgs="$pkgs libnats-dev nats-server"

install_missing() {
    local missing=()
    for p in $pkgs; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "quickstart: installing ${missing[*]}" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        else
            echo "quickstart: need root (or sudo) to apt-get install: ${missing[*]}" >&2
            exit 1
        fi
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

bootstrap() {
    if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
        autoreconf -fi
    fi
}

# build DIR [configure options...]: configure once into DIR, then make.
build() {
    local dir=$1
    shift
    mkdir -p "$dir"
    if [ ! -f "$dir/Makefile" ]; then
        (cd "$dir" && "$here/configure" -q "$@")
    fi
    make -s -C "$dir" -j"$jobs"
}

# check DIR TARGET [VAR=VALUE...]: run a test target; on failure show the failing tests' logs.
check() {
    local dir=$1 target=$2
    shift 2
    if ! env "$@" make -s -C "$dir" -j"$jobs" "$target"; then
        echo "quickstart: $target failed in $dir; test-suite.log follows" >&2
        cat "$dir/test-suite.log" >&2 || true
        exit 1
    fi
}

# promtool (Debian package prometheus) checks the metrics in make check; headless
# Chromium and python3-websockets drive the real-browser test of the web view;
# node runs the web view's decoder on hand-built snapshots (tests/web/decode.sh).
# clang: the tree must also build warning-free (-Werror) with clang (the test mode compiles
# everything, tests included, with it).
[ "$mode" = test ] && pkgs="$pkgs prometheus chromium python3-websockets nodejs clang"
# The benchmarks' peers (issue 13), needed by `make bench` only: DPDK rte_ring,
# moodycamel (a C++ header, so g++ for its shim), mimalloc and jemalloc.
[ "$mode" = bench ] && pkgs="$pkgs libdpdk-dev libconcurrentqueue-dev g++ libmimalloc-dev libjemalloc-dev"
install_missing
bootstrap

case "$mode" in
demo)
    build build
    echo "quickstart: starting spacesimd on 127.0.0.1:7777 with the demo world (Ctrl-C stops it;" >&2
    echo "quickstart: try build/clients/spacesim-cli map --spawn in another terminal)" >&2
    echo "quickstart: open the live view: http://127.0.0.1:8080/" >&2
    exec build/src/daemon/spacesimd --http-port 8080 --web-root "$here/web" "$@"
    ;;
test)
    build build
    check build check
    build build-asan --enable-sanitizers --enable-debug
    # ASan+UBSan at -O0 runs several times slower: deadlines in tests scale with this.
    check build-asan check CK_TIMEOUT_MULTIPLIER=3
    build build-tsan --enable-tsan
    check build-tsan check-stress CK_TIMEOUT_MULTIPLIER=10
    # clang, -Werror: the daemon, the clients and every test program compile (TESTS= runs none).
    build build-clang CC=clang
    check build-clang check TESTS=
    make -s -C build-clang -j"$jobs" bench-build
    echo "quickstart: all tests passed (default, ASan+UBSan, TSan stress; clang build clean)"
    ;;
bench)
    build build
    make -s -C build bench
    ;;
cluster)
    build build
    exec "$here/contrib/cluster.sh" build "$@"
    ;;
*)
    echo "usage: $0 demo|test|bench|cluster" >&2
    exit 2
    ;;
esac
