#!/usr/bin/env python3
"""Executes notebooks/analysis.ipynb headless (nbclient) on fake results files, with SPECDEC_RESULTS set;
fails if any cell raises, if the committed notebook holds outputs, or if the plots did not render. The
kernel is this interpreter's ipykernel (a private kernelspec), so it sees the same packages.

    python3 tests/report/run_notebook.py [--scratch DIR] [--notebook PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    import make_fake_results as fake
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
    nb = nbformat.read(path, as_version=4)
    os.environ["SPECDEC_RESULTS"] = results
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
    args = ap.parse_args()
    tmp = None if args.scratch else tempfile.TemporaryDirectory()
    scratch = os.path.abspath(args.scratch or tmp.name)
    os.makedirs(scratch, exist_ok=True)
    private_kernelspec(scratch)

    def committed_notebook_is_cleared():
        check_cleared(args.notebook)

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

    passed = failed = 0
    for fn in (committed_notebook_is_cleared, full_sweep, only_ar_file):
        t0 = time.monotonic()
        try:
            fn()
        except CellExecutionError as e:
            failed += 1
            print(f"FAIL {fn.__name__}: a cell raised\n{e}", flush=True)
        except Exception:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
    print(f"notebook: {passed} passed, {failed} failed")
    if tmp:
        tmp.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
