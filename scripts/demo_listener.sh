#!/usr/bin/env bash
# The listener demo: the C server (examples/listener_server.c) and Python's
# own Client (examples/listener_client.py) authenticate each other with the
# shared key and exchange messages. Exits 0 when both sides succeeded.
#   scripts/demo_listener.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
server="$build/examples/listener_server"
if ! command -v python3 >/dev/null; then
  echo "demo_listener: python3 not found: skipped"
  exit 0
fi

out=$(mktemp)
trap 'rm -f "$out"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT
# The server prints its address (the port the system picked) first.
. scripts/demo_server.sh
demo_start_server demo_listener "$out" "$server" tcp:127.0.0.1:0 1

echo "C server listening on $address; the Python client says:"
client_status=0
python3 examples/listener_client.py "$address" | sed 's/^/  python: /' ||
  client_status=$?
# A client that failed never reached the server: do not wait for it.
[ "$client_status" -ne 0 ] && kill "$pid" 2>/dev/null
server_status=0
wait "$pid" || server_status=$?
pid=
echo "and the C server printed:"
sed 's/^/  C: /' "$out"
if [ "$client_status" -ne 0 ] || [ "$server_status" -ne 0 ]; then
  echo "demo_listener: failed (client $client_status, server $server_status)" >&2
  exit 1
fi
