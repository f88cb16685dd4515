#!/usr/bin/env python3
"""The load sweep's table for BENCHMARKS.md, from `specdec report --json` of a sweep (bench/load_sweep.sh).

    bench/load_sweep_table.py bench/results/load-TAG-report.json [--k-max 4]

One row per (load, batch size, drafter): AR's throughput, the best fixed k's speedup with its CI, the cost
model's (k_max = --k-max) with its CI and its measured verdict (its CI reaches the bar = max(1, best fixed)),
its modelled tokens/s under the cost table against the modelled bar and that verdict, the planner's
calibration (sum of k_expected / sum of emitted tokens over the steps it planned), and the paced check (the
speedups with each run's times at the cost table's speed, docs/metrics.md): the cost model's paced speedup
against the paced bar and that verdict; with an A/A control ([run] aa_control), the cell's A/A speedup and the
verdict of the cost model's CI widened by the A/A noise. Then the counts over
every k_max. Every figure is the report's own (experiments/report); nothing is recomputed here.
"""
import argparse
import json


def fmt_ci(x, lo, hi):
    return f"{x:.2f} [{lo:.2f}, {hi:.2f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report_json")
    ap.add_argument("--k-max", type=int, default=4)
    args = ap.parse_args()
    rep = json.load(open(args.report_json))
    load = rep["load"]
    ar = {(r["rate"], r["batch"]): r for r in load if r["run"] == r["baseline_run"]}
    fixed = {r["run"]: r for r in load}
    rows = [c for c in rep["policy_check"] if f"_k{args.k_max}_cost_model_" in c["run"]]
    rows.sort(key=lambda c: (c["rate"], c["batch"], c["drafter"] != "ngram", c["drafter"]))
    with_aa = any(c.get("aa_verdict", "-") != "-" for c in rows)
    aa_head = " A/A: speedup [95% CI] | CI top + A/A noise | verdict |" if with_aa else ""
    print(f"| load | B | drafter | AR tok/s | best fixed (k): speedup [95% CI] | cost_model k<={args.k_max}: speedup "
          "[95% CI] | verdict | modelled tok/s: cost_model / bar | verdict | expected/emitted | paced: cost_model / bar "
          "| verdict |" + aa_head)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if with_aa else ""))
    for c in rows:
        bf = fixed[c["best_fixed_run"]]
        k = bf["k"]
        cal = "-" if c.get("calibration") is None else f"{c['calibration']:.2f}"
        print(f"| {c['rate']:g}/s | {c['batch']} | {c['drafter']} | {ar[(c['rate'], c['batch'])]['throughput']:.1f} | "
              f"k{k}: {fmt_ci(bf['speedup'], bf['speedup_lo'], bf['speedup_hi'])} | "
              f"{fmt_ci(c['speedup'], c['speedup_lo'], c['speedup_hi'])} | {c['verdict']} | "
              f"{c['model_tps']:.0f} / {c['model_bar']:.0f} | {c['model_verdict']} | {cal} | "
              f"{fmt_ci(c['paced'], c['paced_lo'], c['paced_hi'])} / {c['paced_bar']:.2f} | {c['paced_verdict']} |"
              + (f" {fmt_ci(c['aa_speedup'], c['aa_lo'], c['aa_hi_ci'])} | {c['aa_hi']:.2f} | {c['aa_verdict']} |"
                 if with_aa else ""))
    every = rep["policy_check"]
    ok = sum(c["verdict"] == "ok" for c in every)
    mok = sum(c["model_verdict"] == "ok" for c in every)
    within5 = sum(c["model_tps"] >= 0.95 * c["model_bar"] for c in rows)
    print(f"\nk_max = {args.k_max}: {sum(c['verdict'] == 'ok' for c in rows)} of {len(rows)} cells reach the bar as "
          f"measured; modelled: at or above the bar in {sum(c['model_verdict'] == 'ok' for c in rows)}, within 5% "
          f"in {within5}")
    pok = sum(c["paced_verdict"] == "ok" for c in every)
    print(f"k_max = {args.k_max} paced: {sum(c['paced_verdict'] == 'ok' for c in rows)} of {len(rows)} cells")
    print(f"every k_max: {ok} of {len(every)} runs reach the bar as measured, {mok} of {len(every)} modelled, "
          f"{pok} of {len(every)} paced")
    if with_aa:
        print(f"A/A control: run-to-run noise sigma = {rows[0]['aa_sigma']:.4f}; k_max = {args.k_max}: "
              f"{sum(c['aa_verdict'] == 'ok' for c in rows)} of {len(rows)} cells reach the bar with the CI widened "
              f"by it; every k_max: {sum(c['aa_verdict'] == 'ok' for c in every)} of {len(every)}")


if __name__ == "__main__":
    main()
