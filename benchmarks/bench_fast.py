"""Benchmark of :func:`expdecay.fast.evaluate_array` against plain numpy, same run.

For each schedule, format and order, the time of ``fast.evaluate_array`` on ``n``
int64 steps spread over ``[0, 10**7]`` is divided by the time of plain numpy
``I * np.power(r, steps.astype(dt) / D)`` in the same dtype (float64 for
float64).  Also shown: the fraction of elements sent to the oracle, the
number of distinct oracle calls, the first call's time (it builds the float64
power tables, cached afterwards) and the peak memory of one call (tracemalloc,
output included).  Targets: float32 <= 2x, float64 <= 4x, fallback < 1e-4.

Usage::

    python benchmarks/bench_fast.py            # n = 10**7, best of 3
    python benchmarks/bench_fast.py --quick    # n = 10**6, best of 2 (under a minute)
    python benchmarks/bench_fast.py --n 3000000 --repeat 5 --staircase

The machine's other load shows in the ratios: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from expdecay import fast
from expdecay.floats import get_format
from expdecay.orders import ORDERS, Order

FORMATS = ("float16", "bfloat16", "float32", "float64")
TARGETS = {"float32": 2.0, "float64": 4.0}

#: (label, I, D, r): the brief's schedule (0.96 per 100000 steps: 4 e-folds
#: over 10**7 steps) and one that decays 20 e-folds over the range.
SCHEDULES = [
    ("0.96/1e5", 0.1, 100000, 0.96),
    ("20 e-folds", 0.1, 100000, math.exp(-20 * 100000 / 10**7)),
]


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` runs, in seconds."""
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def peak_mib(fn: Callable[[], Any]) -> float:
    """Peak traced allocation of one run, MiB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def numpy_baseline(I: float, D: int, r: float, steps: np.ndarray, fmt: str) -> Callable[[], Any]:
    dt = get_format(fmt).dtype.type
    with np.errstate(over="ignore"):
        i, d, rr = dt(I), dt(D), dt(r)  # D = 100000 overflows float16, as in Keras
    return lambda: i * np.power(rr, steps.astype(dt) / d)


def run(n: int, repeat: int, staircase: bool) -> list[dict[str, Any]]:
    steps = np.linspace(0, 10**7, n).astype(np.int64)
    rows = []
    for label, I, D, r in SCHEDULES:
        for fmt in FORMATS:
            base = numpy_baseline(I, D, r, steps, fmt)
            with np.errstate(all="ignore"):
                t_np = best_time(base, repeat)
            for order in ORDERS:
                stats = fast.FastStats()

                def call(stats: fast.FastStats | None = None, order: Order = order,
                         fmt: str = fmt, sched: tuple[float, int, float] = (I, D, r)) -> Any:
                    return fast.evaluate_array(*sched, steps, staircase=staircase, dtype=fmt,
                                         order=order, stats=stats)

                t0 = time.perf_counter()
                call(stats)
                first = time.perf_counter() - t0
                t_fast = best_time(call, repeat)
                rows.append(dict(
                    schedule=label, fmt=fmt, order=order, numpy=t_np, fast=t_fast,
                    ratio=t_fast / t_np, first=first, fallback=stats.oracle / stats.elements,
                    calls=stats.oracle_calls, peak=peak_mib(call)))
                print(_line(rows[-1]), flush=True)
    return rows


HEADER = (f"{'schedule':<11} {'format':<9} {'order':<6} {'numpy s':>8} {'fast s':>8} "
          f"{'ratio':>6} {'target':>6} {'first s':>8} {'fallback':>9} {'calls':>6} "
          f"{'peak MiB':>8}")


def _line(row: dict[str, Any]) -> str:
    target = TARGETS.get(row["fmt"])
    mark = "" if target is None else (f"{target:.0f}x" + ("" if row["ratio"] <= target else "!"))
    return (f"{row['schedule']:<11} {row['fmt']:<9} {row['order']:<6} {row['numpy']:8.3f} "
            f"{row['fast']:8.3f} {row['ratio']:6.2f} {mark:>6} {row['first']:8.3f} "
            f"{row['fallback']:9.2e} {row['calls']:6d} {row['peak']:8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 10**6, best of 2")
    parser.add_argument("--n", type=int, default=None, help="number of steps (default 10**7)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per timing (default 3)")
    parser.add_argument("--staircase", action="store_true", help="staircase schedules")
    args = parser.parse_args(argv)
    n = args.n or (10**6 if args.quick else 10**7)
    repeat = args.repeat or (2 if args.quick else 3)
    if n < 1 or repeat < 1:
        parser.error("--n and --repeat must be positive")
    print(f"n = {n} int64 steps in [0, 1e7], best of {repeat}, staircase={args.staircase}, "
          f"chunk = {fast.CHUNK}")
    print(HEADER)
    rows = run(n, repeat, args.staircase)
    worst = max(r["fallback"] for r in rows
                if not (r["fmt"] == "float16" and r["order"] == "keras"))
    print(f"\nworst fallback fraction (float16 keras excluded: D = 100000 rounds to inf in "
          f"float16, every element is special): {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
