#!/usr/bin/env python3
"""The Python module specdec (python/) on stories260K: the model's config, tokenize / detokenize, forward
(numpy arrays without copies), greedy AR == the llama2.c golden text, speculative decoding with a C++ and a
Python drafter (lossless at greedy; the Python n-gram proposes what the C++ one proposes, step by step; at
T = 1 the speculative rule with the drafter's q keeps the target's distribution), experiments from Python and
the report's loader, and every error a one-line specdec.Error.

    PYTHONPATH=build/python python3 tests/python/test_module.py --assets ../shared
"""
from __future__ import annotations

import argparse
import math
import os
import struct
import sys
import tempfile
import threading
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, os.path.join(ROOT, "examples", "python_ngram")]

import specdec  # noqa: E402
from checks import one_line_error, run_checks  # noqa: E402
from ngram_drafter import NgramDrafter  # noqa: E402
from probe_drafters import FeatureProbe, SmoothedDrafter, TreeNgram  # noqa: E402

ARGS = None
PROMPTS = ["Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day,",
           "Tom and Sam were friends. Tom had a red ball and Sam had a blue ball. Tom said to Sam,",
           "The cat sat on the mat. The cat was happy. The dog sat on the mat. The dog"]


def stories(name):
    return os.path.join(ARGS.assets, "models", "stories260K", name)


_model = None


def model():
    global _model
    if _model is None:
        _model = specdec.Model(stories("stories260K.bin"), tokenizer=stories("tok512.bin"))
    return _model


def test_config_from_the_header():
    # llama2.c's header, read here independently of specdec: v1 files open with the magic "ak42" and a
    # version; then 7 int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative when the
    # classifier is unshared, v0), max_seq_len.
    with open(stories("stories260K.bin"), "rb") as f:
        head = f.read(36)
    params = head[8:36] if head[:4] == b"ak42"[::-1] else head[:28]
    dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", params)
    c = model().config
    assert (c["dim"], c["hidden_dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"], c["vocab_size"],
            c["max_seq_len"]) == (dim, hidden, layers, heads, kv_heads, abs(vocab), seq), c
    assert model().vocab_size == abs(vocab) and c["bos"] == 1


def test_tokenize_round_trip():
    m = model()
    for text in PROMPTS:
        ids = m.tokenize(text)
        assert ids.dtype == np.int32 and ids[0] == m.config["bos"], ids[:3]
        assert m.detokenize(ids) == text, (m.detokenize(ids), text)
        assert m.tokenize(text, bos=False).tolist() == ids[1:].tolist()


def test_forward_arrays_without_copies():
    m = model()
    ids = m.tokenize(PROMPTS[0])
    f = m.forward(ids, hidden=True, layers=[0, 2])
    T, V, H = len(ids), m.vocab_size, m.config["dim"]
    assert f.logits.shape == (T, V) and f.hidden.shape == (T, H) and f.layer_outputs.shape == (T, 2, H)
    for a in (f.logits, f.hidden, f.layer_outputs):
        assert a.dtype == np.float32 and a.flags.c_contiguous
        assert not a.flags.owndata and a.base is not None, "a view of the C++ result (no copy)"
    # The last row predicts the first greedy token; a prefix's rows equal the whole's (batch-invariant forward).
    r = m.generate(ids, max_new_tokens=1)
    assert int(np.argmax(f.logits[-1])) == int(r.tokens[0])
    g = m.forward(ids[:5])
    assert np.array_equal(g.logits, f.logits[:5])
    assert m.forward(ids).hidden is None


def test_greedy_ar_reproduces_the_golden_text():
    with open(stories("golden_greedy_bos_200.txt"), encoding="utf-8") as f:
        golden = f.read()
    r = model().generate([1], max_new_tokens=200, stop_at_eos=False)
    assert len(r.tokens) == 200 and r.text + "\n" == golden, r.text[:200]
    assert len(r.steps) == 200 and (r.steps["n_proposed"] == 0).all() and r.tau == 1.0


