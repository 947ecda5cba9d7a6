# Sourced by the two-program demos (demo_listener.sh, demo_manager.sh):
# demo_start_server NAME OUT COMMAND... starts a server program in the
# background with its stdout in OUT, waits (10 s at most) for its
# "listening on ADDRESS" line, and sets $pid and $address; exits 1 with a
# message when it never says so. The caller's EXIT trap kills $pid.
demo_start_server() {
  local name=$1 out=$2
  shift 2
  "$@" >"$out" &
  pid=$!
  address=
  for _ in $(seq 100); do
    address=$(sed -n 's/^listening on //p' "$out")
    [ -n "$address" ] && return 0
    sleep 0.1
  done
  echo "$name: the server did not start" >&2
  exit 1
}
