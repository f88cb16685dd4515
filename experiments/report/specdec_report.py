#!/usr/bin/env python3
"""specdec report: tables and plots from a specdec HDF5 results log (schema versions 1 to 3,
docs/hdf5-schema.md; metric definitions in docs/metrics.md). Importable (the notebooks use the same
functions) and a CLI:

    python3 experiments/report/specdec_report.py RESULTS.h5 [--plots DIR] [--csv FILE] [--json FILE]
                                                 [--bootstrap 2000] [--seed 0] [--slo-ttft S] [--slo-itl S]

load() reads a file into pandas DataFrames; summarize() computes every metric of the report (tau, draft
acceptance, per-position acceptance, tokens/s, the speedup over the AR baseline per emitted token with a
bootstrap interval over prompts, its end-to-end twin, median and outliers, the peers' headline figures,
greedy losslessness); format_report() prints it; write_plots() draws the figures. The definitions are
the ones core/speculative/stats.h (SpecStats) and experiments/results_metrics.h implement in C++; a test
runs both on one log and compares every figure.
"""
from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


# The column list of every table, derived from experiments/results_schema.h (never restated here): a log
# of schema version 2 carries it as its root attribute `columns`; schema.json beside this file is the same
# list, for logs that predate the attribute (version 1: the columns with since <= 1).
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.json")
with open(SCHEMA_FILE) as _f:
    SCHEMA = json.load(_f)
# A row is loaded when its 1-minute load average exceeds this times its host's cores (the run's own threads
# count in the average, which also lags): experiments/results_metrics.h, kLoadedFactor.
LOADED_FACTOR = 1.25
SUPPORTED_SCHEMA_VERSIONS = tuple(range(SCHEMA["oldest_readable"], SCHEMA["schema_version"] + 1))


def table_columns(schema=SCHEMA, version=None):
    """{table: [column names]} of a schema (the columns a given schema version has)."""
    version = schema["schema_version"] if version is None else version
    return {t: [c["name"] for c in cols if c["since"] <= version] for t, cols in schema["tables"].items()}


def _string_columns(schema=SCHEMA):
    return {c["name"] for cols in schema["tables"].values() for c in cols if c["type"] == "string"}


TABLE_COLUMNS = table_columns()

# Outlier rule for per-request speedup ratios (experiments/results_metrics.h: kOutlierMinPairs, kOutlierZ).
OUTLIER_MIN_PAIRS = 5
OUTLIER_Z = 3.5

METRIC_DEFINITIONS = """\
Metric definitions (docs/metrics.md; the same in C++: SpecStats, results::speedup)
- A step is one target verification pass. n_emitted = the tokens it appended to the output: n_accepted
  draft tokens + 1 from the target, less what a stop token or the length limit cut (last step only).
- tau = emitted tokens / steps (tokens per target pass; AR: 1). tau-bonus = tau - 1.
- acc_rate = accepted draft tokens / drafted tokens, every proposed token (every tree node) counted.
- depth_rate = accepted draft tokens / the proposals' depths (a chain's depth is its length, so
  depth_rate = acc_rate for chains; for a tree: the share of its depth the accepted path covered).
- Per-position acceptance, i = 1..K: P(i) = steps whose accepted path reached depth i / steps whose
  proposal reached depth i; P(i | i-1) = the same numerator / steps whose accepted path reached i-1 and
  had a draft token at depth i below it.
- tok/s = emitted tokens / decode time (prefill excluded).
- speedup (per emitted token, prefill excluded): for each request decoded by the run and by its AR
  baseline and timed by the same invocation, t_AR = AR decode_s / AR new_tokens and t_run = decode_s /
  new_tokens; speedup = sum(t_AR) / sum(t_run) over those pairs. [lo, hi] = 95% percentile bootstrap,
  resampling prompts with replacement (a prompt's repeats together). e2e = the same with wall_time_s
  (prefill included). median = median of the per-request ratios t_AR / t_run. repeats = [min, max] of
  the figure computed over each repeat index alone.
- A pair whose AR row was timed by another invocation (e.g. before a --resume) is left out (counted).
- Outliers: per-request ratios r with 0.6745 |ln r - median ln r| / MAD > 3.5 (MAD = median |ln r -
  median ln r|; with MAD = 0, any r off the median), with at least 5 pairs.
- Loaded: requests timed while the host's 1-minute load average exceeded 1.25 x its cores (a warning).
- lossless (greedy runs with a lossless rule only): yes when every request's output_tokens equal the AR
  baseline's for the same request_id, else no (n mismatching requests).
- A rule marked * is lossy (lossless = 0)."""

PEER_DEFINITIONS = """\
Peers' headline figures, from the same steps, as each peer defines it (sources in docs/metrics.md)
- Spec-Bench / EAGLE #MAT (mean accepted tokens) = (accepted + steps) / steps: the mean accept length
  per target pass incl. the bonus token, not cut at a stop token.
- vLLM acceptance rate = accepted / drafted; mean acceptance length = 1 + accepted / drafts, drafts =
  steps that proposed at least one token; per-position rate i = steps accepting position i / drafts.
- llama.cpp accept = n_accept / n_drafted (accepted / drafted, every drafted token).
- SGLang accept length = completion tokens / verify passes = emitted / steps (here the first token also
  comes from a verify pass; SGLang's first token comes from the prefill)."""


# ---- loading ----------------------------------------------------------------------------------------

def _text(value):
    """An HDF5 attribute or string field as str (variable- or fixed-length, bytes or str)."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else ",".join(_text(v) for v in value.ravel())
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace").rstrip("\x00")
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def _read_table(group, name, columns, strings):
    cols = columns[name]
    if group is None or name not in group:
        return pd.DataFrame({c: pd.Series(dtype="object" if c in strings else "float64") for c in cols})
    arr = group[name][()]
    data = {}
    for col in arr.dtype.names or ():
        values = arr[col]
        if values.dtype.kind == "S":
            values = np.char.decode(values, "utf-8", "replace")
        elif values.dtype.kind == "O":
            values = np.array([_text(v) for v in values], dtype=object)
        data[col] = values
    df = pd.DataFrame(data)
    for c in cols:  # a column the file's version lacks: "" or NaN (n_emitted: rebuilt in load())
        if c not in df:
            df[c] = "" if c in strings else np.nan
    return df


def _fill_emitted_v1(steps, requests):
    """A version 1 log has no n_emitted: every step emitted n_accepted + 1 tokens except the request's last,
    which a stop token or the length limit could cut: it emitted what new_tokens leaves."""
    if not len(steps) or not steps.n_emitted.isna().any():
        return steps
    steps = steps.copy()
    full = steps.n_accepted + 1
    key = ["run", "request_id"]
    last = ~steps.duplicated(key, keep="last")
    before = full.where(~last, 0).groupby([steps.run, steps.request_id]).transform("sum")
    new = steps[key].merge(requests[key + ["new_tokens"]], on=key, how="left").new_tokens.to_numpy()
    steps["n_emitted"] = np.where(last.to_numpy(), np.maximum(new - before.to_numpy(), 0), full.to_numpy())
    return steps


def _flag(value, default=False):
    s = str(value).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    return default


def _number(value, kind=float):
    try:
        return kind(float(value))
    except (TypeError, ValueError):
        return np.nan


@dataclass
class Results:
    """A results file as DataFrames. Every table has a `run` column; only finished requests (those with a
    `requests` row) are kept. Item access works too: res["steps"]."""
    path: str
    attrs: dict
    runs: pd.DataFrame          # index: run name; string attributes + parsed columns
    requests: pd.DataFrame
    steps: pd.DataFrame
    draft_tokens: pd.DataFrame
    outputs: pd.DataFrame       # run, request_id, offset, length, tokens (np.int32 array)
    unfinished: dict = field(default_factory=dict)  # run -> request ids with rows but no requests row

    def __getitem__(self, key):
        return getattr(self, key)

    def keys(self):
        return ["runs", "requests", "steps", "draft_tokens", "outputs"]

    def tokens(self, run, request_id):
        row = self.outputs[(self.outputs.run == run) & (self.outputs.request_id == request_id)]
        return None if row.empty else row.tokens.iloc[0]


def load(path):
    """Reads a specdec HDF5 results log into a Results of DataFrames."""
    import h5py  # imported here so that the formatting helpers work without h5py

    tables = {name: [] for name in ("requests", "steps", "draft_tokens", "outputs")}
    run_rows, unfinished = [], {}
    with h5py.File(path, "r", swmr=True, libver="latest") as f:
        attrs = {k: _text(v) for k, v in f.attrs.items()}
        version = _number(attrs.get("schema_version"), int) if "schema_version" in attrs else None
        if version is not None and version not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(f"{path}: schema_version {version}, this report reads "
                             f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}")
        # The file's own column list when it has one, else schema.json's; columns an older file lacks read as
        # "" / NaN (steps.n_emitted of a version 1 log is rebuilt below).
        schema = json.loads(attrs["columns"]) if "columns" in attrs else SCHEMA
        columns = table_columns(schema)
        strings = _string_columns(schema)
        runs_group = f.get("runs")
        for name in (sorted(runs_group.keys()) if runs_group is not None else []):
            g = runs_group[name]
            row = {k: _text(v) for k, v in g.attrs.items()}
            row["run"] = name
            run_rows.append(row)
            per = {t: _read_table(g, t, columns, strings) for t in tables}
            per["requests"] = per["requests"][per["requests"].request_id >= 0]  # -1: never written
            finished = set(per["requests"].request_id.astype("int64"))
            for t in ("steps", "draft_tokens", "outputs"):
                df = per[t]
                keep = df.request_id.isin(finished)
                if (~keep).any():
                    unfinished.setdefault(name, set()).update(int(r) for r in df.request_id[~keep])
                per[t] = df[keep]
            out = per["outputs"].copy()
            all_tokens = g["output_tokens"][()] if "output_tokens" in g else np.zeros(0, np.int32)
            out["tokens"] = [np.asarray(all_tokens[int(o):int(o) + int(n)], dtype=np.int32)
                             for o, n in zip(out.offset, out.length)]
            per["outputs"] = out
            for t, df in per.items():
                df = df.copy()
                df.insert(0, "run", name)
                tables[t].append(df)

    frames = {}
    for t, dfs in tables.items():
        dfs = [d for d in dfs if len(d)]
        frames[t] = (pd.concat(dfs, ignore_index=True) if dfs else
                     pd.DataFrame(columns=["run"] + columns[t] + (["tokens"] if t == "outputs" else [])))
    for t in ("steps", "draft_tokens", "requests"):
        for c in columns[t]:
            if c not in strings and frames[t][c].dtype == object:
                frames[t][c] = pd.to_numeric(frames[t][c])
    if len(frames["requests"]):
        for c in strings & set(frames["requests"].columns):
            frames["requests"][c] = frames["requests"][c].astype(str)
    frames["steps"] = _fill_emitted_v1(frames["steps"], frames["requests"])

    runs = pd.DataFrame(run_rows)
    if runs.empty:
        runs = pd.DataFrame(columns=["run", "drafter", "k", "temperature", "rule", "lossless", "baseline"])
    runs = runs.set_index("run")
    for c in ("drafter", "drafter_options", "k", "temperature", "rule", "lossless", "baseline", "target"):
        if c not in runs:
            runs[c] = ""
        runs[c] = runs[c].fillna("").astype(object)
    runs["is_baseline"] = [_flag(b, default=(d == "none")) if str(b) != "" else d == "none"
                           for b, d in zip(runs.baseline, runs.drafter)]
    runs["is_lossless"] = [_flag(v, default=True) for v in runs.lossless]
    runs["T"] = [_number(v) for v in runs.temperature]
    runs["K"] = [_number(v) for v in runs.k]
    runs["is_tree"] = [_is_tree(frames["steps"], frames["draft_tokens"], name) for name in runs.index]
    n_req = frames["requests"].groupby("run").size() if len(frames["requests"]) else pd.Series(dtype=int)
    runs["n_requests"] = [int(n_req.get(name, 0)) for name in runs.index]
    return Results(str(path), attrs, runs, frames["requests"], frames["steps"], frames["draft_tokens"],
                   frames["outputs"], {k: sorted(v) for k, v in unfinished.items()})


def _is_tree(steps, drafts, run):
    """A run drafts trees when some node's parent is not the previous node (chains: parent = node - 1)."""
    d = drafts[drafts.run == run] if len(drafts) else drafts
    if len(d):
        return bool((d.parent != d.node - 1).any())
    s = steps[steps.run == run] if len(steps) else steps
    return bool(len(s) and ((s.max_depth > 0) & (s.max_depth < s.n_proposed)).any())


