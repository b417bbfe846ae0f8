"""The numpy paths: one schedule over a chunk of steps, with a proven error
bound and a rounding test per element (spec/kernels.md, section 6).

Every numpy ``+ - * /`` on float64 or float32 and every float64 -> float32
conversion is the IEEE correctly rounded operation (numpy neither fuses
operations nor flushes subnormals; :func:`hardware_ok` checks at run time that
no other library switched on flush-to-zero before the float32 path relies on
it).  The elements these functions leave undecided go to the oracle
(:mod:`expdecay.fast.fallback`).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from .. import inputs
from ..floats import Format, round_rational
from .constants import (
    B64,
    B_KERAS_TABLE,
    B_TABLE,
    EXP2_ERR,
    INT64_SAFE,
    T_LIMIT,
    TABLE,
    TABLE_BITS,
    TABLE_K,
    U,
    exp2_table,
    ln2_dd,
    power_table,
    split,
)

if TYPE_CHECKING:
    from .plan import Plan

# ---------------------------------------------------------------------------
# Exact roundings to a format, vectorised
# ---------------------------------------------------------------------------


# spec/kernels.md, section 6.4
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


def round_exact(v: np.ndarray, fmt: Format) -> np.ndarray:
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
        return round_exact(out, fmt)


def round_int_to_format(s: np.ndarray, fmt: Format) -> np.ndarray:
    """int64 values rounded to ``fmt`` exactly, as float64 (inf on overflow)."""
    return round_int(np.asarray(s, dtype=np.int64), fmt)


def round_int(s: np.ndarray, fmt: Format) -> np.ndarray:
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


# spec/kernels.md, section 6.4
def _pow2_f64(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``2**t ~ w * 2**E`` with ``w`` in ``[0.999, 2.001]`` (relative error in the
    spec/kernels.md section 6.4); ``t`` finite with ``|t| < 2**40``."""
    hi = exp2_table()[0]
    n = np.rint(t * TABLE)
    x = (t - n * (1.0 / TABLE)) * ln2_dd()[0]
    p = 1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24))))
    ni = n.astype(np.int64)
    return hi[ni & (TABLE - 1)] * p, ni >> TABLE_BITS


