#!/usr/bin/env bash
# Installs missing Debian packages. Without arguments: what `make build`,
# `make demo` and `make test` need, each checked first -- libcmocka-dev (the
# test suite), libssl-dev (libcrypto, which the library loads for HMAC, and
# its tests), pkg-config, cmake, python3 (the interoperability tests).
# Nothing else: the fuzz step (clang), the docs (doxygen) and the benchmark
# chart (python3-matplotlib) call this script with their own packages:
#   scripts/deps.sh [PACKAGE...]   (named packages: the caller checked)
# As root it runs apt-get; otherwise, or without apt-get, it prints what is
# missing and fails.
set -eu

need=("$@")
if [ $# -eq 0 ]; then
  have_header() { [ -f "/usr/include/$1" ]; }
  have_header cmocka.h || need+=(libcmocka-dev)
  have_header openssl/hmac.h || need+=(libssl-dev)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  command -v cmake >/dev/null || need+=(cmake)
  command -v python3 >/dev/null || need+=(python3)
fi

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "mproc: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
elif command -v apt-get >/dev/null; then
  echo "mproc: missing packages; run as root:" >&2
  echo "  apt-get install -y ${need[*]}" >&2
  exit 1
else
  echo "mproc: missing (Debian package names): ${need[*]}" >&2
  exit 1
fi
