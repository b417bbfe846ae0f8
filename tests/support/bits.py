"""Small helpers shared by the tests (no code under test involved)."""

from __future__ import annotations

import importlib.util
import math
import os
from fractions import Fraction

#: True in CI (`CI=true`), where a missing peer framework is a failure, never a skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_peers(*modules: str) -> None:
    """Skip the calling test module when one of ``modules`` is not installed,
    or fail it in CI (:data:`IN_CI`), where a missing peer is never a skip."""
    import pytest

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    if IN_CI:
        raise ImportError(f"the peers extra is not installed: {missing}")
    pytest.skip(f"peers not installed: {missing}", allow_module_level=True)


def pow2(k: int) -> Fraction:
    """``2**k`` as an exact rational, for any sign of ``k``."""
    return Fraction(2) ** k


def same(a: float, b: float) -> bool:
    """Bit-level equality of two Python floats (NaN == NaN, +0 != -0)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
