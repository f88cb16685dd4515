#!/usr/bin/env python3
"""The load sweep's verdict over replicated invocations, from `specdec report --json` of R >= 2 runs of one
config (bench/load_sweep.sh with REPLICATES=R).

    bench/load_sweep_replicates.py bench/results/load-TAG-r1-report.json ... [--k-max 4]

Why: one invocation's speedup CI (a bootstrap over its prompts) does not see the noise between invocations:
the same run, same seed and arrivals, measures a different speedup each time (the batch's composition follows
the machine's timing). A policy compared with the best of three fixed-k runs in one invocation is compared
with a noisy maximum. Here every run's speedup is a sample per invocation (docs/metrics.md "Replicated
verdict"):

- a run's replicated speedup: the mean over invocations, with the t interval of the mean (R - 1 degrees
  of freedom) and the standard deviation between invocations;
- a cell's bar: the fixed-k run with the highest mean, or AR (1) when no fixed run's mean is above 1;
- the verdict of a cost-model run: the invocations paired (one machine state each), d_i = its speedup minus
  the bar run's (minus 1 for AR) in invocation i; `ok` when the upper end of the t interval of mean(d)
  reaches 0, i.e. the policy is not shown below the bar;
- beside it, the cost-model run's steps that drafted, over all invocations (0 against an AR bar: the policy
  made AR's decisions at every step, and what separates it from AR is not a decision);
- the family-wise verdict over the sweep's cells: the target ("never below the bar at any batch size or
  load") is one claim about every cell at once, and m cells each tested at a one-sided 2.5% are shown
  "below" by chance alone with probability up to 1 - 0.975^m (a third at m = 16) when every policy equals
  its bar. Each cell's one-sided p-value of "cost_model - bar < 0" (the paired t statistic, R - 1 degrees of
  freedom) goes through Holm's step-down procedure at a family-wise 2.5%, valid under any dependence between
  the cells: a cell is "below" family-wise only where Holm rejects.

Every per-invocation speedup is the report's own (experiments/report); only the mean, the interval and the
verdict are computed here, by the definitions above.
"""
import argparse
import json
import math
import statistics

# two-sided 95% quantiles of Student's t by degrees of freedom (1..30); beyond: the normal's 1.96
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045,
        2.042]


def t975(dof):
    return T975[dof - 1] if dof <= len(T975) else 1.96


def t_cdf(t, dof):
    """P(T <= t) for Student's t with an integer number of degrees of freedom: the closed-form series of
    Abramowitz & Stegun 26.7.3-4 in theta = atan(t / sqrt(dof)) (exact; no scipy in the project's venv)."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    th = math.atan(abs(t) / math.sqrt(dof))
    c2 = math.cos(th) ** 2
    if dof == 1:
        a = 2 / math.pi * th
    elif dof % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ... up to cos^(dof-3)))
        term, acc = 1.0, 1.0
        for j in range(1, (dof - 1) // 2):
            term *= c2 * (2 * j) / (2 * j + 1)
            acc += term
        a = 2 / math.pi * (th + math.sin(th) * math.cos(th) * acc)
    else:  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ... up to cos^(dof-2))
        term, acc = 1.0, 1.0
        for j in range(1, dof // 2):
            term *= c2 * (2 * j - 1) / (2 * j)
            acc += term
        a = math.sin(th) * acc
    # a = P(|T| < |t|)
    return 0.5 + a / 2 if t >= 0 else 0.5 - a / 2


def p_below(d):
    """One-sided p-value of "mean(d) < 0" from the paired t statistic (len(d) - 1 degrees of freedom)."""
    m = statistics.fmean(d)
    se = statistics.stdev(d) / math.sqrt(len(d))
    if se == 0:
        return 0.0 if m < 0 else 1.0
    return t_cdf(m / se, len(d) - 1)


def holm(ps, alpha=0.025):
    """Holm's step-down procedure: [True where the hypothesis is rejected] for p-values ps at family-wise
    level alpha (the smallest p against alpha / m, the next against alpha / (m - 1), ... until one fails)."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    rejected = [False] * len(ps)
    for rank, i in enumerate(order):
        if ps[i] > alpha / (len(ps) - rank):
            break
        rejected[i] = True
    return rejected


def mean_ci(xs):
    """(mean, lo, hi, sd) of samples xs: the t interval of the mean, 95%."""
    m = statistics.fmean(xs)
    sd = statistics.stdev(xs)
    h = t975(len(xs) - 1) * sd / math.sqrt(len(xs))
    return m, m - h, m + h, sd


def load_reports(paths):
    """[{run: load row}] per invocation; every invocation must hold the same runs."""
    reps = []
    for p in paths:
        with open(p) as f:
            j = json.load(f)
        rows = {r["run"]: dict(r) for r in j["load"]}
        # the run's steps and its steps that drafted (the report's runs table), where the report has them
        for r in j.get("runs", []):
            if r["run"] in rows and "draft_steps" in r and "steps" in r:
                rows[r["run"]]["drafted"] = (r["draft_steps"], r["steps"])
        reps.append(rows)
    names = set(reps[0])
    for p, r in zip(paths, reps):
        if set(r) != names:
            raise SystemExit(f"load_sweep_replicates: {p} holds other runs than {paths[0]}: "
                             f"{sorted(set(r) ^ names)[:4]}")
    return reps


