#!/usr/bin/env bash
# `make demo`: runs the tutorial's examples in C, then one per area.
# Output goes through a pipe, as in the tutorial's captured runs.
set -euo pipefail
build=${1:-build}
run() {
  local name=$1
  [ -x "$build/examples/$name" ] || return 0
  echo "==== examples/$name.c"
  "$build/examples/$name" | cat
  echo
}
run seed_process
run seed_subclass
run seed_daemon
run lock_counter
run pool_demo
# The pool on MPI, when the MPI library was built: 3 ranks on this host.
if [ -x "$build/examples/mpi_pool_demo" ] && command -v mpirun >/dev/null; then
  echo "==== examples/mpi/mpi_pool_demo.c (mpirun -np 3)"
  root=()
  [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
  mpirun "${root[@]}" --oversubscribe --bind-to none -np 3 \
    "$build/examples/mpi_pool_demo" | cat
  echo
fi
for script in scripts/demo_*.sh; do
  [ -x "$script" ] || continue
  echo "==== $script"
  "$script" "$build"
  echo
done
