"""Throughput of random campaigns (``expdecay check --random``), per format.

The campaign is run in-process against two fast implementations:

* ``numpy``: plain numpy, ``I * np.power(r, s / D)`` in float64 rounded to the
  format (floored exponent for staircase), one call per schedule;
* ``expdecay``: this package's reference adapter (its own fast path).

Each implementation's own time (the time inside its function, measured
around the call) is subtracted: the figure is the campaign's throughput,
in wall time and in this process's CPU time (the second is what a quiet
machine would show when other processes share the cores),
drawing, expected values (:func:`expdecay.fast.evaluate_array`), the adapter
interface, judging and recording included.  The breakdown shows the
expected values apart (computed in the campaign's second thread, so
partly hidden behind the main thread's work).  The target (issue 13) is
100,000 cases/s on 2 cores excluding the implementation, for every format
and both profiles.

Usage::

    python benchmarks/bench_campaign.py            # 10**5 cases per format and profile
    python benchmarks/bench_campaign.py --quick    # 2*10**4
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from expdecay.conformance.adapters import Adapter, Params, get_adapter
from expdecay.conformance.campaign import run_campaign
from expdecay.floats import get_format
from expdecay.orders import Order

FORMATS = ("float16", "bfloat16", "float32", "float64")


class Timed(Adapter):
    """Wraps an implementation and adds up the time spent inside it."""

    vectorised = True

    def __init__(self, name: str, fn: Any) -> None:
        self.name = name
        self.version = "bench"
        self.fn = fn
        self.seconds = 0.0
        self.cpu = 0.0

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        arr = np.array(steps)
        # The implementation runs in this thread: its CPU time is this
        # thread's (time.process_time would also count the campaign's
        # second thread, and costs far more per call).
        t, c = time.perf_counter(), time.thread_time()
        out = self.fn(params, arr)
        self.seconds += time.perf_counter() - t
        self.cpu += time.thread_time() - c
        return np.asarray(out)


def plain_numpy(params: Params, steps: np.ndarray) -> np.ndarray:
    I, D, r = (float(x) for x in params.as_python())
    with np.errstate(all="ignore"):
        p = steps.astype(np.float64) / D
        if params.staircase:
            p = np.floor(p)
        return (I * np.power(r, p)).astype(get_format(params.dtype).dtype)


def reference(order: Order) -> Any:
    inner = get_adapter("expdecay", isolated=False, order=order)
    return lambda params, steps: inner._evaluate(params, list(steps.tolist()))


def measure(name: str, fn: Any, dtype: str, n: int, profile: str) -> dict[str, float]:
    a = Timed(name, fn)
    t, c = time.perf_counter(), time.process_time()
    camp = run_campaign(a, n, 1, profiles=(profile,), dtypes=(dtype,), max_failures=50)
    total, cpu = time.perf_counter() - t, time.process_time() - c
    st = camp.expected_stats
    return {"cases": n, "total": total, "impl": a.seconds, "expected": camp.expected_seconds,
            "deferred": st.deferred / max(st.elements, 1),
            "oracle": st.oracle / max(st.elements, 1),
            "impl_cpu": a.cpu, "cpu": cpu,
            "rate": n / (total - a.seconds), "cpu_rate": n / (cpu - a.cpu),
            "failed": camp.counts[profile]["fail"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 20_000 if args.quick else 100_000
    warm = Timed("warm", plain_numpy)
    for d in FORMATS:  # compile the kernels outside the measurement
        run_campaign(warm, 20000, 99, profiles=("exact", "keras"), dtypes=(d,))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'implementation':<10} {'format':<9} {'profile':<7} {'cases':>7} {'total s':>8} "
          f"{'impl s':>7} {'expected s':>10} {'cases/s excl. impl':>19} {'(CPU time)':>11} "
          f"{'deferred':>9} {'oracle':>8}")
    for dtype in FORMATS:
        cases = n
        for name, profile, fn in (("numpy", "exact", plain_numpy),
                                  ("numpy", "keras", plain_numpy),
                                  ("expdecay", "exact", reference("exact")),
                                  ("expdecay", "keras", reference("keras"))):
            m = measure(name, fn, dtype, cases, profile)
            print(f"{name:<10} {dtype:<9} {profile:<7} {cases:>7} {m['total']:>8.2f} "
                  f"{m['impl']:>7.2f} {m['expected']:>10.2f} {m['rate']:>19,.0f} "
                  f"{m['cpu_rate']:>11,.0f} {m['deferred']:>9.2%} {m['oracle']:>8.3%}",
                  flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
