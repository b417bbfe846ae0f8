"""Binary floating-point formats, exact rounding into them, and the facts
about their values: bits, representability, ulp distance and neighbours, for
single values and for whole arrays.  The rest of the package (the oracle, the
conformance runner and its diagnosis, the analysis, ``expdecay.testing``)
asks these questions here and nowhere else.

Everything here is exact integer arithmetic: a value of any of the four
formats is also a Python float (binary64 contains binary16, bfloat16 and
binary32), so rounded results are returned as Python floats that are exactly
representable in the requested format.

>>> f32 = get_format("float32")
>>> round_rational(Fraction(1, 10), f32).hex()
'0x1.99999a0000000p-4'
>>> to_hex(0.1, get_format("float64"))
'0x1.999999999999ap-4'
>>> ulp_distance(0.0, next_up(0.0, f32), f32)
1
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import ml_dtypes
import numpy as np

__all__ = [
    "FORMATS",
    "Format",
    "get_format",
    "round_rational",
    "round_ratio",
    "round_dyadic",
    "to_bits",
    "ulp_keys",
    "ulp_diff",
    "abs_ulp_distances",
    "from_bits",
    "to_hex",
    "ulp_distance",
    "ulps_between",
    "same_bits",
    "next_up",
    "next_down",
    "neighbours",
    "to_numpy",
    "is_representable",
]


@dataclass(frozen=True)
class Format:
    """An IEEE 754-style binary format with gradual underflow.

    ``precision`` counts the significand bits including the hidden bit;
    normal numbers have exponents ``emin <= e <= emax`` (value in
    ``[2**e, 2**(e+1))``), subnormals are multiples of ``2**(emin-precision+1)``.
    """

    name: str
    width: int
    precision: int
    emin: int
    emax: int
    dtype: Any

    @property
    def exponent_bits(self) -> int:
        return self.width - self.precision

    @property
    def quantum_min(self) -> int:
        """Exponent of the smallest subnormal, 2**quantum_min."""
        return self.emin - self.precision + 1

    @property
    def max_finite(self) -> float:
        return math.ldexp((1 << self.precision) - 1, self.emax - self.precision + 1)

    @property
    def min_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def min_subnormal(self) -> float:
        return math.ldexp(1.0, self.quantum_min)

    @property
    def nan_bits(self) -> int:
        """The canonical quiet NaN: exponent all ones, top fraction bit set."""
        frac = self.precision - 1
        return (((1 << self.exponent_bits) - 1) << frac) | (1 << (frac - 1))

    def __repr__(self) -> str:
        return f"Format({self.name!r})"


FORMATS: dict[str, Format] = {
    "float16": Format("float16", 16, 11, -14, 15, np.dtype(np.float16)),
    "bfloat16": Format("bfloat16", 16, 8, -126, 127, np.dtype(ml_dtypes.bfloat16)),
    "float32": Format("float32", 32, 24, -126, 127, np.dtype(np.float32)),
    "float64": Format("float64", 64, 53, -1022, 1023, np.dtype(np.float64)),
}


def get_format(dtype: Any) -> Format:
    """Return the :class:`Format` named by ``dtype``.

    ``dtype`` may be a :class:`Format`, a name (``"float32"``), a numpy dtype
    or a scalar type (``np.float16``, ``ml_dtypes.bfloat16``).
    """
    if isinstance(dtype, Format):
        return dtype
    if isinstance(dtype, str):
        fmt = FORMATS.get(dtype)
        if fmt is None:
            raise ValueError(
                f"dtype must be one of {', '.join(FORMATS)}; got {dtype!r}"
            )
        return fmt
    try:
        npd = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"dtype must be a format name or a numpy dtype; got {dtype!r}"
        ) from None
    for fmt in FORMATS.values():
        if fmt.dtype == npd:
            return fmt
    raise ValueError(f"dtype must be one of {', '.join(FORMATS)}; got {dtype!r}")


# ---------------------------------------------------------------------------
# Exact rounding
# ---------------------------------------------------------------------------


def _round_scaled(num: int, den: int, shift: int) -> int:
    """Round ``num / den * 2**shift`` (num, den > 0) to an integer, ties to even."""
    if shift >= 0:
        num <<= shift
    else:
        den <<= -shift
    q, rem = divmod(num, den)
    twice = 2 * rem
    if twice > den or (twice == den and q & 1):
        q += 1
    return q


def _finish(negative: bool, mant: int, qexp: int, fmt: Format) -> float:
    """Value ``(-1)**negative * mant * 2**qexp`` after rounding; apply overflow."""
    if mant == 0:
        return -0.0 if negative else 0.0
    # mant < 2**(precision+1) after a carry; the value overflows when it
    # reaches 2**(emax+1).
    if mant.bit_length() + qexp > fmt.emax + 1:
        return -math.inf if negative else math.inf
    value = math.ldexp(mant, qexp)
    return -value if negative else value


def round_rational(q: Fraction | int, fmt: Format, scale: int = 0) -> float:
    """Round the rational ``q * 2**scale`` to ``fmt``: nearest, ties to even.

    Subnormals are produced, overflow gives a signed infinity and underflow a
    signed zero (``q == 0`` gives ``+0.0``).  ``scale`` may be huge: the power
    of two is never materialised when the result is out of range.
    """
    return round_ratio(q.numerator, q.denominator, fmt, scale)  # an int has these too


def round_ratio(num: int, den: int, fmt: Format, scale: int = 0) -> float:
    """:func:`round_rational` of ``num / den`` (integers, ``den > 0``, not
    necessarily in lowest terms), without forming a Fraction."""
    if num == 0:
        return 0.0
    negative = num < 0
    num = abs(num)
    # e = floor(log2(num/den)) + scale, exactly.
    e = num.bit_length() - den.bit_length()
    if (num << max(-e, 0)) < (den << max(e, 0)):
        e -= 1
    e += scale
    if e > fmt.emax + 1:
        return -math.inf if negative else math.inf
    if e < fmt.quantum_min - 1:
        # Below half the smallest subnormal: rounds to zero.
        return -0.0 if negative else 0.0
    qexp = max(e, fmt.emin) - fmt.precision + 1
    mant = _round_scaled(num, den, scale - qexp)
    return _finish(negative, mant, qexp, fmt)


def round_dyadic(negative: bool, man: int, exp: int, fmt: Format) -> float:
    """Round ``(-1)**negative * man * 2**exp`` (``man >= 0``) to ``fmt``.

    Works for exponents of any size without materialising ``2**exp``.
    """
    if man == 0:
        return -0.0 if negative else 0.0
    precision, emin, emax = fmt.precision, fmt.emin, fmt.emax
    e = man.bit_length() - 1 + exp
    if e > emax + 1:
        return -math.inf if negative else math.inf
    if e < emin - precision:  # below half the smallest subnormal
        return -0.0 if negative else 0.0
    qexp = (e if e > emin else emin) - precision + 1
    shift = qexp - exp
    if shift <= 0:
        mant = man << -shift
    else:
        mant = man >> shift
        rem = man - (mant << shift)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and mant & 1):
            mant += 1
    # As _finish(): mant < 2**(precision+1) after a carry.
    if mant == 0:
        return -0.0 if negative else 0.0
    if mant.bit_length() + qexp > emax + 1:
        return -math.inf if negative else math.inf
    value = math.ldexp(mant, qexp)
    return -value if negative else value


# ---------------------------------------------------------------------------
# Bits, hex, ulps and neighbours of single values, in integer arithmetic
# (the conformance runner judges and recomputes millions of values: no
# Fraction on these paths). A value of a format is a float whose
# significand fits in ``precision`` bits and whose exponent is in range.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Consts:
    """A format's constants, as plain attributes (read on every call)."""

    precision: int
    emin: int
    emax: int
    quantum_min: int
    sign: int
    inf_bits: int
    nan_bits: int
    min_subnormal: float


