#!/usr/bin/env bash
# Draws the chart of a `make bench` run (scripts/bench_report.py chart):
# one bar group per operation, log scale. Uses Debian's python3-matplotlib,
# installed here when missing (as root; otherwise the apt-get line to run is
# printed and no chart is drawn).
#   scripts/bench_chart.sh RESULTS.tsv OUT.svg|OUT.png [MACHINE NOTE]
set -euo pipefail
here=$(dirname "$0")
# Debian's interpreter, where python3-matplotlib installs (the python3 first
# on PATH may be another one).
py=/usr/bin/python3
if ! "$py" -c "import matplotlib" 2>/dev/null; then
  "$here/deps.sh" python3-matplotlib || { echo "bench: no chart" >&2; exit 0; }
fi
"$py" "$here/bench_report.py" chart "$1" "$2" "${3:-"$(nproc) CPUs"}"
