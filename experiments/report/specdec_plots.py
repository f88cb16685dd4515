"""Plots of the specdec report (experiments/report/specdec_report.py): acceptance by draft position,
tau by category, speedup against k, and for batched runs speedup against batch size and against arrival rate. Each function takes the report's Summary and returns a matplotlib
Figure made without pyplot (no global state, any backend: the CLI saves PNGs, a notebook displays them).
"""
from __future__ import annotations

import math
import os

import numpy as np


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _config_labels(pr, with_k=True):
    """run -> a short configuration label ("ngram k=4", "early_exit k=4 typical*"), the same across
    temperatures; drafter options are added where they tell apart runs that are otherwise alike."""
    def base(r):
        s = r.drafter + (f" k={r.k}" if with_k else "")
        if r.rule and r.rule not in ("greedy", "speculative", "none"):
            s += f" {r.rule}"
        return s + ("" if r.lossless_rule else "*")
    spec = pr[~pr.baseline]
    bases = {r.run: base(r) for r in spec.itertuples()}
    labels = {}
    for r in spec.itertuples():
        twins = spec[np.array([bases[x] == bases[r.run] for x in spec.run], dtype=bool)]
        opts = str(r.drafter_options or "")
        if twins.drafter_options.astype(str).nunique() > 1 and opts:
            labels[r.run] = f"{bases[r.run]} [{opts if len(opts) <= 24 else opts[:23] + '~'}]"
        else:
            labels[r.run] = bases[r.run]
    return labels


def _spec_runs(summary):
    pr = summary.per_run
    return pr[~pr.baseline]


def _temperatures(pr):
    return sorted(pr.temperature.unique(), key=lambda t: _number(t) if not math.isnan(_number(t)) else 1e9)


def _new_figure(figsize):
    from matplotlib.figure import Figure  # no pyplot: no global state, works under any backend
    return Figure(figsize=figsize, layout="constrained")


def _colors(n):
    from matplotlib import colormaps
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _empty(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_acceptance_by_position(summary, positions=None, title=None):
    """Two panels: unconditional P(i accepted) and conditional P(i | i-1), one line per run."""
    pos = summary.positions if positions is None else positions
    fig = _new_figure((12, 4.8))
    axes = fig.subplots(1, 2, sharey=True)
    runs = [r for r in _spec_runs(summary).itertuples() if r.run in set(pos.run)]
    labels = _config_labels(summary.per_run)
    colors = _colors(len(runs))
    for ax, col, name in ((axes[0], "p_uncond", "unconditional  P(i accepted)"),
                          (axes[1], "p_cond", "conditional  P(i accepted | i-1 accepted)")):
        if not runs:
            _empty(ax, "no drafted tokens in this file")
        for r, color in zip(runs, colors):
            g = pos[pos.run == r.run].sort_values("position")
            style = "-" if _number(r.temperature) == 0 else "--"
            ax.plot(g.position, g[col], style, marker="o", color=color, label=f"{r.run} ({labels[r.run]})")
        ax.set_title(name)
        ax.set_xlabel("draft position i")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        if runs:
            ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel("acceptance probability")
    if runs:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize="small",
                   title="run (solid: T = 0, dashed: T > 0)", title_fontsize="small")
    fig.suptitle(title or "Draft acceptance by position")
    return fig


def plot_tau_by_category(summary):
    """Grouped bars: tau per category (and all requests) for each speculative run, one panel per T."""
    pr = summary.per_run
    pc = summary.per_category
    temps = _temperatures(pr) or ["-"]
    fig = _new_figure((max(7, 4.5 * len(temps) + 2), 4.8))
    axes = np.atleast_1d(fig.subplots(1, len(temps), sharey=True, squeeze=False)[0])
    spec = _spec_runs(summary)
    drafters = sorted(spec.drafter.unique())
    base_colors = dict(zip(drafters, _colors(len(drafters))))
    labels = _config_labels(pr)
    handles = {}
    for ax, t in zip(axes, temps):
        runs = spec[spec.temperature == t]
        cats = sorted(pc[pc.run.isin(runs.run)].category.unique()) + ["all"]
        if runs.empty:
            _empty(ax, "no speculative runs")
        width = 0.8 / max(1, len(runs))
        x = np.arange(len(cats))
        for j, r in enumerate(runs.itertuples()):
            g = pc[pc.run == r.run].set_index("category")
            vals = [g.tau.get(c, np.nan) for c in cats[:-1]] + [r.tau]
            kin = sorted({labels[x] for x in spec.run[spec.drafter == r.drafter]})
            same, nth = len(kin), kin.index(labels[r.run])
            shade = 1.0 - 0.45 * nth / max(1, same - 1) if same > 1 else 1.0
            color = tuple(c * shade + (1 - shade) for c in base_colors[r.drafter][:3])
            bars = ax.bar(x - 0.4 + width * (j + 0.5), vals, width, color=color, edgecolor="0.2",
                          linewidth=0.5, hatch="//" if not r.lossless_rule else None, label=labels[r.run])
            handles.setdefault(labels[r.run], bars)
        ax.axhline(1.0, color="0.3", linestyle=":", linewidth=1)
        ax.set_xticks(x, cats, rotation=20, ha="right")
        ax.set_title(f"T = {t}")
        ax.set_xlabel("category")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("tau (tokens per target pass)")
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside right center", fontsize="small",
                   title="drafter (hatched*: lossy)", title_fontsize="small")
    fig.suptitle("Mean accepted length tau by category (dotted: AR = 1)")
    return fig


