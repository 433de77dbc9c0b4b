#!/bin/sh
# tests/daemon_layers.sh: the daemon's files keep their dependency order and
# pack nothing by hand (issue 8).
#  1. docs/ARCHITECTURE.md's ```layers block lists every module of src/daemon/
#     (x.c and/or x.h) once, lowest first; a file may include "daemon/y.h" only
#     for a module y listed above its own (or its own header). A module missing
#     from the list, a listed module with no file, or an include against the
#     order fails, naming the file and line.
#  2. No file under src/daemon/ calls msgpack_pack_* (proto packs the wire).
set -u
src=${SPACESIM_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
doc="$src/docs/ARCHITECTURE.md"
dir="$src/src/daemon"
fail=0
order=$(awk '/^```layers/{on=1; next} /^```/{on=0} on && NF {print $1}' "$doc")
if [ -z "$order" ]; then
    echo "daemon_layers: no \`\`\`layers block in $doc"
    exit 1
fi
rank_of() { echo "$order" | awk -v m="$1" '$1 == m {print NR; exit}'; }
for f in "$dir"/*.c "$dir"/*.h; do
    m=$(basename "$f"); m=${m%.*}
    if [ -z "$(rank_of "$m")" ]; then
        echo "daemon_layers: src/daemon/$(basename "$f"): module '$m' is not in the layers list of docs/ARCHITECTURE.md"
        fail=1
    fi
done
for m in $order; do
    if [ ! -e "$dir/$m.c" ] && [ ! -e "$dir/$m.h" ]; then
        echo "daemon_layers: docs/ARCHITECTURE.md lists '$m' but src/daemon/ has no $m.c or $m.h"
        fail=1
    fi
done
for f in "$dir"/*.c "$dir"/*.h; do
    m=$(basename "$f"); m=${m%.*}
    r=$(rank_of "$m")
    [ -n "$r" ] || continue
    grep -n '^#include "daemon/' "$f" | while IFS= read -r line; do
        ln=${line%%:*}
        dep=$(echo "$line" | sed 's|.*"daemon/\([a-z_]*\)\.h".*|\1|')
        [ "$dep" = "$m" ] && continue
        dr=$(rank_of "$dep")
        if [ -z "$dr" ] || [ "$dr" -ge "$r" ]; then
            echo "daemon_layers: src/daemon/$(basename "$f"):$ln includes daemon/$dep.h, which comes after '$m' in the layers of docs/ARCHITECTURE.md"
            echo x >> "${TMPDIR:-/tmp}/daemon_layers.$$"
        fi
    done
done
if [ -e "${TMPDIR:-/tmp}/daemon_layers.$$" ]; then
    rm -f "${TMPDIR:-/tmp}/daemon_layers.$$"
    fail=1
fi
if grep -n 'msgpack_pack_' "$dir"/*.c "$dir"/*.h; then
    echo "daemon_layers: the lines above pack msgpack by hand; every reply, event and notification is packed by proto"
    fail=1
fi
[ $fail -eq 0 ] && echo "daemon_layers: $(echo "$order" | wc -l) modules in order, no hand packing"
exit $fail
