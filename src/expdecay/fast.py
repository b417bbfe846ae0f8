"""Vectorised, bit-reproducible evaluation of the schedule over arrays of steps.

:func:`evaluate` returns, for every element of an array of steps, exactly the
value :func:`expdecay.oracle.evaluate_exact` gives for that step (same bits;
NaN is the canonical NaN), at a cost close to plain numpy.  It follows the
pattern of correctly rounded libraries: an approximation in higher precision
with a *proven* error bound, a rounding test on every element, and the oracle
for the elements the test cannot decide.  Whatever the approximation's last
bits (they may depend on the CPU), an element is output only when every value
within the bound rounds to the same result, which is then the oracle's.

Notation: ``u = 2**-53``; ``RN`` is float64 round-to-nearest-even.  Every numpy
``+ - * /`` on float64 or float32 and every float64 -> float32 conversion is
the IEEE correctly rounded operation (numpy neither fuses operations nor
flushes subnormals; :func:`_hardware_ok` checks at run time that no other
library switched on flush-to-zero before the float32 path relies on it).

Domain
------
Only the regular domain is approximated: ``I`` finite and nonzero
(``|log2 I| < 1000``), ``r`` finite, positive and not 1, the step (keras order:
the exponent ``p``) finite.  Everything else goes to the oracle: whole
schedules with special parameters (``I`` in {0, inf, nan}, ``r <= 0`` or not
finite; in the keras order the rounded ``If``, ``rf`` and ``Df``, which can be
inf in float16), and single elements with non-finite float steps or outside
the ranges stated below.  ``r == 1`` (keras: ``rf == 1``) gives ``rnd(I)`` for
every step (``pow(1, y) = 1`` even for NaN ``y``).  Oracle calls are shared by
the elements with the same exponent: ``p`` in the keras order (whose result
depends on the step only through ``p``; a float16 schedule whose ``Df`` is inf
costs two oracle calls), ``floor(s / D)`` in the exact staircase, the step
itself otherwise (so an exact-order continuous schedule with special
parameters costs one oracle call per distinct step).

Write the result as ``I * 2**t``: ``t = s log2(r) / D`` (exact order),
``t = floor(s / D) log2 r`` (exact staircase) or ``t = p log2(rf)`` (keras order,
where ``I`` is 1 while ``w = rnd(rf**p)`` is decided, then ``rnd(If * w)`` is one
exactly rounded product).

Constants
---------
``log2(r) / D``, ``2**(j/1024)`` and the power tables are enclosed with the
rigorous kernels of :mod:`expdecay.intervals` and mpmath's outward-rounded
products (200 to 256 bits, widths checked) and stored as float64 or double-double values.

float32 through ``numpy.exp2``
------------------------------
``t~ = RN(RN(a) c) + e`` with ``c = RN(log2(r)/D)``, ``a`` the step or
``floor(s/D)`` (exact order; ``e`` the binary exponent of ``I``, its mantissa
``m = RN(I / 2**e)`` multiplied in afterwards) or ``a = p`` (keras order, ``p``
obtained with float32 IEEE division from exactly converted steps below
2**24, ``e = 0``).  Then ``|t~ - t| <= 3.0001 u (|t| + |e|)`` (three roundings),
so ``2**t~`` is within ``ln 2 * 3.0001 u (|t| + |e|) < 2.1 u (|t| + |e|)`` of
``2**t`` relatively.  ``numpy.exp2`` is assumed within ``2**-44`` (256 ulps:
glibc's ``exp2`` is below 1 ulp and numpy's SIMD kernels below 4 ulps; the
first use measures it on 12,288 points against the proven double-double path
below and switches this path off if the error exceeds ``2**-48``).  The
multiplication by ``m``, ``m``'s own rounding and the two products by
``1 -+ eps`` add ``4u``.  With ``eps = (3 (max|t~| + |e|) + 8) u + 2**-44``
taken over the chunk, ``lo = RN(y (1 - eps))`` and ``hi = RN(y (1 + eps))`` bracket
the exact value, and when their float32 conversions agree (conversion is
monotonic and correctly rounded) that common value is the correctly rounded
result.  Overflow and underflow of ``exp2`` in float64 only happen at
``|t~| > 1022``, where the float32 result is inf or 0 and the bracket says so.

float16 and bfloat16 (float64 intermediate, exact integer rounding)
------------------------------------------------------------------
``t~`` as above (``e`` kept apart); reduction ``n = rint(1024 t~)``,
``x' = t~ - n/1024`` (exact: ``n = 0`` or Sterbenz, ``|x'| <= 2**-11``),
``2**t~ = 2**(n >> 10) * T[n & 1023] * exp(x)`` with ``x = RN(x' RN(ln 2))``
(absolute error below ``2**-63``), ``exp(x)`` by its degree-4 Taylor polynomial
(truncation below ``2**-64``, Horner evaluation ``1.01 u``), ``T[j] =
RN(2**(j/1024))`` (``u``), the products ``T P`` and ``m w`` (``u`` each) and ``m``
(``u``): to first order the relative error is below ``(2.08 |t| + 5.02) u``;
the code uses ``(3 |t| + 16) u``.  No numpy transcendental is used here.  The
rounding test works on integers: ``y~ = M 2**k`` with ``M`` the 53-bit
significand; rounding to the format keeps ``M >> k'`` (``k'`` from the
precision, or ``emin`` for subnormals), the boundaries being the midpoints
``(2q + 1) 2**(k'-1)``.  An element is decided when ``M``'s distance to the
nearest midpoint exceeds the error ``3 |t| + 17`` (units of ``M``) and the
error is below ``2**(k'-2)``, so a midpoint of the neighbouring binade, at
least that far, cannot interfere.  Representable values are not boundaries,
so exact results (step 0, exact powers) are decided; exact midpoints never
are and go to the oracle, which treats exact cases exactly.  Overflow (the
threshold is a midpoint) and underflow fall out of the same computation.

float64: power tables (integer exponents of large arrays)
---------------------------------------------------------
For an integer exponent ``0 <= a < 2**36`` (the step, ``floor(s/D)`` or an
integral keras ``p``; negative ones use ``1/r``), ``I r**(a/D) = prod_i T_i[a_i]``
with ``a = sum a_i 2**(12 i)`` and ``T_0[b] = I r**(b/D)``, ``T_i[b] =
r**(b 2**(12 i)/D)``, 4096 entries per table, each ``2**e (h + l)`` within
``2**-104`` (a chain of interval products at 256 bits).  Each double-double
product (Dekker's exact product of the high parts from pre-split table
entries, cross terms in float64, ``l l'`` dropped) adds below ``2**-101.5``;
the bound used is ``2**-96``.  No rounding error enters the exponent at all.
Tables are built only for arrays of :data:`TABLE_MIN_ELEMENTS` or more (about
10 ms per table) and cached.

float64: double-double exponential (everything else)
----------------------------------------------------
``c = ch + cl`` and ``I = 2**e (Ih + Il)`` within ``2**-105``; ``t = th + tl = a c``
up to ``2**-102.5 |t|`` (``a`` exact in float64: integer steps of 2**53 or more
go to the oracle); for ``|t| > 2200`` the result is 0 or inf, decided from the
sign.  ``n = rint(1024 th)``, ``x' = (th - n/1024) + tl`` exactly,
``X = x' ln 2`` as a double-double (absolute error ``<= 2**-92``),
``exp(X) = 1 + Xh + (Xl + q)`` with ``q`` the degree 2 to 5 terms in float64 at
``y = RN(Xh + Xl)`` (truncation ``2**-78.7``, the rounding of ``y`` through
``dq/dy`` ``2**-75.5``, Horner ``2**-74.7``, ``Xl + q`` ``2**-77``: ``2**-73.7``
together), times ``T[j]`` (double-double) adds ``2**-73.3``, times ``I``
``2**-72.4``: below ``2**-71`` in all, and the code uses ``B = 2**-69``.
The result is ``R + Re`` after Fast2Sum (``|Re| <= ulp(R)/2``); the nearest
float64 is ``R`` when ``|Re| + B R < ulp(R)/2``, except when ``R`` is a power of
two and ``Re < 0`` (the binade below is finer; such elements go to the
oracle).  Subnormal float64 results go to the oracle, or are 0 below half the
smallest subnormal.  The keras order for float64 uses this path unless ``p`` is
an integer (staircase): about 2 to 4 times slower than the tables.

Staircase arrays
----------------
A staircase schedule depends on the step only through its integer exponent
``q``, monotone in the step.  For an integer array of at least
:data:`GATHER_MIN_ELEMENTS` elements whose exponents span fewer than a quarter
of its size, the values for every ``q`` between the exponents of the smallest
and the largest step are computed once (the continuous schedule at step ``q``
with ``D = 1``, which is the same real number, and in the keras order the same
operations, since ``q`` is a value of the format) and gathered.

Keras-order inputs
------------------
``sf = rnd(s)`` is an exact integer rounding for integer steps (a float64
conversion first could double-round) and an exact rounding of the float64
value for float steps; ``p = rnd(sf / Df)`` is computed as ``rnd(RN(sf / Df))``,
which is the correctly rounded quotient because double rounding is innocuous
for division when the intermediate precision is at least ``2q + 2``
(``53 >= 2 * 24 + 2``): a quotient of two ``q``-bit numbers that is not itself a
midpoint of the ``q``-bit grid (subnormal grids included) is at least
``2**-(2q+1)`` (relatively) away from every such midpoint, farther than ``RN``
moves it.  The float32 path divides in float32 directly.

Staircase exponents ``floor(s / D)`` are exact integer divisions when ``D`` is a
ratio of integers (numerator below 2**62, denominator at most 2**20) and the
steps allow it; otherwise a float64 quotient is floored when it is farther
than its error bound from an integer, and the element goes to the oracle when
it is not.

Work is done in chunks of :data:`CHUNK` elements, so the memory used beyond
the output is bounded (a few MiB).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from mpmath.libmp import (
    libmpi,
    mpf_gt,
    mpf_shift,
    mpf_sub,
    round_ceiling,
)

from . import inputs, oracle
from .floats import Format, get_format, round_rational
from .intervals import fraction_interval, ln_interval, mpf_to_fraction, power_interval
from .orders import Order

__all__ = ["FastStats", "evaluate", "CHUNK", "round_to_format", "round_int_to_format"]

#: Elements processed per chunk.
CHUNK = 1 << 13

#: Arrays with fewer elements than this never build power tables (a table of
#: 4096 entries costs about as much as the double-double path on 2**17 steps;
#: evaluations with many elements repay it).
TABLE_MIN_ELEMENTS = 1 << 18

_U = 2.0**-53
_B64 = 2.0**-69  # relative error bound of the double-double path
_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's constant
_TABLE_BITS = 10
_TABLE = 1 << _TABLE_BITS
_PREC = 200  # bits of the interval computations of constants
_TABLE_PREC = 256  # bits of the chained interval products of the power tables
_TABLE_K = 12  # bits of the step consumed per power table
_B_TABLE = 2.0**-96  # relative error bound of the table path
_B_KERAS_TABLE = 2.0**-80  # the same with the keras residual factor
#: Assumed bound on the relative error of ``numpy.exp2`` in float64 (256 ulps;
#: checked on a sample at first use, see :func:`_hardware_ok`).
_EXP2_ERR = 2.0**-44
_T_LIMIT = 2200.0  # beyond this |t| every result is 0 or inf
_INT64_SAFE = 1 << 62
_DEN_MAX = 1 << 20  # exact staircase floors for D = num/den with den up to this


@dataclass
class FastStats:
    """Counters of :func:`evaluate`: elements seen, decided by the fast path,
    sent to the oracle, and distinct oracle calls made for the latter; with a
    schedule per element, the elements deferred to per-schedule evaluation."""

    elements: int = 0
    fast: int = 0
    oracle: int = 0
    oracle_calls: int = 0
    #: Elements the per-element kernels left to the evaluation one schedule
    #: at a time (which decides most of them itself, the rest by the oracle).
    deferred: int = 0


# ---------------------------------------------------------------------------
# Constants from interval arithmetic
# ---------------------------------------------------------------------------


def _dd(lo: Fraction, hi: Fraction) -> tuple[float, float]:
    """A double-double for an exact interval narrow relative to 2**-110."""
    mid = (lo + hi) / 2
    if mid == 0 or (hi - lo) > abs(mid) * Fraction(1, 1 << 110):
        raise ArithmeticError("constant enclosure too wide")  # pragma: no cover
    h = float(mid)
    return h, float(mid - Fraction(h))


def _mpf_pair(x: tuple[Any, Any]) -> tuple[Fraction, Fraction]:
    return mpf_to_fraction(x[0]), mpf_to_fraction(x[1])


def _split(a: np.ndarray | float) -> tuple[Any, Any]:
    """Veltkamp split: ``a = hi + lo`` with 26-bit ``hi``, exactly."""
    c = _SPLIT * a
    hi = c - (c - a)
    return hi, a - hi


@functools.cache
def _exp2_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``2**(j/1024)`` for ``j < 1024`` as double-doubles, hi part pre-split."""
    hi = np.empty(_TABLE)
    lo = np.empty(_TABLE)
    for j in range(_TABLE):
        enclosure = power_interval(Fraction(1), Fraction(2), Fraction(j, _TABLE), _PREC)
        hi[j], lo[j] = _dd(*_mpf_pair(enclosure))
    hh, hl = _split(hi)
    return hi, lo, hh, hl


