"""Helpers shared by the adapters of frameworks whose parameters differ from
the schedule's: an integer ``decay_steps``, a rate per step (``gamma``), and a
learning rate kept as a Python float.

* :func:`integral_value`: a ``decay_steps`` or a step that is an integer;
* :func:`per_step_rate`: the rate per step ``decay_rate ** (1 / decay_steps)``
  when it is exactly a float (so that ``gamma ** s`` is the schedule
  ``decay_rate ** (s / decay_steps)`` as a real function), else ``None``;
* :func:`cast_to_format`: a float64 learning rate rounded to the case's
  format, as an optimizer does when it applies the rate to parameters of that
  dtype (round to nearest even, overflow to inf).

>>> per_step_rate(0.25, 2), per_step_rate(0.96, 1000), per_step_rate(2.0 ** -30, 3)
(0.5, None, 0.0009765625)
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ...floats import Format, round_rational
from ...introot import exact_root

__all__ = ["integral_value", "per_step_rate", "cast_to_format", "cast_all"]


def integral_value(x: int | float) -> int | None:
    """``x`` as a Python int when it is an integer (an int, or a finite
    integral float), else ``None``."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        return int(x)
    return None


def per_step_rate(r: int | float, D: int | float) -> int | float | None:
    """``r ** (1 / D)`` when ``D`` is a positive integer and the root is a
    float exactly, else None (``D = 1`` gives ``r`` itself; 0, 1, inf and NaN
    are their own roots).  A negative rate has no root that keeps the
    schedule's non-integer powers (NaN by the spec), so None."""
    d = integral_value(D)
    if d is None or d < 1:
        return None
    if d == 1:
        return r
    if isinstance(r, float) and (math.isnan(r) or r == math.inf):
        return r
    if r < 0 or (r == 0 and math.copysign(1.0, r) < 0):
        return None  # (-0.0) ** (s / D) keeps the sign for odd s / D; no rate per step does
    if r == 0 or r == 1:
        return float(r)
    q = Fraction(r)
    num, den = q.numerator, q.denominator  # den is a power of two
    a, b = exact_root(num, d), exact_root(den, d)
    if a is None or b is None:
        return None
    root = Fraction(a, b)
    g = float(root)
    return g if Fraction(g) == root else None


def cast_to_format(lr: float, fmt: Format) -> float:
    """A float64 value rounded once to ``fmt`` (exact for float64)."""
    if fmt.name == "float64" or not math.isfinite(lr) or lr == 0:
        return float(lr)
    return round_rational(Fraction(lr), fmt)


def cast_all(values: list[float], fmt: Format) -> np.ndarray:
    """:func:`cast_to_format` of each value, as a float64 array."""
    return np.array([cast_to_format(v, fmt) for v in values], dtype=np.float64)
