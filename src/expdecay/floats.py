"""Binary floating-point formats and exact rounding into them.

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
import struct
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
    "from_bits",
    "to_hex",
    "ulp_distance",
    "next_up",
    "next_down",
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


def is_representable(x: float, fmt: Format) -> bool:
    """True when the Python float ``x`` is exactly a value of ``fmt``."""
    if not math.isfinite(x):
        return True
    return x == 0.0 or round_rational(Fraction(x), fmt) == x


# ---------------------------------------------------------------------------
# Bits, hex and ulps
# ---------------------------------------------------------------------------


def to_bits(x: float, fmt: Format) -> int:
    """The bit pattern of ``x`` (a value of ``fmt``) as an unsigned integer.

    NaN maps to the format's canonical quiet NaN.
    """
    if math.isnan(x):
        return fmt.nan_bits
    sign = 1 << (fmt.width - 1) if math.copysign(1.0, x) < 0 else 0
    a = abs(x)
    frac_bits = fmt.precision - 1
    bias = fmt.emax
    if math.isinf(a):
        return sign | (((1 << fmt.exponent_bits) - 1) << frac_bits)
    if a == 0.0:
        return sign
    m, e = math.frexp(a)  # a = m * 2**e, 0.5 <= m < 1
    e -= 1
    if e < fmt.emin:
        mant = Fraction(a) / Fraction(2) ** fmt.quantum_min
        if mant.denominator != 1:
            raise ValueError(f"{x!r} is not a value of {fmt.name}")
        return sign | int(mant)
    mant = Fraction(a) * Fraction(2) ** (frac_bits - e)
    if mant.denominator != 1 or e > fmt.emax:
        raise ValueError(f"{x!r} is not a value of {fmt.name}")
    return sign | ((e + bias) << frac_bits) | (int(mant) - (1 << frac_bits))


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
    if math.isnan(x):
        raise ValueError(f"ulp distance is undefined for NaN (format {fmt.name})")
    bits = to_bits(x, fmt)
    sign = 1 << (fmt.width - 1)
    return -(bits & (sign - 1)) if bits & sign else bits


def ulp_distance(a: float, b: float, fmt: Format) -> int:
    """Signed number of representable steps of ``fmt`` from ``a`` to ``b``.

    ``+0`` and ``-0`` are one point; the step from the largest finite value to
    infinity counts as one.  Both arguments must be values of ``fmt``.
    """
    return _order_key(b, fmt) - _order_key(a, fmt)


def _from_key(key: int, fmt: Format) -> float:
    sign = 1 << (fmt.width - 1)
    return from_bits(key if key >= 0 else (-key) | sign, fmt)


def next_up(x: float, fmt: Format) -> float:
    """The least value of ``fmt`` greater than ``x`` (``inf`` stays ``inf``)."""
    if math.isnan(x) or x == math.inf:
        return x
    if x == 0.0:
        return fmt.min_subnormal
    return _from_key(_order_key(x, fmt) + 1, fmt)


def next_down(x: float, fmt: Format) -> float:
    """The greatest value of ``fmt`` less than ``x``."""
    return -next_up(-x, fmt)


def ulp_keys(x: np.ndarray, fmt: Format) -> np.ndarray:
    """The array form of the order key of :func:`ulp_distance`: integer keys,
    monotone in value, whose differences count ulps of ``fmt`` (+0 and -0
    share a key; NaN gives an arbitrary key). ``x`` holds values of ``fmt``'s
    dtype."""
    bits = np.ascontiguousarray(x).view(f"u{fmt.width // 8}").astype(np.int64)
    sign = 1 << (fmt.width - 1)
    if fmt.width == 64:
        raw = np.ascontiguousarray(x).view(np.uint64)
        mag = (raw & np.uint64(sign - 1)).astype(np.int64)
        neg = (raw >> np.uint64(63)).astype(bool)
    else:
        mag = bits & (sign - 1)
        neg = (bits & sign) != 0
    return np.where(neg, -mag, mag)


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


def float64_bits(x: float) -> int:
    """Bits of a Python float, for quick checks."""
    bits: int = struct.unpack("<Q", struct.pack("<d", x))[0]
    return bits
