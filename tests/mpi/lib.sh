# Shared by run.sh and netns.sh (sourced).

# The launcher (MPT_MPIEXEC, the one CMake found; default mpirun) with the
# options every run gets: Open MPI's, or MPICH's (Hydra) when it is that.
mpt_launcher() {
  local exe=${MPT_MPIEXEC:-mpirun} v vars=MPT_TAG
  for v in ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS LSAN_OPTIONS; do
    [ -n "${!v:-}" ] && vars+=",$v"
  done
  if "$exe" --version 2>&1 | grep -q HYDRA; then
    mpt_hydra=1
    launcher=("$exe" -genvlist "$vars")
    return 0
  fi
  mpt_hydra=0
  launcher=("$exe" --oversubscribe --bind-to none)
  for v in ${vars//,/ }; do launcher+=(-x "$v"); done
  [ "$(id -u)" = 0 ] && launcher+=(--allow-run-as-root)
  return 0
}

# No process of the run tagged $1 (MPT_TAG in its environment) may be left:
# waits up to 10 s for them to end, then reports and kills them by pid.
mpt_check_leftovers() {
  local tag=$1 left="" _
  for _ in $(seq 100); do
    left=$(grep -las "MPT_TAG=$tag" /proc/[0-9]*/environ 2>/dev/null |
      sed -e 's#/proc/##' -e 's#/environ##' | grep -vx "$$" || true)
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  echo "mpi test: processes left behind: $(echo $left)"
  ps -o pid,ppid,stat,args -p "$(echo $left | tr ' ' ,)" || true
  kill -9 $left 2>/dev/null
  return 1
}
