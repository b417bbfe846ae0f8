"""The adapter interface: what every checked implementation looks like.

An adapter wraps one implementation of the schedule (our own fast path, a
framework, a Python callable or an external program) behind four members:

* ``name`` and ``version`` (strings, for reports);
* ``applicable(params)``: ``None`` when the implementation can express the
  schedule described by :class:`Params`, else the reason it cannot;
* ``evaluate(params, steps)``: the implementation's outputs at an array of
  steps, as a numpy array (float64 holding the outputs exactly, or an array
  of the format's own dtype).

``evaluate_outcome`` is the detailed form used by the conformance runner: it
never raises for a single step, and reports per step an error message or a
reason why the step is not applicable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from ...errors import ExpdecayError
from ...floats import Format, get_format
from ...inputs import to_exact

__all__ = [
    "Params",
    "Adapter",
    "Outcome",
    "AdapterError",
    "NotApplicableError",
    "ImplementationLookupError",
    "python_number",
    "step_value",
]


class AdapterError(ExpdecayError, RuntimeError):
    """An implementation failed (raised, crashed, timed out, or is missing)."""


class NotApplicableError(AdapterError):
    """The implementation cannot express the requested case."""


class ImplementationLookupError(ExpdecayError, ValueError):
    """The name does not resolve to an implementation that can be loaded.

    An unknown name, or a ``python:`` target whose module cannot be imported
    (missing, or raising or exiting at import) or has no such callable.  It
    is a bad argument, hence a ``ValueError``: the CLI prints its one-line
    message and exits with status 2, for every subcommand.
    """


#: Types a staircase value may have in :class:`Params` (bool, or, for an
#: ``invalid`` test, a string, an integer or None, passed on as given).
STAIRCASE_TYPES = (bool, int, str, type(None))


@dataclass(frozen=True)
class Params:
    """The schedule's configuration, as a test group of the vectors gives it.

    Numbers are Python ints/floats or exact strings (decimal integers,
    decimal or hex-float literals, ``"nan"``, ``"inf"``, ``"-inf"``);
    ``dtype`` names a format (``float16``, ``bfloat16``, ``float32``,
    ``float64``).  ``staircase`` is normally a bool; the ``invalid`` tests of
    the vectors also carry other JSON scalars (the string ``"False"``, an
    integer, ``None``), which are passed to the implementation as given so
    that it can be seen to refuse them.
    """

    initial_learning_rate: int | float | str
    decay_steps: int | float | str
    decay_rate: int | float | str
    staircase: bool | int | str | None = False
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if not isinstance(self.staircase, STAIRCASE_TYPES) or isinstance(
                self.staircase, float):
            raise TypeError("staircase must be a bool (or, for an invalid test, a str, int "
                            f"or None); got {type(self.staircase).__name__}")
        if isinstance(self.staircase, str) and len(self.staircase) > 100:
            raise ValueError("staircase: a string of at most 100 characters")
        get_format(self.dtype)
        for name in ("initial_learning_rate", "decay_steps", "decay_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise TypeError(f"{name} must be an int, float or str; got {v!r}")

    @property
    def format(self) -> Format:
        return get_format(self.dtype)

    def as_python(self) -> tuple[int | float, int | float, int | float]:
        """``(I, D, r)`` as the Python numbers a user would write."""
        return (
            python_number(self.initial_learning_rate, "initial_learning_rate"),
            python_number(self.decay_steps, "decay_steps"),
            python_number(self.decay_rate, "decay_rate"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": encode_number(self.initial_learning_rate),
            "decay_steps": encode_number(self.decay_steps),
            "decay_rate": encode_number(self.decay_rate),
            "staircase": self.staircase,
            "dtype": self.dtype,
        }

    @classmethod
    def from_json(cls, obj: Any) -> Params:
        if not isinstance(obj, dict):
            raise ValueError(f"params must be an object; got {obj!r}")
        try:
            return cls(
                obj["initial_learning_rate"], obj["decay_steps"], obj["decay_rate"],
                obj.get("staircase", False), obj.get("dtype", "float32"),
            )
        except KeyError as e:
            raise ValueError(f"params lack {e.args[0]!r}") from None


def encode_number(x: int | float | str) -> str:
    """A number as an exact string: decimal integer, hex float or special."""
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x.hex()


_INT_CHARS = set("+-0123456789")


def python_number(x: int | float | str, name: str = "value") -> int | float:
    """The Python number a user would pass: ints stay ints, a string of digits
    becomes an int, anything else becomes the nearest Python float (exact for
    hex floats and every value of the four formats)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return x
    if isinstance(x, str):
        t = x.strip()
        if t and set(t) <= _INT_CHARS and any(c.isdigit() for c in t):
            return int(t)
        q = to_exact(t, name)
        return float(q)
    raise TypeError(f"{name} must be an int, float or str; got {x!r}")