def _two_prod(a: np.ndarray, bh: float | np.ndarray, bl: float | np.ndarray,
              b: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker: ``a * b = p + e`` exactly, ``b = bh + bl`` already split."""
    ah, al = split(a)
    p = a * b
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


# spec/kernels.md, section 6.6
def pow2_dd(
    a: np.ndarray, c: tuple[float, float], scale: tuple[float, float, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Ih + Il) * 2**(a * c)`` as ``(R, Re, E)`` meaning ``(R + Re) * 2**E``,
    ``|Re| <= ulp(R) / 2``, ``R`` in ``[0.99, 4.1)``; relative error ``< B``."""
    ch, cl = c
    chh, chl = split(ch)
    th, te = _two_prod(a, chh, chl, ch)
    tl = te + a * cl
    n = np.rint(th * TABLE)
    xp = th - n * (1.0 / TABLE)  # exact
    l2h, l2l = ln2_dd()
    l2hh, l2hl = split(l2h)
    xh, xe = _two_prod(xp, l2hh, l2hl, l2h)
    xl = xe + (xp * l2l + tl * l2h)
    y = xh + xl
    q = (y * y) * (0.5 + y * (1.0 / 6 + y * (1.0 / 24 + y * (1.0 / 120))))
    lo = xl + q
    hi_t, lo_t, hh_t, hl_t = exp2_table()
    ni = n.astype(np.int64)
    j = ni & (TABLE - 1)
    th_j, tl_j = hi_t[j], lo_t[j]
    p1, e1 = _two_prod(xh, hh_t[j], hl_t[j], th_j)
    s = th_j + p1
    s1 = p1 - (s - th_j)
    low = (((tl_j + th_j * lo) + e1) + s1) + tl_j * xh
    ih, il, ei = scale
    if ih != 1.0 or il != 0.0:
        ihh, ihl = split(ih)
        p2, e2 = _two_prod(s, ihh, ihl, ih)
        low = e2 + (s * il + (low * ih + low * il))
        s = p2
    r = s + low
    re = low - (r - s)
    return r, re, (ni >> TABLE_BITS) + ei


# spec/kernels.md, section 6.5
def _table_product(a: np.ndarray, tables: list[np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``prod_i T_i[(a >> 12 i) & 4095]`` as ``(R, Re, E)``: value ``(R + Re) 2**E``.

    Each factor is exact to 2**-104; each double-double product (Dekker's
    exact product of the high parts, the cross terms in float64, ``l l'``
    dropped) adds below 2**-101.5; so the total is below ``B_TABLE``."""
    mask = (1 << TABLE_K) - 1
    rows = tables[0].take(a & mask if len(tables) > 1 else a, axis=0)
    hh, hl, l_, e = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    h = hh + hl
    for i, t in enumerate(tables[1:], start=1):
        j = a >> (TABLE_K * i)
        if i + 1 < len(tables):
            j &= mask
        rows = t.take(j, axis=0)
        hh2, hl2 = rows[:, 0], rows[:, 1]
        h2 = hh2 + hl2
        if i > 1:
            hh, hl = split(h)
        p = h * h2
        err = ((hh * hh2 - p) + hh * hl2 + hl * hh2) + hl * hl2
        l_ = err + (h * rows[:, 2] + l_ * h2)
        h = p
        e = e + rows[:, 3]
    r = h + l_
    return r, l_ - (r - h), np.clip(e, -2.0**40, 2.0**40).astype(np.int64)


# spec/kernels.md, section 6.6
def decide_f64(r: np.ndarray, re: np.ndarray, e: np.ndarray, bound: float = B64
                ) -> tuple[np.ndarray, np.ndarray]:
    """Rounding test of ``(r + re) * 2**e`` to float64: ``r`` positive in
    ``[0.5, 8)``, ``|re| <= ulp(r) / 2``, relative error below ``bound``.

    Decided with result ``r * 2**e`` when ``|re| + bound * r < ulp(r) / 2``
    (and not ``re < 0`` with ``r`` a power of two, where the binade below is
    finer), the result being normal; results below half the smallest
    subnormal are decided as 0, other subnormal results are not decided."""
    pw = (r.view(np.int64) & np.int64(0x7FF0000000000000)).view(np.float64)  # 2**exponent(r)
    ok = np.abs(re) + bound * r < pw * U
    ok &= (r != pw) | (re >= 0)
    val = np.ldexp(r, e)
    low = e < -1018
    if low.any():
        er = np.frexp(pw[low])[1].astype(np.int64) - 1 + e[low]
        ok[low] &= er <= -1076  # er < -1022: subnormal, undecided unless far below
        val[low] = np.where(er <= -1076, 0.0, val[low])
    return val, ok




# spec/kernels.md, section 6.8
def floor_div(s: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
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
    limit = INT64_SAFE // den
    if _all_below(s, limit):
        return np.floor_divide(s * den if den != 1 else s, num), np.ones(s.shape, bool)
    ok = (s > -limit) & (s < limit)
    return np.floor_divide(np.where(ok, s, 0) * den, num), ok


def _floor_div_approx(s: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """Floor of the float64 quotient ``RN(s / RN(D))`` (``s`` float64, exact or
    one rounding from an integer: relative error ``<= 3.0001 u``), accepted
    where the quotient is farther than ``4 u |x|`` from an integer."""
    ok = np.isfinite(s)
    x = np.where(ok, s, 0.0) / float(plan.args[1])
    fl = np.floor(x)
    margin = 4 * U * np.abs(x)
    ok &= (x - fl > margin) & (fl + 1 - x > margin) & (np.abs(x) < 2.0**52)
    return np.where(ok, fl, 0).astype(np.int64), ok


def _exponent_operand(steps: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """The float64 ``a`` of ``t = a * c`` and the mask of elements handled here.

    For the float64 format ``a`` must be exact; for the other formats a
    rounding of an integer step to float64 is covered by the bound."""
    fmt, order = plan.fmt, plan.order
    if order == "keras":
        return _keras_exponent(steps, plan)
    if plan.staircase:
        p, ok = floor_div(steps, plan)
        if fmt.precision == 53:
            ok &= np.abs(p) < (1 << 53)
        return p.astype(np.float64), ok
    if steps.dtype.kind == "f":
        return np.where(np.isfinite(steps), steps, 0.0), np.isfinite(steps)
    ok = np.ones(steps.shape, bool)
    if fmt.precision == 53:
        ok = np.abs(steps) < (1 << 53)
    return steps.astype(np.float64), ok


def _keras_exponent(steps: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """``p = rnd(rnd(s) / Df)`` (floored when staircase), exactly, as float64."""
    p = keras_p(steps, plan)
    ok = np.isfinite(p)
    return np.where(ok, p, 0.0), ok


# spec/kernels.md, section 6.8
def keras_p(steps: np.ndarray, plan: Plan) -> np.ndarray:
    fmt = plan.fmt
    if fmt.name == "float32" and steps.dtype.kind != "f" and _all_below(steps, 1 << 24):
        # Integers below 2**24 convert exactly; numpy's float32 division is IEEE.
        p = (steps.astype(np.float32) / np.float32(plan.d_fmt)).astype(np.float64)
        return np.floor(p) if plan.staircase else p
    if steps.dtype.kind == "f":
        sf = round_exact(steps, fmt)
    elif fmt.precision == 53 and _all_below(steps, 1 << 53):
        sf = steps.astype(np.float64)  # exact
    else:
        sf = round_int(steps, fmt)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = round_exact(sf / plan.d_fmt, fmt)
    if plan.staircase:
        p = np.floor(p)
    return p


# spec/kernels.md, section 6.3
@functools.cache
def exp2_sample_ok() -> bool:
    """``numpy.exp2`` within a sixteenth of the assumed bound on a sample,
    measured against the proven double-double path."""
    rng = np.random.default_rng(12345)
    t = np.concatenate([rng.uniform(-1000, 1000, 4096), rng.uniform(-1, 1, 4096),
                        np.arange(-2048, 2048) / 2])
    r, re, e = pow2_dd(t, (1.0, 0.0), (1.0, 0.0, 0))
    ref = np.ldexp(r, e)
    got = np.exp2(t)
    rel = np.abs(got - ref) / ref
    return bool(np.all(rel < EXP2_ERR / 16))


# spec/kernels.md, section 6.3
def hardware_ok() -> bool:
    """Subnormal float32 arithmetic and conversions work (no flush-to-zero or
    denormals-are-zero mode set by another library) and ``exp2`` is sane."""
    x = np.array([2.0**-140], np.float64)
    y = x.astype(np.float32)
    return (float(y[0]) == 2.0**-140 and float((y * np.float32(0.5))[0]) == 2.0**-141
            and exp2_sample_ok())


def regular_chunk(steps: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
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
        val = val * plan.i_fmt if fmt.precision == 53 else round_exact(val * plan.i_fmt, fmt)
    elif plan.negative:
        val = -val
    return val, ok


# spec/kernels.md, section 6.3
def _chunk_f32(steps: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray] | None:
    """The float32 path through ``numpy.exp2`` and IEEE float64 -> float32
    conversions (spec/kernels.md section 6.3).

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
            a, ok = floor_div(steps, plan)
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
    eps = (3.0 * (tmax + abs(e)) + 8.0) * U + EXP2_ERR
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


# spec/kernels.md, section 6.4
def _chunk_small(a: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
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


def _tables_for(plan: Plan, negated: bool, count: int,
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
    size = 1 << TABLE_K
    return [power_table(base, Fraction(1 << (TABLE_K * i)) / divisor,
                         start if i == 0 else Fraction(1), size) for i in range(count)]


# spec/kernels.md, section 6.5
def _tables_f64(steps: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray] | None:
    """The power-table path for a chunk (integer exponents), or None."""
    ok = np.ones(steps.shape, bool)
    p = None
    if plan.order == "exact":
        if plan.staircase:
            ai, ok = floor_div(steps, plan)
        elif steps.dtype.kind == "f":
            return None
        else:
            ai = steps
    else:
        p = keras_p(steps, plan)
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
    count = max(1, -(-int(ai.max()).bit_length() // TABLE_K))
    if p is None:
        r, re, E = _table_product(ai, _tables_for(plan, negated, count))
        val, dec = decide_f64(r, re, E, B_TABLE)
        return val, ok & dec
    return _keras_residual(steps, p, ai, negated, count, plan)


# spec/kernels.md, section 6.5
def _keras_residual(steps: np.ndarray, p: np.ndarray, ai: np.ndarray, negated: bool,
                    count: int, plan: Plan) -> tuple[np.ndarray, np.ndarray] | None:
    """Keras order, float64, continuous, integer steps: ``rf**p`` from the
    power tables of ``rf**(s / Df)`` and the residual ``p - s / Df``, with the
    bound ``2**-80`` (spec/kernels.md, section 6.5).  None when the chunk does
    not qualify (then the double-double path runs).
    """
    d = plan.d_fmt
    p_max = float(ai.max()) / d * (1 + 2.0**-50)
    if not (2.0**-900 < d < 2.0**900 and p_max * abs(plan.c[0]) <= T_LIMIT):
        return None
    r, re, E = _table_product(ai, _tables_for(plan, negated, count, Fraction(d)))
    dh, dl = split(d)
    big_p, e = _two_prod(p, dh, dl, d)
    kappa = (((big_p - steps) + e) / d) * (plan.c[0] * ln2_dd()[0])
    low = re + r * kappa
    r2 = r + low
    return decide_f64(r2, low - (r2 - r), E, B_KERAS_TABLE)


def _chunk_f64(steps: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes and the decided mask for float64: tables or double-double."""
    if plan.tables:
        got = _tables_f64(steps, plan)
        if got is not None:
            return got
    a, ok = _exponent_operand(steps, plan)
    val, dec = _chunk_dd(a, plan)
    return val, ok & dec


# spec/kernels.md, section 6.6
def _chunk_dd(a: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """The double-double path: ``I 2**(a c)`` decided for float64."""
    scale = (1.0, 0.0, 0) if plan.order == "keras" else plan.scale
    log2_i = 0.0 if plan.order == "keras" else plan.log2_i
    t_approx = a * plan.c[0]
    out_range = ~(np.abs(t_approx) <= T_LIMIT)
    r, re, E = pow2_dd(np.where(out_range, 0.0, a), plan.c, scale)
    val, dec = decide_f64(r, re, E)
    if out_range.any():
        big = t_approx[out_range] + log2_i > 0
        val[out_range] = np.where(big, np.inf, 0.0)
        dec[out_range] = True
    return val, dec

