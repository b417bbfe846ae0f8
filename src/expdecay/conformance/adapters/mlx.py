"""MLX's ``mlx.optimizers.exponential_decay`` and ``step_decay``.

MLX has two schedules of this family, neither with a ``decay_steps`` that
divides the step:

* ``step_decay(init, decay_rate, step_size)``: ``init * decay_rate ** (step
  // step_size)``, the staircase schedule with an integer ``decay_steps``
  (MLX rejects ``step_size < 1``; a non-integer ``decay_steps`` is not
  applicable);
* ``exponential_decay(init, decay_rate)``: ``init * decay_rate ** step``, a
  rate per step.  The continuous schedule is expressible when ``decay_rate **
  (1 / decay_steps)`` is exactly a float (``decay_steps = 1``, or e.g.
  ``0.25`` over 2 steps is ``0.5`` per step: see
  :func:`~expdecay.conformance.adapters.mapping.per_step_rate`); otherwise it
  is not applicable, since any rounded per-step rate is another schedule.

MLX's optimizers keep the step as a ``uint64`` array and pass it to the
schedule; the adapter does the same with the group's steps (one call per
group).  With Python-number parameters and a ``uint64`` step MLX computes in
float32, so only float32 cases are applicable; negative or non-integer steps
are not a ``uint64`` count and are not applicable either.
"""

from __future__ import annotations

import numpy as np

from .base import Adapter, Params
from .mapping import integral_value, per_step_rate


class MlxAdapter(Adapter):
    """``mlx.optimizers.step_decay`` (staircase) / ``exponential_decay``."""

    vectorised = True

    def __init__(self) -> None:
        import mlx.core as mx
        import mlx.optimizers as optim

        self.mx = mx
        self.optim = optim
        self.name = "mlx"
        self.version = f"mlx {getattr(mx, '__version__', '?')}"

    def applicable(self, params: Params) -> str | None:
        if not isinstance(params.staircase, bool):
            return "MLX's schedules have no staircase argument to pass a non-bool to"
        if params.dtype != "float32":
            return "MLX computes these schedules in float32 (uint64 step, Python-float " \
                   "parameters); no dtype argument"
        I, D, r = params.as_python()
        if params.staircase:
            if integral_value(D) is None:
                return "step_decay takes an integer step_size (decay_steps)"
            return None
        if per_step_rate(r, D) is None:
            return ("exponential_decay takes a rate per step: decay_rate ** (1 / decay_steps) "
                    "is not exactly a float here")
        return None

    def step_applicable(self, params: Params, step: int | float) -> str | None:
        if not isinstance(step, int) or not 0 <= step < 2**64:
            return "MLX's step count is a uint64"
        return None

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        I, D, r = params.as_python()
        if params.staircase:
            d = integral_value(D)
            assert d is not None
            fn = self.optim.step_decay(I, r, d)
        else:
            g = per_step_rate(r, D)
            assert g is not None
            fn = self.optim.exponential_decay(I, g)
        count = self.mx.array(np.array(steps, dtype=np.uint64))
        out = fn(count)
        return np.asarray(out.astype(self.mx.float32), dtype=np.float64).ravel()
