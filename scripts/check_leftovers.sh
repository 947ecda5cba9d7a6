#!/usr/bin/env bash
# After the suite: nothing named is left in /dev/shm by mproc, and no
# process of the suite is left running.
set -u
bad=0
left=$(ls /dev/shm 2>/dev/null | grep -i mproc || true)
if [ -n "$left" ]; then
  echo "leftovers: /dev/shm entries left behind:" >&2
  echo "$left" >&2
  bad=1
fi
# Programs of this checkout's builds only (ctest runs them by absolute path).
top=$(cd "$(dirname "$0")/.." && pwd)
procs=$(pgrep -a -f "^$top/build[^/]*/(tests|examples|bench)/" || true)
if [ -n "$procs" ]; then
  echo "leftovers: processes of the suite still running:" >&2
  echo "$procs" >&2
  bad=1
fi
[ $bad -eq 0 ] && echo "leftovers: none (no /dev/shm entries, no stray processes)"
exit $bad
