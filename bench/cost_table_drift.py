#!/usr/bin/env python3
"""How well two cost tables of one machine agree (the consistency of `specdec bench costs`).

    bench/cost_table_drift.py A.json B.json [C.json ...]

For each pair of tables (same grids): the relative difference |a - b| / mean(a, b) of every forward point
(median and largest, and where the largest is), and the relative difference of the two tables' *ratios*
forward(T, B, C) / forward(1, B, C), which is what the cost model compares when it picks k. For each table:
its monotonicity violations (adjacent grid points along T, B or C where the one with more is cheaper).
"""
import itertools
import json
import statistics
import sys


def load(path):
    with open(path) as f:
        j = json.load(f)
    fwd = j["forward"]
    grid = (fwd["tokens"], fwd["batch"], fwd["context"])
    us = {}
    for ti, t in enumerate(grid[0]):
        for bi, b in enumerate(grid[1]):
            for ci, c in enumerate(grid[2]):
                us[(t, b, c)] = fwd["us"][ti][bi][ci]
    return grid, us, j.get("source", path)


def violations(grid, us):
    n = 0
    for t, b, c in us:
        for axis in range(3):
            g = grid[axis]
            key = [t, b, c]
            i = g.index(key[axis])
            if i + 1 < len(g):
                key[axis] = g[i + 1]
                if us[tuple(key)] < us[(t, b, c)]:
                    n += 1
    return n


def main(paths):
    if len(paths) < 2:
        sys.exit(__doc__.strip())
    tables = [load(p) for p in paths]
    for p, (grid, us, source) in zip(paths, tables):
        print(f"{p}: {len(us)} points, {violations(grid, us)} monotonicity violation(s); {source}")
    print(f"{'pair':<12} {'points':>6} {'median diff':>12} {'max diff':>9}  {'at (T, B, C)':<16} "
          f"{'ratio median':>12} {'ratio max':>9}")
    for (i, a), (j, b) in itertools.combinations(enumerate(tables), 2):
        if a[0] != b[0]:
            sys.exit(f"{paths[i]} and {paths[j]}: different grids")
        ua, ub = a[1], b[1]
        diff = {k: abs(ua[k] - ub[k]) / ((ua[k] + ub[k]) / 2) for k in ua}
        ratio = {}
        for (t, bb, c) in ua:
            if t == a[0][0][0]:
                continue
            ra, rb = ua[(t, bb, c)] / ua[(a[0][0][0], bb, c)], ub[(t, bb, c)] / ub[(a[0][0][0], bb, c)]
            ratio[(t, bb, c)] = abs(ra - rb) / ((ra + rb) / 2)
        worst = max(diff, key=diff.get)
        print(f"{i + 1} vs {j + 1:<7} {len(diff):>6} {100 * statistics.median(diff.values()):>11.1f}% "
              f"{100 * diff[worst]:>8.1f}%  {str(worst):<16} {100 * statistics.median(ratio.values()):>11.1f}% "
              f"{100 * max(ratio.values()):>8.1f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
