#!/usr/bin/env python3
"""Compares the Python report's figures with the C++ ones (tests/results/test_metrics_parity.cpp writes
the log and the C++ figures as JSON):

    python3 tests/report/check_cpp_parity.py LOG.h5 CPP_FIGURES.json

Every figure of every run must agree to 1e-9 (relative); prints each mismatch, exits 1 on any."""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "experiments", "report"))
import specdec_report as rep  # noqa: E402


def same(a, b):
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if b is None:
        return False
    if isinstance(a, list):
        return list(map(int, a)) == list(map(int, b))
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


def main(log, figures):
    cpp = json.load(open(figures))
    summary = rep.summarize(rep.load(log), n_boot=0)
    pr = summary.per_run.set_index("run")
    pos = summary.positions
    bad, n = [], 0
    for run, f in cpp.items():
        py = pr.loc[run]
        for key, want in f.items():
            if key == "positions":
                g = pos[pos.run == run].set_index("position")
                for p in want:
                    for col in ("n_proposed", "n_accepted", "n_reached", "p_uncond", "p_cond", "vllm_rate"):
                        got = g[col].get(p["position"]) if p["position"] in g.index else None
                        n += 1
                        if not same(None if got is None else float(got), p[col]):
                            bad.append(f"{run} position {p['position']} {col}: python {got}, C++ {p[col]}")
                continue
            got = py[key]
            got = got if isinstance(got, list) else (None if got is None or got is rep.pd.NA else float(got))
            n += 1
            if not same(got, want):
                bad.append(f"{run} {key}: python {got}, C++ {want}")
    for b in bad:
        print("MISMATCH", b)
    print(f"{n - len(bad)} of {n} figures agree")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
