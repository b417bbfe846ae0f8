"""Compiled kernels of the fast path (numba), one pass over the steps.

Imported lazily by :mod:`expdecay.fast.dispatch`, only for arrays of at least
:data:`expdecay.fast.KERNEL_MIN_ELEMENTS` elements, so scalar work never
imports numba nor pays for compilation; without numba the numpy paths give
the same bits.  What each kernel computes, its error bound and rounding test,
why the machine code is the same on every CPU, and how the code is cached:
spec/kernels.md, section 7 (normative; section 6 for the approximations the
kernels share with the numpy paths).

The helpers and the kernels that inline them stay in this one file: numba
invalidates a cached kernel only when its own source file changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numba
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.extending import intrinsic, overload

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["small_kernel", "small_broadcast_kernel", "f64_kernel", "pow2_table",
           "f32_block_kernel", "f64_block_kernel", "bf16_block_kernel",
           "f64_broadcast_kernel"]

_U = 2.0**-53
_B64 = 2.0**-69
_SPLIT = 134217729.0  # 2**27 + 1
_RINT = 6755399441055744.0  # 1.5 * 2**52: x + _RINT - _RINT is rint(x), |x| < 2**51
_T_LIMIT = 2200.0
_SIGN = -0x8000000000000000
_ABS = 0x7FFFFFFFFFFFFFFF
_EXPMASK = 0x7FF0000000000000
_FRAC = 0x000FFFFFFFFFFFFF
_IMPLICIT = 0x0010000000000000
_LIMIT62 = 1 << 62
_TWO53 = 2.0**53
_POW2_OFFSET = 1200


def pow2_table() -> np.ndarray:
    """``2.0**k`` for ``k`` in ``[-1200, 1200]`` (0 and inf beyond float64)."""
    out = np.empty(2 * _POW2_OFFSET + 1)
    for k in range(-_POW2_OFFSET, _POW2_OFFSET + 1):
        out[k + _POW2_OFFSET] = 0.0 if k < -1074 else math.inf if k > 1023 else math.ldexp(1.0, k)
    return out


def _is_int(x: Any) -> bool:
    """Whether a step is an integer (resolved at compile time)."""
    return isinstance(x, int | np.integer)


@overload(_is_int, jit_options={"cache": True})  # type: ignore[typeddict-unknown-key]
def _is_int_impl(x: Any) -> Any:
    integer = isinstance(x, types.Integer)

    def impl(x: Any) -> bool:
        return integer

    return impl


if TYPE_CHECKING:
    def _bits(x: float) -> int: ...

    def _from_bits(x: int) -> float: ...
else:
    @intrinsic
    def _bits(typingctx: Any, x: Any) -> Any:
        """The bits of a float64 as an int64 (an LLVM bitcast)."""
        sig = types.int64(types.float64)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.IntType(64))

        return sig, codegen


    @intrinsic
    def _from_bits(typingctx: Any, x: Any) -> Any:
        """The float64 with the given int64 bits."""
        sig = types.float64(types.int64)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.DoubleType())

        return sig, codegen


_jit = cast(Callable[[_F], _F],
            numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy"))
# Helpers are compiled as separate numba functions; LLVM inlines them into
# the kernels (numba-level inlining would only slow compilation down).
_inline = _jit


@_inline
def _ldexp(x: float, k: int, pow2: np.ndarray) -> float:
    """``x * 2**k`` (two exact scalings; one rounding if the result is subnormal
    only when ``x * 2**k1`` is normal, which callers ensure)."""
    if k > 1100:
        k = 1100
    if k < -1100:
        k = -1100
    k1 = k // 2
    y: float = (x * pow2[k1 + _POW2_OFFSET]) * pow2[k - k1 + _POW2_OFFSET]
    return y


@_inline
def _round_fmt(x: float, prec: int, emin: int, emax: int, pow2: np.ndarray) -> float:
    """``x`` rounded to nearest even in the format (exact), sign kept; inf and
    NaN unchanged; overflow gives inf."""
    if prec == 53:
        return x
    b = _bits(x)
    a = b & _ABS
    if a >= _EXPMASK or a == 0:
        return x
    ex = (a >> 52) - 1023
    neg = b < 0
    if ex == -1023:  # float64 subnormal: far below every format's range
        return -0.0 if neg else 0.0
    mant = (a & _FRAC) | _IMPLICIT
    qexp = max(ex, emin) - (prec - 1)
    shift = qexp - (ex - 52)
    if shift >= 54:
        return -0.0 if neg else 0.0
    q = mant >> shift
    rem = mant - (q << shift)
    half = 1 << (shift - 1)
    if rem > half or (rem == half and (q & 1) == 1):
        q += 1
    val: float = float(q) * pow2[qexp + _POW2_OFFSET]
    if val >= pow2[emax + 1 + _POW2_OFFSET]:
        val = np.inf
    return -val if neg else val


@_inline
def _round_int(s: int, prec: int, emin: int, emax: int, pow2: np.ndarray) -> float:
    """The int64 ``s`` rounded to nearest even in the format, exactly."""
    if s == -(1 << 62) * 2:  # -2**63: a power of two
        return _round_fmt(-9223372036854775808.0, prec, emin, emax, pow2)
    mag = -s if s < 0 else s
    if mag < (1 << 53):
        return _round_fmt(float(s), prec, emin, emax, pow2)
    val = _round_scaled_int(mag, 0, prec, emin, emax, pow2)
    return -val if s < 0 else val


@_inline
def _floor_exact(s: Any, is_int: bool, d_num: int, d_den: int, d_float: float
                 ) -> tuple[bool, float]:
    """``floor(s / D)`` as a float64 holding an integer, and whether proven."""
    if is_int:
        x = float(s)
        if d_float > 0.0:
            # The float64 quotient (three roundings, relative error <= 3.0001 u)
            # decides the floor when it is farther than 4 u |q| from an integer.
            q = x / d_float
            fl = float(np.floor(q))
            margin = 4.0 * _U * abs(q)
            if q - fl > margin and fl + 1.0 - q > margin and abs(q) < 4503599627370496.0:
                return True, fl
        si = int(s)
        if d_num > 0 and si < _LIMIT62 // d_den and si > -(_LIMIT62 // d_den):
            return True, float((si * d_den) // d_num)
    else:
        x = float(s)
        if not (x - x == 0.0):  # NaN or inf
            return False, 0.0
        if d_num > 0 and d_den == 1 and abs(x) < 4611686018427387904.0:
            return True, float(int(np.floor(x)) // d_num)
    if not (d_float > 0.0 and d_float < np.inf):
        return False, 0.0
    q = x / d_float
    fl = float(np.floor(q))
    margin = 4.0 * _U * abs(q)
    if q - fl > margin and fl + 1.0 - q > margin and abs(q) < 4503599627370496.0:
        return True, fl
    return False, 0.0


@_inline
def keras_p(s: Any, is_int: bool, prec: int, emin: int, emax: int, staircase: bool,
             d_fmt: float, pow2: np.ndarray) -> float:
    """``p = rnd(rnd(s) / Df)``, floored when staircase (NaN/inf possible)."""
    if prec == 24:
        # float32: the conversions (int64 or float64 to float32) and the
        # float32 division are single IEEE roundings.
        p = float(np.float32(np.float32(s) / np.float32(d_fmt)))
    else:
        if is_int:
            sf = _round_int(int(s), prec, emin, emax, pow2)
        else:
            sf = _round_fmt(float(s), prec, emin, emax, pow2)
        p = _round_fmt(sf / d_fmt, prec, emin, emax, pow2)
    if staircase:
        p = float(np.floor(p))
    return p


@_inline
def _bits_of(val: float, prec: int, emin: int, bias: int) -> int:
    """The bit pattern of ``val`` (a value of the format, or +-0, +-inf)."""
    b = _bits(val)
    sign = (b >> 63) & 1
    a = b & _ABS
    top = sign << (15 if prec < 16 else 31)
    if a == 0:
        return top
    if a >= _EXPMASK:
        return top | ((2 * bias + 1) << (prec - 1))
    ex = (a >> 52) - 1023
    mant = (a & _FRAC) | _IMPLICIT
    if ex >= emin:
        return top | ((ex + bias) << (prec - 1)) | ((mant >> (53 - prec)) & ((1 << (prec - 1)) - 1))
    return top | (mant >> (52 - ex + emin - prec + 1))


# ---------------------------------------------------------------------------
# 16- and 32-bit formats
# ---------------------------------------------------------------------------


# spec/kernels.md, section 7.1
@_inline
def small_pow2(t: float, scale_h: float, scale_e: int, tab: np.ndarray, ln2: float,
                prec: int, emin: int, emax: int, pow2: np.ndarray, kt: float
                ) -> tuple[bool, float]:
    """``h 2**(t + e)`` rounded to the format (magnitude), and whether the
    rounding test decides it; ``|t| <= 2200``."""
    n = (t * 1024.0 + _RINT) - _RINT
    x = (t - n * (1.0 / 1024)) * ln2
    p = 1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24))))
    ni = int(n)
    v = tab[ni & 1023] * p
    if scale_h != 1.0:
        v = v * scale_h
    err = int(kt * abs(t) + 17.0)
    # v in [0.99, 4.1): its 53-bit significand M and v = M 2**exp.
    b = _bits(v)
    M = (b & _FRAC) | _IMPLICIT
    exp = ((b >> 52) - 1075) + (ni >> 10) + scale_e
    e_top = exp + 52
    qexp = max(e_top, emin) - (prec - 1)
    shift = qexp - exp
    if shift < 1:
        shift = 1
    if shift > 62:
        shift = 62
    q = M >> shift
    rem = M - (q << shift)
    half = 1 << (shift - 1)
    dist = abs(rem - half)
    decided = dist > err and 4 * err < half
    if rem > half or (rem == half and (q & 1) == 1):
        q += 1
    if qexp > emax:
        return decided, np.inf
    val = float(q) * pow2[qexp + _POW2_OFFSET]
    if val >= pow2[emax + 1 + _POW2_OFFSET]:
        val = np.inf
    return decided, val


# spec/kernels.md, section 7.1
@_jit
def small_kernel(steps: np.ndarray, out: np.ndarray, start: int, undecided: np.ndarray,
                 prec: int, emin: int, emax: int, bias: int, keras: bool, staircase: bool,
                 c0: float, scale_h: float, scale_e: int, negative: bool, log2_i: float,
                 i_fmt: float, d_fmt: float, d_num: int, d_den: int, d_float: float,
                 tab: np.ndarray, ln2: float, pow2: np.ndarray) -> tuple[int, int]:
    """Evaluate ``steps[start:]`` into ``out`` (bit patterns, uint16 or uint32)
    for float16, bfloat16 or float32; record undecided indices in
    ``undecided`` and stop when it is full.  Returns (next index, count)."""
    n = steps.shape[0]
    count = 0
    i = start
    while i < n:
        s = steps[i]
        ok = True
        a = 0.0
        if keras:
            a = keras_p(s, _is_int(s), prec, emin, emax, staircase, d_fmt, pow2)
            ok = a - a == 0.0
        elif staircase:
            ok, a = _floor_exact(s, _is_int(s), d_num, d_den, d_float)
        else:
            a = float(s)
            ok = a - a == 0.0
        val = 0.0
        if ok:
            t = a * c0
            if not abs(t) <= _T_LIMIT:
                val = np.inf if t + log2_i > 0 else 0.0
            elif keras:
                ok, val = small_pow2(t, 1.0, 0, tab, ln2, prec, emin, emax, pow2, 3.0)
            else:
                ok, val = small_pow2(t, scale_h, scale_e, tab, ln2, prec, emin, emax, pow2,
                                      3.0)
        if ok:
            if keras:
                if prec == 24:  # the exact float64 product, one IEEE rounding
                    val = float(np.float32(val * i_fmt))
                else:
                    val = _round_fmt(val * i_fmt, prec, emin, emax, pow2)
            elif negative:
                val = -val
            out[i] = _bits_of(val, prec, emin, bias)
        else:
            undecided[count] = i
            count += 1
            if count == undecided.shape[0]:
                return i + 1, count
        i += 1
    return n, count


# ---------------------------------------------------------------------------
# float64
# ---------------------------------------------------------------------------


@_inline
def _two_prod(a: float, bh: float, bl: float, b: float) -> tuple[float, float]:
    """Dekker: ``a * b = p + e`` exactly, ``b = bh + bl`` already split."""
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    p = a * b
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@_inline
def _split(a: float) -> tuple[float, float]:
    c = _SPLIT * a
    hi = c - (c - a)
    return hi, a - hi


# spec/kernels.md, section 7.1
@_inline
def f64_value(a: float, ch: float, cl: float, ih: float, il: float, ei: int,
               hi_t: np.ndarray, lo_t: np.ndarray, hh_t: np.ndarray, hl_t: np.ndarray,
               l2h: float, l2l: float, pow2: np.ndarray) -> tuple[bool, float]:
    """``(ih + il) 2**(ei + a c)`` decided for float64 (the numpy path's
    double-double exponential and rounding test); ``|a c| <= 2200``."""
    chh, chl = _split(ch)
    th, te = _two_prod(a, chh, chl, ch)
    tl = te + a * cl
    n = (th * 1024.0 + _RINT) - _RINT
    xp = th - n * (1.0 / 1024)
    l2hh, l2hl = _split(l2h)
    xh, xe = _two_prod(xp, l2hh, l2hl, l2h)
    xl = xe + (xp * l2l + tl * l2h)
    y = xh + xl
    q = (y * y) * (0.5 + y * (1.0 / 6 + y * (1.0 / 24 + y * (1.0 / 120))))
    lo = xl + q
    ni = int(n)
    j = ni & 1023
    th_j = hi_t[j]
    tl_j = lo_t[j]
    p1, e1 = _two_prod(xh, hh_t[j], hl_t[j], th_j)
    s = th_j + p1
    s1 = p1 - (s - th_j)
    low = (((tl_j + th_j * lo) + e1) + s1) + tl_j * xh
    if ih != 1.0 or il != 0.0:
        ihh, ihl = _split(ih)
        p2, e2 = _two_prod(s, ihh, ihl, ih)
        low = e2 + (s * il + (low * ih + low * il))
        s = p2
    r = s + low
    re = low - (r - s)
    e = (ni >> 10) + ei
    pw = _from_bits(_bits(r) & _EXPMASK)
    ok = abs(re) + _B64 * r < pw * _U
    ok = ok and (r != pw or re >= 0)
    if e < -1018:
        er = ((_bits(pw) >> 52) - 1023) + e
        if er <= -1076:
            return True, 0.0
        return False, 0.0
    return ok, _ldexp(r, e, pow2)


# spec/kernels.md, section 7.1
@_jit
def f64_kernel(steps: np.ndarray, out: np.ndarray, start: int, undecided: np.ndarray,
               keras: bool, staircase: bool, ch: float, cl: float, ih: float, il: float,
               ei: int, negative: bool, log2_i: float, i_fmt: float, d_fmt: float,
               d_num: int, d_den: int, d_float: float,
               hi_t: np.ndarray, lo_t: np.ndarray, hh_t: np.ndarray, hl_t: np.ndarray,
               l2h: float, l2l: float, pow2: np.ndarray) -> tuple[int, int]:
    """:func:`small_kernel` for float64 (``out`` is a float64 array)."""
    n = steps.shape[0]
    count = 0
    i = start
    while i < n:
        s = steps[i]
        ok = True
        a = 0.0
        if keras:
            if _is_int(s):
                si = int(s)
                if si < (1 << 53) and si > -(1 << 53):
                    sf = float(si)
                else:
                    sf = _round_int(si, 53, -1022, 1023, pow2)
            else:
                sf = float(s)
            a = sf / d_fmt
            if staircase:
                a = float(np.floor(a))
            ok = a - a == 0.0
        elif staircase:
            ok, a = _floor_exact(s, _is_int(s), d_num, d_den, d_float)
            ok = ok and abs(a) < _TWO53
        else:
            if _is_int(s):
                si = int(s)
                ok = si < (1 << 53) and si > -(1 << 53)
            a = float(s)
            ok = ok and a - a == 0.0
        val = 0.0
        if ok:
            t = a * ch
            if not abs(t) <= _T_LIMIT:
                val = np.inf if t + log2_i > 0 else 0.0
            elif keras:
                ok, val = f64_value(a, ch, cl, 1.0, 0.0, 0, hi_t, lo_t, hh_t, hl_t,
                                     l2h, l2l, pow2)
            else:
                ok, val = f64_value(a, ch, cl, ih, il, ei, hi_t, lo_t, hh_t, hl_t,
                                     l2h, l2l, pow2)
        if ok:
            if keras:
                val = val * i_fmt
            elif negative:
                val = -val
            out[i] = val
        else:
            undecided[count] = i
            count += 1
            if count == undecided.shape[0]:
                return i + 1, count
        i += 1
    return n, count


# ---------------------------------------------------------------------------
# A different schedule per element (16- and 32-bit formats)
# ---------------------------------------------------------------------------

#: ``2 / ln 2`` rounded to nearest (checked against an enclosure in the tests).
TWO_OVER_LN2 = 2.8853900817779268
#: ``1 / (2 k + 1)`` for ``k = 1 .. 10``, each rounded to nearest.
ATANH = (1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9, 1.0 / 11, 1.0 / 13, 1.0 / 15, 1.0 / 17,
          1.0 / 19, 1.0 / 21)
#: The coefficient of ``|t|`` in the rounding test's error (units of the
#: 53-bit significand) when ``log2 r`` comes from :func:`log2_approx`: ``ln 2 (eps_L
#: / u + 3.0001)`` with ``eps_L <= 8 u`` is below 7.7; 14 leaves a margin.
KT_BROADCAST = 14.0


# spec/kernels.md, section 7.5
@_inline
def log2_approx(x: float) -> float:
    """``log2(x)`` for a positive normal float64, relative error below ``8 u``.

    ``x = 2**k m`` with ``m`` in ``[sqrt(2)/2, sqrt(2)]`` (exact scaling);
    ``log2 m = (2 / ln 2) atanh(z)``, ``z = (m - 1) / (m + 1)``: ``m - 1`` is
    exact (Sterbenz), ``z`` carries two roundings (``2u``), ``|z| <= 0.1716``;
    ``atanh(z) / z = 1 + w/3 + ... + w**10/21 + R`` with ``w = z*z``
    (``w <= 0.0295``, ``|R| < 2**-60``), by Horner: the part after 1 is below
    0.0103 and known to about ``10 u`` relatively, so the sum is within
    ``1.2 u``; the products by ``z`` and by ``2/ln 2`` (itself within ``u/2``)
    add ``2.5 u``: ``log2 m`` within ``5.7 u``.  Adding ``k`` (``|k| >= 1``,
    ``|log2 m| <= 1/2``, so ``|log2 x| >= 1/2``) gives at most
    ``5.7 u |log2 m| / |log2 x| + u <= 6.7 u``."""
    b = _bits(x)
    k = (b >> 52) - 1023
    m = _from_bits((b & _FRAC) | 0x3FF0000000000000)  # [1, 2)
    if m > 1.4142135623730951:
        m = m * 0.5
        k += 1
    z = (m - 1.0) / (m + 1.0)
    w = z * z
    q = ATANH[9]
    q = ATANH[8] + w * q
    q = ATANH[7] + w * q
    q = ATANH[6] + w * q
    q = ATANH[5] + w * q
    q = ATANH[4] + w * q
    q = ATANH[3] + w * q
    q = ATANH[2] + w * q
    q = ATANH[1] + w * q
    q = ATANH[0] + w * q
    lm = (z * (1.0 + w * q)) * TWO_OVER_LN2
    if k == 0:
        return lm
    return float(k) + lm


@_inline
def _bit_length(n: int) -> int:
    """The bit length of a non-negative int64."""
    bl = 0
    while (n >> bl) != 0:
        bl += 1
    return bl


@_inline
def _round_scaled_int(N: int, F: int, prec: int, emin: int, emax: int,
                      pow2: np.ndarray) -> float:
    """``N 2**F`` (``1 <= N < 2**63``, ``|F| < 2**60``) rounded to nearest
    even in the format, exactly: the quantum ``2**qexp`` of the result's
    binade (``emin - prec + 1`` for subnormals), the integer quotient ``q``
    and remainder of ``N`` by ``2**(qexp - F)``, ties to even; 0 below half
    the smallest subnormal, inf from ``2**(emax + 1)`` on."""
    bl = _bit_length(N)
    qexp = max(bl - 1 + F, emin) - (prec - 1)
    shift = qexp - F
    if shift <= 0:  # N 2**F is a multiple of the quantum: exact
        q = N
        qexp = F
    elif shift > bl:  # below half the quantum
        return 0.0
    else:
        q = N >> shift
        rem = N - (q << shift)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and (q & 1) == 1):
            q += 1
    if qexp > emax:
        return np.inf
    val: float = float(q) * pow2[qexp + _POW2_OFFSET]
    if val >= pow2[emax + 1 + _POW2_OFFSET]:
        return np.inf
    return val


@_inline
def _odd_split(b: int) -> tuple[int, int]:
    """``(M, E)`` with ``M`` odd and ``x = M 2**E``, for the bits ``b`` of a
    positive normal float64 ``x``."""
    M = (b & _FRAC) | _IMPLICIT
    E = ((b >> 52) & 0x7FF) - 1075
    while (M & 1) == 0:
        M >>= 1
        E += 1
    return M, E


#: Largest ``|p|`` :func:`exact_scaled_pow` takes.
_P_EXACT = 1 << 40


@_inline
def exact_scaled_pow(bi: int, br: int, p: int, prec: int, emin: int, emax: int,
                      pow2: np.ndarray) -> tuple[bool, float]:
    """``x r**p`` rounded to the format exactly, for an integer ``|p| <=
    2**40`` and positive normal float64s ``x`` and ``r`` given by their
    bits ``bi`` and ``br``; ``(False, 0)`` when not computed here.

    With ``x = Mx 2**Ex`` and ``r = Mr 2**Er`` (``Mx``, ``Mr`` odd), ``x
    r**p = Mx Mr**p 2**(Ex + p Er)``.  When ``Mr = 1`` (``r`` a power of
    two) that is ``Mx 2**F`` for any ``p``; when ``p >= 0`` and ``bits(Mx)
    + p bits(Mr) <= 62``, ``N = Mx Mr**p < 2**62`` is computed in int64
    without overflow.  ``|F| <= 2**40 * 1075 + 1075 < 2**51``.  The exact
    value ``N 2**F`` is then rounded once by :func:`_round_scaled_int`,
    so the result is the correctly rounded one by construction, exact
    results and exact midpoints (which no rounding test decides) included.
    A negative ``p`` with ``Mr > 1`` gives a value that is not dyadic, so
    neither a value of the format nor a midpoint: not computed here."""
    if p > _P_EXACT or p < -_P_EXACT:
        return False, 0.0
    Mx, Ex = _odd_split(bi)
    Mr, Er = _odd_split(br)
    if Mr == 1:
        return True, _round_scaled_int(Mx, Ex + p * Er, prec, emin, emax, pow2)
    if p < 0 or _bit_length(Mx) + p * _bit_length(Mr) > 62:
        return False, 0.0
    N = Mx
    for _ in range(p):
        N *= Mr
    return True, _round_scaled_int(N, Ex + p * Er, prec, emin, emax, pow2)


@_inline
def exact_int_pow(x: float, p: int, prec: int, emin: int, emax: int,
                   pow2: np.ndarray) -> float:
    """``x**p`` rounded to the format exactly, for ``x`` a positive value of
    the format and ``1 <= p`` with ``p prec <= 62`` (``p <= 2**20`` when ``x``
    is a power of two): :func:`exact_scaled_pow` with a factor 1, which
    computes every such case.  Exact results and exact midpoints, which no
    rounding test decides, are common among these."""
    ok, val = exact_scaled_pow(_IMPLICIT | (1023 << 52), _bits(x), p, prec, emin, emax,
                                pow2)
    return val


@_inline
def floor_checked(x: float, d: float) -> tuple[bool, float]:
    """``(True, floor(x / d))`` when proven, for a float64 ``x`` (the exact
    step) and ``d`` in ``[2**-900, 2**900]``; ``(False, 0)`` otherwise.

    ``0 <= x < d`` (exact comparisons) gives 0.  Otherwise the candidate
    ``f = floor(RN(x / d))`` is accepted when ``1 <= f < 2**52`` and ``f d
    <= x < (f + 1) d`` is verified exactly: ``f`` and ``f + 1`` are exact,
    Dekker's product gives ``f d = ph + pl`` and ``(f + 1) d = uh + ul``
    exactly (no FMA; the factors and products are far from overflow and
    underflow: ``d >= 2**-900``, ``f d < 2**952``), and when ``x / 2 <= ph
    <= 2 x`` and ``x / 2 <= uh <= 2 x`` (checked; ``x / 2`` is exact) the
    differences ``x - ph`` and ``x - uh`` are exact (Sterbenz), so ``x - ph
    >= pl`` is ``x >= f d`` and ``x - uh < ul`` is ``x < (f + 1) d``.
    Whatever the rounding of the quotient, an accepted ``f`` is the floor."""
    if x >= 0.0 and x < d:
        return True, 0.0
    f = float(np.floor(x / d))
    if not (f >= 1.0 and f < 4503599627370496.0):
        return False, 0.0
    dh, dl = _split(d)
    ph, pl = _two_prod(f, dh, dl, d)
    uh, ul = _two_prod(f + 1.0, dh, dl, d)
    half = x * 0.5
    if not (ph >= half and ph <= 2.0 * x and uh >= half and uh <= 2.0 * x):
        return False, 0.0
    if x - ph >= pl and x - uh < ul:
        return True, f
    return False, 0.0


@_inline
def _staircase_exponent(s: Any, x_d: float) -> tuple[bool, float]:
    """``floor(s / D)`` (exact order) for the per-element kernels, and whether
    proven: :func:`_floor_exact` (int64 floor division for an integer ``D <
    2**62``, any int64 step), then :func:`floor_checked`, then, when ``|s /
    D| >= 2**53``, the float64 quotient itself.  A result below ``2**53`` in
    magnitude is the exact floor; callers treat larger ones as approximations
    (within ``2**-51`` relatively) and use them only to decide ``|t| >
    2200``."""
    d_num = 0
    if x_d < 4611686018427387904.0 and x_d == np.floor(x_d):
        d_num = int(x_d)
    ok, a = _floor_exact(s, _is_int(s), d_num, 1, x_d)
    if not ok and d_num > 0 and _is_int(s):
        ok, a = True, float(int(s) // d_num)  # no product: no overflow
    if not ok and x_d >= _TWO_M900 and x_d <= _TWO_900:
        x = float(s)
        if not _is_int(s) or (int(s) < (1 << 53) and int(s) > -(1 << 53)):
            ok, a = floor_checked(x, x_d)
    if not ok:
        # |s / D| >= 2**53 (within 2**-52): the floor as the float64
        # quotient, within 2**-51 relatively; the caller treats every |a|
        # >= 2**53 as inexact.
        q = float(s) / x_d
        if abs(q) >= _TWO53 and q - q == 0.0:
            ok, a = True, q
    return ok, a


@_inline
def _integer_quotient(s: Any, x_d: float) -> tuple[bool, int]:
    """``(True, s / D)`` when the step ``s`` (int64) is an exact multiple of
    an integer ``D < 2**62``; ``(False, 0)`` otherwise (float steps too)."""
    if _is_int(s) and x_d < 4611686018427387904.0 and x_d == np.floor(x_d):
        d = int(x_d)
        si = int(s)
        if d > 0 and si % d == 0:
            return True, si // d
    return False, 0


# spec/kernels.md, section 7.5
@_jit
def small_broadcast_kernel(I: np.ndarray, D: np.ndarray, R: np.ndarray, steps: np.ndarray,
                           out: np.ndarray, start: int, undecided: np.ndarray, prec: int,
                           emin: int, emax: int, bias: int, keras: bool, staircase: bool,
                           tab: np.ndarray, ln2: float, pow2: np.ndarray) -> tuple[int, int]:
    """:func:`small_kernel` with a schedule per element: ``I``, ``D``, ``R``
    (float64, the exact inputs) and ``steps`` have one element each per
    output.  Elements with special parameters (zero, subnormal or non-finite
    ``I``; ``r`` not a positive normal number; keras casts of ``I`` or ``r``
    that are 0 or inf) are left undecided for the caller's general path;
    ``r = 1`` (keras: ``rf = 1``) gives ``rnd(I)``.  ``log2 r`` comes
    from :func:`log2_approx` and the rounding test uses :data:`KT_BROADCAST`."""
    n = steps.shape[0]
    count = 0
    i = start
    while i < n:
        s = steps[i]
        x_i = I[i]
        x_d = D[i]
        x_r = R[i]
        ok = True
        val = 0.0
        if keras:
            x_i = _round_fmt(x_i, prec, emin, emax, pow2)
            x_r = _round_fmt(x_r, prec, emin, emax, pow2)
            x_d = _round_fmt(x_d, prec, emin, emax, pow2)
        bi = _bits(x_i) & _ABS
        br = _bits(x_r)
        # keras order: rf = +0 (a tiny rate) is decided exactly below.
        zero_r = keras and x_r == 0.0 and br == 0
        # keras order: Df may be inf (D beyond the format's range).
        ok = (bi >= _IMPLICIT and bi < _EXPMASK and ((br >= _IMPLICIT and br < _EXPMASK)
                                                      or zero_r)
              and x_d > 0.0 and (keras or x_d < np.inf))
        a = 0.0
        nan = False
        big = False
        if ok:
            if keras:
                a = keras_p(s, _is_int(s), prec, emin, emax, staircase, x_d, pow2)
                # p = +-inf: rf**p is 0 or inf (t below); p = NaN (rnd(s) and
                # Df both inf): rf**NaN = NaN for rf != 1, and so is If NaN.
                nan = a != a
                a = 0.0 if nan else a
            elif staircase:
                ok, a = _staircase_exponent(s, x_d)
                # |a| >= 2**53 is held inexactly: only |t| > _T_LIMIT decides.
                big = abs(a) >= _TWO53
            else:
                a = float(s)
                ok = a - a == 0.0
            if x_r == 1.0:  # pow(1, y) = 1 for every y, NaN included: rnd(I)
                ok, nan, a, big = True, False, 0.0, False
        if ok and zero_r:
            # pow(+0, p): 1 for p = 0, +0 for p > 0, +inf for p < 0 (C99
            # F.9.4.4, p = +-inf included); NaN for p = NaN (kept in nan).
            val = 1.0 if a == 0.0 else (0.0 if a > 0.0 else np.inf)
        elif ok:
            lr = log2_approx(x_r)
            c = lr if keras or staircase else lr / x_d
            t = a * c
            if not abs(t) <= _T_LIMIT:
                # |t~| > 2200 within 2**-50 of |t| (a or a~): 0 or inf in
                # every format, whatever |I| (2**-1074 .. 2**1024).
                val = np.inf if t > 0 else 0.0
            elif big:
                ok = False
            elif keras:
                ok, val = small_pow2(t, 1.0, 0, tab, ln2, prec, emin, emax, pow2,
                                      KT_BROADCAST)
                if not ok and a == np.floor(a) and abs(a) <= 1099511627776.0:
                    # An integer p: rf**p exactly when computable (factor 1).
                    ok, val = exact_scaled_pow(_IMPLICIT | (1023 << 52), br, int(a), prec,
                                                emin, emax, pow2)
            else:
                e_i = (bi >> 52) - 1023
                h = _from_bits((bi & _FRAC) | 0x3FF0000000000000)
                ok, val = small_pow2(t, h, e_i, tab, ln2, prec, emin, emax, pow2,
                                      KT_BROADCAST)
                if not ok:
                    # An integer exponent: |I| r**p exactly when computable.
                    if staircase:
                        whole, pi = abs(a) <= 1099511627776.0, int(a)
                    else:
                        whole, pi = _integer_quotient(s, x_d)
                    if whole:
                        ok, val = exact_scaled_pow(bi, br, pi, prec, emin, emax, pow2)
        if ok and nan:
            out[i] = (((2 * bias + 1) << 1) | 1) << (prec - 2)  # the canonical NaN
        elif ok:
            if keras:
                if prec == 24:
                    val = float(np.float32(val * x_i))
                else:
                    val = _round_fmt(val * x_i, prec, emin, emax, pow2)
            elif x_i < 0:
                val = -val
            out[i] = _bits_of(val, prec, emin, bias)
        else:
            undecided[count] = i
            count += 1
            if count == undecided.shape[0]:
                return i + 1, count
        i += 1
    return n, count


# ---------------------------------------------------------------------------
# Block kernels: float32 and float64, int64 steps
# ---------------------------------------------------------------------------

#: Elements per block of the block kernels (the scratch arrays stay in L1).
BLOCK = 1024
_RINT_BITS = 0x4338000000000000  # the bits of _RINT
_TWO52_BITS = 0x4330000000000000  # the bits of 2.0**52
_TWO52 = 2.0**52
_LIM51 = 1 << 51


@_inline
def _i2f(s: int) -> float:
    """``float(s)`` for ``|s| < 2**51``, by the bits of ``1.5 * 2**52 + s``
    (exact; integer operations only, so the loop vectorises on AVX2)."""
    r: float = _from_bits(s + _RINT_BITS) - _RINT
    return r


@_inline
def _pow2i(k: int) -> float:
    """``2.0**k`` for ``-1022 <= k <= 1023`` from its bits."""
    r: float = _from_bits((k + 1023) << 52)
    return r


@_inline
def _block_exponents(steps: np.ndarray, b0: int, m: int, abuf: np.ndarray, okb: np.ndarray,
                     keras: bool, staircase: bool, prec: int, d_fmt: float,
                     d_float: float) -> None:
    """The exponent operand ``a`` of ``steps[b0:b0+m]`` into ``abuf`` and
    whether it is decided into ``okb`` (branch-free loops; an element that
    is not decided here is redone by the per-element kernel)."""
    if keras and prec == 24:
        df = np.float32(d_fmt)
        for k in range(m):
            s = steps[b0 + k]
            inr = (s < _LIM51) & (s > -_LIM51)
            x = _i2f(s if inr else 0)
            p = float(np.float32(x) / df)
            if staircase:
                p = float(np.floor(p))
            okb[k] = inr & (p - p == 0.0)
            abuf[k] = p if p - p == 0.0 else 0.0
    elif keras and prec == 8:  # bfloat16
        for k in range(m):
            s = steps[b0 + k]
            inr = (s < _LIM51) & (s > -_LIM51)
            sf = _rnd_bf16(_i2f(s if inr else 0))  # rnd(s): one rounding of an exact value
            q = sf / d_fmt
            p = _rnd_bf16(q)  # rnd(RN(sf / Df)): innocuous double rounding (53 >= 2*8 + 2)
            aq = abs(q)
            # The bit rounding is right for normal quotients only; subnormal
            # ones and overflow are left to the per-element pass.
            good = ((aq >= _TWO_M126) | (aq == 0.0)) & (abs(p) < _TWO_128)
            if staircase:
                p = float(np.floor(p))
            okb[k] = inr & good
            abuf[k] = p if good else 0.0
    elif keras:  # float64
        for k in range(m):
            s = steps[b0 + k]
            inr = (s < _LIM51) & (s > -_LIM51)
            x = _i2f(s if inr else 0)
            p = x / d_fmt
            if staircase:
                p = float(np.floor(p))
            okb[k] = inr & (p - p == 0.0)
            abuf[k] = p if p - p == 0.0 else 0.0
    elif staircase:
        dgood = (d_float > 0.0) & (d_float < np.inf)
        dd = d_float if dgood else 1.0
        for k in range(m):
            s = steps[b0 + k]
            inr = (s < _LIM51) & (s > -_LIM51)
            x = _i2f(s if inr else 0)
            q = x / dd
            fl = float(np.floor(q))
            margin = 4.0 * _U * abs(q)
            good = (q - fl > margin) & (fl + 1.0 - q > margin) & (abs(q) < 4503599627370496.0)
            okb[k] = inr & good & dgood
            abuf[k] = fl
    else:
        for k in range(m):
            s = steps[b0 + k]
            inr = (s < _LIM51) & (s > -_LIM51)
            okb[k] = inr
            abuf[k] = _i2f(s if inr else 0)


# spec/kernels.md, section 7.4
@_jit
def f32_block_kernel(steps: np.ndarray, out: np.ndarray, out_f: np.ndarray, start: int,
                     undecided: np.ndarray, keras: bool, staircase: bool, c0: float,
                     scale_h: float, scale_e: int, negative: bool, log2_i: float,
                     i_fmt: float, d_fmt: float, d_num: int, d_den: int, d_float: float,
                     tab: np.ndarray, ln2: float, pow2: np.ndarray) -> tuple[int, int]:
    """:func:`small_kernel` for float32 and int64 steps, by blocks of
    :data:`BLOCK` elements: branch-free loops compute the exponent, the
    approximation of :func:`small_pow2` (same operations, same bound) and
    the rounding test for the whole block, writing the result bits (``out``,
    uint32) or values (``out_f``, the same memory as float32); a scalar pass
    then redoes the elements not decided there with :func:`small_kernel`
    (exact staircase floors, out-of-range exponents) and records those that
    stay undecided.  Same return convention as :func:`small_kernel`."""
    prec, emin, emax, bias = 24, -126, 127, 127
    n = steps.shape[0]
    abuf = np.empty(BLOCK)
    pbuf = np.empty(BLOCK)
    nbuf = np.empty(BLOCK, np.int64)
    ebuf = np.empty(BLOCK, np.int64)
    okb = np.empty(BLOCK, np.bool_)
    one = np.empty(1, np.int64)
    sh = 1.0 if keras else scale_h
    se = 0 if keras else scale_e
    sign = (1 << 31) if (negative and not keras) else 0
    inf_bits = (2 * bias + 1) << (prec - 1)
    lim = pow2[emax + 1 + _POW2_OFFSET]
    count = 0
    b0 = start
    while b0 < n:
        m = min(BLOCK, n - b0)
        _block_exponents(steps, b0, m, abuf, okb, keras, staircase, prec, d_fmt, d_float)
        # Three loops: the table lookup (a gather) alone in the middle one,
        # so the two others vectorise.
        for k in range(m):
            t0 = abuf[k] * c0
            inr = abs(t0) <= _T_LIMIT
            t = t0 if inr else 0.0
            y = t * 1024.0 + _RINT
            ni = _bits(y) - _RINT_BITS
            nn = y - _RINT
            x = (t - nn * (1.0 / 1024)) * ln2
            pbuf[k] = 1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24))))
            nbuf[k] = ni
            abuf[k] = t
            okb[k] = okb[k] & inr
        for k in range(m):
            pbuf[k] = (tab[nbuf[k] & 1023] * pbuf[k]) * sh
        for k in range(m):
            t = abuf[k]
            v = pbuf[k]
            ni = nbuf[k]
            # err >= int(3 |t| + 17), the bound of small_pow2 (rint of +18).
            err = _bits((3.0 * abs(t) + 18.0) + _RINT) - _RINT_BITS
            b = _bits(v)
            M = (b & _FRAC) | _IMPLICIT
            ex = ((b >> 52) - 1075) + (ni >> 10) + se
            # A normal float32 result: qexp = ex + 29, shift 29 (constant
            # shifts vectorise); subnormal results go to the per-element pass.
            normal = ex + 52 >= emin
            qexp = ex + 29
            q = M >> 29
            rem = M & 0x1FFFFFFF
            half = 0x10000000
            dist = rem - half
            dist = -dist if dist < 0 else dist
            dec = (dist > err) & (4 * err < half) & normal
            up = (rem > half) | ((rem == half) & ((q & 1) == 1))
            nbuf[k] = q + (1 if up else 0)
            ebuf[k] = qexp
            okb[k] = okb[k] & dec
        # The stores: one loop per order (a store under a condition would
        # keep the loop scalar).
        if keras:
            for k in range(m):
                q = nbuf[k]
                qexp = ebuf[k]
                qc = min(qexp, 1000)
                w = (_from_bits(q | _TWO52_BITS) - _TWO52) * _pow2i(qc)
                w = np.inf if (qexp > emax) | (w >= lim) else w
                out_f[b0 + k] = np.float32(w * i_fmt)
        else:
            for k in range(m):
                bits = (((ebuf[k] + (prec - 1 + bias)) << (prec - 1)) + nbuf[k]
                        - (1 << (prec - 1)))
                out[b0 + k] = min(bits, inf_bits) | sign
        for k in range(m):
            if not okb[k]:
                i = b0 + k
                _, c = small_kernel(steps[i:i + 1], out[i:i + 1], 0, one, prec, emin, emax,
                                    bias, keras, staircase, c0, scale_h, scale_e, negative,
                                    log2_i, i_fmt, d_fmt, d_num, d_den, d_float, tab, ln2,
                                    pow2)
                if c:
                    undecided[count] = i
                    count += 1
                    if count == undecided.shape[0]:
                        return i + 1, count
        b0 += m
    return n, count


_BF16_LOW = (1 << 45) - 1  # the float64 significand bits below bfloat16's 8
_BF16_HALF = 1 << 44
_TWO_M126 = 2.0**-126
_TWO_128 = 2.0**128
_SUB_BF16 = 1.5 * 2.0**-81  # x + _SUB_BF16 - _SUB_BF16: x to a multiple of 2**-133
_TWO_133 = 2.0**133


@_inline
def _rnd_bf16(x: float) -> float:
    """``x`` (0 or a normal float64) rounded to 8 significant bits, nearest
    even, on its bits (the exponent range is float64's: no overflow or
    subnormal handling; inf stays inf)."""
    b = _bits(x)
    r: float = _from_bits((b + ((_BF16_HALF - 1) + ((b >> 45) & 1))) & ~_BF16_LOW)
    return r


# spec/kernels.md, section 7.4
@_jit
def bf16_block_kernel(steps: np.ndarray, out: np.ndarray, start: int, undecided: np.ndarray,
                      keras: bool, staircase: bool, c0: float, scale_h: float, scale_e: int,
                      negative: bool, log2_i: float, i_fmt: float, d_fmt: float, d_num: int,
                      d_den: int, d_float: float, tab: np.ndarray, ln2: float,
                      pow2: np.ndarray) -> tuple[int, int]:
    """:func:`small_kernel` for bfloat16 and int64 steps, by blocks, as
    :func:`f32_block_kernel` (``out``: uint16 bit patterns): the keras
    exponent ``rnd(RN(rnd(s) / Df))`` and the final ``rnd(If w)`` are
    roundings on the bits (normal values; the subnormal grid by adding and
    subtracting ``1.5 * 2**-81``), the rounding test is the one of
    :func:`small_pow2` at the constant shift 45 (normal results); the rest
    goes to :func:`small_kernel` one element at a time."""
    prec, emin, emax, bias = 8, -126, 127, 127
    n = steps.shape[0]
    abuf = np.empty(BLOCK)
    pbuf = np.empty(BLOCK)
    nbuf = np.empty(BLOCK, np.int64)
    ebuf = np.empty(BLOCK, np.int64)
    okb = np.empty(BLOCK, np.bool_)
    one = np.empty(1, np.int64)
    sh = 1.0 if keras else scale_h
    se = 0 if keras else scale_e
    sign = (1 << 15) if ((i_fmt < 0) if keras else negative) else 0
    inf_bits = (2 * bias + 1) << (prec - 1)
    count = 0
    b0 = start
    while b0 < n:
        m = min(BLOCK, n - b0)
        _block_exponents(steps, b0, m, abuf, okb, keras, staircase, prec, d_fmt, d_float)
        for k in range(m):
            t0 = abuf[k] * c0
            inr = abs(t0) <= _T_LIMIT
            t = t0 if inr else 0.0
            y = t * 1024.0 + _RINT
            ni = _bits(y) - _RINT_BITS
            nn = y - _RINT
            x = (t - nn * (1.0 / 1024)) * ln2
            pbuf[k] = 1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24))))
            nbuf[k] = ni
            abuf[k] = t
            okb[k] = okb[k] & inr
        for k in range(m):
            pbuf[k] = (tab[nbuf[k] & 1023] * pbuf[k]) * sh
        for k in range(m):
            t = abuf[k]
            v = pbuf[k]
            ni = nbuf[k]
            err = _bits((3.0 * abs(t) + 18.0) + _RINT) - _RINT_BITS
            b = _bits(v)
            M = (b & _FRAC) | _IMPLICIT
            ex = ((b >> 52) - 1075) + (ni >> 10) + se
            # A normal bfloat16 result: shift 45 of the 53-bit significand
            # (4 err < 2**44 always holds, err <= 6618).
            normal = ex + 52 >= emin
            qexp = ex + 45
            q = M >> 45
            rem = M & _BF16_LOW
            dist = rem - _BF16_HALF
            dist = -dist if dist < 0 else dist
            dec = (dist > err) & normal
            up = (rem > _BF16_HALF) | ((rem == _BF16_HALF) & ((q & 1) == 1))
            nbuf[k] = q + (1 if up else 0)
            ebuf[k] = qexp
            okb[k] = okb[k] & dec
        if keras:
            for k in range(m):
                q = nbuf[k]
                qexp = ebuf[k]
                qc = min(max(qexp, -1000), 1000)
                w = (_from_bits(q | _TWO52_BITS) - _TWO52) * _pow2i(qc)
                w = np.inf if (qexp > emax) | (w >= _TWO_128) else w
                # If w: exact in float64 (8 x 8 bits, within float64's range),
                # then rounded to bfloat16: on the bits when normal, on the
                # grid of 2**-133 when below 2**-126.
                v = abs(w * i_fmt)
                yn = _rnd_bf16(v)
                ys = (v + _SUB_BF16) - _SUB_BF16
                hn = (_bits(yn) >> 45) - ((1023 - 127) << 7)
                hs = _bits(ys * _TWO_133 + _RINT) - _RINT_BITS
                h = hn if v >= _TWO_M126 else hs
                out[b0 + k] = min(h, inf_bits) | sign
        else:
            for k in range(m):
                bits = (((ebuf[k] + (prec - 1 + bias)) << (prec - 1)) + nbuf[k]
                        - (1 << (prec - 1)))
                out[b0 + k] = min(bits, inf_bits) | sign
        for k in range(m):
            if not okb[k]:
                i = b0 + k
                _, c = small_kernel(steps[i:i + 1], out[i:i + 1], 0, one, prec, emin, emax,
                                    bias, keras, staircase, c0, scale_h, scale_e, negative,
                                    log2_i, i_fmt, d_fmt, d_num, d_den, d_float, tab, ln2,
                                    pow2)
                if c:
                    undecided[count] = i
                    count += 1
                    if count == undecided.shape[0]:
                        return i + 1, count
        b0 += m
    return n, count


# spec/kernels.md, section 7.4
@_jit
def f64_block_kernel(steps: np.ndarray, out: np.ndarray, start: int, undecided: np.ndarray,
                     keras: bool, staircase: bool, ch: float, cl: float, ih: float,
                     il: float, ei: int, negative: bool, log2_i: float, i_fmt: float,
                     d_fmt: float, d_num: int, d_den: int, d_float: float,
                     hi_t: np.ndarray, lo_t: np.ndarray, hh_t: np.ndarray, hl_t: np.ndarray,
                     l2h: float, l2l: float, pow2: np.ndarray) -> tuple[int, int]:
    """:func:`f64_kernel` for int64 steps by blocks, as
    :func:`f32_block_kernel`: the operations of :func:`f64_value` written
    branch-free (the product by ``ih + il`` is always done: with ``ih = 1``,
    ``il = 0`` it changes neither ``r`` nor ``|re|``; ``2**k`` from its
    bits instead of a table), then a scalar pass through :func:`f64_kernel`
    for the elements not decided."""
    n = steps.shape[0]
    abuf = np.empty(BLOCK)
    okb = np.empty(BLOCK, np.bool_)
    one = np.empty(1, np.int64)
    xbuf = np.empty(BLOCK)
    lbuf = np.empty(BLOCK)
    nbuf = np.empty(BLOCK, np.int64)
    g1 = np.empty(BLOCK)
    g2 = np.empty(BLOCK)
    g3 = np.empty(BLOCK)
    g4 = np.empty(BLOCK)
    jh = 1.0 if keras else ih
    jl = 0.0 if keras else il
    je = 0 if keras else ei
    ihh, ihl = _split(jh)
    chh, chl = _split(ch)
    l2hh, l2hl = _split(l2h)
    post = i_fmt if keras else (-1.0 if negative else 1.0)
    count = 0
    b0 = start
    while b0 < n:
        m = min(BLOCK, n - b0)
        _block_exponents(steps, b0, m, abuf, okb, keras, staircase, 53, d_fmt, d_float)
        for k in range(m):
            a0 = abuf[k]
            inr = (abs(a0 * ch) <= _T_LIMIT) & (abs(a0) < _TWO53)
            a = a0 if inr else 0.0
            th, te = _two_prod(a, chh, chl, ch)
            tl = te + a * cl
            y0 = th * 1024.0 + _RINT
            ni = _bits(y0) - _RINT_BITS
            nn = y0 - _RINT
            xp = th - nn * (1.0 / 1024)
            xh, xe = _two_prod(xp, l2hh, l2hl, l2h)
            xl = xe + (xp * l2l + tl * l2h)
            y = xh + xl
            qq = (y * y) * (0.5 + y * (1.0 / 6 + y * (1.0 / 24 + y * (1.0 / 120))))
            xbuf[k] = xh
            lbuf[k] = xl + qq
            nbuf[k] = ni
            okb[k] = okb[k] & inr
        # The table lookups (gathers) alone, so the two other loops vectorise.
        for k in range(m):
            j = nbuf[k] & 1023
            g1[k] = hi_t[j]
            g2[k] = lo_t[j]
            g3[k] = hh_t[j]
            g4[k] = hl_t[j]
        for k in range(m):
            xh = xbuf[k]
            lo = lbuf[k]
            ni = nbuf[k]
            th_j = g1[k]
            tl_j = g2[k]
            p1, e1 = _two_prod(xh, g3[k], g4[k], th_j)
            s = th_j + p1
            s1 = p1 - (s - th_j)
            low = (((tl_j + th_j * lo) + e1) + s1) + tl_j * xh
            p2, e2 = _two_prod(s, ihh, ihl, jh)
            low = e2 + (s * jl + (low * jh + low * jl))
            s = p2
            r = s + low
            re = low - (r - s)
            e = (ni >> 10) + je
            pwb = _bits(r) & _EXPMASK
            pw = _from_bits(pwb)
            dec = (abs(re) + _B64 * r < pw * _U) & ((r != pw) | (re >= 0))
            sub = e < -1018
            er = ((pwb >> 52) - 1023) + e
            kk = min(max(e, -1100), 1100)
            k1 = kk >> 1
            val = (r * _pow2i(k1)) * _pow2i(kk - k1)
            val = 0.0 if sub else val
            dec = (er <= -1076) if sub else dec
            okb[k] = okb[k] & dec
            out[b0 + k] = val * post
        for k in range(m):
            if not okb[k]:
                i = b0 + k
                _, c = f64_kernel(steps[i:i + 1], out[i:i + 1], 0, one, keras, staircase, ch,
                                  cl, ih, il, ei, negative, log2_i, i_fmt, d_fmt, d_num,
                                  d_den, d_float, hi_t, lo_t, hh_t, hl_t, l2h, l2l, pow2)
                if c:
                    undecided[count] = i
                    count += 1
                    if count == undecided.shape[0]:
                        return i + 1, count
        b0 += m
    return n, count


# ---------------------------------------------------------------------------
# A different schedule per element, float64
# ---------------------------------------------------------------------------

#: Phase 2's relative error bound (the accurate exponential, spec/kernels.md section 7.6).
_B64_ACCURATE = 2.0**-80
#: Phase 2's bound for ``|t| < 2**-11``: ``|t| 2**-74 + 2**-102``.
_B_SMALL_T = 2.0**-74
_TWO_M900 = 2.0**-900
_TWO_900 = 2.0**900
_TINY = 2.0**-1074  # the smallest subnormal


@_inline
def _two_sum(a: float, b: float) -> tuple[float, float]:
    """Knuth: ``a + b = s + e`` exactly."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