_CONSTS: dict[str, _Consts] = {}


def _consts(fmt: Format) -> _Consts:
    c = _CONSTS.get(fmt.name)
    if c is None:
        c = _CONSTS[fmt.name] = _Consts(
            fmt.precision, fmt.emin, fmt.emax, fmt.quantum_min, 1 << (fmt.width - 1),
            ((1 << fmt.exponent_bits) - 1) << (fmt.precision - 1), fmt.nan_bits,
            fmt.min_subnormal)
    return c


def is_representable(x: float, fmt: Format) -> bool:
    """True when the float ``x`` is exactly a value of ``fmt`` (NaN and the
    infinities are values of every format).

    >>> is_representable(0.1, FORMATS["float32"]), is_representable(0.5, FORMATS["bfloat16"])
    (False, True)
    """
    if x == 0.0 or not math.isfinite(x):
        return True
    c = _consts(fmt)
    m, e = math.frexp(abs(x))  # |x| = m * 2**e, 0.5 <= m < 1: top bit at e - 1
    if e - 1 > c.emax:
        return False
    n = int(m * 9007199254740992.0)  # m * 2**53, exact
    low = (n & -n).bit_length() - 1 + e - 53  # exponent of the lowest set bit
    return low >= max(c.quantum_min, e - c.precision)


