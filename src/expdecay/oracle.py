"""The correctly rounded oracle: ``I * r ** (s / D)`` in any format, both orders.

How a value is obtained (see ``spec/exponential_decay.md`` §10):

1. Every input is converted to its exact value (:func:`to_exact`): a finite
   nonzero number becomes a :class:`~fractions.Fraction`; zeros, infinities
   and NaN stay Python floats, so the sign of zero survives.
2. The SymPy expression of :mod:`expdecay.formula` is walked with a set of
   operations.  :class:`ExactOps` performs division, floor and multiplication
   exactly and applies the IEEE / C99 Annex F special-value rules; the only
   transcendental node, ``r ** p`` for finite ``r != 0, 1`` and finite
   ``p != 0``, is kept as a deferred :class:`Power` ``c * |r| ** p``.
   :class:`RoundedOps` (the ``keras`` order) rounds the inputs and the result
   of every operation to the format.
3. A :class:`Power` is rounded by :func:`round_power`: if ``c * |r| ** p``
   could be exactly a float or exactly a midpoint between two (only possible
   when ``|r| ** p`` is rational and small, which a divisibility test on odd
   parts decides without computing the power), it is computed with exact
   rationals and rounded once; otherwise it is provably not a rounding
   boundary, and a Ziv loop over rigorous enclosures
   (:mod:`expdecay.intervals`: own ln/exp series with proven error bounds,
   mpmath's correctly rounded arithmetic; precision grown until both ends
   round alike) terminates.

Inputs that are all dyadic (Python floats and ints, dyadic Fractions) take
the same steps on plain integers (:func:`_evaluate_pairs`): no Fraction is
formed, the boundary test runs on odd parts, the enclosure is a pair of
integer mantissas with their exponents, and the keras order's casts of a
schedule are cached.  Whatever that path does not settle by itself (zeros,
infinities, NaN, negative rates, ``|p ln r| > 2**16``, the precision cap)
goes through the steps above.

No global mpmath state is read or changed: the routines of
``mpmath.libmp`` take the precision as an argument.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from mpmath.libmp import (
    from_int,
    libmpi,
    mpf_div,
    mpf_log,
    mpf_mul,
    round_floor,
    to_int,
)

from . import formula
from .errors import ExpdecayError
from .floats import Format, round_dyadic, round_ratio, round_rational, to_numpy
from .inputs import (
    Exact,
    from_float,
    from_fraction,
    int_to_decimal,
    resolve_dtype,
    to_exact,
    validated_inputs,
)
from .intervals import (
    exp_interval_parts,
    ln_ratio_cached,
    log2_interval,
    mpf_to_fraction,
    power_interval,
)
from .introot import exact_root
from .orders import ORDERS, Order, check_order

__all__ = [
    "evaluate",
    "value",
    "to_exact",
    "resolve_dtype",
    "PrecisionError",
    "ORDERS",
    "DEFAULT_MAX_PREC",
]

#: Working-precision cap (bits) of the Ziv loops.
DEFAULT_MAX_PREC = 1 << 16

#: ``value()`` evaluates exact values up to ``|p ln r| ~ 2**256`` (a decimal
#: exponent of about 77 digits); beyond, it raises PrecisionError.
MAX_DECIMAL_AMPLIFICATION = 256



class PrecisionError(ExpdecayError, ArithmeticError):
    """A Ziv loop reached its precision cap without deciding the rounding."""



# ---------------------------------------------------------------------------
# Exact arithmetic with IEEE special values
# ---------------------------------------------------------------------------


def _neg(x: Exact) -> bool:
    """Sign bit of an exact value (NaN counts as positive)."""
    if isinstance(x, Fraction):
        return x < 0
    return math.copysign(1.0, x) < 0 and not math.isnan(x)


def _is_nan(x: Exact) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _is_inf(x: Exact) -> bool:
    return isinstance(x, float) and math.isinf(x)


def _is_zero(x: Exact) -> bool:
    return isinstance(x, float) and x == 0.0


def _signed(value: float, negative: bool) -> float:
    return -value if negative else value


def _odd_integer(y: Exact) -> bool:
    return isinstance(y, Fraction) and y.denominator == 1 and y.numerator & 1 == 1


@dataclass(slots=True)
class Power:
    """The deferred exact value ``coef * base ** exponent``.

    ``coef`` is a nonzero Fraction (it carries the sign), ``base`` a positive
    Fraction other than 1, ``exponent`` a nonzero Fraction.
    """

    coef: Fraction
    base: Fraction
    exponent: Fraction


Node = Fraction | float | Power


class ExactOps:
    """Operations on exact extended reals (spec §6, §8)."""

    def constant(self, value: Fraction) -> Exact:
        return from_fraction(value)

    def div(self, a: Node, b: Node) -> Exact:
        assert not isinstance(a, Power) and not isinstance(b, Power)
        if _is_nan(a) or _is_nan(b):
            return math.nan
        negative = _neg(a) != _neg(b)
        if _is_inf(a):
            return math.nan if _is_inf(b) else _signed(math.inf, negative)
        if _is_zero(a):
            return math.nan if _is_zero(b) else _signed(0.0, negative)
        if _is_zero(b):
            return _signed(math.inf, negative)
        if _is_inf(b):
            return _signed(0.0, negative)
        return a / b

    def floor(self, a: Node) -> Exact:
        if isinstance(a, Fraction):
            return from_fraction(Fraction(math.floor(a)))
        return a  # type: ignore[return-value]

    def pow(self, x: Node, y: Node) -> Node:
        """C99 Annex F.9.4.4 ``pow``, the table of spec §8.1."""
        assert not isinstance(x, Power) and not isinstance(y, Power)
        if _is_zero(y):
            return Fraction(1)
        if isinstance(x, Fraction) and x.numerator == x.denominator:
            return Fraction(1)
        if _is_nan(x) or _is_nan(y):
            return math.nan
        if _is_zero(x):
            odd = _odd_integer(y)
            if _neg(y):
                return _signed(math.inf, odd and _neg(x))
            return _signed(0.0, odd and _neg(x))
        if _is_inf(y):
            if isinstance(x, Fraction) and x.numerator == -x.denominator:
                return Fraction(1)
            big = abs(x) > 1  # type: ignore[operator]
            return math.inf if big != _neg(y) else 0.0
        if _is_inf(x):
            odd = _odd_integer(y)
            mag = 0.0 if _neg(y) else math.inf
            return _signed(mag, odd and _neg(x))
        assert isinstance(x, Fraction) and isinstance(y, Fraction)
        if x.numerator < 0:
            if y.denominator != 1:
                return math.nan
            coef = Fraction(-1 if y.numerator & 1 else 1)
            if x.numerator == -x.denominator:
                return coef
            return Power(coef, -x, y)
        return Power(Fraction(1), x, y)

    def mul(self, a: Node, b: Node) -> Node:
        if isinstance(a, Power):
            a, b = b, a
        if isinstance(a, Power):
            raise TypeError("the formula has no product of two powers")
        if _is_nan(a) or (not isinstance(b, Power) and _is_nan(b)):
            return math.nan
        if isinstance(b, Power):
            if isinstance(a, Fraction):
                return Power(a * b.coef, b.base, b.exponent)
            negative = _neg(a) != (b.coef < 0)
            return _signed(math.inf if _is_inf(a) else 0.0, negative)
        negative = _neg(a) != _neg(b)
        if _is_inf(a) or _is_inf(b):
            return math.nan if _is_zero(a) or _is_zero(b) else _signed(math.inf, negative)
        if _is_zero(a) or _is_zero(b):
            return _signed(0.0, negative)
        return a * b


class RoundedOps(ExactOps):
    """Every operation of :class:`ExactOps` followed by rounding to ``fmt``:
    the ``keras`` order (spec §7)."""

    def __init__(self, fmt: Format, max_prec: int = DEFAULT_MAX_PREC):
        self.fmt = fmt
        self.max_prec = max_prec

    def round(self, x: Node) -> Exact:
        return from_float(round_node(x, self.fmt, self.max_prec))

    def constant(self, value: Fraction) -> Exact:
        return self.round(from_fraction(value))

    def div(self, a: Node, b: Node) -> Exact:
        return self.round(super().div(a, b))

    def pow(self, x: Node, y: Node) -> Exact:
        return self.round(super().pow(x, y))

    def mul(self, a: Node, b: Node) -> Exact:
        return self.round(super().mul(a, b))

    # floor of a float is a float: no rounding needed.


_EXACT_OPS = ExactOps()


# ---------------------------------------------------------------------------
# Rounding a node
# ---------------------------------------------------------------------------


def round_node(x: Node, fmt: Format, max_prec: int = DEFAULT_MAX_PREC) -> float:
    """Round an exact node to ``fmt`` (a Python float holding a ``fmt`` value)."""
    if isinstance(x, Power):
        return round_power(x, fmt, max_prec)
    if isinstance(x, Fraction):
        return round_rational(x, fmt)
    if math.isnan(x):
        return math.nan
    return x


def _split2(n: int) -> tuple[int, int]:
    """``n = 2**k * odd``: return ``(k, odd)`` for ``n > 0``."""
    k = (n & -n).bit_length() - 1
    return k, n >> k


def _integer_power(p: Power) -> tuple[int, int, int] | None:
    """``(a, b, m)`` with ``base ** exponent = (a / b) ** m``, ``m >= 0`` and
    ``a / b`` in lowest terms, when ``base ** exponent`` is rational: for an
    exponent ``m / n`` the numerator and denominator of ``base`` must be
    perfect ``n``-th powers.  None when it is irrational."""
    m, n = p.exponent.numerator, p.exponent.denominator
    a, b = p.base.numerator, p.base.denominator
    if n > 1:
        ra, rb = exact_root(a, n), exact_root(b, n)
        if ra is None or rb is None:
            return None
        a, b = ra, rb
    return (b, a, -m) if m < 0 else (a, b, m)


def rational_power(p: Power, budget_bits: int) -> tuple[Fraction, int] | None:
    """``p`` as ``(q, k)`` with value ``q * 2**k`` when ``base ** exponent`` is
    rational and ``q`` costs at most about ``budget_bits`` bits; else None.

    The power-of-two part of the result is kept in ``k`` so that, for
    instance, ``0.5 ** 10**18`` costs nothing.
    """
    base = _integer_power(p)
    if base is None:
        return None  # base ** exponent is irrational
    a, b, m = base
    i, A = _split2(a)
    j, B = _split2(b)
    if m * (max(A, B).bit_length() - 1) > budget_bits:
        return None
    return p.coef * Fraction(A**m, B**m), (i - j) * m


def _may_be_boundary(p: Power, fmt: Format) -> bool:
    """False when ``p``'s value is provably neither a value of ``fmt`` nor a
    midpoint between two (nor the overflow threshold, itself a midpoint).

    Such points are ``K * 2**e`` with ``K`` odd and ``K < 2**(precision+1)``.
    Write ``base ** exponent = (2**i A / 2**j B) ** m`` (``m > 0`` after
    swapping, ``A``, ``B`` odd and coprime) and ``coef = +-2**k U / 2**l V``.
    The odd part of the value is ``U A**m / (V B**m)``; it is an odd integer
    only if ``B**m`` divides ``U``, and it is at least ``A**m / V``.  Both
    conditions are tested through bit lengths, so no large power is formed.
    An irrational ``base ** exponent`` is never such a point.
    """
    base = _integer_power(p)
    if base is None:
        return False
    a, b, m = base
    _, A = _split2(a)
    _, B = _split2(b)
    _, U = _split2(abs(p.coef.numerator))
    _, V = _split2(p.coef.denominator)
    if B > 1 and m * (B.bit_length() - 1) >= U.bit_length():
        return False  # B**m >= 2**bitlen(U) > U cannot divide U
    if A > 1 and m * (A.bit_length() - 1) >= fmt.precision + 1 + V.bit_length():
        return False  # A**m / V >= 2**(precision+1)
    return True


def _log2_magnitude(q: Fraction) -> int:
    """About ``log2 |q|`` (within 1) for ``q != 0``."""
    return abs(q.numerator).bit_length() - q.denominator.bit_length()


def amplification_bits(p: Power) -> int:
    """About ``log2 |exponent * ln base|``, the bits that the evaluation of the
    exponential loses to the magnitude of its argument (at least 0)."""
    a, b = p.base.numerator, p.base.denominator
    if b <= 2 * a and a <= 2 * b:  # 1/2 <= base <= 2, where |ln r| <= 2 |r - 1|
        ln_bits = abs(a - b).bit_length() - b.bit_length() + 1
    else:
        ln_bits = abs(a.bit_length() - b.bit_length()).bit_length()
    e = p.exponent
    return max(0, abs(e.numerator).bit_length() - e.denominator.bit_length() + ln_bits + 1)


def enclose(p: Power, prec: int) -> tuple[Any, Any]:
    """An mpf interval enclosing ``coef * base ** exponent``, about ``prec``
    bits wide relative to the value.  It contains the exact value at every
    ``prec``: the exponent's logarithm and its exponential come from the
    rigorous series of :mod:`expdecay.intervals`, and every other operation is
    an exact or outward-rounded one."""
    return power_interval(p.coef, p.base, p.exponent, prec)


@dataclass
class ZivStats:
    """Counters of the Ziv loops, for analysis and benchmarks."""

    calls: int = 0
    exact: int = 0
    retries: int = 0
    max_prec: int = 0


STATS = ZivStats()


def log2_enclosure(p: Power) -> tuple[Fraction, Fraction]:
    """An enclosure of ``log2 |coef * base ** exponent|`` (cheap: no
    exponential, whatever the size of the exponent)."""
    return log2_interval(p.coef, p.base, p.exponent)


def _describe(p: Power) -> str:
    """A short description of a power (its integers may have millions of digits)."""
    def size(q: Fraction) -> str:
        return f"2**{_log2_magnitude(q)}" if q else "0"

    return f"c * r**p with c ~ {size(p.coef)}, r ~ {size(p.base)}, p ~ {size(p.exponent)}"


def _check_amplification(p: Power, amplification: int, limit: int) -> None:
    if amplification > limit:
        raise PrecisionError(
            f"|p ln r| ~ 2**{amplification} is beyond what is evaluated (2**{limit}) for "
            f"{_describe(p)}"
        )


def round_power(p: Power, fmt: Format, max_prec: int = DEFAULT_MAX_PREC) -> float:
    """Correctly round ``p`` to ``fmt`` (spec §10)."""
    STATS.calls += 1
    if _may_be_boundary(p, fmt):
        exact = rational_power(p, budget_bits=1 << 30)
        assert exact is not None  # the boundary test bounded its size
        STATS.exact += 1
        return round_rational(exact[0], fmt, exact[1])
    amplification = amplification_bits(p)
    if amplification > 16:
        # |p ln r| > 2**15: first decide from log2 of the value whether it
        # certainly overflows or underflows; exp of a huge argument is costly.
        lo2, hi2 = log2_enclosure(p)
        if lo2 > fmt.emax + 2:
            return -math.inf if p.coef < 0 else math.inf
        if hi2 < fmt.quantum_min - 2:
            return -0.0 if p.coef < 0 else 0.0
    _check_amplification(p, amplification, max_prec)
    # The enclosure's width does not grow with |p ln r| (its logarithm is
    # taken to absolute precision), so the start depends on the format only.
    prec = min(max_prec, fmt.precision + 24)
    while True:
        lo, hi = enclose(p, prec)
        a = round_dyadic(bool(lo[0]), int(lo[1]), lo[2], fmt)
        if a == round_dyadic(bool(hi[0]), int(hi[1]), hi[2], fmt):
            STATS.max_prec = max(STATS.max_prec, prec)
            return a
        STATS.retries += 1
        if prec >= max_prec:
            raise PrecisionError(
                f"rounding of {_describe(p)} to {fmt.name} undecided at {prec} bits "
                f"(cap {max_prec})"
            )
        prec = min(max_prec, 2 * prec)


# ---------------------------------------------------------------------------
# The integer path: dyadic inputs, no Fraction on the way
# ---------------------------------------------------------------------------
#
# Inputs that are Python floats or ints (or dyadic Fractions, as the
# vectorised path passes them) are finite dyadic rationals ``num / den`` with
# ``den`` a power of two.  For those, the same evaluation as above is done on
# plain integers: the exponent ``s / D`` as a reduced pair, the boundary test
# of :func:`_may_be_boundary` on odd parts, the enclosure of
# :func:`power_interval` as integer mantissas with shared exponents (the
# coefficient is dyadic, so multiplying by it is exact), and
# :func:`~expdecay.floats.round_dyadic` on both ends.  Anything else (a zero,
# an infinity, NaN, a negative rate, a non-dyadic input, an exponent whose
# ``|p ln r|`` exceeds 2**16, a Ziv loop that reaches ``max_prec``) returns
# None, and the caller takes the general path, which decides it as before.

#: Guard bits of the first Ziv iteration beyond the format's precision.
_GUARD = 24


def _is_pow2(n: int) -> bool:
    return n & (n - 1) == 0


def _odd_split(num: int, den: int) -> tuple[int, int]:
    """``(A, i)`` with ``num / den = A 2**i``, ``A`` odd, for ``num > 0`` and
    ``den`` a power of two."""
    t = (num & -num).bit_length() - 1
    return num >> t, t - den.bit_length() + 1


@functools.lru_cache(maxsize=1024)
def _rate_parts(rn: int, rd: int) -> tuple[int, int, int]:
    """``(A, i, ln_bits)``: ``rn / rd = A 2**i`` with ``A`` odd, and about
    ``log2 |ln(rn / rd)|`` as in :func:`amplification_bits` (a schedule's rate
    is used at many steps)."""
    A, i = _odd_split(rn, rd)
    if rd <= 2 * rn and rn <= 2 * rd:
        ln_bits = abs(rn - rd).bit_length() - rd.bit_length() + 1
    else:
        ln_bits = abs(rn.bit_length() - rd.bit_length()).bit_length()
    return A, i, ln_bits


def _power_parts(
    negative: bool, cm: int, ce: int, rn: int, rd: int, m: int, n: int, fmt: Format,
    max_prec: int,
) -> float | None:
    """Round ``(-1)**negative cm 2**ce (rn/rd)**(m/n)`` to ``fmt``.

    ``cm > 0``; ``rn / rd`` dyadic, positive, not 1; ``m != 0``, ``n >= 1``
    coprime.  None when the general path must decide."""
    STATS.calls += 1
    A, i, ln_bits = _rate_parts(rn, rd)
    # Exact cases (spec §10): base ** exponent is rational only if the odd part
    # is a perfect n-th power and n divides the power of two's exponent.
    root: int | None = A
    if n > 1:
        root = None if i % n else exact_root(A, n)
    if root is not None:
        i //= n
        if root == 1:  # a power of two: the value is dyadic
            STATS.exact += 1
            return round_dyadic(negative, cm, ce + i * m, fmt)
        width = root.bit_length() - 1
        if m > 0 and m * width < fmt.precision + 1:
            STATS.exact += 1
            return round_dyadic(negative, cm * root**m, ce + i * m, fmt)
        if m < 0 and -m * width < cm.bit_length():
            STATS.exact += 1
            return round_ratio(-cm if negative else cm, root**-m, fmt, ce + i * m)
        # Otherwise the odd part of the value is not an integer below
        # 2**(precision+1): not a float nor a midpoint, so the loop ends.
    # |p ln r| in bits, as amplification_bits(): beyond 2**16 the general path
    # first settles overflow and underflow from log2 of the value.
    extra = max(0, abs(m).bit_length() - n.bit_length() + 1)
    if extra + ln_bits > 16:
        return None
    prec = min(max_prec, fmt.precision + _GUARD)
    while True:
        # power_interval(): y = (m/n) ln r enclosed at F bits, exp of it.
        F = prec + 8
        FL = -(-(F + extra) // 32) * 32
        Llo, Lhi = ln_ratio_cached(rn, rd, FL)
        lo, hi = (m * Llo, m * Lhi) if m > 0 else (m * Lhi, m * Llo)
        scale = n << (FL - F)
        a, ea, b, eb = exp_interval_parts(lo // scale, -((-hi) // scale), F)
        # The magnitude's ends, rounded outward to prec bits as mpi_mul does
        # in power_interval (so max_prec caps the same enclosure width).
        a *= cm
        b *= cm
        k = a.bit_length() - prec
        if k > 0:
            a, ea = a >> k, ea + k
        k = b.bit_length() - prec
        if k > 0:
            b, eb = -((-b) >> k), eb + k
        x = round_dyadic(negative, a, ce + ea, fmt)
        if x == round_dyadic(negative, b, ce + eb, fmt):
            STATS.max_prec = max(STATS.max_prec, prec)
            return x
        STATS.retries += 1
        if prec >= max_prec:
            return None  # the general path raises PrecisionError
        prec = min(max_prec, 2 * prec)


def parts_exact(
    I: tuple[int, int], D: tuple[int, int], r: tuple[int, int], s: tuple[int, int],
    staircase: bool, fmt: Format, max_prec: int,
) -> float | None:
    """The ``exact`` order on nonzero finite dyadic ``(num, den)`` pairs, ``D``
    and ``r`` positive."""
    (In, Id), (Dn, Dd), (rn, rd), (sn, sd) = I, D, r, s
    negative = In < 0
    cm, ce = _odd_split(abs(In), Id)
    pn, pd = sn * Dd, sd * Dn
    if staircase:
        pn, pd = pn // pd, 1
    else:
        g = math.gcd(pn, pd)
        pn, pd = pn // g, pd // g
    if pn == 0 or rn == rd:  # r ** 0 = 1 ** p = 1
        return round_dyadic(negative, cm, ce, fmt)
    return _power_parts(negative, cm, ce, rn, rd, pn, pd, fmt, max_prec)


def _rounded(pair: tuple[int, int], fmt: Format) -> float:
    """The dyadic ``num / den`` rounded to ``fmt`` (possibly a zero or an
    infinity)."""
    num, den = pair
    return round_dyadic(num < 0, abs(num), 1 - den.bit_length(), fmt)


#: The keras order's casts of ``(I, D, r)`` per format, with their pairs: a
#: schedule is evaluated at many steps.  Cleared past 4096 entries.
_CASTS: dict[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]], tuple[Any, ...]] = {}


def _casts(
    I: tuple[int, int], D: tuple[int, int], r: tuple[int, int], fmt: Format,  # noqa: N803
) -> tuple[Any, ...]:
    """``(If, Df, rf, regular, negative, cm, ce, rn, rd, dn, dd)``: the casts,
    whether all three are finite and nonzero with ``rf != 1`` (the common
    case), and the integers the power and the product need."""
    key = (fmt.name, I, D, r)
    got = _CASTS.get(key)
    if got is None:
        if len(_CASTS) >= 4096:
            _CASTS.clear()
        If, Df, rf = _rounded(I, fmt), _rounded(D, fmt), _rounded(r, fmt)
        regular = all(x != 0.0 and not math.isinf(x) for x in (If, Df, rf)) and rf != 1.0
        if regular:
            In, Id = If.as_integer_ratio()
            cm, ce = _odd_split(abs(In), Id)
            got = (If, Df, rf, True, In < 0, cm, ce, *rf.as_integer_ratio(),
                   *Df.as_integer_ratio())
        else:
            got = (If, Df, rf, False)
        _CASTS[key] = got
    return got


def parts_keras(
    I: tuple[int, int], D: tuple[int, int], r: tuple[int, int], s: tuple[int, int],
    staircase: bool, fmt: Format, max_prec: int,
) -> float | None:
    """The ``keras`` order (spec §7) on nonzero finite dyadic pairs, ``D``
    and ``r`` positive: every input and every operation rounded to ``fmt``.

    The special values that the casts can produce in narrow formats follow
    the rules of :class:`ExactOps`: ``D`` rounding to infinity makes ``s / D``
    a zero and the power 1; ``s`` (or ``s / D``) rounding to infinity makes
    the power ``0`` or ``inf``; a power of 1 leaves ``I``."""
    c = _casts(I, D, r, fmt)
    sn, sd = s
    if sd == 1 and abs(sn) >> fmt.precision == 0:  # an integer step the format holds
        sf = float(sn)
    else:
        sf = round_dyadic(sn < 0, abs(sn), 1 - sd.bit_length(), fmt)
        if sf - sf == 0.0 and sf != 0.0:
            sn, sd = sf.as_integer_ratio()
    if c[3] and sf - sf == 0.0 and sf != 0.0:  # the common case: all casts regular
        _, _, _, _, negative, cm, ce, rn, rd, dn, dd = c
        q = round_ratio(sn * dd, sd * dn, fmt)  # s / D
        if q == 0.0 or q - q != 0.0:
            return _keras_special(c[0], c[1], c[2], sf, staircase, fmt, max_prec)
        if staircase:
            qn, qd = math.floor(q), 1
            if qn == 0:  # r ** 0 = 1
                return c[0]  # type: ignore[no-any-return]
        else:
            qn, qd = q.as_integer_ratio()
        w = _power_parts(False, 1, 0, rn, rd, qn, qd, fmt, max_prec)
        if w is None:
            return None
        if w == 0.0 or w - w != 0.0:
            return _keras_special(c[0], c[1], c[2], sf, staircase, fmt, max_prec)
        wn, wd = w.as_integer_ratio()
        return round_dyadic(negative, cm * wn, ce + 1 - wd.bit_length(), fmt)
    return _keras_special(c[0], c[1], c[2], sf, staircase, fmt, max_prec)


def _keras_special(
    If: float, Df: float, rf: float, sf: float, staircase: bool, fmt: Format,  # noqa: N803
    max_prec: int,
) -> float | None:
    """:func:`parts_keras` when a cast, ``s / D`` or the power is a zero or
    an infinity, or ``rf`` is 1 (None: the general path decides)."""
    if If == 0.0 or math.isinf(If) or rf == 0.0 or math.isinf(rf) or Df == 0.0 or sf == 0.0:
        return None
    if rf == 1.0:  # 1 ** q = 1 for every q, NaN included
        return If
    if math.isinf(Df):
        return math.nan if math.isinf(sf) else If  # inf / inf; s / inf = +-0
    if math.isinf(sf):
        q = sf
    else:
        sn, sd = sf.as_integer_ratio()
        dn, dd = Df.as_integer_ratio()
        q = round_ratio(sn * dd, sd * dn, fmt)  # s / D
    if staircase:
        q = float(math.floor(q)) if not math.isinf(q) else q
    if q == 0.0:  # r ** +-0 = 1
        return If
    if math.isinf(q):
        w = math.inf if (rf > 1.0) != (q < 0.0) else 0.0
    else:
        qn, qd = q.as_integer_ratio()
        rn, rd = rf.as_integer_ratio()
        got = _power_parts(False, 1, 0, rn, rd, qn, qd, fmt, max_prec)
        if got is None:
            return None
        w = got
    if w == 0.0 or math.isinf(w):  # I * 0 and I * inf keep the sign of I
        return math.copysign(w, If)
    In, Id = If.as_integer_ratio()
    wn, wd = w.as_integer_ratio()
    return round_dyadic(In < 0, abs(In) * wn, 2 - Id.bit_length() - wd.bit_length(), fmt)


def _plain_pair(x: Any) -> tuple[int, int] | None:
    """``x`` as a dyadic ``(num, den)`` when it is a finite nonzero Python
    float or int (not a bool) or a dyadic Fraction; else None."""
    t = type(x)
    if t is float:
        if x == 0.0 or x - x != 0.0:  # zero, infinity or NaN
            return None
        pair: tuple[int, int] = x.as_integer_ratio()
        return pair
    if t is int:
        return (x, 1) if x else None
    if t is Fraction:
        d = x.denominator
        return (x.numerator, d) if x and _is_pow2(d) else None
    return None


_Pairs = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]


def _plain_pairs(I: Any, D: Any, r: Any, s: Any) -> _Pairs | None:  # noqa: N803
    """The four inputs as dyadic pairs when the integer path applies to them
    (plain dyadic numbers, ``D`` and ``r`` positive); else None."""
    Ip, Dp, rp, sp = _plain_pair(I), _plain_pair(D), _plain_pair(r), _plain_pair(s)
    if Ip is None or Dp is None or rp is None or sp is None or Dp[0] < 0 or rp[0] < 0:
        return None
    return Ip, Dp, rp, sp


def _evaluate_pairs(
    pairs: _Pairs, staircase: bool, fmt: Format, order: Order, max_prec: int,
) -> float | None:
    """The integer path on :func:`_plain_pairs`' pairs, or None when it does
    not settle the value by itself (the general path then decides)."""
    if order == "exact":
        return parts_exact(*pairs, staircase, fmt, max_prec)
    return parts_keras(*pairs, staircase, fmt, max_prec)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


#: The range of ``max_prec`` (bits): below 64 no format can be decided, and
#: beyond 2**20 one Ziv step could take minutes.
MAX_PREC_RANGE = (64, 1 << 20)


def check_max_prec(max_prec: Any) -> int:
    """``max_prec`` must be an int (not a bool) in :data:`MAX_PREC_RANGE`."""
    lo, hi = MAX_PREC_RANGE
    if isinstance(max_prec, (bool, np.bool_)) or not isinstance(max_prec, (int, np.integer)):
        raise TypeError(f"max_prec must be an int; got {type(max_prec).__name__} {max_prec!r}")
    if not lo <= max_prec <= hi:
        raise ValueError(f"max_prec must be in [{lo}, {hi}]; got {max_prec!r}")
    return int(max_prec)


def evaluate(
    initial_learning_rate: Any,
    decay_steps: Any,
    decay_rate: Any,
    step: Any,
    *,
    staircase: bool = False,
    dtype: Any = None,
    order: Order = "exact",
    max_prec: int = DEFAULT_MAX_PREC,
) -> np.floating[Any]:
    """The schedule's value in ``dtype``, correctly rounded, in ``order``.

    ``order="exact"`` rounds the exact real ``I * r ** (s / D)`` once;
    ``order="keras"`` rounds the inputs and every operation (spec §6, §7).
    Returns a numpy scalar of the format (``ml_dtypes.bfloat16`` for
    bfloat16).  ``dtype=None`` applies the dtype rule (spec §4).

    >>> evaluate(0.1, 100000, 0.96, 10**6, dtype="float64")
    np.float64(0.06648326359915008)
    >>> evaluate(0.75, 2, 0.25, 1, dtype="float16")
    np.float16(0.375)
    """
    fmt = resolve_dtype(initial_learning_rate, dtype)
    order = check_order(order)
    max_prec = check_max_prec(max_prec)
    pairs = None
    if staircase is True or staircase is False:
        pairs = _plain_pairs(initial_learning_rate, decay_steps, decay_rate, step)
        if pairs is not None:
            got = _evaluate_pairs(pairs, staircase, fmt, order, max_prec)
            if got is not None:
                return to_numpy(got, fmt)
    args = validated_inputs(initial_learning_rate, decay_steps, decay_rate, step, staircase)
    if pairs is not None:
        # The integer path has already run on these values (validation turns
        # a plain dyadic input into the same pair) and left them undecided.
        return to_numpy(evaluate_general(args, bool(staircase), fmt, order, max_prec), fmt)
    return to_numpy(evaluate_exact(args, bool(staircase), fmt, order, max_prec), fmt)


def evaluate_exact(
    args: tuple[Exact, Exact, Exact, Exact],
    staircase: bool,
    fmt: Format,
    order: Order,
    max_prec: int = DEFAULT_MAX_PREC,
) -> float:
    """:func:`evaluate` on already-converted exact inputs; returns a Python float."""
    pairs = _plain_pairs(*args)
    if pairs is not None:
        got = _evaluate_pairs(pairs, staircase, fmt, order, max_prec)
        if got is not None:
            return got
    return evaluate_general(args, staircase, fmt, order, max_prec)


def evaluate_general(
    args: tuple[Exact, Exact, Exact, Exact],
    staircase: bool,
    fmt: Format,
    order: Order,
    max_prec: int,
) -> float:
    """The general path (exact nodes, :func:`round_node`) on converted inputs."""
    compiled = formula.COMPILED[staircase]
    if order == "exact":
        node = compiled(_EXACT_OPS, *args)
        return round_node(node, fmt, max_prec)
    ops = RoundedOps(fmt, max_prec)
    I, D, r, s = args
    result = compiled(ops, _cast(I, fmt), _cast(D, fmt), _cast(r, fmt), ops.round(s))
    return round_node(result, fmt, max_prec)


def _cast(x: Exact, fmt: Format) -> Exact:
    """The keras order's cast of a schedule parameter."""
    if isinstance(x, float):  # zeros, infinities and NaN are their own casts
        return x
    return _cast_fraction(x, fmt)