# spec/kernels.md, section 7.6
@_inline
def log2_dd(x: float, g1: np.ndarray, l1h: np.ndarray, l1l: np.ndarray, g2: np.ndarray,
             l2h_t: np.ndarray, l2l_t: np.ndarray, ilh: float, ill: float, thh: float,
             thl: float) -> tuple[float, float]:
    """``log2(x)`` for a positive normal float64 ``x != 1`` as a double-double,
    relative error below ``2**-94`` (spec/kernels.md section 7.6, "float64 with a
    schedule per element")."""
    b = _bits(x)
    k = (b >> 52) - 1023
    m = _from_bits((b & _FRAC) | 0x3FF0000000000000)  # [1, 2)
    j = (b >> 45) & 127
    kk = k + (1 if j >= 64 else 0)
    # z1 = m g1 - 1 exactly: Dekker's product, p - 1 exact (Sterbenz).
    g = g1[j]
    gh, gl = _split(g)
    p, pe = _two_prod(m, gh, gl, g)
    z1h, z1l = _two_sum(p - 1.0, pe)
    # z2 = (1 + z1) g2 - 1 = (g2 - 1) + z1 g2.
    j2 = int((z1h * 16384.0 + _RINT) - _RINT) + 128
    h = g2[j2]
    hh, hl = _split(h)
    q, qe = _two_prod(z1h, hh, hl, h)
    s, se = _two_sum(h - 1.0, q)
    zh, zl = _two_sum(s, (se + qe) + z1l * h)
    # ln(1 + z) = z - z**2/2 + z**3/3 + z**4 H(z), |z| < 2**-14.98.
    zhh, zhl = _split(zh)
    wh, we = _two_prod(zh, zhh, zhl, zh)
    wl = we + 2.0 * zh * zl
    whh, whl = _split(wh)
    ch3, ce3 = _two_prod(zh, whh, whl, wh)
    cl3 = ce3 + (zh * wl + zl * wh)  # z**3
    chh, chl = _split(ch3)
    th3, te3 = _two_prod(thh, chh, chl, ch3)
    tl3 = te3 + (thh * cl3 + thl * ch3)  # z**3 / 3
    hz = -0.25 + zh * (0.2 + zh * (-1.0 / 6 + zh * (1.0 / 7)))
    e4 = (wh * wh) * hz
    s1, e1 = _two_sum(zh, -0.5 * wh)
    s2, e2 = _two_sum(s1, th3)
    low = ((e1 + e2) + (zl - 0.5 * wl)) + (tl3 + e4)
    # times 1/ln 2 (a double-double)
    s2h, s2l = _split(s2)
    ph, pe2 = _two_prod(ilh, s2h, s2l, s2)
    pl = pe2 + (s2 * ill + low * ilh)
    # kk + L1[j] + L2[j2] + P
    a1, ae = _two_sum(float(kk), l1h[j])
    a2, be = _two_sum(a1, l2h_t[j2])
    a3, ce = _two_sum(a2, ph)
    rl = ((ae + be) + ce) + ((l1l[j] + l2l_t[j2]) + pl)
    return _two_sum(a3, rl)