def step_value(x: Any) -> int | float:
    """A step as a Python int (integral, not -0.0) or float."""
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, str):
        return python_number(x, "step")
    f = float(x)
    return f


@dataclass
class Outcome:
    """Per-step results of one evaluation.

    ``values`` holds the outputs as float64 (NaN where the step failed or is
    not applicable); ``errors``, ``not_applicable`` and ``crashed`` map a
    step's index to a message.  ``errors`` are errors the implementation
    reported (an exception, an ``{"error": ...}`` answer); ``crashed`` are
    steps that got no answer at all (the worker crashed, hung, broke the
    protocol or could not start): those tests were not run.
    """

    values: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)
    not_applicable: dict[int, str] = field(default_factory=dict)
    crashed: dict[int, str] = field(default_factory=dict)


class Adapter:
    """Base class of the in-process adapters.

    Subclasses implement :meth:`_evaluate` (vectorised when the framework
    allows) and may override :meth:`applicable` and :meth:`step_applicable`.
    """

    name: str = "adapter"
    version: str = "unknown"
    #: True when one call evaluates a whole array of steps.
    vectorised: bool = False
    #: Why the implementation cannot be used (a start-up failure), or None.
    broken: str | None = None

    def close(self) -> None:
        """Release what the adapter holds (a worker process); idempotent."""

    def prepare(self) -> None:
        """Import whatever the implementation imports lazily, evaluating
        nothing (called before a fresh worker forks its children)."""

    def applicable(self, params: Params) -> str | None:
        """``None`` when the case can be expressed, else the reason why not."""
        return None

    def step_applicable(self, params: Params, step: int | float) -> str | None:
        """``None`` when this step can be expressed, else the reason why not."""
        return None

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, params: Params, steps: Any) -> np.ndarray:
        """The outputs at ``steps`` (float64 array, exact); raises
        :class:`NotApplicableError` or :class:`AdapterError` if any step fails."""
        out = self.evaluate_outcome(params, steps)
        if out.not_applicable:
            i, why = next(iter(out.not_applicable.items()))
            raise NotApplicableError(f"{self.name}: step #{i} not applicable: {why}")
        if out.errors:
            i, why = next(iter(out.errors.items()))
            raise AdapterError(f"{self.name}: step #{i} failed: {why}")
        if out.crashed:
            i, why = next(iter(out.crashed.items()))
            raise AdapterError(f"{self.name}: step #{i} not run: {why}")
        return out.values

    def evaluate_outcome(self, params: Params, steps: Any) -> Outcome:
        """Evaluate, isolating failures: an exception on the vectorised call
        is retried step by step, so that it is charged to the guilty steps.
        Each output is taken only if it is exactly a real number that a
        float64 holds (:func:`exact_outputs`); any other output (a complex
        number, a string, an integer a float64 cannot hold, ...) is charged
        to its step as not run, never passed."""
        values = [step_value(s) for s in np.asarray(steps, dtype=object).ravel()]
        result = Outcome(np.full(len(values), np.nan))
        why = self.applicable(params)
        if why is not None:
            result.not_applicable = dict.fromkeys(range(len(values)), why)
            return result
        todo = []
        for i, s in enumerate(values):
            reason = self.step_applicable(params, s)
            if reason is None:
                todo.append(i)
            else:
                result.not_applicable[i] = reason
        if not todo:
            return result
        try:
            store_exact(result, todo, self._evaluate(params, [values[i] for i in todo]))
            return result
        except NotApplicableError as e:
            result.not_applicable.update(dict.fromkeys(todo, str(e)))
            return result
        except Exception:  # noqa: BLE001 - retried step by step below
            pass
        for i in todo:
            try:
                store_exact(result, [i], self._evaluate(params, [values[i]]))
            except NotApplicableError as e:
                result.not_applicable[i] = str(e)
            except Exception as e:  # noqa: BLE001 - the implementation's failure
                result.errors[i] = describe_exception(e)
        return result


