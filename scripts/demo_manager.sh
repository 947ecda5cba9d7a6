#!/usr/bin/env bash
# The manager demo: examples/manager_server.c shares a queue of jobs and a
# dict of results over tcp:127.0.0.1; examples/manager_client.c, another
# program, connects, does the jobs through proxies, and the server prints
# the results. Exits 0 when both sides succeeded.
#   scripts/demo_manager.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT
. scripts/demo_server.sh
demo_start_server demo_manager "$out" "$build/examples/manager_server" \
  tcp:127.0.0.1:0
echo "manager listening on $address; the client program says:"
client_status=0
"$build/examples/manager_client" "$address" | sed 's/^/  client: /' ||
  client_status=$?
[ "$client_status" -ne 0 ] && kill "$pid" 2>/dev/null
server_status=0
wait "$pid" || server_status=$?
pid=
echo "and the server printed:"
sed 's/^/  server: /' "$out"
if [ "$client_status" -ne 0 ] || [ "$server_status" -ne 0 ]; then
  echo "demo_manager: failed (client $client_status, server $server_status)" >&2
  exit 1
fi
