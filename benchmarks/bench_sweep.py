"""Throughput of the precision analysis, as ratios to baselines of the same run.

* Sweep: steps per second of an exhaustive float32 sweep (exact order, keras
  order, exact order on rounded inputs, statistics) over slices of the int32
  range where the values are normal, subnormal and zero, for a staircase and
  a continuous schedule: the fused route (one compiled pass per chunk) on one
  and on every core, and the unfused route (``expdecay.fast.evaluate_array`` and
  numpy reductions) on one core.  The baseline is plain numpy computing the
  keras pipeline with ``np.power`` (not correctly rounded) on the same steps.
  Wall and CPU time are both reported (the CPU time of the process, all
  threads), since a shared machine stretches wall time.
* First call: the seconds the first fused chunk of a fresh process takes
  (numba compiling the kernel, or loading it from its cache).
* ``--full``: all of ``[0, 2**31)`` on every core, staircase and continuous.
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
from expdecay.analysis.sweep import Schedule, StepSet, parse_steps, sweep
from expdecay.analysis.sweep import fused as fused_route
from expdecay.analysis.sweep.fused import fused_available

SCHEDULES = {"staircase": Schedule("0.1", 1000, "0.9999", True, "float32"),
             "continuous": Schedule("0.1", 1000, "0.9999", False, "float32")}

#: Slices starting here: normal values, subnormal values, zeros (0.1 * 0.9999**(s/1000)).
REGIONS = {"normal": 2**24, "subnormal": 900_000_000, "zero": 2**31}


def baseline_numpy(steps: StepSet, staircase: bool) -> float:
    """Seconds for plain numpy: the float32 keras pipeline with np.power."""
    t0 = time.perf_counter()
    I, D, r = np.float32(0.1), np.float32(1000), np.float32(0.9999)
    for c in steps.chunks(1 << 20):
        s = c.array().astype(np.float32) / D
        np.multiply(I, np.power(r, np.floor(s) if staircase else s))
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


def timed_sweep(sch: Schedule, steps: StepSet, workers: int, fused: bool) -> dict[str, float]:
    """Wall and CPU seconds of one sweep without the bound."""
    os.environ["EXPDECAY_FUSED_SWEEP"] = "1" if fused else "0"
    fused_route.SETUPS.clear()
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        res = sweep(sch, steps, workers=workers, pow_ulps=None)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        del os.environ["EXPDECAY_FUSED_SWEEP"]
        fused_route.SETUPS.clear()
    assert res.evaluator == ("fused" if fused else "fast"), res.evaluator
    return {"wall_s": wall, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slice", default="2**22", help="steps timed per region (default 2**22)")
    ap.add_argument("--full", action="store_true", help="also sweep all of [0, 2**31)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not fused_available(SCHEDULES["staircase"]):
        raise SystemExit("the fused sweep needs numba (the compiled kernels)")
    n = parse_steps(f"0:{args.slice}").stop
    cores = os.cpu_count() or 1
    out: dict[str, object] = {"cores": cores, "slice_steps": n}
    t0 = time.perf_counter()
    sweep(SCHEDULES["staircase"], StepSet(0, 1), workers=1, pow_ulps=None)
    out["first_call_s"] = time.perf_counter() - t0
    for name, sch in SCHEDULES.items():
        for region, lo in REGIONS.items():
            lo = min(lo, 2**31 - n)
            steps = StepSet(lo, lo + n)
            base = baseline_numpy(steps, sch.staircase)
            row: dict[str, object] = {"numpy_baseline_steps_per_s": n / base}
            for label, workers, fused in (("fused, 1 thread", 1, True),
                                          (f"fused, {cores} threads", cores, True),
                                          ("unfused, 1 process", 1, False)):
                t = timed_sweep(sch, steps, workers, fused)
                row[label] = {**t, "steps_per_cpu_s": n / t["cpu_s"],
                              "ratio_to_numpy": base / t["wall_s"]}
            out[f"{name} {region} [{lo}, {lo + n})"] = row
    if args.full:
        for name, sch in SCHEDULES.items():
            t = timed_sweep(sch, StepSet(0, 2**31), cores, True)
            out[f"full 2**31 {name}"] = {**t, "steps_per_s": 2**31 / t["wall_s"],
                                         "steps_per_cpu_s": 2**31 / t["cpu_s"]}
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