def describe_exception(e: BaseException) -> str:
    """One line naming an exception, capped in length."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:300]


def exact_outputs(out: Any, n: int) -> tuple[np.ndarray, dict[int, str]]:
    """``n`` outputs as float64 values, and ``index -> why`` for those that
    are not exactly a real number a float64 holds: a complex number (even
    with a zero imaginary part), a string, a bool, an integer beyond
    float64's precision, a ``Fraction`` or ``Decimal`` that is not a
    float64.  ``AdapterError`` when there are not ``n`` outputs."""
    # A list keeps its elements (numpy would turn a list holding a string
    # into strings, or a list of big integers into float64 values).
    arr = out if isinstance(out, np.ndarray) else np.asarray(out, dtype=object)
    flat = arr.ravel()
    if flat.size == 1 and n > 1:
        flat = np.repeat(flat, n)
    if flat.size != n:
        raise AdapterError(f"expected {n} outputs, got {flat.size}")
    values = np.full(n, np.nan)
    bad: dict[int, str] = {}
    if (flat.dtype.kind == "f" and flat.dtype.itemsize <= 8) or \
            flat.dtype == get_format("bfloat16").dtype:
        return np.asarray(flat, dtype=np.float64), bad  # every value of these is a float64
    for i, v in enumerate(flat.tolist() if flat.dtype.kind != "O" else list(flat)):
        got = _exact_float(v)
        if got is None:
            bad[i] = (f"the output {_short(v)} is not a real number that a float64 holds "
                      "exactly")
        else:
            values[i] = got
    return values, bad


def _exact_float(v: Any) -> float | None:
    """``v`` as a float64 when it is exactly one (else None)."""
    if isinstance(v, (bool, np.bool_, complex, np.complexfloating, str, bytes)):
        return None
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f) or isinstance(v, (float, np.float16, np.float32, np.float64)):
            return f  # a float64 holds every value of these
        return _exact_ratio(Fraction(*v.as_integer_ratio()))  # long double
    if isinstance(v, (int, np.integer)):
        return _exact_ratio(Fraction(int(v)))
    if isinstance(v, Fraction) or (isinstance(v, Decimal) and v.is_finite()):
        return _exact_ratio(Fraction(v))
    return None


def _exact_ratio(q: Fraction) -> float | None:
    if abs(q) >= 2**1024:
        return None
    f = float(q)
    return f if Fraction(f) == q else None


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def store_exact(result: Outcome, idx: list[int], out: Any) -> None:
    """Store the outputs ``out`` of the steps ``idx`` in ``result``: each exact
    value, or the step as not run with the reason (:func:`exact_outputs`)."""
    values, bad = exact_outputs(out, len(idx))
    for k, i in enumerate(idx):
        if k in bad:
            result.crashed[i] = bad[k]
        else:
            result.values[i] = values[k]


def exact_input(x: int | float | str, name: str) -> Fraction | float:
    """The exact value of a parameter (for the reference adapters)."""
    return to_exact(x, name)
