#!/usr/bin/env bash
# CI: mproc beyond the machine it is built on (issue 12). Each part is
# time-boxed; the whole stays well under 25 minutes on 2 cores.
#
#   kernels   the suite (ctest) under tools/seccomp_run.c's profiles: 5.4
#             (Ubuntu 20.04), 4.18 (RHEL 8: no pidfds) and eperm (a
#             container sandbox refusing new calls with EPERM); 5.3
#             (pidfds without waitid(P_PIDFD)) at reduced scale: the
#             process and examples tests only; each profile's answers are
#             probed first; below the range (3.16: no memfd_create,
#             no getrandom) a start must fail with an error at once;
#             getrandom alone refused (strace's fault injection): examples
#             run on /dev/urandom
#   clang     the library, examples and suite built with clang at -O0
#   bullseye  build with -Werror and run the suite in a Debian 11 chroot
#             (glibc 2.31, gcc 10, kernel headers 5.10, OpenSSL 1.1 runtime
#             only), made with debootstrap and cached in $MPROC_CI_CACHE;
#             then the suite there under the 5.4 profile (Ubuntu 20.04)
#   musl      the library and the examples built with musl-gcc, statically
#             and dynamically; every example under every start method
#   aarch64   cross build (library, examples, bench, tests) with
#             gcc-aarch64-linux-gnu and Debian's arm64 cmocka (cached);
#             under qemu-user, at reduced scale, the examples and 9 of the
#             16 test programs, with the fork method only: without
#             binfmt_misc an exec'd aarch64 child cannot start (no spawn,
#             no forkserver), and qemu has no robust futex lists (no death
#             tests)
#
# Usage: scripts/ci_portability.sh [BUILD_DIR]   (BUILD_DIR: a configured
# build of this tree, `make test`'s build/ by default). As root: installs
# what it needs with apt-get, mounts /proc and /dev into the chroot.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
build=$(realpath -m -- "${1:-build}")
work=${MPROC_CI_WORK:-/tmp/mproc-ci-portability}
cache=${MPROC_CI_CACHE:-/var/cache/mproc-ci}
jobs=${JOBS:-2}

# ---- parts, each run as `$0 --part NAME` under timeout ----------------------

need_packages() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "portability: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The suite's summary line, and a non-zero status when something failed.
suite() {
  local log=$1
  shift
  if "$@" >"$log" 2>&1; then
    grep -E "tests passed" "$log"
  else
    grep -E "tests passed|\*\*\*|Failed|Timeout" "$log" | tail -n 20
    return 1
  fi
}