@functools.cache
def _ln2_dd() -> tuple[float, float]:
    return _dd(*ln_interval(Fraction(2), _PREC))


def _log2_dd(base: Fraction, divisor: Fraction) -> tuple[float, float]:
    """``log2(base) / divisor`` as a double-double (relative error < 2**-105).

    ``ln(base)`` is enclosed to a relative width of ``2**-(_PREC + 8)``
    however close ``base`` is to 1, so the quotient is as narrow."""
    b_lo, b_hi = ln_interval(base, _PREC + 8)
    t_lo, t_hi = ln_interval(Fraction(2), _PREC + 8)
    # Both ends of ln(base) share its sign; ln 2 > 0; divisor > 0.
    if b_lo > 0:
        return _dd(b_lo / t_hi / divisor, b_hi / t_lo / divisor)
    return _dd(b_lo / t_lo / divisor, b_hi / t_hi / divisor)


def _mantissa_dd(x: Fraction) -> tuple[float, float, int]:
    """``|x| = 2**e (h + l)`` with ``1 <= h <= 2`` and ``h + l`` within 2**-106."""
    a = abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if a < Fraction(2) ** e:
        e -= 1
    m = a / Fraction(2) ** e
    h = float(m)
    return h, float(m - Fraction(h)), e


def _mpf_dd(x: Any) -> tuple[float, float, int]:
    """A positive mpf as ``2**e (h + l)``, ``1 <= h < 2``, ``|l| < 2**-52``,
    relative error below 2**-104 (``e`` saturated at ``+-2**60``)."""
    _, man, exp, bc = x
    man = int(man)
    drop = max(bc - 53, 0)
    top = man >> drop
    h = math.ldexp(top, -(min(bc, 53) - 1))
    keep = max(drop - 64, 0)  # the rest's top 64 bits are plenty
    l_ = math.ldexp(float((man - (top << drop)) >> keep), keep - (bc - 1))
    e = exp + bc - 1
    return h, l_, max(-(1 << 60), min(e, 1 << 60))  # beyond, every product is 0 or inf


@functools.lru_cache(maxsize=32)
def _power_table(base: Fraction, step: Fraction, start: Fraction, size: int) -> np.ndarray:
    """Rows ``(hh, hl, l, e)`` for ``a < size``: ``start * base**(a * step)`` is
    ``2**e (hh + hl + l)``, ``hh + hl`` (the Veltkamp split of a float64 in
    ``[1, 2)``) and ``l`` within 2**-104; from a chain of interval products at
    :data:`_TABLE_PREC` bits plus the bits of ``|step ln base|`` (relative width
    checked below 2**-180)."""
    # power_interval takes the exponent's logarithm to absolute precision, so
    # g's relative width is about 2**-prec whatever |step ln base| is.
    prec = _TABLE_PREC
    g = power_interval(Fraction(1), base, step, prec)
    x = fraction_interval(start, prec)
    rows = np.empty((size, 4))
    for a in range(size):
        rows[a, 0], rows[a, 2], rows[a, 3] = _mpf_dd(x[0])
        x = libmpi.mpi_mul(x, g, prec)
    if mpf_gt(mpf_sub(x[1], x[0], 64, round_ceiling), mpf_shift(x[0], -180)):
        raise ArithmeticError("power table enclosure too wide")  # pragma: no cover
    rows[:, 0], rows[:, 1] = _split(rows[:, 0].copy())
    return rows


# ---------------------------------------------------------------------------
# Exact roundings to a format, vectorised
# ---------------------------------------------------------------------------


