#!/usr/bin/env python3
"""Tests of the specdec report (experiments/report/specdec_report.py), without pytest: plain asserts,
one closing line 'N passed, M failed', exit status 1 on any failure.

The expected numbers are computed here independently of the report: straight from the HDF5 file with
h5py and Python loops (the fake sweep of make_fake_results.py), and by hand for tiny files written row
by row (chains, a tree whose accepted path ends above its deepest branch, zero drafts, a killed run, a
missing baseline, a one-request category).

    python3 tests/report/test_report.py [--scratch DIR] [-k NAME]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REPORT_DIR = os.path.join(ROOT, "experiments", "report")
sys.path.insert(0, REPORT_DIR)
sys.path.insert(0, HERE)

try:
    import h5py
    import numpy as np
    import pandas as pd
    import matplotlib
    matplotlib.use("Agg")
except ImportError as e:  # a clear message, not a traceback, when the venv lacks the packages
    print(f"test_report: missing Python package ({e}); install experiments/report/requirements.txt "
          f"into the interpreter running this test ({sys.executable})")
    print("report: 0 passed, 1 failed")
    sys.exit(1)

import make_fake_results as fake  # noqa: E402
import specdec_report as rep  # noqa: E402

SCRATCH = None
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def close(a, b, tol=1e-9):
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def check(a, b, what, tol=1e-9):
    assert close(a, b, tol), f"{what}: report {a!r}, expected {b!r}"


_FAKE = {}


def fake_file(variant="full"):
    if variant not in _FAKE:
        path = os.path.join(SCRATCH, f"fake_{variant}.h5")
        fake.make_fake_results(path, seed=0, variant=variant)
        _FAKE[variant] = path
    return _FAKE[variant]


# ---- expected values, computed from the raw file ----------------------------------------------------

def raw(path):
    """{run: dict(attrs, requests, steps, drafts, outputs)} with only finished requests kept."""
    out = {}
    with h5py.File(path, "r") as f:
        for name, g in f["runs"].items():
            attrs = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in g.attrs.items()}
            req = g["requests"][()]
            done = {int(r["request_id"]) for r in req}
            steps = [s for s in g["steps"][()] if int(s["request_id"]) in done]
            drafts = [d for d in g["draft_tokens"][()] if int(d["request_id"]) in done]
            toks = g["output_tokens"][()]
            outputs = {int(o["request_id"]): list(toks[int(o["offset"]):int(o["offset"]) + int(o["length"])])
                       for o in g["outputs"][()] if int(o["request_id"]) in done}
            out[name] = dict(attrs=attrs, requests=req, steps=steps, drafts=drafts, outputs=outputs)
    return out


def expected_rates(run, category=None):
    reqs = [r for r in run["requests"] if category is None or r["category"].decode() == category]
    ids = {int(r["request_id"]) for r in reqs}
    steps = [s for s in run["steps"] if int(s["request_id"]) in ids]
    n = len(steps)
    acc = sum(int(s["n_accepted"]) for s in steps)
    depth = sum(int(s["max_depth"]) for s in steps)
    drafted = sum(int(s["n_proposed"]) for s in steps)  # every node of a tree
    new = sum(int(r["new_tokens"]) for r in reqs)  # = the tokens the steps emitted
    dec = sum(float(r["decode_s"]) for r in reqs)
    return dict(tau=new / n, tau_no_bonus=new / n - 1, acc_rate=acc / drafted if drafted else float("nan"),
                depth_rate=acc / depth if depth else float("nan"), tokens_per_s=new / dec, steps=n)


def expected_positions(run):
    """{i: (p_uncond, p_cond)} by walking every step's nodes."""
    by_step = {}
    for d in run["drafts"]:
        by_step.setdefault((int(d["request_id"]), int(d["step"])), []).append(d)
    prop, acc, reach = {}, {}, {}
    for nodes in by_step.values():
        accepted = {int(d["node"]) for d in nodes if d["accepted"]}
        max_depth = max(int(d["depth"]) for d in nodes)
        path_len = max([int(d["depth"]) for d in nodes if d["accepted"]], default=0)
        reached = {int(d["depth"]) for d in nodes if int(d["parent"]) == -1 or int(d["parent"]) in accepted}
        for i in range(1, max_depth + 1):
            prop[i] = prop.get(i, 0) + 1
            acc[i] = acc.get(i, 0) + (path_len >= i)
            reach[i] = reach.get(i, 0) + (i in reached)
    return {i: (acc[i] / prop[i], acc[i] / reach[i] if reach[i] else float("nan")) for i in prop}


def per_token(r):
    return float(r["decode_s"]) / int(r["new_tokens"])


def expected_speedup(spec, ar, ids=None):
    """sum over paired requests of AR decode s / token over the sum of the run's (docs/metrics.md)."""
    ar_t = {int(r["request_id"]): per_token(r) for r in ar["requests"]}
    pairs = [(ar_t[int(r["request_id"])], per_token(r)) for r in spec["requests"]
             if int(r["request_id"]) in ar_t and (ids is None or int(r["request_id"]) in ids)]
    return sum(a for a, _ in pairs) / sum(s for _, s in pairs), len(pairs)


# ---- the fake sweep ---------------------------------------------------------------------------------

@test
def fake_file_follows_the_schema():
    path = fake_file()
    with h5py.File(path, "r") as f:
        assert int(f.attrs["schema_version"]) == 1
        for key in ("specdec_version", "config", "host", "seeds", "start_time"):
            assert key in f.attrs, key
        names = set(f["runs"].keys())
        assert {"ar_t0", "ar_t07", "ngram_k2_t0", "ngram_k4_t0", "synthetic_tree8_t0",
                "early_exit_typical_k4_t0", "ngram_k4_t0_mismatch"} <= names, names
        for name, g in f["runs"].items():
            for key in ("drafter", "drafter_options", "k", "temperature", "top_k", "top_p", "rule", "lossless",
                        "baseline", "target"):
                assert key in g.attrs, (name, key)
            for t in ("requests", "steps", "draft_tokens", "outputs", "output_tokens"):
                ds = g[t]
                assert ds.ndim == 1 and ds.chunks is not None and ds.compression == "gzip", (name, t)
            assert g["requests"].dtype.names == fake.REQUESTS_DTYPE.names
            req = g["requests"][()]
            assert len(req) == 12 and sorted(req["request_id"]) == list(range(12)), name
            steps = g["steps"][()]
            for r in req:  # requests agree with their steps and outputs
                s = steps[steps["request_id"] == r["request_id"]]
                assert len(s) == r["steps"]
                assert int(s["n_accepted"].sum() + len(s)) == r["new_tokens"]
                assert abs((s["n_accepted"].sum() + len(s)) / len(s) - r["tau"]) < 1e-12


@test
def tau_acceptance_and_tokens_per_second_per_run_and_category():
    path = fake_file()
    data = raw(path)
    summary = rep.summarize(rep.load(path), n_boot=200, seed=1)
    pr = summary.per_run.set_index("run")
    for name, run in data.items():
        exp = expected_rates(run)
        got = pr.loc[name]
        check(got.tau, exp["tau"], f"{name} tau")
        check(got.tau_no_bonus, exp["tau_no_bonus"], f"{name} tau without bonus")
        check(got.tokens_per_s, exp["tokens_per_s"], f"{name} tokens/s")
        assert int(got.steps) == exp["steps"]
        if run["attrs"]["drafter"] == "none":
            check(got.tau, 1.0, f"{name} AR tau")
            assert math.isnan(got.acc_rate), f"{name}: AR has no acceptance rate"
        else:
            check(got.acc_rate, exp["acc_rate"], f"{name} acceptance rate")
        if run["attrs"]["drafter"] != "none":
            check(got.depth_rate, exp["depth_rate"], f"{name} accepted / depth")
        if name.startswith("synthetic_tree"):
            assert bool(got.tree), name
            assert got.acc_rate < got.depth_rate  # every node counted vs the proposals' depths
        else:
            assert not bool(got.tree), name
            if run["attrs"]["drafter"] != "none":
                check(got.depth_rate, got.acc_rate, f"{name}: a chain's depth is its length")
        for cat in fake.CATEGORIES:
            e = expected_rates(run, cat)
            c = summary.per_category[(summary.per_category.run == name) & (summary.per_category.category == cat)]
            assert len(c) == 1, (name, cat)
            check(c.tau.iloc[0], e["tau"], f"{name}/{cat} tau")
            check(c.tokens_per_s.iloc[0], e["tokens_per_s"], f"{name}/{cat} tokens/s")
            if run["attrs"]["drafter"] != "none":
                check(c.acc_rate.iloc[0], e["acc_rate"], f"{name}/{cat} acceptance rate")
    # the fixture's acceptance probabilities order the categories: summarization > translation for n-grams
    pc = summary.per_category.set_index(["run", "category"])
    assert pc.loc[("ngram_k4_t0", "summarization")].tau > pc.loc[("ngram_k4_t0", "translation")].tau


@test
def per_position_acceptance_matches_a_walk_over_the_nodes():
    path = fake_file()
    data = raw(path)
    pos = rep.position_acceptance(rep.load(path))
    for name, run in data.items():
        exp = expected_positions(run)
        got = pos[pos.run == name].set_index("position")
        assert set(got.index) == set(exp), (name, sorted(got.index), sorted(exp))
        for i, (pu, pc) in exp.items():
            check(got.p_uncond[i], pu, f"{name} P({i} accepted)")
            check(got.p_cond[i], pc, f"{name} P({i} accepted | {i - 1} accepted)")
        if exp:
            check(got.p_cond[1], got.p_uncond[1], f"{name} position 1: conditional = unconditional")
    assert set(pos[pos.run.str.startswith("ngram_k2")].groupby("run").position.max()) == {2}
    assert set(pos[pos.run == "synthetic_tree8_t0"].position) == {1, 2, 3, 4}


