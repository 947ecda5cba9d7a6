#!/usr/bin/env bash
# CI's packaging check (after `make test`): everything a user adopting mproc
# through its build files does, each step building and running a program.
#   1. `cmake --install BUILD --prefix P`, then against P:
#      - pkg-config: examples/seed_process.c with the shared library and with
#        the static one (`pkg-config --static`), and the README's "first
#        program" with the exact command the README shows;
#      - a separate CMake project: find_package(mproc CONFIG) with
#        mproc::mproc and mproc::mproc_static (and a version it must refuse);
#      - the tutorial's program (docs/tutorial_from_python.md);
#   2. a separate project that add_subdirectory()s the source tree: only the
#      library is built (no tests, examples, benchmarks), without cmocka or
#      pkg-config, and mproc::mproc works;
#   3. a DESTDIR staging install with prefix /usr (Debian's multiarch
#      libdir): pkg-config from the staging tree;
#   4. the .deb packages (scripts/deb.sh): apt-get accepts them (simulated:
#      the machine is not changed), then unpacked in a scratch root, a
#      pkg-config and a CMake build against them run;
#   5. the ABI (scripts/check_symbols.sh) and the API reference with its
#      undocumented-function check (scripts/docs.sh).
#   scripts/check_packaging.sh [BUILD]     (BUILD: a built build directory;
#                                          KEEP=1 keeps the scratch files)
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
build=$(cd "${1:-build}" && pwd)
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
log=$work/log
jobs=$(nproc)

# quiet CMD...: runs CMD with its output in $log, shown only on failure.
quiet() {
  if ! "$@" >"$log" 2>&1; then
    echo "packaging: failed: $*" >&2
    cat "$log" >&2
    exit 1
  fi
}
# expect PATTERN CMD...: CMD's output must contain PATTERN.
expect() {
  local pattern=$1
  shift
  if ! "$@" >"$log" 2>&1 || ! grep -q "$pattern" "$log"; then
    echo "packaging: '$*' did not print '$pattern':" >&2
    cat "$log" >&2
    exit 1
  fi
}
seed_line="current sub process name : Process-3"
# The README's first program, extracted from its fenced block.
sed -n '/<!-- first-program -->/,/^```$/p' README.md | sed '1,2d;$d' \
  >"$work/first.c"
first_cmd=$(sed -n '/<!-- first-program-build -->/,/^```$/p' README.md | sed -n 3p)
[ -s "$work/first.c" ] && [ -n "$first_cmd" ] ||
  { echo "packaging: no first program in README.md" >&2; exit 1; }
# The tutorial's complete program, likewise.
sed -n '/<!-- tutorial-program -->/,/^```$/p' docs/tutorial_from_python.md |
  sed '1,2d;$d' >"$work/wordfreq.c"

# A CMake project using an installed mproc, and one using the source tree.
mkdir -p "$work/cmake_find" "$work/cmake_subdir"
cp "$work/first.c" "$work/cmake_find/first.c"
cp "$work/first.c" "$work/cmake_subdir/first.c"
cat >"$work/cmake_find/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(uses_mproc C)
find_package(mproc 0.1 CONFIG REQUIRED)
add_executable(first_shared first.c)
target_link_libraries(first_shared PRIVATE mproc::mproc)
add_executable(first_static first.c)
target_link_libraries(first_static PRIVATE mproc::mproc_static)
CM
cat >"$work/cmake_subdir/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(embeds_mproc C)
add_subdirectory("$src" mproc)
add_executable(first first.c)
target_link_libraries(first PRIVATE mproc::mproc)
add_executable(first_static first.c)
target_link_libraries(first_static PRIVATE mproc::mproc_static)
CM

# ---- 1. Install to a prefix ----------------------------------------------
prefix=$work/prefix
quiet cmake --install "$build" --prefix "$prefix"
pc=$(find "$prefix" -name mproc.pc)
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
[ "$(cd "$(pkg-config --variable=libdir mproc)" && pwd)" = "$libdir" ] ||
  { echo "packaging: mproc.pc's libdir is not $libdir" >&2; exit 1; }