def _round_scaled(
    v: np.ndarray, scale: np.ndarray | int, err: np.ndarray | int, fmt: Format
) -> tuple[np.ndarray, np.ndarray]:
    """Round ``v * 2**scale`` (``v`` finite, > 0) to ``fmt``, knowing only that the
    true value is within ``err`` units of ``v``'s 53-bit significand.

    Returns the rounded magnitudes (float64 holding ``fmt`` values, inf on
    overflow) and the mask of elements whose rounding is decided.
    """
    m, e = np.frexp(v)
    M = np.ldexp(m, 53).astype(np.int64)
    exp = e.astype(np.int64) - 53 + scale  # v * 2**scale = M * 2**exp
    e_top = exp + 52
    qexp = np.maximum(e_top, fmt.emin) - (fmt.precision - 1)
    shift = np.clip(qexp - exp, 1, 62)
    q = M >> shift
    rem = M - (q << shift)
    half = np.left_shift(np.int64(1), shift - 1)
    dist = np.abs(rem - half)
    decided = (dist > err) & (4 * err < half)
    q += (rem > half) | ((rem == half) & (q & 1 == 1))  # ties to even (exact inputs)
    with np.errstate(over="ignore"):
        val = np.ldexp(q.astype(np.float64), qexp)
    val[val >= math.ldexp(1.0, fmt.emax + 1)] = np.inf
    return val, decided


def _round_exact(v: np.ndarray, fmt: Format) -> np.ndarray:
    """Round finite float64 values to ``fmt`` exactly (zeros keep their sign)."""
    if fmt.precision == 53:
        return v
    out = v.copy()
    nz = np.isfinite(v) & (v != 0)
    if not nz.any():
        return out
    a = np.abs(v[nz])
    val, _ = _round_scaled(a, 0, 0, fmt)
    out[nz] = np.copysign(val, v[nz])
    return out


def round_to_format(v: np.ndarray, fmt: Format) -> np.ndarray:
    """float64 values rounded to ``fmt`` exactly (round to nearest even,
    zeros keep their sign, overflow to inf), as float64."""
    out = np.asarray(v, dtype=np.float64)
    if fmt.precision == 53:
        return out
    with np.errstate(invalid="ignore"):
        return _round_exact(out, fmt)


def round_int_to_format(s: np.ndarray, fmt: Format) -> np.ndarray:
    """int64 values rounded to ``fmt`` exactly, as float64 (inf on overflow)."""
    return _round_int(np.asarray(s, dtype=np.int64), fmt)


def _round_int(s: np.ndarray, fmt: Format) -> np.ndarray:
    """Round int64 values to ``fmt`` exactly, as float64 (inf on overflow)."""
    mag = np.abs(s).astype(np.uint64)  # -2**63 maps to 2**63
    bl = np.frexp(mag.astype(np.float64))[1].astype(np.int64)  # may be one too many
    bl -= (bl > 0) & ((mag >> np.maximum(bl - 1, 0).astype(np.uint64)) == 0)
    shift = np.maximum(bl - fmt.precision, 0).astype(np.uint64)
    q = mag >> shift
    rem = mag - (q << shift)
    half = np.where(shift > 0, np.left_shift(np.uint64(1), np.maximum(shift, 1) - np.uint64(1)),
                    np.uint64(1))
    up = (shift > 0) & ((rem > half) | ((rem == half) & (q & np.uint64(1) == 1)))
    q += up.astype(np.uint64)
    val = np.ldexp(q.astype(np.float64), shift.astype(np.int64))
    val[val > fmt.max_finite] = np.inf
    signed: np.ndarray = np.where(s < 0, -val, val)
    return signed


# ---------------------------------------------------------------------------
# Powers of two
# ---------------------------------------------------------------------------