def test_cpp_and_python_ngram_lossless_and_step_for_step_equal():
    m = model()
    for text in PROMPTS:
        ar = m.generate(text, max_new_tokens=64)
        cpp = m.generate(text, max_new_tokens=64, drafter="ngram", options={"max_n": 3}, k=4)
        by_class = m.generate(text, max_new_tokens=64, drafter=NgramDrafter, options={"max_n": 3}, k=4)
        by_name = m.generate(text, max_new_tokens=64, drafter="python:ngram_drafter.NgramDrafter",
                             options={"max_n": 3}, k=4)
        env = types.SimpleNamespace(vocab_size=m.vocab_size)
        by_object = m.generate(text, max_new_tokens=64, drafter=NgramDrafter(env, max_n="3", q="onehot"), k=4)
        oracle = m.generate(text, max_new_tokens=64, drafter="oracle", k=4)  # made after an AR run: its reference
        assert oracle.tokens.tolist() == ar.tokens.tolist() and 0 < oracle.accepted == oracle.drafted
        assert cpp.drafted > 0 and cpp.accepted > 0, "the prompts repeat themselves: ngram proposes"
        for r in (cpp, by_class, by_name, by_object):
            assert r.tokens.tolist() == ar.tokens.tolist(), "greedy speculative == AR, token for token"
            assert int(r.steps["n_emitted"].sum()) == len(r.tokens)
            assert math.isclose(r.tau, len(r.tokens) / len(r.steps))
        for r in (by_class, by_name, by_object):
            for col in ("n_proposed", "n_accepted", "n_emitted"):
                assert r.steps[col].tolist() == cpp.steps[col].tolist(), col
            for col in ("step", "node", "parent", "token", "accepted"):
                assert r.draft_tokens[col].tolist() == cpp.draft_tokens[col].tolist(), col
            assert r.tau == cpp.tau and r.acc_rate == cpp.acc_rate
            assert (r.steps["t_draft_us"][r.steps["n_proposed"] > 0] > 0).all(), "the drafter's time is logged"
        tree = m.generate(text, max_new_tokens=64, drafter=TreeNgram, k=4)
        assert tree.tokens.tolist() == ar.tokens.tolist(), "a Python tree drafter: greedy == AR"
        roots = tree.draft_tokens[tree.draft_tokens["parent"] == -1]
        assert len(roots) > len(np.unique(roots["step"])), "steps with two root candidates (a tree) were verified"
        print(f"  tau {cpp.tau:.3f} (C++ ngram) == {by_class.tau:.3f} (Python), {len(cpp.steps)} steps; "
              f"tree {tree.tau:.3f}")


def test_python_drafter_gets_the_target_features():
    # Row i of begin's features is the state after prompt token i (every token but the last); each accept's
    # row j the state that predicts the j-th accepted token: exactly the forward's own rows (batch-invariant).
    m = model()
    ids = m.tokenize(PROMPTS[1])
    env = types.SimpleNamespace(hidden_size=m.config["dim"])
    d = FeatureProbe(env)
    r = m.generate(ids, max_new_tokens=6, drafter=d, k=2)
    full = m.forward(np.concatenate([ids, r.tokens[:-1]]), hidden=True, layers=[1])
    want = np.concatenate([full.hidden, full.layer_outputs[:, 0, :]], axis=1)  # FeatureSpec's row layout
    (call, prompt, f), accepts = d.got[0], d.got[1:]
    assert call == "begin" and prompt.tolist() == ids.tolist() and f.shape == (len(ids) - 1, d.width)
    assert np.array_equal(f, want[:len(ids) - 1])
    assert [c for c, _, _ in accepts] == ["accept"] * len(r.tokens)  # nothing proposed: one token per step
    for i, (_, tokens, f) in enumerate(accepts):
        assert tokens.tolist() == [r.tokens[i]] and f.shape == (1, d.width)
        assert np.array_equal(f[0], want[len(ids) - 1 + i]), i


def test_gil_released_during_forwards_and_decodes():
    # With a switch interval of minutes, the interpreter never takes the GIL from a thread: another thread
    # runs Python only while this one gives the GIL up itself (a C++ call releasing it, a sleep). A spinning
    # thread that yields with sleep(0) then counts only during the calls that release it: none would move
    # the count if they held it.
    m = model()
    long_prompt = np.concatenate([m.tokenize(p) for p in PROMPTS * 3])
    box, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            box[0] += 1
            time.sleep(0)  # releases the GIL (and takes it back)

    calls = {"forward": lambda: m.forward(long_prompt, hidden=True),
             "generate": lambda: m.generate(PROMPTS[0], max_new_tokens=200, drafter="ngram", k=4)}
    old = sys.getswitchinterval()
    sys.setswitchinterval(300)
    spinner = threading.Thread(target=spin)
    try:
        spinner.start()
        time.sleep(0.05)
        for name, call in calls.items():
            moved = 0
            for _ in range(20):  # the spinner must get a core during one call at least
                before = box[0]
                call()
                moved += box[0] - before
                if moved:
                    break
            assert moved > 0, f"{name}: no other Python thread ran during 20 calls (the GIL was held)"
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(old)


def test_q_supplied_at_t1_equals_the_cpp_ngram():
    # The same proposals with explicit one-hot q rows through the speculative rule at T = 1: the same draws
    # decide the same verdicts as for the C++ n-gram's deterministic proposals, seed by seed.
    m = model()
    for seed in range(10):
        cpp = m.generate(PROMPTS[1], 48, temperature=1.0, seed=seed, drafter="ngram", k=4)
        py = m.generate(PROMPTS[1], 48, temperature=1.0, seed=seed, drafter=NgramDrafter, options={"q": "onehot"}, k=4)
        assert py.tokens.tolist() == cpp.tokens.tolist()
        assert py.steps["n_accepted"].tolist() == cpp.steps["n_accepted"].tolist()
        assert (py.draft_tokens["q_draft"][py.draft_tokens["visited"]] == 1.0).all()


