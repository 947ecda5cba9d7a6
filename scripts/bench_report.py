#!/usr/bin/env python3
"""The report of a `make bench` run, from the rows scripts/bench.sh saved
("row<TAB>operation<TAB>mproc ns<TAB>raw ns<TAB>raw label" from the C
benchmarks, "py<TAB>operation<TAB>ns" from their Python twins):
  bench_report.py table RESULTS.tsv            the table of times and ratios
  bench_report.py chart RESULTS.tsv OUT NOTE   the chart (SVG or PNG, by
      OUT's suffix): one bar group per operation -- mproc, Python's
      multiprocessing, the raw reference -- time per operation on a log
      scale; NOTE (the machine) goes in the title. Needs matplotlib.
"""
import sys


def read(path):
    order, rows, py = [], {}, {}
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if f[0] == "row":
            rows[f[1]] = (float(f[2]), float(f[3]), f[4])
            order.append(f[1])
        elif f[0] == "py":
            py[f[1]] = float(f[2])
    return order, rows, py


def fmt(ns):
    return f"{ns/1e3:10.2f} us" if ns >= 1e3 else f"{ns:10.1f} ns"


def table(path):
    order, rows, py = read(path)
    print(f"{'operation':48} {'mproc':>13} {'python':>13} {'raw':>13}  "
          f"{'mproc/raw':>9} {'py/mproc':>9}  raw reference")
    for op in order:
        mine, raw, label = rows[op]
        p = py.get(op)
        print(f"{op:48} {fmt(mine)} {fmt(p) if p else '            -'} "
              f"{fmt(raw) if raw > 0 else '            -'}  "
              f"{(mine/raw if raw > 0 else float('nan')):9.2f} "
              f"{(p/mine if p else float('nan')):9.1f}  {label}")


def chart(path, out, note):
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small SVG
    matplotlib.rcParams["svg.hashsalt"] = "mproc"  # the same run, the same file
    import matplotlib.pyplot as plt

    order, rows, py = read(path)
    # Horizontal groups (operation names are long), the first on top.
    series = [("mproc", "#1f77b4", lambda op: rows[op][0]),
              ("Python multiprocessing", "#ff7f0e", lambda op: py.get(op, 0.0)),
              ("raw reference", "#7f7f7f", lambda op: rows[op][1])]
    height = 0.27
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(order) + 1.6))
    for i, (label, color, value) in enumerate(series):
        ys = [len(order) - 1 - k + (1 - i) * height for k in range(len(order))]
        xs = [value(op) / 1e3 for op in order]  # microseconds
        # A missing figure (no Python twin, no raw reference): no bar.
        shown = [(y, x) for y, x in zip(ys, xs) if x > 0]
        ax.barh([y for y, _ in shown], [x for _, x in shown], height=height,
                color=color, label=label)
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(list(reversed(order)), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("time per operation (µs, log scale; shorter is faster)")
    ax.grid(axis="x", which="major", alpha=0.4)
    ax.set_title("mproc vs Python's multiprocessing vs raw system calls\n"
                 + note, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, metadata={"Date": None})
    print(f"bench: chart written to {out}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "table":
        table(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "chart":
        chart(*sys.argv[2:])
    else:
        sys.exit(__doc__)