part_kernels() {
  cc -O2 -Wall -Wextra -Werror -o "$work/seccomp_run" tools/seccomp_run.c
  local run="$work/seccomp_run"
  # Each profile answers as the kernel or sandbox it stands for.
  declare -A want=(
    [5.4]="pidfd_open ok|waitid(P_PIDFD) ok|close_range ENOSYS|futex_waitv ENOSYS"
    [5.3]="pidfd_open ok|waitid(P_PIDFD) EINVAL|close_range ENOSYS"
    [4.18]="pidfd_open ENOSYS|pidfd_send_signal ENOSYS|waitid(P_PIDFD) EINVAL|close_range ENOSYS"
    [eperm]="pidfd_open EPERM|close_range EPERM|futex_waitv EPERM"
    [3.16]="getrandom ENOSYS|pidfd_open ENOSYS")
  for p in "${!want[@]}"; do
    local got
    got=$("$run" "$p" --probe)
    IFS='|' read -ra lines <<<"${want[$p]}"
    for l in "${lines[@]}"; do
      grep -qxF "$l" <<<"$got" ||
        { echo "seccomp_run $p: expected '$l', got: $got"; return 1; }
    done
  done
  [ -f "$build/CTestTestfile.cmake" ] ||
    { cmake -S . -B "$build" -DMPROC_WERROR=ON >/dev/null &&
      cmake --build "$build" -j "$jobs" >/dev/null; }
  local rc=0
  # Below the supported range: an error at once, not a hang or a spin.
  local out code=0
  out=$(cd "$build" && timeout 30 "$run" 3.16 examples/seed_process 2>&1) || code=$?
  if [ $code -eq 0 ] || [ $code -eq 124 ] || ! grep -q "start: " <<<"$out"; then
    echo "kernel profile 3.16: expected a start error, got status $code: $out"
    rc=1
  else
    echo "kernel profile 3.16: start fails with \"$(grep "start: " <<<"$out")\""
  fi
  # getrandom refused alone: /dev/urandom serves (strace injects the error).
  command -v strace >/dev/null || need_packages strace
  local m ok=0
  for m in fork spawn forkserver; do
    (cd "$build" && MPROC_START_METHOD=$m timeout 60 strace -f -qq -o /dev/null \
      -e trace=getrandom -e inject=getrandom:error=ENOSYS \
      examples/seed_process >"$work/nogetrandom-$m.out" 2>&1) && ok=$((ok + 1))
  done
  echo "getrandom refused: seed_process $ok/3 start methods"
  [ $ok -eq 3 ] || rc=1
  for p in 5.4 4.18 eperm 5.3; do
    local only=()
    [ "$p" = 5.3 ] && only=(-R 'test_process|test_examples')
    echo -n "kernel profile $p: "
    # The MPI tests run under Open MPI's launcher, outside these profiles'
    # claims (scripts/ci_mpi.sh runs them on the host kernel).
    (cd "$build" && suite "$work/ctest-$p.log" timeout 300 "$run" "$p" \
      ctest -j "$jobs" --timeout 150 --output-on-failure -LE mpi "${only[@]}") || rc=1
  done
  return $rc
}

part_clang() {
  command -v clang >/dev/null || need_packages clang
  local dir="$work/clang"
  rm -rf "$dir"
  CC=clang cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DMPROC_WERROR=ON \
    >"$dir.log" 2>&1 && cmake --build "$dir" -j "$jobs" >>"$dir.log" 2>&1 ||
    { tail -n 30 "$dir.log"; return 1; }
  echo -n "clang $(clang -dumpversion) -O0: "
  (cd "$dir" && suite "$work/ctest-clang.log" ctest -j "$jobs" --timeout 150 \
    --output-on-failure)
}

# The mirror apt uses here (debootstrap gets it from there too).
debian_mirror() {
  local m
  m=$(grep -rhE '^(URIs:|deb )' /etc/apt/sources.list* 2>/dev/null |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | sed -n 1p | tr -d ' ')
  echo "${m:-http://deb.debian.org/debian}"
}

# The chroot, made once: a later run finds it in the cache.
part_bullseye_root() {
  local root="$cache/bullseye"
  [ -x "$root/usr/bin/cmake" ] && { echo "bullseye root: cached"; return 0; }
  need_packages debootstrap
  mkdir -p "$cache"
  rm -rf "$root.tmp"
  debootstrap --variant=minbase \
    --include=gcc,libc6-dev,make,cmake,libcmocka-dev,libssl1.1,python3,pkg-config \
    bullseye "$root.tmp" "$(debian_mirror)" \
    >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log"; return 1; }
  mv "$root.tmp" "$root"
  echo "bullseye root: made in $cache"
}