def chi2_critical(df, z=3.09):
    """The chi-square quantile at 1 - 0.001 (z: the normal's), by Wilson-Hilferty."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_sampled_python_drafter_keeps_the_target_distribution():
    # At T = 1 the first emitted token of a speculative decode must be distributed as the target's p,
    # whatever the drafter proposes, when the rule gets the drafter's real q.
    m = model()
    ids = m.tokenize(PROMPTS[0])
    p = np.exp(m.forward(ids).logits[-1].astype(np.float64))
    p /= p.sum()
    fav = int(np.argmax(p))
    n, counts, drafted, accepted = 800, np.zeros(m.vocab_size), 0, 0
    for seed in range(n):
        env = types.SimpleNamespace(vocab_size=m.vocab_size, drafter_seed=seed, request=0)
        d = SmoothedDrafter(env, favourite=str(fav), weight="0.6")
        r = m.generate(ids, max_new_tokens=3, temperature=1.0, seed=seed, drafter=d, k=2)
        counts[r.tokens[0]] += 1
        drafted, accepted = drafted + r.drafted, accepted + r.accepted
        # The verifier tested the drafter's tokens with the q it returned (the row over its sum), node by node.
        nodes = r.draft_tokens
        assert nodes["token"].tolist() == [t for t, _ in d.proposed]
        want = np.array([q for _, q in d.proposed]) / d.q.astype(np.float64).sum()
        assert nodes["visited"][0] and np.allclose(nodes["q_draft"][nodes["visited"]], want[nodes["visited"]],
                                                   rtol=1e-6, atol=0)
    assert 0 < accepted < drafted, (accepted, drafted)  # both the accept and the residual paths ran
    expected = n * p
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    df = len(obs) - 1
    print(f"  chi2 {chi2:.1f} over {df} df (critical {chi2_critical(df):.1f} at 0.001); acc {accepted}/{drafted}")
    assert chi2 < chi2_critical(df)


def test_experiment_and_the_reports_loader():
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SPECDEC_ASSETS"] = ARGS.assets
        out = specdec.run(os.path.join(HERE, "python_ngram.ini"), ["prompts.per_category=1", "run.max_new_tokens=24"],
                          out=os.path.join(tmp, "log.h5"))
        res = specdec.open_log(out)
        assert res is not None and type(res).__module__ == "specdec_report"
        summary = specdec.report.summarize(res, n_boot=100)
        pr = summary.per_run.set_index("run")
        assert set(pr.index) == {"ar_t0", "ngram_k4_t0", "pyngram_k4_t0"}, list(pr.index)
        assert pr.loc["ngram_k4_t0", "tau"] == pr.loc["pyngram_k4_t0", "tau"] > 1
        lossless = summary.lossless.set_index("run")
        assert lossless.loc["pyngram_k4_t0", "verdict"] == "yes" and lossless.loc["pyngram_k4_t0", "n_compared"] > 0
        steps = res.steps
        cpp, py = (steps[steps.run == r].sort_values(["request_id", "step"]) for r in ("ngram_k4_t0", "pyngram_k4_t0"))
        assert cpp.n_accepted.tolist() == py.n_accepted.tolist() and cpp.n_proposed.tolist() == py.n_proposed.tolist()
        assert (py.t_draft_us[py.n_proposed > 0] > 0).all(), "the Python drafter's cost is logged"


def test_errors_are_one_line():
    m = model()
    e, msg = one_line_error(specdec.Model, "/nonexistent/model.bin")
    assert isinstance(e, specdec.Error) and "/nonexistent/model.bin" in msg, msg
    e, msg = one_line_error(m.generate, "x", 4, drafter="nosuch")
    assert isinstance(e, specdec.Error) and "'nosuch'" in msg, msg
    e, msg = one_line_error(m.generate, "x", 4, drafter="ngram", options={"max_m": 3})
    assert "max_m" in msg, msg
    e, msg = one_line_error(m.generate, "x", 4, drafter="python:nosuchmodule.Drafter")
    assert isinstance(e, specdec.Error) and "nosuchmodule" in msg, msg
    cases = {"NoPropose": "'propose'", "BadIds": "node 0", "BadQShape": f", {m.vocab_size - 1})",
             "NotATuple": "tuple", "WrongVocab": f"vocab_size {m.vocab_size + 1}", "Raises": "KeyError",
             "Missing": "has no class 'Missing'"}
    for cls, want in cases.items():
        e, msg = one_line_error(m.generate, PROMPTS[0], 8, drafter=f"python:bad_drafters.{cls}")
        assert isinstance(e, specdec.Error) and want in msg and "bad_drafters" in msg, (cls, msg)
    e, msg = one_line_error(specdec.run, os.path.join(HERE, "python_ngram.ini"), ["run.nosuchkey=1"])
    assert "nosuchkey" in msg, msg


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", default=os.environ.get("SPECDEC_ASSETS", os.path.join(ROOT, "..", "shared")))
    ARGS = ap.parse_args()
    specdec.set_threads(1)
    tests = [v for k, v in globals().items() if k.startswith("test_")]
    return run_checks("python module", tests)


if __name__ == "__main__":
    sys.exit(main())
