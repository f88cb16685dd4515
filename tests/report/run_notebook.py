#!/usr/bin/env python3
"""Executes notebooks/analysis.ipynb headless (nbclient): once as it runs by default (a tiny stories260K
experiment through the Python module specdec, then its analysis), then on fake results files with
SPECDEC_RESULTS set; fails if any cell raises, if the committed notebook holds outputs, if the plots did not
render, or if the experiment's log is not what the module's run should have written. The kernel is this
interpreter's ipykernel (a private kernelspec), so it sees the same packages; --python-path goes first on
its PYTHONPATH (the build's staged module, <build>/python).

    python3 tests/report/run_notebook.py [--scratch DIR] [--notebook PATH] [--python-path DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, os.path.join(ROOT, "tests", "python"), os.path.join(ROOT, "experiments", "report")]

try:
    import nbformat
    from nbclient import NotebookClient

    import make_fake_results as fake
    from checks import run_checks
except ImportError as e:
    print(f"run_notebook: missing Python package ({e}); install experiments/report/requirements.txt into "
          f"the interpreter running this test ({sys.executable})")
    print("notebook: 0 passed, 1 failed")
    sys.exit(1)


def private_kernelspec(scratch):
    """A python3 kernelspec running this interpreter, first on JUPYTER_PATH; Jupyter's runtime and
    IPython's profile folders inside the scratch folder (nothing written to $HOME)."""
    kdir = os.path.join(scratch, "jupyter", "kernels", "python3")
    os.makedirs(kdir, exist_ok=True)
    with open(os.path.join(kdir, "kernel.json"), "w") as f:
        json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                   "display_name": "Python 3 (specdec)", "language": "python"}, f)
    os.environ["JUPYTER_PATH"] = os.path.join(scratch, "jupyter")
    os.environ["JUPYTER_RUNTIME_DIR"] = os.path.join(scratch, "jupyter", "runtime")
    os.environ["IPYTHONDIR"] = os.path.join(scratch, "ipython")
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel 6 debugger chatter
    os.environ.pop("MPLBACKEND", None)  # the kernel picks the inline backend


def check_cleared(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path}: cells {dirty} hold outputs; clear them before committing"


def execute(path, results, out_path):
    """Runs the notebook; results: the log it analyses (SPECDEC_RESULTS), None = its own experiment."""
    nb = nbformat.read(path, as_version=4)
    if results:
        os.environ["SPECDEC_RESULTS"] = results
    else:
        os.environ.pop("SPECDEC_RESULTS", None)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, out_path)  # the executed copy, for a look after a failure
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    return images, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratch", help="folder for generated files (default: a temporary folder)")
    ap.add_argument("--notebook", default=os.path.join(ROOT, "notebooks", "analysis.ipynb"))
    ap.add_argument("--python-path", help="first on the kernel's PYTHONPATH (the build's module: <build>/python)")
    args = ap.parse_args()
    if args.python_path:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [args.python_path, os.environ.get("PYTHONPATH")]))
    tmp = None if args.scratch else tempfile.TemporaryDirectory()
    scratch = os.path.abspath(args.scratch or tmp.name)
    os.makedirs(scratch, exist_ok=True)
    private_kernelspec(scratch)

    def committed_notebook_is_cleared():
        check_cleared(args.notebook)

    def tiny_experiment_from_python():
        images, text = execute(args.notebook, None, os.path.join(scratch, "analysis_experiment.ipynb"))
        found = re.search(r"results: +(\S+\.h5)", text)
        assert found, "the notebook names the log its experiment wrote"
        try:
            import specdec_report as rep  # the loader the notebook used (experiments/report)
            res = rep.load(found.group(1))
            assert set(res.runs.index) == {"ar_t0", "ngram_k2_t0", "ngram_k4_t0", "pyngram_k2_t0", "pyngram_k4_t0",
                                           "early_exit_k2_t0", "early_exit_k4_t0"}, list(res.runs.index)
            assert (rep.lossless_check(res).verdict == "yes").all()
            steps = res.steps.sort_values(["run", "request_id", "step"])
            for k in (2, 4):
                cpp, py = (steps[steps.run == f"{name}_k{k}_t0"].n_accepted.tolist() for name in ("ngram", "pyngram"))
                assert cpp == py and sum(cpp) > 0, f"the Python n-gram accepts what the C++ one does at k = {k}"
        finally:
            shutil.rmtree(os.path.dirname(found.group(1)), ignore_errors=True)
        assert images >= 5, f"{images} images rendered, expected the 3 report plots + 2 extra"
        assert "Metric definitions" in text

    def full_sweep():
        results = fake.make_fake_results(os.path.join(scratch, "nb_full.h5"), seed=0, variant="full")
        images, text = execute(args.notebook, results, os.path.join(scratch, "analysis_full.ipynb"))
        assert images >= 5, f"{images} images rendered, expected the 3 report plots + 2 extra"
        assert "ngram_k4_t0_mismatch: lossless: no (2 mismatching requests)" in text
        assert "Metric definitions" in text

    def only_ar_file():
        results = fake.make_fake_results(os.path.join(scratch, "nb_only_ar.h5"), seed=1, variant="only_ar")
        images, text = execute(args.notebook, results, os.path.join(scratch, "analysis_only_ar.ipynb"))
        assert images >= 3 and "only AR baseline" in text

    status = run_checks("notebook", [committed_notebook_is_cleared, tiny_experiment_from_python, full_sweep,
                                     only_ar_file])
    if tmp:
        tmp.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
