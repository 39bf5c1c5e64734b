#!/bin/sh
# Regenerates the goldens that OSTEP's malloc.py makes (every NAME.args but extension_*: fsm's
# NEXT policy, which malloc.py does not have) and the SOURCES manifest the test checks.
#
#   git clone https://github.com/remzi-arpacidusseau/ostep-homework /tmp/ostep   # outside the repo
#   MALLOC_PY=/tmp/ostep/vm-freespace/malloc.py crates/fsm/tests/golden/regenerate.sh
#
# malloc.py's code is not part of this repository; only its outputs are. NAME.out is its stdout,
# its exit status goes into SOURCES (1: it crashed with a Python exception, 2: optparse refused).
set -eu
cd "$(dirname "$0")"
: "${MALLOC_PY:?set MALLOC_PY to OSTEP's vm-freespace/malloc.py}"
PY=${PYTHON:-python3}
fnv() { "$PY" -c 'import sys
h = 0xcbf29ce484222325
for b in open(sys.argv[1], "rb").read():
    h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
print("%016x" % h)' "$1"; }
{
  echo "# How each golden was made (written by regenerate.sh; checked by tests/sim_golden.rs)."
  echo "# malloc.py: $(cd "$(dirname "$MALLOC_PY")" && git log -1 --format='ostep-homework %h (%cs)' -- malloc.py 2>/dev/null || echo 'OSTEP vm-freespace/malloc.py'), run with $("$PY" --version 2>&1)"
  echo "# NAME MAKER EXIT FNV-1a-64-of-NAME.out"
  for a in *.args; do
    n=${a%.args}
    case $n in
      extension_*) maker=fsm; rc=$(sed -n 's/^exit //p' "$a"); rc=${rc:-0} ;;
      *)
        maker=malloc.py
        set +e
        # shellcheck disable=SC2046 # the first line holds the arguments, split on spaces
        "$PY" "$MALLOC_PY" $(head -n 1 "$a") > "$n.out" 2>/dev/null
        rc=$?
        set -e
        ;;
    esac
    echo "$n $maker $rc $(fnv "$n.out")"
  done
} > SOURCES
