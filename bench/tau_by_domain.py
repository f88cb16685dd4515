#!/usr/bin/env python3
"""tau per prompt category of chosen runs, gathered from several specdec results logs: a markdown table and a
grouped bar chart (BENCHMARKS.md "tau by domain"). tau is the report's own (specdec_report.rate_metrics:
emitted tokens / target passes). A run name found in two logs must have the same tau in both (the runs are
deterministic at greedy): a disagreement is an error, not a silent choice.

    .venv/bin/python bench/tau_by_domain.py results/fd_domain_gsm8k.h5 results/fd_medusa_gsm8k.h5 \
        --runs eagle_eagle2_k60_t0=EAGLE-2 medusa_tree64_k60_t0="Medusa (self)" --png OUT.png --md OUT.md --targets 2.0 2.5
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments", "report"))

import specdec_report as rep  # noqa: E402


def gather(paths, runs):
    """{run: {category: tau}} over the logs, for the runs named; categories in first-seen order."""
    taus, order = {r: {} for r in runs}, []
    for path in paths:
        m = rep.rate_metrics(rep.load(path), by_category=True)
        for (run, cat), tau in m.tau.items():
            if run not in taus:
                continue
            if cat not in order:
                order.append(cat)
            old = taus[run].get(cat)
            if old is not None and abs(old - tau) > 1e-12:
                sys.exit(f"tau_by_domain: {run} / {cat}: tau {old:.6f} in an earlier log, {tau:.6f} in {path}")
            taus[run][cat] = tau
    for run, by_cat in taus.items():
        if not by_cat:
            sys.exit(f"tau_by_domain: run '{run}' is in none of {', '.join(paths)}")
    return taus, order


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+", help="specdec results logs (HDF5)")
    ap.add_argument("--runs", nargs="+", required=True, help="RUN or RUN=LABEL, in column order")
    ap.add_argument("--png", help="grouped bar chart")
    ap.add_argument("--md", help="markdown table (also printed)")
    ap.add_argument("--targets", type=float, nargs="*", default=[], help="dashed lines at these tau")
    a = ap.parse_args(argv)
    labels = dict(r.split("=", 1) if "=" in r else (r, r) for r in a.runs)
    taus, cats = gather(a.logs, list(labels))
    cell = lambda run, c: f"{taus[run][c]:.2f}" if c in taus[run] else "-"  # noqa: E731
    lines = ["| category (tau) | " + " | ".join(labels.values()) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(cell(r, c) for r in labels) + " |" for c in cats]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        width = 0.8 / len(labels)
        fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(cats) + 2), 4.0))
        for i, (run, label) in enumerate(labels.items()):
            xs = [j + (i - (len(labels) - 1) / 2) * width for j, c in enumerate(cats) if c in taus[run]]
            ax.bar(xs, [taus[run][c] for c in cats if c in taus[run]], width, label=label)
        ax.set_xticks(range(len(cats)), cats, rotation=40, ha="right")
        ax.axhline(1.0, color="grey", lw=0.8)
        for y in a.targets:
            ax.axhline(y, color="black", lw=0.8, ls="--")
        ax.set_ylabel("tau (tokens per target pass)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(a.png, dpi=120)
        print(f"wrote {a.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
