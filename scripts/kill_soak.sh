#!/usr/bin/env bash
# Runs the shared containers' kill tests (tests/test_containers.c: random
# SIGKILLs inside every operation, a death at every step of every change)
# again and again for SECONDS (default 60), under each start method in
# turn, with a fresh random seed each run: the single runs of `make test`
# see a few hundred kill instants, this sees thousands.
#   scripts/kill_soak.sh [SECONDS] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=${2:-build}
bin="$build/tests/test_containers"
[ -x "$bin" ] || { echo "kill_soak: $bin not built" >&2; exit 1; }
methods=(fork spawn forkserver)
end=$((SECONDS + seconds))
runs=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while [ $SECONDS -lt $end ]; do
  method=${methods[$((runs % 3))]}
  if ! MPROC_START_METHOD=$method timeout 600 "$bin" >"$log" 2>&1; then
    echo "kill_soak: run $((runs + 1)) ($method) failed:" >&2
    grep -vE '^\[ +(RUN|OK) ' "$log" >&2
    exit 1
  fi
  runs=$((runs + 1))
done
echo "kill_soak: $runs runs of test_containers, 0 failed"
