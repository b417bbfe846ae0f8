"""The ``expdecay`` adapter: this package's own vectorised fast path.

``order`` chooses which of the two orders it computes (the conformance runner
passes the profile's order).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import __version__
from ...floats import get_format
from ...orders import Order, check_order
from ...schedule import ExponentialDecay
from .base import Adapter, Params


def _split_steps(steps: list[int | float]) -> tuple[list[int], list[int]]:
    """Indices of the integer steps and of the float steps."""
    ints = [i for i, s in enumerate(steps) if isinstance(s, int)]
    floats = [i for i, s in enumerate(steps) if not isinstance(s, int)]
    return ints, floats


class ReferenceAdapter(Adapter):
    """``expdecay.ExponentialDecay`` (``__call__`` or ``.exact``)."""

    vectorised = True

    def __init__(self, order: Order = "exact") -> None:
        self.order: Order = check_order(order)
        self.name = "expdecay" if order == "exact" else "expdecay[keras]"
        self.version = __version__

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        fmt = get_format(params.dtype)
        I, D, r = params.initial_learning_rate, params.decay_steps, params.decay_rate
        staircase: Any = params.staircase  # as given: a non-bool must be refused
        sched = ExponentialDecay(I, D, r, staircase, dtype=fmt.name)
        call: Any = sched.exact if self.order == "exact" else sched
        out = np.empty(len(steps))
        ints, floats = _split_steps(steps)
        if ints:
            out[ints] = np.asarray(call(np.array([steps[i] for i in ints], dtype=np.int64)),
                                   dtype=np.float64)
        if floats:
            out[floats] = np.asarray(call(np.array([steps[i] for i in floats],
                                                   dtype=np.float64)), dtype=np.float64)
        return out
