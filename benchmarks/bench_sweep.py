"""Throughput of the precision analysis, as ratios to baselines of the same run.

* Sweep: steps per second of an exhaustive float32 sweep (exact order, keras
  order, exact order on rounded inputs, statistics), over a slice at the top
  of the int32 range, on one process and on every core; the baseline is plain
  numpy computing the keras pipeline with ``np.power`` (not correctly rounded)
  on the same steps.  The time of the whole ``[0, 2**31)`` is extrapolated, or
  measured with ``--full``.
* Misfloors: the exact enumeration over ``[0, 2**25)`` and ``[0, 2**31)``
  against a brute-force numpy scan of the same range.

    python benchmarks/bench_sweep.py [--slice 2**22] [--full] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from expdecay.analysis.misfloor import misfloors
from expdecay.analysis.sweep import Schedule, StepSet, have_fast_path, parse_steps, sweep

SCHEDULE = Schedule("0.1", 1000, "0.9999", True, "float32")


def baseline_numpy(steps: StepSet) -> float:
    """Seconds for plain numpy: the float32 keras pipeline with np.power."""
    t0 = time.perf_counter()
    I, D, r = np.float32(0.1), np.float32(1000), np.float32(0.9999)
    for c in steps.chunks(1 << 20):
        s = c.array().astype(np.float32)
        np.multiply(I, np.power(r, np.floor(s / D)))
    return time.perf_counter() - t0


def brute_misfloors(stop: int) -> tuple[int, float]:
    """Count of misfloors in [0, stop) by scanning every step, and seconds."""
    t0 = time.perf_counter()
    n = 0
    for lo in range(0, stop, 1 << 22):
        s = np.arange(lo, min(stop, lo + (1 << 22)), dtype=np.int64)
        p = np.floor(s.astype(np.float32) / np.float32(1000)).astype(np.int64)
        n += int((p != s // 1000).sum())
    return n, time.perf_counter() - t0


def timed_sweep(steps: StepSet, workers: int, bound: bool) -> float:
    t0 = time.perf_counter()
    sweep(SCHEDULE, steps, workers=workers, pow_ulps=1 if bound else None)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slice", default="2**22", help="steps timed (default 2**22)")
    ap.add_argument("--full", action="store_true", help="also sweep all of [0, 2**31)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not have_fast_path():
        raise SystemExit("expdecay.fast is required for the sweep benchmark")
    n = parse_steps(f"0:{args.slice}").stop
    steps = StepSet(2**31 - n, 2**31)
    cores = os.cpu_count() or 1
    out: dict[str, object] = {"cores": cores, "slice_steps": n}
    base = baseline_numpy(steps)
    out["numpy_baseline_steps_per_s"] = n / base
    for label, workers, bound in (("1 process, no bound", 1, False),
                                  (f"{cores} processes, no bound", cores, False),
                                  (f"{cores} processes, with bound", cores, True)):
        t = timed_sweep(steps, workers, bound)
        out[label] = {"steps_per_s": n / t, "ratio_to_numpy": base / t,
                      "extrapolated_2**31_s": t * 2**31 / n}
    if args.full:
        t = timed_sweep(StepSet(0, 2**31), cores, False)
        out["full_2**31"] = {"seconds": t, "steps_per_s": 2**31 / t}
    for stop in (2**25, 2**31):
        t0 = time.perf_counter()
        r = misfloors(1000, 0, stop, "float32")
        t_enum = time.perf_counter() - t0
        count, t_brute = brute_misfloors(stop)
        assert count == r.count, (count, r.count)
        out[f"misfloors [0, 2**{stop.bit_length() - 1})"] = {
            "count": r.count, "enumeration_s": t_enum, "brute_force_s": t_brute,
            "speedup": t_brute / t_enum}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for k, v in out.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
