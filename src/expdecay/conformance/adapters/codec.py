"""The wire format of the JSON-lines protocol between the runner and an implementation.

Every implementation is checked through this one protocol: the built-in
adapters run in a worker subprocess (:mod:`expdecay.conformance.adapters.worker`) and an
external program (``cmd:COMMAND``) speaks it directly.  The full description
is in ``conformance/README.md``; in short, one JSON object per line:

* the implementation first prints a hello line
  ``{"protocol": "expdecay-conformance/1", "name": ..., "version": ...}``;
* the runner sends requests
  ``{"id": 1, "params": {...}, "steps": ["0", "16777999", "nan", ...]}``
  (every number an exact string: decimal integer, C99 hex float, ``nan``,
  ``inf``, ``-inf``);
* the implementation answers ``{"id": 1, "results": [...]}`` with one entry
  per step: an exact number string (``"0x1.1050bep-4"``), or
  ``{"error": "why"}``, or ``{"na": "why not applicable"}``; or, for the
  whole request, ``{"id": 1, "error": "why"}``;
* end of input means the implementation should exit.

Output values
-------------
An output string denotes an exact number, and that number must be exactly a
float64 (every value of the four formats is one): ``nan``, ``inf``, ``-inf``
(any case, optional sign, ``infinity`` too), a C99 hex float or a decimal
(integer, fraction, exponent).  A string whose exact value is not a float64
is a protocol error charged to that step, never rounded.  In particular a
finite string beyond float64's range, such as ``"1e400"``, is **not** read as
infinity (an implementation that overflows writes ``"inf"``), and a nonzero
string that underflows, such as ``"1e-400"``, is not read as zero.  Strings
are at most :data:`MAX_NUMBER_CHARS` characters; decoding one costs time
linear in its length whatever its exponent.

Limits
------
A line is at most :data:`MAX_LINE` bytes (newline included), UTF-8, one JSON
value.  The hello line must arrive within the start-up timeout,
:data:`STARTUP_FACTOR` request timeouts unless given explicitly; a ``batch``
request of ``n`` groups is allowed ``n`` request timeouts
(:func:`batch_deadline`), a fresh batch ``n + k`` with ``k`` children at
once (:func:`fresh_batch_deadline`).  The worker side is
:mod:`.worker`, the runner side :mod:`.client`, the fork children and
process groups :mod:`.processes`.
"""

from __future__ import annotations

import math
import os
import re
import reprlib
from decimal import Decimal
from fractions import Fraction
from typing import Any

from .base import encode_number, step_value

__all__ = [
    "PROTOCOL", "MAX_LINE", "MAX_NUMBER_CHARS", "STARTUP_FACTOR", "MAX_TIMEOUT",
    "FRESH_PARALLEL", "MAX_FRESH_PARALLEL", "check_timeout", "batch_deadline",
    "fresh_batch_deadline", "fresh_child_timeout", "encode_step", "encode_value",
    "decode_value", "brief_repr", "short_text",
]

PROTOCOL = "expdecay-conformance/1"

#: Longest accepted line from an implementation, in bytes, newline included.
#: The longest answer the built-in worker writes is :data:`~.client.CHUNK` results
#: of at most 300 characters each, under 8 MiB even with every character
#: escaped as ``\\uXXXX``; twice that leaves room for other programs.
MAX_LINE = 1 << 24

#: Longest accepted output value string (a float64 needs under 30).
MAX_NUMBER_CHARS = 200

#: The start-up timeout, when not given, is this many request timeouts.
STARTUP_FACTOR = 2.0

#: Largest accepted timeout, in seconds (one day).
MAX_TIMEOUT = 86400.0

#: Fresh children run at once by :func:`~.processes.fresh_answers` (at most).
FRESH_PARALLEL = max(1, min(4, os.cpu_count() or 1))

#: Largest ``parallel`` a fresh batch request may ask for.
MAX_FRESH_PARALLEL = 64