def verdicts(reps, k_max):
    """One row per cost-model run with k = k_max: its cell, replicated speedup, bar and verdict."""
    first = reps[0]
    rows = []
    for name, r in first.items():
        if r["policy"] != "cost_model" or int(r["k"]) != k_max:
            continue
        cell = (r["rate"], r["batch"], r["drafter"])
        fixed = [n for n, q in first.items()
                 if q["policy"] == "fixed" and (q["rate"], q["batch"], q["drafter"]) == cell]
        sp = {n: [rep[n]["speedup"] for rep in reps] for n in fixed + [name]}
        best = max(fixed, key=lambda n: statistics.fmean(sp[n]), default=None)
        bar_name = best if best is not None and statistics.fmean(sp[best]) > 1 else None
        bar = sp[bar_name] if bar_name else [1.0] * len(reps)
        d = [a - b for a, b in zip(sp[name], bar)]
        dm, dlo, dhi, _ = mean_ci(d)
        aa = [n for n, q in first.items() if q["drafter"] == "none" and n != q["baseline_run"]
              and (q["rate"], q["batch"]) == cell[:2]]
        rows.append({
            "rate": cell[0], "batch": cell[1], "drafter": cell[2], "run": name,
            "speedup": mean_ci(sp[name]), "bar_run": bar_name or "AR",
            "bar": mean_ci(bar) if bar_name else (1.0, 1.0, 1.0, 0.0),
            "diff": (dm, dlo, dhi), "verdict": "ok" if dhi >= 0 else "below", "p_below": p_below(d),
            "single_ok": sum(a >= b for a, b in zip(sp[name], bar)),
            "aa": mean_ci([rep[aa[0]]["speedup"] for rep in reps]) if aa else None,
            # steps that drafted / steps, over every invocation (None: a report without its runs table)
            "drafted": tuple(map(sum, zip(*(rep[name]["drafted"] for rep in reps))))
            if all("drafted" in rep[name] for rep in reps) else None,
        })
    rows.sort(key=lambda c: (c["rate"], c["batch"], c["drafter"] != "ngram", c["drafter"]))
    for c, below in zip(rows, holm([c["p_below"] for c in rows])):
        c["family"] = "below" if below else "ok"
    return rows


def fmt(m):
    return f"{m[0]:.3f} [{m[1]:.3f}, {m[2]:.3f}]"


def plot(rows, R, k_max, path):
    """One point per cell: mean(cost_model - bar) with its 95% t interval; a cell is at the bar where its
    interval reaches 0."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.2), constrained_layout=True)
    for i, c in enumerate(rows):
        m, lo, hi = c["diff"]
        ax.errorbar(m, i, xerr=[[m - lo], [hi - m]], fmt="o", capsize=3,
                    color="tab:blue" if c["verdict"] == "ok" else "tab:red")
    ax.axvline(0, color="gray", lw=1)
    ax.set_yticks(range(len(rows)), [f"{c['rate']:g}/s B={c['batch']} {c['drafter']}" for c in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"cost_model (k<={k_max}) speedup - bar speedup, mean of {R} invocations, 95% t interval")
    ax.set_title("cost model against the bar (best fixed k or AR); red: below it")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report_json", nargs="+")
    ap.add_argument("--k-max", type=int, default=4)
    ap.add_argument("--plot", help="also draw cost_model - bar per cell, with its t interval, to this PNG")
    args = ap.parse_args()
    if len(args.report_json) < 2:
        raise SystemExit("load_sweep_replicates: at least 2 invocations' reports")
    reps = load_reports(args.report_json)
    R = len(reps)
    rows = verdicts(reps, args.k_max)
    print(f"| load | B | drafter | bar (mean of {R}) | bar: speedup [95% t CI] | cost_model k<={args.k_max}: speedup "
          f"[95% t CI] | sd between invocations: cost_model / bar | cost_model - bar [95% t CI] | verdict | "
          f"invocations at or above the bar | A/A [95% t CI] | cost_model: steps that drafted, all invocations | "
          f"p (cost_model below the bar) | family-wise (Holm) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in rows:
        aa = fmt(c["aa"]) if c["aa"] else "-"
        drafted = f"{c['drafted'][0]} of {c['drafted'][1]}" if c["drafted"] else "-"
        print(f"| {c['rate']:g}/s | {c['batch']} | {c['drafter']} | {c['bar_run']} | {fmt(c['bar'])} | "
              f"{fmt(c['speedup'])} | {c['speedup'][3]:.3f} / {c['bar'][3]:.3f} | {c['diff'][0]:+.3f} "
              f"[{c['diff'][1]:+.3f}, {c['diff'][2]:+.3f}] | {c['verdict']} | {c['single_ok']} of {R} | {aa} | "
              f"{drafted} | {c['p_below']:.3g} | {c['family']} |")
    ok = sum(c["verdict"] == "ok" for c in rows)
    print(f"\nk_max = {args.k_max}, {R} invocations: {ok} of {len(rows)} cells reach the bar (the paired t interval "
          f"of cost_model - bar reaches 0); mean of cost_model - bar over cells: "
          f"{statistics.fmean(c['diff'][0] for c in rows):+.3f}")
    fam = sum(c["family"] == "ok" for c in rows)
    print(f"family-wise (Holm's step-down over the {len(rows)} cells at 2.5%, one-sided): {fam} of {len(rows)} cells "
          f"at the bar")
    if args.plot:
        plot(rows, R, args.k_max, args.plot)
    every = [c for k in sorted({int(r["k"]) for r in reps[0].values() if r["policy"] == "cost_model"})
             for c in verdicts(reps, k)]
    print(f"every k_max: {sum(c['verdict'] == 'ok' for c in every)} of {len(every)} runs")
    sds = [statistics.stdev([rep[n]["speedup"] for rep in reps]) for n in reps[0] if reps[0][n]["policy"]]
    print(f"sd of a run's speedup between invocations: median {statistics.median(sds):.3f}, max {max(sds):.3f} "
          f"({len(sds)} runs)")


if __name__ == "__main__":
    main()
