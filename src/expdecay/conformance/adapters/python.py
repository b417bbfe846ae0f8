"""``python:module:function``: any Python callable.

The callable is called as ``fn(initial_learning_rate, decay_steps,
decay_rate, steps, staircase=..., dtype=...)`` with the numbers as Python
numbers (ints stay ints), ``steps`` an int64 array (float64 when a step is
not an integer) and ``dtype`` the format's name; it returns an array (or
scalar) of outputs.  Raising an exception marks the steps failed;
returning ``NotImplemented`` marks the case not applicable.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import (
    Adapter,
    ImplementationLookupError,
    NotApplicableError,
    Params,
    describe_exception,
)
from .keras import step_array


def load_callable(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` (attribute path allowed) -> the callable.

    Raises :class:`ImplementationLookupError` (one line) whatever importing
    the module does: a missing module, an exception, even ``sys.exit()`` at
    import (``KeyboardInterrupt`` alone passes through).
    """
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ImplementationLookupError(
            f"python implementation must be 'module:function'; got {spec!r}")
    try:
        obj: Any = importlib.import_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - user code: SystemExit included
        raise ImplementationLookupError(
            f"python:{spec}: cannot import {module!r} ({describe_exception(e)})") from None
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - a module __getattr__ may raise anything
        raise ImplementationLookupError(
            f"python:{spec}: {module!r} has no callable {attr!r} ({describe_exception(e)})"
        ) from None
    if not callable(obj):
        raise ImplementationLookupError(f"python:{spec}: {module!r} has no callable {attr!r}")
    return obj  # type: ignore[no-any-return]


class PythonAdapter(Adapter):
    """A Python callable, vectorised over the steps."""

    vectorised = True

    def __init__(self, target: str) -> None:
        self.fn = load_callable(target)
        self.name = f"python:{target}"
        mod = sys.modules.get(target.partition(":")[0])
        self.version = str(getattr(mod, "__version__", "unversioned"))

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        I, D, r = params.as_python()
        out = self.fn(I, D, r, step_array(steps), staircase=params.staircase, dtype=params.dtype)
        if out is NotImplemented:
            raise NotApplicableError(f"{self.name} returned NotImplemented")
        return np.asarray(out)
