#!/usr/bin/env bash
# `make docs`: the API reference from the public headers' comments, with
# Debian's doxygen (installed here when missing), one page per header, in
# OUT/html (default build/docs). Fails when a public function or macro is
# left undocumented (Doxygen's WARN_IF_UNDOCUMENTED warnings); the other
# warnings (types and struct fields without their own comment, doc syntax)
# are counted, and listed in OUT/warnings.log.
#   scripts/docs.sh [OUT]
set -euo pipefail
out=$(mkdir -p "${1:-build/docs}" && cd "${1:-build/docs}" && pwd)
cd "$(dirname "$0")/.."
command -v doxygen >/dev/null || scripts/deps.sh doxygen
export MPROC_DOCS_OUT="$out"
MPROC_VERSION=$(sed -n 's/^project(mproc VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
export MPROC_VERSION
rm -rf "$out/html"
doxygen Doxyfile
log="$out/warnings.log"
fatal='(function|macro definition) of file .* is not documented'
if grep -Eq "$fatal" "$log"; then
  echo "docs: public functions or macros without a comment:" >&2
  grep -E "$fatal" "$log" | sed "s|^$PWD/||" >&2
  exit 1
fi
others=$(grep -c "warning" "$log" || true)
pages=$(ls "$out/html"/*_8h.html | wc -l)
echo "docs: $pages header pages in $out/html (start at index.html);" \
  "every public function documented; $others other warnings (struct" \
  "fields described by their struct's comment, ...: $log)"
