#!/bin/sh
# bench/lib13.sh [BUILD_DIR]: the rows issue 13's targets name, in one compact table.
#
# Runs bench_mpmc (only the rows the targets need, through SP_BENCH_ONLY), bench_stack and
# bench_arena from BUILD_DIR (default: build), each with its interleaved rounds, medians,
# regime probes and disturbance redo (bench/harness.h), keeps their full output in
# BUILD_DIR/lib13-*.log and prints one line per target:
#   row | ours | peer | ratio | target | met/missed | regime
# plus the machine line and the load average before and after. Every figure comes from
# the benchmark lines of this run; nothing is a constant. A peer that is not installed
# shows as "skipped" (quickstart.sh bench installs them).
#
# Environment: LIB13_ROUNDS (default 7 for the two-thread benches, 5 for the arena),
# LIB13_QUICK=0 for the full-size queue and stack runs (default --quick: 2M items,
# 1M pairs per thread per run, which is what the issue-13 figures used);
# LIB13_REPORT_ONLY=1 prints the table again from the logs of the last run.
set -eu

B=${1:-build}
[ -x "$B/bench/bench_mpmc" ] && [ -x "$B/bench/bench_stack" ] && [ -x "$B/bench/bench_arena" ] || {
    echo "lib13.sh: build the benchmarks first: make -C $B bench/bench_mpmc bench/bench_stack bench/bench_arena" >&2
    exit 2
}
R=${LIB13_ROUNDS:-7}
RA=${LIB13_ROUNDS:-5}
Q=--quick
[ "${LIB13_QUICK:-1}" = 0 ] && Q=
load() { cut -d' ' -f1-3 /proc/loadavg; }

L0=$(load)
if [ "${LIB13_REPORT_ONLY:-0}" = 0 ]; then
SP_BENCH_ONLY="sp_mpmc 1P1C,mutex+condvar ring 1P1C,plain Vyukov,ck_ring MPMC,DPDK rte_ring mp/mc 1P1C,moodycamel 1P1C,batch32,burst32" \
    "$B/bench/bench_mpmc" $Q --rounds "$R" >"$B/lib13-mpmc.log"
"$B/bench/bench_stack" $Q --rounds "$R" >"$B/lib13-stack.log"
"$B/bench/bench_arena" --rounds "$RA" >"$B/lib13-arena.log"
fi
L1=$(load)