@test
def speedup_point_estimate_and_interval():
    path = fake_file()
    data = raw(path)
    summary = rep.summarize(rep.load(path), n_boot=500, seed=3)
    pr = summary.per_run.set_index("run")
    for name, run in data.items():
        base = "ar_t0" if run["attrs"]["temperature"] == "0" else "ar_t07"
        assert pr.loc[name].baseline_run == base, (name, pr.loc[name].baseline_run)
        point, n = expected_speedup(run, data[base])
        check(pr.loc[name].speedup, point, f"{name} speedup")
        assert pr.loc[name].n_paired == n == 12
        assert pr.loc[name].speedup_lo <= point <= pr.loc[name].speedup_hi, name
        if name != base:
            assert pr.loc[name].speedup_lo < pr.loc[name].speedup_hi, f"{name}: 12 requests, a real interval"
    check(pr.loc["ar_t0"].speedup, 1.0, "baseline against itself")
    # the per-category speedup pairs only that category's requests
    pc = summary.per_category.set_index(["run", "category"])
    for cat in fake.CATEGORIES:
        ids = {int(r["request_id"]) for r in data["ngram_k2_t0"]["requests"] if r["category"].decode() == cat}
        point, _ = expected_speedup(data["ngram_k2_t0"], data["ar_t0"], ids)
        check(pc.loc[("ngram_k2_t0", cat)].speedup, point, f"ngram_k2_t0/{cat} speedup")
    # the same seed gives the same interval; the interval is a percentile interval of ratios of sums
    again = rep.summarize(rep.load(path), n_boot=500, seed=3).per_run.set_index("run")
    check(again.loc["ngram_k4_t0"].speedup_lo, pr.loc["ngram_k4_t0"].speedup_lo, "bootstrap is seeded")


@test
def bootstrap_by_hand():
    point, lo, hi = rep.bootstrap_ratio([2.0, 4.0], [1.0, 1.0], n_boot=4000, seed=0)
    check(point, 3.0, "ratio of sums")
    # resamples of two pairs give 2, 3 or 4 (probabilities 1/4, 1/2, 1/4)
    check(lo, 2.0, "2.5th percentile")
    check(hi, 4.0, "97.5th percentile")
    assert rep.bootstrap_ratio([5.0], [2.0], 100) == (2.5, 2.5, 2.5)  # one request: collapses
    assert all(math.isnan(x) for x in rep.bootstrap_ratio([], [], 100))
    p, lo, hi = rep.bootstrap_ratio(np.ones(50), np.full(50, 0.5), n_boot=300, seed=0)
    check(p, 2.0, "constant ratio")
    check(lo, 2.0, "constant ratio lo")
    check(hi, 2.0, "constant ratio hi")


@test
def losslessness_verdicts():
    path = fake_file()
    data = raw(path)
    ll = rep.lossless_check(rep.load(path)).set_index("run")
    ar = data["ar_t0"]["outputs"]
    for name, run in data.items():
        greedy_spec = run["attrs"]["temperature"] == "0" and run["attrs"]["drafter"] != "none"
        if not greedy_spec:
            assert name not in ll.index, f"{name} is not a greedy speculative run"
            continue
        n_bad = sum(run["outputs"][rid] != ar[rid] for rid in run["outputs"])
        assert ll.loc[name].n_mismatch == n_bad, (name, ll.loc[name].n_mismatch, n_bad)
        if run["attrs"]["lossless"] == "1":
            want = "yes" if n_bad == 0 else f"no ({n_bad} mismatching requests)"
            assert ll.loc[name].verdict == want, (name, ll.loc[name].verdict, want)
        else:
            assert ll.loc[name].verdict.startswith("not checked"), name
    assert ll.loc["ngram_k4_t0_mismatch"].verdict == "no (2 mismatching requests)"
    assert sorted(ll.loc["ngram_k4_t0_mismatch"].mismatching_request_ids) == [3, 10]
    for name in ("ngram_k2_t0", "ngram_k4_t0", "synthetic_tree8_t0"):
        assert ll.loc[name].verdict == "yes", name
    text = rep.format_report(rep.summarize(rep.load(path), n_boot=50))
    assert "ngram_k4_t0_mismatch: lossless: no (2 mismatching requests)" in text
    assert "ngram_k4_t0: lossless: yes" in text


@test
def table_marks_lossy_rules_and_prints_the_definitions():
    text = rep.format_report(rep.summarize(rep.load(fake_file()), n_boot=50))
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("early_exit_typical_k4_t0 "))
    assert "typical*" in row, row
    row = next(line for line in lines if line.startswith("ngram_k4_t0 "))
    assert "greedy " in row and "greedy*" not in row, row
    for heading in ("Per run", "Per run x category", "Per-position acceptance", "Metric definitions"):
        assert any(line.startswith(heading) for line in lines), heading
    assert text.index("Per run x category") < text.index("Metric definitions")
    assert "tau = emitted tokens / steps" in text and "bootstrap" in text
    assert "Spec-Bench / EAGLE #MAT" in text and "vLLM" in text and "llama.cpp" in text and "SGLang" in text


# ---- hand-computed tiny files -----------------------------------------------------------------------

def _req(rid, cat, wall, steps, accepted, new=None):
    return dict(request_id=rid, prompt_id=f"t:{rid}", category=cat, repeat=0, prompt_tokens=5,
                new_tokens=new if new is not None else accepted + steps, wall_time_s=wall, prefill_s=0.1 * wall,
                decode_s=0.9 * wall, steps=steps, tau=(accepted + steps) / steps, stopped=0)


def _step(rid, step, proposed, accepted, max_depth=None):
    return dict(request_id=rid, step=step, n_proposed=proposed, n_accepted=accepted, tree_nodes=proposed,
                max_depth=proposed if max_depth is None else max_depth, t_draft_us=10.0, t_verify_us=100.0,
                context_len=5 + step, batch_size=1)


def _node(rid, step, node, parent, depth, accepted, visited=1):
    return dict(request_id=rid, step=step, node=node, parent=parent, depth=depth, token=10 + node,
                p_target=1.0 if accepted else 0.0, q_draft=1.0, u=-1.0, visited=visited, accepted=accepted)


def _chain(rid, step, proposed, accepted):
    return [_node(rid, step, i, i - 1, i + 1, int(i < accepted), int(i <= accepted)) for i in range(proposed)]


def _attrs(drafter, k, temperature="0", rule="greedy", lossless="1", target="tiny"):
    return {"drafter": drafter, "drafter_options": "", "k": str(k), "temperature": temperature, "top_k": "0",
            "top_p": "1", "rule": rule, "lossless": lossless, "baseline": "1" if drafter == "none" else "0",
            "target": target}


def tiny_file(name="tiny.h5"):
    """AR + a chain (k = 3) + a tree + a zero-draft run at T = 0; a run at T = 0.5 without a baseline; the
    chain's file also holds rows of an unfinished request 99 (killed run)."""
    ar = {"name": "ar", "attrs": _attrs("none", 0),
          "requests": [_req(0, "a", 2.0, 5, 0), _req(1, "b", 4.0, 6, 0)],
          "steps": [_step(0, s, 0, 0) for s in range(5)] + [_step(1, s, 0, 0) for s in range(6)],
          "outputs": [(0, [1, 2, 3, 4, 5]), (1, [6, 7, 8, 9, 10, 11])]}
    # chain k = 3. request 0: steps (3 proposed, 2 accepted), (3, 0), (0, 0); request 1: (3, 3), (2, 1)
    chain_steps = [_step(0, 0, 3, 2), _step(0, 1, 3, 0), _step(0, 2, 0, 0), _step(1, 0, 3, 3), _step(1, 1, 2, 1)]
    chain_nodes = _chain(0, 0, 3, 2) + _chain(0, 1, 3, 0) + _chain(1, 0, 3, 3) + _chain(1, 1, 2, 1)
    killed_steps = [_step(99, 0, 3, 3)]
    killed_nodes = _chain(99, 0, 3, 3)
    chain = {"name": "chain", "attrs": _attrs("ngram", 3),
             # request 1 finished first: rows in completion order, pairing is by request_id
             "requests": [_req(1, "b", 1.0, 2, 4, new=6), _req(0, "a", 1.0, 3, 2, new=5)],
             "steps": chain_steps + killed_steps, "draft_tokens": chain_nodes + killed_nodes,
             "outputs": [(1, [6, 7, 8, 9, 10, 99]), (0, [1, 2, 3, 4, 5]), (99, [1, 1, 1, 1])]}
    # tree, one request, two steps.
    # step 0: n0(d1) n1(d1) | n2(d2, under n0) n3(d2, under n1) | n4(d3, under n2). Accepted n1 -> n3
    #         (a leaf): the path stops at depth 2 while the proposal is 3 deep.
    # step 1: n0(d1) | n1(d2) n2(d2) under n0. Accepted n0 only.
    tree_nodes = [_node(0, 0, 0, -1, 1, 0), _node(0, 0, 1, -1, 1, 1), _node(0, 0, 2, 0, 2, 0, 0),
                  _node(0, 0, 3, 1, 2, 1), _node(0, 0, 4, 2, 3, 0, 0),
                  _node(0, 1, 0, -1, 1, 1), _node(0, 1, 1, 0, 2, 0), _node(0, 1, 2, 0, 2, 0)]
    tree = {"name": "tree", "attrs": _attrs("synthetic", 5),
            "requests": [_req(0, "a", 0.5, 2, 3)],
            "steps": [_step(0, 0, 5, 2, max_depth=3), _step(0, 1, 3, 1, max_depth=2)],
            "draft_tokens": tree_nodes, "outputs": [(0, [1, 2, 3, 4, 5])]}
    nodraft = {"name": "nodraft", "attrs": _attrs("ngram", 2),
               "requests": [_req(0, "a", 2.5, 5, 0)], "steps": [_step(0, s, 0, 0) for s in range(5)],
               "outputs": [(0, [1, 2, 3, 4, 5])]}
    warm = {"name": "warm", "attrs": _attrs("ngram", 3, temperature="0.5", rule="speculative"),
            "requests": [_req(0, "a", 1.0, 2, 1)], "steps": [_step(0, 0, 3, 1), _step(0, 1, 0, 0)],
            "draft_tokens": _chain(0, 0, 3, 1), "outputs": [(0, [4, 4, 4])]}
    path = os.path.join(SCRATCH, name)
    fake.write_results(path, [ar, chain, tree, nodraft, warm])
    return path


