#!/usr/bin/env python3
"""Checks that the dependencies between the files of src/ point down only.

A file depends on another when it calls a function or uses a variable that
the other defines (read from the built objects with nm) or when it includes
the other's header. The folders of src/ are layers, lowest first (LAYERS
below); a file may depend on files of its own folder or of a lower one, and
no files may depend on each other in a circle (directly or through others).

Usage: scripts/check_layers.py BUILD_DIR   (after a build; exit 1 on a
violation, with the edges that make it).
"""
import os
import re
import subprocess
import sys

# Lowest first. Areas added later go above the ones they use.
LAYERS = ["core", "process", "sync", "conn", "queue", "memory", "pool",
          "obj", "containers", "managers", "mpi"]


# Headers that include nothing of src/ and that any layer may include.
LEAVES = {"src/testing.h", "src/compat.h"}


def layer(path):
    if path in LEAVES:
        return 0
    parts = path.split("/")
    return LAYERS.index(parts[1]) if len(parts) > 2 and parts[1] in LAYERS else -1


def symbol_edges(build, top):
    objdir = os.path.join(build, "CMakeFiles", "mproc_objects.dir")
    defs, uses = {}, {}
    for root, _, files in os.walk(objdir):
        for name in files:
            if not name.endswith(".c.o"):
                continue
            obj = os.path.join(root, name)
            src = os.path.relpath(obj, objdir)[:-2]
            if not os.path.exists(os.path.join(top, src)):
                continue  # left over from a file since moved or removed
            out = subprocess.run(["nm", obj], capture_output=True, text=True,
                                 check=True).stdout
            for line in out.splitlines():
                f = line.split()
                if len(f) == 3 and f[1] in "TDBRVW":
                    defs[f[2]] = src
                elif len(f) == 2 and f[0] == "U":
                    uses.setdefault(src, set()).add(f[1])
    edges = set()
    for src, names in uses.items():
        for n in names:
            if n in defs and defs[n] != src:
                edges.add((src, defs[n], "calls " + n))
    return edges


def include_edges(top):
    edges = set()
    pattern = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
    for root, _, files in os.walk(os.path.join(top, "src")):
        for name in files:
            path = os.path.relpath(os.path.join(root, name), top)
            with open(os.path.join(top, path)) as f:
                for inc in pattern.findall(f.read()):
                    target = "src/" + inc
                    if os.path.exists(os.path.join(top, target)):
                        edges.add((path, target, "includes " + inc))
    return edges


def cycles(nodes_edges):
    graph = {}
    for a, b, _ in nodes_edges:
        graph.setdefault(a, set()).add(b)
    # Tarjan's strongly connected components, iteratively.
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif nxt not in index:
                index[nxt] = low[nxt] = counter[0]
                counter[0] += 1
                stack.append(nxt)
                on.add(nxt)
                work.append((nxt, iter(sorted(graph.get(nxt, ())))))
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    edges = symbol_edges(sys.argv[1], top) | include_edges(top)
    bad = 0
    for a, b, why in sorted(edges):
        if layer(a) < 0 or layer(b) < 0:
            print(f"layers: {a if layer(a) < 0 else b} is in no known folder")
            bad += 1
        elif layer(b) > layer(a):
            print(f"layers: {a} -> {b} points up ({why})")
            bad += 1
    for comp in cycles(edges):
        print("layers: circle between " + ", ".join(comp))
        for a, b, why in sorted(edges):
            if a in comp and b in comp:
                print(f"    {a} -> {b} ({why})")
        bad += 1
    files = {e[0] for e in edges} | {e[1] for e in edges}
    print(f"layers: {len(files)} files, {len(edges)} dependencies, "
          f"{bad} violation(s)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
