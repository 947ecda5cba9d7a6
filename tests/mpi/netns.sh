#!/usr/bin/env bash
# Two hosts on one machine: network namespaces A and B joined by a veth
# pair, B with a hostname of its own. mpirun runs in A with ranks 0 and 1
# there and rank 2 in B (Open MPI starts B's daemon through a launch agent
# instead of ssh). Rank 0 maps items that never end on rank 2; once they
# run, the link is cut: rank 0 must find rank 2 lost after the liveness
# timeout, fail its items with MP_ELOST (no retries) and finish, and rank
# 2 must end by itself (rank 0 went silent); then the link is healed so
# that Open MPI's daemons can end, and nothing may be left running. As root only; skipped (status 77) when namespaces
# cannot be made. Everything made is removed at the end.
set -u
prog=$1
skip() { echo "netns: skipped: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root"
command -v ip >/dev/null && command -v unshare >/dev/null ||
  skip "needs ip (iproute2) and unshare"

id=$$
a=mpta$id b=mptb$id
net=10.213.$((id % 250))
dir=$(mktemp -d)
mpirun_pid=""
cleanup() {
  [ -n "$mpirun_pid" ] && kill -9 "$mpirun_pid" 2>/dev/null
  ip netns del "$a" 2>/dev/null
  ip netns del "$b" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$a" 2>/dev/null || skip "cannot create a network namespace"
ip netns add "$b" || exit 1
ip link add "va$id" netns "$a" type veth peer name "vb$id" netns "$b" ||
  skip "cannot create a veth pair"
ip -n "$a" addr add "$net.1/24" dev "va$id"
ip -n "$b" addr add "$net.2/24" dev "vb$id"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set "va$id" up
ip -n "$b" link set "vb$id" up

# The launch agent: Open MPI calls it as ssh (host, then the command).
cat >"$dir/agent" <<AGENT
#!/bin/sh
shift
exec ip netns exec $b unshare --uts sh -c "hostname hostb-$id; \$*"
AGENT
chmod +x "$dir/agent"

. "$(dirname "$0")/lib.sh"
tag="mpt-$$-$RANDOM"
mpt_launcher
ip netns exec "$a" env MPT_TAG="$tag" timeout -k 5 100 "${launcher[@]}" \
  --mca plm_rsh_agent "$dir/agent" --enable-recovery \
  --host "$net.1:2,$net.2:1" -np 3 "$prog" hold >"$dir/out" 2>&1 &
mpirun_pid=$!

# Cut the link once rank 2 runs its items (the map has started).
for _ in $(seq 300); do
  grep -q "mpi-test: mapping" "$dir/out" && break
  kill -0 "$mpirun_pid" 2>/dev/null || break
  sleep 0.1
done
sleep 1
ip -n "$b" link set "vb$id" down
echo "netns: link to rank 2 cut"

# Rank 0 finishes without rank 2, and rank 2, alone, ends by itself.
wait_for() { # seconds, then a condition
  local n=$(($1 * 10)) _
  shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
  return 1
}
passed() { grep -qx "mpi-test: PASS" "$dir/out"; }
rank2_gone() {
  ! ip netns pids "$b" 2>/dev/null | xargs -r -I{} cat /proc/{}/comm \
    2>/dev/null | grep -q mpi_pool_test
}
fail=0
wait_for 60 passed || { echo "netns: rank 0 did not finish"; fail=1; }
wait_for 30 rank2_gone || { echo "netns: rank 2 did not end"; fail=1; }
# Open MPI's own daemon in B waits for its launcher until the link is
# back: heal it so that mpirun can end.
ip -n "$b" link set "vb$id" up
echo "netns: link healed after $SECONDS s"
wait "$mpirun_pid"
status=$?
mpirun_pid=""
echo "netns: mpirun ended after $SECONDS s"
cat "$dir/out"
mpt_check_leftovers "$tag" || fail=1
[ "$status" = 124 ] || [ "$status" = 137 ] && { echo "netns: mpirun timed out"; fail=1; }
grep -qx "mpi-test: PASS" "$dir/out" || { echo "netns: rank 0 did not pass"; fail=1; }
exit $fail