def plot_speedup_vs_k(summary):
    """Speedup over AR against k, one line per drafter (and rule), 95% bootstrap intervals as error bars."""
    pr = summary.per_run
    temps = _temperatures(pr) or ["-"]
    fig = _new_figure((max(7, 4.5 * len(temps) + 2), 4.8))
    axes = np.atleast_1d(fig.subplots(1, len(temps), sharey=True, squeeze=False)[0])
    spec = _spec_runs(summary)
    labels = _config_labels(pr, with_k=False)
    spec = spec.assign(series=[labels[r.run] + (" (tree)" if r.tree else "") for r in spec.itertuples()])
    series = sorted(spec.series.unique())
    colors = dict(zip(series, _colors(len(series))))
    handles = {}
    for ax, t in zip(axes, temps):
        runs = spec[(spec.temperature == t) & spec.speedup.notna()]
        if runs.empty:
            _empty(ax, "no speedup (no AR baseline\nor no speculative run)")
        for j, (name, g) in enumerate(runs.groupby("series")):
            g = g.assign(kv=[_number(k) for k in g.k]).sort_values("kv")
            kx = g.kv.to_numpy() + (j - (len(series) - 1) / 2) * 0.06  # dodge overlapping error bars
            lo = np.clip(g.speedup - g.speedup_lo, 0, None).fillna(0)
            hi = np.clip(g.speedup_hi - g.speedup, 0, None).fillna(0)
            h = ax.errorbar(kx, g.speedup, yerr=[lo, hi], marker="s" if "(tree)" in name else "o",
                            capsize=4, color=colors[name], label=name)
            handles.setdefault(name, h)
        ax.axhline(1.0, color="0.3", linestyle=":", linewidth=1)
        ax.set_title(f"T = {t}")
        ax.set_xlabel("k (draft tokens / tree nodes per step)")
        ax.grid(alpha=0.3)
        if not runs.empty:
            ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel("speedup over AR (decode s per emitted token)")
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside right center", fontsize="small",
                   title="drafter (95% CI, bootstrap over prompts)", title_fontsize="small")
    fig.suptitle("Speedup against k (dotted: AR = 1)")
    return fig


def _plot_load_speedup(summary, x, xlabel, series_of, title):
    """Speedup over the AR run of the same batch size and load (95% CI as error bars) against column x of
    the load table, one line per series_of(row)."""
    fig = _new_figure((8, 4.8))
    ax = fig.subplots()
    load = summary.load
    spec = load[(load.drafter != "none") & load.speedup.notna() & load[x].notna()] if load is not None else None
    if spec is None or spec.empty:
        _empty(ax, f"no speedup against {xlabel}\n(no batched speculative run with an AR baseline)")
    else:
        spec = spec.assign(series=[series_of(r) for r in spec.itertuples()])
        names = sorted(spec.series.unique())
        for name, color in zip(names, _colors(len(names))):
            g = spec[spec.series == name].sort_values(x)
            lo = np.clip(g.speedup - g.speedup_lo, 0, None).fillna(0)
            hi = np.clip(g.speedup_hi - g.speedup, 0, None).fillna(0)
            ax.errorbar(g[x], g.speedup, yerr=[lo, hi], marker="o", capsize=4, color=color, label=name)
        ax.legend(fontsize="small", title="drafter (95% CI, bootstrap over prompts)", title_fontsize="small")
    ax.axhline(1.0, color="0.3", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("speedup over AR at the same batch size and load")
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def _load_label(r):
    return "closed loop" if r.load == "closed" else f"{r.rate:g} req/s" if not math.isnan(r.rate) else r.load


def plot_speedup_vs_batch_size(summary):
    """Batched runs: speedup against the batch size, one line per drafter, k, policy and load."""
    return _plot_load_speedup(
        summary, "batch", "batch size (sequences in flight)",
        lambda r: f"{r.drafter} k={r.k}{' ' + r.policy if r.policy else ''}, {_load_label(r)}",
        "Speedup against batch size (dotted: AR = 1)")


def plot_speedup_vs_arrival_rate(summary):
    """Batched runs under Poisson load: speedup against the arrival rate, one line per drafter, k, policy
    and batch size."""
    return _plot_load_speedup(
        summary, "rate", "arrival rate (requests/s, Poisson)",
        lambda r: f"{r.drafter} k={r.k}{' ' + r.policy if r.policy else ''}, B={r.batch}",
        "Speedup against arrival rate (dotted: AR = 1)")


def write_plots(summary, directory, dpi=120):
    """Writes acceptance_by_position.png, tau_by_category.png, speedup_vs_k.png and, for a log with batched
    runs, speedup_vs_batch_size.png and speedup_vs_arrival_rate.png; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    plots = [("acceptance_by_position.png", plot_acceptance_by_position),
             ("tau_by_category.png", plot_tau_by_category), ("speedup_vs_k.png", plot_speedup_vs_k)]
    if summary.load is not None and len(summary.load):
        plots += [("speedup_vs_batch_size.png", plot_speedup_vs_batch_size),
                  ("speedup_vs_arrival_rate.png", plot_speedup_vs_arrival_rate)]
    for name, fn in plots:
        path = os.path.join(directory, name)
        fn(summary).savefig(path, dpi=dpi)
        paths.append(path)
    return paths
