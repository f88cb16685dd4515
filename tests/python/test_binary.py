#!/usr/bin/env python3
"""Python drafters in the specdec binary (the embedded interpreter of libspecdec_python.so): `generate
--drafter python:...` is lossless at greedy and gives the C++ ngram's tau; `run` with `type = python:...`
logs the same steps as the C++ ngram and the drafter's cost; a bad Python drafter is a one-line error
naming it.

    python3 tests/python/test_binary.py --specdec build/experiments/specdec --assets ../shared
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, os.path.join(ROOT, "experiments", "report")]

from checks import run_checks  # noqa: E402

ARGS = None
PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day,"


def specdec(*args, check=True):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "examples", "python_ngram"), HERE]),
               SPECDEC_ASSETS=ARGS.assets)
    r = subprocess.run([ARGS.specdec, *args], capture_output=True, text=True, timeout=300, env=env)
    if check:
        assert r.returncode == 0, \
            f"specdec {' '.join(args)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


def generate(*extra, check=True):
    m = os.path.join(ARGS.assets, "models", "stories260K")
    return specdec("generate", "-m", os.path.join(m, "stories260K.bin"), "-t", os.path.join(m, "tok512.bin"),
                   "-p", PROMPT, "-n", "64", "--threads", "1", *extra, check=check)


def tau_of(stderr):
    found = re.search(r"tau ([0-9.]+) tokens per target pass", stderr)
    assert found, stderr
    return float(found.group(1))


def test_generate_lossless_with_the_cpp_ngram_tau():
    ar = generate()
    py = generate("--drafter", "python:ngram_drafter.NgramDrafter", "-o", "max_n=3", "--k", "4")
    cpp = generate("--drafter", "ngram", "-o", "max_n=3", "--k", "4")
    assert py.stdout == ar.stdout, "greedy: the same text as AR"
    assert "output identical to AR" in py.stderr, py.stderr
    assert tau_of(py.stderr) == tau_of(cpp.stderr) > 1, (py.stderr, cpp.stderr)
    print(f"  tau {tau_of(py.stderr):.3f} (Python) == {tau_of(cpp.stderr):.3f} (C++)")


def test_sampled_with_q_equals_the_cpp_ngram():
    # T = 1, the speculative rule: the Python n-gram with explicit one-hot q rows is verified as the C++
    # n-gram's deterministic proposals are, so the same seed gives the same text and tau.
    for seed in ("1", "7"):
        common = ("--temperature", "1", "--seed", seed, "--k", "4", "-o", "max_n=3")
        py = generate("--drafter", "python:ngram_drafter.NgramDrafter", "-o", "q=onehot", *common)
        cpp = generate("--drafter", "ngram", *common)
        assert "rule speculative" in py.stderr and py.stdout == cpp.stdout, (py.stderr, cpp.stderr)
        assert tau_of(py.stderr) == tau_of(cpp.stderr)


def test_run_logs_the_cpp_ngram_steps():
    import specdec_report as rep
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "log.h5")
        specdec("run", os.path.join(HERE, "python_ngram.ini"), "--out", out, "--quiet")
        res = rep.load(out)
        steps = res.steps
        cpp, py = (steps[steps.run == r].sort_values(["request_id", "step"]) for r in ("ngram_k4_t0", "pyngram_k4_t0"))
        assert len(py) > 0 and py.n_proposed.sum() > 0
        assert cpp.n_proposed.tolist() == py.n_proposed.tolist() and cpp.n_accepted.tolist() == py.n_accepted.tolist()
        assert (py.t_draft_us[py.n_proposed > 0] > 0).all(), "the Python drafter's cost is logged"
        verdicts = rep.lossless_check(res).set_index("run").verdict
        assert verdicts["pyngram_k4_t0"] == "yes", verdicts
        drafts = res.draft_tokens
        for col in ("request_id", "step", "node", "token", "accepted"):
            a = drafts[drafts.run == "ngram_k4_t0"].sort_values(["request_id", "step", "node"])[col].tolist()
            b = drafts[drafts.run == "pyngram_k4_t0"].sort_values(["request_id", "step", "node"])[col].tolist()
            assert a == b, col


def test_batched_run_equals_the_cpp_ngram():
    # The batched loop (four sequences in flight per forward) calls the Python drafter as it calls the C++
    # one: the same steps per request, and the tokens of the unbatched runs.
    import specdec_report as rep
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "batched.h5")
        specdec("run", os.path.join(HERE, "python_ngram.ini"), "--out", out, "--quiet", "--run.batch_size=4")
        res = rep.load(out)
        names = list(res.runs.index)
        cpp_run = next(n for n in names if n.startswith("ngram_"))
        py_run = next(n for n in names if n.startswith("pyngram_"))
        assert int(res.runs.loc[py_run].batch_size) == 4, res.runs.loc[py_run]
        steps = res.steps
        cpp, py = (steps[steps.run == r].sort_values(["request_id", "step"]) for r in (cpp_run, py_run))
        assert len(py) > 0 and py.n_proposed.sum() > 0
        assert (py.batch_size > 1).any(), "some steps verified several sequences together"
        assert cpp.n_proposed.tolist() == py.n_proposed.tolist() and cpp.n_accepted.tolist() == py.n_accepted.tolist()
        assert rep.lossless_check(res).set_index("run").verdict[py_run] == "yes"


def test_cost_model_prices_a_python_tree_by_its_depth():
    # A Python tree that declares proposal_depth (k nodes: k - 1 deep) is priced by its depth, a chain by its
    # length. The cost table below (by construction): forward(T tokens) = 1000 + 100 T us, a draft 10 us per
    # node. At a request's first step every a_j is the prior 0.5, so E[emitted | k] = 2 - 0.5^depth(k) and the
    # choice is argmax_k E / (forward(k + 1) + draft(k)): k = 2 for the chain, k = 3 for the tree (by hand:
    # 1.75 / 1320 > 1.875 / 1430 for the chain; 1.75 / 1430 > 1.875 / 1540 > 1.5 / 1320 for the tree).
    import specdec_report as rep
    fwd = {t: 1000.0 + 100.0 * t for t in range(1, 6)}
    draft = [10.0 * k for k in range(5)]
    depth = {"pyngram": lambda k: k, "pytree": lambda k: max(k - 1, 0)}
    kinds = {"pyngram": "python:ngram_drafter.NgramDrafter", "pytree": "python:probe_drafters.DeepTreeNgram",
             "bad": "python:bad_drafters.TooDeep"}  # the cost table's rows are by drafter type
    with tempfile.TemporaryDirectory() as tmp:
        costs, ini, out = (os.path.join(tmp, f) for f in ("costs.json", "depth.ini", "depth.h5"))
        with open(costs, "w") as f:
            json.dump({"version": 1, "source": "test_binary (synthetic)",
                       "forward": {"tokens": list(fwd), "batch": [1], "context": [0, 4096],
                                   "us": [[[fwd[t], fwd[t]]] for t in fwd]},
                       "drafters": {kind: draft for kind in kinds.values()}}, f)
        with open(os.path.join(HERE, "python_ngram.ini")) as f:
            text = f.read()
        with open(ini, "w") as f:
            f.write(text + "\n[drafter.pytree]\ntype = python:probe_drafters.DeepTreeNgram\n")
        specdec("run", ini, "--out", out, "--quiet", "--run.drafters=pyngram,pytree", "--run.policy=cost_model",
                f"--run.cost_table={costs}")
        res = rep.load(out)
        steps = res.steps
        for name, d in depth.items():
            run = next(r for r in res.runs.index if r.startswith(name + "_"))
            first = steps[(steps.run == run) & (steps.step == 0)]
            assert len(first) > 0, run
            score = {k: (2 - 0.5 ** d(k)) / (fwd[k + 1] + draft[k]) for k in range(5)}
            best = max(score, key=lambda k: (score[k], -k))
            for _, s in first.iterrows():
                assert s.k_policy == best, (run, s.k_policy, best)
                assert abs(s.k_expected - (2 - 0.5 ** d(int(s.k_policy)))) < 1e-9, (run, s.k_policy, s.k_expected)
            print(f"  {run}: first steps k = {best}, k_expected {first.k_expected.iloc[0]:.4f}")
        assert rep.lossless_check(res).set_index("run").verdict.eq("yes").all()
        r = specdec("run", ini, "--out", os.path.join(tmp, "bad.h5"), "--quiet", "--run.drafters=pytree",
                    "--drafter.pytree.type=python:bad_drafters.TooDeep", "--run.policy=cost_model",
                    f"--run.cost_table={costs}", check=False)
        errors = [line for line in r.stderr.splitlines() if "error" in line]  # beside the prompt-skipping notes
        assert r.returncode != 0 and len(errors) == 1, r.stderr
        assert "python:bad_drafters.TooDeep: proposal_depth(0) must be in 0..0" in errors[0], errors


def test_bad_python_drafters_are_one_line_errors():
    cases = {"python:nosuchmodule.Drafter": "nosuchmodule", "python:bad_drafters.Missing": "no class 'Missing'",
             "python:bad_drafters.NoPropose": "no method 'propose'", "python:bad_drafters.BadIds": "node 0",
             "python:bad_drafters.WrongVocab": "vocab_size 513", "python:ngram_drafter": "MODULE.CLASS"}
    for spec, want in cases.items():
        r = generate("--drafter", spec, check=False)
        err = r.stderr.strip()
        assert r.returncode != 0 and want in err and len(err.splitlines()) == 1, (spec, r.returncode, err)
    r = generate("--drafter", "python:ngram_drafter.NgramDrafter", "-o", "max_m=2", check=False)
    assert r.returncode != 0 and "max_m" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--specdec", required=True)
    ap.add_argument("--assets", default=os.environ.get("SPECDEC_ASSETS", os.path.join(ROOT, "..", "shared")))
    ARGS = ap.parse_args()
    return run_checks("python drafters in the binary", [v for k, v in globals().items() if k.startswith("test_")])


if __name__ == "__main__":
    sys.exit(main())
