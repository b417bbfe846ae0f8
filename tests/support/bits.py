"""Small helpers shared by the tests (no code under test involved)."""

from __future__ import annotations

import importlib.util
import math
import os
from fractions import Fraction

#: The environment variable that turns a missing peer framework into a failure
#: (``.ci/run`` sets it): tests and doctests that need a framework skip
#: without it, and fail with it.
REQUIRE_VARIABLE = "EXPDECAY_REQUIRE_FRAMEWORKS"


def frameworks_required() -> bool:
    """Whether a missing peer framework is a failure here, never a skip:
    ``EXPDECAY_REQUIRE_FRAMEWORKS=1`` (or ``true``/``yes``), or ``CI=true``."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes")
               for name in (REQUIRE_VARIABLE, "CI"))


#: :func:`frameworks_required` when the tests started (the name the test
#: modules read).
IN_CI = frameworks_required()


def missing_peers(*modules: str) -> list[str]:
    """Those of ``modules`` that are not installed."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require_peers(*modules: str, needed_by: str = "") -> None:
    """Skip the calling test module (or test) when one of ``modules`` is not
    installed, with the missing ones (and ``needed_by``, what needs them) as
    the reason; or fail it where :func:`frameworks_required`, where a missing
    peer is never a skip."""
    import pytest

    missing = missing_peers(*modules)
    if not missing:
        return
    names = ", ".join(missing)
    what = f"{names} {'is' if len(missing) == 1 else 'are'} not installed" + (
        f" (needed by {needed_by})" if needed_by else "")
    if frameworks_required():
        raise ImportError(f"{what}; {REQUIRE_VARIABLE} or CI is set: a missing framework is a "
                          "failure (pip install -e '.[test,peers]')")
    pytest.skip(what, allow_module_level=True)


def pow2(k: int) -> Fraction:
    """``2**k`` as an exact rational, for any sign of ``k``."""
    return Fraction(2) ** k


def same(a: float, b: float) -> bool:
    """Bit-level equality of two Python floats (NaN == NaN, +0 != -0)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
