"""Independent test oracle for expdecay, built on python-flint's arb balls.

This module deliberately does NOT import expdecay.  It has its own format
table, its own correctly rounded (round-half-even, gradual underflow,
overflow to inf, signed zero) conversion of exact rationals to the four
formats, its own implementation of the C99 pow special-value table, and a
Ziv loop that evaluates ``c * a**p`` with arb balls until both ends of the
ball round to the same float.

Values in the pipeline ("ext" values) are represented as

* ``fractions.Fraction`` for finite NON-ZERO values (exact), and
* Python ``float`` for the specials: nan, +-inf, +0.0 and -0.0.

Public entry points:

* ``FORMATS`` / ``Fmt``: the format table.
* ``round_fraction(q, fmt)``: exact rational -> Python float in ``fmt``.
* ``round_scaled(q, k, fmt)``: ``q * 2**k`` for possibly astronomically large ``|k|``.
* ``arb_evaluate(I, D, r, s, staircase, fmt, order)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import flint
from flint import arb, fmpq, fmpz

__all__ = [
    "FORMATS",
    "Fmt",
    "OracleError",
    "arb_evaluate",
    "round_fraction",
    "round_scaled",
    "round_value",
    "pow_exact_rational",
]


class OracleError(RuntimeError):
    """Raised when the Ziv loop exceeds its precision cap (should never happen)."""


@dataclass(frozen=True)
class Fmt:
    name: str
    prec: int  # significand bits including the hidden bit
    emin: int
    emax: int

    @property
    def max_finite(self) -> Fraction:
        return Fraction((1 << self.prec) - 1) * Fraction(2) ** (self.emax - self.prec + 1)

    @property
    def min_subnormal(self) -> Fraction:
        return Fraction(2) ** (self.emin - self.prec + 1)

    @property
    def min_normal(self) -> Fraction:
        return Fraction(2) ** self.emin


FORMATS = {
    "float16": Fmt("float16", 11, -14, 15),
    "bfloat16": Fmt("bfloat16", 8, -126, 127),
    "float32": Fmt("float32", 24, -126, 127),
    "float64": Fmt("float64", 53, -1022, 1023),
}

PREC_CAP = 20000  # bits; the Ziv loop raises OracleError beyond this


def _fmt(fmt) -> Fmt:
    if isinstance(fmt, Fmt):
        return fmt
    return FORMATS[str(fmt)]


# ---------------------------------------------------------------------------
# Exact rounding with integer arithmetic
# ---------------------------------------------------------------------------


def _floor_log2(a: int, b: int) -> int:
    """floor(log2(a / b)) for positive integers a, b."""
    e = a.bit_length() - b.bit_length()
    # 2**e <= a/b < 2**(e+2) at this point up to one step; fix it exactly.
    if e >= 0:
        if a < (b << e):
            e -= 1
    else:
        if (a << -e) < b:
            e -= 1
    return e


def _round_pos(a: int, b: int, fmt: Fmt, scale: int = 0) -> float:
    """Round the positive rational (a / b) * 2**scale to fmt; returns a float >= 0."""
    assert a > 0 and b > 0
    e = _floor_log2(a, b) + scale  # 2**e <= value < 2**(e+1)
    if e > fmt.emax + 1:
        return math.inf
    if e < fmt.emin - fmt.prec - 1:
        # value < 2**(emin - prec) = half the smallest subnormal: rounds to 0
        return 0.0
    q = max(e, fmt.emin) - (fmt.prec - 1)  # exponent of the quantum (ulp)
    # n_exact = value / 2**q = a * 2**(scale - q) / b
    sh = scale - q
    if sh >= 0:
        num, den = a << sh, b
    else:
        num, den = a, b << -sh
    n, rem = divmod(num, den)
    twice = 2 * rem
    if twice > den or (twice == den and (n & 1)):
        n += 1
    # overflow: the rounded magnitude exceeds the largest finite value
    if n == 0:
        return 0.0
    if n.bit_length() + q > fmt.emax + 1:  # n * 2**q >= 2**(emax+1)
        return math.inf
    assert n < (1 << (fmt.prec + 1))
    return math.ldexp(n, q)  # exact: n has <= 54 bits and q >= -1074


def round_fraction(x, fmt) -> float:
    """Correctly rounded (RNE) value of the exact rational x in fmt, as a float.

    x may be int or Fraction (or fmpq).  A zero input gives +0.0; a non-zero
    input that rounds to zero keeps its sign.
    """
    fmt = _fmt(fmt)
    if isinstance(x, fmpq):
        x = Fraction(int(x.p), int(x.q))
    x = Fraction(x)
    if x == 0:
        return 0.0
    neg = x < 0
    v = _round_pos(abs(x.numerator), x.denominator, fmt)
    return -v if neg else v


def round_scaled(x: Fraction, k: int, fmt) -> float:
    """Correctly rounded value of x * 2**k (x non-zero rational, |k| possibly huge)."""
    fmt = _fmt(fmt)
    x = Fraction(x)
    assert x != 0
    neg = x < 0
    v = _round_pos(abs(x.numerator), x.denominator, fmt, int(k))
    return -v if neg else v


# ---------------------------------------------------------------------------
# ext values
# ---------------------------------------------------------------------------


def _ext(x):
    """Input (int/float/Fraction/fmpq/str) -> ext value (Fraction non-zero, or special float)."""
    if isinstance(x, bool):
        raise TypeError("bool not accepted")
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x) or x == 0.0:
            return x
        return Fraction(x)
    if isinstance(x, fmpq):
        x = Fraction(int(x.p), int(x.q))
    if isinstance(x, str):
        low = x.strip().lower()
        if low in ("nan", "inf", "+inf", "-inf"):
            return float(low)
        x = Fraction(x)
    x = Fraction(x)
    if x == 0:
        return 0.0
    return x


def _is_nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _is_inf(v) -> bool:
    return isinstance(v, float) and math.isinf(v)


def _is_zero(v) -> bool:
    return isinstance(v, float) and v == 0.0


def _neg(v) -> bool:
    """Sign bit of an ext value (NaN: False)."""
    if isinstance(v, float):
        return math.copysign(1.0, v) < 0 and not math.isnan(v)
    return v < 0


def _is_int(v) -> bool:
    return isinstance(v, Fraction) and v.denominator == 1


def _is_odd_int(v) -> bool:
    return isinstance(v, Fraction) and v.denominator == 1 and (v.numerator & 1) == 1


def _signed_zero(neg: bool) -> float:
    return -0.0 if neg else 0.0


def _signed_inf(neg: bool) -> float:
    return -math.inf if neg else math.inf


def _is_positive(v) -> bool:
    if isinstance(v, float):
        return v > 0  # +inf only (zeros are not > 0)
    return v > 0


def _abs_lt_1(v) -> bool:
    if isinstance(v, float):
        return v == 0.0
    return abs(v) < 1


def round_value(v, fmt) -> float:
    """Round an ext value to fmt, returning a Python float."""
    if isinstance(v, float):
        return v
    return round_fraction(v, fmt)


def _float_to_ext(x: float):
    return _ext(float(x))


# ---------------------------------------------------------------------------
# arithmetic on ext values (exact, no rounding)
# ---------------------------------------------------------------------------


def _div(x, y):
    """IEEE division semantics on exact values (no rounding)."""
    if _is_nan(x) or _is_nan(y):
        return math.nan
    sign = _neg(x) != _neg(y)
    if _is_inf(x):
        if _is_inf(y):
            return math.nan
        return _signed_inf(sign)
    if _is_zero(x):
        if _is_zero(y):
            return math.nan
        return _signed_zero(sign)
    # x finite non-zero
    if _is_inf(y):
        return _signed_zero(sign)
    if _is_zero(y):
        return _signed_inf(sign)
    return x / y


def _floor(x):
    if isinstance(x, float):
        return x  # nan, +-inf, +-0
    f = Fraction(math.floor(x))
    if f == 0:
        return 0.0  # floor of a positive fraction < 1 is +0
    return f


@dataclass(frozen=True)
class _Regular:
    """The real value sign * base**exp, base > 0 rational != 1, exp non-zero finite rational."""

    neg: bool
    base: Fraction
    exp: Fraction


def _pow(x, y):
    """C99 Annex F.9.4.4 pow on exact ext values.

    Returns an ext value, or a _Regular for the generic real power.
    """
    # 1. pow(x, +-0) = 1
    if _is_zero(y):
        return Fraction(1)
    # 2. pow(+1, y) = 1
    if isinstance(x, Fraction) and x == 1:
        return Fraction(1)
    # 3. NaN
    if _is_nan(x) or _is_nan(y):
        return math.nan
    y_neg = _neg(y)
    # 4. pow(+-0, y)
    if _is_zero(x):
        if y_neg:
            return _signed_inf(_neg(x)) if _is_odd_int(y) else math.inf
        return x if _is_odd_int(y) else 0.0
    # 5. pow(-1, +-inf) = 1
    if _is_inf(y) and isinstance(x, Fraction) and x == -1:
        return Fraction(1)
    # 6. / 7. infinite exponent (x here is non-zero, may be +-inf)
    if _is_inf(y):
        small = (not _is_inf(x)) and abs(x) < 1
        if y_neg:
            return math.inf if small else 0.0
        return 0.0 if small else math.inf
    # y is now a finite non-zero Fraction
    # 8. pow(-inf, y)
    if _is_inf(x) and _neg(x):
        if y_neg:
            return -0.0 if _is_odd_int(y) else 0.0
        return -math.inf if _is_odd_int(y) else math.inf
    # 9. pow(+inf, y)
    if _is_inf(x):
        return 0.0 if y_neg else math.inf
    # x finite non-zero Fraction
    if x < 0:
        # 10.
        if not _is_int(y):
            return math.nan
        # 11.
        neg = _is_odd_int(y)
        base = -x
        if base == 1:
            return Fraction(-1 if neg else 1)
        return _Regular(neg, base, y)
    # 12.
    return _Regular(False, x, y)


def _mul_regular(c, w: _Regular):
    """c * w where w is a finite non-zero real; returns ext or ('ziv', c_signed, base, exp)."""
    if _is_nan(c):
        return math.nan
    sign = _neg(c) != w.neg
    if _is_inf(c):
        return _signed_inf(sign)
    if _is_zero(c):
        return _signed_zero(sign)
    return ("ziv", -c if w.neg else c, w.base, w.exp)


def _mul(x, y):
    """IEEE multiplication semantics on exact ext values (no rounding)."""
    if _is_nan(x) or _is_nan(y):
        return math.nan
    sign = _neg(x) != _neg(y)
    if (_is_zero(x) and _is_inf(y)) or (_is_inf(x) and _is_zero(y)):
        return math.nan
    if _is_inf(x) or _is_inf(y):
        return _signed_inf(sign)
    if _is_zero(x) or _is_zero(y):
        return _signed_zero(sign)
    return x * y


# ---------------------------------------------------------------------------
# c * a**p, correctly rounded
# ---------------------------------------------------------------------------


def _is_pow2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def _exact_root(n: int, k: int):
    """Return the integer k-th root of n >= 1 if n is a perfect k-th power, else None."""
    if n == 1:
        return 1
    if k >= n.bit_length():  # root would be 1 (< 2), but n != 1
        return None
    r = int(fmpz(n).root(k))  # truncated root
    for cand in (r, r + 1):
        if cand**k == n:
            return cand
    return None


def pow_exact_rational(a: Fraction, p: Fraction):
    """If a**p (a > 0 rational, p rational) is rational, return (b, k) with a**p == b**k,
    b rational > 0 and k an integer; else None (a**p is irrational)."""
    m, n = p.numerator, p.denominator
    if n == 1:
        return a, m
    u = _exact_root(a.numerator, n)
    if u is None:
        return None
    v = _exact_root(a.denominator, n)
    if v is None:
        return None
    return Fraction(u, v), m


def _fraction_bits(c: Fraction) -> int:
    return abs(c.numerator).bit_length() + c.denominator.bit_length()


def _to_fmpq(x: Fraction) -> fmpq:
    return fmpq(x.numerator, x.denominator)


def _arf_to_fraction(x: arb) -> Fraction:
    """Exact value of an exact arb (as returned by mid() / rad())."""
    m, e = x.man_exp()
    m, e = int(m), int(e)
    if e >= 0:
        return Fraction(m << e)
    return Fraction(m, 1 << -e)


def _ball_bounds(y: arb):
    """Exact rational bounds [lo, hi] of the arb ball y."""
    mid = _arf_to_fraction(y.mid())
    rad = _arf_to_fraction(y.rad())
    return mid - rad, mid + rad


def _same_float(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


# statistics, handy when checking that the tests exercise all paths
STATS = {
    "exact_pow2": 0,
    "exact_rational": 0,
    "prescreen_zero": 0,
    "prescreen_inf": 0,
    "ziv": 0,
    "ziv_max_prec": 0,
}


def ziv_round(c: Fraction, a: Fraction, p: Fraction, fmt) -> float:
    """Correctly rounded value of c * a**p in fmt.

    c: non-zero rational (any sign); a: rational > 0; p: rational.
    """
    fmt = _fmt(fmt)
    c, a, p = Fraction(c), Fraction(a), Fraction(p)
    assert c != 0 and a > 0
    if a == 1 or p == 0:
        return round_fraction(c, fmt)

    # --- exact cases: a**p rational ------------------------------------------------
    ex = pow_exact_rational(a, p)
    if ex is not None:
        b, k = ex
        if b == 1:
            return round_fraction(c, fmt)
        if _is_pow2(b.numerator) and _is_pow2(b.denominator):
            STATS["exact_pow2"] += 1
            e = b.numerator.bit_length() - b.denominator.bit_length()
            return round_scaled(c, e * k, fmt)
        # b has an odd prime factor q with |v_q(b)| >= 1, so |v_q(b**k)| >= |k|.
        # A rounding boundary of fmt (float or midpoint) is a dyadic whose odd part
        # is < 2**(prec+2), so its q-adic valuation is in [0, (prec+2)/log2(3)].
        # If |k| > bits(c) + prec + 2, c cannot compensate, c*b**k is not a boundary
        # and the Ziv loop below terminates.  Otherwise compute exactly.
        if abs(k) <= _fraction_bits(c) + fmt.prec + 64:
            STATS["exact_rational"] += 1
            return round_fraction(c * b**k, fmt)

    # --- irrational (or provably non-boundary) value: prescreen magnitude ----------
    neg = c < 0
    ac = abs(c)
    P = _to_fmpq(p)
    A = _to_fmpq(a)
    Cq = _to_fmpq(ac)
    lo_zero = fmt.emin - fmt.prec - 1  # value < 2**lo_zero  => rounds to 0
    hi_inf = fmt.emax + 2  # value >= 2**hi_inf => rounds to inf
    prec = 128
    while True:
        if prec > PREC_CAP:
            raise OracleError(f"prescreen precision cap exceeded for c={c} a={a} p={p}")
        with flint.ctx.workprec(prec):
            ln2 = arb(2).log()
            L = arb(Cq).log() / ln2 + arb(P) * (arb(A).log() / ln2)
            if L < lo_zero:
                STATS["prescreen_zero"] += 1
                return _signed_zero(neg)
            if L > hi_inf:
                STATS["prescreen_inf"] += 1
                return _signed_inf(neg)
            if L.is_finite() and L.rad() < 4:
                break
        prec *= 2

    # --- Ziv loop --------------------------------------------------------------------
    # |p * log2(a)| may be large; the absolute error of the exponent must be tiny.
    mag = abs(p.numerator).bit_length() - p.denominator.bit_length() + 8
    prec = max(fmt.prec + 40, fmt.prec + 40 + max(mag, 0))
    while True:
        if prec > PREC_CAP:
            raise OracleError(f"Ziv precision cap exceeded for c={c} a={a} p={p} fmt={fmt.name}")
        with flint.ctx.workprec(prec):
            Y = arb(Cq) * (arb(P) * arb(A).log()).exp()
            ok = Y.is_finite() and Y > 0
            if ok:
                lo, hi = _ball_bounds(Y)
        if ok and lo > 0:
            rlo = round_fraction(lo, fmt)
            rhi = round_fraction(hi, fmt)
            if _same_float(rlo, rhi):
                STATS["ziv"] += 1
                STATS["ziv_max_prec"] = max(STATS["ziv_max_prec"], prec)
                return -rlo if neg else rlo
        prec *= 2


def _round_product(v, fmt) -> float:
    """Round the result of _mul/_mul_regular."""
    if isinstance(v, tuple):
        _, c, a, p = v
        return ziv_round(c, a, p, fmt)
    return round_value(v, fmt)


# ---------------------------------------------------------------------------
# the two orders
# ---------------------------------------------------------------------------


def _evaluate_exact(I, D, r, s, staircase: bool, fmt: Fmt) -> float:
    p = _div(s, D)
    if staircase:
        p = _floor(p)
    w = _pow(r, p)
    if isinstance(w, _Regular):
        return _round_product(_mul_regular(I, w), fmt)
    return round_value(_mul(I, w), fmt)


def _evaluate_keras(I, D, r, s, staircase: bool, fmt: Fmt) -> float:
    def rnd(v):
        return _float_to_ext(round_value(v, fmt))

    If, Df, rf, sf = rnd(I), rnd(D), rnd(r), rnd(s)
    p = rnd(_div(sf, Df))
    if staircase:
        p = _floor(p)  # exact; floor of a format value is a format value
    w = _pow(rf, p)
    if isinstance(w, _Regular):
        wf = ziv_round(Fraction(-1 if w.neg else 1), w.base, w.exp, fmt)
    else:
        wf = round_value(w, fmt)
    w = _float_to_ext(wf)
    return round_value(_mul(If, w), fmt)


def arb_evaluate(I, D, r, s, staircase: bool, fmt, order: str) -> float:
    """Reference value of the decayed learning rate, as a Python float exactly
    equal to the result in ``fmt``.

    I, D, r, s: exact inputs (Fraction / int / float incl. specials / str).
    D must be finite and > 0.  NaN results are returned as float('nan').
    """
    fmt = _fmt(fmt)
    I, D, r, s = _ext(I), _ext(D), _ext(r), _ext(s)
    if not (isinstance(D, Fraction) and D > 0):
        raise ValueError(f"decay_steps must be finite and > 0, got {D!r}")
    if order == "exact":
        return _evaluate_exact(I, D, r, s, bool(staircase), fmt)
    if order == "keras":
        return _evaluate_keras(I, D, r, s, bool(staircase), fmt)
    raise ValueError(f"unknown order {order!r}")
