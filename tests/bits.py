"""Small helpers shared by the tests (no code under test involved)."""

from __future__ import annotations

import math
import os
from fractions import Fraction

#: True in CI (`CI=true`), where a missing peer framework is a failure, never a skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pow2(k: int) -> Fraction:
    """``2**k`` as an exact rational, for any sign of ``k``."""
    return Fraction(2) ** k


def same(a: float, b: float) -> bool:
    """Bit-level equality of two Python floats (NaN == NaN, +0 != -0)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
