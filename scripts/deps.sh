#!/usr/bin/env bash
# Installs the Debian packages mproc builds and tests with, when missing.
# As root it runs apt-get; otherwise it prints the exact command to run.
set -eu

need=()
have_header() { [ -f "/usr/include/$1" ]; }
have_header cmocka.h || need+=(libcmocka-dev)
have_header openssl/hmac.h || need+=(libssl-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v cmake >/dev/null || need+=(cmake)
command -v python3 >/dev/null || need+=(python3)
# The fuzz target (scripts/fuzz.sh, run by CI) needs clang and its runtime.
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
  >/dev/null 2>&1 || need+=(libclang-rt-dev)

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "mproc: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "mproc: missing packages; run as root:" >&2
  echo "  apt-get install -y ${need[*]}" >&2
  exit 1
fi
