#!/usr/bin/env bash
# Draws the chart of a `make bench` run: one bar group per operation (mproc,
# Python's multiprocessing, the raw system-call reference), time per
# operation on a log scale. Uses Debian's python3-matplotlib, installed here
# when missing (as root; otherwise the apt-get line to run is printed and
# no chart is drawn).
#   scripts/bench_chart.sh RESULTS.tsv OUT.svg|OUT.png [MACHINE NOTE]
set -euo pipefail
results=$1
chart=$2
note=${3:-"$(nproc) CPUs"}
# Debian's interpreter, where python3-matplotlib installs (the python3 first
# on PATH may be another one).
py=/usr/bin/python3
if ! "$py" -c "import matplotlib" 2>/dev/null; then
  "$(dirname "$0")/deps.sh" python3-matplotlib || { echo "bench: no chart" >&2; exit 0; }
fi
MPLBACKEND=Agg "$py" - "$results" "$chart" "$note" <<'PY'
import sys
import matplotlib
import matplotlib.pyplot as plt

results, chart, note = sys.argv[1:4]
matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small SVG
order, rows, py = [], {}, {}
for line in open(results):
    f = line.rstrip("\n").split("\t")
    if f[0] == "row":
        rows[f[1]] = (float(f[2]), float(f[3]), f[4])
        order.append(f[1])
    elif f[0] == "py":
        py[f[1]] = float(f[2])

# Horizontal groups: operation names are long. The first operation on top.
series = [("mproc", "#1f77b4", lambda op: rows[op][0]),
          ("Python multiprocessing", "#ff7f0e", lambda op: py.get(op, 0.0)),
          ("raw reference", "#7f7f7f", lambda op: rows[op][1])]
height = 0.27
fig, ax = plt.subplots(figsize=(10, 0.55 * len(order) + 1.6))
for i, (label, color, value) in enumerate(series):
    ys = [len(order) - 1 - k + (1 - i) * height for k in range(len(order))]
    xs = [value(op) / 1e3 for op in order]  # microseconds
    # A missing figure (no Python twin, no raw reference) is no bar at all.
    shown = [(y, x) for y, x in zip(ys, xs) if x > 0]
    ax.barh([y for y, _ in shown], [x for _, x in shown], height=height,
            color=color, label=label)
ax.set_ylim(-0.6, len(order) - 0.4)
ax.set_yticks(range(len(order)))
ax.set_yticklabels(list(reversed(order)), fontsize=8)
ax.set_xscale("log")
ax.set_xlabel("time per operation (µs, log scale; shorter is faster)")
ax.grid(axis="x", which="major", alpha=0.4)
ax.set_title("mproc vs Python's multiprocessing vs raw system calls\n" + note,
             fontsize=10)
ax.legend(loc="upper right", fontsize=8)
fig.tight_layout()
fig.savefig(chart, metadata={"Date": None})
print(f"bench: chart written to {chart}", file=sys.stderr)
PY
