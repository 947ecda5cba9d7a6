#!/usr/bin/env bash
# Installs the build into a scratch prefix and builds the first example
# against it with pkg-config only, as a user would: once with the shared
# library, once with the static one.
set -euo pipefail
build=${1:-build}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name mproc.pc | head -n 1)
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
cc -std=c11 -D_GNU_SOURCE examples/seed_process.c \
  $(pkg-config --cflags --libs mproc) -o "$prefix/shared"
cc -std=c11 -D_GNU_SOURCE examples/seed_process.c $(pkg-config --cflags mproc) \
  "$libdir/libmproc.a" $(pkg-config --libs-only-l --static mproc |
    sed 's/-lmproc//') -o "$prefix/static"
LD_LIBRARY_PATH="$libdir" MPROC_START_METHOD=spawn "$prefix/shared" |
  grep -q "current sub process name : Process-3"
MPROC_START_METHOD=forkserver "$prefix/static" |
  grep -q "current sub process name : Process-3"
echo "install: pkg-config --cflags --libs mproc works; shared and static builds ran"
