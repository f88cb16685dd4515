#!/usr/bin/env python3
"""Writes a small, realistic specdec HDF5 results log (schema version 1 by default: the report must keep
reading the logs specdec 1 wrote; write_results(..., schema_version=2) writes version 2) for the report's
tests and the notebook. The decode loop is simulated:
steps, draft_tokens, outputs and the requests' tau / new_tokens / times are mutually consistent.

    python3 tests/report/make_fake_results.py OUT.h5 [--seed 0] [--variant full|only_ar|no_baseline|killed]

`write_results(path, runs)` is the low-level writer (tables given row by row); the tests also use it to
write tiny hand-computed files. The compound types below are transcribed from the schema, not shared
with the reader, so the tests check the reader against the contract.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import h5py
import numpy as np

SCHEMA_VERSION = 1

REQUESTS_DTYPE = np.dtype([
    ("request_id", "<i8"), ("prompt_id", "S64"), ("category", "S32"), ("repeat", "<i4"),
    ("prompt_tokens", "<i4"), ("new_tokens", "<i4"), ("wall_time_s", "<f8"), ("prefill_s", "<f8"),
    ("decode_s", "<f8"), ("steps", "<i4"), ("tau", "<f8"), ("stopped", "i1")])
STEPS_DTYPE = np.dtype([
    ("request_id", "<i8"), ("step", "<i4"), ("n_proposed", "<i4"), ("n_accepted", "<i4"),
    ("tree_nodes", "<i4"), ("max_depth", "<i4"), ("t_draft_us", "<f8"), ("t_verify_us", "<f8"),
    ("context_len", "<i4"), ("batch_size", "<i4")])
DRAFT_TOKENS_DTYPE = np.dtype([
    ("request_id", "<i8"), ("step", "<i4"), ("node", "<i4"), ("parent", "<i4"), ("depth", "<i4"),
    ("token", "<i4"), ("p_target", "<f4"), ("q_draft", "<f4"), ("u", "<f4"), ("visited", "i1"),
    ("accepted", "i1")])
OUTPUTS_DTYPE = np.dtype([("request_id", "<i8"), ("offset", "<i8"), ("length", "<i4")])
# Version 2 (transcribed from docs/hdf5-schema.md): steps.n_emitted, the requests' timing context.
REQUESTS_DTYPE_V2 = np.dtype(REQUESTS_DTYPE.descr + [
    ("invocation", "S40"), ("host", "S64"), ("host_cores", "<i4"), ("load_avg", "<f8"), ("threads", "<i4"),
    ("device", "S64"), ("logged_at", "<f8")])
STEPS_DTYPE_V2 = np.dtype(STEPS_DTYPE.descr[:4] + [("n_emitted", "<i4")] + STEPS_DTYPE.descr[4:])
# draft_tokens in version 2: float64 p_target / q_draft / u, and the verdict's values (docs/hdf5-schema.md).
DRAFT_TOKENS_DTYPE_V2 = np.dtype([
    ("request_id", "<i8"), ("step", "<i4"), ("node", "<i4"), ("parent", "<i4"), ("depth", "<i4"),
    ("token", "<i4"), ("p_target", "<f8"), ("q_draft", "<f8"), ("u", "<f8"), ("visited", "i1"),
    ("accepted", "i1"), ("p_test", "<f8"), ("threshold", "<f8"), ("passed", "i1")])
# Version 3 (docs/hdf5-schema.md, issue #14): requests.arrival_s; steps.k_policy, t_forward_us, batch_step,
# t_emit_s (what batched runs under load log; -1 in an unbatched run).
REQUESTS_DTYPE_V3 = np.dtype(REQUESTS_DTYPE_V2.descr + [("arrival_s", "<f8")])
STEPS_DTYPE_V3 = np.dtype(STEPS_DTYPE_V2.descr + [("k_policy", "<i4"), ("t_forward_us", "<f8"),
                                                  ("batch_step", "<i4"), ("t_emit_s", "<f8")])
# Version 4: steps.k_expected (E[emitted | k_policy] of the policy's model; -1 = none).
STEPS_DTYPE_V4 = np.dtype(STEPS_DTYPE_V3.descr + [("k_expected", "<f8")])
V3_DEFAULTS = {"arrival_s": -1.0, "k_policy": -1, "t_forward_us": -1.0, "batch_step": -1, "t_emit_s": -1.0,
               "k_expected": -1.0}
V2_DEFAULTS = {"threshold": -1.0, "invocation": "inv0", "host": "fakehost", "host_cores": 2, "load_avg": 0.5, "threads": 2,
               "device": "cpu", "logged_at": 1.7e9, **V3_DEFAULTS}
SCHEMA_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "experiments", "report",
                           "schema.json")

CATEGORIES = ["summarization", "translation", "math_reasoning"]
PROMPTS_PER_CATEGORY = 4
VOCAB = 512
EOS = 2
TARGET = "stories260K"
# Probability that a drafter's top candidate at a position is the target's token, per category.
ALPHA = {
    "ngram": {"summarization": 0.80, "translation": 0.40, "math_reasoning": 0.60},
    "synthetic": {"summarization": 0.75, "translation": 0.55, "math_reasoning": 0.65},
    "early_exit": {"summarization": 0.70, "translation": 0.60, "math_reasoning": 0.65},
}
AR_TOKEN_US = 9000.0        # one target pass with one token
VERIFY_US_PER_TOKEN = 450.0  # extra verification cost per draft token / node
DRAFT_US = {"ngram": 40.0, "synthetic": 60.0, "early_exit": 1800.0}  # per proposed token / node
TREE_PARENTS = [-1, -1, -1, 0, 0, 1, 3, 6]  # k = 8 nodes in BFS order: 3 / 3 / 1 / 1 per depth


def _table(rows, dtype):
    arr = np.zeros(len(rows), dtype=dtype)
    for i, row in enumerate(rows):
        for name in dtype.names:
            if name not in row:  # version 2 columns a test row leaves out
                derived = {"n_emitted": "n_accepted", "p_test": "p_target", "passed": "accepted"}
                v = row[derived[name]] + (1 if name == "n_emitted" else 0) if name in derived else V2_DEFAULTS[name]
            else:
                v = row[name]
            arr[i][name] = v.encode() if isinstance(v, str) else v
    return arr


def _dataset(group, name, data):
    # One-dimensional, chunked, gzip-compressed, extendable: as the runner appends them.
    group.create_dataset(name, data=data, maxshape=(None,), chunks=(max(1, min(4096, len(data) or 1)),),
                         compression="gzip", compression_opts=4)


def write_results(path, runs, root_attrs=None, schema_version=SCHEMA_VERSION):
    """runs: list of dicts {name, attrs: {str: str}, requests: [row dict], steps: [...], draft_tokens:
    [...], outputs: [(request_id, [tokens])]}. Rows are written in the order given. Version 2 to 4 files
    get the `columns` attribute the C++ writer stores (experiments/report/schema.json)."""
    v2 = schema_version >= 2
    req_dtype, steps_dtype = (REQUESTS_DTYPE_V2, STEPS_DTYPE_V2) if v2 else (REQUESTS_DTYPE, STEPS_DTYPE)
    if schema_version >= 3:
        req_dtype, steps_dtype = REQUESTS_DTYPE_V3, STEPS_DTYPE_V3 if schema_version == 3 else STEPS_DTYPE_V4
    with h5py.File(path, "w") as f:
        attrs = {
            "schema_version": np.int32(schema_version),
            "specdec_version": "fake0000",
            "config": "; written by tests/report/make_fake_results.py\n",
            "host": json.dumps({"cpu": "fake", "cores": 2, "gpu": "", "driver": "", "cuda": "", "cublas": ""}),
            "seeds": "0",
            "start_time": "2025-01-01T00:00:00Z",
        }
        if v2:
            with open(SCHEMA_JSON) as sj:
                attrs["columns"] = sj.read()
        attrs.update(root_attrs or {})
        for key, value in attrs.items():
            f.attrs[key] = value
        runs_group = f.create_group("runs")
        for run in runs:
            g = runs_group.create_group(run["name"])
            for key, value in run["attrs"].items():
                g.attrs[key] = str(value)
            _dataset(g, "requests", _table(run.get("requests", []), req_dtype))
            _dataset(g, "steps", _table(run.get("steps", []), steps_dtype))
            _dataset(g, "draft_tokens", _table(run.get("draft_tokens", []), DRAFT_TOKENS_DTYPE_V2 if v2
                                               else DRAFT_TOKENS_DTYPE))
            out_rows, tokens, offset = [], [], 0
            for rid, toks in run.get("outputs", []):
                out_rows.append({"request_id": rid, "offset": offset, "length": len(toks)})
                tokens.extend(int(t) for t in toks)
                offset += len(toks)
            _dataset(g, "outputs", _table(out_rows, OUTPUTS_DTYPE))
            _dataset(g, "output_tokens", np.asarray(tokens, dtype="<i4"))


# ---- the simulated decode loop ---------------------------------------------------------------------

def _other_token(rng, avoid):
    t = int(rng.integers(3, VOCAB))
    return t if t != avoid else (t + 1 - 3) % (VOCAB - 3) + 3


def _simulate(rng, kind, k, tree, alpha, out, temperature, start_ctx, no_match_p):
    """Decodes `out` (the tokens this run emits) in steps. Returns (steps, draft_tokens) rows without
    request_id. Draft budget per step: min(k, remaining - 1), so the run emits exactly len(out)."""
    steps, nodes_rows = [], []
    pos, step = 0, 0
    sampled = temperature > 0
    while pos < len(out):
        remaining = len(out) - pos
        if tree:
            depth_of = []
            for p in TREE_PARENTS[:k]:
                depth_of.append(1 if p < 0 else depth_of[p] + 1)
            nodes = [n for n in range(min(k, len(TREE_PARENTS))) if depth_of[n] <= remaining - 1]
            parents = [TREE_PARENTS[n] for n in nodes]
            depths = [depth_of[n] for n in nodes]
        else:
            n = min(k, remaining - 1)
            if no_match_p and rng.random() < no_match_p:
                n = 0  # e.g. the n-gram table has no match: a plain AR step
            nodes = list(range(n))
            parents = [i - 1 for i in nodes]
            depths = [i + 1 for i in nodes]
        visited = [False] * len(nodes)
        accepted = [False] * len(nodes)
        cur, acc_len = -1, 0
        while True:  # walk the accepted path: at each level scan the children of the current node
            children = [i for i in nodes if parents[i] == cur]
            hit = None
            for j, c in enumerate(children):
                visited[c] = True
                if rng.random() < alpha * (0.5 ** j):  # later siblings are worse guesses
                    hit = c
                    break
            if hit is None:
                break
            accepted[hit] = True
            cur, acc_len = hit, acc_len + 1
        rows = []
        for i in nodes:
            target_tok = out[pos + depths[i] - 1]
            on_path_parent = parents[i] == -1 or accepted[parents[i]]
            token = target_tok if accepted[i] else (_other_token(rng, target_tok) if on_path_parent
                                                    else int(rng.integers(3, VOCAB)))
            q = float(rng.uniform(0.2, 0.9)) if kind == "early_exit" else 1.0
            if sampled and visited[i]:
                p = float(rng.uniform(0.3, 1.0)) if accepted[i] else float(rng.uniform(0.0, 0.3))
                ratio = min(1.0, p / q)
                u = float(rng.uniform(0.0, ratio)) if accepted[i] else float(rng.uniform(ratio, 1.0))
            else:
                p = (1.0 if accepted[i] else 0.0) if not sampled else float(rng.uniform(0.0, 0.5))
                u = -1.0
            rows.append({"step": step, "node": i, "parent": parents[i], "depth": depths[i], "token": token,
                         "p_target": p, "q_draft": q, "u": u, "visited": int(visited[i]),
                         "accepted": int(accepted[i])})
        n_prop = len(nodes)
        t_draft = DRAFT_US[kind] * n_prop * float(rng.uniform(0.9, 1.1)) if n_prop else 0.0
        t_verify = (AR_TOKEN_US + VERIFY_US_PER_TOKEN * n_prop) * float(rng.uniform(0.95, 1.05))
        steps.append({"step": step, "n_proposed": n_prop, "n_accepted": acc_len, "tree_nodes": n_prop,
                      "max_depth": max(depths, default=0), "t_draft_us": t_draft, "t_verify_us": t_verify,
                      "context_len": start_ctx + pos, "batch_size": 1})
        nodes_rows.extend(rows)
        pos += acc_len + 1
        step += 1
    return steps, nodes_rows


def _prompts(rng):
    prompts = []
    rid = 0
    for c, cat in enumerate(CATEGORIES):
        for j in range(PROMPTS_PER_CATEGORY):
            prompts.append({"request_id": rid, "prompt_id": f"spec_bench:{100 * c + j}", "category": cat,
                            "repeat": 0, "prompt_tokens": int(rng.integers(20, 120))})
            rid += 1
    return prompts


def _ar_outputs(rng, prompts):
    outs = {}
    for p in prompts:
        n = int(rng.integers(40, 80))
        toks = [int(t) for t in rng.integers(3, VOCAB, size=n)]
        if rng.random() < 0.5:
            toks[-1] = EOS
        outs[p["request_id"]] = toks
    return outs


def _run(rng, name, attrs, prompts, outputs, kind=None, k=0, tree=False, no_match_p=0.0, kill=False):
    temperature = float(attrs["temperature"])
    run = {"name": name, "attrs": attrs, "requests": [], "steps": [], "draft_tokens": [], "outputs": []}
    order = list(rng.permutation(len(prompts)))  # requests finish in any order: pair by request_id
    if kill:
        order = order[: len(order) - 3]  # killed: 3 requests never started, one more was in flight
    for idx, i in enumerate(order):
        p = prompts[i]
        rid, out = p["request_id"], outputs[p["request_id"]]
        if kind is None:  # AR: one target pass per token
            steps = [{"step": s, "n_proposed": 0, "n_accepted": 0, "tree_nodes": 0, "max_depth": 0,
                      "t_draft_us": 0.0, "t_verify_us": AR_TOKEN_US * float(rng.uniform(0.95, 1.05)),
                      "context_len": p["prompt_tokens"] + s, "batch_size": 1} for s in range(len(out))]
            drafts = []
        else:
            alpha = ALPHA[kind][p["category"]] - (0.1 if temperature > 0 else 0.0)
            steps, drafts = _simulate(rng, kind, k, tree, alpha, out, temperature, p["prompt_tokens"],
                                      no_match_p)
        for row in steps:
            row["request_id"] = rid
        for row in drafts:
            row["request_id"] = rid
        run["draft_tokens"].extend(drafts)
        run["steps"].extend(steps)
        run["outputs"].append((rid, out))
        if kill and idx == len(order) - 1:
            break  # in flight when the process died: rows written, no requests row
        n_steps = len(steps)
        accepted = sum(s["n_accepted"] for s in steps)
        prefill = 2e-4 * p["prompt_tokens"]
        decode = sum(s["t_draft_us"] + s["t_verify_us"] for s in steps) * 1e-6 * 1.02
        run["requests"].append(dict(p, new_tokens=len(out), wall_time_s=prefill + decode, prefill_s=prefill,
                                    decode_s=decode, steps=n_steps, tau=(accepted + n_steps) / n_steps,
                                    stopped=int(out[-1] == EOS)))
    return run


def _attrs(drafter, k, temperature, rule, lossless, options=""):
    return {"drafter": drafter, "drafter_options": options, "k": str(k), "temperature": temperature,
            "top_k": "0", "top_p": "1", "rule": rule, "lossless": "1" if lossless else "0",
            "baseline": "1" if drafter == "none" else "0", "target": TARGET, "max_new_tokens": "128"}


def build_runs(seed=0, variant="full"):
    """The run list of the fake sweep. variant: full | only_ar | no_baseline | killed."""
    rng = np.random.default_rng(seed)
    prompts = _prompts(rng)
    runs = []
    for temperature in ("0", "0.7"):
        t = temperature.replace(".", "")
        greedy = temperature == "0"
        rule = "greedy" if greedy else "speculative"
        ar_out = _ar_outputs(rng, prompts)
        if variant != "no_baseline":
            runs.append(_run(rng, f"ar_t{t}", _attrs("none", 0, temperature, "none", True), prompts, ar_out))
        if variant == "only_ar":
            continue

        def outs():  # at T > 0 each run samples its own tokens; greedy lossless runs equal AR
            return ar_out if greedy else _ar_outputs(rng, prompts)

        runs.append(_run(rng, f"ngram_k2_t{t}", _attrs("ngram", 2, temperature, rule, True, "n=3"),
                         prompts, outs(), "ngram", 2, no_match_p=0.15))
        runs.append(_run(rng, f"ngram_k4_t{t}", _attrs("ngram", 4, temperature, rule, True, "n=3"),
                         prompts, outs(), "ngram", 4, no_match_p=0.15, kill=(variant == "killed" and greedy)))
        runs.append(_run(rng, f"synthetic_tree8_t{t}",
                         _attrs("synthetic", 8, temperature, rule, True, "shape=tree,branching=3-3-1-1"),
                         prompts, outs(), "synthetic", 8, tree=True))
        lossy = {rid: list(v) for rid, v in outs().items()}
        if greedy:  # the typical rule is lossy: a few outputs differ from AR (not a failure)
            for rid in (1, 5, 9):
                lossy[rid][-2] = _other_token(rng, lossy[rid][-2])
        runs.append(_run(rng, f"early_exit_typical_k4_t{t}",
                         _attrs("early_exit", 4, temperature, "typical", False, "layer=2"),
                         prompts, lossy, "early_exit", 4))
        if greedy:  # a broken lossless run: two outputs differ from AR; the report must say "no"
            bad = {rid: list(v) for rid, v in ar_out.items()}
            for rid in (3, 10):
                bad[rid][len(bad[rid]) // 2] = _other_token(rng, bad[rid][len(bad[rid]) // 2])
            runs.append(_run(rng, "ngram_k4_t0_mismatch", _attrs("ngram", 4, temperature, rule, True,
                                                                  "n=1"),
                             prompts, bad, "ngram", 4, no_match_p=0.15))
    return runs


def make_fake_results(path, seed=0, variant="full"):
    runs = build_runs(seed, variant)
    config = "".join(f"[run.{r['name']}]\n" + "".join(f"{k} = {v}\n" for k, v in r["attrs"].items())
                     for r in runs)
    write_results(path, runs, {"config": config, "seeds": str(seed)})
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", default="full", choices=["full", "only_ar", "no_baseline", "killed"])
    args = ap.parse_args(argv)
    make_fake_results(args.out, args.seed, args.variant)
    print(f"wrote {args.out} ({args.variant}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
