#!/usr/bin/env bash
# The suite's programs under valgrind's leak checker, in the main process
# (children are forked copies; their memory is the parent's). Only the fork
# method: under spawn the program to exec would be valgrind itself. The
# arena is kept small, since the leak scan reads all of it. Slow: minutes.
set -euo pipefail
build=${1:-build}
export MPROC_START_METHOD=fork MPROC_ARENA_SIZE=512M
status=0
for t in "$build"/tests/test_*; do
  case $(basename "$t") in
  test_start | test_examples) continue ;; # spawn / timing-bound programs
  esac
  if valgrind -q --child-silent-after-fork=yes --leak-check=full \
    --errors-for-leak-kinds=definite --error-exitcode=9 "$t" >"$t.valgrind.log" 2>&1; then
    echo "valgrind: $(basename "$t"): clean"
  else
    echo "valgrind: $(basename "$t"): FAILED (see $t.valgrind.log)"
    status=1
  fi
done
exit $status
