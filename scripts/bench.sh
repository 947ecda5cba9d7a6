#!/usr/bin/env bash
# `make bench`: every bench/bench_<area> program and its Python twin, in one
# run, joined into one table of ratios, and a chart of the same figures
# (scripts/bench_chart.py: one bar group per operation, log scale).
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
python3 - "$out" <<'PY' | tee "$build/bench/results.txt"
import sys
rows, py = {}, {}
order = []
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if f[0] == "row":
        rows[f[1]] = (float(f[2]), float(f[3]), f[4])
        order.append(f[1])
    elif f[0] == "py":
        py[f[1]] = float(f[2])
def fmt(ns):
    return f"{ns/1e3:10.2f} us" if ns >= 1e3 else f"{ns:10.1f} ns"
print(f"{'operation':48} {'mproc':>13} {'python':>13} {'raw':>13}  "
      f"{'mproc/raw':>9} {'py/mproc':>9}  raw reference")
for op in order:
    mine, raw, label = rows[op]
    p = py.get(op)
    print(f"{op:48} {fmt(mine)} {fmt(p) if p else '            -'} "
          f"{fmt(raw) if raw > 0 else '            -'}  "
          f"{(mine/raw if raw > 0 else float('nan')):9.2f} "
          f"{(p/mine if p else float('nan')):9.1f}  {label}")
PY
scripts/bench_chart.sh "$out" "$build/bench/bench.svg" "$note"
