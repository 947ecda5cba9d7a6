#!/usr/bin/env bash
# The ABI check of libmproc.so (CI runs it from scripts/check_packaging.sh):
#   - its SONAME is libmproc.so.<major> (major from CMakeLists.txt);
#   - it exports only public mp_* names (no mp__ internals, nothing else),
#     every one under the version node MPROC_<major> (cmake/mproc.map.in),
#     but for what libmproc_mpi calls (the pool's backend hook
#     mp__pool_new_backend, mp__pool_backend_*, mp__fd_high and
#     mp__dl_iterate), under
#     MPROC_PRIVATE_<major>;
#   - every function the public headers declare with MP_API is exported
#     (include/mproc/mpi.h declares libmproc_mpi's, checked there).
#   scripts/check_symbols.sh [BUILD]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
lib=$(readlink -f "$build/libmproc.so")
major=$(sed -n 's/^project(mproc VERSION \([0-9]*\)\..*/\1/p' CMakeLists.txt)
fail=0

soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
if [ "$soname" != "libmproc.so.$major" ]; then
  echo "symbols: SONAME is '$soname', expected libmproc.so.$major" >&2
  fail=1
fi

# objdump -T: address, flags, section, size, version, name. Defined symbols
# are those not in *UND*; the version node itself is the one *ABS* entry.
exported=$(objdump -T "$lib" |
  awk 'NF >= 6 && $0 ~ /[0-9a-f]+ / && $(NF-3) != "*UND*" && $(NF-3) != "*ABS*" {
         print $(NF-1), $NF }')
bad=$(echo "$exported" | awk -v node="MPROC_$major" -v private="MPROC_PRIVATE_$major" \
  '!(($2 ~ /^mp_[a-z0-9]/ && $2 !~ /^mp__/ && $1 == node) ||
     ($2 ~ /^mp__(pool_new_backend|pool_backend_[a-z_]+|fd_high|dl_iterate)$/ &&
      $1 == private))')
if [ -n "$bad" ]; then
  echo "symbols: exported names that are not public mp_* under MPROC_$major:" >&2
  echo "$bad" | sed 's/^/  /' >&2
  fail=1
fi

declared=$(python3 - include <<'PY'
import pathlib, re, sys
text = "".join(p.read_text() for p in sorted(pathlib.Path(sys.argv[1]).rglob("*.h"))
               if p.name != "mpi.h")
for name in sorted(set(re.findall(r"MP_API\b[^;{]*?\b(mp_\w+)\s*\(", text))):
    print(name)
PY
)
missing=$(comm -23 <(echo "$declared") <(echo "$exported" | awk '{print $2}' | sort -u))
if [ -n "$missing" ]; then
  echo "symbols: declared with MP_API in include/ but not exported:" >&2
  echo "$missing" | sed 's/^/  /' >&2
  fail=1
fi
[ "$fail" -eq 0 ] || exit 1
echo "symbols: $(echo "$exported" | wc -l) exported, all mp_* under MPROC_$major (the backend hook, mp__fd_high and mp__dl_iterate under MPROC_PRIVATE_$major); SONAME $soname; every MP_API function present"
