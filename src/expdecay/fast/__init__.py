"""Vectorised, bit-reproducible evaluation of the schedule over arrays of steps.

:func:`evaluate_array` returns, for every element of an array of steps, exactly
the value :func:`expdecay.oracle.evaluate_exact` gives for that step (same bits;
NaN is the canonical NaN), at a cost close to plain numpy.  What it promises,
which path computes what, and the error analysis of every path are in
spec/kernels.md (normative).  The modules of this package, one role each:

- :mod:`~expdecay.fast.constants`: error bounds and the enclosed constants;
- :mod:`~expdecay.fast.numpy_paths`: the approximations and rounding tests in numpy;
- :mod:`~expdecay.fast.plan`: what a schedule needs before its first step;
- :mod:`~expdecay.fast.fallback`: the oracle for the elements nothing else decides;
- :mod:`~expdecay.fast.dispatch`: which path takes which elements of one schedule;
- :mod:`~expdecay.fast.broadcast`: a schedule per element;
- :mod:`~expdecay.fast.kernels`: the compiled kernels (numba), imported only
  for arrays of at least :data:`KERNEL_MIN_ELEMENTS` elements.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..orders import Order
from .broadcast import evaluate_broadcast, is_array_input
from .dispatch import (
    CHUNK,
    GATHER_MIN_ELEMENTS,
    KERNEL_MIN_ELEMENTS,
    TABLE_MIN_ELEMENTS,
    evaluate_schedule,
)
from .numpy_paths import round_int_to_format, round_to_format
from .plan import FastStats

__all__ = ["FastStats", "evaluate_array", "CHUNK", "round_to_format", "round_int_to_format",
           "KERNEL_MIN_ELEMENTS", "TABLE_MIN_ELEMENTS", "GATHER_MIN_ELEMENTS"]


def evaluate_array(
    initial_learning_rate: Any,
    decay_steps: Any,
    decay_rate: Any,
    steps: Any,
    *,
    staircase: bool = False,
    dtype: Any = "float32",
    order: Order = "keras",
    stats: FastStats | None = None,
) -> np.ndarray:
    """The schedule at every element of ``steps``, bit-identical to the oracle.

    ``steps`` is an array (any shape) or anything ``numpy.asarray`` accepts, of
    integers or floats; each element is taken exactly.  Returns an array of the
    format's dtype and ``steps``' shape.  ``stats``, if given, is updated.

    The schedule parameters are scalars or numpy arrays (spec/kernels.md,
    section 2, lists what is accepted): the four inputs are broadcast together
    and every element is its own schedule; the result has the broadcast shape.
    Each distinct schedule is evaluated once over its elements.

    Unlike :func:`expdecay.evaluate` (one step, the oracle, ``order="exact"``
    and Keras's dtype rule by default), this takes arrays and defaults to the
    keras order in float32, what a training loop computes.

    >>> evaluate_array(0.1, 100000, 0.96, [0, 10**6], dtype="float64", order="exact")
    array([0.1       , 0.06648326])
    >>> evaluate_array(np.array([0.1, 0.2]), 1000, np.array([[0.5], [0.25]]), 1000,
    ...                dtype="float64", order="exact")
    array([[0.05 , 0.1  ],
           [0.025, 0.05 ]])
    """
    if any(is_array_input(x) for x in (initial_learning_rate, decay_steps, decay_rate)):
        return evaluate_broadcast(initial_learning_rate, decay_steps, decay_rate, steps,
                                  staircase=staircase, dtype=dtype, order=order, stats=stats)
    return evaluate_schedule(initial_learning_rate, decay_steps, decay_rate, steps,
                             staircase=staircase, dtype=dtype, order=order, stats=stats)