# ---- metrics ----------------------------------------------------------------------------------------

def _with_category(res, df):
    cats = res.requests[["run", "request_id", "category"]].drop_duplicates(["run", "request_id"])
    return df.merge(cats, on=["run", "request_id"], how="left")


def step_counts(res, by_category=False):
    """Per run (and category): the counts of SpecStats (core/speculative/stats.h) from the steps table:
    steps, emitted, drafted (every proposed token / node), accepted, depth (sum of the proposals' depths),
    draft_steps (steps that proposed), plus requests, new tokens and times from the requests table. A run
    without steps rows gets steps and emitted from its requests rows, the rest NaN."""
    keys = ["run", "category"] if by_category else ["run"]
    req = res.requests
    cols = ["n_requests", "steps", "emitted", "drafted", "accepted", "depth", "draft_steps", "new_tokens",
            "decode_s", "wall_s"]
    if not len(req):
        return pd.DataFrame(columns=keys + cols).set_index(keys)
    agg = req.groupby(keys).agg(n_requests=("request_id", "size"), new_tokens=("new_tokens", "sum"),
                                decode_s=("decode_s", "sum"), wall_s=("wall_time_s", "sum"),
                                req_steps=("steps", "sum"))
    st = res.steps
    if len(st):
        st = _with_category(res, st) if by_category else st
        s = st.assign(_drafts=(st.n_proposed > 0).astype(int)).groupby(keys).agg(
            steps=("step", "size"), emitted=("n_emitted", "sum"), drafted=("n_proposed", "sum"),
            accepted=("n_accepted", "sum"), depth=("max_depth", "sum"), draft_steps=("_drafts", "sum"))
        agg = agg.join(s, how="left")
    else:
        agg = agg.assign(steps=np.nan, emitted=np.nan, drafted=np.nan, accepted=np.nan, depth=np.nan,
                         draft_steps=np.nan)
    missing = agg.steps.isna() | (agg.steps == 0)
    agg.loc[missing, "steps"] = agg.loc[missing, "req_steps"]
    agg.loc[missing, "emitted"] = agg.loc[missing, "new_tokens"]
    for c in ("drafted", "accepted", "depth", "draft_steps"):
        agg.loc[missing, c] = np.nan
    return agg.drop(columns=["req_steps"])[cols]