# spec/kernels.md, section 7.6
@_inline
def f64_value_accurate(a: float, ch: float, cl: float, ih: float, ei: int,
                        hi_t: np.ndarray, lo_t: np.ndarray, hh_t: np.ndarray,
                        hl_t: np.ndarray, l2h: float, l2l: float,
                        pow2: np.ndarray) -> tuple[bool, float]:
    """``ih 2**(ei + a c)`` decided for float64 with the accurate exponential
    (bound :data:`_B64_ACCURATE`), subnormal results included; ``|a c| <=
    2200``, ``ih`` a float64 in ``[1, 2)``."""
    chh, chl = _split(ch)
    th, te = _two_prod(a, chh, chl, ch)
    tl = te + a * cl
    n = (th * 1024.0 + _RINT) - _RINT
    xp = th - n * (1.0 / 1024)  # exact
    xh, xl = _two_sum(xp, tl)
    l2hh, l2hl = _split(l2h)
    X0, x0e = _two_prod(xh, l2hh, l2hl, l2h)
    Xh, Xl = _two_sum(X0, x0e + (xh * l2l + xl * l2h))
    # exp(X) = 1 + Y, Y = X + X**2/2 + X**3 P3(X)
    Xhh, Xhl = _split(Xh)
    s2h, s2e = _two_prod(Xh, Xhh, Xhl, Xh)
    s2l = s2e + 2.0 * Xh * Xl
    p3 = 1.0 / 6 + Xh * (1.0 / 24 + Xh * (1.0 / 120 + Xh * (1.0 / 720 + Xh * (1.0 / 5040))))
    t3 = (s2h * Xh) * p3
    yh, ye = _two_sum(Xh, 0.5 * s2h)
    yl = ye + ((Xl + 0.5 * s2l) + t3)
    ni = int(n)
    j = ni & 1023
    th_j = hi_t[j]
    tl_j = lo_t[j]
    p1, e1 = _two_prod(yh, hh_t[j], hl_t[j], th_j)
    s = th_j + p1
    s1 = p1 - (s - th_j)
    low = ((((tl_j + th_j * yl) + e1) + s1) + tl_j * yh) + tl_j * yl
    if ih != 1.0:
        ihh, ihl = _split(ih)
        p2, e2 = _two_prod(s, ihh, ihl, ih)
        low = e2 + low * ih
        s = p2
    r = s + low
    re = low - (r - s)
    e = (ni >> 10) + ei
    # |t| < 2**-11 (n = 0, T[0] = 1 exactly): every error is proportional
    # to |t| but for the last additions (spec/kernels.md section 7.6).
    bnd = _B64_ACCURATE
    if ni == 0:
        bnd = min(bnd, abs(th) * _B_SMALL_T + 2.0**-102)
    pwb = _bits(r) & _EXPMASK
    pw = _from_bits(pwb)
    er = ((pwb >> 52) - 1023) + e  # r 2**e is in [2**er, 2**(er + 1))
    if er >= -1022:
        # Below a power of two the grid is twice as fine: half the margin.
        half = pw * _U if (r != pw or re >= 0) else pw * (0.5 * _U)
        ok = abs(re) + bnd * r < half
        return ok, _ldexp(r, e, pow2)
    if er <= -1076:
        return True, 0.0
    # Subnormal: Y = (r + re) 2**(e + 1074) in units of the smallest
    # subnormal (exact scalings, Y < 2**53); decided when Y's distance to the
    # nearest half-integer exceeds its error.
    sc = e + 1074
    yv = _ldexp(r, sc, pow2)
    yr = _ldexp(re, sc, pow2)
    nn = (yv + _TWO52) - _TWO52  # rint, 0 <= yv < 2**52
    d = (yv - nn) + yr  # yv - nn is exact; |d| <= 1/2 + |yr|
    if d > 0.5:  # yr moved Y past the half: the next integer (exact, Sterbenz)
        nn += 1.0
        d -= 1.0
    elif d < -0.5:
        nn -= 1.0
        d += 1.0
    ok = abs(d) + bnd * 2.0 * yv + 2.0**-50 < 0.5
    return ok, nn * _TINY