@functools.lru_cache(maxsize=1024)
def _cast_fraction(x: Fraction, fmt: Format) -> Exact:
    # Cached: a schedule is evaluated at many steps.  (Only Fractions are
    # cached: -0.0 == 0.0 would share an entry.)
    return from_float(round_rational(x, fmt))


def exact_node(
    initial_learning_rate: Any,
    decay_steps: Any,
    decay_rate: Any,
    step: Any,
    *,
    staircase: bool = False,
) -> Node:
    """The exact value of the schedule as a node (Fraction, special float or Power)."""
    args = validated_inputs(initial_learning_rate, decay_steps, decay_rate, step, staircase)
    node: Node = formula.COMPILED[bool(staircase)](_EXACT_OPS, *args)
    return node


# ---------------------------------------------------------------------------
# Decimal digits of the exact value
# ---------------------------------------------------------------------------


def _decimal_digits(q: Fraction, digits: int) -> tuple[int, int]:
    """``(N, e)`` with ``N`` the ``digits``-digit integer nearest (ties to even)
    to ``|q| / 10**(e - digits + 1)`` and ``10**e <= |q| < 10**(e+1)`` after
    rounding."""
    q = abs(q)
    e = math.floor((q.numerator.bit_length() - q.denominator.bit_length()) * 0.30102999566398120)
    while Fraction(10) ** e > q:
        e -= 1
    while Fraction(10) ** (e + 1) <= q:
        e += 1
    scaled = q * Fraction(10) ** (digits - 1 - e)
    n, rem = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * rem
    if twice > scaled.denominator or (twice == scaled.denominator and n & 1):
        n += 1
    if n == 10**digits:
        n, e = 10 ** (digits - 1), e + 1
    return n, e