cd "$work"
quiet cc -std=c11 -D_GNU_SOURCE "$src/examples/seed_process.c" \
  $(pkg-config --cflags --libs mproc) -o seed_shared
quiet cc -std=c11 -D_GNU_SOURCE "$src/examples/seed_process.c" \
  $(pkg-config --cflags mproc) \
  $(pkg-config --libs --static mproc | sed 's/-lmproc/-l:libmproc.a/') \
  -o seed_static
if readelf -d seed_static | grep -q 'libmproc\.so'; then
  echo "packaging: the static build links libmproc.so" >&2
  exit 1
fi
expect "$seed_line" env LD_LIBRARY_PATH="$libdir" MPROC_START_METHOD=spawn \
  ./seed_shared
expect "$seed_line" env MPROC_START_METHOD=forkserver ./seed_static
# The README's command, as shown (with the prefix on PKG_CONFIG_PATH).
quiet sh -c "$first_cmd"
expect "child got 42" env LD_LIBRARY_PATH="$libdir" ./first
# The README's rpath form runs without LD_LIBRARY_PATH.
quiet cc -std=c11 first.c $(pkg-config --cflags --libs mproc) \
  -Wl,-rpath,"$(pkg-config --variable=libdir mproc)" -o first_rpath
expect "child got 42" ./first_rpath
quiet cc -std=c11 -Wall -Werror wordfreq.c $(pkg-config --cflags --libs mproc) \
  -o wordfreq
expect "the: 4" env LD_LIBRARY_PATH="$libdir" ./wordfreq
expect "the: 4" env LD_LIBRARY_PATH="$libdir" MPROC_START_METHOD=spawn ./wordfreq
echo "packaging: install + pkg-config: shared, static (--static), rpath, README, tutorial built and ran"

quiet cmake -S cmake_find -B cmake_find/build -DCMAKE_PREFIX_PATH="$prefix"
quiet cmake --build cmake_find/build -j "$jobs"
expect "child got 42" cmake_find/build/first_shared
expect "child got 42" env MPROC_START_METHOD=spawn cmake_find/build/first_static
sed -i 's/find_package(mproc 0.1 /find_package(mproc 1 /' cmake_find/CMakeLists.txt
if cmake -S cmake_find -B cmake_find/build1 -DCMAKE_PREFIX_PATH="$prefix" \
  >"$log" 2>&1; then
  echo "packaging: find_package(mproc 1) accepted version 0.x" >&2
  exit 1
fi
grep -q "considered but not accepted" "$log" ||
  { echo "packaging: find_package(mproc 1) failed otherwise:" >&2; cat "$log" >&2; exit 1; }
sed -i 's/find_package(mproc 1 /find_package(mproc 0.1 /' cmake_find/CMakeLists.txt
echo "packaging: find_package(mproc CONFIG): mproc::mproc, mproc::mproc_static ran; version 1 refused"

# ---- 2. add_subdirectory -------------------------------------------------
# Without pkg-config (hence without cmocka): a subproject must not look.
# At -O0, and with clang when there is one: builds where a missing -lm
# shows (gcc -O2 inlines ceil).
cc_subdir=cc
command -v clang >/dev/null && cc_subdir=clang
quiet env CC=$cc_subdir cmake -S cmake_subdir -B cmake_subdir/build \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON
targets=$(cmake --build cmake_subdir/build --target help |
  sed -n 's/^\.\.\. \([^ ]*\).*/\1/p' |
  grep -Ev '^(all|clean|depend|edit_cache|rebuild_cache|install.*|list_install_components|package.*|test)$|\.[ios]$' |
  sort | tr '\n' ' ')
