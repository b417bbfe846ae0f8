"""expdecay inside other projects' test suites.

* :func:`assert_conforms` runs the conformance vectors against an
  implementation (a Python callable, or any name ``expdecay check --impl``
  accepts, ``cmd:`` programs included) and fails with a readable table.
* :func:`assert_ulp_close` compares values in ulps of any of the four
  formats, bfloat16 included; NaN matches NaN, the sign of zero counts.
* :mod:`expdecay.testing.strategies`: Hypothesis strategies for schedules and
  for the steps where implementations go wrong.
* :mod:`expdecay.testing.plugin`: a pytest plugin (``pytest --expdecay-impl
  ...``) that turns every vector into a pytest item.

Names load on first use (PEP 562), so importing this package costs nothing
until one is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the submodule that defines it
_PUBLIC = {
    "assert_conforms": "conformance",
    "ConformanceSummary": "conformance",
    "assert_ulp_close": "ulp",
}

__all__ = ["assert_conforms", "ConformanceSummary", "assert_ulp_close"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .conformance import ConformanceSummary, assert_conforms
    from .ulp import assert_ulp_close


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        if name == "strategies":  # the submodule, on attribute access
            return importlib.import_module(".strategies", __name__)
        raise AttributeError(f"module 'expdecay.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
