"""The fast path's constants: error bounds, table sizes, and the values
enclosed with :mod:`expdecay.intervals` (spec/kernels.md, section 6.2)."""

from __future__ import annotations

import functools
import math
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

from ..intervals import fraction_interval, ln_interval, mpf_to_fraction, power_interval

U = 2.0**-53
B64 = 2.0**-69  # relative error bound of the double-double path
_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's constant
TABLE_BITS = 10
TABLE = 1 << TABLE_BITS
PREC = 200  # bits of the interval computations of constants
_TABLE_PREC = 256  # bits of the chained interval products of the power tables
TABLE_K = 12  # bits of the step consumed per power table
B_TABLE = 2.0**-96  # relative error bound of the table path
B_KERAS_TABLE = 2.0**-80  # the same with the keras residual factor
#: Assumed bound on the relative error of ``numpy.exp2`` in float64 (256 ulps;
#: checked on a sample at first use, see :func:`expdecay.fast.numpy_paths.hardware_ok`).
EXP2_ERR = 2.0**-44
T_LIMIT = 2200.0  # beyond this |t| every result is 0 or inf
INT64_SAFE = 1 << 62
DEN_MAX = 1 << 20  # exact staircase floors for D = num/den with den up to this


# ---------------------------------------------------------------------------
# Constants from interval arithmetic
# ---------------------------------------------------------------------------


def dd(lo: Fraction, hi: Fraction) -> tuple[float, float]:
    """A double-double for an exact interval narrow relative to 2**-110."""
    mid = (lo + hi) / 2
    if mid == 0 or (hi - lo) > abs(mid) * Fraction(1, 1 << 110):
        raise ArithmeticError("constant enclosure too wide")  # pragma: no cover
    h = float(mid)
    return h, float(mid - Fraction(h))


def _mpf_pair(x: tuple[Any, Any]) -> tuple[Fraction, Fraction]:
    return mpf_to_fraction(x[0]), mpf_to_fraction(x[1])


def split(a: np.ndarray | float) -> tuple[Any, Any]:
    """Veltkamp split: ``a = hi + lo`` with 26-bit ``hi``, exactly."""
    c = _SPLIT * a
    hi = c - (c - a)
    return hi, a - hi


# spec/kernels.md, section 6.2
@functools.cache
def exp2_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``2**(j/1024)`` for ``j < 1024`` as double-doubles, hi part pre-split."""
    hi = np.empty(TABLE)
    lo = np.empty(TABLE)
    for j in range(TABLE):
        enclosure = power_interval(Fraction(1), Fraction(2), Fraction(j, TABLE), PREC)
        hi[j], lo[j] = dd(*_mpf_pair(enclosure))
    hh, hl = split(hi)
    return hi, lo, hh, hl


@functools.cache
def ln2_dd() -> tuple[float, float]:
    return dd(*ln_interval(Fraction(2), PREC))


def log2_dd(base: Fraction, divisor: Fraction) -> tuple[float, float]:
    """``log2(base) / divisor`` as a double-double (relative error < 2**-105).

    ``ln(base)`` is enclosed to a relative width of ``2**-(PREC + 8)``
    however close ``base`` is to 1, so the quotient is as narrow."""
    b_lo, b_hi = ln_interval(base, PREC + 8)
    t_lo, t_hi = ln_interval(Fraction(2), PREC + 8)
    # Both ends of ln(base) share its sign; ln 2 > 0; divisor > 0.
    if b_lo > 0:
        return dd(b_lo / t_hi / divisor, b_hi / t_lo / divisor)
    return dd(b_lo / t_lo / divisor, b_hi / t_hi / divisor)


def mantissa_dd(x: Fraction) -> tuple[float, float, int]:
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


# spec/kernels.md, section 6.5
@functools.lru_cache(maxsize=32)
def power_table(base: Fraction, step: Fraction, start: Fraction, size: int) -> np.ndarray:
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
    rows[:, 0], rows[:, 1] = split(rows[:, 0].copy())
    return rows



# spec/kernels.md, section 7.6
@functools.cache
def log2_tables() -> tuple[Any, ...]:
    """The constants of the float64 per-element kernel's ``log2`` (see
    :mod:`expdecay.fast.kernels`): ``g1`` (128 entries, ``RN(1 / c)`` for the
    centre ``c = 1 + (j + 1/2)/128`` of the ``j``-th 128th of ``[1, 2)``,
    halved from ``j = 64`` on, where the mantissa is taken as ``m / 2``;
    exactly 1 and 1/2 at both ends), ``L1 = -log2(g1)`` (``-log2(2 g1)``
    from ``j = 64``) as double-doubles, ``g2 = RN(1 / (1 + i 2**-14))`` for
    ``i = -128 .. 128`` and ``L2 = -log2(g2)``; then ``1 / ln 2`` and ``1/3``
    as double-doubles.  Every logarithm within ``2**-105`` relatively
    (:func:`log2_dd` from the rigorous enclosures)."""
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
        l1[:, j] = log2_dd(1 / Fraction(inv), Fraction(1))
    g2 = np.empty(257)
    l2 = np.zeros((2, 257))
    for i in range(-128, 129):
        inv = float(1 / (1 + Fraction(i, 1 << 14)))
        g2[i + 128] = inv
        if i:
            l2[:, i + 128] = log2_dd(1 / Fraction(inv), Fraction(1))
    lo, hi = ln_interval(Fraction(2), PREC)
    ilh, ill = dd(1 / hi, 1 / lo)
    third = float(Fraction(1, 3))
    return (g1, l1[0].copy(), l1[1].copy(), g2, l2[0].copy(), l2[1].copy(), ilh, ill,
            third, float(Fraction(1, 3) - Fraction(third)))