if [ "$targets" != "first first_static mproc mproc_objects mproc_static " ]; then
  echo "packaging: add_subdirectory adds targets beyond the library: $targets" >&2
  exit 1
fi
quiet cmake --build cmake_subdir/build -j "$jobs"
expect "child got 42" env MPROC_START_METHOD=forkserver cmake_subdir/build/first
expect "child got 42" cmake_subdir/build/first_static
echo "packaging: add_subdirectory ($cc_subdir -O0): only the library built (no cmocka), mproc::mproc and mproc::mproc_static ran"

# ---- 3 and 4. For /usr: DESTDIR staging and the Debian packages ----------
deb=$work/deb
quiet "$src/scripts/deb.sh" "$deb"
# The same build with a relocatable mproc.pc (only mproc.pc changes).
quiet cmake "$deb" -DMPROC_PC_RELOCATABLE=ON
quiet env DESTDIR="$work/stage" cmake --install "$deb"
pc=$(find "$work/stage" -name mproc.pc)
case $pc in
  "$work/stage/usr/lib/"*-linux-gnu/pkgconfig/mproc.pc) ;;
  *) echo "packaging: not Debian's multiarch libdir: $pc" >&2 ;;
esac
libdir=$(dirname "$(dirname "$pc")")
PKG_CONFIG_PATH=$(dirname "$pc")
quiet cc -std=c11 first.c $(pkg-config --cflags --libs mproc) -o first_stage
quiet cc -std=c11 first.c $(pkg-config --cflags mproc) \
  $(pkg-config --libs --static mproc | sed 's/-lmproc/-l:libmproc.a/') \
  -o first_stage_static
expect "child got 42" env LD_LIBRARY_PATH="$libdir" ./first_stage
expect "child got 42" ./first_stage_static
echo "packaging: DESTDIR=... prefix /usr (${libdir#"$work/stage"}): pkg-config from the staging tree, shared and static ran"

debs=("$deb"/libmproc*.deb)
[ ${#debs[@]} -eq 2 ] ||
  { echo "packaging: expected 2 .deb files, got ${debs[*]}" >&2; exit 1; }
if command -v apt-get >/dev/null; then
  # A simulation changes nothing; without the lock it cannot collide with
  # another apt-get running on the machine.
  quiet apt-get install -s -o Debug::NoLocking=1 "${debs[@]}"
  grep -q '^Inst libmproc-dev' "$log" ||
    { echo "packaging: apt-get would not install libmproc-dev" >&2; exit 1; }
fi
root=$work/root
for d in "${debs[@]}"; do
  dpkg-deb -x "$d" "$root"
done
pcdir=$(dirname "$(find "$root" -name mproc.pc)")
libdir=$(dirname "$pcdir")
# The packaged mproc.pc says /usr (as installed): read it through a sysroot.
pcenv=(env PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$pcdir"
  PKG_CONFIG_SYSROOT_DIR="$root" PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1
  PKG_CONFIG_ALLOW_SYSTEM_LIBS=1)
quiet cc -std=c11 first.c $("${pcenv[@]}" pkg-config --cflags --libs mproc) \
  -o first_deb
expect "child got 42" env LD_LIBRARY_PATH="$libdir" ./first_deb
quiet cmake -S cmake_find -B cmake_find/build_deb -DCMAKE_PREFIX_PATH="$root/usr"
quiet cmake --build cmake_find/build_deb -j "$jobs"
expect "child got 42" env LD_LIBRARY_PATH="$libdir" cmake_find/build_deb/first_shared
expect "child got 42" cmake_find/build_deb/first_static
echo "packaging: .deb: $(cd "$deb" && echo libmproc*.deb) install (apt-get -s), unpacked: pkg-config and find_package builds ran"

# ---- 5. ABI and API reference --------------------------------------------
cd "$src"
"$src/scripts/check_symbols.sh" "$build" >&2
"$src/scripts/docs.sh" "$work/docs" >&2
echo "packaging: all checks passed"
