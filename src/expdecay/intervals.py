"""Rigorous enclosures of ``ln`` and ``exp``, in exact integer arithmetic.

Everything the oracle proves rests on one promise: an *enclosure* contains the
exact value, whatever the working precision.  mpmath's basic operations keep
that promise (``mpf_add``, ``mpf_mul``, ``mpf_div`` and ``from_man_exp`` round
correctly in every direction), but its elementary functions do not: they are
accurate to a few units of their internal guard bits and then round that
approximation in the requested direction, which is not a directed rounding of
the exact value.  Measured: ``mpf_exp(x, 77, round_ceiling)`` for
``x = -ln(1 - 2**-53)`` returns ``1 + 2**-53``, below ``exp(x) = 1 + 2**-53 +
2**-106 + ...``; an interval built on it misses the true value, and the
float64 oracle rounded ``1 / (1 - 2**-53)`` down.  So the two transcendental
kernels are computed here, from series whose every truncation is accounted
for, and mpmath is used only for its correctly rounded arithmetic.

Fixed point.  An integer ``X`` "at ``F`` bits" stands for ``X * 2**-F``.  An
enclosure at ``F`` bits is a pair of integers ``lo <= hi`` with
``lo * 2**-F <= v <= hi * 2**-F``.

``atanh`` (:func:`atanh_fixed`).  For ``0 <= z = u/v <= 1/3``, with ``tau_k =
2**F z**(2k+1)`` and ``t_0 = floor(2**F u / v)``, ``t_k = floor(t_(k-1) u**2 /
v**2)``: by induction ``0 <= tau_k - t_k < k + 1`` (the previous error shrinks
by ``z**2 <= 1`` and the floor adds less than 1).  The sum ``S = sum_(k<K)
floor(t_k / (2k+1))`` stops at the first ``t_K = 0``; each kept term is low by
less than ``(k+1)/(2k+1) + 1 <= 2``, and the tail ``sum_(k>=K) tau_k/(2k+1)`` is
below ``tau_K * 9/8 < 9(K+1)/8``, since ``tau_(k+1) <= tau_k / 9``.  Hence
``S <= 2**F atanh(z) < S + 2K + 2 + 9(K+1)/8 <= S + 4K + 4``.

``ln`` (:func:`ln_fixed`).  ``q = 2**k m`` with ``2/3 <= m <= 4/3`` (``k`` from
bit lengths, then one comparison), ``ln q = k ln 2 + 2 atanh((m-1)/(m+1))``
with ``|(m-1)/(m+1)| <= 1/5``, and ``ln 2 = 2 atanh(1/3)``; the enclosures of
the parts are added with their signs.

``exp`` (:func:`exp_fixed`).  For ``0 <= t = T 2**-G <= 0.36``, ``s_0 = 2**G``,
``s_k = floor(s_(k-1) T / (k 2**G))``: with ``tau_k = 2**G t**k / k!`` the error
``e_k = tau_k - s_k`` obeys ``0 <= e_k < e_(k-1) t/k + 1``, so ``e_k <
1/(1 - 0.36) < 1.57``.  The sum ``S = sum_(k<K) s_k`` stops at the first ``s_K =
0``; the kept terms are low by less than ``1.57 (K - 1)`` together, and the tail
``sum_(k>=K) tau_k <= tau_K / (1 - 0.36) < 2.46``.  Hence ``S <= 2**G exp(t) <
S + 2K + 1``.  A negative ``t`` uses ``exp(t) = 1 / exp(-t)`` with outward
integer division.  Before the series, :func:`_exp_reduced` splits ``t = j
2**-8 + t'`` (``j`` truncated toward zero, so ``|j 2**-8| <= |t|``): a cached
enclosure of ``exp(j 2**-8)`` times the series of ``exp(t')``, ``|t'| <
2**-8``, which needs a third of the terms.

Argument reduction (:func:`exp_interval`).  ``x = n ln 2 + t`` with ``n`` the
integer nearest ``x / ln 2`` (any ``n`` is *correct*; a good one keeps ``|t|``
below ``ln(2)/2 + tiny < 0.36``), ``ln 2`` enclosed at enough bits that
``n ln 2`` is known to the working precision, ``exp(x) = 2**n exp(t)`` with
``t`` enclosed outward.  ``exp`` is increasing, so ``[exp(x_lo), exp(x_hi)]``
encloses ``exp`` of every point of ``[x_lo, x_hi]``.  For a narrow interval the
lower end is derived from the upper one's series: ``exp(t_lo) = exp(t_hi)
exp(-d) >= exp(t_hi) (1 - d)`` with ``d = t_hi - t_lo`` (``1 - d <= exp(-d)``
for every real ``d``, and the factor is used only when ``0 <= d < 1``).
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any

from mpmath.libmp import from_int, from_man_exp, libmpi, mpf_div, round_ceiling, round_floor

__all__ = [
    "atanh_fixed",
    "ln2_fixed",
    "ln_fixed",
    "ln_interval",
    "exp_fixed",
    "exp_interval",
    "exp_interval_parts",
    "ln_ratio_fixed",
    "ln_ratio_cached",
    "power_interval",
    "log2_interval",
    "mpf_to_fraction",
    "fraction_interval",
]

#: ``|t|`` must stay below this after argument reduction (0.36 in units of 2**-64).
_T_MAX_64 = int(0.36 * 2**64)


def _ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for ``b > 0``."""
    return -((-a) // b)


def atanh_fixed(u: int, v: int, F: int) -> tuple[int, int]:
    """``(S, E)`` with ``S <= 2**F atanh(u/v) < S + E`` for ``0 <= 3u <= v``.

    >>> S, E = atanh_fixed(1, 3, 100)  # ln 2 = 2 atanh(1/3)
    >>> ln2 = Fraction("0.6931471805599453094172321214581765680755")
    >>> 2 * S <= ln2 * 2**100 <= 2 * (S + E), E
    (True, 132)
    """
    if u < 0 or v <= 0 or 3 * u > v:
        raise ValueError(f"atanh_fixed needs 0 <= u/v <= 1/3; got u={u}, v={v}")
    t = (u << F) // v
    u2, v2 = u * u, v * v
    S = t
    k = 0
    while t:
        k += 1
        t = t * u2 // v2
        S += t // (2 * k + 1)
    return S, 4 * k + 4


@functools.lru_cache(maxsize=64)
def ln2_fixed(F: int) -> tuple[int, int]:
    """An enclosure of ``ln 2`` at ``F`` bits (``ln 2 = 2 atanh(1/3)``)."""
    S, E = atanh_fixed(1, 3, F)
    return 2 * S, 2 * (S + E)


def ln_fixed(q: Fraction, F: int) -> tuple[int, int]:
    """An enclosure of ``ln q`` at ``F`` bits, for a rational ``q > 0``.

    >>> lo, hi = ln_fixed(Fraction(3), 100)
    >>> ln3 = Fraction("1.098612288668109691395245236922525704647")
    >>> lo <= ln3 * 2**100 <= hi, hi - lo < 2**10
    (True, True)
    """
    if q <= 0:
        raise ValueError(f"ln_fixed needs q > 0; got {q}")
    return ln_ratio_fixed(q.numerator, q.denominator, F)


def ln_ratio_fixed(a: int, b: int, F: int) -> tuple[int, int]:
    """:func:`ln_fixed` of ``a / b`` for integers ``a, b > 0`` (no Fraction)."""
    if a == b:
        return 0, 0
    k = a.bit_length() - b.bit_length()  # 2**(k-1) < a/b < 2**(k+1)
    A, B = (a, b << k) if k >= 0 else (a << -k, b)  # m = A/B in (1/2, 2)
    if 3 * A > 4 * B:
        B, k = 2 * B, k + 1
    elif 3 * A < 2 * B:
        A, k = 2 * A, k - 1
    S, E = atanh_fixed(abs(A - B), A + B, F)  # |z| <= 1/5
    lo, hi = (2 * S, 2 * (S + E)) if A >= B else (-2 * (S + E), -2 * S)
    if k:
        l2lo, l2hi = ln2_fixed(F)
        lo, hi = (lo + k * l2lo, hi + k * l2hi) if k > 0 else (lo + k * l2hi, hi + k * l2lo)
    return lo, hi


#: Cached :func:`ln_ratio_fixed`: a schedule's rate is used at many steps.
ln_ratio_cached = functools.lru_cache(maxsize=1024)(ln_ratio_fixed)


@functools.lru_cache(maxsize=512)
def _ln_fixed_cached(q: Fraction, F: int) -> tuple[int, int]:
    return ln_fixed(q, F)


def ln_interval(q: Fraction, prec: int) -> tuple[Fraction, Fraction]:
    """An enclosure ``(lo, hi)`` of ``ln q`` whose relative width is at most
    ``2**-prec`` (``(0, 0)`` for ``q = 1``).  The fixed-point precision grows
    until the width is small enough relative to ``|ln q|``, which also covers
    ``q`` within a few ulps of 1."""
    F = prec + 8
    while True:
        lo, hi = _ln_fixed_cached(q, F)
        if lo == hi == 0:
            return Fraction(0), Fraction(0)
        small = min(abs(lo), abs(hi))
        if (lo > 0 or hi < 0) and (hi - lo) << prec <= small:
            return Fraction(lo, 1 << F), Fraction(hi, 1 << F)
        # Missing bits: about those of 1/|ln q| plus a margin.
        F += max(8, (hi - lo).bit_length() + prec - small.bit_length() + 2)


def exp_fixed(T: int, G: int) -> tuple[int, int]:
    """``(S, E)`` with ``S <= 2**G exp(T 2**-G) < S + E``, for ``0 <= T 2**-G <= 0.36``."""
    if T < 0 or (T << 64) > (_T_MAX_64 << G):
        raise ValueError("exp_fixed needs 0 <= t <= 0.36")
    s = 1 << G
    S = s
    k = 0
    while s:
        k += 1
        s = (s * T >> G) // k  # = floor(s T / (k 2**G)): nested floors of positives
        S += s
    return S, 2 * k + 1


def _exp_series(T: int, G: int) -> tuple[int, int]:
    """An enclosure of ``2**G exp(T 2**-G)`` for ``|T 2**-G| <= 0.36``, from the
    series alone."""
    if T >= 0:
        S, E = exp_fixed(T, G)
        return S, S + E
    S, E = exp_fixed(-T, G)
    one = 1 << (2 * G)
    return one // (S + E), _ceil_div(one, S)


#: The exponential's table step: ``t = j 2**-_K + t'`` with ``|t'| < 2**-_K``.
_K = 8


@functools.lru_cache(maxsize=8192)
def _exp_table(j: int, G: int) -> tuple[int, int]:
    """An enclosure of ``2**G exp(j 2**-_K)`` (``|j| 2**-_K <= 0.36``)."""
    return _exp_series(j << (G - _K), G)


def _exp_reduced(T: int, G: int) -> tuple[int, int]:
    """An enclosure of ``2**G exp(T 2**-G)`` for ``|T 2**-G| <= 0.36``.

    ``t`` is cut as ``j 2**-_K + t'`` with ``j`` truncated toward zero, so
    ``|j 2**-_K| <= |t| <= 0.36`` and ``|t'| < 2**-_K``; ``exp(j 2**-_K)``
    comes from a cached enclosure (taken at a multiple of 16 bits so that
    nearby precisions share it, then rounded outward to ``G`` bits) and
    ``exp(t')`` from the short series.  Both enclosures are of positive
    numbers, so the product of the lower ends, floored, and of the upper
    ends, ceiled, enclose the product."""
    shift = G - _K
    if shift < 8:
        return _exp_series(T, G)
    j = T >> shift if T >= 0 else -((-T) >> shift)
    if j == 0:
        return _exp_series(T, G)
    Gt = -(-G // 16) * 16
    a_lo, a_hi = _exp_table(j, Gt)
    if Gt > G:
        a_lo, a_hi = a_lo >> (Gt - G), -((-a_hi) >> (Gt - G))
    b_lo, b_hi = _exp_series(T - (j << shift), G)
    return (a_lo * b_lo) >> G, -((-(a_hi * b_hi)) >> G)


def _reduce(X_lo: int, X_hi: int, F: int, n: int) -> tuple[int, int, int]:
    """``(T_lo, T_hi, H)``: outward bounds at ``H`` bits of ``t = X 2**-F - n
    ln 2``, a lower one at ``X = X_lo`` and an upper one at ``X = X_hi``."""
    H = F + max(n.bit_length(), 1) + 4
    l2lo, l2hi = ln2_fixed(H)
    # Each bound takes the ln 2 end that moves it outward.
    up, down = (l2lo, l2hi) if n >= 0 else (l2hi, l2lo)
    return (X_lo << (H - F)) - n * down, (X_hi << (H - F)) - n * up, H


def _nearest_n(X: int, F: int) -> int:
    """An integer near ``X 2**-F / ln 2`` (any integer keeps the result correct)."""
    l2lo, _ = ln2_fixed(F + 4)
    return (2 * (X << 4) + l2lo) // (2 * l2lo)


def _fits(T: int, H: int) -> bool:
    return (abs(T) << 64) <= (_T_MAX_64 << H)


def exp_bound(X: int, F: int, upper: bool) -> tuple[int, int]:
    """``(m, e)`` with ``m 2**e`` bounding ``exp(X 2**-F)`` from above
    (``upper``) or below."""
    n = _nearest_n(X, F)
    while True:
        T_lo, T_hi, H = _reduce(X, X, F, n)
        T = T_hi if upper else T_lo
        if _fits(T, H):
            break
        n += 1 if T > 0 else -1  # only if ln 2 was too coarse to pick n; move n by one
    lo, hi = _exp_reduced(T, H)
    return (hi if upper else lo), n - H


def exp_interval_parts(X_lo: int, X_hi: int, F: int) -> tuple[int, int, int, int]:
    """Integers ``(a, ea, b, eb)`` with ``a 2**ea <= exp(x) <= b 2**eb`` for
    every ``x`` in ``[X_lo 2**-F, X_hi 2**-F]`` (:func:`exp_interval` without
    the mpf wrapping)."""
    if X_lo > X_hi:
        raise ValueError("exp_interval needs X_lo <= X_hi")
    n = _nearest_n(X_hi, F)
    T_lo, T_hi, H = _reduce(X_lo, X_hi, F, n)  # both ends with the same n
    D = T_hi - T_lo  # d = D 2**-H >= 0
    if not (_fits(T_hi, H) and D.bit_length() < H - 8):
        a, ea = exp_bound(X_lo, F, False)
        b, eb = exp_bound(X_hi, F, True)
        return a, ea, b, eb
    lo, hi = _exp_reduced(T_hi, H)
    # exp(t_lo) >= exp(t_hi) (1 - d) >= lo 2**-H (1 - d), d in [0, 2**-8).
    lo = (lo * ((1 << H) - D)) >> H
    return lo, n - H, hi, n - H


def exp_interval(X_lo: int, X_hi: int, F: int) -> tuple[Any, Any]:
    """mpf bounds ``(a, b)`` with ``a <= exp(x) <= b`` for every ``x`` in
    ``[X_lo 2**-F, X_hi 2**-F]``.  The ends are exact dyadics (no rounding)."""
    a, ea, b, eb = exp_interval_parts(X_lo, X_hi, F)
    return from_man_exp(a, ea), from_man_exp(b, eb)


def fraction_interval(q: Fraction, prec: int) -> tuple[Any, Any]:
    """An mpf interval enclosing the rational ``q``: a point when ``q`` is
    dyadic, else its directed roundings to ``prec`` bits (``mpf_div`` rounds
    correctly in both directions)."""
    num, den = q.numerator, q.denominator
    if den & (den - 1) == 0:
        x = from_man_exp(num, 1 - den.bit_length())
        return x, x
    n, d = from_int(num), from_int(den)
    return mpf_div(n, d, prec, round_floor), mpf_div(n, d, prec, round_ceiling)


def _exponent_interval(base: Fraction, exponent: Fraction, F: int) -> tuple[int, int]:
    """An enclosure at ``F`` bits of ``exponent * ln(base)`` (base > 0)."""
    u, w = exponent.numerator, exponent.denominator
    # |exponent| < 2**extra, so ln(base) to F + extra bits gives y to F bits.
    extra = max(0, u.bit_length() - w.bit_length() + 1)
    FL = -(-(F + extra) // 32) * 32  # a multiple of 32: schedules share a cache entry
    Llo, Lhi = _ln_fixed_cached(base, FL)
    a, b = (u * Llo, u * Lhi) if u >= 0 else (u * Lhi, u * Llo)
    scale = w << (FL - F)
    return a // scale, _ceil_div(b, scale)


def power_interval(
    coef: Fraction, base: Fraction, exponent: Fraction, prec: int
) -> tuple[Any, Any]:
    """An mpf interval enclosing ``coef * base ** exponent`` (``base > 0``),
    about ``prec`` bits wide relative to the value: ``exponent ln(base)`` is
    enclosed at ``prec + 8`` absolute bits, so its exponential has that
    relative accuracy, and the product with ``coef`` is rounded outward."""
    F = prec + 8
    y_lo, y_hi = _exponent_interval(base, exponent, F)
    e = exp_interval(y_lo, y_hi, F)
    enclosure: tuple[Any, Any] = libmpi.mpi_mul(fraction_interval(coef, prec), e, prec)
    return enclosure


def log2_interval(coef: Fraction, base: Fraction, exponent: Fraction,
                  bits: int = 64) -> tuple[Fraction, Fraction]:
    """An enclosure of ``log2 |coef * base ** exponent|`` (cheap: no
    exponential, whatever the size of the exponent)."""
    y_lo, y_hi = _exponent_interval(base, exponent, bits)
    c_lo, c_hi = _ln_fixed_cached(abs(coef), bits)
    l2lo, l2hi = ln2_fixed(bits)
    lo, hi = y_lo + c_lo, y_hi + c_hi
    return (Fraction(lo, l2hi if lo >= 0 else l2lo), Fraction(hi, l2lo if hi >= 0 else l2hi))


def mpf_to_fraction(x: Any) -> Fraction:
    """The exact value of a finite mpf tuple."""
    sign, man, exp, _ = x
    q = Fraction(int(man)) * Fraction(2) ** int(exp)
    return -q if sign else q
