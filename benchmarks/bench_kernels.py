"""The compiled kernels against plain numpy, ratios in the same run.

For every format x order x staircase mode, the time of ``fast.evaluate_array`` on
``n`` int64 steps spread over ``[0, 10**7]`` is divided by the time of plain
numpy ``I * np.power(r, steps.astype(dt) / D)`` in the same dtype (the target
is 1.0 or less), one thread, best of ``repeat``.  Also reported:

* the fraction of elements sent to the oracle (target 1e-6 or less);
* random schedules: all four inputs drawn per element, elements per second
  through the broadcasting path and the oracle fallback, for every format x
  order x staircase mode (target 2 million per second per core, fallback
  1e-6 or less);
* first-call compile time in a fresh process with an empty cache, and the
  load time of the cached code in a second process;
* the sweep rate of ``expdecay analyze`` (three correctly rounded evaluations
  per step, float32, all usable cores) on ``--sweep-steps`` steps, and the
  time it implies for all 2**31 int32 steps (target 60 s on 2 cores).

Usage::

    python benchmarks/bench_kernels.py            # n = 10**7, best of 3
    python benchmarks/bench_kernels.py --quick    # n = 10**6, best of 2

The machine's other load shows in the ratios: run it on a quiet machine, or
several times and report the range.  ``EXPDECAY_BLOCK_KERNELS=0`` measures
the per-element kernels instead of the block kernels (float32 and float64
with int64 steps), for a before/after comparison; run with
``NUMBA_NUM_THREADS=1`` for one thread.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from expdecay import fast
from expdecay.fast import dispatch
from expdecay.floats import get_format
from expdecay.orders import ORDERS, Order

FORMATS = ("float16", "bfloat16", "float32", "float64")
SCHEDULE = (0.1, 100000, 0.96)  # 0.96 per 100000 steps, as in bench_fast.py


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def ratios(n: int, repeat: int, formats: tuple[str, ...] = FORMATS) -> list[dict[str, Any]]:
    steps = np.linspace(0, 10**7, n).astype(np.int64)
    I, D, r = SCHEDULE
    rows = []
    for fmt in formats:
        dt = get_format(fmt).dtype.type
        with np.errstate(over="ignore"):
            i, d, rr = dt(I), dt(D), dt(r)

        def base(i: Any = i, d: Any = d, rr: Any = rr, dt: Any = dt) -> Any:
            with np.errstate(all="ignore"):
                return i * np.power(rr, steps.astype(dt) / d)

        for order in ORDERS:
            for staircase in (False, True):
                def call(stats: fast.FastStats | None = None, order: Order = order,
                         fmt: str = fmt, staircase: bool = staircase) -> Any:
                    return fast.evaluate_array(I, D, r, steps, staircase=staircase, dtype=fmt,
                                         order=order, stats=stats)

                stats = fast.FastStats()
                call(stats)
                # Interleave the baseline and the kernels: both see the same load.
                t_np = best_time(base, repeat)
                t_fast = best_time(call, repeat)
                t_np = min(t_np, best_time(base, 1))
                rows.append(dict(fmt=fmt, order=order, staircase=staircase, numpy=t_np,
                                 fast=t_fast, ratio=t_fast / t_np,
                                 fallback=stats.oracle / max(stats.elements, 1)))
                r_ = rows[-1]
                print(f"{fmt:<9} {order:<6} {'stair' if staircase else 'cont':<6} "
                      f"{t_np:8.3f} {t_fast:8.3f} {r_['ratio']:6.2f} {r_['fallback']:9.2e}",
                      flush=True)
    return rows


def random_workload(n: int, seed: int = 1) -> tuple[np.ndarray, ...]:
    """All four inputs drawn per element: I in [1e-4, 1], D integer in
    [1, 1e5), r in [0.5, 0.9999], int64 steps in [0, 1e7)."""
    rng = np.random.default_rng(seed)
    I = rng.uniform(1e-4, 1.0, n)
    D = rng.integers(1, 100000, n)
    r = rng.uniform(0.5, 0.9999, n)
    s = rng.integers(0, 10**7, n)
    return I, D, r, s


def random_schedules(n: int, formats: tuple[str, ...] = FORMATS
                     ) -> list[tuple[str, Order, bool, float, float]]:
    """Elements per second through the broadcasting path (one call on ``n``
    elements, after a warm-up call that loads the compiled kernel) and the
    fraction of elements sent to the oracle, per format x order x staircase."""
    I, D, r, s = random_workload(n)
    k = min(n, 8192)
    rows = []
    for fmt in formats:
        for order in ORDERS:
            for staircase in (False, True):
                fast.evaluate_array(I[:k], D[:k], r[:k], s[:k], dtype=fmt, order=order,
                              staircase=staircase)
                stats = fast.FastStats()
                t = time.perf_counter()
                fast.evaluate_array(I, D, r, s, dtype=fmt, order=order, staircase=staircase,
                              stats=stats)
                rate = n / (time.perf_counter() - t)
                rows.append((fmt, order, staircase, rate, stats.oracle / max(stats.elements, 1)))
                print(f"random schedules {fmt:<9} {order:<6} {'stair' if staircase else 'cont':<6}"
                      f" {rate:13,.0f} elements/s  fallback {rows[-1][4]:.2e}", flush=True)
    return rows


FIRST_CALL = """
import time, numpy as np
t = time.perf_counter()
from expdecay import fast
fast.evaluate_array(0.1, 1000, 0.96, np.arange(5000), dtype="{fmt}", order="exact")
print(time.perf_counter() - t)
"""


def compile_times(fmt: str) -> tuple[float, float]:
    """Seconds of the first kernel call in a fresh process with an empty
    cache, then with the cache that process left."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", FIRST_CALL.format(fmt=fmt)], env=env,
                                  capture_output=True, text=True, check=True)
            out.append(float(done.stdout.strip()))
        return out[0], out[1]


