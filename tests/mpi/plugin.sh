#!/usr/bin/env bash
# A task's library that is another build on some ranks: rank 0 loads build
# A of the plugin from a path; ranks 1 and 2 run in mount namespaces of
# their own where build B is bind-mounted at that same path. Their items
# must fail with -ENOEXEC (the module's build id differs), never run B's
# code. As root only (mount namespaces); skipped with status 77 otherwise.
set -u
prog=$1 plugin_a=$2 plugin_b=$3
[ "$(id -u)" = 0 ] || { echo "plugin: skipped: needs root"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$plugin_a" "$dir/plugin.so"
unshare -m true 2>/dev/null || { echo "plugin: skipped: no mount namespaces"; exit 77; }
exec "$(dirname "$0")/run.sh" ok 0 -- -np 1 "$prog" plugin "$dir/plugin.so" : \
  -np 2 unshare -m sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh \
  "$plugin_b" "$dir/plugin.so" "$prog" plugin "$dir/plugin.so"