part_bullseye() {
  root="$cache/bullseye" # not local: the EXIT trap reads it
  # Also what a run killed at its time limit left mounted.
  unmount() {
    for d in dev proc; do
      while mountpoint -q "$root/$d"; do umount -l "$root/$d"; done
    done
  }
  unmount
  rm -rf "$root/src"
  mkdir -p "$root/src"
  git ls-files -co --exclude-standard -z | tar -c --null -T - | tar -x -C "$root/src"
  [ -f "$root/etc/hosts" ] || cp /etc/hosts "$root/etc/hosts" # "localhost"
  trap unmount EXIT
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount --make-rslave "$root/dev"
  local libc
  libc=$(chroot "$root" ldd --version | sed -n '1s/.* //p')
  echo -n "bullseye (glibc $libc, $(chroot "$root" gcc -dumpversion | cut -d. -f1-2)): "
  chroot "$root" sh -c 'cd /src && cmake -S . -B b -DMPROC_WERROR=ON >/dev/null &&
    cmake --build b -j '"$jobs"' >b.log 2>&1 || { tail -n 30 b.log; exit 1; }'
  suite "$work/ctest-bullseye.log" chroot "$root" sh -c \
    "cd /src/b && ctest -j $jobs --timeout 150 --output-on-failure"
  # RHEL 8 has glibc 2.28: the library built here must not need more.
  local newest
  newest=$(objdump -T "$root/src/b/libmproc.so" | grep -oE 'GLIBC_2\.[0-9]+' |
    sort -t. -k2 -n -u | sed -n '$p')
  echo "bullseye: libmproc.so needs $newest at most"
  [ "${newest#GLIBC_2.}" -le 28 ] || { echo "  (more than RHEL 8's 2.28)"; return 1; }
  # Ubuntu 20.04 as shipped: this userland on a 5.4 kernel.
  echo -n "bullseye on the 5.4 profile: "
  chroot "$root" cc -O2 -o /src/b/seccomp_run /src/tools/seccomp_run.c
  suite "$work/ctest-bullseye-5.4.log" chroot "$root" sh -c \
    "cd /src/b && ./seccomp_run 5.4 ctest -j $jobs --timeout 150 --output-on-failure"
}

# Runs every example under every start method; $1: the build, $2: a label.
examples_everywhere() {
  local dir=$1 label=$2 ok=0 all=0
  for m in fork spawn forkserver; do
    for e in seed_process seed_subclass seed_daemon lock_counter pool_demo; do
      all=$((all + 1))
      if MPROC_START_METHOD=$m timeout 60 "$dir/examples/$e" \
        >"$work/$label-$m-$e.out" 2>&1; then
        ok=$((ok + 1))
      else
        echo "$label: $e under $m failed:"
        tail -n 5 "$work/$label-$m-$e.out"
      fi
    done
  done
  echo "$label: examples $ok/$all"
  [ $ok -eq $all ]
}

part_musl() {
  need_packages musl-tools
  # Debian's musl-gcc sees no kernel headers: give it the system's.
  local inc="$work/musl-include" arch
  arch=$(gcc -dumpmachine)
  mkdir -p "$inc"
  ln -sfn /usr/include/linux "$inc/linux"
  ln -sfn /usr/include/asm-generic "$inc/asm-generic"
  ln -sfn "/usr/include/$arch/asm" "$inc/asm"
  local flags="-isystem $inc"
  # Until src/core/fnref.c stops calling glibc's dladdr1 (issue 11).
  grep -q 'dladdr1(' src/core/fnref.c &&
    flags+=" -include $top/scripts/ci/musl_dladdr1.h"
  local rc=0
  for kind in static dynamic; do
    local dir="$work/musl-$kind" link=""
    [ $kind = static ] && link=-static
    rm -rf "$dir"
    CC=musl-gcc cmake -S . -B "$dir" -DMPROC_BUILD_TESTS=OFF \
      -DMPROC_WERROR=ON -DCMAKE_C_FLAGS="$flags" \
      -DCMAKE_EXE_LINKER_FLAGS="$link" >"$dir.log" 2>&1 &&
      cmake --build "$dir" -j "$jobs" >>"$dir.log" 2>&1 ||
      { tail -n 30 "$dir.log"; return 1; }
    if [ $kind = static ] && ! file "$dir/examples/seed_process" | grep -q static; then
      echo "musl: examples are not static"
      return 1
    fi
    examples_everywhere "$dir" "musl-$kind" || rc=1
  done
  return $rc
}

# cmocka for arm64, from Debian (only its two packages are kept).
arm64_sysroot() {
  local sysroot="$cache/arm64-sysroot"
  [ -f "$sysroot/usr/include/cmocka.h" ] && { echo "$sysroot"; return; }
  need_packages debootstrap >&2
  local dl="$work/arm64-download"
  rm -rf "$dl"
  debootstrap --arch=arm64 --variant=minbase --download-only \
    --include=libcmocka-dev bookworm "$dl" "$(debian_mirror)" \
    >"$work/arm64-download.log" 2>&1 || return 1
  mkdir -p "$sysroot.tmp"
  for deb in "$dl"/var/cache/apt/archives/libcmocka*_arm64.deb; do
    dpkg -x "$deb" "$sysroot.tmp"
  done
  rm -rf "$dl" "$sysroot"
  mv "$sysroot.tmp" "$sysroot"
  echo "$sysroot"
}