cat "$B"/lib13-*.log | awk -v l0="$L0" -v l1="$L1" '
BEGIN {
    n = 0
    # subject line prefix (up to " vs "), baseline, short row name, target ratio
    t[++n] = "sp_mpmc 1P1C|mutex+condvar ring 1P1C|MPMC single vs mutex ring|10"
    t[++n] = "sp_mpmc 1P1C|plain Vyukov ring 1P1C|MPMC single vs plain Vyukov|1.0"
    t[++n] = "sp_mpmc batch32 1P1C|DPDK rte_ring mp/mc burst32 1P1C|MPMC batch32 vs DPDK mp/mc burst32|1.0"
    t[++n] = "sp_mpmc_burst mp/mc burst32 1P1C|DPDK rte_ring mp/mc burst32 1P1C|MPMC burst mode (*) vs DPDK mp/mc burst32|1.0"
    t[++n] = "sp_spsc batch32 1P1C|DPDK rte_ring sp/sc burst32 1P1C|SPSC FastForward batch32 vs DPDK sp/sc burst32|1.5"
    t[++n] = "sp_spsc_batch batch32 1P1C|DPDK rte_ring sp/sc burst32 1P1C|SPSC batch ring batch32 vs DPDK sp/sc burst32|1.5"
    t[++n] = "sp_mpmc_burst sp/sc burst32 1P1C|DPDK rte_ring sp/sc burst32 1P1C|burst ring sp/sc vs DPDK sp/sc burst32|1.5"
    t[++n] = "sp_stack 2T|ck_stack MPMC 2T|stack plain vs ck_stack|1.0"
    t[++n] = "sp_stack cached 2T|ck_stack MPMC 2T|stack cached vs ck_stack|1.5"
    t[++n] = "sp_arena, batches of 4096|glibc obstack (64 KiB chunks), batches of 4096|arena batches vs obstack 64K|2"
    t[++n] = "sp_arena, batches of 4096|mimalloc, batches of 4096|arena batches vs mimalloc|4"
    t[++n] = "sp_arena cursor, batches of 4096|glibc obstack (64 KiB chunks), batches of 4096|arena cursor batches vs obstack 64K|2"
    t[++n] = "sp_arena cursor, batches of 4096|mimalloc, batches of 4096|arena cursor batches vs mimalloc|4"
    t[++n] = "sp_arena, all live|glibc obstack (64 KiB chunks), all live|arena all-live vs obstack 64K|2"
    t[++n] = "sp_arena, all live|mimalloc, all live|arena all-live vs mimalloc|4"
    t[++n] = "sp_arena cursor, all live|glibc obstack (64 KiB chunks), all live|arena cursor all-live vs obstack 64K|2"
    t[++n] = "sp_arena cursor, all live|mimalloc, all live|arena cursor all-live vs mimalloc|4"
}
/^# [a-z]+: machine:/ { if (machine == "") { machine = $0; sub(/^# [a-z]+: /, "", machine); sub(/, [0-9]+ rounds.*/, "", machine) } }
/^# runs redone/ { r = $0; sub(/.*flips: /, "", r); sub(/;.*/, "", r); redo += r }
/^# runs redone/ { d = $0; sub(/.*times\): /, "", d); dist += d; d = $0; sub(/.*single-thread=/, "", d); sub(/;.*/, "", d); st += d; d = $0; sub(/.*near=/, "", d); sub(/ .*/, "", d); st += d; d = $0; sub(/.*far=/, "", d); sub(/ .*/, "", d); st += d }
/ vs .*: (skipped|[0-9.]+x)/ {
    line[$0] = 1
}
# Per-item MPMC peers against the mutex ring: the scale of the 10x target.
/^(plain Vyukov ring|ck_ring MPMC|DPDK rte_ring mp\/mc|moodycamel) 1P1C vs mutex\+condvar ring 1P1C: [0-9.]+x/ {
    r = $0; sub(/.*1P1C: /, "", r); sub(/x.*/, "", r)
    nm = $0; sub(/ 1P1C vs .*/, "", nm)
    fg = $0; sub(/^[^(]*\(/, "", fg); sub(/ .*/, "", fg)
    if (r + 0 > best + 0) { best = r; bestname = nm; bestfig = fg }
    mfig = $0; sub(/.*M items\/s vs /, "", mfig); sub(/ .*/, "", mfig)
}
# The all-live loop as bandwidth: the rate of each allocator and the STREAM-like write of the same bytes.
/, all live: [0-9.]+ GB\/s of objects handed out/ {
    nm = $0; sub(/, all live:.*/, "", nm)
    g = $0; sub(/.*, all live: /, "", g); sub(/ GB.*/, "", g); gbs[nm] = g
    w = $0; sub(/.*into fresh memory, /, "", w); sub(/ GB.*/, "", w); stream = w
}
END {
    printf "%-46s %-12s %-12s %-7s %-7s %-7s %s\n", "row", "ours", "peer", "ratio", "target", "status", "regime"
    for (i = 1; i <= n; i++) {
        split(t[i], f, "|")
        key = f[1] " vs " f[2] ": "
        found = ""
        for (l in line) if (index(l, key) == 1) found = l
        if (found == "") { printf "%-46s (row not in this run)\n", f[3]; continue }
        rest = substr(found, length(key) + 1)
        if (rest ~ /^skipped/) { printf "%-46s %s\n", f[3], rest; continue }
        ratio = rest; sub(/x.*/, "", ratio)
        figs = rest; sub(/^[^(]*\(/, "", figs); sub(/\).*/, "", figs)
        split(figs, v, " vs ")
        ours = v[1]; peer = v[2]
        sub(/ .*/, "", ours); sub(/ .*/, "", peer)
        regime = "1 thread"
        if (rest ~ /regime /) { regime = rest; sub(/.*regime /, "", regime); sub(/\].*/, "", regime) }
        status = (ratio + 0 >= f[4] + 0) ? "met" : "MISSED"
        printf "%-46s %-12s %-12s %-7s %-7s %-7s %s\n", f[3], ours, peer, ratio "x", ">=" f[4], status, regime
    }
    if (bestname != "")
        printf "best per-item MPMC peer vs the mutex ring, same run: %s %sx (%s vs %s M items/s); 10x the mutex ring = %.1f M items/s\n", bestname, best, bestfig, mfig, mfig * 10
    if (stream != "" && gbs["mimalloc"] != "" && gbs["glibc obstack (64 KiB chunks)"] != "")
        printf "all-live limit, same run: a loop that wrote at the STREAM-like rate into faulted-in memory (%s GB/s) would be %.2fx mimalloc and %.2fx obstack 64K; sp_arena writes at %s GB/s (%.2f of that rate), the cursor at %s\n", stream, stream / gbs["mimalloc"], stream / gbs["glibc obstack (64 KiB chunks)"], gbs["sp_arena"], gbs["sp_arena"] / stream, gbs["sp_arena cursor"]
    print "(*) sp_mpmc_burst_t gives up what DPDK gives up: a producer stalled mid-burst blocks the later ones"
    print "units: M items/s (queues), M pairs/s (stack), ns/object (arena; ratio = peer/ours); obstack with 64 KiB chunks is the faster obstack"
    print machine
    print "load average before " l0 ", after " l1 "; runs redone for disturbance or regime flips: " redo + 0
    print "samples marked disturbed (others over 5% of a CPU after the last redo, or preempted > 4 times in the run): " dist + 0 " of " st + 0 "; \"clean a/b\" in the regime column: the ratio uses undisturbed samples only"
}'
echo "full output: $B/lib13-mpmc.log $B/lib13-stack.log $B/lib13-arena.log"
