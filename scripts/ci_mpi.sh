#!/usr/bin/env bash
# CI for the pool on MPI (about two minutes): installs Open MPI and MPICH
# when missing (Debian's packages coexist: mpicc.openmpi and mpicc.mpich,
# the plain names an alternative, Open MPI's by default), builds
# libmproc_mpi and its tests against Open MPI in their own build directory,
# runs them (3 oversubscribed ranks per test, each under a time limit: see
# tests/mpi/run.sh), builds the example against the installed library with
# `pkg-config mproc-mpi` only, as a user would; then builds them again
# against MPICH in a second directory and runs the tests MPICH can run
# (the losses there: the job ends, with a failure and nothing left).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-mpi}

build_mpich=${2:-build-mpich}

need=()
command -v mpicc.openmpi >/dev/null && command -v mpirun.openmpi >/dev/null ||
  need+=(libopenmpi-dev openmpi-bin)
command -v mpicc.mpich >/dev/null && command -v mpiexec.mpich >/dev/null ||
  need+=(libmpich-dev mpich)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ci_mpi: missing; run as root: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "ci_mpi: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Builds the MPI library and its tests in $1 against the MPI whose compiler
# wrapper and launcher follow, and runs the MPI tests there.
build_and_test() {
  local dir=$1 cc=$2 exec=$3
  shift 3
  cmake -S . -B "$dir" -DMPROC_WERROR=ON -DMPI_C_COMPILER="$cc" \
    -DMPIEXEC_EXECUTABLE="$exec" >/dev/null
  cmake --build "$dir" -j "$(nproc)" --target mproc mproc_static mproc_mpi \
    mpi_pool_test mpi_pool_test_other "$@" >"$dir/ci_mpi.log" 2>&1 ||
    { cat "$dir/ci_mpi.log"; exit 1; }
  (cd "$dir" && ctest -L mpi --output-on-failure -j 2)
}

build_and_test "$build" "$(command -v mpicc.openmpi)" \
  "$(command -v mpirun.openmpi)" mpi_pool_demo

# The installed library, found with pkg-config only.
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name mproc-mpi.pc | head -n 1)
[ -n "$pc" ] || { echo "ci_mpi: mproc-mpi.pc not installed" >&2; exit 1; }
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(dirname "$(dirname "$pc")")
mpicc.openmpi -std=c11 -D_GNU_SOURCE examples/mpi/mpi_pool_demo.c \
  $(pkg-config --cflags --libs mproc-mpi) -o "$prefix/demo"
root=()
[ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
LD_LIBRARY_PATH="$libdir" timeout 60 mpirun.openmpi "${root[@]}" -x LD_LIBRARY_PATH \
  --oversubscribe --bind-to none -np 2 "$prefix/demo" |
  grep -q "map of 600 squares on 2 ranks: success"
echo "ci_mpi: Open MPI: MPI tests passed; pkg-config mproc-mpi works"

# MPICH: the tests that need no --enable-recovery (CMake leaves the others
# out when the launcher is not Open MPI's), the losses among them.
export -f build_and_test
timeout 400 bash -euo pipefail -c 'build_and_test "$@"' build_and_test \
  "$build_mpich" "$(command -v mpicc.mpich)" "$(command -v mpiexec.mpich)"
echo "ci_mpi: MPICH: MPI tests passed"
