#!/usr/bin/env bash
# CI for the pool on MPI (about a minute): installs Open MPI when missing,
# builds libmproc_mpi and its tests in their own build directory, runs them
# (3 oversubscribed ranks per test, each under a time limit: see
# tests/mpi/run.sh), and builds the example against the installed library
# with `pkg-config mproc-mpi` only, as a user would.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-mpi}

if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ci_mpi: Open MPI missing; run as root: apt-get install -y libopenmpi-dev openmpi-bin" >&2
    exit 1
  fi
  echo "ci_mpi: installing libopenmpi-dev openmpi-bin" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends libopenmpi-dev openmpi-bin \
    >/dev/null
fi

cmake -S . -B "$build" -DMPROC_WERROR=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target mproc mproc_static mproc_mpi mpi_pool_test \
  mpi_pool_test_other mpi_pool_demo >"$build/ci_mpi.log" 2>&1 ||
  { cat "$build/ci_mpi.log"; exit 1; }
(cd "$build" && ctest -L mpi --output-on-failure -j 2)

# The installed library, found with pkg-config only.
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name mproc-mpi.pc | head -n 1)
[ -n "$pc" ] || { echo "ci_mpi: mproc-mpi.pc not installed" >&2; exit 1; }
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(dirname "$(dirname "$pc")")
mpicc -std=c11 -D_GNU_SOURCE examples/mpi/mpi_pool_demo.c \
  $(pkg-config --cflags --libs mproc-mpi) -o "$prefix/demo"
root=()
[ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
LD_LIBRARY_PATH="$libdir" timeout 60 mpirun "${root[@]}" -x LD_LIBRARY_PATH \
  --oversubscribe --bind-to none -np 2 "$prefix/demo" |
  grep -q "map of 600 squares on 2 ranks: success"
echo "ci_mpi: MPI tests passed; pkg-config mproc-mpi works"