def to_bits(x: float, fmt: Format) -> int:
    """The bit pattern of ``x`` (a value of ``fmt``) as an unsigned integer.

    NaN maps to the format's canonical quiet NaN; a float that is not a value
    of ``fmt`` raises :class:`ValueError`.

    >>> hex(to_bits(-2.0, FORMATS["bfloat16"])), hex(to_bits(math.nan, FORMATS["float16"]))
    ('0xc000', '0x7e00')
    """
    c = _consts(fmt)
    if math.isnan(x):
        return c.nan_bits
    sign = c.sign if math.copysign(1.0, x) < 0 else 0
    if math.isinf(x):
        return sign | c.inf_bits
    if x == 0.0:
        return sign
    if not is_representable(x, fmt):
        raise ValueError(f"{x!r} is not a value of {fmt.name}")
    m, e = math.frexp(abs(x))
    n = int(m * 9007199254740992.0)  # 53 bits, top bit set: |x| = n * 2**(e - 53)
    e -= 1
    frac = c.precision - 1
    if e < c.emin:  # subnormal: a multiple of 2**quantum_min
        return sign | (n >> (c.quantum_min - e + 52))
    return sign | ((e + c.emax) << frac) | ((n >> (52 - frac)) - (1 << frac))


def from_bits(bits: int, fmt: Format) -> float:
    """The value whose bit pattern in ``fmt`` is ``bits``."""
    if not 0 <= bits < (1 << fmt.width):
        raise ValueError(f"bits must be in [0, 2**{fmt.width}); got {bits!r}")
    frac_bits = fmt.precision - 1
    negative = bits >> (fmt.width - 1)
    biased = (bits >> frac_bits) & ((1 << fmt.exponent_bits) - 1)
    frac = bits & ((1 << frac_bits) - 1)
    if biased == (1 << fmt.exponent_bits) - 1:
        value = math.nan if frac else math.inf
    elif biased == 0:
        value = math.ldexp(frac, fmt.quantum_min)
    else:
        value = math.ldexp(frac | (1 << frac_bits), biased - fmt.emax - frac_bits)
    return -value if negative else value


