#!/usr/bin/env python3
"""The report on real runner output: runs `specdec run` on the stories260K smoke config (greedy and
T = 0.7, one prompt per category), then checks that the report reads the file the C++ writer made and
that its numbers agree with the runner's own rows (tau per request, AR tau = 1, greedy losslessness).

    python3 tests/report/run_on_runner.py --specdec build/experiments/specdec [--scratch DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "experiments", "report"))

try:
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np
    import specdec_report as rep
except ImportError as e:
    print(f"run_on_runner: missing Python package ({e}); install experiments/report/requirements.txt")
    print("runner: 0 passed, 1 failed")
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--specdec", required=True, help="the specdec CLI")
    ap.add_argument("--config", default=os.path.join(ROOT, "experiments", "configs", "stories_smoke.ini"))
    ap.add_argument("--scratch")
    args = ap.parse_args()
    tmp = None if args.scratch else tempfile.TemporaryDirectory()
    scratch = os.path.abspath(args.scratch or tmp.name)
    os.makedirs(scratch, exist_ok=True)
    out = os.path.join(scratch, "smoke.h5")
    if os.path.exists(out):
        os.remove(out)
    failed = 0
    try:
        cmd = [args.specdec, "run", args.config, "--out", out, "--quiet", "--run.temperatures=0,0.7",
               "--prompts.per_category=1", "--target.threads=1"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        res = rep.load(out)
        summary = rep.summarize(res, n_boot=500)
        text = rep.format_report(summary)
        print(text)
        pr = summary.per_run.set_index("run")
        assert len(pr) >= 2 and pr.baseline.any(), "the runner wrote an AR run and speculative runs"
        for run, row in pr.iterrows():
            assert row.n_requests > 0, run
            if row.baseline:
                assert abs(row.tau - 1.0) < 1e-12, (run, row.tau)
            else:
                assert row.baseline_run in pr.index and np.isfinite(row.speedup), (run, row.baseline_run)
                assert row.speedup_lo <= row.speedup <= row.speedup_hi, run
            # the report's tau from the steps table = the runner's per-request tau, steps-weighted
            req = res.requests[res.requests.run == run]
            tau_req = float((req.tau * req.steps).sum() / req.steps.sum())
            assert abs(row.tau - tau_req) < 1e-9, (run, row.tau, tau_req)
            assert int(row.steps) == int(req.steps.sum()), run
        ll = summary.lossless[summary.lossless.checked]
        assert len(ll) and (ll.verdict == "yes").all(), ll[["run", "verdict"]].to_string()
        vc = summary.verdicts  # every verdict the runner logged follows from its own row
        assert len(vc) and (vc.n_tested > 0).any() and (vc.n_disagree == 0).all(), vc.to_string()
        for p in rep.write_plots(summary, os.path.join(scratch, "plots"), dpi=60):
            assert os.path.getsize(p) > 1000, p
    except Exception:  # noqa: BLE001
        failed = 1
        traceback.print_exc(file=sys.stdout)
    print(f"runner: {1 - failed} passed, {failed} failed")
    if tmp:
        tmp.cleanup()
    return failed


if __name__ == "__main__":
    sys.exit(main())