@test
def tiny_chain_by_hand():
    res = rep.load(tiny_file())
    assert res.unfinished == {"chain": [99]}, res.unfinished
    summary = rep.summarize(res, n_boot=4000, seed=0)
    pr = summary.per_run.set_index("run")
    c = pr.loc["chain"]
    # 5 steps, 6 accepted of 11 drafted (the killed request's step is not counted)
    assert (int(c.steps), int(c.accepted), int(c.drafted)) == (5, 6, 11), (c.steps, c.accepted, c.drafted)
    check(c.tau, 11 / 5, "tau")
    check(c.tau_no_bonus, 6 / 5, "tau without bonus")
    check(c.acc_rate, 6 / 11, "acceptance rate")
    check(c.tokens_per_s, 11 / 1.8, "tokens/s")
    # per token: request 0 AR 1.8 s / 5, chain 0.9 s / 5 (2x); request 1 AR 3.6 s / 6, chain 0.9 s / 6 (4x)
    check(c.speedup, (1.8 / 5 + 3.6 / 6) / (0.9 / 5 + 0.9 / 6), "speedup")
    check(c.speedup_lo, 2.0, "speedup lo")
    check(c.speedup_hi, 4.0, "speedup hi")
    check(c.speedup_median, math.sqrt(8.0), "median of the ratios 2 and 4 (geometric midpoint)")
    check(c.speedup_e2e, (2.0 / 5 + 4.0 / 6) / (1.0 / 5 + 1.0 / 6), "end to end (wall time per token)")
    pos = summary.positions[summary.positions.run == "chain"].set_index("position")
    # pos 1: 4 steps proposed >= 1, 3 accepted. pos 2: 4 proposed >= 2, 2 accepted, 3 reached 1.
    # pos 3: 3 proposed >= 3, 1 accepted, 2 reached 2.
    for i, (n_prop, n_acc, n_reach) in {1: (4, 3, 4), 2: (4, 2, 3), 3: (3, 1, 2)}.items():
        assert (pos.n_proposed[i], pos.n_accepted[i], pos.n_reached[i]) == (n_prop, n_acc, n_reach), (
            i, pos.loc[i].to_dict())
        check(pos.p_uncond[i], n_acc / n_prop, f"P({i})")
        check(pos.p_cond[i], n_acc / n_reach, f"P({i} | {i - 1})")
    # one request per category: the interval collapses onto the point
    pc = summary.per_category.set_index(["run", "category"])
    for cat, value in (("a", 2.0), ("b", 4.0)):
        r = pc.loc[("chain", cat)]
        check(r.speedup, value, f"{cat} speedup")
        assert r.speedup_lo == r.speedup_hi == r.speedup, (cat, r.speedup_lo, r.speedup_hi)
    ll = summary.lossless.set_index("run")
    assert ll.loc["chain"].verdict == "no (1 mismatching requests)", ll.loc["chain"].verdict
    assert ll.loc["tree"].verdict == "yes" and ll.loc["nodraft"].verdict == "yes"
    assert "warm" not in ll.index
    text = rep.format_report(summary)
    assert "unfinished" in text and "chain" in text


@test
def tiny_tree_by_hand():
    summary = rep.summarize(rep.load(tiny_file()), n_boot=100)
    t = summary.per_run.set_index("run").loc["tree"]
    assert bool(t.tree)
    check(t.tau, 5 / 2, "tree tau")
    check(t.acc_rate, 3 / 8, "tree: accepted / every drafted node")
    check(t.depth_rate, 3 / 5, "tree: accepted / the proposals' depths")
    pos = summary.positions[summary.positions.run == "tree"].set_index("position")
    assert list(pos.index) == [1, 2, 3]
    check(pos.p_uncond[1], 1.0, "tree P(1)")
    check(pos.p_cond[1], 1.0, "tree P(1|0)")
    check(pos.p_uncond[2], 0.5, "tree P(2)")
    check(pos.p_cond[2], 0.5, "tree P(2|1)")
    check(pos.p_uncond[3], 0.0, "tree P(3)")
    # the only depth-3 node hangs under a rejected branch: no step's accepted path had a depth-3 child
    assert pos.n_reached[3] == 0 and math.isnan(pos.p_cond[3]), pos.loc[3].to_dict()


@test
def zero_drafts_and_missing_baseline():
    summary = rep.summarize(rep.load(tiny_file()), n_boot=100)
    pr = summary.per_run.set_index("run")
    n = pr.loc["nodraft"]
    check(n.tau, 1.0, "no drafts: tau")
    assert math.isnan(n.acc_rate) and int(n.drafted) == 0
    check(n.speedup, 2.0 / 2.5, "no drafts: speedup")
    assert "nodraft" not in set(summary.positions.run)
    w = pr.loc["warm"]
    assert pd.isna(w.baseline_run) and math.isnan(w.speedup), (w.baseline_run, w.speedup)
    text = rep.format_report(summary)
    row = next(line for line in text.splitlines() if line.startswith("warm "))
    assert "n/a" in row, row
    assert "no AR baseline run (baseline = 1) with temperature 0.5" in text
    js = rep.to_json(summary)
    assert next(r for r in js["runs"] if r["run"] == "warm")["speedup"] is None


@test
def baseline_named_by_the_runner_or_matched_by_seed():
    def ar(name, seed, wall):
        return {"name": name, "attrs": dict(_attrs("none", 0), seed=str(seed)),
                "requests": [_req(0, "a", wall, 4, 0)], "steps": [_step(0, s, 0, 0) for s in range(4)],
                "outputs": [(0, [1, 2, 3, 4])]}

    def spec(name, **extra):
        return {"name": name, "attrs": dict(_attrs("ngram", 2), **extra), "requests": [_req(0, "a", 1.0, 2, 2)],
                "steps": [_step(0, 0, 2, 2), _step(0, 1, 0, 0)], "draft_tokens": _chain(0, 0, 2, 2),
                "outputs": [(0, [1, 2, 3, 4])]}
    path = os.path.join(SCRATCH, "two_baselines.h5")
    fake.write_results(path, [ar("ar_s0", 0, 2.0), ar("ar_s1", 1, 3.0), spec("named", seed="0", baseline_run="ar_s1"),
                              spec("by_seed", seed="1"), spec("any")])
    pr = rep.summarize(rep.load(path), n_boot=10).per_run.set_index("run")
    assert pr.loc["named"].baseline_run == "ar_s1" and close(pr.loc["named"].speedup, 3.0)
    assert pr.loc["by_seed"].baseline_run == "ar_s1" and close(pr.loc["by_seed"].speedup, 3.0)
    assert pr.loc["any"].baseline_run == "ar_s0" and close(pr.loc["any"].speedup, 2.0)  # tie: by name


@test
def only_ar_and_no_baseline_files():
    for variant in ("only_ar", "no_baseline", "killed"):
        res = rep.load(fake_file(variant))
        summary = rep.summarize(res, n_boot=100)
        text = rep.format_report(summary)
        assert "Metric definitions" in text, variant
        if variant == "only_ar":
            assert set(summary.per_run.run) == {"ar_t0", "ar_t07"}
            assert summary.positions.empty and summary.lossless.empty
            assert "only AR baseline" in text
        if variant == "no_baseline":
            assert summary.per_run.speedup.isna().all()
            assert set(summary.lossless.verdict[summary.lossless.checked]) == {"n/a (no AR baseline)"}
        if variant == "killed":
            pr = summary.per_run.set_index("run")
            assert pr.loc["ngram_k4_t0"].n_requests == 8 and pr.loc["ngram_k4_t0"].n_paired == 8
            assert len(res.unfinished["ngram_k4_t0"]) == 1
            data = raw(fake_file(variant))
            check(pr.loc["ngram_k4_t0"].tau, expected_rates(data["ngram_k4_t0"])["tau"], "killed run tau")
        if variant != "killed":  # plots without speculative runs / without speedups still render
            with tempfile.TemporaryDirectory(dir=SCRATCH) as d:
                for p in rep.write_plots(summary, d, dpi=60):
                    assert os.path.getsize(p) > 1000, p