def to_hex(x: float, fmt: Format | None = None) -> str:
    """C99-style hex float of ``x``, normalised, trailing zero digits dropped.

    ``"0x1.99999ap-4"`` for the float32 nearest 0.1; ``"0x0p+0"``, ``"inf"``
    and ``"nan"`` for the special values.  ``fmt`` only checks membership.
    """
    if fmt is not None and not is_representable(x, fmt):
        raise ValueError(f"{x!r} is not a value of {fmt.name}")
    if math.isnan(x):
        return "nan"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if math.isinf(x):
        return sign + "inf"
    if x == 0.0:
        return sign + "0x0p+0"
    m, e = math.frexp(abs(x))
    mant = int(m * (1 << 53))  # 53-bit integer, top bit set
    e -= 1
    frac = mant - (1 << 52)
    digits = f"{frac:013x}".rstrip("0")
    return f"{sign}0x1{'.' + digits if digits else ''}p{e:+d}"


def _order_key(x: float, fmt: Format) -> int:
    """The order key of ``x``: its signed number of ulp steps from zero."""
    if math.isnan(x):
        raise ValueError(f"ulp distance is undefined for NaN (format {fmt.name})")
    bits = to_bits(x, fmt)
    sign = _consts(fmt).sign
    return -(bits & (sign - 1)) if bits & sign else bits


def ulp_distance(a: float, b: float, fmt: Format) -> int:
    """Signed number of representable steps of ``fmt`` from ``a`` to ``b``.

    ``+0`` and ``-0`` are one point; the step from the largest finite value to
    infinity counts as one.  Both arguments must be values of ``fmt`` (not NaN).

    >>> ulp_distance(-FORMATS["float16"].min_subnormal, 1.0, FORMATS["float16"])
    15361
    """
    return _order_key(b, fmt) - _order_key(a, fmt)


def ulps_between(expected: float, observed: float, fmt: Format) -> float:
    """``abs(ulp_distance(expected, observed, fmt))`` as a float, for judging
    an output: 0 when both are NaN, ``inf`` when only one is, or when
    ``observed`` is not a value of ``fmt``.  ``expected`` must be one.

    >>> f32 = FORMATS["float32"]
    >>> ulps_between(1.0, next_down(1.0, f32), f32), ulps_between(1.0, 0.1, f32)
    (1.0, inf)
    """
    if math.isnan(expected) or math.isnan(observed):
        return 0.0 if math.isnan(expected) and math.isnan(observed) else math.inf
    if not is_representable(observed, fmt):
        return math.inf
    return float(abs(_order_key(observed, fmt) - _order_key(expected, fmt)))


def same_bits(expected: float, observed: float, fmt: Format) -> bool:
    """Bit equality in ``fmt``, every NaN equal to every NaN (whatever the
    payload or sign); False when ``observed`` is not a value of ``fmt``.
    ``expected`` must be one.

    >>> f16 = FORMATS["float16"]
    >>> same_bits(0.0, -0.0, f16), same_bits(math.nan, -math.nan, f16)
    (False, True)
    """
    if math.isnan(expected) or math.isnan(observed):
        return math.isnan(expected) and math.isnan(observed)
    # expected is a value of the format: an equal value of the same sign is
    # that value (so it is one too), and any other value has other bits
    return expected == observed and math.copysign(1.0, expected) == math.copysign(1.0, observed)


def _from_key(key: int, fmt: Format) -> float:
    return from_bits(key if key >= 0 else (-key) | _consts(fmt).sign, fmt)


def next_up(x: float, fmt: Format) -> float:
    """The least value of ``fmt`` greater than ``x`` (``inf`` stays ``inf``,
    NaN stays NaN); ``x`` must be a value of ``fmt``."""
    if math.isnan(x) or x == math.inf:
        return x
    if x == 0.0:
        return _consts(fmt).min_subnormal
    return _from_key(_order_key(x, fmt) + 1, fmt)


def next_down(x: float, fmt: Format) -> float:
    """The greatest value of ``fmt`` less than ``x``."""
    return -next_up(-x, fmt)