def check_timeout(value: Any, name: str = "timeout") -> float:
    """``value`` as a float in (0, :data:`MAX_TIMEOUT`], else ``ValueError``/``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds; got {value!r}")
    t = float(value)
    if not 0 < t <= MAX_TIMEOUT:
        raise ValueError(f"{name} must be > 0 and at most {MAX_TIMEOUT:g} seconds; got {value!r}")
    return t


def batch_deadline(timeout: float, groups: int) -> float:
    """Seconds allowed for a ``batch`` request of ``groups`` groups: one
    request timeout per group (at most :data:`MAX_TIMEOUT`)."""
    return min(MAX_TIMEOUT, timeout * max(1, groups))


def fresh_batch_deadline(timeout: float, groups: int, parallel: int) -> float:
    """Seconds allowed for a fresh batch of ``groups`` groups whose children
    run ``parallel`` at once: each child is allowed ``parallel`` request
    timeouts (:func:`fresh_child_timeout`), and at most ``ceil(groups /
    parallel)`` rounds of them run one after another, so ``groups +
    parallel`` request timeouts bound the whole (at most :data:`MAX_TIMEOUT`)."""
    return min(MAX_TIMEOUT, timeout * (max(1, groups) + max(1, parallel)))


def fresh_child_timeout(timeout: float, parallel: int) -> float:
    """Seconds a fresh child may take when ``parallel`` run at once: they
    share the processors, so each is allowed ``parallel`` request timeouts."""
    return min(MAX_TIMEOUT, timeout * max(1, parallel))


def encode_step(x: int | float) -> str:
    """A step as an exact string."""
    return encode_number(step_value(x))


def encode_value(x: float) -> str:
    """An output value (a float64 holding it exactly) as an exact string."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x).hex()


_SPECIAL = re.compile(r"([+-]?)(nan|inf|infinity)\Z", re.IGNORECASE)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_HEX = re.compile(
    r"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?\Z")


def decode_value(text: Any) -> float:
    """An implementation's output string -> its value as a float64.

    Raises ``ValueError`` (and nothing else) when the text is not a number
    string or its exact value is not a float64 value: see "Output values"
    in the module docstring (``"1e400"`` is an error, not infinity).

    >>> decode_value("0x1.8p-1"), decode_value("-0"), decode_value("16777216")
    (0.75, -0.0, 16777216.0)
    """
    if not isinstance(text, str) or len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"an output must be a number string; got {brief_repr(text)}")
    t = text.strip()
    if m := _SPECIAL.match(t):
        if m.group(2).lower() == "nan":
            return math.nan
        return -math.inf if m.group(1) == "-" else math.inf
    if m := _HEX.match(t):
        return _decode_hex(t, m)
    if _DECIMAL.match(t):
        # Decimal holds the string exactly and float() of it is correctly
        # rounded, with an exponent of any size handled in constant time.
        d = Decimal(t)
        f = float(d)
        if math.isinf(f):
            raise ValueError(f"output {text!r} overflows float64 (an infinite output is 'inf')")
        if Decimal(f) != d:
            raise ValueError(f"output {text!r} is not exactly a float64 value")
        return f
    raise ValueError(f"an output must be a number string; got {text[:60]!r}")


def _decode_hex(text: str, m: re.Match[str]) -> float:
    whole, frac, exp = m.group(2), m.group(3) or "", m.group(4) or "0"
    if not whole and not frac:
        raise ValueError(f"an output must be a number string; got {text[:60]!r}")
    try:
        f = float.fromhex(text)
    except OverflowError:
        raise ValueError(
            f"output {text!r} overflows float64 (an infinite output is 'inf')") from None
    mantissa = int(whole + frac, 16) if whole + frac else 0
    if f == 0:
        if mantissa != 0:
            raise ValueError(f"output {text!r} is not exactly a float64 value (underflow)")
        return f
    # f is finite and nonzero, so the binary exponent below is bounded
    # (mantissa < 16**200): the exact comparison is cheap.
    e2 = int(exp) - 4 * len(frac)
    exact = Fraction(mantissa) * (Fraction(2) ** e2)
    if Fraction(abs(f)) != exact:
        raise ValueError(f"output {text!r} is not exactly a float64 value")
    return f


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 80
_REPR.maxother = 80


def brief_repr(obj: Any) -> str:
    """A short repr of anything an implementation sent (bounded in depth and length)."""
    return _REPR.repr(obj)[:120]


def short_text(obj: Any) -> str:
    """A message an implementation sent, as at most 300 characters."""
    return obj[:300] if isinstance(obj, str) else brief_repr(obj)
