"""Oracle throughput as a ratio to a plain mpmath loop measured in the same run.

The baseline is ``I * mpmath.power(r, s / D)`` at 50 significant digits with
mpf inputs: fast, but not correctly rounded.  The oracle is
``expdecay.oracle.evaluate`` on Python floats, rigorous (interval enclosures in
a Ziv loop, exact cases by rationals).  Also reported: how many evaluations
needed a second Ziv iteration and the largest working precision reached.

    python benchmarks/bench_oracle.py [--n 3000] [--rounds 3] [--json]

Each configuration alternates baseline and oracle runs and compares the best
of each, timed in CPU time of this process (``time.process_time``), so load
from other processes weighs on both sides of the ratio alike and time spent
waiting for a core is not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from typing import Any

import mpmath

from expdecay import oracle
from expdecay.floats import FORMATS
from expdecay.orders import ORDERS, Order


def _cases(
    n: int, seed: int = 1, one_schedule: bool = False
) -> list[tuple[float, int, float, int]]:
    """Typical schedules: I in [1e-4, 1], D in [10, 1e5], r in [0.5, 0.999],
    steps up to 20 e-folds of decay; with ``one_schedule`` the first schedule
    at ``n`` steps (how vector generation and sweeps use the oracle)."""
    rng = random.Random(seed)
    out: list[tuple[float, int, float, int]] = []
    for _ in range(n):
        if one_schedule and out:
            I, D, r, _ = out[0]
            out.append((I, D, r, rng.randint(0, int(20 / -math.log(r) * D))))
            continue
        r = rng.uniform(0.5, 0.999)
        D = rng.randint(10, 100000)
        max_step = int(20 / -math.log(r) * D)
        out.append((10 ** rng.uniform(-4, 0), D, r, rng.randint(0, max_step)))
    return out


def _mp_cases(cases: list[tuple[float, int, float, int]]) -> list[tuple[Any, ...]]:
    return [(mpmath.mpf(I), mpmath.mpf(D), mpmath.mpf(r), mpmath.mpf(s)) for I, D, r, s in cases]


def _plain(mp_cases: list[tuple[Any, ...]]) -> float:
    with mpmath.workdps(50):
        t = time.process_time()
        for I, D, r, s in mp_cases:
            I * mpmath.power(r, s / D)
        return time.process_time() - t


def _oracle(
    cases: list[tuple[float, int, float, int]], fmt: str, order: Order, staircase: bool
) -> float:
    t = time.process_time()
    for I, D, r, s in cases:
        oracle.evaluate(I, D, r, s, staircase=staircase, dtype=fmt, order=order)
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="cases per configuration")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating baseline/oracle rounds per configuration (best of each)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for mode in ("random schedules", "one schedule"):
        cases = _cases(args.n, one_schedule=mode == "one schedule")
        rows += _measure(cases, mode, args.rounds)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'cases':<17} {'dtype':<9} {'order':<6} {'stair':<5} {'us/eval':>8} {'base us':>8} "
        f"{'ratio':>6} {'retries':>7} {'exact':>6} {'maxprec':>7}"
    )
    for r in rows:
        print(
            f"{r['mode']:<17} {r['dtype']:<9} {r['order']:<6} {r['staircase']!s:<5} "
            f"{r['us_per_eval']:>8.1f} {r['baseline_us']:>8.1f} {r['ratio']:>6.2f} "
            f"{r['ziv_retries']:>7} {r['exact_cases']:>6} {r['max_prec']:>7}"
        )


def _measure(
    cases: list[tuple[float, int, float, int]], mode: str, rounds: int
) -> list[dict[str, Any]]:
    """Each configuration alternates baseline and oracle runs, ``rounds``
    times, and compares the best of each: on a shared machine the load then
    weighs on both sides of the ratio alike."""
    mp_cases = _mp_cases(cases)
    rows = []
    for fmt in FORMATS:
        for order in ORDERS:
            for staircase in (False, True):
                oracle.STATS = oracle.ZivStats()
                base, t = math.inf, math.inf
                for _ in range(rounds):
                    base = min(base, _plain(mp_cases))
                    t = min(t, _oracle(cases, fmt, order, staircase))
                rows.append(
                    {
                        "mode": mode,
                        "baseline_us": 1e6 * base / len(cases),
                        "dtype": fmt,
                        "order": order,
                        "staircase": staircase,
                        "us_per_eval": 1e6 * t / len(cases),
                        "ratio": t / base,
                        "ziv_retries": oracle.STATS.retries,
                        "exact_cases": oracle.STATS.exact,
                        "max_prec": oracle.STATS.max_prec,
                    }
                )
    return rows


if __name__ == "__main__":
    main()
