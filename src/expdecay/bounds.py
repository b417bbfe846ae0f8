"""How far the plain float pipeline can be from the exact value: bounds in ulps.

``spec/bounds.md`` is normative: it defines the pipeline (the ``keras`` order
with an inexact ``pow``, §1), derives the bound with every inequality
(§2-§7) and states the special values (§6).  This module computes it, each
function citing the section it implements; the condition numbers come from
:mod:`expdecay.formula` through SymPy (§2), not typed in.

>>> condition_numbers(False)["decay_rate"]
step/decay_steps
>>> float(error_bound(0.5, 1000, 0.5, 0, dtype="float32"))
0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
import sympy as sp

from . import formula
from .floats import FORMATS, Format, round_rational
from .inputs import Exact, check_decay_steps, check_staircase, resolve_dtype, to_exact

__all__ = ["condition_numbers", "error_bound", "floor_may_differ"]

#: Names of the inputs, in the argument order of :data:`formula.ARGUMENTS`.
NAMES = tuple(sym.name for sym in formula.ARGUMENTS)

#: ``log(decay_rate)``: the condition numbers are evaluated in log-space so
#: that ``log(r)`` keeps full relative accuracy when ``r`` is close to 1.
LOG_DECAY_RATE = sp.Symbol("log_decay_rate", real=True)

#: Relative safety margin added to the float64 evaluation of a bound: it
#: absorbs the rounding errors of the few dozen float64 operations (each at
#: most 2**-52 relative) that evaluate the formulas of spec/bounds.md.
SLACK = 2.0**-32

#: Relative accuracy claimed for the float64 approximation of ``s / D``.
_P_ACCURACY = 2.0**-46

_LN2 = math.log(2.0)


# ---------------------------------------------------------------------------
# Condition numbers (spec/bounds.md §2)
# ---------------------------------------------------------------------------


def _is_floor_derivative(node: sp.Basic) -> bool:
    return isinstance(node, (sp.Derivative, sp.Subs)) and node.has(sp.floor)


@lru_cache(maxsize=2)
def _condition_table(staircase: bool) -> tuple[tuple[str, sp.Expr], ...]:
    log_lr = sp.expand_log(sp.log(formula.learning_rate(staircase)), force=True)
    table = []
    for sym in formula.ARGUMENTS:
        kappa = sym * sp.diff(log_lr, sym)
        # floor is piecewise constant: its derivative is 0 away from the
        # integers; the jumps are handled by floor_may_differ (spec §5).
        kappa = kappa.replace(_is_floor_derivative, lambda _node: sp.S.Zero)
        table.append((sym.name, sp.simplify(kappa)))
    return tuple(table)


def condition_numbers(staircase: bool) -> dict[str, sp.Expr]:
    """Relative condition numbers ``x * d(log lr)/dx`` of the schedule.

    Keys are the input names (``initial_learning_rate``, ``decay_steps``,
    ``decay_rate``, ``step``); values are SymPy expressions in
    :data:`formula.ARGUMENTS`, obtained with ``sympy.diff``.  A relative
    perturbation ``e`` of input ``x`` changes ``log lr`` by about
    ``kappa_x * e``.  With ``staircase`` the derivative of ``floor`` is taken
    as 0 (true away from the integers).

    >>> sorted(condition_numbers(False).items())
    [('decay_rate', step/decay_steps), ('decay_steps', -step*log(decay_rate)/decay_steps), \
('initial_learning_rate', 1), ('step', step*log(decay_rate)/decay_steps)]
    """
    return dict(_condition_table(check_staircase(staircase)))


Kappas = Callable[[Any, Any, Any, Any], list[Any]]


@lru_cache(maxsize=2)
def _kappa_function(staircase: bool) -> Kappas:
    """The condition numbers lambdified to numpy, in the arguments
    ``(I, D, log r, s)`` (``r`` replaced by ``exp(log r)``)."""
    table = _condition_table(staircase)
    exprs = [expr.subs(formula.decay_rate, sp.exp(LOG_DECAY_RATE)) for _, expr in table]
    I, D, _, s = formula.ARGUMENTS
    return sp.lambdify((I, D, LOG_DECAY_RATE, s), exprs, "numpy")  # type: ignore[no-any-return]


def _kappas(staircase: bool, ln_r: float, p: np.ndarray) -> dict[str, np.ndarray]:
    """|kappa| per input at exponent ``p`` (float64 array).

    The schedule depends on ``s`` and ``D`` only through ``s / D`` (the
    tests check that the condition numbers are invariant under
    ``s, D -> c s, c D``), so they are evaluated at ``step = p``,
    ``decay_steps = 1``: with staircase ``p`` is an exact integer and the
    lambdified ``floor`` sees it unchanged.
    """
    values = _kappa_function(staircase)(1.0, 1.0, ln_r, p)
    return {
        name: np.abs(np.broadcast_to(np.asarray(v, dtype=np.float64), p.shape))
        for name, v in zip(NAMES, values, strict=True)
    }


# ---------------------------------------------------------------------------
# Rounding errors as log-perturbations (spec §3)
# ---------------------------------------------------------------------------


def _log_error(eps: np.ndarray | float) -> np.ndarray:
    """Largest ``|log(1 + e)|`` for ``|e| <= eps``: ``-log1p(-eps)``; inf
    when ``eps >= 1`` (the rounded value may be 0)."""
    eps = np.asarray(eps, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -np.log1p(-np.minimum(eps, 1.0))
    return np.where(eps >= 1.0, np.inf, out)


def _unit(fmt: Format) -> float:
    """Unit roundoff ``u = 2**-P``."""
    return math.ldexp(1.0, -fmt.precision)


def _overflow_threshold(fmt: Format) -> float:
    """Magnitudes at or above this round to infinity (inf for float64,
    whose threshold lies beyond float64's own range)."""
    try:
        return math.ldexp((1 << (fmt.precision + 1)) - 1, fmt.emax - fmt.precision)
    except OverflowError:
        return math.inf


def _log2_overflow_threshold(fmt: Format) -> float:
    return fmt.emax + 1 + math.log2(1.0 - math.ldexp(1.0, -fmt.precision - 1))


def _relative_rounding_bound(a: np.ndarray, fmt: Format) -> np.ndarray:
    """``eps`` with ``|rnd(x) - x| <= eps |x|`` for ``|x| = a`` (a > 0):
    ``u * max(1, 2**emin / a)`` (half a quantum below the normal range)."""
    with np.errstate(divide="ignore", over="ignore"):
        return _unit(fmt) * np.maximum(1.0, fmt.min_normal / a)


def _approx(x: Exact) -> float:
    """A float64 approximation of an exact value (relative error <= 2**-53)."""
    if isinstance(x, float):
        return x
    try:
        return float(x)
    except OverflowError:  # beyond float64: the sign is read exactly
        return -math.inf if x < 0 else math.inf


def _ln_abs(x: Fraction) -> float:
    """``log|x|`` to about float64 accuracy, for any nonzero Fraction;
    ``log1p`` of the exact ``x - 1`` near 1 keeps the relative accuracy."""
    a = abs(x)
    if Fraction(1, 2) <= a <= 2:
        return math.log1p(float(a - 1))
    f = _approx(a)
    if 0.0 < f < math.inf and f >= 2.0**-1000:
        return math.log(f)
    return math.log(a.numerator) - math.log(a.denominator)


def _cast_log_error(x: Fraction, fmt: Format) -> tuple[float, float]:
    """``(rnd(x), |log(rnd(x) / x)|)``: the actual error of the cast, exactly
    computed and then rounded to float64 (spec §3.1)."""
    xf = round_rational(x, fmt)
    if xf == 0.0 or math.isinf(xf):
        return xf, math.inf
    rel = (Fraction(xf) - x) / x
    return xf, abs(math.log1p(float(rel)))


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scalars:
    """Everything the bound needs from ``I``, ``D``, ``r`` and the format."""

    fmt: Format
    D: Fraction
    special: float | None  # nan or inf for every step, or None
    lam_i: float = 0.0
    lam_d: float = 0.0
    lam_r: float = 0.0
    ln_i: float = 0.0
    ln_r: float = 0.0
    Df: float = 1.0
    df_power_of_two: bool = False
    rf_is_one: bool = False


def _scalars(initial_learning_rate: Any, decay_steps: Any, decay_rate: Any, dtype: Any) -> _Scalars:
    fmt = resolve_dtype(initial_learning_rate, dtype)
    D = check_decay_steps(decay_steps)
    I = to_exact(initial_learning_rate, "initial_learning_rate")
    r = to_exact(decay_rate, "decay_rate")
    Df, lam_d = _cast_log_error(D, fmt)
    mant = math.frexp(Df)[0] if math.isfinite(Df) else 0.0
    common: dict[str, Any] = {"lam_d": lam_d, "Df": Df, "df_power_of_two": mant == 0.5}
    if isinstance(I, float) and math.isnan(I) or isinstance(r, float) and math.isnan(r):
        return _Scalars(fmt, D, math.nan, **common)
    # Outside the model (spec §6): zero or infinite I, r <= 0, infinite r.
    if not isinstance(I, Fraction) or not isinstance(r, Fraction) or r <= 0:
        return _Scalars(fmt, D, math.inf, **common)
    If, lam_i = _cast_log_error(I, fmt)
    rf, lam_r = _cast_log_error(r, fmt)
    special = math.inf if math.inf in (lam_i, lam_r, lam_d) else None
    return _Scalars(
        fmt, D, special, lam_i=lam_i, lam_r=lam_r, ln_i=_ln_abs(I), ln_r=_ln_abs(r),
        rf_is_one=rf == 1.0, **common,
    )


@dataclass(frozen=True)
class _Steps:
    """The steps, flattened: float64 approximations, exact values on demand,
    and which are exactly representable in the format."""

    shape: tuple[int, ...]
    values: np.ndarray
    representable: np.ndarray
    exact: Callable[[int], Exact]
    raw: np.ndarray | None = None  # the flat numeric array (None: object input)


def _int_representable(arr: np.ndarray, fmt: Format) -> np.ndarray:
    """``|s| = m * 2**k`` with odd ``m < 2**P`` and ``|s| <= max_finite``."""
    if arr.dtype.kind == "u":
        mag = arr.astype(np.uint64)
    else:
        a64 = arr.astype(np.int64)
        # |s| without overflowing at INT64_MIN: -(s + 1) + 1 in uint64.
        negative = (-(a64 + 1)).astype(np.uint64) + np.uint64(1)
        mag = np.where(a64 < 0, negative, a64.astype(np.uint64))
    low = mag & (~mag + np.uint64(1))
    odd = mag // np.where(low == 0, np.uint64(1), low)
    fits = odd < np.uint64(1 << fmt.precision)
    in_range = mag.astype(np.float64) <= fmt.max_finite
    exact: np.ndarray = (mag == 0) | (fits & in_range)
    return exact


def _steps(steps: Any, fmt: Format) -> _Steps:
    arr = np.asarray(steps)
    shape = arr.shape
    flat = arr.reshape(-1)
    dtype = arr.dtype
    if dtype.kind == "b":
        raise TypeError(f"steps must be numbers, not bools; got {steps!r}")
    if dtype.kind in "iu":
        values = flat.astype(np.float64)
        return _Steps(shape, values, _int_representable(flat, fmt),
                      lambda i: to_exact(int(flat[i]), "steps"), flat)
    known = any(dtype == f.dtype for f in FORMATS.values())
    if known or (dtype.kind == "f" and dtype.itemsize <= 8):
        values = flat.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            back = values.astype(fmt.dtype).astype(np.float64)
        # A cast maps a value of the format to itself and anything else
        # elsewhere, so this test holds even if the cast itself misrounds.
        rep = (back == values) | ~np.isfinite(values)
        return _Steps(shape, values, rep, lambda i: to_exact(float(values[i]), "steps"), flat)
    if dtype.kind in "fOUS":
        exact = [to_exact(x, "steps") for x in flat.tolist()]
        values = np.array([_approx(x) for x in exact], dtype=np.float64)
        rep = np.array(
            [isinstance(x, float) or round_rational(x, fmt) == x for x in exact], dtype=bool
        )
        return _Steps(shape, values, rep, exact.__getitem__)
    raise TypeError(f"steps must be an int, float or an array of them; got dtype {dtype}")


def _check_pow_ulps(pow_ulps: Any) -> float:
    if isinstance(pow_ulps, (bool, np.bool_)) or not isinstance(pow_ulps, (int, float, np.number)):
        raise TypeError(f"pow_ulps must be a number; got {pow_ulps!r}")
    k = float(pow_ulps)
    if not (math.isfinite(k) and k >= 0.0):
        raise ValueError(f"pow_ulps must be finite and >= 0; got {pow_ulps!r}")
    return k


# ---------------------------------------------------------------------------
# The exponent (spec §4, §5)
# ---------------------------------------------------------------------------


@dataclass
class _Exponent:
    """The exponent of the pipeline relative to the exact one."""

    center: np.ndarray  # p (continuous) or floor(s/D) (staircase), float64
    error: np.ndarray  # bound on |p_f ln r_f - p ln r| (spec §4)
    pow_is_exact: np.ndarray  # w = 1 exactly (exponent 0 or r_f = 1)


def _integer_quotients(ctx: _Scalars, st: _Steps, lam_s: np.ndarray) -> np.ndarray:
    """Steps where ``s_f / D_f`` is an integer of the format, so the IEEE
    division is exact: ``s`` and ``D`` exact in the format and in float64,
    ``D`` an integer, ``s`` a multiple of it (``fmod`` is exact)."""
    s = st.values
    D = ctx.D
    if ctx.lam_d != 0.0 or D.denominator != 1 or D.numerator > 2**53:
        return np.zeros(s.shape, dtype=bool)
    Dv = float(D)
    with np.errstate(invalid="ignore"):
        ok = (lam_s == 0.0) & (np.abs(s) < 2.0**53) & (np.fmod(s, Dv) == 0.0)
    out: np.ndarray = ok & (np.abs(s) / Dv <= 2.0**ctx.fmt.precision)
    return out


def _quotient_log_error(ctx: _Scalars, st: _Steps, p: np.ndarray, lam_in: np.ndarray,
                        exact_division: bool) -> np.ndarray:
    """Log-error of ``rnd(s_f / D_f)`` (spec §3.2); 0 for s = 0, for an
    exact integer quotient and for a division by a power of two in the
    normal range."""
    fmt = ctx.fmt
    a = np.abs(p)
    q_lo = a * np.exp(-lam_in) * (1.0 - _P_ACCURACY)
    q_hi = a * np.exp(lam_in) * (1.0 + _P_ACCURACY)
    lam_q = _log_error(_relative_rounding_bound(q_lo, fmt))
    if exact_division:
        if ctx.df_power_of_two:
            lam_q = np.where(q_lo >= fmt.min_normal, 0.0, lam_q)
        lam_q = np.where(_integer_quotients(ctx, st, lam_in - ctx.lam_d), 0.0, lam_q)
    lam_q = np.where(q_hi >= _overflow_threshold(fmt), np.inf, lam_q)
    return np.where(st.values == 0.0, 0.0, lam_q)


def _continuous_exponent(ctx: _Scalars, st: _Steps, p: np.ndarray, lam_s: np.ndarray) -> _Exponent:
    """p_f = rnd(s_f / D_f) = p e^eta, |eta| <= Lambda_p (spec §4)."""
    kap = _kappas(False, ctx.ln_r, p)
    lam_q = _quotient_log_error(ctx, st, p, lam_s + ctx.lam_d, exact_division=True)
    lam_step = lam_s + lam_q  # the quotient's error acts as an error of s
    lam_p = lam_step + ctx.lam_d
    first = kap["step"] * lam_step + kap["decay_steps"] * ctx.lam_d + kap["decay_rate"] * ctx.lam_r
    # Exact remainder: kappa_s (e^eta - 1 - eta) + kappa_r eta_r (e^eta - 1),
    # bounded with e^x - 1 - x <= x^2 e^x / 2 and e^x - 1 <= x e^x.
    second = (kap["step"] * lam_step + kap["decay_steps"] * ctx.lam_d) * lam_p * np.exp(lam_p) / 2
    second = second + kap["decay_rate"] * ctx.lam_r * np.expm1(lam_p)
    pow_exact = (st.values == 0.0) | ctx.rf_is_one  # pow(r, 0) = pow(1, p) = 1
    return _Exponent(p, first + second, pow_exact)


def _exact_floors(s: Exact, ctx: _Scalars) -> tuple[float, float, float]:
    """``(n, n_f, |n_f - n|)`` for ``n = floor(s / D)`` and
    ``n_f = floor(rnd(rnd(s) / D_f))``, with exact rationals (``n`` and the
    difference are rounded to float64 only at the end)."""
    fmt = ctx.fmt
    if not isinstance(s, Fraction):  # a signed zero
        return 0.0, 0.0, 0.0
    n = math.floor(s / ctx.D)
    sf = round_rational(s, fmt)
    if math.isinf(sf):
        return float(n), math.copysign(math.inf, sf), math.inf
    if sf == 0.0 or math.isinf(ctx.Df):
        q = 0.0
    elif ctx.Df == 0.0:
        q = math.copysign(math.inf, sf)
    else:
        q = round_rational(Fraction(sf) / Fraction(ctx.Df), fmt)
    if math.isinf(q):
        return float(n), q, math.inf
    n_f = math.floor(q)
    return float(n), float(n_f), float(abs(n_f - n))


def _floors(
    ctx: _Scalars, st: _Steps, p: np.ndarray, lam_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(n, n_f, J)``: the true floor of the exponent (float64, rounded
    beyond 2**53), the computed floor (exact) and ``|n_f - n|`` (exact
    integer, then rounded): the interval filter, then the numpy path or
    exact rationals (spec §5)."""
    lam_q = _quotient_log_error(ctx, st, p, lam_s + ctx.lam_d, exact_division=False)
    margin = lam_s + ctx.lam_d + lam_q + _P_ACCURACY
    ok = np.isfinite(p)
    with np.errstate(invalid="ignore", over="ignore"):
        lo = np.floor(p * np.exp(-margin) * (1.0 - _P_ACCURACY))
        hi = np.floor(p * np.exp(margin) * (1.0 + _P_ACCURACY))
    n = np.where(ok, np.floor(p), np.nan)
    n_f = n.copy()
    jump = np.where(ok, 0.0, np.nan)
    near = np.flatnonzero(ok & ((lo != hi) | ~np.isfinite(margin)))
    if near.size:
        vn, vn_f, vjump, safe = _vector_floors(ctx, st, near, p[near])
        at = near[safe]
        n[at], n_f[at], jump[at] = vn[safe], vn_f[safe], vjump[safe]
        for i in near[~safe]:
            n[i], n_f[i], jump[i] = _exact_floors(st.exact(int(i)), ctx)
    return n, n_f, jump


def cast_to_format(sub: np.ndarray, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """``(rnd(sub), ok)``: numpy's cast to the format, ``ok`` where it is a
    single correct rounding (the casts of spec/bounds.md §5, numpy path)."""
    ok = np.ones(sub.shape, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        if fmt.name in ("float32", "float64"):
            return sub.astype(fmt.dtype), ok
        wide = sub.astype(np.float64)
        if fmt.name == "float16":
            return wide.astype(fmt.dtype), ok
        narrow = sub.astype(np.float32)
        if sub.dtype.kind in "iu":
            ok = np.abs(wide) <= 2.0**24
        else:
            ok = narrow.astype(np.float64) == wide
        return narrow.astype(fmt.dtype), ok


def _vector_floors(
    ctx: _Scalars, st: _Steps, idx: np.ndarray, p: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(n, n_f, J, safe)`` at the steps ``idx`` computed with numpy: the
    format's own IEEE division of the cast step by ``D_f`` for ``n_f``; an
    integer floor division (integer steps and ``D``) or a float64 quotient
    clear of the integers for ``n``.  ``safe`` is False where this does not
    give the exact answer; those steps take the exact-rational path."""
    none = np.zeros(idx.shape, dtype=bool)
    raw = st.raw
    if raw is None or raw.dtype == np.uint64 or not (0.0 < ctx.Df < math.inf):
        return p, p, p, none
    sub = raw[idx]
    D = ctx.D
    sf, cast_ok = cast_to_format(sub, ctx.fmt)
    with np.errstate(all="ignore"):
        n_f = np.floor(np.divide(sf, np.asarray(ctx.Df, dtype=ctx.fmt.dtype))).astype(np.float64)
    big = ~(np.abs(n_f) < 2.0**62)  # inf, nan or beyond int64: the exact path
    if sub.dtype.kind in "iu" and D.denominator == 1 and D.numerator < 2**62:
        # integer floors: n exact in int64, n_f an exact integer of the format
        exact_n = sub.astype(np.int64) // np.int64(D.numerator)
        n_f_int = np.where(big, 0.0, n_f).astype(np.int64)
        jump = np.abs(n_f_int - exact_n).astype(np.float64)
        return exact_n.astype(np.float64), n_f, jump, cast_ok & ~big
    n = np.floor(p)
    clear = np.abs(p - np.rint(p)) > _P_ACCURACY * np.maximum(1.0, np.abs(p))
    small = np.abs(p) < 2.0**52  # n and n_f - n exact in float64
    with np.errstate(invalid="ignore"):
        jump = np.abs(n_f - n)
    return n, n_f, jump, cast_ok & clear & small & ~big


def _staircase_exponent(ctx: _Scalars, st: _Steps, p: np.ndarray, lam_s: np.ndarray) -> _Exponent:
    """Exponent floor(p) exact when the floors agree; else a jump of
    J = |n_f - n| steps of the stair (spec §5)."""
    n, n_f, jump = _floors(ctx, st, p, lam_s)
    kap = _kappas(True, ctx.ln_r, n)
    # The staircase condition numbers of s and D vanish (floor is locally
    # constant): a correct floor leaves only r's cast, kappa_r = floor(s/D).
    error = kap["decay_rate"] * ctx.lam_r + jump * (abs(ctx.ln_r) + ctx.lam_r)
    pow_exact = (n_f == 0.0) | ctx.rf_is_one
    return _Exponent(n, error, pow_exact)


# ---------------------------------------------------------------------------
# From a log-error to ulps (spec §7)
# ---------------------------------------------------------------------------


def _ulps(lx2: np.ndarray, delta: np.ndarray, B: np.ndarray, fmt: Format) -> np.ndarray:
    """Bound on ``|F(z) - F(x)|`` for ``|log(z / x)| <= B``, where ``F`` is
    the piecewise linear ordinal of the format (spec §7), ``log2 x ~ lx2``
    with a natural-log uncertainty ``delta``."""
    P, emin = fmt.precision, fmt.emin
    half_scale = math.ldexp(1.0, P - 1)
    e = np.floor(lx2)
    m = np.exp2(lx2 - e)
    normal = e >= emin
    with np.errstate(over="ignore", under="ignore"):
        c = np.where(normal, m * half_scale, np.exp2(np.minimum(lx2 - fmt.quantum_min, P)))
    below = normal & (e > emin) & (m * np.exp(-delta) < 1.0)
    # ``below``: the true x may lie in the binade under x~ (twice the ulps
    # per unit there); spec §7 gives the two cases.
    c_hi = c * np.exp(delta)
    grow, shrink = np.expm1(B), -np.expm1(-B)
    near_edge = np.minimum(2.0 * grow, grow + 2.0 * -np.expm1(-delta)) * half_scale
    up = np.where(below, np.maximum(c_hi * grow, near_edge), c_hi * grow)
    m_lo = m * np.exp(-delta)
    extra = np.where(e > emin, np.minimum(shrink, np.maximum(0.0, 1.0 - m_lo * np.exp(-B))), 0.0)
    down_near = np.where(below, (m * np.exp(delta) + 1.0) * shrink * half_scale,
                         c_hi * shrink + extra * half_scale)
    # Beyond one binade (B >= 0.69 < ln 2): difference of the ordinal itself;
    # its log-derivative is at most 2**(P+1), which bounds the effect of delta.
    step = B / _LN2
    centre = _ordinal(lx2, fmt)
    up_far = _ordinal(lx2 + step, fmt) - centre
    down_far = centre - _ordinal(lx2 - step, fmt)
    margin = 4.0 * half_scale * delta + 2.0**-50 * (np.abs(centre) + np.abs(up_far))
    far = np.maximum(up_far, down_far) + margin
    out: np.ndarray = np.where(B < 0.69, np.maximum(up, down_near), far)
    return out


def _ordinal(l2: np.ndarray, fmt: Format) -> np.ndarray:
    """``F(2**l2)``: the piecewise linear ordinal of the positive floats,
    equal to the bit pattern at every float (spec §7)."""
    e = np.floor(l2)
    with np.errstate(over="ignore", under="ignore"):
        normal = (e - fmt.emin + np.exp2(l2 - e)) * math.ldexp(1.0, fmt.precision - 1)
        sub = np.exp2(np.minimum(l2, fmt.emin) - fmt.quantum_min)
    out: np.ndarray = np.where(e >= fmt.emin, normal, sub)
    return out


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def _bound(ctx: _Scalars, st: _Steps, staircase: bool, k: float) -> np.ndarray:
    fmt = ctx.fmt
    u = _unit(fmt)
    s = st.values
    a = np.abs(s)
    lam_s = np.where(st.representable | (a == 0.0), 0.0,
                     _log_error(_relative_rounding_bound(np.where(a == 0.0, 1.0, a), fmt)))
    lam_s = np.where(a >= _overflow_threshold(fmt), np.inf, lam_s)
    D = _approx(ctx.D)
    p = s / D
    ex = (_staircase_exponent if staircase else _continuous_exponent)(ctx, st, p, lam_s)
    # The pow (spec §3.3): |w - w*| <= k ulp(w*) <= 2ku |w*| + k 2**quantum_min,
    # the absolute part only when w* may be subnormal.
    ln_w = ex.center * ctx.ln_r
    delta = _P_ACCURACY * (1.0 + abs(ctx.ln_i) + np.abs(ln_w))  # float64 error of logs
    tiny_w = ~ex.pow_is_exact & ((ln_w - ex.error - delta) / _LN2 < fmt.emin)
    lam_w = np.where(ex.pow_is_exact, 0.0, float(_log_error(2.0 * k * u)))
    B = ctx.lam_i + lam_w + ex.error  # |log(z' / y*)|, z' = I_f w* (1 + e) (spec §4)
    log2_T = _log2_overflow_threshold(fmt)
    lx = ctx.ln_i + ln_w
    lx2 = lx / _LN2
    w_overflow = (ln_w + ex.error + lam_w + delta) / _LN2 >= log2_T
    overflow = w_overflow | (lx2 + (B + delta) / _LN2 >= log2_T)
    body = _ulps(lx2, delta, B, fmt)
    # |I_f| k 2**quantum_min of absolute error, in ulps of the lowest point.
    spread = math.exp(ctx.ln_i + ctx.lam_i) * k * fmt.min_subnormal
    low = np.exp2(lx2) * np.exp(-delta - B) - spread
    gap_low = np.exp2(np.maximum(np.floor(np.log2(np.maximum(low, fmt.min_subnormal))), fmt.emin)
                      - fmt.precision + 1)
    body = (body + np.where(tiny_w, spread / gap_low, 0.0)) * (1.0 + SLACK)
    bound = body + np.where(ex.pow_is_exact, 0.0, 0.5) + 0.5
    bound = np.where(overflow | ~np.isfinite(s), np.inf, bound)
    return np.where(np.isnan(bound), np.inf, bound)


def error_bound(
    initial_learning_rate: Any,
    decay_steps: Any,
    decay_rate: Any,
    steps: Any,
    *,
    staircase: bool = False,
    dtype: Any = None,
    pow_ulps: float = 1.0,
) -> np.ndarray:
    """Upper bound, per step, on the ulp distance between the float pipeline
    with ``pow`` within ``pow_ulps`` ulps and the ``exact`` order
    (``spec/bounds.md`` §1; special values: ``nan`` or ``inf``, §6).

    Inputs are taken exactly (as :func:`expdecay.oracle.to_exact` reads
    them); ``steps`` is an int, float or an array of them (any shape); the
    result is a float64 array of the same shape (0-d for a scalar step).
    ``dtype=None`` applies the spec's dtype rule (float32 for Python numbers).

    >>> round(float(error_bound(1, 1, 0.5, 3, dtype="float16")), 6)  # pow: 2 ulps below 1/8
    3.0
    """
    is_staircase = check_staircase(staircase)
    k = _check_pow_ulps(pow_ulps)
    ctx = _scalars(initial_learning_rate, decay_steps, decay_rate, dtype)
    st = _steps(steps, ctx.fmt)
    nan_step = np.isnan(st.values)
    if ctx.special is not None:
        out = np.full(st.values.shape, ctx.special)
    else:
        with np.errstate(all="ignore"):
            out = _bound(ctx, st, is_staircase, k)
    return np.where(nan_step, np.nan, out).reshape(st.shape)


def floor_may_differ(
    initial_learning_rate: Any,
    decay_steps: Any,
    decay_rate: Any,
    steps: Any,
    *,
    dtype: Any = None,
) -> np.ndarray:
    """True where the staircase exponent of the pipeline,
    ``floor(rnd(rnd(s) / rnd(D)))``, differs from the true ``floor(s / D)``,
    decided exactly (``spec/bounds.md`` §5).  ``I`` and ``r`` only select
    the dtype (the spec's dtype rule) and are validated.
    """
    ctx = _scalars(initial_learning_rate, decay_steps, decay_rate, dtype)
    st = _steps(steps, ctx.fmt)
    s = st.values
    a = np.abs(s)
    with np.errstate(all="ignore"):
        lam_s = np.where(st.representable | (a == 0.0), 0.0,
                         _log_error(_relative_rounding_bound(np.where(a == 0.0, 1.0, a), ctx.fmt)))
        overflow = np.isfinite(s) & (a >= _overflow_threshold(ctx.fmt))
        _, _, jump = _floors(ctx, st, s / _approx(ctx.D), np.where(overflow, 0.0, lam_s))
        differ = jump > 0
    out: np.ndarray = (differ | overflow).reshape(st.shape)
    return out
