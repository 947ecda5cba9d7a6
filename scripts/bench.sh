#!/usr/bin/env bash
# `make bench`: every bench/bench_<area> program and its Python twin, in one
# run, joined into one table of ratios, and a chart of the same figures
# (scripts/bench_report.py; the chart: one bar group per operation, log
# scale).
# Times are medians of repetitions; the machines are shared, so read the
# ratios, not the absolute times.
#   scripts/bench.sh [BUILD [ARGS...]]
# Writes BUILD/bench/results.tsv (the raw rows), BUILD/bench/results.txt (the
# table) and BUILD/bench/bench.svg (the chart).
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
shift || true
cd "$(dirname "$0")/.."
out="$build/bench/results.tsv"
# The machine, for the chart's title: the figures mean little without it.
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
note="${cpu:-unknown CPU}, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg) before the run"
: >"$out"
for bin in "$build"/bench/bench_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  echo "running $name ..." >&2
  "$bin" "$@" >>"$out"
  if [ -f "bench/$name.py" ]; then
    python3 "bench/$name.py" "$@" >>"$out"
  fi
done
python3 scripts/bench_report.py table "$out" | tee "$build/bench/results.txt"
scripts/bench_chart.sh "$out" "$build/bench/bench.svg" "$note"
