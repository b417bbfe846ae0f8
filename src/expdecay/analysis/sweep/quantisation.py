"""The causes of a schedule's error: rounding ``initial_learning_rate`` and
``decay_rate`` to the format, and the arithmetic of the keras order itself."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ...floats import ulp_keys
from ...inputs import to_exact
from .evaluation import Schedule, evaluate_order


@dataclass
class Quantisation:
    """Ulp contributions along the chain exact(I, r) -> exact(rnd I, r) ->
    exact(rnd I, rnd r) -> keras order (distances add up exactly)."""

    steps: np.ndarray
    from_i: np.ndarray
    from_rate: np.ndarray
    arithmetic: np.ndarray
    total: np.ndarray
    i_rel: float
    r_rel: float
    drift_per_period: float

    def at(self, i: int) -> dict[str, int]:
        return {"step": int(self.steps[i]), "from_initial_learning_rate": int(self.from_i[i]),
                "from_decay_rate": int(self.from_rate[i]), "arithmetic": int(self.arithmetic[i]),
                "total": int(self.total[i])}

    def to_json(self) -> dict[str, Any]:
        worst = int(np.argmax(np.abs(self.from_rate))) if self.steps.size else 0
        last = self.steps.size - 1
        return {
            "initial_learning_rate_relative_error": self.i_rel,
            "decay_rate_relative_error": self.r_rel,
            "decay_rate_ulps_per_period": self.drift_per_period,
            "max_abs_ulp": {
                "from_initial_learning_rate": int(np.abs(self.from_i).max(initial=0)),
                "from_decay_rate": int(np.abs(self.from_rate).max(initial=0)),
                "arithmetic": int(np.abs(self.arithmetic).max(initial=0)),
                "total": int(np.abs(self.total).max(initial=0)),
            },
            "at_worst_decay_rate_step": self.at(worst) if self.steps.size else None,
            "at_last_step": self.at(last) if self.steps.size else None,
        }


def quantisation(schedule: Schedule, steps: np.ndarray) -> Quantisation:
    """Split the keras order's error at ``steps`` into the part due to
    rounding ``initial_learning_rate``, the part due to rounding
    ``decay_rate`` (both measured on exact arithmetic) and the rest."""
    fmt = schedule.format
    If, rf = schedule.rounded()
    I, D, r = schedule.initial_learning_rate, schedule.decay_steps, schedule.decay_rate
    kw: dict[str, Any] = {"staircase": schedule.staircase, "dtype": schedule.dtype}
    chain = [
        evaluate_order(I, D, r, steps, order="exact", **kw),
        evaluate_order(If, D, r, steps, order="exact", **kw),
        evaluate_order(If, D, rf, steps, order="exact", **kw),
        evaluate_order(I, D, r, steps, order="keras", **kw),
    ]
    keys = [ulp_keys(c, fmt) for c in chain]
    bad = np.zeros(steps.shape, dtype=bool)
    for c in chain:
        bad |= np.isnan(c)
    d = [np.where(bad, 0, keys[i + 1] - keys[i]) for i in range(3)]
    i_rel = _relative(to_exact(I, "initial_learning_rate"), If)
    r_rel = _relative(to_exact(r, "decay_rate"), rf)
    # One period multiplies by r: its relative error compounds once per period.
    drift = abs(r_rel) * 2.0 ** (fmt.precision - 1)
    return Quantisation(steps, d[0], d[1], d[2], d[0] + d[1] + d[2], i_rel, r_rel, drift)


def _relative(x: Any, xf: float) -> float:
    """``(xf - x) / x`` for finite nonzero ``x`` (0.0 otherwise)."""
    if not isinstance(x, Fraction) or not math.isfinite(xf):
        return 0.0
    return float((Fraction(xf) - x) / x)
