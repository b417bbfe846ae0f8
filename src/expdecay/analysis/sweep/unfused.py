"""The unfused route of a sweep, one chunk per task: the three orders by
:func:`expdecay.fast.evaluate_array`, the implementation, numpy reductions,
and the derived error bound."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .evaluation import Schedule, evaluate_order, implementation_values
from .stats import Envelope, ErrorStats, ulp_errors
from .steps import StepSet


@dataclass(frozen=True)
class Task:
    schedule: Schedule
    steps: StepSet
    implementation: str
    options: tuple[tuple[str, Any], ...]
    envelope: Envelope
    top: int
    pow_ulps: float | None  # None: no bound


def error_bound_at(
    sch: Schedule, steps: np.ndarray, pow_ulps: float
) -> tuple[np.ndarray | None, str | None]:
    """The derived bound at ``steps`` (ulps), or None and why not.  A failure
    of the bound is reported, never allowed to stop the measurement."""
    try:
        from ...bounds import error_bound
    except ImportError:
        return None, None
    try:
        return np.asarray(error_bound(
            sch.initial_learning_rate, sch.decay_steps, sch.decay_rate, steps,
            staircase=sch.staircase, dtype=sch.dtype, pow_ulps=pow_ulps), dtype=np.float64), None
    except Exception as e:  # noqa: BLE001 - reported in the notes
        return None, f"error bound failed: {type(e).__name__}: {e}"


def run_task(
    task: Task,
) -> tuple[ErrorStats, ErrorStats, ErrorStats, Envelope, float, int, str | None]:
    sch = task.schedule
    steps = task.steps.array()
    fmt = sch.format
    kw: dict[str, Any] = {"staircase": sch.staircase, "dtype": sch.dtype}
    I, D, r = sch.initial_learning_rate, sch.decay_steps, sch.decay_rate
    exact = evaluate_order(I, D, r, steps, order="exact", **kw)
    keras = evaluate_order(I, D, r, steps, order="keras", **kw)
    If, rf = sch.rounded()
    exact_q = evaluate_order(If, D, rf, steps, order="exact", **kw)
    impl = implementation_values(sch, steps, task.implementation, dict(task.options), keras)
    stats = []
    errs = []
    for ref in (exact, keras, exact_q):
        err, valid = ulp_errors(impl, ref, fmt)
        st = ErrorStats()
        st.add(err, steps, valid, task.top)
        stats.append(st)
        errs.append(err)
    bound, why = (None, None) if task.pow_ulps is None else \
        error_bound_at(sch, steps, task.pow_ulps)
    env = task.envelope.copy()
    env.add(steps, errs[0], errs[2], bound)
    err_e = errs[0]
    bmax, viol = -math.inf, 0
    if bound is not None and bound.size:
        bmax = float(np.nanmax(bound))
        viol = int((np.abs(err_e) > bound).sum())
    return stats[0], stats[1], stats[2], env, bmax, viol, why
