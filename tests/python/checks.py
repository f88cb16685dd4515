"""The harness of the Python tests (tests/python): run each check, print ok / FAIL with the traceback,
a summary line "<name>: P passed, F failed", exit 1 on any failure."""
from __future__ import annotations

import sys
import time
import traceback


def run_checks(name, checks):
    passed = failed = 0
    for fn in checks:
        t0 = time.monotonic()
        try:
            fn()
        except Exception:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.2f} s)", flush=True)
    print(f"{name}: {passed} passed, {failed} failed")
    return 1 if failed else 0


def one_line_error(fn, *args, **kwargs):
    """The message fn raised (asserting it raised and that the message is one line)."""
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any exception type; the caller checks which
        msg = str(e)
        assert "\n" not in msg, f"a one-line error, got {msg!r}"
        return e, msg
    raise AssertionError(f"{getattr(fn, '__name__', fn)} raised nothing")