def _div(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def rate_metrics(res, by_category=False):
    """specdec's figures and the peers' per run (and category), one definition per name (METRIC_DEFINITIONS,
    PEER_DEFINITIONS; SpecStats computes the same in C++)."""
    c = step_counts(res, by_category)
    out = c.copy()
    out["tau"] = _div(c.emitted, c.steps)
    out["tau_no_bonus"] = out["tau"] - 1.0
    out["acc_rate"] = _div(c.accepted, c.drafted)
    out["depth_rate"] = _div(c.accepted, c.depth)
    out["tokens_per_s"] = _div(c.emitted, c.decode_s)
    out["specbench_mat"] = _div(c.accepted + c.steps, c.steps)
    out["vllm_acceptance_rate"] = _div(c.accepted, c.drafted)
    out["vllm_mean_acceptance_length"] = 1.0 + _div(c.accepted, c.draft_steps)
    out["llamacpp_accept"] = _div(c.accepted, c.drafted)
    out["sglang_accept_length"] = _div(c.emitted, c.steps)
    return out


def position_acceptance(res, by_category=False, max_position=None):
    """Per-position acceptance from draft_tokens. One row per run (and category) and position i with
    n_proposed (steps that proposed depth >= i), n_accepted (steps whose accepted path reached i),
    p_uncond = n_accepted / n_proposed, n_reached (steps whose accepted path reached i-1 and had a
    draft token at depth i below it) and p_cond = n_accepted / n_reached."""
    keys = ["run", "category"] if by_category else ["run"]
    cols = keys + ["position", "n_proposed", "n_accepted", "p_uncond", "n_reached", "p_cond", "vllm_rate"]
    drafts = step_counts(res, by_category).draft_steps
    d = res.draft_tokens
    if not len(d):
        return pd.DataFrame(columns=cols)
    d = d[["run", "request_id", "step", "node", "parent", "depth", "accepted"]].copy()
    d["accepted"] = d.accepted.astype(bool)
    step_key = ["run", "request_id", "step"]
    parents = d[step_key + ["node", "accepted"]].rename(columns={"node": "parent", "accepted": "parent_acc"})
    d = d.merge(parents, on=step_key + ["parent"], how="left")
    d["on_path"] = (d.parent < 0) | d.parent_acc.fillna(False).astype(bool)
    per_step = d.assign(_acc_depth=np.where(d.accepted, d.depth, 0)).groupby(step_key).agg(
        max_depth=("depth", "max"), acc_len=("_acc_depth", "max")).reset_index()
    reached = d[d.on_path][step_key + ["depth"]].drop_duplicates()
    if by_category:
        per_step = _with_category(res, per_step)
        reached = _with_category(res, reached)
    K = int(per_step.max_depth.max()) if len(per_step) else 0
    if max_position:
        K = min(K, int(max_position))
    rows = []
    for key, g in per_step.groupby(keys):
        key = key if isinstance(key, tuple) else (key,)
        r = reached
        for name, value in zip(keys, key):
            r = r[r[name] == value]
        md = g.max_depth.to_numpy()
        al = g.acc_len.to_numpy()
        reach_counts = r.groupby("depth").size()
        for i in range(1, int(md.max()) + 1 if len(md) else 1):
            if i > K:
                break
            n_prop = int((md >= i).sum())
            n_acc = int((al >= i).sum())
            n_reach = int(reach_counts.get(i, 0))
            n_drafts = float(drafts.get(key if len(key) > 1 else key[0], np.nan))
            rows.append(dict(zip(keys, key), position=i, n_proposed=n_prop, n_accepted=n_acc,
                             p_uncond=n_acc / n_prop if n_prop else np.nan, n_reached=n_reach,
                             p_cond=n_acc / n_reach if n_reach else np.nan,
                             vllm_rate=n_acc / n_drafts if n_drafts > 0 else np.nan))
    return pd.DataFrame(rows, columns=cols)


def find_baseline(res, run):
    """The AR baseline run for `run`: the run named by its `baseline_run` attribute when the runner wrote
    one and it is in the file and an AR run; else a run with baseline = 1 and the same temperature and
    target (and seed, when both have one); among several, the one sharing the most request ids (then by
    name). None when there is none."""
    runs = res.runs
    me = runs.loc[run]
    named = _attr(me, "baseline_run")
    if named in runs.index and runs.loc[named].is_baseline:
        return named
    cands = runs[runs.is_baseline]
    if _attr(me, "seed"):
        same_seed = cands[np.array([_attr(r, "seed") == _attr(me, "seed") for _, r in cands.iterrows()], bool)]
        cands = same_seed if len(same_seed) else cands
    same = np.array([_same_temperature(t, me["T"]) for t in cands["T"]], dtype=bool)
    cands = cands[same & (cands.target.astype(str) == str(me.target)).to_numpy(bool)]
    if run in cands.index:
        return run
    if cands.empty:
        return None
    mine = set(res.requests.request_id[res.requests.run == run])
    overlap = {c: len(mine & set(res.requests.request_id[res.requests.run == c])) for c in cands.index}
    return sorted(overlap, key=lambda c: (-overlap[c], c))[0]


def _attr(row, key):
    """A run attribute as a string; "" when the run has none."""
    value = row.get(key, "")
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _same_temperature(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(np.isclose(a, b, rtol=0, atol=1e-6))


def bootstrap_ratio(num, den, n_boot=2000, seed=0, level=0.95, block=200_000):
    """sum(num) / sum(den) and its percentile bootstrap interval, resampling the units (num[i], den[i])
    with replacement (speedup: one unit per prompt, its repeats' per-token times summed). Returns (point,
    lo, hi); lo = hi = point for one unit; NaNs for none."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    n = len(num)
    if n == 0 or den.sum() <= 0:
        return np.nan, np.nan, np.nan
    point = num.sum() / den.sum()
    if n_boot <= 0:
        return point, np.nan, np.nan
    if n == 1:
        return point, point, point
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    per = max(1, block // n)  # resamples per block, to bound memory
    for start in range(0, n_boot, per):
        m = min(per, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        with np.errstate(divide="ignore", invalid="ignore"):
            stats[start:start + m] = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanpercentile(stats, [100 * alpha, 100 * (1 - alpha)])
    return point, float(lo), float(hi)


def speedup_pairs(res, run, baseline, category=None):
    """The requests `run` and its AR `baseline` both decoded, timed by the same invocation, with their
    per-token times: columns request_id, prompt_id, repeat, t_ar, t_run (decode_s / new_tokens), e2e_ar,
    e2e_run (wall_time_s / new_tokens), ratio = t_ar / t_run, loaded (either side timed while the load
    average exceeded the host's cores). Returns (pairs, counts) with counts n_unpaired, n_cross_invocation
    (left out: the baseline's row was timed by another invocation) and n_no_tokens."""
    req = res.requests
    mine = req[req.run == run]
    if category is not None:
        mine = mine[mine.category == category]
    cols = ["request_id", "prompt_id", "repeat", "new_tokens", "decode_s", "wall_time_s", "invocation",
            "load_avg", "host_cores"]
    base = req[req.run == baseline][cols].drop_duplicates("request_id")
    m = mine[cols].drop_duplicates("request_id").merge(base, on="request_id", how="left",
                                                       suffixes=("_run", "_ar"), indicator=True)
    counts = dict(n_unpaired=int((m._merge == "left_only").sum()), n_cross_invocation=0, n_no_tokens=0)
    m = m[m._merge == "both"]
    same = m.invocation_run.astype(str) == m.invocation_ar.astype(str)
    counts["n_cross_invocation"] = int((~same).sum())
    m = m[same]
    ok = (m.new_tokens_run > 0) & (m.new_tokens_ar > 0) & (m.decode_s_run > 0)
    counts["n_no_tokens"] = int((~ok).sum())
    m = m[ok]
    with np.errstate(invalid="ignore"):
        loaded = ((m.load_avg_ar > LOADED_FACTOR * m.host_cores_ar) & (m.host_cores_ar > 0)) | \
                 ((m.load_avg_run > LOADED_FACTOR * m.host_cores_run) & (m.host_cores_run > 0))
    pairs = pd.DataFrame(dict(
        request_id=m.request_id.to_numpy(), prompt_id=m.prompt_id_run.to_numpy(), repeat=m.repeat_run.to_numpy(),
        t_ar=(m.decode_s_ar / m.new_tokens_ar).to_numpy(float), t_run=(m.decode_s_run / m.new_tokens_run).to_numpy(float),
        e2e_ar=(m.wall_time_s_ar / m.new_tokens_ar).to_numpy(float),
        e2e_run=(m.wall_time_s_run / m.new_tokens_run).to_numpy(float), loaded=loaded.to_numpy(bool)))
    pairs["ratio"] = pairs.t_ar / pairs.t_run
    return pairs, counts


def outliers(ratios):
    """Indices of outlying ratios: 0.6745 |ln r - median ln r| / MAD > OUTLIER_Z (MAD = median |ln r -
    median ln r|; MAD = 0: any r off the median), with at least OUTLIER_MIN_PAIRS ratios."""
    logs = np.log(np.asarray(ratios, dtype=float))
    if len(logs) < OUTLIER_MIN_PAIRS:
        return []
    dev = np.abs(logs - np.median(logs))
    mad = np.median(dev)
    flag = 0.6745 * dev / mad > OUTLIER_Z if mad > 0 else dev > 1e-12
    return [int(i) for i in np.flatnonzero(flag)]


def speedup(res, run, baseline=None, category=None, n_boot=2000, seed=0):
    """Speedup of `run` over its AR baseline (METRIC_DEFINITIONS): dict(point, lo, hi, e2e, median,
    rep_min, rep_max, n_repeats, n_paired, n_cross_invocation, n_unpaired, outliers (request ids),
    n_loaded, baseline). The interval resamples prompts (all pairs of a prompt together)."""
    baseline = baseline or find_baseline(res, run)
    out = dict(point=np.nan, lo=np.nan, hi=np.nan, e2e=np.nan, median=np.nan, rep_min=np.nan, rep_max=np.nan,
               n_repeats=0, n_paired=0, n_cross_invocation=0, n_unpaired=0, outliers=[], n_loaded=0,
               baseline=baseline)
    if baseline is None:
        return out
    pairs, counts = speedup_pairs(res, run, baseline, category)
    out.update(counts)
    if not len(pairs):
        return out
    by_prompt = pairs.groupby("prompt_id", sort=True).agg(t_ar=("t_ar", "sum"), t_run=("t_run", "sum"))
    point, lo, hi = bootstrap_ratio(by_prompt.t_ar, by_prompt.t_run, n_boot, seed)
    reps = pairs.groupby("repeat").apply(lambda g: g.t_ar.sum() / g.t_run.sum()) if len(pairs) else []
    out.update(point=point, lo=lo, hi=hi, e2e=pairs.e2e_ar.sum() / pairs.e2e_run.sum(),
               median=float(np.exp(np.median(np.log(pairs.ratio)))), n_paired=len(pairs),
               rep_min=float(np.min(reps)), rep_max=float(np.max(reps)), n_repeats=int(len(reps)),
               outliers=[int(pairs.request_id.iloc[i]) for i in outliers(pairs.ratio)],
               n_loaded=int(pairs.loaded.sum()))
    return out


def lossless_check(res):
    """For every greedy (T = 0) speculative run: compares each request's output tokens with the AR
    baseline's for the same request_id. One row per run: baseline, checked (the rule is lossless),
    n_compared, n_mismatch, n_unpaired (no baseline request), mismatching_request_ids, verdict: 'yes',
    'no (n mismatching requests)', 'n/a (...)', or for a lossy rule 'not checked (lossy rule)'."""
    rows = []
    outputs = res.outputs
    for run, r in res.runs.iterrows():
        if r.is_baseline or not _same_temperature(r["T"], 0.0):
            continue
        base = find_baseline(res, run)
        row = dict(run=run, baseline=base, checked=bool(r.is_lossless), n_compared=0, n_mismatch=0,
                   n_unpaired=0, mismatching_request_ids=[])
        if base is not None:
            theirs = {int(rid): t for rid, t in zip(outputs.request_id[outputs.run == base],
                                                     outputs.tokens[outputs.run == base])}
            mine = outputs[outputs.run == run]
            for rid, toks in zip(mine.request_id, mine.tokens):
                ref = theirs.get(int(rid))
                if ref is None:
                    row["n_unpaired"] += 1
                elif not np.array_equal(toks, ref):
                    row["mismatching_request_ids"].append(int(rid))
                if ref is not None:
                    row["n_compared"] += 1
            row["n_mismatch"] = len(row["mismatching_request_ids"])
        if not r.is_lossless:
            row["verdict"] = "not checked (lossy rule)"
        elif base is None:
            row["verdict"] = "n/a (no AR baseline)"
        elif row["n_compared"] == 0:
            row["verdict"] = "n/a (no paired requests)"
        elif row["n_mismatch"]:
            row["verdict"] = f"no ({row['n_mismatch']} mismatching requests)"
        else:
            row["verdict"] = "yes"
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", "baseline", "checked", "n_compared", "n_mismatch", "n_unpaired",
                                       "mismatching_request_ids", "verdict"])


def verdict_check(res):
    """Recomputes every logged verdict of draft_tokens from its own row (docs/verification.md):
    greedy passed = p_test == 1; speculative passed = u < min(1, p_test / q_draft); typical passed =
    p_test > threshold; and accepted implies passed. One row per speculative run: rule, n_tested,
    n_disagree (0 for any log specdec wrote), or n_tested = NaN for a schema 1 log (no p_test / passed)."""
    rows = []
    d = res.draft_tokens
    has = len(d) and {"p_test", "passed", "threshold"} <= set(d.columns)
    for run, r in res.runs.iterrows():
        if r.is_baseline:
            continue
        if not has:
            rows.append(dict(run=run, rule=r.rule, n_tested=np.nan, n_disagree=np.nan))
            continue
        g = d[(d.run == run) & d.visited.astype(bool)]
        passed = g.passed.astype(bool).to_numpy()
        accepted = g.accepted.astype(bool).to_numpy()
        if r.rule == "greedy":
            want = g.p_test.to_numpy() == 1.0
        elif r.rule == "speculative":
            p, q, u = g.p_test.to_numpy(), g.q_draft.to_numpy(), g.u.to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                a = np.where(p >= q, 1.0, np.where(q > 0, p / q, 0.0))
            want = u < a
        elif r.rule == "typical":
            want = g.p_test.to_numpy() > g.threshold.to_numpy()
        else:  # a rule this report does not know: only the path check
            want = passed
        bad = (want != passed) | (accepted & ~passed)
        rows.append(dict(run=run, rule=r.rule, n_tested=int(len(g)), n_disagree=int(bad.sum())))
    return pd.DataFrame(rows, columns=["run", "rule", "n_tested", "n_disagree"])


# ---- batched runs under load (issue #14) ------------------------------------------------------------
# Per batched run (batch_size > 0): throughput, TTFT, ITL, e2e latency and goodput from the raw events
# (requests.arrival_s, steps.t_emit_s and n_emitted); the speculation oracle's regret from the steps and the
# run's cost table (a port of core/speculative/oracle.cpp, checked against it on one log by
# tests/results/test_metrics_parity.cpp); the single-alpha formula's tau next to the measured one.

# Goodput's service-level objectives when the report is given none (specdec report --slo-ttft / --slo-itl).
DEFAULT_SLO_TTFT_S = 1.0
DEFAULT_SLO_ITL_S = 0.1

LOAD_DEFINITIONS = """\
Batched runs under load (docs/metrics.md; times from the log's raw events, seconds since the run's start)
- A run with interleaved = 1 ([run] interleave) took turns with the other runs of its load: its times are
  seconds on its own clock (its own work; idle time skipped), so drift falls on the compared runs alike.
- A request arrives at arrival_s and joins the batch at the first step after it; a step emits its
  n_emitted tokens at its t_emit_s. first token = the request's first step's t_emit_s, finish = its last.
- throughput = emitted tokens of the run / span, span = last finish - first arrival.
- TTFT = first token - arrival (queueing and prefill included). e2e latency = finish - arrival.
- ITL (inter-token latency): every token after a request's first step gets (t_emit_s of its step - t_emit_s
  of the request's previous step) / n_emitted of its step; p50 / p90 / p99 over every such token of the run.
- goodput = requests with TTFT <= SLO_TTFT and mean ITL <= SLO_ITL, per second of span; a request's mean ITL
  = (finish - first token) / (new_tokens - 1) (0 for one token).
- speedup = the per-request speedup above (decode time per emitted token, paired by request with the AR run
  of the same batch size and load, its bootstrap CI); thr-speedup = throughput / that AR run's throughput.
- regret = oracle tokens/s / achieved tokens/s - 1 under the run's cost table: the oracle picks each step's
  draft length in 0..what was proposed (a tree: its depth) to maximise the run's total tokens / total
  modelled cost (Dinkelbach; longer drafts are censored, core/speculative/oracle.h).
- alpha-tau = the single-alpha formula (1 - a^(k+1)) / (1 - a) at a = acc_rate, k = the run's k."""


# ---- the cost table and the oracle (core/speculative/policy.h CostTable, core/speculative/oracle.h) --------

class CostTable:
    """The CostTable JSON of `specdec bench costs` (docs/policies.md), looked up as the C++ does: T at the
    nearest grid point (a tie takes the larger), B and C linear between grid points (bilinear), clamped at
    the ends."""

    def __init__(self, text):
        j = json.loads(text)
        fwd = j["forward"]
        self.source = j.get("source", "")
        self.tokens, self.batch, self.context = list(fwd["tokens"]), list(fwd["batch"]), list(fwd["context"])
        self.us = np.asarray(fwd["us"], dtype=float)  # [T][B][C]
        self.drafters = {k: list(map(float, v)) for k, v in j.get("drafters", {}).items()}

    @staticmethod
    def _nearest(grid, x):
        i = bisect.bisect_left(grid, x)
        if i == 0:
            return 0
        if i == len(grid):
            return len(grid) - 1
        return i - 1 if x - grid[i - 1] < grid[i] - x else i

    @staticmethod
    def _bracket(grid, x):
        """(lo, hi, w): the grid points around x and the weight of hi; (i, i, 0) on a point or outside."""
        if x <= grid[0]:
            return 0, 0, 0.0
        if x >= grid[-1]:
            return len(grid) - 1, len(grid) - 1, 0.0
        hi = bisect.bisect_right(grid, x)
        return hi - 1, hi, (x - grid[hi - 1]) / (grid[hi] - grid[hi - 1])

    def forward_us(self, T, B, C):
        block = self.us[self._nearest(self.tokens, T)]  # [B][C]
        b0, b1, wb = self._bracket(self.batch, B)
        c0, c1, wc = self._bracket(self.context, C)

        def in_c(b):
            return (1 - wc) * block[b, c0] + wc * block[b, c1]

        return float((1 - wb) * in_c(b0) + wb * in_c(b1))

    def drafter_us(self, name, k):
        if not name:
            return 0.0
        if name not in self.drafters:
            raise KeyError(f"cost table ({self.source}): no costs for drafter '{name}'")
        return self.drafters[name][k]

    def step_us(self, drafter, k, B, C):
        return self.forward_us(k + 1, B, C) + self.drafter_us(drafter, k)

    def ragged_forward_us(self, n_tokens, B, C):
        """B sequences verifying n_tokens in all: forward_us at n_tokens / B per sequence, linear between the
        integers around it (core/speculative/policy.h)."""
        lo, rest = divmod(n_tokens, B)
        f_lo = self.forward_us(lo, B, C)
        if rest == 0:
            return f_lo
        w = rest / B
        return (1 - w) * f_lo + w * self.forward_us(lo + 1, B, C)


def oracle_steps(steps):
    """The oracle's view of a run's steps: columns k (proposed: a chain's length, a tree's depth), accepted,
    emitted, batch (batch_size), context, group (one forward_batch: its batch_step and t_emit_s; -1 without a
    batch_step)."""
    k = np.where(steps.tree_nodes > 0, steps.max_depth, steps.n_proposed).astype(int)
    group = np.full(len(steps), -1, dtype=np.int64)
    if "batch_step" in steps and len(steps):
        bs = steps.batch_step.fillna(-1).to_numpy(np.int64)
        has = bs >= 0
        if has.any():
            keys = pd.MultiIndex.from_arrays([bs[has], steps.t_emit_s.to_numpy(float)[has]])
            group[has] = pd.factorize(keys)[0]
    return pd.DataFrame(dict(k=k, accepted=steps.n_accepted.to_numpy(int), emitted=steps.n_emitted.to_numpy(int),
                             batch=np.maximum(steps.batch_size.to_numpy(int), 1),
                             context=steps.context_len.to_numpy(int), group=group))


def _round_half_up(x):
    return int(np.floor(x + 0.5))  # std::lround for x >= 0


def _forward_units(grp, batch, ctx):
    """The forwards of oracle_steps' columns group, batch and context, in order of first step: (joint, members,
    mean context). A group with as many rows as their batch size is one joint forward of the whole batch
    (its mean context rounded half up); any other row is a unit alone (context 0: unused)."""
    n = len(grp)
    members = {}
    for i in range(n):
        if grp[i] >= 0:
            members.setdefault(int(grp[i]), []).append(i)
    units, seen = [], np.zeros(n, dtype=bool)
    for i in range(n):
        if seen[i]:
            continue
        g = members.get(int(grp[i])) if grp[i] >= 0 else None
        if g is not None and all(batch[j] == len(g) for j in g):
            units.append((True, g, _round_half_up(sum(int(ctx[j]) for j in g) / len(g))))
            seen[g] = True
        else:
            units.append((False, [i], 0))
            seen[i] = True
    return units


def oracle(steps, costs, drafter):
    """dict(achieved_tps, oracle_tps, regret, k): core/speculative/oracle.cpp's oracle() on oracle_steps(): a
    batched step (a group as large as its batch size) costs one ragged forward plus every member's drafter,
    any other step step_us; Dinkelbach over the ratio, a batched step's best choices by dynamic programming."""
    n = len(steps)
    k_prop = steps.k.to_numpy(int)
    acc = steps.accepted.to_numpy(int)
    emi = steps.emitted.to_numpy(int)
    batch = steps.batch.to_numpy(int)
    ctx = steps.context.to_numpy(int)
    grp = steps.group.to_numpy(np.int64) if "group" in steps else np.full(n, -1, dtype=np.int64)

    def tok_of(i):  # emitted_if(step i, k) for k = 0..k_proposed
        return np.minimum(np.minimum(acc[i], np.arange(k_prop[i] + 1)) + 1, emi[i]).astype(float)

    units = _forward_units(grp, batch, ctx)
    tok = [tok_of(i) for i in range(n)]
    dcost = [np.array([costs.drafter_us(drafter, c) for c in range(k_prop[i] + 1)]) for i in range(n)]
    alone_us = {}
    for joint, g, _ in units:
        if not joint:
            i = g[0]
            alone_us[i] = np.array([costs.step_us(drafter, c, int(batch[i]), int(ctx[i])) for c in range(k_prop[i] + 1)])
    fwd = {}  # per joint unit: the ragged forward at every total of blocks
    for u, (joint, g, c) in enumerate(units):
        if joint:
            B = len(g)
            fwd[u] = np.array([costs.ragged_forward_us(B + m, B, c) for m in range(int(k_prop[g].sum()) + 1)])

    choice = k_prop.copy()  # the run's own choices: what was proposed
    t_sum = float(sum(tok[i][k_prop[i]] for i in range(n)))
    u_sum = 0.0
    for u, (joint, g, _) in enumerate(units):
        if joint:
            u_sum += sum(dcost[i][k_prop[i]] for i in g) + fwd[u][int(k_prop[g].sum())]
        else:
            u_sum += alone_us[g[0]][k_prop[g[0]]]
    achieved = (t_sum, u_sum)
    if n == 0 or u_sum <= 0:
        return dict(achieved_tps=np.nan, oracle_tps=np.nan, regret=0.0 if n == 0 else np.nan, k=list(choice))

    def best_joint(u, g, lam, k):
        dp = np.zeros(1)
        picks = []
        for i in g:  # max-plus convolution over the running total; argmax: the member's smaller k on a tie
            value = tok[i] - lam * dcost[i]
            cand = np.full((len(value), len(dp) + len(value) - 1), -np.inf)
            for c in range(len(value)):
                cand[c, c:c + len(dp)] = dp + value[c]
            pick = np.argmax(cand, axis=0)
            dp = cand[pick, np.arange(cand.shape[1])]
            picks.append(pick)
        m = int(np.argmax(dp - lam * fwd[u]))
        t, us = 0.0, float(fwd[u][m])
        for i, pick in zip(reversed(g), reversed(picks)):
            c = int(pick[m])
            k[i] = c
            t += tok[i][c]
            us += dcost[i][c]
            m -= c
        return t, us

    lam = t_sum / u_sum
    for _ in range(100):  # Dinkelbach, as the C++ (its comments say why it stops and is exact)
        k = np.zeros(n, dtype=int)
        nt = nu = 0.0
        for u, (joint, g, _) in enumerate(units):
            if joint:
                t, us = best_joint(u, g, lam, k)
                nt += t
                nu += us
            else:
                i = g[0]
                c = int(np.argmax(tok[i] - lam * alone_us[i]))  # argmax: the first (smallest) of ties
                k[i] = c
                nt += tok[i][c]
                nu += alone_us[i][c]
        if nu <= 0:
            break
        nxt = nt / nu
        if not nxt > lam * (1 + 1e-15):
            if nxt >= lam:
                choice, t_sum, u_sum = k, nt, nu
            break
        lam, choice, t_sum, u_sum = nxt, k, nt, nu
    achieved_tps = achieved[0] * 1e6 / achieved[1]
    oracle_tps = t_sum * 1e6 / u_sum
    regret = oracle_tps / achieved_tps - 1 if achieved[0] > 0 else 0.0
    return dict(achieved_tps=achieved_tps, oracle_tps=oracle_tps, regret=regret, k=[int(x) for x in choice])


def run_oracle(res, run):
    """The oracle on one run of a log: its `cost_table` attribute and its drafter's row; NaNs when the run
    has no cost table (or the table no row for its drafter)."""
    nan = dict(achieved_tps=np.nan, oracle_tps=np.nan, regret=np.nan, k=[])
    text = str(res.runs.loc[run].get("cost_table", "") or "")
    if not text or text == "nan":
        return nan
    costs = CostTable(text)
    drafter = str(res.runs.loc[run].drafter)
    drafter = "" if drafter in ("none", "") else drafter
    if drafter and drafter not in costs.drafters:
        return nan
    st = res.steps[res.steps.run == run]
    return oracle(oracle_steps(st), costs, drafter)


def forward_pace(steps, costs):
    """The run's pace against its cost table (docs/metrics.md): the measured time of its target forwards over
    what the table says those forwards cost, sum(t_forward_us) / sum(modelled us), over the forwards the oracle
    costs (_forward_units): a batched step whose rows are as many as their batch_size once (its rows share
    one t_forward_us), modelled ragged_forward_us(sum(1 + n_proposed), rows, mean context_len); any other
    step forward_us(1 + n_proposed, batch_size, context_len). 1: the machine ran at the table's speed; 1.2:
    20% slower. NaN without forward times (a log before schema 3)."""
    if "t_forward_us" not in steps or not len(steps):
        return np.nan
    st = oracle_steps(steps)
    tokens = 1 + steps.n_proposed.to_numpy(int)
    measured_us = steps.t_forward_us.to_numpy(float)
    batch, ctx = st.batch.to_numpy(int), st.context.to_numpy(int)
    measured = modelled = 0.0
    for joint, g, c in _forward_units(st.group.to_numpy(np.int64), batch, ctx):
        measured += float(measured_us[g[0]])
        if joint:
            modelled += costs.ragged_forward_us(int(tokens[g].sum()), len(g), c)
        else:
            modelled += costs.forward_us(int(tokens[g[0]]), int(batch[g[0]]), int(ctx[g[0]]))
    return measured / modelled if modelled > 0 and measured > 0 else np.nan


def run_pace(res, run):
    """forward_pace of one run of a log under its `cost_table` attribute; NaN without one."""
    text = str(res.runs.loc[run].get("cost_table", "") or "")
    if not text or text == "nan":
        return np.nan
    return forward_pace(res.steps[res.steps.run == run], CostTable(text))


def single_alpha_tau(alpha, k):
    """E[emitted | k] with every position accepted with probability alpha (policy.h single_alpha_emitted)."""
    if alpha is None or k is None or math.isnan(alpha) or math.isnan(k):
        return np.nan
    return k + 1.0 if alpha >= 1 else (1 - alpha ** (k + 1)) / (1 - alpha)


# ---- latency and throughput -----------------------------------------------------------------------------

def request_times(res, run):
    """Per request of a batched run: request_id, arrival, first (first token), finish, new_tokens, ttft, e2e,
    mean_itl; and the per-token ITL samples (one per token after a request's first step)."""
    req = res.requests[res.requests.run == run]
    st = res.steps[res.steps.run == run].sort_values(["request_id", "step"])
    rows, itl = [], []
    for rid, g in st.groupby("request_id", sort=True):
        t = g.t_emit_s.to_numpy(float)
        n = g.n_emitted.to_numpy(int)
        arrival = float(req.arrival_s[req.request_id == rid].iloc[0])
        first, finish, tokens = t[0], t[-1], int(n.sum())
        gaps = np.diff(t)
        for gap, m in zip(gaps, n[1:]):
            if m > 0:
                itl.extend([gap / m] * int(m))
        rows.append(dict(request_id=int(rid), arrival=arrival, first=first, finish=finish, new_tokens=tokens,
                         ttft=first - arrival, e2e=finish - arrival,
                         mean_itl=(finish - first) / (tokens - 1) if tokens > 1 else 0.0))
    return pd.DataFrame(rows, columns=["request_id", "arrival", "first", "finish", "new_tokens", "ttft", "e2e",
                                       "mean_itl"]), np.asarray(itl, dtype=float)


def _pct(x, q):
    return float(np.percentile(x, q)) if len(x) else np.nan


def is_batched(runs, run):
    return _int_attr(runs.loc[run], "batch_size") > 0


def _int_attr(row, key):
    x = _number(row.get(key, ""))
    return 0 if math.isnan(x) else int(x)


def planner_calibration(steps):
    """The planner's calibration over a run's steps (docs/metrics.md): sum(k_expected) / sum(n_emitted) over the
    steps whose policy had a model (k_expected >= 0; schema 4): 1 = its expected tokens were emitted, > 1 it
    expected more (optimistic), < 1 fewer. NaN without such steps (no cost_model, or a log before schema 4)."""
    if "k_expected" not in steps or not len(steps):
        return np.nan
    m = steps.k_expected >= 0
    emitted = float(steps.n_emitted[m].sum())
    return float(steps.k_expected[m].sum()) / emitted if m.any() and emitted > 0 else np.nan


def load_table(res, per_run, slo_ttft=DEFAULT_SLO_TTFT_S, slo_itl=DEFAULT_SLO_ITL_S):
    """One row per batched run (runs with batch_size > 0; empty for a log without any): drafter, policy,
    batch, load, rate, requests, throughput, TTFT p50/p99, ITL p50/p90/p99, e2e p50/p99, goodput, the
    speedup (and CI) from per_run, thr_speedup, regret with the oracle's and the achieved modelled tokens/s,
    tau, alpha_tau and the planner's calibration (planner_calibration). per_run: Summary.per_run (its
    speedup, acc_rate, tau and oracle columns)."""
    runs = res.runs
    pr = per_run.set_index("run") if len(per_run) else per_run
    rows = []
    for run in per_run.run if len(per_run) else []:
        if not is_batched(runs, run):
            continue
        r = runs.loc[run]
        times, itl = request_times(res, run)
        span = float(times.finish.max() - times.arrival.min()) if len(times) else np.nan
        emitted = float(res.steps.n_emitted[res.steps.run == run].sum())
        good = int(((times.ttft <= slo_ttft) & (times.mean_itl <= slo_itl)).sum()) if len(times) else 0
        p = pr.loc[run]
        rows.append(dict(
            run=run, drafter=r.drafter, policy=str(r.get("policy", "") or ""), k=r.k,
            batch=_int_attr(r, "batch_size"), load=str(r.get("load", "") or ""),
            rate=_number(r.get("arrival_rate", "")),
            baseline_run=p.baseline_run, n_requests=len(times),
            throughput=emitted / span if span and span > 0 else np.nan,
            ttft_p50=_pct(times.ttft, 50), ttft_p99=_pct(times.ttft, 99),
            itl_p50=_pct(itl, 50), itl_p90=_pct(itl, 90), itl_p99=_pct(itl, 99),
            e2e_p50=_pct(times.e2e, 50), e2e_p99=_pct(times.e2e, 99),
            goodput=good / span if span and span > 0 else np.nan, n_good=good,
            speedup=p.speedup, speedup_lo=p.speedup_lo, speedup_hi=p.speedup_hi,
            regret=p.regret, oracle_tps=p.oracle_tps, achieved_tps=p.achieved_tps,
            tau=p.tau, acc_rate=p.acc_rate,
            alpha_tau=single_alpha_tau(p.acc_rate, _number(r.k)) if str(r.drafter) != "none" else np.nan,
            calibration=planner_calibration(res.steps[res.steps.run == run]), pace=run_pace(res, run)))
    cols = ["run", "drafter", "policy", "k", "batch", "load", "rate", "baseline_run", "n_requests", "throughput",
            "ttft_p50", "ttft_p99", "itl_p50", "itl_p90", "itl_p99", "e2e_p50", "e2e_p99", "goodput", "n_good",
            "speedup", "speedup_lo", "speedup_hi", "regret", "oracle_tps", "achieved_tps", "tau", "acc_rate",
            "alpha_tau", "calibration", "pace", "thr_speedup", "paced", "paced_lo", "paced_hi"]
    table = pd.DataFrame(rows, columns=cols[:-4])
    thr = dict(zip(table.run, table.throughput))
    table["thr_speedup"] = [t / thr[b] if b in thr and thr[b] and not math.isnan(thr[b]) else np.nan
                            for t, b in zip(table.throughput, table.baseline_run)]
    # The speedup at the table's speed (docs/metrics.md "paced speedup"): each side's time divided by its pace.
    pace = dict(zip(table.run, table.pace))
    factor = np.array([p / pace[b] if b in pace and pace[b] > 0 else np.nan
                       for p, b in zip(table.pace, table.baseline_run)], dtype=float)
    table["paced"], table["paced_lo"], table["paced_hi"] = (table.speedup * factor, table.speedup_lo * factor,
                                                            table.speedup_hi * factor)
    # Like with like: each load (rate, then batch size) together, its AR run first.
    table = table.assign(_ar=table.drafter != "none", _rate=table.rate.fillna(-1.0))
    table = table.sort_values(["load", "_rate", "batch", "_ar", "drafter", "k", "policy"], kind="stable")
    return table[cols].reset_index(drop=True)


def format_load(table, slo_ttft, slo_itl):
    """The "Batched decoding under load" section (lines)."""
    if table is None or table.empty:
        return []
    out = ["", f"Batched decoding under load (goodput SLOs: TTFT <= {slo_ttft:g} s, mean ITL <= {slo_itl:g} s)"]
    header = ["run", "policy", "B", "load", "req", "tok/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p90", "ITL p99",
              "e2e p50", "e2e p99", "goodput", "speedup [95% CI]", "thr-speedup", "regret", "tau", "alpha-tau"]
    rows = []
    for r in table.itertuples():
        base = r.baseline_run == r.run
        sp = "1.00 (baseline)" if base else (
            "n/a" if math.isnan(r.speedup) else
            f"{r.speedup:.2f}" + ("" if math.isnan(r.speedup_lo) else f" [{r.speedup_lo:.2f}, {r.speedup_hi:.2f}]"))
        load = r.load + (f" {r.rate:g}/s" if not math.isnan(r.rate) else "")
        rows.append([r.run, r.policy or "-", str(r.batch), load, str(r.n_requests), _f(r.throughput, "{:.1f}"),
                     _f(r.ttft_p50, "{:.3f}"), _f(r.ttft_p99, "{:.3f}"), _f(r.itl_p50, "{:.4f}"),
                     _f(r.itl_p90, "{:.4f}"), _f(r.itl_p99, "{:.4f}"), _f(r.e2e_p50, "{:.2f}"),
                     _f(r.e2e_p99, "{:.2f}"), _f(r.goodput, "{:.2f}"), sp, "-" if base else _f(r.thr_speedup),
                     _f(r.regret, "{:.3f}"), _f(r.tau), _f(r.alpha_tau)])
    out.append(fixed_width(header, rows, ["l", "l", "r", "l"] + ["r"] * 15))
    out.append("  (times in seconds; tok/s and goodput (requests/s) over the run's span; definitions below)")
    return out


def is_aa_control(table):
    """The A/A control runs of a load table ([run] aa_control): drafter none, compared with another AR run."""
    return (table.drafter == "none") & (table.run != table.baseline_run)


def aa_noise(table):
    """The run-to-run noise measured by the A/A control runs (docs/metrics.md "A/A control"): (sigma, n) with
    sigma = sqrt(mean(ln(s)^2)) over the n A/A runs' speedups s (two runs of the same work: any s != 1 is the
    machine's noise between runs, which the prompt bootstrap of one comparison does not see). (NaN, 0) without
    an A/A run."""
    if table is None or table.empty:
        return np.nan, 0
    s = table.speedup[is_aa_control(table)].dropna()
    s = s[s > 0]
    return (float(np.sqrt(np.mean(np.log(s) ** 2))), len(s)) if len(s) else (np.nan, 0)


def widened_hi(point, hi, sigma):
    """A speedup CI's upper end widened by the A/A noise: point * exp(sqrt(ln(hi / point)^2 + (1.96 sigma)^2)),
    the bootstrap's half-width and the run-to-run noise's added in quadrature on the log scale (NaN without
    sigma)."""
    if math.isnan(sigma) or math.isnan(point) or point <= 0:
        return np.nan
    h = math.log(hi / point) if not math.isnan(hi) and hi > 0 else 0.0
    return point * math.exp(math.sqrt(h * h + (1.96 * sigma) ** 2))


def policy_check(table):
    """Each adaptive policy's run (a policy other than `fixed`) against the bar of issue #14: the better of AR
    (speedup 1) and the best `fixed` run of the same drafter, batch size and load (any k). One row per such
    run: its speedup and CI, the best fixed run and speedup, the bar, verdict "ok" when the run's CI reaches
    the bar (its upper end >= bar) and "below" otherwise. Beside it, drift-free: its modelled tokens/s under the
    cost table (achieved_tps, the oracle's) against the best of the AR and fixed runs' (model_verdict), and
    the throughput speedups (points) and the planner's calibration (planner_calibration). And paced: the same
    check on the paced speedups (each run's time at the cost table's speed, docs/metrics.md), the bar max(1,
    the best fixed run's paced speedup), "ok" when the paced CI reaches it ("-" without paces). And with an A/A
    control ([run] aa_control): the cell's A/A run (aa_run, aa_speedup and CI) and the verdict of the run's CI
    widened by the A/A noise of the whole table (aa_noise, widened_hi): aa_hi, aa_verdict ("-" without)."""
    cols = ["load", "rate", "batch", "drafter", "run", "policy", "speedup", "speedup_lo", "speedup_hi",
            "best_fixed_run", "best_fixed", "bar", "verdict", "model_tps", "model_bar", "model_verdict",
            "thr_speedup", "best_fixed_thr", "calibration", "pace", "paced", "paced_lo", "paced_hi", "paced_bar",
            "paced_verdict", "aa_run", "aa_speedup", "aa_lo", "aa_hi_ci", "aa_sigma", "aa_hi", "aa_verdict"]
    if table is None or table.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    t = table.assign(_rate=table.rate.fillna(-1.0))
    sigma, _ = aa_noise(t)
    aa_runs = t[is_aa_control(t)]
    for (load, rate, batch, drafter), g in t[t.drafter != "none"].groupby(["load", "_rate", "batch", "drafter"],
                                                                          sort=False):
        aa = aa_runs[aa_runs.baseline_run.isin(g.baseline_run)]
        aa = aa.iloc[0] if len(aa) else None
        fixed = g[g.policy == "fixed"]
        best = fixed.loc[fixed.speedup.idxmax()] if len(fixed) and fixed.speedup.notna().any() else None
        best_thr = float(fixed.thr_speedup.max()) if len(fixed) else np.nan
        fixed_paced = fixed.paced if "paced" in fixed else pd.Series(dtype=float)
        paced_bar = max(1.0, float(fixed_paced.max())) if fixed_paced.notna().any() else 1.0
        # The AR run of the cell: the drafter runs' baseline.
        base = t[t.run.isin(g.baseline_run)]
        model_bar = float(pd.concat([fixed.achieved_tps, base.achieved_tps]).max()) if len(fixed) + len(base) else np.nan
        for r in g[(g.policy != "fixed") & (g.policy != "")].itertuples():
            bar = max(1.0, best.speedup) if best is not None else 1.0
            hi = r.speedup_hi if not math.isnan(r.speedup_hi) else r.speedup
            model_verdict = ("-" if math.isnan(model_bar) or math.isnan(r.achieved_tps) else
                             "ok" if r.achieved_tps >= model_bar else "below")
            paced, paced_lo, paced_hi = (getattr(r, c, np.nan) for c in ("paced", "paced_lo", "paced_hi"))
            paced_top = paced_hi if not math.isnan(paced_hi) else paced
            paced_verdict = "-" if math.isnan(paced_top) else "ok" if paced_top >= paced_bar else "below"
            aa_hi = widened_hi(r.speedup, r.speedup_hi, sigma)
            rows.append(dict(load=load, rate=r.rate, batch=batch, drafter=drafter, run=r.run, policy=r.policy,
                             speedup=r.speedup, speedup_lo=r.speedup_lo, speedup_hi=r.speedup_hi,
                             best_fixed_run=best.run if best is not None else "",
                             best_fixed=best.speedup if best is not None else np.nan, bar=bar,
                             verdict="ok" if hi >= bar else "below", model_tps=r.achieved_tps,
                             model_bar=model_bar, model_verdict=model_verdict, thr_speedup=r.thr_speedup,
                             best_fixed_thr=best_thr, calibration=getattr(r, "calibration", np.nan),
                             pace=getattr(r, "pace", np.nan), paced=paced, paced_lo=paced_lo, paced_hi=paced_hi,
                             paced_bar=paced_bar, paced_verdict=paced_verdict,
                             aa_run=aa.run if aa is not None else "",
                             aa_speedup=aa.speedup if aa is not None else np.nan,
                             aa_lo=aa.speedup_lo if aa is not None else np.nan,
                             aa_hi_ci=aa.speedup_hi if aa is not None else np.nan, aa_sigma=sigma, aa_hi=aa_hi,
                             aa_verdict="-" if math.isnan(aa_hi) else "ok" if aa_hi >= bar else "below"))
    return pd.DataFrame(rows, columns=cols)


def format_policy_check(check):
    """The "Policies against AR and the best fixed k" section (lines)."""
    if check is None or check.empty:
        return []
    out = ["", "Policies against AR and the best fixed k (bar = max(1, the best fixed run's speedup); ok = the "
               "policy's CI reaches the bar)"]
    header = ["run", "B", "load", "speedup [95% CI]", "best fixed", "bar", "verdict", "model tok/s",
              "model bar", "model verdict", "thr-speedup", "best fixed thr", "expected/emitted", "pace",
              "paced speedup [95% CI]", "paced bar", "paced verdict"]
    with_aa = check.aa_sigma.notna().any()
    if with_aa:
        header += ["A/A [95% CI]", "CI top + A/A noise", "A/A verdict"]
    rows = []
    for r in check.itertuples():
        load = r.load + (f" {r.rate:g}/s" if not math.isnan(r.rate) else "")
        sp = _f(r.speedup) + ("" if math.isnan(r.speedup_lo) else f" [{r.speedup_lo:.2f}, {r.speedup_hi:.2f}]")
        fixed = f"{_f(r.best_fixed)} ({r.best_fixed_run})" if r.best_fixed_run else "-"
        rows.append([r.run, str(r.batch), load, sp, fixed, _f(r.bar), r.verdict, _f(r.model_tps, "{:.0f}"),
                     _f(r.model_bar, "{:.0f}"), r.model_verdict, _f(r.thr_speedup), _f(r.best_fixed_thr),
                     _f(r.calibration), _f(r.pace),
                     _f(r.paced) + ("" if math.isnan(r.paced_lo) else f" [{r.paced_lo:.2f}, {r.paced_hi:.2f}]"),
                     _f(r.paced_bar), r.paced_verdict])
        if with_aa:
            aa = "-" if not r.aa_run else _f(r.aa_speedup) + (
                "" if math.isnan(r.aa_lo) else f" [{r.aa_lo:.2f}, {r.aa_hi_ci:.2f}]")
            rows[-1] += [aa, _f(r.aa_hi), r.aa_verdict]
    out.append(fixed_width(header, rows, ["l", "r", "l"] + ["r"] * (len(header) - 3)))
    out.append(f"  {int((check.verdict == 'ok').sum())} of {len(check)} policy runs reach the bar within their CI "
               f"(measured); {int((check.model_verdict == 'ok').sum())} of {len(check)} under the cost table "
               "(modelled tokens/s, free of the machine's drift between runs); expected/emitted: the planner's "
               "calibration, its expected tokens per emitted token (1 = calibrated, > 1 optimistic); "
               f"{int((check.paced_verdict == 'ok').sum())} of {len(check)} paced (each run's measured times at the "
               "cost table's speed: divided by its pace, its forwards' measured time over their modelled time)")
    if with_aa:
        sigma = float(check.aa_sigma.dropna().iloc[0])
        out.append(f"  A/A control: run-to-run noise sigma = {sigma:.4f} (RMS of ln speedup over the A/A runs, two "
                   "runs of the same work); each CI's top widened by it (1.96 sigma, in quadrature with the "
                   f"bootstrap's): {int((check.aa_verdict == 'ok').sum())} of {len(check)} policy runs reach the bar")
    return out


@dataclass
class Summary:
    """Everything the report prints: per_run and per_category tables, per-position acceptance
    (positions, positions_by_category), the losslessness check and notes."""
    results: Results
    per_run: pd.DataFrame
    per_category: pd.DataFrame
    positions: pd.DataFrame
    positions_by_category: pd.DataFrame
    lossless: pd.DataFrame
    notes: list
    verdicts: pd.DataFrame = None
    load: pd.DataFrame = None  # batched runs under load (load_table); empty without any
    slo: tuple = (DEFAULT_SLO_TTFT_S, DEFAULT_SLO_ITL_S)  # goodput's (TTFT, mean ITL) objectives, seconds

    def __getitem__(self, key):
        return getattr(self, key)


def _run_order(runs):
    def key(name):
        r = runs.loc[name]
        t = r["T"] if not math.isnan(r["T"]) else 1e9
        k = r["K"] if not math.isnan(r["K"]) else 0
        return (t, not r.is_baseline, str(r.drafter), k, name)
    return sorted(runs.index, key=key)


def summarize(res, n_boot=2000, seed=0, slo_ttft=DEFAULT_SLO_TTFT_S, slo_itl=DEFAULT_SLO_ITL_S):
    runs = res.runs
    order = _run_order(runs)
    notes = []
    rates = rate_metrics(res)
    cat_rates = rate_metrics(res, by_category=True)
    lossless = lossless_check(res)
    verdicts = {r.run: (r.verdict if r.checked else f"- (lossy: {r.n_mismatch} of {r.n_compared} differ)"
                        if r.baseline else "-") for r in lossless.itertuples()}
    mismatches = dict(zip(lossless.run, lossless.n_mismatch))
    rows, no_baseline = [], {}
    for run in order:
        r = runs.loc[run]
        m = rates.loc[run] if run in rates.index else None
        sp = speedup(res, run, n_boot=n_boot, seed=seed)
        if sp["baseline"] is None:
            no_baseline.setdefault((r.temperature or "?", r.target or "?"), []).append(run)
        elif sp["baseline"] != run:
            if sp["n_unpaired"]:
                notes.append(f"{run}: {sp['n_unpaired']} of {r.n_requests} requests have no pair in "
                             f"{sp['baseline']} and are left out of the speedup.")
            if sp["n_cross_invocation"]:
                notes.append(f"{run}: {sp['n_cross_invocation']} of {r.n_requests} requests left out of the "
                             f"speedup: their {sp['baseline']} row was timed by another invocation (a --resume); "
                             f"speedup pairs only timings taken by one process.")
            if sp["outliers"]:
                notes.append(f"{run}: outlying speedup ratio on request(s) {sp['outliers']} (rule in the "
                             f"definitions); the median {_f(sp['median'])} resists them.")
            if sp["n_loaded"]:
                notes.append(f"WARNING {run}: {sp['n_loaded']} paired request(s) timed while the load average "
                             f"exceeded 1.25 x the host's cores: their timings are suspect.")
        if sp["baseline"] not in (None, run):
            n_base = int(runs.loc[sp["baseline"]].n_requests)
            if r.n_requests < n_base:
                notes.append(f"{run}: {r.n_requests} finished requests, {n_base} in {sp['baseline']} "
                             f"(an incomplete run?).")
        if run in res.unfinished:
            notes.append(f"{run}: rows of {len(res.unfinished[run])} unfinished request(s) ignored "
                         f"(no requests row: the run was killed or is still running).")
        if r.n_requests == 0:
            notes.append(f"{run}: no finished requests.")
        get = (lambda c: float(m[c])) if m is not None else (lambda c: np.nan)
        orc = run_oracle(res, run)
        if isinstance(orc["regret"], float) and math.isnan(orc["regret"]) and _attr(r, "cost_table"):
            notes.append(f"{run}: its cost table has no costs for drafter {r.drafter}: no regret.")
        rows.append(dict(
            run=run, drafter=r.drafter, drafter_options=r.get("drafter_options", ""), k=r.k,
            temperature=r.temperature, rule=r.rule, lossless_rule=bool(r.is_lossless),
            tree=bool(r.is_tree), baseline=bool(r.is_baseline), baseline_run=sp["baseline"],
            n_requests=int(r.n_requests), steps=get("steps"), new_tokens=get("new_tokens"),
            emitted=get("emitted"), drafted=get("drafted"), accepted=get("accepted"), depth=get("depth"),
            draft_steps=get("draft_steps"), tau=get("tau"), tau_no_bonus=get("tau_no_bonus"),
            acc_rate=get("acc_rate"), depth_rate=get("depth_rate"), tokens_per_s=get("tokens_per_s"),
            decode_s=get("decode_s"), wall_s=get("wall_s"),
            speedup=sp["point"], speedup_lo=sp["lo"], speedup_hi=sp["hi"], speedup_e2e=sp["e2e"],
            speedup_median=sp["median"], speedup_rep_min=sp["rep_min"], speedup_rep_max=sp["rep_max"],
            n_repeats=sp["n_repeats"], n_paired=sp["n_paired"], n_cross_invocation=sp["n_cross_invocation"],
            outliers=sp["outliers"], n_loaded=sp["n_loaded"],
            specbench_mat=get("specbench_mat"), vllm_acceptance_rate=get("vllm_acceptance_rate"),
            vllm_mean_acceptance_length=get("vllm_mean_acceptance_length"),
            llamacpp_accept=get("llamacpp_accept"), sglang_accept_length=get("sglang_accept_length"),
            lossless_check=("baseline" if r.is_baseline else verdicts.get(run, "-")),
            n_mismatch=mismatches.get(run, np.nan), regret=orc["regret"], oracle_tps=orc["oracle_tps"],
            achieved_tps=orc["achieved_tps"]))
    per_run = pd.DataFrame(rows)
    for c in ("steps", "new_tokens", "emitted", "drafted", "accepted", "depth", "draft_steps", "n_mismatch"):
        if len(per_run):
            per_run[c] = pd.array(per_run[c].round(), dtype="Int64")
    for (t, target), names in no_baseline.items():
        notes.insert(0, f"no AR baseline run (baseline = 1) with temperature {t} and target {target}: "
                        f"speedup n/a for {', '.join(names)}.")
    cat_rows = []
    for run in order:
        if run not in cat_rates.index.get_level_values("run"):
            continue
        base = per_run.set_index("run").baseline_run.get(run)
        for cat, m in cat_rates.loc[run].iterrows():
            sp = speedup(res, run, baseline=base, category=cat, n_boot=n_boot, seed=seed)
            cat_rows.append(dict(run=run, category=cat, drafter=runs.loc[run].drafter, k=runs.loc[run].k,
                                 temperature=runs.loc[run].temperature, n_requests=int(m.n_requests),
                                 steps=m.steps, tau=m.tau, tau_no_bonus=m.tau_no_bonus, acc_rate=m.acc_rate,
                                 depth_rate=m.depth_rate, tokens_per_s=m.tokens_per_s,
                                 speedup=sp["point"], speedup_lo=sp["lo"], speedup_hi=sp["hi"],
                                 speedup_e2e=sp["e2e"], speedup_median=sp["median"], n_paired=sp["n_paired"]))
    per_category = pd.DataFrame(cat_rows, columns=[
        "run", "category", "drafter", "k", "temperature", "n_requests", "steps", "tau", "tau_no_bonus",
        "acc_rate", "depth_rate", "tokens_per_s", "speedup", "speedup_lo", "speedup_hi", "speedup_e2e",
        "speedup_median", "n_paired"])
    if len(runs) and runs.is_baseline.all():
        notes.append("the file holds only AR baseline run(s): no speculative metrics.")
    verdicts = verdict_check(res)
    for v in verdicts.itertuples():
        if v.n_disagree and v.n_disagree > 0:
            notes.insert(0, f"WARNING {v.run}: {v.n_disagree} of {v.n_tested} logged verdicts do not follow from "
                            f"their own p_test, q_draft, u and threshold (rule {v.rule}): the log is not "
                            f"self-consistent.")
    return Summary(res, per_run, per_category, position_acceptance(res),
                   position_acceptance(res, by_category=True), lossless, notes, verdicts,
                   load_table(res, per_run, slo_ttft, slo_itl), (slo_ttft, slo_itl))


# ---- text output ------------------------------------------------------------------------------------

def _f(x, fmt="{:.2f}"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return fmt.format(x)


def _speedup_cell(point, lo, hi):
    if point is None or math.isnan(point):
        return "n/a"
    if lo is None or math.isnan(lo):
        return f"{point:.2f}"
    return f"{point:.2f} [{lo:.2f}, {hi:.2f}]"


def fixed_width(header, rows, align=None):
    """A fixed-width text table: header (list of str), rows (lists of str); align: 'l' / 'r' per column."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _rule_cell(rule, lossless):
    return f"{rule or '-'}{'' if lossless else '*'}"


def format_report(summary):
    res = summary.results
    out = [f"specdec report: {res.path}"]
    a = res.attrs
    meta = [f"schema {a.get('schema_version', '?')}", f"specdec {a.get('specdec_version', '?')}",
            f"started {a.get('start_time', '?')}", f"seeds {a.get('seeds', '?')}"]
    out.append("  " + ", ".join(meta))
    out.append(f"  {len(res.runs)} run(s), {len(res.requests)} finished request rows")
    pr = summary.per_run
    out.append("")
    out.append("Per run")
    if pr.empty:
        out.append("  (no runs in this file)")
    else:
        header = ["run", "drafter", "k", "T", "rule", "req", "steps", "tau", "tau-bonus", "acc_rate",
                  "depth_rate", "tok/s", "speedup [95% CI]", "e2e", "median", "lossless"]
        rows = [[r.run, r.drafter or "-", r.k or "-", r.temperature or "-", _rule_cell(r.rule, r.lossless_rule),
                 str(r.n_requests), _f(r.steps, "{:.0f}"), _f(r.tau), _f(r.tau_no_bonus), _f(r.acc_rate, "{:.3f}"),
                 _f(r.depth_rate, "{:.3f}"), _f(r.tokens_per_s, "{:.1f}"),
                 "1.00 (baseline)" if r.baseline and r.baseline_run == r.run else
                 _speedup_cell(r.speedup, r.speedup_lo, r.speedup_hi),
                 "-" if r.baseline_run == r.run else _f(r.speedup_e2e),
                 "-" if r.baseline_run == r.run else _f(r.speedup_median), r.lossless_check]
                for r in pr.itertuples()]
        out.append(fixed_width(header, rows, ["l", "l", "r", "r", "l"] + ["r"] * 10 + ["l"]))
        spec = [r for r in pr.itertuples() if r.baseline_run not in (None, r.run) and not pd.isna(r.baseline_run)]
        if spec:
            out.append("")
            out.append("Speedup robustness (pairs: requests paired with the baseline by request and invocation)")
            header = ["run", "pairs", "other invocation", "repeats [min, max]", "outliers", "loaded"]
            rows = [[r.run, str(r.n_paired), str(r.n_cross_invocation),
                     f"{_f(r.speedup_rep_min)}, {_f(r.speedup_rep_max)} ({r.n_repeats})" if r.n_repeats > 1 else "-",
                     ",".join(map(str, r.outliers)) or "-", str(r.n_loaded)] for r in spec]
            out.append(fixed_width(header, rows))
        peers = [r for r in pr.itertuples() if not r.baseline]
        if peers:
            pos_all = summary.positions
            out.append("")
            out.append("Peers' headline figures from the same steps (definitions below)")
            header = ["run", "Spec-Bench #MAT", "vLLM acc rate", "vLLM mean acc len", "vLLM per-position",
                      "llama.cpp accept", "SGLang accept len"]
            rows = []
            for r in peers:
                g = pos_all[pos_all.run == r.run].sort_values("position") if len(pos_all) else pos_all
                per_pos = ",".join(_f(v) for v in g.vllm_rate.head(4)) if len(g) else "-"
                rows.append([r.run, _f(r.specbench_mat), _f(r.vllm_acceptance_rate, "{:.3f}"),
                             _f(r.vllm_mean_acceptance_length), per_pos + (",..." if len(g) > 4 else ""),
                             _f(100 * r.llamacpp_accept, "{:.1f}%"), _f(r.sglang_accept_length)])
            out.append(fixed_width(header, rows))
    pc = summary.per_category
    out.append("")
    out.append("Per run x category")
    if pc.empty:
        out.append("  (no finished requests)")
    else:
        base_of = dict(zip(pr.run, pr.baseline_run))
        header = ["run", "category", "req", "steps", "tau", "tau-bonus", "acc_rate", "depth_rate", "tok/s",
                  "speedup [95% CI]", "e2e", "median"]
        rows = [[r.run, r.category, str(r.n_requests), _f(r.steps, "{:.0f}"), _f(r.tau), _f(r.tau_no_bonus),
                 _f(r.acc_rate, "{:.3f}"), _f(r.depth_rate, "{:.3f}"), _f(r.tokens_per_s, "{:.1f}"),
                 "1.00 (baseline)" if base_of.get(r.run) == r.run else
                 _speedup_cell(r.speedup, r.speedup_lo, r.speedup_hi),
                 "-" if base_of.get(r.run) == r.run else _f(r.speedup_e2e),
                 "-" if base_of.get(r.run) == r.run else _f(r.speedup_median)] for r in pc.itertuples()]
        out.append(fixed_width(header, rows, ["l", "l"] + ["r"] * 10))
    pos = summary.positions
    if len(pos):
        K = int(pos.position.max())
        shown = min(K, 12)
        out.append("")
        out.append("Per-position acceptance: unconditional P(i) / conditional P(i | i-1)")
        header = ["run"] + [f"pos {i}" for i in range(1, shown + 1)]
        rows = []
        for run in [r for r in pr.run if r in set(pos.run)]:
            g = pos[pos.run == run].set_index("position")
            rows.append([run] + [f"{_f(g.p_uncond.get(i))}/{_f(g.p_cond.get(i))}" if i in g.index else ""
                                 for i in range(1, shown + 1)])
        out.append(fixed_width(header, rows))
        if shown < K:
            out.append(f"  (positions {shown + 1}..{K} in --csv/--json and Summary.positions)")
    ll = summary.lossless
    ll = ll[ll.checked] if len(ll) else ll
    out.append("")
    out.append("Greedy losslessness (T = 0, lossless rule) against the AR baseline")
    if ll.empty:
        out.append("  (no greedy lossless speculative run in this file)")
    for r in ll.itertuples():
        extra = f", {r.n_unpaired} without a baseline request" if r.n_unpaired else ""
        ids = f"; request ids {r.mismatching_request_ids}" if r.n_mismatch else ""
        out.append(f"  {r.run}: lossless: {r.verdict} ({r.n_compared} compared with "
                   f"{r.baseline or '-'}{extra}{ids})")
    vc = summary.verdicts
    if vc is not None and len(vc):
        checked = vc.dropna(subset=["n_tested"])
        out.append("")
        if len(checked):
            out.append(f"Verdicts recomputed from the log's own columns: {int(checked.n_tested.sum())} tests, "
                       f"{int(checked.n_disagree.sum())} disagree")
        else:
            out.append("Verdicts: not recomputable (schema 1 log: no p_test / passed columns)")
    out.extend(format_load(summary.load, *summary.slo))
    out.extend(format_policy_check(policy_check(summary.load)))
    if summary.notes:
        out.append("")
        out.append("Notes")
        out.extend(f"  - {n}" for n in summary.notes)
    out.append("")
    out.append(METRIC_DEFINITIONS)
    out.append("")
    out.append(PEER_DEFINITIONS)
    if summary.load is not None and len(summary.load):
        out.append("")
        out.append(LOAD_DEFINITIONS)
    return "\n".join(out)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


def to_json(summary):
    res = summary.results
    return _jsonable({
        "file": res.path, "attrs": {k: v for k, v in res.attrs.items() if k not in ("config", "columns")},
        "runs": summary.per_run.to_dict("records"), "categories": summary.per_category.to_dict("records"),
        "positions": summary.positions.to_dict("records"),
        "positions_by_category": summary.positions_by_category.to_dict("records"),
        "lossless": summary.lossless.to_dict("records"), "notes": summary.notes,
        "load": summary.load.to_dict("records") if summary.load is not None else [],
        "policy_check": policy_check(summary.load).to_dict("records"),
        "slo": {"ttft_s": summary.slo[0], "itl_s": summary.slo[1]},
        "unfinished": res.unfinished, "definitions": METRIC_DEFINITIONS, "peer_definitions": PEER_DEFINITIONS})


# ---- plots (specdec_plots.py) -----------------------------------------------------------------------

try:  # imported as part of a package
    from .specdec_plots import (plot_acceptance_by_position, plot_speedup_vs_arrival_rate,  # noqa: F401
                                plot_speedup_vs_batch_size, plot_speedup_vs_k, plot_tau_by_category, write_plots)
except ImportError:  # run as a script, or imported with experiments/report on sys.path
    from specdec_plots import (plot_acceptance_by_position, plot_speedup_vs_arrival_rate,  # noqa: F401
                               plot_speedup_vs_batch_size, plot_speedup_vs_k, plot_tau_by_category, write_plots)


# ---- CLI --------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="Tables and plots from a specdec HDF5 results log.")
    ap.add_argument("results", help="the HDF5 results file (specdec run)")
    ap.add_argument("--plots", metavar="DIR", help="write PNG plots into DIR")
    ap.add_argument("--csv", metavar="FILE", help="write the per-run table as CSV")
    ap.add_argument("--json", metavar="FILE", help="write every table, the notes and definitions as JSON")
    ap.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples (0 = none)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--slo-ttft", type=float, default=DEFAULT_SLO_TTFT_S, metavar="S",
                    help="goodput's time-to-first-token objective, seconds (batched runs)")
    ap.add_argument("--slo-itl", type=float, default=DEFAULT_SLO_ITL_S, metavar="S",
                    help="goodput's mean inter-token latency objective, seconds (batched runs)")
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    if not os.path.isfile(args.results):
        print(f"specdec report: {args.results}: no such file", file=sys.stderr)
        return 2
    try:
        res = load(args.results)
    except (OSError, ValueError, KeyError) as e:
        hint = ""
        if os.path.isfile(args.results + ".journal"):
            hint = f"; its writer was killed: `specdec repair {args.results}` rebuilds it from its journal"
        print(f"specdec report: {args.results}: cannot read as a specdec results log ({e}){hint}", file=sys.stderr)
        return 2
    summary = summarize(res, n_boot=args.bootstrap, seed=args.seed, slo_ttft=args.slo_ttft, slo_itl=args.slo_itl)
    print(format_report(summary))
    if args.csv:
        summary.per_run.to_csv(args.csv, index=False)
        print(f"\nwrote {args.csv}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(summary), f, indent=1)
        print(f"wrote {args.json}")
    if args.plots:
        for p in write_plots(summary, args.plots):
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
