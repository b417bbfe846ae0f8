"""Error sweeps: ulp error of an implementation over a set of steps.

A sweep compares, at every step of a :class:`StepSet`, the values of an
implementation with the correctly rounded ``exact`` and ``keras`` orders, and
reduces them on the fly to exact statistics (a histogram of integer ulp
errors gives the mean and percentiles exactly), the worst steps, the error
bound and an envelope for plotting.  Work is cut into chunks; with the
vectorised fast path (:mod:`expdecay.fast`) evaluates them, in a process pool
on every core for expdecay's own order.

A separate, smaller pass splits the error into its causes (:func:`quantisation`):
rounding ``initial_learning_rate`` and ``decay_rate`` to the format, and the
arithmetic of the keras order itself.

One module per role: :mod:`.steps` (step sets and their parser),
:mod:`.evaluation` (the schedule, the orders, the implementation under test),
:mod:`.stats` (the exact reductions), :mod:`.unfused` and :mod:`.fused` (the
two routes of one chunk; :mod:`.fused_kernels` is the compiled pass),
:mod:`.driver` (:func:`sweep`) and :mod:`.quantisation`.
"""

from __future__ import annotations

from .driver import sweep
from .evaluation import Schedule, evaluate_order
from .quantisation import quantisation
from .stats import SweepResult
from .steps import StepSet, parse_steps

__all__ = [
    "StepSet",
    "parse_steps",
    "Schedule",
    "SweepResult",
    "sweep",
    "quantisation",
    "evaluate_order",
]
