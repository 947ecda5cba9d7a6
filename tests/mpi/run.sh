#!/usr/bin/env bash
# Runs one MPI test under mpirun and checks what must hold around it:
#   run.sh EXPECT NP [mpirun options...] -- PROGRAM [ARGS...]
# EXPECT: ok (the launcher exits 0), fail (it exits nonzero: a rank was
# lost or the job was aborted), any. NP 0: the program part gives its own
# -np (several programs, MPMD). Rank 0 must print "mpi-test: PASS"; the
# run must end within its time limit; and no process of the run may be
# left afterwards (found by a tag in their environment, then killed by
# pid so that a failure does not leave them behind).
set -u
expect=$1 np=$2
shift 2
opts=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
shift
tag="mpt-$$-$RANDOM"
. "$(dirname "$0")/lib.sh"
mpt_launcher
[ "$np" != 0 ] && launcher+=(-np "$np")

limit=${MPT_TIMEOUT:-100}
start=$SECONDS
out=$(MPT_TAG=$tag timeout -k 5 "$limit" \
      "${launcher[@]}" "${opts[@]}" "$@" 2>&1)
status=$?
elapsed=$((SECONDS - start))
echo "$out"
# The marker files the ranks meet through (mpi_pool_test.c), should a
# failed run have left them.
rm -f /tmp/mpt-"$tag"-*

fail=0
mpt_check_leftovers "$tag" || fail=1
if [ "$elapsed" -ge "$limit" ]; then
  echo "run.sh: timed out"
  fail=1
fi
case $expect in
  ok) [ "$status" = 0 ] || { echo "run.sh: launcher status $status, expected 0"; fail=1; } ;;
  fail) [ "$status" != 0 ] || { echo "run.sh: launcher status 0, expected a failure"; fail=1; } ;;
esac
echo "$out" | grep -qx "mpi-test: PASS" || { echo "run.sh: rank 0 did not pass"; fail=1; }
exit $fail