def _pow2_f64(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``2**t ~ w * 2**E`` with ``w`` in ``[0.999, 2.001]`` (relative error in the
    module docstring); ``t`` finite with ``|t| < 2**40``."""
    hi = _exp2_table()[0]
    n = np.rint(t * _TABLE)
    x = (t - n * (1.0 / _TABLE)) * _ln2_dd()[0]
    p = 1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24))))
    ni = n.astype(np.int64)
    return hi[ni & (_TABLE - 1)] * p, ni >> _TABLE_BITS


def _two_prod(a: np.ndarray, bh: float | np.ndarray, bl: float | np.ndarray,
              b: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker: ``a * b = p + e`` exactly, ``b = bh + bl`` already split."""
    ah, al = _split(a)
    p = a * b
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _pow2_dd(
    a: np.ndarray, c: tuple[float, float], scale: tuple[float, float, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Ih + Il) * 2**(a * c)`` as ``(R, Re, E)`` meaning ``(R + Re) * 2**E``,
    ``|Re| <= ulp(R) / 2``, ``R`` in ``[0.99, 4.1)``; relative error ``< B``."""
    ch, cl = c
    chh, chl = _split(ch)
    th, te = _two_prod(a, chh, chl, ch)
    tl = te + a * cl
    n = np.rint(th * _TABLE)
    xp = th - n * (1.0 / _TABLE)  # exact
    l2h, l2l = _ln2_dd()
    l2hh, l2hl = _split(l2h)
    xh, xe = _two_prod(xp, l2hh, l2hl, l2h)
    xl = xe + (xp * l2l + tl * l2h)
    y = xh + xl
    q = (y * y) * (0.5 + y * (1.0 / 6 + y * (1.0 / 24 + y * (1.0 / 120))))
    lo = xl + q
    hi_t, lo_t, hh_t, hl_t = _exp2_table()
    ni = n.astype(np.int64)
    j = ni & (_TABLE - 1)
    th_j, tl_j = hi_t[j], lo_t[j]
    p1, e1 = _two_prod(xh, hh_t[j], hl_t[j], th_j)
    s = th_j + p1
    s1 = p1 - (s - th_j)
    low = (((tl_j + th_j * lo) + e1) + s1) + tl_j * xh
    ih, il, ei = scale
    if ih != 1.0 or il != 0.0:
        ihh, ihl = _split(ih)
        p2, e2 = _two_prod(s, ihh, ihl, ih)
        low = e2 + (s * il + (low * ih + low * il))
        s = p2
    r = s + low
    re = low - (r - s)
    return r, re, (ni >> _TABLE_BITS) + ei


def _table_product(a: np.ndarray, tables: list[np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``prod_i T_i[(a >> 12 i) & 4095]`` as ``(R, Re, E)``: value ``(R + Re) 2**E``.

    Each factor is exact to 2**-104; each double-double product (Dekker's
    exact product of the high parts, the cross terms in float64, ``l l'``
    dropped) adds below 2**-101.5; so the total is below ``_B_TABLE``."""
    mask = (1 << _TABLE_K) - 1
    rows = tables[0].take(a & mask if len(tables) > 1 else a, axis=0)
    hh, hl, l_, e = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    h = hh + hl
    for i, t in enumerate(tables[1:], start=1):
        j = a >> (_TABLE_K * i)
        if i + 1 < len(tables):
            j &= mask
        rows = t.take(j, axis=0)
        hh2, hl2 = rows[:, 0], rows[:, 1]
        h2 = hh2 + hl2
        if i > 1:
            hh, hl = _split(h)
        p = h * h2
        err = ((hh * hh2 - p) + hh * hl2 + hl * hh2) + hl * hl2
        l_ = err + (h * rows[:, 2] + l_ * h2)
        h = p
        e = e + rows[:, 3]
    r = h + l_
    return r, l_ - (r - h), np.clip(e, -2.0**40, 2.0**40).astype(np.int64)


def _decide_f64(r: np.ndarray, re: np.ndarray, e: np.ndarray, bound: float = _B64
                ) -> tuple[np.ndarray, np.ndarray]:
    """Rounding test of ``(r + re) * 2**e`` to float64: ``r`` positive in
    ``[0.5, 8)``, ``|re| <= ulp(r) / 2``, relative error below ``bound``.

    Decided with result ``r * 2**e`` when ``|re| + bound * r < ulp(r) / 2``
    (and not ``re < 0`` with ``r`` a power of two, where the binade below is
    finer), the result being normal; results below half the smallest
    subnormal are decided as 0, other subnormal results are not decided."""
    pw = (r.view(np.int64) & np.int64(0x7FF0000000000000)).view(np.float64)  # 2**exponent(r)
    ok = np.abs(re) + bound * r < pw * _U
    ok &= (r != pw) | (re >= 0)
    val = np.ldexp(r, e)
    low = e < -1018
    if low.any():
        er = np.frexp(pw[low])[1].astype(np.int64) - 1 + e[low]
        ok[low] &= er <= -1076  # er < -1022: subnormal, undecided unless far below
        val[low] = np.where(er <= -1076, 0.0, val[low])
    return val, ok


# ---------------------------------------------------------------------------
# The schedule
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Everything about a schedule that does not depend on the step."""

    fmt: Format
    order: Order
    staircase: bool
    args: tuple[Any, Any, Any]  # exact I, D, r
    kind: str  # "regular", "constant" or "oracle"
    const: float = 0.0  # the value of a constant schedule
    negative: bool = False
    c: tuple[float, float] = (0.0, 0.0)  # log2(r)/D (or log2 r, log2 rf), double-double
    scale: tuple[float, float, int] = (1.0, 0.0, 0)  # |I| = 2**e (h + l)
    i_fmt: float = 0.0  # If (keras order)
    d_fmt: float = 0.0  # Df (keras order)
    d_int: tuple[int, int] | None = None  # D = num/den with both < 2**62
    log2_i: float = 0.0
    tables: bool = False  # use power tables for integer exponents (float64)
    f32_exp2: bool = False  # float32 through numpy.exp2 and IEEE conversions


def _plan(I: Any, D: Fraction, r: Any, fmt: Format, order: str, staircase: bool,
          tables: bool) -> _Plan:
    d_int = None
    if D.numerator < _INT64_SAFE and D.denominator <= _DEN_MAX:
        d_int = (D.numerator, D.denominator)
    base: dict[str, Any] = dict(fmt=fmt, order=order, staircase=staircase, args=(I, D, r),
                                tables=tables, d_int=d_int)
    if order == "keras":
        I_, r_ = (inputs.to_exact(round_rational(x, fmt)) if isinstance(x, Fraction)
                  else x for x in (I, r))
        d_fmt = round_rational(D, fmt)
    else:
        I_, r_, d_fmt = I, r, 0.0
    if not (isinstance(I_, Fraction) and abs(_mantissa_dd(I_)[2]) < 1000):
        return _Plan(**base, kind="oracle", d_fmt=d_fmt)
    if not isinstance(r_, Fraction) or r_ <= 0:
        return _Plan(**base, kind="oracle", d_fmt=d_fmt)
    if order == "keras" and (math.isinf(d_fmt) or d_fmt == 0):
        return _Plan(**base, kind="oracle", d_fmt=d_fmt)
    if r_ == 1:
        return _Plan(**base, kind="constant", const=round_rational(I_, fmt))
    divisor = Fraction(1) if staircase or order == "keras" else D
    # c = log2(r) / divisor must be a normal double-double with room to spare
    # (D = 5e-324 makes it about 2**1074): otherwise the oracle decides.
    ln_lo, _ = ln_interval(r_, 16)
    c_mag = abs(ln_lo) / divisor
    if not Fraction(1, 1 << 900) < c_mag < (1 << 900):
        return _Plan(**base, kind="oracle", d_fmt=d_fmt)
    h, l_, e = _mantissa_dd(I_)
    return _Plan(
        **base, kind="regular", f32_exp2=fmt.name == "float32" and _hardware_ok(),
        negative=I_ < 0, c=_log2_dd(r_, divisor), scale=(h, l_, e),
        i_fmt=float(I_) if order == "keras" else 0.0, d_fmt=d_fmt,
        log2_i=e + math.log2(h),
    )


def _floor_div(s: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """``floor(s / D)`` for int64 or float64 ``s`` as int64, and the mask of
    elements where it is proven (the others go to the oracle)."""
    if plan.d_int is None:
        return _floor_div_approx(s.astype(np.float64), plan)
    num, den = plan.d_int
    if s.dtype.kind == "f":
        if den != 1:
            return _floor_div_approx(s, plan)
        # floor(s / D) = floor(floor(s) / D) for an integer D > 0.
        ok = np.isfinite(s) & (np.abs(s) < 2.0**62)
        fl = np.floor(np.where(ok, s, 0.0)).astype(np.int64)
        return np.floor_divide(fl, num), ok
    limit = _INT64_SAFE // den
    if _all_below(s, limit):
        return np.floor_divide(s * den if den != 1 else s, num), np.ones(s.shape, bool)
    ok = (s > -limit) & (s < limit)
    return np.floor_divide(np.where(ok, s, 0) * den, num), ok


def _floor_div_approx(s: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """Floor of the float64 quotient ``RN(s / RN(D))`` (``s`` float64, exact or
    one rounding from an integer: relative error ``<= 3.0001 u``), accepted
    where the quotient is farther than ``4 u |x|`` from an integer."""
    ok = np.isfinite(s)
    x = np.where(ok, s, 0.0) / float(plan.args[1])
    fl = np.floor(x)
    margin = 4 * _U * np.abs(x)
    ok &= (x - fl > margin) & (fl + 1 - x > margin) & (np.abs(x) < 2.0**52)
    return np.where(ok, fl, 0).astype(np.int64), ok


def _exponent_operand(steps: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """The float64 ``a`` of ``t = a * c`` and the mask of elements handled here.

    For the float64 format ``a`` must be exact; for the other formats a
    rounding of an integer step to float64 is covered by the bound."""
    fmt, order = plan.fmt, plan.order
    if order == "keras":
        return _keras_exponent(steps, plan)
    if plan.staircase:
        p, ok = _floor_div(steps, plan)
        if fmt.precision == 53:
            ok &= np.abs(p) < (1 << 53)
        return p.astype(np.float64), ok
    if steps.dtype.kind == "f":
        return np.where(np.isfinite(steps), steps, 0.0), np.isfinite(steps)
    ok = np.ones(steps.shape, bool)
    if fmt.precision == 53:
        ok = np.abs(steps) < (1 << 53)
    return steps.astype(np.float64), ok


def _keras_exponent(steps: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """``p = rnd(rnd(s) / Df)`` (floored when staircase), exactly, as float64."""
    p = _keras_p(steps, plan)
    ok = np.isfinite(p)
    return np.where(ok, p, 0.0), ok


def _keras_p(steps: np.ndarray, plan: _Plan) -> np.ndarray:
    fmt = plan.fmt
    if fmt.name == "float32" and steps.dtype.kind != "f" and _all_below(steps, 1 << 24):
        # Integers below 2**24 convert exactly; numpy's float32 division is IEEE.
        p = (steps.astype(np.float32) / np.float32(plan.d_fmt)).astype(np.float64)
        return np.floor(p) if plan.staircase else p
    if steps.dtype.kind == "f":
        sf = _round_exact(steps, fmt)
    elif fmt.precision == 53 and _all_below(steps, 1 << 53):
        sf = steps.astype(np.float64)  # exact
    else:
        sf = _round_int(steps, fmt)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = _round_exact(sf / plan.d_fmt, fmt)
    if plan.staircase:
        p = np.floor(p)
    return p


@functools.cache
def _exp2_sample_ok() -> bool:
    """``numpy.exp2`` within a sixteenth of the assumed bound on a sample,
    measured against the proven double-double path."""
    rng = np.random.default_rng(12345)
    t = np.concatenate([rng.uniform(-1000, 1000, 4096), rng.uniform(-1, 1, 4096),
                        np.arange(-2048, 2048) / 2])
    r, re, e = _pow2_dd(t, (1.0, 0.0), (1.0, 0.0, 0))
    ref = np.ldexp(r, e)
    got = np.exp2(t)
    rel = np.abs(got - ref) / ref
    return bool(np.all(rel < _EXP2_ERR / 16))


def _hardware_ok() -> bool:
    """Subnormal float32 arithmetic and conversions work (no flush-to-zero or
    denormals-are-zero mode set by another library) and ``exp2`` is sane."""
    x = np.array([2.0**-140], np.float64)
    y = x.astype(np.float32)
    return (float(y[0]) == 2.0**-140 and float((y * np.float32(0.5))[0]) == 2.0**-141
            and _exp2_sample_ok())


def _regular_chunk(steps: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """Values (float64, signed) and the decided mask for one chunk."""
    fmt = plan.fmt
    if plan.f32_exp2:
        got = _chunk_f32(steps, plan)
        if got is not None:
            return got
    if fmt.precision == 53:
        val, ok = _chunk_f64(steps, plan)
    else:
        a, ok = _exponent_operand(steps, plan)
        val, dec = _chunk_small(a, plan)
        ok &= dec
    if plan.order == "keras":
        val = val * plan.i_fmt if fmt.precision == 53 else _round_exact(val * plan.i_fmt, fmt)
    elif plan.negative:
        val = -val
    return val, ok


def _chunk_f32(steps: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray] | None:
    """The float32 path through ``numpy.exp2`` and IEEE float64 -> float32
    conversions (module docstring, "float32 through exp2").

    Returns None when the chunk needs the general path (integer steps of 2**24
    or more in the keras order, non-finite or huge exponents)."""
    if plan.order == "keras":
        if steps.dtype.kind != "f" and not _all_below(steps, 1 << 24):
            return None
        p = steps.astype(np.float32)  # exact below 2**24; one IEEE rounding for floats
        p /= np.float32(plan.d_fmt)
        if plan.staircase:
            np.floor(p, out=p)
        t = p.astype(np.float64)
        e = 0
    else:
        if plan.staircase:
            a, ok = _floor_div(steps, plan)
            if not ok.all():
                return None
            t = a.astype(np.float64)
        else:
            t = steps.astype(np.float64)
        e = plan.scale[2]
    t *= plan.c[0]
    if e:
        t += e
    tmax = float(np.max(np.abs(t))) if t.size else 0.0
    if not tmax < 2.0**40:
        return None
    eps = (3.0 * (tmax + abs(e)) + 8.0) * _U + _EXP2_ERR
    w = np.exp2(t, out=t)
    if plan.order == "exact":
        w *= -plan.scale[0] if plan.negative else plan.scale[0]
    lo = (w * (1.0 - eps)).astype(np.float32)
    w *= 1.0 + eps
    ok = lo == w.astype(np.float32)
    if plan.order == "keras":
        lo *= np.float32(plan.i_fmt)
    return lo, ok


def _all_below(steps: np.ndarray, limit: int) -> bool:
    """True when every integer step has magnitude below ``limit``."""
    return steps.size == 0 or (int(steps.max()) < limit and int(steps.min()) > -limit)


def _chunk_small(a: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    t = a * plan.c[0]
    big = ~(np.abs(t) < 2.0**40)
    t[big] = 0.0
    w, E = _pow2_f64(t)
    err = (3.0 * np.abs(t) + 17.0).astype(np.int64)
    if plan.order == "keras":
        val, dec = _round_scaled(w, E, err, plan.fmt)
    else:
        h, _, e = plan.scale
        val, dec = _round_scaled(w * h, E + e, err, plan.fmt)
    return val, dec & ~big


def _int_operand(ai: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """``|ai|`` and whether it was negated, when every element has the same
    sign and magnitude below 2**36 (three power tables); None otherwise."""
    if ai.size == 0:
        return None
    lo, hi = int(ai.min()), int(ai.max())
    if lo <= -(1 << 36) or hi >= 1 << 36 or lo < 0 < hi:
        return None
    return (-ai, True) if lo < 0 else (ai, False)


def _tables_for(plan: _Plan, negated: bool, count: int,
                divisor: Fraction | None = None) -> list[np.ndarray]:
    """The power tables of ``plan`` (keras order: of ``rf``, divided by
    ``divisor`` when given, else by 1)."""
    I, D, r = plan.args
    if plan.order == "keras":
        base = inputs.to_exact(round_rational(r, plan.fmt))
        start, divisor = Fraction(1), divisor or Fraction(1)
    else:
        base, start = r, abs(I)
        divisor = Fraction(1) if plan.staircase else D
    if negated:
        base = 1 / base
    size = 1 << _TABLE_K
    return [_power_table(base, Fraction(1 << (_TABLE_K * i)) / divisor,
                         start if i == 0 else Fraction(1), size) for i in range(count)]


def _tables_f64(steps: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray] | None:
    """The power-table path for a chunk (integer exponents), or None."""
    ok = np.ones(steps.shape, bool)
    p = None
    if plan.order == "exact":
        if plan.staircase:
            ai, ok = _floor_div(steps, plan)
        elif steps.dtype.kind == "f":
            return None
        else:
            ai = steps
    else:
        p = _keras_p(steps, plan)
        if plan.staircase:
            ok = np.abs(p) < 2.0**36  # NaN and inf fail
            ai, p = np.where(ok, p, 0.0).astype(np.int64), None
        elif steps.dtype.kind == "f":
            return None
        else:
            ai = steps
    op = _int_operand(ai)
    if op is None:
        return None
    ai, negated = op
    count = max(1, -(-int(ai.max()).bit_length() // _TABLE_K))
    if p is None:
        r, re, E = _table_product(ai, _tables_for(plan, negated, count))
        val, dec = _decide_f64(r, re, E, _B_TABLE)
        return val, ok & dec
    return _keras_residual(steps, p, ai, negated, count, plan)


def _keras_residual(steps: np.ndarray, p: np.ndarray, ai: np.ndarray, negated: bool,
                    count: int, plan: _Plan) -> tuple[np.ndarray, np.ndarray] | None:
    """Keras order, float64, continuous, integer steps: ``rf**p`` for
    ``p = RN(s / Df)`` from the power tables of ``rf**(s / Df)`` and the
    residual ``delta = p - s / Df``: ``rf**p = rf**(s/Df) (1 + kappa + O(kappa**2))``
    with ``kappa = delta ln rf``.

    ``P + e = p Df`` exactly (Dekker), ``P - s`` is exact (Sterbenz: ``P`` is
    within ``2u`` of ``s``), so ``delta`` is known to ``2u`` and ``kappa`` to ``5u``
    relatively; ``|kappa| <= u |p ln rf| <= 2**-42`` once ``|t| <= 2200`` is
    checked, so ``kappa**2 / 2 < 2**-85`` and the rounding errors of adding it
    are below ``2**-94``: with the tables' ``2**-99`` the bound ``2**-80`` holds.
    None when the chunk does not qualify (then the double-double path runs).
    """
    d = plan.d_fmt
    p_max = float(ai.max()) / d * (1 + 2.0**-50)
    if not (2.0**-900 < d < 2.0**900 and p_max * abs(plan.c[0]) <= _T_LIMIT):
        return None
    r, re, E = _table_product(ai, _tables_for(plan, negated, count, Fraction(d)))
    dh, dl = _split(d)
    big_p, e = _two_prod(p, dh, dl, d)
    kappa = (((big_p - steps) + e) / d) * (plan.c[0] * _ln2_dd()[0])
    low = re + r * kappa
    r2 = r + low
    return _decide_f64(r2, low - (r2 - r), E, _B_KERAS_TABLE)


def _chunk_f64(steps: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes and the decided mask for float64: tables or double-double."""
    if plan.tables:
        got = _tables_f64(steps, plan)
        if got is not None:
            return got
    a, ok = _exponent_operand(steps, plan)
    val, dec = _chunk_dd(a, plan)
    return val, ok & dec


def _chunk_dd(a: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """The double-double path: ``I 2**(a c)`` decided for float64."""
    scale = (1.0, 0.0, 0) if plan.order == "keras" else plan.scale
    log2_i = 0.0 if plan.order == "keras" else plan.log2_i
    t_approx = a * plan.c[0]
    out_range = ~(np.abs(t_approx) <= _T_LIMIT)
    r, re, E = _pow2_dd(np.where(out_range, 0.0, a), plan.c, scale)
    val, dec = _decide_f64(r, re, E)
    if out_range.any():
        big = t_approx[out_range] + log2_i > 0
        val[out_range] = np.where(big, np.inf, 0.0)
        dec[out_range] = True
    return val, dec


# ---------------------------------------------------------------------------
# Oracle fallback
# ---------------------------------------------------------------------------


class _Fallback:
    """Oracle evaluations shared by equal keys across the chunks of a call."""

    def __init__(self, plan: _Plan, stats: FastStats):
        self.plan = plan
        self.stats = stats
        self.cache: dict[Any, float] = {}

    def fill(self, out: np.ndarray, idx: np.ndarray, steps: np.ndarray,
             keys: np.ndarray) -> None:
        """Set ``out[idx]`` from the oracle; row ``keys[i]`` (a tag and a value,
        see :func:`_keys`) is the key of ``idx[i]``: equal keys, equal results."""
        if idx.size == 0:
            return
        self.stats.oracle += int(idx.size)
        tags = keys[:, 0]
        if tags.min() == tags.max():  # one key space: a faster one-dimensional unique
            uniq, first, inverse = np.unique(keys[:, 1], return_index=True,
                                             return_inverse=True)
            rows = [(int(tags[0]), v) for v in uniq.tolist()]
        else:
            uniq, first, inverse = np.unique(keys, axis=0, return_index=True,
                                             return_inverse=True)
            rows = list(map(tuple, uniq.tolist()))
        values = np.empty(len(rows))
        for k, (key, pos) in enumerate(zip(rows, first.tolist(), strict=True)):
            got = self.cache.get(key)
            if got is None:
                step = steps[idx[pos]]
                I, D, r = self.plan.args
                got = oracle.evaluate_exact(
                    (I, D, r, inputs.to_exact(step, "step")), self.plan.staircase,
                    self.plan.fmt, self.plan.order)
                self.cache[key] = got
                self.stats.oracle_calls += 1
            values[k] = got
        out[idx] = _to_format(values, self.plan.fmt)[inverse.reshape(-1)]


# Tags of the key spaces of :func:`_keys` (a key is a pair: tag, int64 value).
_KEY_STEP_INT, _KEY_STEP_FLOAT, _KEY_P_BITS, _KEY_FLOOR, _KEY_UINT64 = range(5)


def _tagged(tag: int | np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.stack([np.broadcast_to(np.asarray(tag, np.int64), values.shape),
                     values.astype(np.int64, copy=False)], axis=1)


def _keys(steps: np.ndarray, plan: _Plan) -> np.ndarray:
    """Keys (rows: tag, value) shared by elements with equal results: the bits
    of the exponent ``p`` (keras order; ``Df`` is a value of the format even for
    special schedules), ``floor(s / D)`` where it is known exactly (exact-order
    staircase), else the step itself."""
    if plan.order == "keras":
        with np.errstate(all="ignore"):
            return _tagged(_KEY_P_BITS, _keras_p(steps, plan).view(np.int64))
    if steps.dtype.kind == "f":
        own = _tagged(_KEY_STEP_FLOAT, steps.view(np.int64))
    else:
        own = _tagged(_KEY_STEP_INT, steps)
    if plan.staircase:
        with np.errstate(all="ignore"):
            fl, ok = _floor_div(steps, plan)
        own[ok] = _tagged(_KEY_FLOOR, fl[ok])
    return own


# ---------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------


def _as_steps(steps: Any) -> np.ndarray:
    arr = np.asarray(steps)
    kind = arr.dtype.kind
    if kind == "b" or kind not in "iufO" and arr.dtype != get_format("bfloat16").dtype:
        raise TypeError(f"steps must be an array of integers or floats; got dtype {arr.dtype}")
    return arr


def _convert(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 or float64 steps, and the mask of elements that could not be
    converted exactly (uint64 above 2**63 - 1), which go to the oracle."""
    kind = chunk.dtype.kind
    if kind == "f" or kind == "V":
        return chunk.astype(np.float64), np.zeros(chunk.shape, bool)
    if chunk.dtype == np.uint64:
        huge = chunk > np.uint64(2**63 - 1)
        return np.where(huge, 0, chunk).astype(np.int64), huge
    return chunk.astype(np.int64), np.zeros(chunk.shape, bool)


def _to_format(val: np.ndarray, fmt: Format) -> np.ndarray:
    """float64 values of ``fmt`` to ``fmt``'s dtype (exact), canonical NaN."""
    out = val.astype(fmt.dtype)
    nan = np.isnan(val)
    if nan.any():
        bits = out.view(f"u{fmt.width // 8}")
        bits[nan] = fmt.nan_bits
    return out


def evaluate(
    initial_learning_rate: Any,
    decay_steps: Any,
    decay_rate: Any,
    steps: Any,
    *,
    staircase: bool = False,
    dtype: Any = "float32",
    order: str = "keras",
    stats: FastStats | None = None,
) -> np.ndarray:
    """The schedule at every element of ``steps``, bit-identical to the oracle.

    ``steps`` is an array (any shape) or anything ``numpy.asarray`` accepts, of
    integers or floats; each element is taken exactly.  Returns an array of the
    format's dtype and ``steps``' shape.  ``stats``, if given, is updated.

    ``initial_learning_rate``, ``decay_steps`` and ``decay_rate`` may be numpy
    arrays too (a list is not a schedule parameter, as everywhere else): the
    four inputs are broadcast together and every element is its own schedule;
    the result has the broadcast shape.  Each distinct schedule is evaluated
    once over its elements.

    >>> evaluate(0.1, 100000, 0.96, [0, 10**6], dtype="float64", order="exact")
    array([0.1       , 0.06648326])
    >>> evaluate(np.array([0.1, 0.2]), 1000, np.array([[0.5], [0.25]]), 1000,
    ...          dtype="float64", order="exact")
    array([[0.05 , 0.1  ],
           [0.025, 0.05 ]])
    """
    if any(_is_array_input(x) for x in (initial_learning_rate, decay_steps, decay_rate)):
        return _evaluate_broadcast(initial_learning_rate, decay_steps, decay_rate, steps,
                                   staircase=staircase, dtype=dtype, order=order, stats=stats)
    inputs.check_staircase(staircase)
    D = inputs.check_decay_steps(decay_steps)
    fmt = get_format(dtype)
    if order not in oracle.ORDERS:
        raise ValueError(f"order must be 'exact' or 'keras'; got {order!r}")
    I = inputs.to_exact(initial_learning_rate, "initial_learning_rate")
    r = inputs.to_exact(decay_rate, "decay_rate")
    arr = _as_steps(steps)
    stats = stats if stats is not None else FastStats()
    plan = _plan(I, D, r, fmt, order, bool(staircase), arr.size >= TABLE_MIN_ELEMENTS)
    flat = arr.reshape(-1)
    result = np.empty(flat.shape, fmt.dtype)
    fallback = _Fallback(plan, stats)
    if arr.dtype.kind == "O":
        _object_steps(flat, result, fallback)
    elif _kernel_evaluate(flat, result, plan, fallback):
        pass
    else:
        gather = _staircase_table(flat, plan, stats)
        for start in range(0, flat.size, CHUNK):
            chunk, out = flat[start:start + CHUNK], result[start:start + CHUNK]
            if gather is not None and _gather_chunk(chunk, out, plan, *gather):
                stats.fast += int(chunk.size)
            else:
                _evaluate_chunk(chunk, out, plan, fallback)
    stats.elements += int(flat.size)
    return result.reshape(arr.shape)


#: Staircase arrays at least this large are evaluated once per distinct exponent.
GATHER_MIN_ELEMENTS = 4096


def _staircase_exponents(steps: np.ndarray, plan: _Plan) -> np.ndarray | None:
    """The integer exponent of every int64 step of a staircase schedule
    (``floor(s / D)``; keras: ``floor(rnd(rnd(s) / Df))``), or None when one
    of them is not proven, not finite or not below ``2**62`` in magnitude (a
    float exponent of 2**63 or more has no int64, and the table's index
    arithmetic must not overflow)."""
    if plan.order == "keras":
        with np.errstate(all="ignore"):
            p = _keras_p(steps, plan)
        if not (np.abs(p) < 2.0**62).all():  # False for NaN too
            return None
        return p.astype(np.int64)
    q, ok = _floor_div(steps, plan)
    return q if ok.all() else None


def _staircase_table(flat: np.ndarray, plan: _Plan, stats: FastStats
                     ) -> tuple[int, np.ndarray] | None:
    """``(lo, table)`` with ``table[q - lo]`` the value for exponent ``q``, for
    every exponent the integer steps of ``flat`` can have; None when the case
    does not qualify (not staircase, special parameters, float steps, or more
    distinct exponents than a quarter of the elements).

    A staircase schedule depends on the step only through its exponent ``q``,
    which is monotone in the step, so the exponents of the smallest and largest
    step bound them all.  The value for ``q`` is exactly the continuous
    schedule at step ``q`` with ``D = 1`` in both orders (keras: ``q`` is a
    value of the format, so ``rnd(q) = q`` and ``rnd(q / 1) = q``): the table
    comes from this module's own continuous path, bit for bit."""
    if (not plan.staircase or plan.kind != "regular" or flat.size < GATHER_MIN_ELEMENTS
            or flat.dtype.kind not in "iu" or flat.dtype == np.uint64):
        return None
    ends = _staircase_exponents(np.array([flat.min(), flat.max()], dtype=np.int64), plan)
    if ends is None:
        return None
    lo, hi = int(ends[0]), int(ends[1])  # Python ints: the span cannot overflow
    if hi - lo >= flat.size // 4:
        return None
    I, _, r = plan.args
    table = evaluate(I, 1, r, np.arange(lo, hi + 1, dtype=np.int64), staircase=False,
                     dtype=plan.fmt, order=plan.order, stats=stats)
    stats.elements -= table.size  # the caller counts its own elements
    stats.fast -= table.size
    return lo, table


def _gather_chunk(raw: np.ndarray, out: np.ndarray, plan: _Plan, lo: int, table: np.ndarray
                  ) -> bool:
    q = _staircase_exponents(raw.astype(np.int64), plan)
    if q is None:
        return False
    out[:] = table[q - lo]
    return True


def _object_steps(flat: np.ndarray, out: np.ndarray, fallback: _Fallback) -> None:
    """Steps given as Python objects (e.g. ints beyond int64): the oracle, one
    call per distinct exact value."""
    plan, stats = fallback.plan, fallback.stats
    I, D, r = plan.args
    seen: dict[Any, float] = {}
    result = np.empty(flat.size)
    for i, x in enumerate(flat.tolist()):
        s = inputs.to_exact(x, "step")
        got = seen.get(s)
        if got is None:
            got = oracle.evaluate_exact((I, D, r, s), plan.staircase, plan.fmt, plan.order)
            seen[s] = got
            stats.oracle_calls += 1
        result[i] = got
    out[:] = _to_format(result, plan.fmt)
    stats.oracle += int(flat.size)


def _evaluate_chunk(raw: np.ndarray, out: np.ndarray, plan: _Plan, fallback: _Fallback) -> None:
    steps, unconvertible = _convert(raw)
    if plan.kind == "constant":
        out[:] = plan.const
        fallback.stats.fast += int(raw.size)
        return
    if plan.kind == "oracle":
        ok = np.zeros(raw.shape, bool)
    else:
        with np.errstate(all="ignore"):
            val, ok = _regular_chunk(steps, plan)
            out[:] = val  # exact where ok: val holds values of the format
        ok &= ~unconvertible
        fallback.stats.fast += int(np.count_nonzero(ok))
    undecided = np.flatnonzero(~ok & ~unconvertible)
    if undecided.size:
        fallback.fill(out, undecided, raw, _keys(steps[undecided], plan))
    if unconvertible.any():  # uint64 above 2**63 - 1: keyed by value, disjoint from int64
        where = np.flatnonzero(unconvertible)
        fallback.fill(out, where, raw, _tagged(_KEY_UINT64, raw[where].view(np.int64)))


# ---------------------------------------------------------------------------
# Compiled kernels
# ---------------------------------------------------------------------------

#: Arrays with fewer elements than this stay on the numpy path (which needs
#: no compiler): scalar work never imports numba.
KERNEL_MIN_ELEMENTS = 1 << 12

#: Undecided indices collected per kernel call before the oracle is asked.
_UNDECIDED_BUFFER = 1 << 12

_KERNEL_STEP_DTYPES = (np.dtype(np.int64), np.dtype(np.int32), np.dtype(np.float64),
                       np.dtype(np.float32))


@functools.cache
def kernels() -> Any:
    """The compiled-kernel module, or None when numba cannot be imported (or
    ``EXPDECAY_KERNELS=0`` in the environment switches the kernels off)."""
    import os

    if os.environ.get("EXPDECAY_KERNELS", "1") == "0":
        return None
    try:
        from . import _kernels
    except ImportError:
        return None
    return _kernels


@functools.cache
def _kernel_tables() -> tuple[np.ndarray, ...]:
    mod = kernels()
    hi, lo, hh, hl = _exp2_table()
    return hi, lo, hh, hl, mod.pow2_table()


def _kernel_steps(flat: np.ndarray) -> np.ndarray | None:
    """``flat`` in a dtype the kernels take (a view or a copy), or None."""
    if flat.dtype in _KERNEL_STEP_DTYPES:
        return np.ascontiguousarray(flat)
    kind = flat.dtype.kind
    if kind == "u" and flat.dtype.itemsize == 8:
        if flat.size and int(flat.max()) > 2**63 - 1:
            return None
        return flat.astype(np.int64)
    if kind in "iu":
        return flat.astype(np.int64)
    if kind == "f" or flat.dtype == get_format("bfloat16").dtype:
        return flat.astype(np.float64)
    return None


def _kernel_evaluate(flat: np.ndarray, result: np.ndarray, plan: _Plan,
                     fallback: _Fallback) -> bool:
    """Evaluate a regular schedule with the compiled kernels; False when they
    do not apply (small array, numba missing, special schedule, steps dtype)."""
    if plan.kind != "regular" or flat.size < KERNEL_MIN_ELEMENTS:
        return False
    mod = kernels()
    if mod is None:
        return False
    steps = _kernel_steps(flat)
    if steps is None:
        return False
    run_kernel(steps, result, plan, fallback)
    return True


def run_kernel(steps: np.ndarray, result: np.ndarray, plan: _Plan, fallback: _Fallback) -> None:
    """The kernel loop: compiled evaluation, oracle for the undecided."""
    mod = kernels()
    hi, lo, hh, hl, pow2 = _kernel_tables()
    fmt, keras = plan.fmt, plan.order == "keras"
    num, den = plan.d_int if plan.d_int is not None else (0, 1)
    d_float = float(plan.args[1]) if plan.args[1] < 2**1000 else math.inf
    h, l_, e = plan.scale
    buf = np.empty(min(_UNDECIDED_BUFFER, max(steps.size, 1)), np.int64)
    l2h, l2l = _ln2_dd()
    pos, n = 0, steps.size
    stats = fallback.stats
    # int64 steps of float32/float64 go through the block kernels (the loops
    # vectorise); other step dtypes and formats through the per-element ones.
    block = (steps.dtype == np.int64 and fmt.name in ("bfloat16", "float32", "float64")
             and os.environ.get("EXPDECAY_BLOCK_KERNELS", "1") != "0")
    while pos < n:
        if block and fmt.precision == 8:
            nxt, count = mod.bf16_block_kernel(
                steps, result.view(np.uint16), pos, buf, keras, plan.staircase, plan.c[0],
                h, e, plan.negative, plan.log2_i, plan.i_fmt, plan.d_fmt, num, den, d_float,
                hi, l2h, pow2)
        elif block and fmt.precision == 53:
            nxt, count = mod.f64_block_kernel(
                steps, result, pos, buf, keras, plan.staircase, plan.c[0], plan.c[1],
                h, l_, e, plan.negative, plan.log2_i, plan.i_fmt, plan.d_fmt, num, den,
                d_float, hi, lo, hh, hl, l2h, l2l, pow2)
        elif block:
            nxt, count = mod.f32_block_kernel(
                steps, result.view(np.uint32), result.view(np.float32), pos, buf, keras,
                plan.staircase, plan.c[0], h, e, plan.negative, plan.log2_i, plan.i_fmt,
                plan.d_fmt, num, den, d_float, hi, l2h, pow2)
        elif fmt.precision == 53:
            nxt, count = mod.f64_kernel(
                steps, result, pos, buf, keras, plan.staircase, plan.c[0], plan.c[1],
                h, l_, e, plan.negative, plan.log2_i, plan.i_fmt, plan.d_fmt, num, den,
                d_float, hi, lo, hh, hl, l2h, l2l, pow2)
        else:
            bias = 1 - fmt.emin
            out = result.view(np.uint16 if fmt.width == 16 else np.uint32)
            nxt, count = mod.small_kernel(
                steps, out, pos, buf, fmt.precision, fmt.emin, fmt.emax, bias, keras,
                plan.staircase, plan.c[0], h, e, plan.negative, plan.log2_i, plan.i_fmt,
                plan.d_fmt, num, den, d_float, hi, l2h, pow2)
        stats.fast += (nxt - pos) - count
        if count:
            idx = buf[:count].copy()
            conv, _ = _convert(steps[idx])
            if fmt.precision == 53 and plan.tables:
                # The numpy path's power tables (bound 2**-96) decide almost
                # every element the double-double bound 2**-69 leaves.
                with np.errstate(all="ignore"):
                    val, ok = _regular_chunk(conv, plan)
                result[idx[ok]] = val[ok]
                stats.fast += int(np.count_nonzero(ok))
                idx, conv = idx[~ok], conv[~ok]
            if idx.size:
                fallback.fill(result, idx, steps, _keys(conv, plan))
        pos = nxt


# ---------------------------------------------------------------------------
# Broadcasting over the schedule's parameters
# ---------------------------------------------------------------------------


def _is_array_input(x: Any) -> bool:
    """A schedule parameter given per element (a numpy array)."""
    return isinstance(x, np.ndarray) and x.ndim > 0


def _group_ids(values: np.ndarray) -> np.ndarray:
    """Integer ids, equal exactly for elements that are the same input: floats
    by their bits (so ``-0.0`` and ``0.0``, and NaN payloads, stay apart),
    integers by value, other objects by type and value."""
    kind = values.dtype.kind
    if kind in "fV" and values.dtype.itemsize in (2, 4, 8):
        keys = values.view(f"u{values.dtype.itemsize}")
    elif kind in "iub":
        keys = values
    else:
        seen: dict[Any, int] = {}
        out = np.empty(values.shape, np.int64)
        for i, v in enumerate(values.tolist()):
            # Floats by their bits (-0.0 and 0.0 are different inputs).
            key = (float, v.hex()) if isinstance(v, float) else (type(v), v if v == v else repr(v))
            out[i] = seen.setdefault(key, len(seen))
        return out
    return np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _evaluate_broadcast(I: Any, D: Any, r: Any, steps: Any, *, staircase: bool, dtype: Any,
                        order: str, stats: FastStats | None) -> np.ndarray:
    """:func:`evaluate` with per-element schedule parameters."""
    inputs.check_staircase(staircase)
    fmt = get_format(dtype)
    if order not in oracle.ORDERS:
        raise ValueError(f"order must be 'exact' or 'keras'; got {order!r}")
    params = []
    for name, x in (("initial_learning_rate", I), ("decay_steps", D), ("decay_rate", r)):
        if _is_array_input(x):
            arr = x
            if arr.dtype.kind not in "iufOV":
                raise TypeError(f"{name} must be an array of numbers; got dtype {arr.dtype}")
        elif isinstance(x, float | int | np.floating | np.integer) and not isinstance(
                x, bool | np.bool_) and (not isinstance(x, int) or -2**63 <= x < 2**63):
            arr = np.asarray(x)  # a number: held exactly by its numpy dtype
        else:
            arr = np.empty((), dtype=object)
            arr[()] = x
        params.append(arr)
    s = _as_steps(steps)
    try:
        shape = np.broadcast_shapes(*(p.shape for p in params), s.shape)
    except ValueError as exc:
        raise ValueError(f"initial_learning_rate, decay_steps, decay_rate and steps must "
                         f"broadcast together; got shapes {[p.shape for p in params]} and "
                         f"{s.shape}") from exc
    stats = stats if stats is not None else FastStats()
    result = np.empty(shape, fmt.dtype)
    n = result.size
    if n == 0:
        return result
    flat_params = [np.broadcast_to(p, shape).reshape(-1) for p in params]
    flat_steps = np.broadcast_to(s, shape).reshape(-1)
    flat_out = result.reshape(-1)
    if _broadcast_kernel(flat_params, flat_steps, flat_out, fmt, order, bool(staircase), stats):
        return result
    _evaluate_groups(flat_params, flat_steps, flat_out, np.arange(n), fmt, order,
                     bool(staircase), stats)
    return result


def _evaluate_groups(flat_params: list[np.ndarray], flat_steps: np.ndarray,
                     flat_out: np.ndarray, idx: np.ndarray, fmt: Format, order: str,
                     staircase: bool, stats: FastStats) -> None:
    """``flat_out[idx]``: the elements ``idx`` grouped by schedule, each group
    evaluated as one schedule."""
    sub = [p[idx] for p in flat_params]
    ids = [_group_ids(p) for p in sub]
    combined = ids[0]
    for more in ids[1:]:
        combined = combined * (int(more.max()) + 1) + more
    order_idx = np.argsort(combined, kind="stable")
    cuts = np.flatnonzero(np.diff(combined[order_idx])) + 1
    for group in np.split(order_idx, cuts):
        first = int(group[0])
        args = [p[first] for p in sub]
        I, D, r = (a.item() if isinstance(a, np.ndarray) and a.ndim == 0 else a for a in args)
        flat_out[idx[group]] = evaluate(I, D, r, flat_steps[idx[group]], staircase=staircase,
                                        dtype=fmt, order=order, stats=stats)


#: The per-element kernel is used when a broadcast evaluation has more
#: distinct schedules than this (fewer: each schedule is planned once).
BROADCAST_KERNEL_MIN_SCHEDULES = 64


def _exact_float64(x: np.ndarray) -> np.ndarray | None:
    """A parameter array as float64 when that is exact, else None."""
    if x.dtype.kind == "f" or x.dtype == get_format("bfloat16").dtype:
        return x.astype(np.float64) if x.dtype.itemsize <= 8 else None
    if x.dtype.kind in "iu" and x.dtype != np.uint64:
        if x.size and int(np.abs(x.astype(np.int64)).max()) >= 1 << 53:
            return None
        return x.astype(np.float64)
    return None


@functools.cache
def log2_tables() -> tuple[Any, ...]:
    """The constants of the float64 per-element kernel's ``log2`` (see
    :mod:`expdecay._kernels`): ``g1`` (128 entries, ``RN(1 / c)`` for the
    centre ``c = 1 + (j + 1/2)/128`` of the ``j``-th 128th of ``[1, 2)``,
    halved from ``j = 64`` on, where the mantissa is taken as ``m / 2``;
    exactly 1 and 1/2 at both ends), ``L1 = -log2(g1)`` (``-log2(2 g1)``
    from ``j = 64``) as double-doubles, ``g2 = RN(1 / (1 + i 2**-14))`` for
    ``i = -128 .. 128`` and ``L2 = -log2(g2)``; then ``1 / ln 2`` and ``1/3``
    as double-doubles.  Every logarithm within ``2**-105`` relatively
    (:func:`_log2_dd` from the rigorous enclosures)."""
    g1 = np.empty(128)
    l1 = np.zeros((2, 128))
    for j in range(128):
        if j == 0:
            g1[j] = 1.0
            continue
        if j == 127:
            g1[j] = 0.5
            continue
        centre = Fraction(256 + 2 * j + 1, 256)
        inv = float(1 / centre) if j < 64 else float(2 / centre)
        g1[j] = inv if j < 64 else inv / 2
        l1[:, j] = _log2_dd(1 / Fraction(inv), Fraction(1))
    g2 = np.empty(257)
    l2 = np.zeros((2, 257))
    for i in range(-128, 129):
        inv = float(1 / (1 + Fraction(i, 1 << 14)))
        g2[i + 128] = inv
        if i:
            l2[:, i + 128] = _log2_dd(1 / Fraction(inv), Fraction(1))
    lo, hi = ln_interval(Fraction(2), _PREC)
    ilh, ill = _dd(1 / hi, 1 / lo)
    third = float(Fraction(1, 3))
    return (g1, l1[0].copy(), l1[1].copy(), g2, l2[0].copy(), l2[1].copy(), ilh, ill,
            third, float(Fraction(1, 3) - Fraction(third)))


def _broadcast_kernel(flat_params: list[np.ndarray], flat_steps: np.ndarray,
                      flat_out: np.ndarray, fmt: Format, order: str, staircase: bool,
                      stats: FastStats) -> bool:
    """The per-element kernels; False when they do not apply (numba missing,
    few elements or schedules, parameters that are not numbers exactly held
    by float64, invalid decay steps)."""
    n = flat_steps.size
    if n < KERNEL_MIN_ELEMENTS or kernels() is None:
        return False
    if any(p.dtype.kind == "O" for p in flat_params):
        return False
    conv = [_exact_float64(p) for p in flat_params]
    if any(c is None for c in conv):
        return False
    I, D, R = (np.ascontiguousarray(c) for c in conv)
    if not bool(np.all((D > 0) & np.isfinite(D))):
        return False  # the general path names the bad decay_steps
    # Few schedules (judged on a sample): each is planned once instead.  The
    # sample has at least one element, so that with both thresholds at 0 the
    # kernels take every array.
    head = slice(0, max(4 * KERNEL_MIN_ELEMENTS, 1))
    with np.errstate(over="ignore"):
        mixed = (I[head].view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
                 ^ D[head].view(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
                 ^ R[head].view(np.uint64))
    if np.unique(mixed).size <= BROADCAST_KERNEL_MIN_SCHEDULES:
        return False
    steps = _kernel_steps(flat_steps)
    if steps is None:
        return False
    mod = kernels()
    hi, lo, hh, hl, pow2 = _kernel_tables()
    buf = np.empty(min(_UNDECIDED_BUFFER, n), np.int64)
    pos = 0
    if fmt.precision == 53:
        logs = log2_tables()
        l2h, l2l = _ln2_dd()
    else:
        out = flat_out.view(np.uint16 if fmt.width == 16 else np.uint32)
    while pos < n:
        if fmt.precision == 53:
            nxt, count = mod.f64_broadcast_kernel(
                I, D, R, steps, flat_out, pos, buf, order == "keras", staircase, hi, lo, hh,
                hl, l2h, l2l, pow2, *logs)
        else:
            nxt, count = mod.small_broadcast_kernel(
                I, D, R, steps, out, pos, buf, fmt.precision, fmt.emin, fmt.emax, 1 - fmt.emin,
                order == "keras", staircase, hi, _ln2_dd()[0], pow2)
        stats.fast += (nxt - pos) - count
        stats.elements += (nxt - pos) - count
        if count:
            stats.deferred += count
            _evaluate_groups(flat_params, flat_steps, flat_out, buf[:count].copy(), fmt,
                             order, staircase, stats)
        pos = nxt
    return True
