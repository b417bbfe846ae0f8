"""Compare floating-point results in units in the last place of a format.

:func:`assert_ulp_close` is the assertion other projects put in their own test
suites to compare their schedule with expdecay's correctly rounded values.
It works in any of the four formats of :mod:`expdecay.floats`, bfloat16
included (``numpy.testing.assert_array_max_ulp`` knows only numpy's own
float types).

Design
------
* **Distance.**  The distance between two finite values is the number of
  representable steps of the format between them: the difference of their
  *ordered integer keys*, :func:`expdecay.floats.ulp_distance` (``+0`` and
  ``-0`` are one point, so the smallest positive and the smallest negative
  subnormal are 2 ulps apart), computed on whole arrays by
  :func:`expdecay.floats.abs_ulp_distances`, in ``uint64``: two float64 values
  of opposite signs can be up to ``2**64 - 2**53`` steps apart, more than
  ``int64`` holds.
* **Special values are not distances.**  NaN matches NaN (any payload or sign);
  an infinity matches only the same infinity, whatever ``ulps`` (the step from
  the largest finite value to infinity is not "one ulp of error" for a
  reference); zeros of opposite signs do not match, although they are 0 ulps
  apart, because the sign of zero is part of the spec (``1 / lr`` differs).
* **No silent rounding.**  Both arguments must hold values of the format
  exactly.  A float64 ``0.1`` compared in float32 is a mistake in the test, not
  something to round away, so it raises :class:`ValueError` naming the argument
  and the first offending element.
* **Broadcasting** follows numpy; arguments whose shapes do not broadcast fail
  the assertion (as in ``numpy.testing``), since a wrong shape is a wrong result.
* **The message** names the worst element (its index in the broadcast shape,
  both values in decimal, hex float and bits, the signed distance) and counts
  the elements beyond the tolerance.  Failures rank: NaN or infinity
  mismatches first, then the largest distance, then signed-zero mismatches;
  the first index wins a tie.

>>> import numpy as np
>>> assert_ulp_close(np.float32(1.0), np.nextafter(np.float32(1), np.float32(2)),
...                  ulps=1, dtype="float32")
>>> assert_ulp_close([0.0], [-0.0], ulps=10, dtype="float64")
Traceback (most recent call last):
...
AssertionError: 1 of 1 elements differ by more than 10 ulps of float64; worst at index (0,): ...
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ..floats import Format, abs_ulp_distances, get_format, to_bits, to_hex, ulp_distance
from ..inputs import to_exact

__all__ = ["assert_ulp_close"]


def _check_ulps(ulps: Any) -> float:
    """``ulps`` must be a real non-negative number (int or float, not bool)."""
    if isinstance(ulps, (bool, np.bool_)) or not isinstance(ulps, numbers.Real):
        raise TypeError(f"ulps must be a non-negative int or float; got "
                        f"{type(ulps).__name__} {ulps!r}")
    value = float(ulps)
    if math.isnan(value) or value < 0:
        raise ValueError(f"ulps must be a non-negative int or float; got {ulps!r}")
    return value


def _object_to_float64(arr: np.ndarray, name: str) -> np.ndarray:
    """Python objects (big ints, Fractions, Decimals...) to float64, exactly."""
    out = np.empty(arr.shape, np.float64)
    for idx, x in np.ndenumerate(arr):
        v = to_exact(x, name)
        f = float(v) if not isinstance(v, float) else v
        if not isinstance(v, float) and (math.isinf(f) or to_exact(f) != v):
            raise ValueError(f"{name} is not exactly representable in float64 at index "
                             f"{idx}: {x!r}; round it to the format first")
        out[idx] = f
    return out


def _to_float64(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 array holding the same values exactly."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nested sequences
        raise TypeError(f"{name} must be a number or an array of numbers; got {x!r}") from e
    kind = arr.dtype.kind
    if kind == "O":
        return _object_to_float64(arr, name)
    if kind in "bcSUMm" or (kind == "V" and arr.dtype.names is not None):
        raise TypeError(f"{name} must hold real numbers; got an array of dtype {arr.dtype}")
    try:
        with np.errstate(all="ignore"):
            v = arr.astype(np.float64)
            back = v.astype(arr.dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must hold real numbers; got dtype {arr.dtype}") from e
    with np.errstate(invalid="ignore"):
        bad = ~((back == arr) | np.isnan(v))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} is not exactly representable in float64 at index {idx}: "
                         f"{arr[idx]!r}; round it to the format first")
    return v


def _in_format(v: np.ndarray, fmt: Format, name: str) -> np.ndarray:
    """The values ``v`` (float64) as an array of ``fmt``'s dtype, checking that
    none is rounded by the conversion."""
    with np.errstate(all="ignore"):
        conv = v.astype(fmt.dtype)
        bad = ~((conv.astype(np.float64) == v) | np.isnan(v))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} holds a value that is not exactly representable in "
                         f"{fmt.name} at index {idx}: {float(v[idx])!r}; compare values "
                         f"of the format (round them explicitly first)")
    return conv


def _describe_value(x: float, fmt: Format) -> str:
    return f"{x!r} ({to_hex(x)}, bits 0x{to_bits(x, fmt):0{fmt.width // 4}x})"


def assert_ulp_close(actual: Any, expected: Any, *, ulps: float, dtype: Any) -> None:
    """Assert that ``actual`` is within ``ulps`` units in the last place of
    ``expected``, element by element, in the format ``dtype``.

    ``actual`` and ``expected`` are scalars or arrays (anything ``numpy.asarray``
    takes; they broadcast against each other) whose values are exactly values
    of the format.  ``dtype`` is a format name (``"float16"``, ``"bfloat16"``,
    ``"float32"``, ``"float64"``), a numpy dtype or a scalar type such as
    ``ml_dtypes.bfloat16``.  ``ulps`` is a non-negative int or float (a float
    is floored: 1.5 allows 1 ulp; ``math.inf`` allows any finite distance).

    NaN matches NaN; an infinity matches only the same infinity, whatever
    ``ulps``; ``+0`` and ``-0`` do not match.

    Raises :class:`AssertionError` when an element differs by more (or the
    shapes do not broadcast), :class:`TypeError` / :class:`ValueError` naming
    the argument for bad arguments, including values that are not exactly
    representable in the format.

    >>> import ml_dtypes, numpy as np
    >>> one, next_one = np.array([0x3F80, 0x3F81], np.uint16).view(ml_dtypes.bfloat16)
    >>> assert_ulp_close(next_one, one, ulps=1, dtype=ml_dtypes.bfloat16)
    >>> assert_ulp_close(next_one, one, ulps=0, dtype="bfloat16")
    Traceback (most recent call last):
    ...
    AssertionError: 1 of 1 elements differ by more than 0 ulps of bfloat16; ...: 1 ulp above
    """
    fmt = get_format(dtype)
    tolerance = _check_ulps(ulps)
    a64 = _to_float64(actual, "actual")
    e64 = _to_float64(expected, "expected")
    a_fmt = _in_format(a64, fmt, "actual")
    e_fmt = _in_format(e64, fmt, "expected")
    try:
        a_fmt, e_fmt, a64, e64 = np.broadcast_arrays(a_fmt, e_fmt, a64, e64)
    except ValueError:
        raise AssertionError(f"shapes of actual {a64.shape} and expected {e64.shape} do "
                             f"not broadcast") from None
    a_nan, e_nan = np.isnan(a64), np.isnan(e64)
    a_inf, e_inf = np.isinf(a64), np.isinf(e64)
    # NaN or infinity on either side: only identical specials (any NaN for NaN) match.
    special = a_nan | e_nan | a_inf | e_inf
    with np.errstate(invalid="ignore"):
        special_bad = special & ~((a_nan & e_nan) | (a_inf & (a64 == e64)))
    finite = ~special
    dist = np.zeros(a64.shape, np.uint64)
    dist[finite] = abs_ulp_distances(a_fmt[finite], e_fmt[finite], fmt)
    limit = math.floor(tolerance) if math.isfinite(tolerance) else None
    too_far = finite & (dist > np.uint64(limit)) if limit is not None and limit < 2**64 \
        else np.zeros(a64.shape, bool)
    zero_sign = finite & (a64 == 0) & (e64 == 0) & (np.signbit(a64) != np.signbit(e64))
    failed = special_bad | too_far | zero_sign
    count = int(failed.sum())
    if count == 0:
        return
    # Rank failures: special mismatches, then distance, then signed zeros.
    score = np.where(failed, dist.astype(np.float64), -1.0)
    score[special_bad] = math.inf
    flat_worst = int(np.argmax(score.reshape(-1)))
    idx = np.unravel_index(flat_worst, a64.shape)
    index = tuple(int(i) for i in idx)
    av, ev = float(a64[idx]), float(e64[idx])
    if special_bad[idx]:
        if math.isnan(av) or math.isnan(ev):
            why = "NaN against a number"
        else:
            why = "an infinity matches only the same infinity, whatever ulps"
    elif zero_sign[idx]:
        why = "zeros of opposite signs (+0 vs -0)"
    else:
        d = ulp_distance(ev, av, fmt)
        why = f"{abs(d)} ulp{'s' if abs(d) != 1 else ''} {'above' if d > 0 else 'below'}"
    raise AssertionError(
        f"{count} of {failed.size} elements differ by more than {ulps!r} ulps of "
        f"{fmt.name}; worst at index {index}: actual {_describe_value(av, fmt)}, "
        f"expected {_describe_value(ev, fmt)}: {why}"
    )