def neighbours(x: float, fmt: Format) -> list[float]:
    """``[next_down(x), next_up(x)]`` for a finite value ``x`` of ``fmt``,
    ``[]`` for an infinity or NaN.

    >>> neighbours(1.0, FORMATS["bfloat16"]), neighbours(math.inf, FORMATS["bfloat16"])
    ([0.99609375, 1.0078125], [])
    """
    if not math.isfinite(x):
        return []
    return [next_down(x, fmt), next_up(x, fmt)]


# ---------------------------------------------------------------------------
# The same measures on whole arrays
# ---------------------------------------------------------------------------


def _magnitude_and_sign(x: np.ndarray, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """The bit patterns of ``x`` (values of ``fmt``'s dtype) split into the
    magnitude bits, as uint64, and the sign, as bool."""
    if x.dtype.itemsize * 8 != fmt.width:
        raise TypeError(f"x must hold values of {fmt.name}; got an array of dtype {x.dtype}")
    bits = np.ascontiguousarray(x).view(f"u{fmt.width // 8}").astype(np.uint64)
    sign = np.uint64(1 << (fmt.width - 1))
    return bits & (sign - np.uint64(1)), (bits & sign) != 0


def ulp_keys(x: np.ndarray, fmt: Format) -> np.ndarray:
    """The array form of the order key of :func:`ulp_distance`: int64 keys,
    monotone in value, whose differences count ulps of ``fmt`` (+0 and -0
    share a key; NaN gives an arbitrary key). ``x`` holds values of ``fmt``'s
    dtype.

    >>> ulp_keys(np.array([-1.0, -0.0, 0.0, 2.0**-24], np.float16), FORMATS["float16"])
    array([-15360,      0,      0,      1])
    """
    mag, neg = _magnitude_and_sign(x, fmt)
    keys = mag.astype(np.int64)  # below 2**63: the sign bit is not in it
    out: np.ndarray = np.where(neg, -keys, keys)
    return out


def abs_ulp_distances(a: np.ndarray, b: np.ndarray, fmt: Format) -> np.ndarray:
    """``abs(ulp_distance(a, b, fmt))`` element by element, exactly, as
    uint64 (two float64 values of opposite signs can be up to
    ``2**64 - 2**53`` steps apart, more than int64 holds). ``a`` and ``b``
    hold values of ``fmt``'s dtype (not NaN: a NaN gives an arbitrary
    distance) and broadcast against each other.

    >>> f64 = FORMATS["float64"]
    >>> int(abs_ulp_distances(np.array([-np.inf]), np.array([np.inf]), f64)[0]) == 2 * 0x7ff << 52
    True
    """
    ma, sa = _magnitude_and_sign(a, fmt)
    mb, sb = _magnitude_and_sign(b, fmt)
    same = np.where(ma >= mb, ma - mb, mb - ma)
    out: np.ndarray = np.where(sa == sb, same, ma + mb)
    return out


def ulp_diff(ka: np.ndarray, kb: np.ndarray) -> np.ndarray:
    """``ka - kb`` for keys of :func:`ulp_keys`, saturated to int64 (only
    float64 distances across most of the number line can overflow)."""
    with np.errstate(over="ignore"):
        d = ka - kb
    over = ((ka < 0) != (kb < 0)) & ((d < 0) != (ka < 0))
    if over.any():
        d = np.where(over, np.where(ka < 0, np.iinfo(np.int64).min + 1,
                                    np.iinfo(np.int64).max), d)
    out: np.ndarray = d
    return out


def to_numpy(x: float, fmt: Format) -> np.floating[Any]:
    """The numpy scalar of ``fmt``'s dtype holding the value ``x`` exactly.

    Typed as ``np.floating``: so are float16, float32 and float64;
    ``ml_dtypes.bfloat16`` derives from ``np.generic`` only, but behaves as
    one (``float()``, arithmetic, comparisons, ``.dtype``)."""
    if math.isnan(x):
        out: np.floating[Any] = (
            np.array([fmt.nan_bits], dtype=f"u{fmt.width // 8}").view(fmt.dtype)[0])
    else:
        out = fmt.dtype.type(x)
    return out
