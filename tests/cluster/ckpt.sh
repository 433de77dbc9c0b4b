#!/bin/sh
# tests/cluster/ckpt.sh: spacesim-ckpt on real files (issue 10, point 7). A
# spacesimd writes the checkpoint of a demo world on SIGTERM; the tool splits
# it over a 2x2 map for 3 nodes, the parts' totals equal the source's (count
# and canonical hash), they merge back to the same canonical hash, and a
# spacesimd resumes the merged file. Bad inputs are refused with exit 1:
# one part given twice (its ids in two parts), a corrupt file. No NATS.
set -u
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
CKPT=${SPACESIM_CKPT:-./src/cluster/spacesim-ckpt}
SRCDIR=${srcdir:-.}
. "$SRCDIR/tests/helpers/daemon.sh"
sp_daemon_setup ckpt TERM
fail() { echo "ckpt.sh: FAIL: $*" >&2; exit 1; }
[ -x "$CKPT" ] || fail "$CKPT missing (make src/cluster/spacesim-ckpt)"

sp_daemon_start 60 --demo-asteroids 2000 --demo-npcs 200 --checkpoint "$tmp/world.ckpt"
sp_daemon_stop || fail "spacesimd did not stop cleanly: $(cat "$tmp/daemon.log")"
[ -s "$tmp/world.ckpt" ] || fail "no checkpoint written on SIGTERM"

# "NAME: node N tick T entities E canonical H" -> "E H"
figures() { sed -n 's/.* entities \([0-9]*\) canonical \([0-9a-f]*\)$/\1 \2/p'; }
src=$("$CKPT" info "$tmp/world.ckpt" | figures)
[ -n "$src" ] || fail "info printed no figures"
"$CKPT" split "$tmp/world.ckpt" --cells 2x2 --owners 0,1,1,2 --out "$tmp/parts" >"$tmp/split.out" 2>&1 ||
    fail "split: $(cat "$tmp/split.out")"
for k in 0 1 2; do [ -s "$tmp/parts/node-$k.ckpt" ] || fail "no part for node $k"; done
[ ! -e "$tmp/parts/node-3.ckpt" ] || fail "a part for a node that owns no cell"
parts=$("$CKPT" info "$tmp/parts"/node-*.ckpt | sed -n 's/^total: entities \([0-9]*\) canonical \([0-9a-f]*\)$/\1 \2/p')
[ "$parts" = "$src" ] || fail "parts total '$parts', source '$src'"
grep -q 'move 3 2$' "$tmp/split.out" || fail "split did not print the ownership moves"

"$CKPT" merge --out "$tmp/merged.ckpt" "$tmp/parts"/node-*.ckpt >"$tmp/merge.out" 2>&1 ||
    fail "merge: $(cat "$tmp/merge.out")"
merged=$("$CKPT" info "$tmp/merged.ckpt" | figures)
[ "$merged" = "$src" ] || fail "merged '$merged', source '$src'"

# The one-process daemon resumes the merged world (and writes it again).
cp "$tmp/merged.ckpt" "$tmp/resume.ckpt"
rm -f "$tmp/port" # the first daemon's: wait for the new one's
sp_daemon_start 60 --checkpoint "$tmp/resume.ckpt"
sp_daemon_stop || fail "spacesimd did not resume the merged checkpoint: $(cat "$tmp/daemon.log")"
again=$("$CKPT" info "$tmp/resume.ckpt" | figures)
[ "${again%% *}" = "${src%% *}" ] || fail "resumed world has '${again%% *}' entities, source '${src%% *}'"

# Refusals: exit 1 and a message, no output file.
if "$CKPT" merge --out "$tmp/bad.ckpt" "$tmp/parts/node-1.ckpt" "$tmp/parts/node-1.ckpt" 2>"$tmp/err"; then
    fail "a part merged with itself"
fi
grep -q 'do not merge' "$tmp/err" || fail "no reason for the refused merge: $(cat "$tmp/err")"
[ ! -e "$tmp/bad.ckpt" ] || fail "a refused merge wrote its output"
head -c 100 "$tmp/world.ckpt" >"$tmp/short.ckpt"
if "$CKPT" info "$tmp/short.ckpt" 2>"$tmp/err"; then fail "a truncated checkpoint was read"; fi
grep -q 'not a world checkpoint' "$tmp/err" || fail "no reason for the truncated file: $(cat "$tmp/err")"
echo "ckpt.sh: ok: source, parts and merge agree ($src)"
