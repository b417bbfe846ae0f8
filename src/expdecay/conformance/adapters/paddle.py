"""PaddlePaddle's learning-rate schedulers (``paddle.optimizer.lr``).

Paddle's scheduler classes take a rate per epoch (``gamma``) rather than a
``decay_rate`` over ``decay_steps`` epochs.  The adapter maps the schedule
onto them only where the mapping is exact:

* staircase, integer ``decay_steps``: ``StepDecay(learning_rate=I,
  step_size=D, gamma=r)``, ``I * r ** (epoch // D)``;
* continuous: ``ExponentialDecay(learning_rate=I, gamma=g)``, ``I * g **
  epoch``, with ``g = r ** (1 / D)`` when that root is exactly a float
  (``D = 1``: ``g = r``; see
  :func:`~expdecay.conformance.adapters.mapping.per_step_rate`).

Anything else (a non-integer ``decay_steps`` with staircase, a root that is
not a float, a non-bool ``staircase``) is not applicable, with the reason.
Paddle's own checks stay in force: ``ExponentialDecay`` asserts ``0 < gamma <
1`` and ``StepDecay`` requires ``gamma < 1`` and an ``int`` ``step_size > 0``,
so valid schedules with other rates are answered with an error (``raised``).

``api="legacy"`` checks the function ``paddle.optimizer.lr.exponential_decay(
learning_rate, decay_steps, decay_rate, staircase)`` instead, which takes the
schedule's own parameters.  In dynamic-graph mode (Paddle's default) it
returns ``ExponentialDecay(learning_rate, decay_rate)``: ``decay_steps`` and
``staircase`` are dropped, so epoch 1000 of ``0.1 * 0.5 ** (s / 1000)``
gives ``0.1 * 0.5 ** 1000`` (9.3e-303) instead of 0.05.  The runner proves
this as ``decay-steps-ignored`` (and ``staircase-ignored`` where a
fractional epoch shows it).

Every scheduler is evaluated in closed form, ``scheduler.step(epoch)`` then
``scheduler.last_lr`` (a Python float), one call per step; the epoch is the
step as given (an int, or a float for a non-integer step: Paddle computes
with it).  The float64 rate is cast to the case's format, as an optimizer
does when it applies it to parameters of that dtype.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .base import Adapter, Params
from .mapping import cast_all, integral_value, per_step_rate

APIS = ("classes", "legacy")


class PaddleAdapter(Adapter):
    """``StepDecay`` / ``ExponentialDecay``, or the legacy ``exponential_decay``."""

    def __init__(self, api: str = "classes") -> None:
        if api not in APIS:
            raise ValueError(f"api must be 'classes' or 'legacy'; got {api!r}")
        os.environ.setdefault("GLOG_minloglevel", "3")
        import paddle
        import paddle.optimizer.lr as lr

        self.lr = lr
        self.api = api
        self.name = "paddle" + ("" if api == "classes" else "[api=legacy]")
        self.version = f"paddlepaddle {getattr(paddle, '__version__', '?')}"

    def applicable(self, params: Params) -> str | None:
        if self.api == "legacy":
            return None  # it takes every argument of the schedule
        if not isinstance(params.staircase, bool):
            return "Paddle's scheduler classes have no staircase argument to pass a non-bool to"
        I, D, r = params.as_python()
        if params.staircase:
            if integral_value(D) is None:
                return "StepDecay takes an integer step_size (decay_steps)"
            return None
        if per_step_rate(r, D) is None:
            return ("ExponentialDecay takes a rate per epoch: decay_rate ** (1 / decay_steps) "
                    "is not exactly a float here")
        return None

    def _scheduler(self, params: Params) -> object:
        I, D, r = params.as_python()
        if self.api == "legacy":
            staircase: Any = params.staircase  # as given: Paddle drops it anyway
            return self.lr.exponential_decay(
                I, D, r, staircase=staircase)
        if params.staircase:
            d = integral_value(D)
            assert d is not None  # see applicable()
            return self.lr.StepDecay(I, step_size=d, gamma=r)
        g = per_step_rate(r, D)
        assert g is not None
        return self.lr.ExponentialDecay(I, gamma=g)

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        sched = self._scheduler(params)
        out = []
        for s in steps:
            sched.step(s)  # type: ignore[attr-defined]
            out.append(float(sched.last_lr))  # type: ignore[attr-defined]
        return cast_all(out, params.format)