def sweep_rate(nsteps: int) -> float:
    from expdecay.analysis.sweep import Schedule, StepSet, sweep

    sch = Schedule(0.1, 100000, 0.96, False, "float32")
    res = sweep(sch, StepSet(0, nsteps), pow_ulps=None, max_points=nsteps)
    return nsteps / res.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 10**6, best of 2")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--random", type=int, default=2 * 10**6,
                        help="elements of the random-schedule run (default 2 million)")
    parser.add_argument("--sweep-steps", type=int, default=1 << 25)
    parser.add_argument("--skip", default="", help="comma list of: ratios,random,compile,sweep")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help="comma list of the formats of the ratio table (default: all four)")
    args = parser.parse_args(argv)
    n = args.n or (10**6 if args.quick else 10**7)
    repeat = args.repeat or (2 if args.quick else 3)
    skip = set(filter(None, args.skip.split(",")))
    print(f"kernels: {'numba' if dispatch.kernel_module() is not None else 'absent (numpy path)'}; "
          f"n = {n}, best of {repeat}")
    if "ratios" not in skip:
        print(f"{'format':<9} {'order':<6} {'mode':<6} {'numpy s':>8} {'fast s':>8} "
              f"{'ratio':>6} {'fallback':>9}")
        rows = ratios(n, repeat, tuple(filter(None, args.formats.split(","))))
        regular = [r for r in rows if (r["fmt"], r["order"]) != ("float16", "keras")] or rows
        print(f"ratio range {min(r['ratio'] for r in rows):.2f}-"
              f"{max(r['ratio'] for r in rows):.2f}; worst fallback (float16 keras excluded: "
              f"D = 100000 is inf in float16) {max(r['fallback'] for r in regular):.2e}")
    if "random" not in skip:
        rows_r = random_schedules(args.random, tuple(filter(None, args.formats.split(","))))
        print(f"random schedules (one core): {min(r[3] for r in rows_r):,.0f}-"
              f"{max(r[3] for r in rows_r):,.0f} elements/s; worst fallback "
              f"{max(r[4] for r in rows_r):.2e}")
    if "compile" not in skip:
        for fmt in ("float32", "float64"):
            first, cached = compile_times(fmt)
            print(f"first call {fmt}: {first:.2f} s with an empty cache, {cached:.2f} s cached")
    if "sweep" not in skip:
        rate = sweep_rate(args.sweep_steps)
        print(f"sweep float32, 3 evaluations per step, all cores: {rate:,.0f} steps/s; "
              f"2**31 steps would take {2**31 / rate:,.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