def _format_decimal(negative: bool, n: int, e: int) -> str:
    s = int_to_decimal(n)
    body = s[0] + ("." + s[1:] if len(s) > 1 else "")
    return f"{'-' if negative else ''}{body}e{e:+d}"


def value(
    initial_learning_rate: Any,
    decay_steps: Any,
    decay_rate: Any,
    step: Any,
    *,
    staircase: bool = False,
    digits: int = 40,
    max_prec: int = DEFAULT_MAX_PREC,
) -> str:
    """The exact real value of the schedule with ``digits`` correct significant
    digits (rounded half to even), as ``"d.ddd…e±x"`` (spec §9).

    >>> value(0.75, 2, 0.25, 1, digits=5)
    '3.7500e-1'
    >>> value(1, 1, "0.5", -3, digits=3)
    '8.00e+0'
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 10000:
        raise ValueError(f"digits must be an int in [1, 10000]; got {digits!r}")
    max_prec = check_max_prec(max_prec)
    node = exact_node(initial_learning_rate, decay_steps, decay_rate, step, staircase=staircase)
    if isinstance(node, float):
        if math.isnan(node):
            return "nan"
        if math.isinf(node):
            return "-inf" if node < 0 else "inf"
        return "-0" if math.copysign(1.0, node) < 0 else "0"
    if isinstance(node, Fraction):
        return _format_decimal(node < 0, *_decimal_digits(node, digits))
    exact = _decimal_exact(node, digits)
    if exact is not None:
        return exact
    return _decimal_ziv(node, digits, max_prec)


def _split25(n: int) -> tuple[int, int, int]:
    """``n = 2**i * 5**j * rest`` with ``rest`` prime to 10: ``(i, j, rest)``."""
    i, n = _split2(n)
    j = 0
    while n % 5 == 0:
        n //= 5
        j += 1
    return i, j, n


def _decimal_exact(p: Power, digits: int) -> str | None:
    """The digits of ``p`` computed with rationals when its value could be a
    decimal rounding boundary (a number with ``digits + 1`` significant
    digits); None when it provably is not, so that enclosures settle.

    The decimal analogue of :func:`_may_be_boundary`: with the factors 2 and 5
    split off, the value is ``g * 2**i2 * 5**i5`` where ``g`` is prime to 10.
    A decimal ``K * 10**e`` with ``K < 10**(digits+1)`` needs ``g`` to be an
    integer at most ``K`` and ``2**|i2 - i5| <= K``; all three are tested on
    bit lengths before any power is formed, and ``10**min(i2, i5)`` is never
    formed at all.
    """
    base = _integer_power(p)
    if base is None:
        return None
    a, b, m = base
    limit = int((digits + 1) * 3.3219280948873623) + 2  # bits of 10**(digits+1)
    a2, a5, A = _split25(a)
    b2, b5, B = _split25(b)
    u2, u5, U = _split25(abs(p.coef.numerator))
    v2, v5, V = _split25(p.coef.denominator)
    if B > 1 and m * (B.bit_length() - 1) >= U.bit_length():
        return None
    if A > 1 and m * (A.bit_length() - 1) >= limit + V.bit_length():
        return None
    i2 = u2 - v2 + m * (a2 - b2)
    i5 = u5 - v5 + m * (a5 - b5)
    if abs(i2 - i5) > limit:
        return None
    e = min(i2, i5)
    y = Fraction(U * A**m, V * B**m) * 2 ** (i2 - e) * 5 ** (i5 - e)
    n10, e10 = _decimal_digits(y, digits)
    return _format_decimal(p.coef < 0, n10, e10 + e)


def _decimal_ziv(p: Power, digits: int, max_prec: int) -> str:
    """Digits of an inexact power by interval enclosures, scaled by a power of
    ten in interval arithmetic so that huge exponents are never expanded."""
    amplification = amplification_bits(p)
    # Beyond |p ln r| ~ 2**256 the decimal exponent itself has over 77 digits.
    _check_amplification(p, amplification, min(max_prec, MAX_DECIMAL_AMPLIFICATION))
    prec = min(max_prec, int(digits * 3.33) + 32 + amplification)
    while True:
        lo, hi = enclose(p, prec)
        mag_lo = libmpi.mpi_abs((lo, hi), prec)[0]
        # Decimal exponent estimate from the binary exponent of the lower end,
        # in integers (the exponent may exceed a float's range); an error of
        # one is harmless, the digits are rounded from the exact scaled ends.
        e2 = mag_lo[2] + mag_lo[3] - 1
        wp = abs(e2).bit_length() + 40  # log10(2) to more bits than e2 has
        log10_2 = mpf_div(mpf_log(from_int(2), wp), mpf_log(from_int(10), wp), wp)
        e_est = to_int(mpf_mul(from_int(e2), log10_2, wp), round_floor)
        k = digits - 1 - e_est
        # 10**|k| enclosed by the same rigorous kernels (mpmath's integer
        # power rounds an approximation, not the exact value).
        scale = power_interval(Fraction(1), Fraction(10), Fraction(abs(k)), prec)
        if k < 0:
            scaled = libmpi.mpi_div((lo, hi), scale, prec)
        else:
            scaled = libmpi.mpi_mul((lo, hi), scale, prec)
        ends = [_decimal_digits(mpf_to_fraction(x), digits) for x in scaled if x[1]]
        if len(ends) == 2 and ends[0] == ends[1]:
            n, e = ends[0]
            return _format_decimal(p.coef < 0, n, e - k)
        if prec >= max_prec:
            raise PrecisionError(f"{digits} digits of {_describe(p)} undecided at {prec} bits")
        prec = min(max_prec, 2 * prec)