part_aarch64() {
  need_packages gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  command -v qemu-aarch64-static >/dev/null || need_packages qemu-user-static
  local dir="$work/aarch64" sysroot
  sysroot=$(arm64_sysroot) || { echo "aarch64: no arm64 cmocka"; return 1; }
  rm -rf "$dir"
  # Tests run under qemu-user with the fork method only: without
  # binfmt_misc an exec'd aarch64 child cannot start.
  PKG_CONFIG_LIBDIR=$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig \
    PKG_CONFIG_SYSROOT_DIR=$sysroot \
    cmake -S . -B "$dir" -DCMAKE_SYSTEM_NAME=Linux \
    -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc \
    -DMPROC_WERROR=ON -DMPROC_TEST_METHODS=fork \
    "-DCMAKE_CROSSCOMPILING_EMULATOR=qemu-aarch64-static;-L;/usr/aarch64-linux-gnu" \
    -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath,$sysroot/usr/lib/aarch64-linux-gnu" \
    >"$dir.log" 2>&1 && cmake --build "$dir" -j "$jobs" >>"$dir.log" 2>&1 ||
    { tail -n 30 "$dir.log"; return 1; }
  local built
  built=$(find "$dir/examples" "$dir/bench" "$dir/tests" -maxdepth 1 -type f \
    -perm -u+x | wc -l)
  echo "aarch64: built library and $built programs (0 warnings)"
  local ok=0 all=0 rc=0
  for e in seed_process seed_subclass seed_daemon lock_counter pool_demo; do
    all=$((all + 1))
    if MPROC_START_METHOD=fork timeout 120 qemu-aarch64-static \
      -L /usr/aarch64-linux-gnu "$dir/examples/$e" >"$work/aarch64-$e.out" 2>&1; then
      ok=$((ok + 1))
    else
      echo "aarch64: $e under qemu failed:"
      tail -n 5 "$work/aarch64-$e.out"
    fi
  done
  echo "aarch64 under qemu-user (fork only): examples $ok/$all"
  [ $ok -eq $all ] || rc=1
  # What qemu-user can run: not the death tests (it has no robust futex
  # lists), not the ones that exec this program or Python.
  echo -n "aarch64 under qemu-user (fork only): "
  (cd "$dir" && export MPT_NO_DEATH_DETECTION=1 && suite "$work/ctest-aarch64.log" ctest -j "$jobs" \
    --timeout 120 --output-on-failure \
    -R '^test_(arena|conn|crypto|error|process|queue|shm|sync|value)(\.fork)?$') ||
    rc=1
  return $rc
}

if [ "${1:-}" = --part ]; then
  build=$(realpath -m -- "${3:-build}")
  mkdir -p "$work"
  "part_$2"
  exit
fi

# ---- the run -----------------------------------------------------------------
mkdir -p "$work"
start=$SECONDS
failed=()
# Time boxes (s), 1440 in all; a warm run takes about 10 minutes.
parts=(kernels:600 clang:180 bullseye_root:240 bullseye:300 musl:120
  aarch64:180)
for p in "${parts[@]}"; do
  name=${p%%:*} limit=${p#*:}
  t=$SECONDS
  if timeout --kill-after=20 "$limit" "$0" --part "$name" "$build"; then
    echo "portability: $name passed ($((SECONDS - t)) s)"
  else
    echo "portability: $name FAILED or over its ${limit} s ($((SECONDS - t)) s; logs in $work)"
    failed+=("$name")
  fi
done
echo "portability: $((${#parts[@]} - ${#failed[@]}))/${#parts[@]} parts passed in $((SECONDS - start)) s"
[ ${#failed[@]} -eq 0 ]
