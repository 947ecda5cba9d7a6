#!/usr/bin/env bash
# `make deb`: the Debian packages libmproc<major> (shared library) and
# libmproc-dev (headers, static library, mproc.pc, CMake package), made by
# CPack from a library-only build configured for /usr -- Debian's multiarch
# libdir (lib/x86_64-linux-gnu) and an mproc.pc with absolute paths.
#   scripts/deb.sh [BUILD]   (default build-deb; the .deb files land there)
# Install them with: apt-get install ./BUILD/libmproc*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-deb}
cmake -S . -B "$build" -DCMAKE_INSTALL_PREFIX=/usr \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROC_INSTALL=ON \
  -DMPROC_PC_RELOCATABLE=OFF -DMPROC_BUILD_TESTS=OFF \
  -DMPROC_BUILD_EXAMPLES=OFF -DMPROC_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
rm -f "$build"/*.deb
(cd "$build" && cpack -G DEB >/dev/null)
ls "$build"/*.deb