# spec/kernels.md, section 7.6
@_jit
def f64_broadcast_kernel(I: np.ndarray, D: np.ndarray, R: np.ndarray, steps: np.ndarray,
                         out: np.ndarray, start: int, undecided: np.ndarray, keras: bool,
                         staircase: bool, hi_t: np.ndarray, lo_t: np.ndarray,
                         hh_t: np.ndarray, hl_t: np.ndarray, l2h: float, l2l: float,
                         pow2: np.ndarray, g1: np.ndarray, l1h: np.ndarray, l1l: np.ndarray,
                         g2: np.ndarray, l2h_t: np.ndarray, l2l_t: np.ndarray, ilh: float,
                         ill: float, thh: float, thl: float) -> tuple[int, int]:
    """:func:`f64_kernel` with a schedule per element (``I``, ``D``, ``R``
    float64, ``out`` float64): ``log2 r`` by :func:`log2_dd`, the
    exponential of :func:`f64_value` (bound ``2**-69``) and, for what it
    leaves, :func:`f64_value_accurate` (bound ``2**-80``, subnormal results
    too).  Elements with special parameters (zero, subnormal or non-finite
    ``I``; ``r`` not a positive normal number or 1; ``D`` outside
    ``[2**-900, 2**900]`` in the exact continuous order) and elements still
    undecided are recorded for the caller.  Same return convention as
    :func:`small_kernel`."""
    n = steps.shape[0]
    count = 0
    i = start
    while i < n:
        s = steps[i]
        x_i = I[i]
        x_d = D[i]
        x_r = R[i]
        bi = _bits(x_i) & _ABS
        br = _bits(x_r)
        ok = (bi >= _IMPLICIT and bi < _EXPMASK and br >= _IMPLICIT and br < _EXPMASK
              and x_r != 1.0 and x_d > 0.0 and x_d < np.inf)
        a = 0.0
        big = False
        if ok:
            if keras:
                if _is_int(s):
                    si = int(s)
                    if si < (1 << 53) and si > -(1 << 53):
                        sf = float(si)
                    else:
                        sf = _round_int(si, 53, -1022, 1023, pow2)
                else:
                    sf = float(s)
                a = sf / x_d
                if staircase:
                    a = float(np.floor(a))
                ok = a - a == 0.0
            elif staircase:
                ok, a = _staircase_exponent(s, x_d)
                # |a| >= 2**53 is held inexactly: only |t| > _T_LIMIT decides.
                big = abs(a) >= _TWO53
            else:
                if _is_int(s):
                    si = int(s)
                    big = not (si < (1 << 53) and si > -(1 << 53))
                a = float(s)
                ok = a - a == 0.0 and x_d >= _TWO_M900 and x_d <= _TWO_900
        val = 0.0
        if ok:
            lh, ll = log2_dd(x_r, g1, l1h, l1l, g2, l2h_t, l2l_t, ilh, ill, thh, thl)
            if keras or staircase:
                ch, cl = lh, ll
            else:
                # (lh + ll) / D: q1 = RN(lh / D), the remainder lh - q1 D
                # from Dekker's exact product, one correction.
                q1 = lh / x_d
                dh, dl = _split(x_d)
                pp, pe = _two_prod(q1, dh, dl, x_d)
                q2 = (((lh - pp) - pe) + ll) / x_d
                ch = q1 + q2
                cl = q2 - (ch - q1)
                ok = abs(ch) > _TWO_M900 and abs(ch) < _TWO_900
        if ok:
            t = a * ch
            if not abs(t) <= _T_LIMIT:
                # With an inexact a (big), t~ is within 2**-50 of t: |t| >
                # 2199, 0 or inf for every I (2**-1074 .. 2**1024).
                val = np.inf if t > 0 else 0.0
            elif big:
                ok = False
            else:
                if keras:
                    ih, ei = 1.0, 0
                else:
                    ei = (bi >> 52) - 1023
                    ih = _from_bits((bi & _FRAC) | 0x3FF0000000000000)
                ok, val = f64_value(a, ch, cl, ih, 0.0, ei, hi_t, lo_t, hh_t, hl_t,
                                     l2h, l2l, pow2)
                if not ok:
                    ok, val = f64_value_accurate(a, ch, cl, ih, ei, hi_t, lo_t, hh_t,
                                                  hl_t, l2h, l2l, pow2)
                if not ok:
                    # An integer exponent: (|I| or 1) r**p exactly when computable.
                    if keras or staircase:
                        whole = a == np.floor(a) and abs(a) <= 1099511627776.0
                        pi = int(a) if whole else 0
                    else:
                        whole, pi = _integer_quotient(s, x_d)
                    if whole:
                        ok, val = exact_scaled_pow(_IMPLICIT | (1023 << 52) if keras else bi,
                                                    br, pi, 53, -1022, 1023, pow2)
        if ok:
            if keras:
                val = val * x_i
            elif x_i < 0:
                val = -val
            out[i] = val
        else:
            undecided[count] = i
            count += 1
            if count == undecided.shape[0]:
                return i + 1, count
        i += 1
    return n, count
