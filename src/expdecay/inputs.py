"""Exact conversion and validation of every input (spec §3, §4).

Every number the package takes (an ``int``, ``float``, :class:`~fractions.Fraction`,
:class:`~decimal.Decimal`, numeric string, numpy scalar or 0-d array) goes
through :func:`to_exact`: a finite nonzero number becomes a ``Fraction``;
zeros, infinities and NaN stay Python floats, so the sign of zero survives.
The schedule's parameters are validated here too (:func:`check_decay_steps`,
:func:`check_staircase`), and :func:`resolve_dtype` applies Keras's dtype rule.
The oracle, the fast path, the bounds, the schedule, the adapters and the
analysis all take their inputs through this module.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from .floats import Format, get_format

__all__ = [
    "Exact",
    "to_exact",
    "from_float",
    "from_fraction",
    "int_to_decimal",
    "resolve_dtype",
    "check_staircase",
    "check_decay_steps",
    "validated_inputs",
    "MAX_INPUT_CHARS",
    "MAX_DECIMAL_EXPONENT",
    "MAX_BINARY_EXPONENT",
    "MAX_NESTING",
]

#: An exact extended real: a nonzero finite ``Fraction``, or a float that is
#: a signed zero, a signed infinity or NaN.
Exact = Fraction | float


_HEX = re.compile(
    r"^([+-]?)0x([0-9a-f]*)(?:\.([0-9a-f]*))?(?:p([+-]?\d+))?$", re.IGNORECASE
)
_SPECIAL = {
    "nan": math.nan, "+nan": math.nan, "-nan": math.nan,
    "inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf,
    "-inf": -math.inf, "-infinity": -math.inf,
}


def from_float(x: float) -> Exact:
    """The exact value of a float: a ``Fraction``, or the float itself when it
    is a zero, an infinity or NaN."""
    if x == 0.0 or not math.isfinite(x):
        return x
    return Fraction(x)


def from_fraction(q: Fraction) -> Exact:
    """``q`` as an exact value (zero becomes ``0.0``)."""
    return q if q else 0.0


#: Inputs beyond these sizes are refused rather than expanded (a decimal
#: exponent of 10**9 would mean a billion-digit integer).
MAX_INPUT_CHARS = 10_000
MAX_DECIMAL_EXPONENT = 100_000
#: The binary exponent of a hex float string, as large (2**400000 ~ 10**120412).
MAX_BINARY_EXPONENT = 400_000
# PEP 515 underscores are part of Python's number syntax, so an exponent such
# as "1e1_000_000" must be measured with them.
_DEC_EXP = re.compile(r"[eE]([+-]?\d(?:_?\d)*)$")
_DECIMAL = re.compile(
    r"^([+-]?)(\d(?:_?\d)*)?(?:\.(\d(?:_?\d)*)?)?(?:[eE]([+-]?\d(?:_?\d)*))?$"
)
#: Digits converted per ``int()`` call: below CPython's int/str conversion
#: limit (4300 digits by default), which would otherwise refuse long inputs.
_DIGIT_CHUNK = 4000


def _digits_to_int(digits: str) -> int:
    """``int(digits)`` for a string of decimal digits of any length, without
    touching the interpreter-wide conversion limit."""
    n = 0
    for i in range(0, len(digits), _DIGIT_CHUNK):
        part = digits[i:i + _DIGIT_CHUNK]
        n = n * 10 ** len(part) + int(part)
    return n


def int_to_decimal(n: int) -> str:
    """``str(n)`` for an int of any size, without touching the
    interpreter-wide int/str conversion limit (halves are converted
    recursively, so the cost stays near ``str``'s).

    >>> int_to_decimal(10**5000) == "1" + "0" * 5000
    True
    """
    if n < 0:
        return "-" + int_to_decimal(-n)
    if n < 10**_DIGIT_CHUNK:
        return str(n)
    k = (n.bit_length() * 30103 // 100000) // 2  # about half the digits
    hi, lo = divmod(n, 10**k)
    return int_to_decimal(hi) + int_to_decimal(lo).rjust(k, "0")


def _parse_decimal(t: str) -> Fraction | None:
    """The exact value of a decimal literal (underscores allowed as in Python),
    or None when ``t`` is not one."""
    m = _DECIMAL.match(t)
    if not m or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac, exp = m.groups()
    whole = (whole or "").replace("_", "")
    frac = (frac or "").replace("_", "")
    e = int((exp or "0").replace("_", "")) - len(frac)
    n = _digits_to_int(whole + frac or "0")
    q = Fraction(n * 10**e) if e >= 0 else Fraction(n, 10**-e)
    return -q if sign == "-" else q


def _check_magnitude(exponent: int, name: str, text: object, binary: bool = False) -> None:
    limit = MAX_BINARY_EXPONENT if binary else MAX_DECIMAL_EXPONENT
    if abs(exponent) > limit:
        raise ValueError(
            f"{name} is too large or too small to take exactly (an exponent beyond "
            f"{2 if binary else 10}**+-{limit}); got {str(text)[:80]!r}"
        )


def _parse_str(text: str, name: str) -> Exact:
    t = text.strip()
    if len(t) > MAX_INPUT_CHARS:
        raise ValueError(f"{name} is longer than {MAX_INPUT_CHARS} characters")
    low = t.lower()
    if low in _SPECIAL:
        return _SPECIAL[low]
    negative = t.startswith("-")
    m = _HEX.match(t)
    hexadecimal = m is not None and bool(m.group(2) or m.group(3))
    e = None if hexadecimal else _DEC_EXP.search(t)
    if m is not None and hexadecimal and m.group(4):
        _check_magnitude(int(m.group(4)), name, text, binary=True)
    elif e:
        _check_magnitude(int(e.group(1).replace("_", "")), name, text)
    try:
        if m is not None and hexadecimal:
            _, whole, frac, exp = m.groups()
            frac = frac or ""
            mant = int((whole or "0") + frac, 16)
            q = Fraction(mant) * Fraction(2) ** (int(exp or 0) - 4 * len(frac))
        else:
            parsed = _parse_decimal(t)
            q = parsed if parsed is not None else _parse_ratio(t)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(f"{name} must be a number; got the string {text!r}") from None
    if q == 0:
        return -0.0 if negative else 0.0
    return -q if negative and m else q


_RATIO = re.compile(r"^\s*([+-]?\d(?:_?\d)*)\s*/\s*(\d(?:_?\d)*)\s*$")


def _parse_ratio(t: str) -> Fraction:
    """``"n/d"`` with integer parts (the only other form :class:`Fraction`
    accepts); anything else raises ValueError."""
    m = _RATIO.match(t)
    if not m:
        raise ValueError(t)
    num, den = (_digits_to_int(g.replace("_", "").lstrip("+-")) for g in m.groups())
    return Fraction(-num if m.group(1).startswith("-") else num, den)


#: A 0-d object array may hold another; unwrapping stops at this depth.
MAX_NESTING = 32


def to_exact(x: Any, name: str = "value") -> Exact:
    """The exact value denoted by ``x`` (spec §3).

    >>> to_exact("0.96")
    Fraction(24, 25)
    >>> to_exact(0.5), to_exact(-0.0), to_exact("0x1.8p-1")
    (Fraction(1, 2), -0.0, Fraction(3, 4))
    """
    if type(x) is float:
        return from_float(x)
    if type(x) is int:
        return from_fraction(Fraction(x))
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, not a bool; got {x!r}")
    if isinstance(x, Fraction):
        return from_fraction(x)
    # timedelta64 subclasses numpy's signed integers: refuse it before them.
    if isinstance(x, (np.void, np.datetime64, np.timedelta64)) or (
        isinstance(x, np.generic) and x.dtype.kind in "mMSUOb"
    ):
        raise TypeError(f"{name} must be a number; got numpy {x.dtype} {x!r}")
    if isinstance(x, (int, np.integer)):
        return from_fraction(Fraction(int(x)))
    if isinstance(x, float):
        return from_float(x)
    if isinstance(x, Decimal):
        if x.is_nan():
            return math.nan
        if x.is_infinite():
            return -math.inf if x.is_signed() else math.inf
        if x.is_zero():
            return -0.0 if x.is_signed() else 0.0
        _check_magnitude(x.adjusted(), name, x)
        return Fraction(x)
    if isinstance(x, str):
        return _parse_str(x, name)
    if isinstance(x, np.ndarray) and x.ndim == 0:
        inner = x[()]
        for _ in range(MAX_NESTING):
            if not (isinstance(inner, np.ndarray) and inner.ndim == 0):
                return to_exact(inner, name)
            inner = inner[()]
        raise TypeError(f"{name} is a 0-d array nested more than {MAX_NESTING} deep")
    if isinstance(x, np.generic) and x.dtype.kind in "fV" or isinstance(x, np.floating):
        f = float(x)  # exact for float16, bfloat16, float32, float64
        if np.dtype(x.dtype).itemsize > 8 and math.isfinite(f) and f != 0.0:
            return Fraction(*x.as_integer_ratio())  # type: ignore[union-attr]
        return from_float(f)
    raise TypeError(
        f"{name} must be an int, float, Fraction, Decimal, numeric string or numpy "
        f"scalar; got {type(x).__name__} {x!r}"
    )


def resolve_dtype(initial_learning_rate: Any, dtype: Any = None) -> Format:
    """The computation format (spec §4): ``dtype`` if given, else the format of
    a numpy float ``initial_learning_rate``, else float32 (Keras's floatx)."""
    if dtype is not None:
        return get_format(dtype)
    d = getattr(initial_learning_rate, "dtype", None)
    if isinstance(initial_learning_rate, (np.generic, np.ndarray)) and d is not None:
        try:
            return get_format(d)
        except ValueError:
            pass
    return get_format("float32")


def validated_inputs(
    initial_learning_rate: Any, decay_steps: Any, decay_rate: Any, step: Any, staircase: Any
) -> tuple[Exact, Exact, Exact, Exact]:
    """Validate the four inputs and the staircase flag; their exact values."""
    check_staircase(staircase)
    D = check_decay_steps(decay_steps)
    return (
        to_exact(initial_learning_rate, "initial_learning_rate"),
        D,
        to_exact(decay_rate, "decay_rate"),
        to_exact(step, "step"),
    )


def check_staircase(staircase: Any) -> bool:
    """``staircase`` must be a real bool (so the string ``"False"`` is refused)."""
    if not isinstance(staircase, (bool, np.bool_)):
        raise TypeError(f"staircase must be a bool; got {type(staircase).__name__} {staircase!r}")
    return bool(staircase)


def check_decay_steps(decay_steps: Any) -> Fraction:
    """``decay_steps`` must be finite and > 0; returns its exact value."""
    D = to_exact(decay_steps, "decay_steps")
    if not isinstance(D, Fraction) or D <= 0:
        raise ValueError(f"decay_steps must be finite and > 0; got {decay_steps!r}")
    return D