@test
def empty_file_and_bad_input():
    path = os.path.join(SCRATCH, "empty.h5")
    with h5py.File(path, "w") as f:
        f.attrs["schema_version"] = np.int32(1)
    summary = rep.summarize(rep.load(path), n_boot=10)
    assert summary.per_run.empty
    assert "no runs" in rep.format_report(summary)
    r = subprocess.run([sys.executable, os.path.join(REPORT_DIR, "specdec_report.py"),
                        os.path.join(SCRATCH, "does_not_exist.h5")], capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr, (r.returncode, r.stderr)
    bad = os.path.join(SCRATCH, "not_hdf5.h5")
    with open(bad, "w") as f:
        f.write("not an HDF5 file\n")
    r = subprocess.run([sys.executable, os.path.join(REPORT_DIR, "specdec_report.py"), bad],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "cannot read" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    with h5py.File(path, "w") as f:
        f.attrs["schema_version"] = np.int32(7)
    try:
        rep.load(path)
    except ValueError as e:
        assert "schema_version 7" in str(e)
    else:
        raise AssertionError("schema_version 7 was accepted")


@test
def cli_writes_table_csv_json_and_plots():
    import csv
    import json
    plots = os.path.join(SCRATCH, "plots")
    csv_path = os.path.join(SCRATCH, "report.csv")
    json_path = os.path.join(SCRATCH, "report.json")
    r = subprocess.run([sys.executable, os.path.join(REPORT_DIR, "specdec_report.py"), fake_file(),
                        "--plots", plots, "--csv", csv_path, "--json", json_path, "--bootstrap", "300",
                        "--seed", "0"], capture_output=True, text=True, env=dict(os.environ, MPLBACKEND="Agg"))
    assert r.returncode == 0, r.stderr
    assert "Per run" in r.stdout and "Metric definitions" in r.stdout
    assert "lossless: no (2 mismatching requests)" in r.stdout
    for name in ("acceptance_by_position.png", "tau_by_category.png", "speedup_vs_k.png"):
        p = os.path.join(plots, name)
        assert os.path.isfile(p), p
        with open(p, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(p) > 10_000, (p, os.path.getsize(p))
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 11 and {"run", "tau", "acc_rate", "speedup", "speedup_lo", "speedup_hi",
                                "lossless_check"} <= set(rows[0])
    by = {r["run"]: r for r in rows}
    assert by["ngram_k4_t0_mismatch"]["lossless_check"] == "no (2 mismatching requests)"
    point, _ = expected_speedup(raw(fake_file())["synthetic_tree8_t07"], raw(fake_file())["ar_t07"])
    check(float(by["synthetic_tree8_t07"]["speedup"]), point, "CSV speedup")
    with open(json_path) as f:
        js = json.load(f)
    assert {"runs", "categories", "positions", "lossless", "notes", "definitions"} <= set(js)
    assert len(js["categories"]) == 33


# ---- issue #10 / #17: definitions that changed (each fails on the old report) ------------------------

def _v2_req(rid, prompt, repeat, new, decode_s, invocation="inv0", prefill_s=0.5, load=0.5, cores=4, steps=1):
    return dict(request_id=rid, prompt_id=prompt, category="a", repeat=repeat, prompt_tokens=5, new_tokens=new,
                wall_time_s=prefill_s + decode_s, prefill_s=prefill_s, decode_s=decode_s, steps=steps,
                tau=new / steps, stopped=0, invocation=invocation, host="h", host_cores=cores, load_avg=load,
                threads=2, device="cpu")


@test
def tau_counts_emitted_tokens_when_a_request_stops_mid_block():
    # 2 steps of a chain of 4: all 4 accepted (+ bonus: 5 emitted); then 3 accepted but the stop token was
    # the first of them: 1 emitted. tau = 6 / 2, not (7 + 2) / 2 as the old report said.
    steps = [dict(_step(0, 0, 4, 4), n_emitted=5), dict(_step(0, 1, 4, 3), n_emitted=1)]
    ar = {"name": "ar", "attrs": _attrs("none", 0), "requests": [_v2_req(0, "p:0", 0, 6, 1.2, steps=6)],
          "steps": [dict(_step(0, s, 0, 0), n_emitted=1) for s in range(6)], "outputs": [(0, [1] * 6)]}
    spec = {"name": "spec", "attrs": _attrs("ngram", 4), "requests": [_v2_req(0, "p:0", 0, 6, 0.3, steps=2)],
            "steps": steps, "draft_tokens": _chain(0, 0, 4, 4) + _chain(0, 1, 4, 3), "outputs": [(0, [1] * 6)]}
    path = os.path.join(SCRATCH, "stop_mid_block.h5")
    fake.write_results(path, [ar, spec], schema_version=2)
    pr = rep.summarize(rep.load(path), n_boot=0).per_run.set_index("run")
    s = pr.loc["spec"]
    check(s.tau, 3.0, "tau = emitted / steps")
    check(s.tau_no_bonus, 2.0, "tau - 1")
    check(s.tokens_per_s, 6 / 0.3, "emitted / decode s")
    # peers, from the same steps: Spec-Bench #MAT is not cut at the stop; vLLM 1 + accepted / drafts
    check(s.specbench_mat, (7 + 2) / 2, "Spec-Bench #MAT")
    check(s.vllm_mean_acceptance_length, 1 + 7 / 2, "vLLM mean acceptance length")
    check(s.vllm_acceptance_rate, 7 / 8, "vLLM acceptance rate")
    check(s.llamacpp_accept, 7 / 8, "llama.cpp accept")
    check(s.sglang_accept_length, 3.0, "SGLang accept length")
    # the same request in a version 1 log (no n_emitted): rebuilt from new_tokens, the same tau
    v1 = os.path.join(SCRATCH, "stop_mid_block_v1.h5")
    fake.write_results(v1, [{**ar, "steps": [_step(0, s, 0, 0) for s in range(6)]},
                            {**spec, "steps": [_step(0, 0, 4, 4), _step(0, 1, 4, 3)]}])
    res = rep.load(v1)
    assert list(res.steps[res.steps.run == "spec"].n_emitted) == [5, 1], res.steps
    check(rep.summarize(res, n_boot=0).per_run.set_index("run").loc["spec"].tau, 3.0, "v1 tau")


@test
def speedup_is_per_emitted_token_and_excludes_prefill():
    # T > 0: the run emitted half the AR's tokens in a quarter of its decode time: 2x per token. The old
    # ratio of summed wall times (5 s of shared prefill included, lengths ignored) gave 6 / 5.25 = 1.14.
    ar = {"name": "ar", "attrs": _attrs("none", 0, temperature="1", rule="speculative"),
          "requests": [_v2_req(0, "p:0", 0, 10, 1.0, prefill_s=5.0)], "outputs": [(0, [1] * 10)]}
    spec = {"name": "spec", "attrs": _attrs("ngram", 4, temperature="1", rule="speculative"),
            "requests": [_v2_req(0, "p:0", 0, 5, 0.25, prefill_s=5.0)], "outputs": [(0, [1] * 5)]}
    path = os.path.join(SCRATCH, "per_token.h5")
    fake.write_results(path, [ar, spec], schema_version=2)
    s = rep.summarize(rep.load(path), n_boot=0).per_run.set_index("run").loc["spec"]
    check(s.speedup, (1.0 / 10) / (0.25 / 5), "decode s per emitted token")
    check(s.speedup_e2e, (6.0 / 10) / (5.25 / 5), "end to end: wall s per emitted token")


@test
def bootstrap_resamples_prompts_with_their_repeats_and_reports_the_spread():
    # One prompt, four repeats: one cluster, so the interval collapses onto the point (the old bootstrap
    # treated the repeats as independent and gave a real interval); the spread over repeats is shown.
    ratios = [1.5, 2.0, 2.5, 3.0]
    ar = {"name": "ar", "attrs": _attrs("none", 0),
          "requests": [_v2_req(i, "p:0", i, 10, 1.0) for i in range(4)], "outputs": [(i, [1]) for i in range(4)]}
    spec = {"name": "spec", "attrs": _attrs("ngram", 4),
            "requests": [_v2_req(i, "p:0", i, 10, 1.0 / r) for i, r in enumerate(ratios)],
            "outputs": [(i, [1]) for i in range(4)]}
    path = os.path.join(SCRATCH, "repeats.h5")
    fake.write_results(path, [ar, spec], schema_version=2)
    s = rep.summarize(rep.load(path), n_boot=500, seed=0).per_run.set_index("run").loc["spec"]
    check(s.speedup, 4.0 / sum(1 / r for r in ratios), "point")
    assert s.speedup_lo == s.speedup_hi == s.speedup, (s.speedup_lo, s.speedup_hi)
    check(s.speedup_rep_min, 1.5, "slowest repeat")
    check(s.speedup_rep_max, 3.0, "fastest repeat")
    assert s.n_repeats == 4


def _two_invocations(name, mixed):
    """10 requests; with mixed, the run's requests 6..9 were timed by a second invocation (a --resume on a
    machine three times slower), their AR rows by the first."""
    ar_rows, run_rows = [], []
    for i in range(10):
        ar_rows.append(_v2_req(i, f"p:{i}", 0, 20 + i, 0.02 * (20 + i)))
        slow = mixed and i >= 6
        run_rows.append(_v2_req(i, f"p:{i}", 0, 20 + i, 0.01 * (20 + i) * (1 + 0.1 * (i % 3)) * (3 if slow else 1),
                                invocation="inv1" if slow else "inv0"))
    if not mixed:
        ar_rows, run_rows = ar_rows[:6], run_rows[:6]
    path = os.path.join(SCRATCH, name)
    fake.write_results(path, [{"name": "ar", "attrs": _attrs("none", 0), "requests": ar_rows},
                              {"name": "spec", "attrs": _attrs("ngram", 4), "requests": run_rows}],
                       schema_version=2)
    return rep.summarize(rep.load(path), n_boot=300, seed=0)


@test
def a_log_from_two_invocations_pairs_only_timings_of_one():
    clean = _two_invocations("clean.h5", False).per_run.set_index("run").loc["spec"]
    summary = _two_invocations("mixed.h5", True)
    mixed = summary.per_run.set_index("run").loc["spec"]
    assert mixed.n_cross_invocation == 4 and mixed.n_paired == 6, (mixed.n_cross_invocation, mixed.n_paired)
    for c in ("speedup", "speedup_lo", "speedup_hi", "speedup_median", "speedup_e2e"):
        check(mixed[c], clean[c], f"mixed log {c} = clean log {c}")
    text = rep.format_report(summary)
    assert "4 of 10 requests left out of the speedup" in text, text


@test
def outliers_and_load_are_flagged():
    ar = [_v2_req(i, f"p:{i}", 0, 10, 1.0) for i in range(8)]
    run = [_v2_req(i, f"p:{i}", 0, 10, 0.5 * (1 + 0.01 * i)) for i in range(8)]
    run[4]["decode_s"] = 6.0  # a planted outlier
    run[2]["load_avg"] = 9.0  # more than the host's 4 cores
    run[5]["load_avg"] = 4.5  # a run using every core reads about 4: not loaded (below 1.25 x 4)
    path = os.path.join(SCRATCH, "outlier.h5")
    fake.write_results(path, [{"name": "ar", "attrs": _attrs("none", 0), "requests": ar},
                              {"name": "spec", "attrs": _attrs("ngram", 4), "requests": run}], schema_version=2)
    summary = rep.summarize(rep.load(path), n_boot=0)
    s = summary.per_run.set_index("run").loc["spec"]
    assert s.outliers == [4], s.outliers
    assert s.n_loaded == 1
    assert s.speedup_median > 1.9 > s.speedup, (s.speedup_median, s.speedup)
    text = rep.format_report(summary)
    assert "outlying speedup ratio on request(s) [4]" in text
    assert "WARNING spec: 1 paired request(s) timed while the load average exceeded" in text


@test
def columns_come_from_the_log():
    # A version 2 log's `columns` attribute is what the loader reads: a column added to the schema (here a
    # made-up one) reaches the DataFrames without a change to the report.
    schema = json.load(open(rep.SCHEMA_FILE))
    schema["tables"]["steps"].append({"name": "made_up", "type": "int32", "bytes": 4, "since": 2,
                                      "timing": False, "doc": "test"})
    ar = {"name": "ar", "attrs": _attrs("none", 0), "requests": [_v2_req(0, "p:0", 0, 2, 1.0, steps=2)],
          "steps": [dict(_step(0, s, 0, 0), n_emitted=1) for s in range(2)], "outputs": [(0, [1, 2])]}
    path = os.path.join(SCRATCH, "columns.h5")
    fake.write_results(path, [ar], schema_version=2, root_attrs={"columns": json.dumps(schema)})
    res = rep.load(path)
    assert "made_up" in res.steps.columns and res.steps.made_up.isna().all()
    assert rep.TABLE_COLUMNS == rep.table_columns(json.load(open(rep.SCHEMA_FILE)))


@test
def verdicts_are_recomputed_from_the_log():
    # Each draft node's verdict must follow from its own row (docs/verification.md). A clean speculative
    # log agrees everywhere; a planted row whose `passed` contradicts u < min(1, p_test / q_draft) is
    # counted and warned about. (Before, the log held no p_test / passed, and typical nodes off the path
    # were logged accepted: no check was possible.)
    def node(step, n, p, q, u, passed, accepted=None):
        return dict(request_id=0, step=step, node=n, parent=n - 1, depth=n + 1, token=5, p_target=p, q_draft=q,
                    u=u, visited=1, accepted=passed if accepted is None else accepted, p_test=p, threshold=-1.0,
                    passed=passed)
    rows = [node(0, 0, 0.5, 0.5, 0.3, 1), node(0, 1, 0.2, 0.8, 0.1, 1), node(0, 2, 0.1, 0.5, 0.9, 0)]
    ar = {"name": "ar", "attrs": _attrs("none", 0, temperature="1", rule="speculative"),
          "requests": [_v2_req(0, "p:0", 0, 3, 1.0, steps=3)], "outputs": [(0, [1, 2, 3])]}

    def run(drafts, name):
        spec = {"name": "spec", "attrs": _attrs("early_exit", 3, temperature="1", rule="speculative"),
                "requests": [_v2_req(0, "p:0", 0, 3, 0.5)], "steps": [dict(_step(0, 0, 3, 2), n_emitted=3)],
                "draft_tokens": drafts, "outputs": [(0, [1, 2, 3])]}
        path = os.path.join(SCRATCH, name)
        fake.write_results(path, [ar, spec], schema_version=2)
        return rep.summarize(rep.load(path), n_boot=0)
    clean = run(rows, "verdicts_clean.h5")
    v = clean.verdicts.set_index("run").loc["spec"]
    assert v.n_tested == 3 and v.n_disagree == 0, v
    assert "3 tests, 0 disagree" in rep.format_report(clean)
    bad = [dict(r) for r in rows]
    bad[2].update(passed=1, accepted=1)  # u = 0.9 >= min(1, 0.1 / 0.5) = 0.2: the test rejected it
    planted = run(bad, "verdicts_planted.h5")
    assert planted.verdicts.set_index("run").loc["spec"].n_disagree == 1
    assert "WARNING spec: 1 of 3 logged verdicts do not follow" in rep.format_report(planted)
    # typical: passed = p_test > threshold; a passing node off the kept path stays accepted = 0.
    typ = [dict(node(0, 0, 0.5, 1.0, -1.0, 1), threshold=0.09), dict(node(0, 1, 0.05, 1.0, -1.0, 0), threshold=0.09)]
    t = {"name": "typ", "attrs": _attrs("ngram", 2, temperature="1", rule="typical", lossless="0"),
         "requests": [_v2_req(0, "p:0", 0, 2, 0.5)], "steps": [dict(_step(0, 0, 2, 1), n_emitted=2)],
         "draft_tokens": typ, "outputs": [(0, [1, 2])]}
    path = os.path.join(SCRATCH, "verdicts_typical.h5")
    fake.write_results(path, [ar, t], schema_version=2)
    assert rep.verdict_check(rep.load(path)).set_index("run").loc["typ"].n_disagree == 0


def _load_step(rid, step, proposed, accepted, emitted, t_emit, batch_step, context):
    return dict(request_id=rid, step=step, n_proposed=proposed, n_accepted=accepted, n_emitted=emitted,
                tree_nodes=0, max_depth=proposed, t_draft_us=1.0, t_verify_us=2.0, context_len=context,
                batch_size=2, k_policy=proposed, t_forward_us=1.5, batch_step=batch_step, t_emit_s=t_emit)


def load_file(name="load.h5", schema_version=3):
    """Two batched runs (batch 2, Poisson 2/s) whose load figures are known by construction:
    AR: request 0 arrives at 0 and emits at 0.5, 0.6, 0.7; request 1 arrives at 0.2 and emits at 0.6, 0.7,
    0.9, 1.0. ngram k = 2: request 0 (arrival 0) emits 3 tokens at 0.3 and 1 at 0.5; request 1 (arrival 0.2)
    2 at 0.3 and 2 (cut: accepted 2) at 0.5. The cost table: a forward of T tokens costs 1000 T us. Schema 4:
    the ngram run's steps expected 3, 2, 2.5 and 2.5 tokens (k_expected) where they emitted 3, 1, 2, 2."""
    costs = json.dumps({"version": 1, "source": "by hand", "forward": {
        "tokens": [1, 2, 3], "batch": [1, 2], "context": [0], "us": [[[1000.0 * t]] * 2 for t in (1, 2, 3)]},
        "drafters": {"ngram": [0, 0, 0]}})
    load = {"batch_size": "2", "load": "poisson", "arrival_rate": "2", "cost_table": costs}
    ar = {"name": "ar_b2_r2_t0", "attrs": {**_attrs("none", 0), **load, "baseline_run": "ar_b2_r2_t0"},
          "requests": [{**_v2_req(0, "p:0", 0, 3, 0.7, steps=3), "arrival_s": 0.0},
                       {**_v2_req(1, "p:1", 0, 4, 0.8, steps=4), "arrival_s": 0.2}],
          "steps": [_load_step(0, i, 0, 0, 1, t, b, 10 + i) for i, (t, b) in enumerate([(.5, 0), (.6, 1), (.7, 2)])] +
                   [_load_step(1, i, 0, 0, 1, t, b, 10 + i)
                    for i, (t, b) in enumerate([(.6, 1), (.7, 2), (.9, 3), (1.0, 4)])],
          "outputs": [(0, [5, 6, 7]), (1, [5, 6, 7, 8])]}
    spec = {"name": "ngram_k2_b2_r2_t0", "attrs": {**_attrs("ngram", 2), **load, "policy": "fixed",
                                                   "baseline_run": "ar_b2_r2_t0"},
            "requests": [{**_v2_req(0, "p:0", 0, 4, 0.5, steps=2), "arrival_s": 0.0},
                         {**_v2_req(1, "p:1", 0, 4, 0.3, steps=2), "arrival_s": 0.2}],
            "steps": [_load_step(0, 0, 2, 2, 3, 0.3, 0, 10), _load_step(0, 1, 2, 0, 1, 0.5, 1, 13),
                      _load_step(1, 0, 2, 1, 2, 0.3, 0, 10), _load_step(1, 1, 2, 2, 2, 0.5, 1, 12)],
            "outputs": [(0, [5, 6, 7, 8]), (1, [5, 6, 7, 8])]}
    if schema_version >= 4:
        for st, e in zip(spec["steps"], (3.0, 2.0, 2.5, 2.5)):
            st["k_expected"] = e
    path = os.path.join(SCRATCH, name)
    fake.write_results(path, [ar, spec], schema_version=schema_version)
    return path


@test
def planner_calibration_by_hand():
    steps = pd.DataFrame({"n_emitted": [3, 1, 2, 2], "k_expected": [2.5, 2.0, -1.0, np.nan]})
    check(rep.planner_calibration(steps), 4.5 / 4, "sum(k_expected) / sum(n_emitted) over steps with a model")
    assert math.isnan(rep.planner_calibration(steps.assign(k_expected=-1.0))), "no step with a model: NaN"
    assert math.isnan(rep.planner_calibration(steps.drop(columns="k_expected"))), "a log before schema 4: NaN"
    # Through a log: schema 4 carries k_expected; schema 3 reads it as NaN.
    t = rep.summarize(rep.load(load_file("load_v4.h5", schema_version=4)), n_boot=0).load.set_index("run")
    check(t.calibration["ngram_k2_b2_r2_t0"], 10.0 / 8, "expected 3 + 2 + 2.5 + 2.5 against 8 emitted")
    assert math.isnan(t.calibration["ar_b2_r2_t0"]), "AR: no model"
    t3 = rep.summarize(rep.load(load_file("load_v3.h5")), n_boot=0).load.set_index("run")
    assert math.isnan(t3.calibration["ngram_k2_b2_r2_t0"]), "schema 3: no k_expected"


@test
def load_figures_by_hand():
    res = rep.load(load_file())
    s = rep.summarize(res, n_boot=200, slo_ttft=0.45, slo_itl=0.15)
    t = s.load.set_index("run")
    ar, sp = t.loc["ar_b2_r2_t0"], t.loc["ngram_k2_b2_r2_t0"]
    check(ar.batch, 2, "batch")
    check(ar.rate, 2.0, "rate")
    check(ar.throughput, 7 / 1.0, "AR throughput: 7 tokens over the span 0 .. 1.0")
    check(sp.throughput, 8 / 0.5, "spec throughput: 8 tokens over 0 .. 0.5")
    check(sp.thr_speedup, (8 / 0.5) / 7, "throughput speedup against the AR run at the same load")
    check(ar.ttft_p50, 0.45, "AR TTFT p50 of 0.5 and 0.4")
    check(ar.ttft_p99, 0.4 + 0.99 * 0.1, "AR TTFT p99 (linear interpolation)")
    check(ar.e2e_p50, 0.75, "AR e2e p50 of 0.7 and 0.8")
    # AR ITL samples 0.1, 0.1 | 0.1, 0.2, 0.1: p50 0.1, p90 at 3.6 of 0..4 in the sorted five.
    check(ar.itl_p50, 0.1, "AR ITL p50")
    check(ar.itl_p90, 0.1 + 0.6 * 0.1, "AR ITL p90")
    # spec ITL samples: request 0 one token 0.2 later; request 1 two tokens 0.2 later: 0.1 each.
    check(sp.itl_p50, 0.1, "spec ITL p50")
    check(sp.itl_p99, 0.1 + 0.98 * 0.1, "spec ITL p99 of [0.1, 0.1, 0.2]")
    check(sp.ttft_p50, 0.2, "spec TTFT p50 of 0.3 and 0.1")
    # Goodput (TTFT <= 0.45, mean ITL <= 0.15): AR request 1 only (0.4; (1.0 - 0.6) / 3); spec both.
    check(ar.n_good, 1, "AR requests meeting the SLOs")
    check(ar.goodput, 1 / 1.0, "AR goodput")
    check(sp.goodput, 2 / 0.5, "spec goodput")
    # The oracle: both requests share each batched step (batch_step 0 at 0.3 s, 1 at 0.5 s: B = 2), which
    # costs one ragged forward, 1000 us per token per sequence at the mean T = blocks / 2. Achieved: blocks of
    # 3 + 3 tokens (T = 3, 3000 us) twice, 3 + 2 and 1 + 2 tokens: 8 tokens in 6000 us. No choice beats 2
    # tokens per 1000 us (each extra block token costs 500 us and earns at most one token); drafting nothing
    # reaches it (2 tokens, T = 1, 1000 us per step).
    check(sp.oracle_tps, 2000.0, "oracle tokens/s")
    check(sp.achieved_tps, 8 * 1e6 / 6000, "achieved modelled tokens/s")
    check(sp.regret, 2000.0 / (8 * 1e6 / 6000) - 1, "regret")
    check(ar.regret, 0.0, "AR: nothing to choose")
    check(sp.tau, 2.0, "tau: 8 tokens in 4 steps")
    a = 5 / 8
    check(sp.alpha_tau, (1 - a ** 3) / (1 - a), "single-alpha tau at acc_rate 5/8, k = 2")
    check(sp.speedup, s.per_run.set_index("run").speedup["ngram_k2_b2_r2_t0"], "speedup: the per-run figure")
    text = rep.format_report(s)
    assert "Batched decoding under load (goodput SLOs: TTFT <= 0.45 s, mean ITL <= 0.15 s)" in text, text
    assert "regret = oracle tokens/s" in text
    # An unbatched log has no load section.
    assert rep.summarize(rep.load(tiny_file()), n_boot=0).load.empty


@test
def forward_pace_and_paced_speedup_by_hand():
    # load_file: the table costs 1000 T us whatever B and C; every step's t_forward_us is 1.5. AR: batched
    # steps 0 (one row), 1 and 2 (two rows each: one forward), 3 and 4 (one row of batch_size 2: alone):
    # 5 forwards of 1 token per sequence, measured 7.5 us against 5000 us modelled.
    res = rep.load(load_file("load_pace.h5"))
    check(rep.run_pace(res, "ar_b2_r2_t0"), 7.5 / 5000, "AR pace")
    # ngram: two batched steps of two rows, 3 + 3 tokens each: ragged_forward_us(6, 2) = 3000 us each.
    check(rep.run_pace(res, "ngram_k2_b2_r2_t0"), 3.0 / 6000, "spec pace")
    t = rep.summarize(res, n_boot=200).load.set_index("run")
    factor = (3.0 / 6000) / (7.5 / 5000)
    check(t.paced["ngram_k2_b2_r2_t0"], t.speedup["ngram_k2_b2_r2_t0"] * factor, "paced = speedup x pace / AR's")
    check(t.paced_lo["ngram_k2_b2_r2_t0"], t.speedup_lo["ngram_k2_b2_r2_t0"] * factor, "the CI scaled alike")
    check(t.paced["ar_b2_r2_t0"], 1.0, "AR against itself")
    # No forward times (a log before schema 3): NaN.
    st = res.steps[res.steps.run == "ar_b2_r2_t0"]
    assert math.isnan(rep.forward_pace(st.drop(columns="t_forward_us"), rep.CostTable(
        str(res.runs.loc["ar_b2_r2_t0"].cost_table))))


@test
def policy_check_against_ar_and_the_best_fixed_k():
    def row(run, drafter, policy, batch, sp, lo, hi, tps, base):
        return dict(run=run, drafter=drafter, policy=policy, batch=batch, load="poisson", rate=4.0, speedup=sp,
                    speedup_lo=lo, speedup_hi=hi, thr_speedup=np.nan, achieved_tps=tps, baseline_run=base)
    t = pd.DataFrame([
        row("ar_b4", "none", "", 4, 1.0, np.nan, np.nan, 300, "ar_b4"),
        row("ng_k1_fixed_b4", "ngram", "fixed", 4, 0.9, 0.8, 1.0, 310, "ar_b4"),
        row("ng_k4_fixed_b4", "ngram", "fixed", 4, 1.3, 1.2, 1.4, 330, "ar_b4"),
        row("ng_k4_cm_b4", "ngram", "cost_model", 4, 1.05, 0.95, 1.25, 340, "ar_b4"),  # CI below 1.3; model ok
        row("md_k4_fixed_b4", "medusa", "fixed", 4, 0.6, 0.5, 0.7, 250, "ar_b4"),
        row("md_k4_cm_b4", "medusa", "cost_model", 4, 0.97, 0.9, 1.02, 290, "ar_b4"),  # reaches 1; model: AR's 300
        row("ar_b8", "none", "", 8, 1.0, np.nan, np.nan, 200, "ar_b8"),
        row("md_k4_cm_b8", "medusa", "cost_model", 8, 1.2, 1.1, 1.3, 210, "ar_b8"),  # no fixed run: bar 1
    ])
    c = rep.policy_check(t).set_index("run")
    assert list(c.index) == ["ng_k4_cm_b4", "md_k4_cm_b4", "md_k4_cm_b8"], list(c.index)
    check(c.bar["ng_k4_cm_b4"], 1.3, "bar: the best fixed k's speedup")
    assert c.best_fixed_run["ng_k4_cm_b4"] == "ng_k4_fixed_b4"
    assert c.verdict["ng_k4_cm_b4"] == "below" and c.model_verdict["ng_k4_cm_b4"] == "ok"
    check(c.model_bar["ng_k4_cm_b4"], 330, "model bar: the best of AR's and the fixed runs' modelled tokens/s")
    check(c.bar["md_k4_cm_b4"], 1.0, "bar: AR when every fixed k is slower")
    assert c.verdict["md_k4_cm_b4"] == "ok" and c.model_verdict["md_k4_cm_b4"] == "below"
    check(c.model_bar["md_k4_cm_b4"], 300, "model bar: AR's")
    assert c.verdict["md_k4_cm_b8"] == "ok" and c.best_fixed_run["md_k4_cm_b8"] == ""
    assert c.model_verdict["md_k4_cm_b8"] == "ok"
    assert (c.paced_verdict == "-").all(), "no paces: no paced verdict"
    t["calibration"] = [np.nan, np.nan, np.nan, 1.5, np.nan, 0.75, np.nan, np.nan]
    # Paced: ngram's fixed k4 ran fast (1.1 after pacing), the cost model slow (its CI reaches 1.35 paced).
    t["pace"] = [1.0, 1.0, 0.9, 1.2, 1.0, 1.0, 1.0, 1.0]
    for col, src in (("paced", "speedup"), ("paced_lo", "speedup_lo"), ("paced_hi", "speedup_hi")):
        t[col] = t[src] * t.pace
    c = rep.policy_check(t).set_index("run")
    check(c.paced_bar["ng_k4_cm_b4"], 1.3 * 0.9, "paced bar: the best fixed run's paced speedup")
    check(c.paced["ng_k4_cm_b4"], 1.05 * 1.2, "the run's paced speedup")
    assert c.paced_verdict["ng_k4_cm_b4"] == "ok" and c.verdict["ng_k4_cm_b4"] == "below"
    check(c.paced_bar["md_k4_cm_b4"], 1.0, "paced bar: AR when every fixed k is slower")
    assert c.paced_verdict["md_k4_cm_b4"] == "ok"
    check(c.calibration["ng_k4_cm_b4"], 1.5, "the run's calibration carried to the check")
    text = "\n".join(rep.format_policy_check(rep.policy_check(t)))
    assert "2 of 3 policy runs reach the bar within their CI (measured); 2 of 3 under the cost table" in text, text
    assert "; 3 of 3 paced" in text, text
    assert "expected/emitted" in text and " 1.50" in text and " 0.75" in text, text
    assert rep.policy_check(t[t.policy != "cost_model"]).empty


@test
def policy_check_widened_by_the_aa_control():
    def row(run, drafter, policy, batch, sp, lo, hi, base):
        return dict(run=run, drafter=drafter, policy=policy, batch=batch, load="poisson", rate=4.0, speedup=sp,
                    speedup_lo=lo, speedup_hi=hi, thr_speedup=np.nan, achieved_tps=np.nan, baseline_run=base)
    t = pd.DataFrame([
        row("ar_b4", "none", "", 4, 1.0, np.nan, np.nan, "ar_b4"),
        row("ar_aa_b4", "none", "", 4, 0.98, 0.97, 0.99, "ar_b4"),  # the A/A control: 2% apart
        row("md_k4_cm_b4", "medusa", "cost_model", 4, 0.98, 0.97, 0.99, "ar_b4"),  # CI below 1
        row("ar_b8", "none", "", 8, 1.0, np.nan, np.nan, "ar_b8"),
        row("ar_aa_b8", "none", "", 8, 1.0 / 0.99, 1.0, 1.02, "ar_b8"),
        row("md_k4_cm_b8", "medusa", "cost_model", 8, 0.90, 0.88, 0.92, "ar_b8"),  # 10% below: stays below
    ])
    assert list(rep.is_aa_control(t)) == [False, True, False, False, True, False]
    sigma, n = rep.aa_noise(t)
    assert n == 2
    check(sigma, math.sqrt((math.log(0.98) ** 2 + math.log(0.99) ** 2) / 2), "sigma: RMS of ln A/A speedup")
    c = rep.policy_check(t).set_index("run")
    assert c.verdict["md_k4_cm_b4"] == "below" and c.aa_verdict["md_k4_cm_b4"] == "ok"
    h = math.log(0.99 / 0.98)
    check(c.aa_hi["md_k4_cm_b4"], 0.98 * math.exp(math.sqrt(h * h + (1.96 * sigma) ** 2)), "the widened top")
    assert c.aa_run["md_k4_cm_b4"] == "ar_aa_b4" and c.aa_run["md_k4_cm_b8"] == "ar_aa_b8"
    check(c.aa_speedup["md_k4_cm_b4"], 0.98, "the cell's own A/A speedup")
    assert c.aa_verdict["md_k4_cm_b8"] == "below"
    text = "\n".join(rep.format_policy_check(rep.policy_check(t)))
    assert "A/A [95% CI]" in text and "0.98 [0.97, 0.99]" in text, text
    assert f"sigma = {sigma:.4f}" in text and "1 of 2 policy runs reach the bar" in text, text
    # Without an A/A run: no sigma, no A/A verdict, no A/A columns.
    c = rep.policy_check(t[~rep.is_aa_control(t)])
    assert (c.aa_verdict == "-").all() and c.aa_sigma.isna().all()
    assert "A/A" not in "\n".join(rep.format_policy_check(c))


@test
def load_cli_options_and_plots():
    path = load_file("load_cli.h5")
    out_json = os.path.join(SCRATCH, "load.json")
    plots = os.path.join(SCRATCH, "load_plots")
    r = subprocess.run([sys.executable, os.path.join(REPORT_DIR, "specdec_report.py"), path, "--slo-ttft", "0.35",
                        "--json", out_json, "--plots", plots, "--bootstrap", "0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    j = json.load(open(out_json))
    assert j["slo"] == {"ttft_s": 0.35, "itl_s": 0.1}, j["slo"]
    got = {row["run"]: row for row in j["load"]}
    check(got["ngram_k2_b2_r2_t0"]["goodput"], 2 / 0.5, "spec goodput at TTFT <= 0.35: 0.3 and 0.1 pass")
    check(got["ar_b2_r2_t0"]["goodput"], 0.0, "AR goodput at TTFT <= 0.35, ITL <= 0.1")
    for name in ("speedup_vs_batch_size.png", "speedup_vs_arrival_rate.png"):
        assert os.path.getsize(os.path.join(plots, name)) > 1000, name


@test
def cost_table_lookup_nearest_t_bilinear_b_and_c():
    """The report's CostTable looks up as core/speculative/policy.cpp does: the same cases as test_policy."""
    fwd = [[[1000 * t + 100 * b + 10 * x + 1 for x in range(2)] for b in range(2)] for t in range(3)]
    c = rep.CostTable(json.dumps({"forward": {"tokens": [1, 2, 4], "batch": [1, 8], "context": [100, 300],
                                              "us": fwd}}))
    check(c.forward_us(1, 1, 100), 1, "on the grid")
    check(c.forward_us(4, 8, 300), 2111, "on the grid")
    check(c.forward_us(3, 1, 100), 2001, "T = 3: the tie takes 4")
    check(c.forward_us(2, 4, 100), 1001 + 100 * 3 / 7, "B = 4: linear from 1 to 8")
    check(c.forward_us(2, 16, 100), 1101, "past the B grid")
    check(c.forward_us(1, 4, 200), 1 + 100 * 3 / 7 + 5, "bilinear in B and C", 1e-9)
    check(c.forward_us(1, 1, 0), 1, "clamped below in C")


def _load_row(run, policy, k, drafter, speedup, rate=4.0, batch=8):
    return {"run": run, "policy": policy, "k": str(k), "drafter": drafter, "rate": rate, "batch": batch,
            "baseline_run": f"ar_b{batch}_r{rate:g}_t0", "speedup": speedup}


@test
def replicated_verdict_by_hand():
    """bench/load_sweep_replicates.py: bar = the fixed run with the best mean (else AR), the paired t interval
    of cost_model - bar, computed here by hand for three invocations."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import load_sweep_replicates as lr
    # cell 1 (ngram): fixed k2 has the best mean (1.10 vs 1.05); cost_model k2 = 1.12, 1.015, 1.075, below it
    # in every invocation by about the same amount
    # cell 2 (medusa): no fixed mean above 1: the bar is AR (1)
    inv = [
        {"ng_f1": 1.04, "ng_f2": 1.15, "ng_c2": 1.12, "me_f1": 0.90, "me_c2": 0.99, "aa": 1.01},
        {"ng_f1": 1.08, "ng_f2": 1.05, "ng_c2": 1.015, "me_f1": 0.85, "me_c2": 0.97, "aa": 0.99},
        {"ng_f1": 1.03, "ng_f2": 1.10, "ng_c2": 1.075, "me_f1": 0.88, "me_c2": 1.02, "aa": 1.00},
    ]
    paths = []
    for i, v in enumerate(inv):
        load = [_load_row("ar_b8_r4_t0", "", 0, "none", 1.0), _load_row("ar_aa_b8_r4_t0", "", 0, "none", v["aa"]),
                _load_row("ngram_k1_fixed_b8_r4_t0", "fixed", 1, "ngram", v["ng_f1"]),
                _load_row("ngram_k2_fixed_b8_r4_t0", "fixed", 2, "ngram", v["ng_f2"]),
                _load_row("ngram_k2_cost_model_b8_r4_t0", "cost_model", 2, "ngram", v["ng_c2"]),
                _load_row("medusa_k1_fixed_b8_r4_t0", "fixed", 1, "medusa", v["me_f1"]),
                _load_row("medusa_k2_cost_model_b8_r4_t0", "cost_model", 2, "medusa", v["me_c2"])]
        paths.append(os.path.join(SCRATCH, f"rep{i}.json"))
        # the runs table: the cost-model runs' steps that drafted (medusa's never; ngram's 30 + i of 40)
        runs = [{"run": "ngram_k2_cost_model_b8_r4_t0", "draft_steps": 30 + i, "steps": 40},
                {"run": "medusa_k2_cost_model_b8_r4_t0", "draft_steps": 0, "steps": 50}]
        with open(paths[-1], "w") as f:
            json.dump({"load": load, "runs": runs}, f)
    rows = {r["drafter"]: r for r in lr.verdicts(lr.load_reports(paths), 2)}
    assert set(rows) == {"ngram", "medusa"}, rows.keys()
    ng, me = rows["ngram"], rows["medusa"]
    assert ng["bar_run"] == "ngram_k2_fixed_b8_r4_t0", ng["bar_run"]
    d = [v["ng_c2"] - v["ng_f2"] for v in inv]  # -0.03, -0.035, -0.025
    m = sum(d) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / 2)
    h = 4.303 * sd / math.sqrt(3)  # Student's t, 2 degrees of freedom
    check(ng["diff"][0], m, "mean paired difference")
    check(ng["diff"][2], m + h, "upper end of its t interval", 1e-12)
    assert m + h < 0 and ng["verdict"] == "below", (m, h, ng["verdict"])
    check(ng["single_ok"], 0, "invocations at or above the bar")
    check(ng["speedup"][0], (1.12 + 1.015 + 1.075) / 3, "the cost model's mean speedup")
    check(ng["aa"][0], 1.0, "A/A mean")
    assert me["bar_run"] == "AR" and me["bar"][:3] == (1.0, 1.0, 1.0), me["bar"]
    dm = [v["me_c2"] - 1 for v in inv]  # -0.01, -0.03, +0.02
    mm = sum(dm) / 3
    hm = 4.303 * math.sqrt(sum((x - mm) ** 2 for x in dm) / 2) / math.sqrt(3)
    check(me["diff"][2], mm + hm, "medusa: upper end against AR", 1e-12)
    assert me["verdict"] == "ok" and me["single_ok"] == 1, me
    assert ng["drafted"] == (30 + 31 + 32, 120) and me["drafted"] == (0, 150), (ng["drafted"], me["drafted"])
    # the family-wise verdict: one-sided p of the paired t statistic, by the closed forms of Student's t with 2
    # and 3 degrees of freedom (independent of the script's series), then Holm over the two cells at 2.5%
    def f2(t):
        return 0.5 + t / (2 * math.sqrt(2 + t * t))

    def f3(t):
        return 0.5 + (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi

    for t in (-10.0, -2.5, -0.3, 0.0, 1.7, 6.0):
        check(lr.t_cdf(t, 2), f2(t), f"t_cdf({t}, 2)", 1e-12)
        check(lr.t_cdf(t, 3), f3(t), f"t_cdf({t}, 3)", 1e-12)
    p_ng = f2(m / (sd / math.sqrt(3)))
    p_me = f2(mm / (math.sqrt(sum((x - mm) ** 2 for x in dm) / 2) / math.sqrt(3)))
    check(ng["p_below"], p_ng, "ngram's one-sided p", 1e-12)
    check(me["p_below"], p_me, "medusa's one-sided p", 1e-12)
    assert p_ng <= 0.025 / 2 and p_me > 0.025, (p_ng, p_me)  # Holm: the smaller against alpha / 2, then alpha
    assert ng["family"] == "below" and me["family"] == "ok", (ng["family"], me["family"])
    # Holm stops at the first p above its threshold: 0.001 <= 0.025/4, 0.01 > 0.025/3 (0.02 <= 0.025/2 is
    # never reached); where Bonferroni (every p against 0.025/3) keeps 0.01, Holm's second step rejects it
    assert lr.holm([0.3, 0.001, 0.02, 0.01]) == [False, True, False, False]
    assert lr.holm([0.006, 0.01, 0.5]) == [True, True, False]  # 0.006 <= 0.025/3, 0.01 <= 0.025/2
    # the CLI: the table and the count; a report with other runs is refused with the file named
    png = os.path.join(SCRATCH, "replicates.png")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "load_sweep_replicates.py"), *paths,
                          "--k-max", "2", "--plot", png], capture_output=True, text=True, check=True).stdout
    assert "1 of 2 cells reach the bar" in out, out
    assert "family-wise (Holm's step-down over the 2 cells at 2.5%, one-sided): 1 of 2 cells at the bar" in out, out
    assert "| 0 of 150 |" in out and "| 93 of 120 |" in out, out
    assert os.path.getsize(png) > 1000, png
    with open(paths[2], "w") as f:
        json.dump({"load": [_load_row("ar_b8_r4_t0", "", 0, "none", 1.0)]}, f)
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "load_sweep_replicates.py"), *paths],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "rep2.json holds other runs" in bad.stderr, bad.stderr


@test
def tau_by_domain_gathers_logs_and_refuses_disagreement():
    """bench/tau_by_domain.py: tau per category of named runs over several logs, by hand on the tiny file
    (chain: category a 5 emitted in 3 steps, b 6 in 2); the same run in two logs must agree."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import tau_by_domain as tbd
    tiny = tiny_file("tbd.h5")
    again = tiny_file("tbd_again.h5")
    taus, cats = tbd.gather([tiny, again], ["chain", "tree"])
    assert cats == ["a", "b"], cats
    check(taus["chain"]["a"], 5 / 3, "chain a")
    check(taus["chain"]["b"], 3.0, "chain b")
    check(taus["tree"]["a"], 5 / 2, "tree a")  # 2 + 1 emitted, then 1 + 1, in 2 steps
    assert "b" not in taus["tree"]
    md = os.path.join(SCRATCH, "tbd.md")
    assert tbd.main([tiny, "--runs", "chain=Chain", "tree", "--md", md]) == 0
    with open(md) as f:
        rows = f.read().splitlines()
    assert rows[0] == "| category (tau) | Chain | tree |" and rows[2:] == ["| a | 1.67 | 2.50 |", "| b | 3.00 | - |"], rows
    other = os.path.join(SCRATCH, "tbd_other.h5")  # a run named chain with another tau in category a
    fake.write_results(other, [{"name": "chain", "attrs": _attrs("ngram", 3), "requests": [_req(0, "a", 1.0, 1, 3)],
                                "steps": [_step(0, 0, 3, 3)], "draft_tokens": _chain(0, 0, 3, 3),
                                "outputs": [(0, [1, 2, 3, 4])]}])
    for paths, want in (([tiny, other], "chain / a: tau 1.666667"), ([tiny], "'nosuch' is in none")):
        try:
            tbd.gather(paths, ["chain", "nosuch"] if want.startswith("'") else ["chain"])
        except SystemExit as e:
            assert want in str(e), str(e)
        else:
            raise AssertionError(f"no error for {want}")


@test
def safetensors_f16_converts_f32_and_keeps_the_rest():
    """scripts/safetensors_f16.py (how artifacts/ ships weights): F32 tensors become numpy's F16 rounding, an
    I64 tensor and the metadata stay as they are, the data stays 8-byte aligned; a value beyond F16 is an error."""
    import struct
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import safetensors_f16 as st

    def write(path, tensors, meta):
        header, blobs, off = {"__metadata__": meta}, [], 0
        for name, a in tensors.items():
            b = a.tobytes()
            header[name] = {"dtype": {"float32": "F32", "int64": "I64"}[a.dtype.name], "shape": list(a.shape),
                            "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
        text = json.dumps(header).encode()
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

    w = np.array([[0.1, -2.5, 1e-3], [3.14159, 65000.0, -7e-8]], dtype="<f4")
    d2t = np.array([0, 5, -3], dtype="<i8")
    src, dst = os.path.join(SCRATCH, "w32.safetensors"), os.path.join(SCRATCH, "w16.safetensors")
    write(src, {"d2t": d2t, "fc.weight": w}, {"specdec": '{"steps": 3}'})
    assert st.main([src, dst]) == 0
    header, data = st.read(dst)
    (n,) = struct.unpack("<Q", open(dst, "rb").read(8))
    assert n % 8 == 0, n
    assert header.pop("__metadata__") == {"specdec": '{"steps": 3}'}
    fc, dt = header["fc.weight"], header["d2t"]
    assert fc["dtype"] == "F16" and fc["shape"] == [2, 3] and dt["dtype"] == "I64", header
    got = np.frombuffer(bytes(data[fc["data_offsets"][0]:fc["data_offsets"][1]]), dtype="<f2").reshape(2, 3)
    assert np.array_equal(got, w.astype(np.float16)), got
    check(float(got[0, 0]), 0.0999755859375, "0.1 to the nearest half")
    assert np.array_equal(np.frombuffer(bytes(data[dt["data_offsets"][0]:dt["data_offsets"][1]]), dtype="<i8"), d2t)
    write(src, {"fc.weight": np.array([1e6], dtype="<f4")}, {})
    try:
        st.main([src, dst + ".bad"])
    except SystemExit as e:
        assert "'fc.weight'" in str(e) and "beyond F16" in str(e), str(e)
    else:
        raise AssertionError("no error for a value beyond F16's range")
    assert not os.path.exists(dst + ".bad")


def main():
    global SCRATCH
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratch", help="folder for generated files (default: a temporary folder)")
    ap.add_argument("-k", help="run only tests whose name contains this")
    args = ap.parse_args()
    tmp = None
    if args.scratch:
        os.makedirs(args.scratch, exist_ok=True)
        SCRATCH = args.scratch
    else:
        tmp = tempfile.TemporaryDirectory()
        SCRATCH = tmp.name
    passed = failed = 0
    for fn in TESTS:
        if args.k and args.k not in fn.__name__:
            continue
        t0 = time.monotonic()
        try:
            fn()
        except Exception:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print(f"FAIL {fn.__name__}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
    print(f"report: {passed} passed, {failed} failed")
    if tmp:
        tmp.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
