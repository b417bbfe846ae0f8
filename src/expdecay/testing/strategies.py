"""Hypothesis strategies for testing an exponential-decay schedule against expdecay.

* :func:`schedules` draws valid parameter sets (:class:`Schedule`), and
  :func:`invalid_schedules` invalid ones, each with the exception expdecay
  raises for it (:class:`InvalidSchedule`).
* :func:`steps` draws steps for one schedule, biased toward the places where
  implementations go wrong.
* :func:`expected` is a plain function, not a strategy: the correctly rounded
  values of a schedule at given steps, in either order of evaluation, from the
  vectorised paths of :mod:`expdecay.fast` (those of
  :class:`expdecay.schedule.ExponentialDecay`).

Design
------
* **Every draw is a valid input.**  A :class:`Schedule` holds Python floats and
  ints that are exactly values of its format (each draw is rounded to the format
  with :func:`expdecay.floats.round_rational`, never left to a later implicit
  cast), so ``initial_learning_rate``, ``decay_steps`` and ``decay_rate`` mean
  the same number in the exact and the Keras order, in the user's framework and
  here.  Steps are Python ints within ``[0, max_step]`` (negative ones only when
  asked) or finite Python floats.
* **Readable counterexamples.**  Each parameter is ``one_of`` a ``sampled_from``
  of the usual values first (``0.1``, ``1000``, ``0.96``), then the harder ranges;
  Hypothesis shrinks toward the first branch, so a failure is reported with
  ordinary numbers whenever ordinary numbers reproduce it.
* **Hard regions of the steps**, in the spirit of Berkeley TestFloat's
  generators that favour hard cases (each is a branch of a ``one_of``, so the
  search keeps reaching them as it shrinks):

  - staircase boundaries ``k*D - 1``, ``k*D``, ``k*D + 1`` (the floor of
    ``s / D`` changes there), with ``k*D`` also placed just above ``2**24``;
  - the neighbourhood of ``2**24``, above which float32 cannot hold every
    integer step (Keras's cast of the step rounds, and staircase schedules
    decay one step early);
  - steps whose exact value ``I * r**(s/D)`` lies next to a rounding midpoint of
    the format: the step is solved for from a midpoint with 120-bit mpmath
    logarithms (continuous schedules: a float step; staircase: the exponent
    ``k`` nearest a midpoint in a window);
  - steps where the value crosses the subnormal threshold (the smallest
    normal), underflows to zero (half the smallest subnormal) or overflows
    (the midpoint between the largest finite value and ``2**(emax+1)``):
    ``s = D (ln T - ln I) / ln r``, and the staircase boundaries around it;
  - plain random steps, small and large, integer and float.

Regions that do not exist for a schedule (no overflow when ``r < 1`` and the
step is non-negative) are left out rather than filtered, so no draw is wasted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

from .. import fast
from ..floats import FORMATS, Format, get_format, round_rational
from ..orders import ORDERS, Order, check_order
from ..resources import require
from ..schedule import ExponentialDecay

try:
    from hypothesis import strategies as st
except ModuleNotFoundError:  # say which extra installs it (or re-raise a broken install's error)
    require("hypothesis", "testing", "expdecay.testing.strategies")
    raise

__all__ = [
    "Schedule",
    "InvalidSchedule",
    "schedules",
    "invalid_schedules",
    "steps",
    "expected",
    "ORDERS",
]


#: Default order of formats: Keras's floatx first, so failures shrink to float32.
_DEFAULT_DTYPES = ("float32", "float64", "float16", "bfloat16")

_INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------------------
# Drawn values
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """One valid parameter set; every number is exactly a value of ``dtype``.

    >>> s = Schedule(0.5, 1000, 0.5, False, "float16")
    >>> float(s.build()(2000))
    0.125
    """

    initial_learning_rate: float
    decay_steps: int | float
    decay_rate: float
    staircase: bool
    dtype: str

    @property
    def format(self) -> Format:
        """The :class:`expdecay.floats.Format` named by :attr:`dtype`."""
        return get_format(self.dtype)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of Keras's ``ExponentialDecay`` (without ``dtype``)."""
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
        }

    def build(self) -> ExponentialDecay:
        """expdecay's schedule with these parameters, computing in :attr:`dtype`."""
        return ExponentialDecay(**self.kwargs(), dtype=self.dtype)


@dataclass(frozen=True)
class InvalidSchedule:
    """Arguments of :class:`~expdecay.schedule.ExponentialDecay` with one bad
    value: ``argument`` names it, ``exception`` is the type expdecay raises
    (its message names ``argument``)."""

    kwargs: dict[str, Any] = field(hash=False)
    exception: type[Exception]
    argument: str

    def build(self) -> ExponentialDecay:
        """Construct the schedule (raises :attr:`exception`)."""
        return ExponentialDecay(**self.kwargs)


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


def _formats(dtypes: Any) -> list[Format]:
    if dtypes is None:
        return [FORMATS[n] for n in _DEFAULT_DTYPES]
    items = [dtypes] if isinstance(dtypes, (str, Format)) or not isinstance(
        dtypes, Iterable) else list(dtypes)
    if not items:
        raise ValueError("dtypes must name at least one format")
    out: list[Format] = []
    for d in items:
        try:
            fmt = get_format(d)
        except (TypeError, ValueError) as e:
            raise type(e)(f"dtypes: {e}") from None
        if fmt not in out:
            out.append(fmt)
    return out


def _rounder(fmt: Format) -> Any:
    """Round a finite positive float or int to ``fmt`` (nearest, ties to even)."""
    return lambda x: round_rational(Fraction(x), fmt)


def _unique(values: Iterable[float | int]) -> list[Any]:
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


_NICE_RATES = (0.1, 0.01, 0.001, 1.0, 0.5, 3e-4, 1e-4, 2.0)
_NICE_DECAYS = (0.96, 0.5, 0.9, 0.99, 0.1, 0.999, 0.25, 0.95, 1.0, 2.0, 1.5)
_NICE_STEPS = (1000, 1, 10, 100, 10000, 100000, 2, 3, 7)
_SPECIAL = (0.0, -0.0, math.inf, -math.inf, math.nan)


def _initial_rates(fmt: Format, special: bool) -> st.SearchStrategy[float]:
    rnd = _rounder(fmt)
    parts = [
        st.sampled_from(_unique(rnd(x) for x in _NICE_RATES)),
        st.floats(min_value=fmt.min_subnormal, max_value=fmt.max_finite).map(rnd),
    ]
    if special:
        parts.append(st.sampled_from(_SPECIAL + (-rnd(0.1),)))
    return st.one_of(parts)


def _decay_steps(fmt: Format) -> st.SearchStrategy[int | float]:
    top = int(min(fmt.max_finite, 2**40))
    to_int = lambda n: int(round_rational(n, fmt))  # an int of the format
    rnd = _rounder(fmt)
    return st.one_of(
        st.sampled_from([n for n in _NICE_STEPS if round_rational(n, fmt) == n]),
        st.integers(1, 10**6 if top > 10**6 else top).map(to_int),
        st.integers(1, top).map(to_int),
        st.sampled_from(_unique(rnd(x) for x in (0.5, 2.5, 0.1, 1e-3))),
        st.floats(min_value=2.0**-10, max_value=float(top)).map(rnd),
    )


def _decay_rates(fmt: Format, special: bool) -> st.SearchStrategy[float]:
    rnd = _rounder(fmt)
    p = fmt.precision
    kmax = min(1024, 2 ** (p - 1))
    # Within kmax ulps of 1, below (ulp 2**-p) or above (ulp 2**(1-p)).
    def near_one(k: int, above: bool) -> float:
        return 1.0 + k * 2.0 ** (1 - p) if above else 1.0 - k * 2.0**-p

    near = st.builds(near_one, st.integers(1, kmax), st.booleans())
    parts = [
        st.sampled_from(_unique(rnd(x) for x in _NICE_DECAYS)),
        near,
        st.floats(min_value=max(2.0**-30, fmt.min_subnormal), max_value=16.0).map(rnd),
    ]
    if special:
        parts.append(st.sampled_from(_SPECIAL + (-0.5, -2.0)))
    return st.one_of(parts)


def schedules(
    dtypes: Any = None,
    staircase: bool | None = None,
    *,
    special_values: bool = False,
) -> st.SearchStrategy[Schedule]:
    """Valid schedules: positive finite parameters exactly representable in the format.

    ``dtypes`` is one format or a sequence of them (names, numpy dtypes or
    ``ml_dtypes.bfloat16``), all four by default.  ``staircase`` fixes the mode
    (both by default).  ``special_values=True`` also draws zeros, infinities,
    NaN and negative values of ``initial_learning_rate`` and ``decay_rate``
    (valid inputs with IEEE 754 special-value rules; an implementation that
    only supports ordinary learning rates leaves them out).

    >>> from hypothesis import find, settings
    >>> s = find(schedules(), lambda s: True, settings=settings(database=None))
    >>> s.initial_learning_rate, s.decay_steps, s.decay_rate, s.staircase, s.dtype
    (0.10000000149011612, 1000, 0.9599999785423279, False, 'float32')
    """
    fmts = _formats(dtypes)
    if staircase is not None and not isinstance(staircase, bool):
        raise TypeError(f"staircase must be None or a bool; got {staircase!r}")
    modes = st.booleans() if staircase is None else st.just(staircase)

    def for_format(fmt: Format) -> st.SearchStrategy[Schedule]:
        return st.builds(Schedule, _initial_rates(fmt, special_values), _decay_steps(fmt),
                         _decay_rates(fmt, special_values), modes, st.just(fmt.name))

    return st.sampled_from(fmts).flatmap(for_format)


#: (argument, bad value, exception raised by ExponentialDecay), simplest first.
_INVALID: tuple[tuple[str, Any, type[Exception]], ...] = (
    ("decay_steps", 0, ValueError),
    ("decay_steps", -1, ValueError),
    ("decay_steps", 0.0, ValueError),
    ("decay_steps", -0.0, ValueError),
    ("decay_steps", -2.5, ValueError),
    ("decay_steps", math.nan, ValueError),
    ("decay_steps", math.inf, ValueError),
    ("decay_steps", -math.inf, ValueError),
    ("decay_steps", "inf", ValueError),
    ("decay_steps", "abc", ValueError),
    ("decay_steps", None, TypeError),
    ("decay_steps", True, TypeError),
    ("decay_steps", [1000], TypeError),
    ("staircase", "False", TypeError),
    ("staircase", 0, TypeError),
    ("staircase", 1, TypeError),
    ("staircase", None, TypeError),
    ("staircase", 1.0, TypeError),
    ("initial_learning_rate", None, TypeError),
    ("initial_learning_rate", "abc", ValueError),
    ("initial_learning_rate", [0.1], TypeError),
    ("initial_learning_rate", True, TypeError),
    ("decay_rate", None, TypeError),
    ("decay_rate", "fast", ValueError),
    ("decay_rate", False, TypeError),
    ("name", 5, TypeError),
    ("dtype", "float8", ValueError),
    ("dtype", "int32", ValueError),
    ("dtype", np.int32, ValueError),
    ("dtype", 3, TypeError),
)


def invalid_schedules(dtypes: Any = None) -> st.SearchStrategy[InvalidSchedule]:
    """A valid schedule of :func:`schedules` with one argument replaced by a bad
    value: ``decay_steps <= 0``, NaN or infinite; a non-bool ``staircase``;
    non-numbers; a bad ``name`` or ``dtype``.  Each carries the exception type
    expdecay raises for it and the argument its message names.

    >>> from hypothesis import find, settings
    >>> bad = find(invalid_schedules(), lambda b: True,
    ...            settings=settings(database=None))
    >>> bad.argument, bad.exception.__name__, bad.kwargs["decay_steps"]
    ('decay_steps', 'ValueError', 0)
    """

    def spoil(s: Schedule, bad: tuple[str, Any, type[Exception]]) -> InvalidSchedule:
        name, value, exc = bad
        kwargs = {**s.kwargs(), "dtype": s.dtype}
        kwargs[name] = value
        return InvalidSchedule(kwargs, exc, name)

    return st.builds(spoil, schedules(dtypes), st.sampled_from(_INVALID))


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------

_PREC = 120  # bits for the mpmath logarithms that place steps


def _mpf(x: Fraction | int | float) -> Any:
    q = Fraction(x)
    return mpmath.mpf(q.numerator) / q.denominator


@dataclass(frozen=True)
class _Geometry:
    """What the step regions need to know about a schedule."""

    I: Fraction
    D: Fraction
    r: Fraction
    fmt: Format
    staircase: bool
    lo: int
    hi: int
    allow_float: bool

    def in_range(self, s: float | int) -> bool:
        return math.isfinite(s) and self.lo <= s <= self.hi

    def crossing(self, target: Fraction) -> float:
        """The real step where ``I * r**(s/D) == target`` (120-bit logarithms:
        ``ln r`` may be as small as ``2**-53``)."""
        with mpmath.workprec(_PREC):
            logs = mpmath.log(_mpf(target)) - mpmath.log(_mpf(self.I))
            return float(_mpf(self.D) * logs / mpmath.log(_mpf(self.r)))


def _geometry(s: Schedule, allow_negative: bool, allow_float: bool, max_step: int
              ) -> _Geometry | None:
    """The geometry of a regular schedule (I > 0, 0 < r != 1, all finite), else None."""
    I, r = s.initial_learning_rate, s.decay_rate
    if not (math.isfinite(I) and math.isfinite(r) and I > 0 and r > 0 and r != 1):
        return None
    return _Geometry(Fraction(I), Fraction(s.decay_steps), Fraction(r), s.format,
                     s.staircase, -max_step if allow_negative else 0, max_step, allow_float)


def _thresholds(fmt: Format) -> list[Fraction]:
    """Smallest normal, half the smallest subnormal, the overflow midpoint."""
    overflow = Fraction(2) ** (fmt.emax + 1) - Fraction(2) ** (fmt.emax - fmt.precision)
    return [Fraction(fmt.min_normal), Fraction(fmt.min_subnormal) / 2, overflow]


def _around(g: _Geometry, s: float) -> list[int | float]:
    """Integer steps next to the real step ``s`` and, for a staircase, the
    boundaries of the stairs on both sides; the float ``s`` itself."""
    out: list[int | float] = []
    if not math.isfinite(s) or abs(s) > 2 * g.hi + 2:
        return out
    base = math.floor(s)
    out += [base + d for d in (-1, 0, 1, 2)]
    if g.staircase:
        k = math.floor(Fraction(base) / g.D)
        for kk in (k, k + 1):
            edge = kk * g.D
            out += [math.floor(edge) + d for d in (-1, 0, 1)]
    if g.allow_float:
        out += [s, math.nextafter(s, math.inf), math.nextafter(s, -math.inf)]
    return _unique(x for x in out if g.in_range(x))


def _threshold_steps(g: _Geometry) -> list[int | float]:
    out: list[int | float] = []
    for t in _thresholds(g.fmt):
        out += _around(g, g.crossing(t))
    return _unique(out)


def _normal_range(g: _Geometry) -> tuple[float, float] | None:
    """The steps (within the allowed range) where the value is a normal finite number."""
    a = g.crossing(Fraction(g.fmt.min_normal))
    b = g.crossing(Fraction(g.fmt.max_finite))
    lo, hi = max(min(a, b), _float_within(g.lo)), min(max(a, b), _float_within(g.hi))
    return (lo, hi) if lo <= hi else None


def _ulp_position(y: Any, fmt: Format) -> Any:
    """``y`` (positive mpf, normal in ``fmt``) in units of its ulp in ``fmt``."""
    _, e = mpmath.frexp(y)  # y = m 2**e, 1/2 <= m < 1
    return mpmath.ldexp(y, fmt.precision - e)


def _midpoint_step(g: _Geometry, s0: float) -> int | float | None:
    """A step near ``s0`` whose exact value is next to a rounding midpoint."""
    with mpmath.workprec(_PREC):
        I, D, r = _mpf(g.I), _mpf(g.D), _mpf(g.r)
        if g.staircase:
            # The value only changes at multiples of D: take the exponent k
            # nearest a midpoint among 32 consecutive ones.
            k0 = int(math.floor(s0 / float(g.D)))

            def miss(k: int) -> Any:
                pos = _ulp_position(I * r**k, g.fmt)
                return abs(pos - mpmath.floor(pos) - mpmath.mpf(0.5))

            k_best = min(range(k0, k0 + 32), key=miss)
            step: int | float = math.ceil(k_best * g.D)
            return step if g.in_range(step) else None
        y0 = I * r ** (mpmath.mpf(s0) / D)
        pos = _ulp_position(y0, g.fmt)
        _, e = mpmath.frexp(y0)
        mid = mpmath.ldexp(mpmath.floor(pos) + mpmath.mpf(0.5), e - g.fmt.precision)
        s = float(D * (mpmath.log(mid) - mpmath.log(I)) / mpmath.log(r))
    if not g.allow_float:
        s = round(s)
    return s if g.in_range(s) else None


def _boundary_steps(g_D: Fraction, lo: int, hi: int) -> st.SearchStrategy[int]:
    """``floor(k*D) + d`` for ``d`` in -1, 0, 1, with ``k*D`` small, anywhere, or
    just above 2**24."""
    kmax = math.floor(hi / g_D) - 1
    if kmax < 1:
        return st.nothing()
    ks = [st.integers(1, min(kmax, 100)), st.integers(1, kmax)]
    k24 = math.ceil(Fraction(2**24) / g_D)
    if k24 <= kmax:
        ks.append(st.integers(k24, min(kmax, k24 + max(1, math.ceil(2**20 / g_D)))))
    return st.builds(lambda k, d: math.floor(k * g_D) + d, st.one_of(ks),
                     st.sampled_from([0, -1, 1])).filter(lambda s: lo <= s <= hi)


def steps(
    schedule: Schedule,
    *,
    allow_negative: bool = False,
    allow_float: bool = True,
    max_step: int = _INT64_MAX,
) -> st.SearchStrategy[int | float]:
    """Steps for ``schedule``, biased toward where implementations go wrong.

    Draws Python ints in ``[0, max_step]`` (``[-max_step, max_step]`` with
    ``allow_negative``) and, unless ``allow_float=False``, finite Python floats
    in the same range: staircase boundaries, the 2**24 neighbourhood, values
    next to rounding midpoints, subnormal, underflow and overflow thresholds
    (see the module docstring), and plain random steps.  Draw several with
    ``st.lists(steps(s))``.

    >>> from hypothesis import find, settings
    >>> s = Schedule(0.1, 1000, 0.96, True, "float32")
    >>> find(steps(s), lambda step: step > 2**24 and step % 1000 == 999,
    ...      settings=settings(database=None))  # no example database: the same answer everywhere
    16777999
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule; got {type(schedule).__name__}")
    for name, flag in (("allow_negative", allow_negative), ("allow_float", allow_float)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool; got {flag!r}")
    if isinstance(max_step, bool) or not isinstance(max_step, int) or max_step < 1:
        raise ValueError(f"max_step must be an int >= 1; got {max_step!r}")
    lo = -max_step if allow_negative else 0
    parts: list[st.SearchStrategy[int | float]] = [
        st.integers(max(lo, -1000), min(max_step, 10**6)),
        st.integers(lo, max_step),
    ]
    D = Fraction(schedule.decay_steps)
    parts.append(_boundary_steps(D, lo, max_step))
    if max_step >= 2**26:
        parts.append(st.integers(2**24 - 4, 2**24 + 64))
        parts.append(st.integers(2**24, 2**26))
        if allow_float:
            parts.append(st.floats(2.0**24 - 4, 2.0**25))
    g = _geometry(schedule, allow_negative, allow_float, max_step)
    if g is not None:
        near = _threshold_steps(g)
        if near:
            parts.append(st.sampled_from(near))
        span = _normal_range(g)
        if span is not None:
            a, b = span
            bases: st.SearchStrategy[float] = st.floats(a, b) if a < b else st.just(a)
            mids = bases.map(lambda s0: _midpoint_step(g, s0)).filter(
                lambda s: s is not None)
            parts.append(mids)  # type: ignore[arg-type]
    if allow_float:
        parts.append(st.floats(_float_within(lo), _float_within(max_step)))
    return st.one_of(parts)


def _float_within(n: int) -> float:
    """The float nearest ``n`` on the side of zero (so a float range stays
    inside the int range)."""
    f = float(n)
    return math.nextafter(f, 0.0) if abs(f) > abs(n) else f


# ---------------------------------------------------------------------------
# Expected values
# ---------------------------------------------------------------------------


def _step_groups(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of int64-range ints, of floats, and of everything else."""
    ints, floats, other = [], [], []
    for i, x in enumerate(values):
        if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) \
                and -(2**63) <= int(x) <= _INT64_MAX:
            ints.append(i)
        elif isinstance(x, (float, np.floating)):
            floats.append(i)
        else:
            other.append(i)
    return (np.array(ints, np.intp), np.array(floats, np.intp), np.array(other, np.intp))


def expected(schedule: Schedule, steps: Any, order: Order = "keras") -> np.ndarray:
    """The correctly rounded values of ``schedule`` at ``steps``, bit for bit
    what :func:`expdecay.oracle.evaluate` gives, as an array of the schedule's
    dtype (``.view(np.uint16)`` etc. gives the bits).

    ``steps`` is a number, a sequence of numbers (ints and floats may be mixed;
    each is taken exactly) or an array; the result has its shape.  ``order``
    is ``"keras"`` (every operation rounded in the format, as Keras computes)
    or ``"exact"`` (the real value rounded once).

    >>> expected(Schedule(0.5, 2, 0.25, False, "float16"), [0, 1, 2, 2**10])
    array([0.5  , 0.25 , 0.125, 0.   ], dtype=float16)
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule; got {type(schedule).__name__}")
    order = check_order(order)
    def run(arr: np.ndarray) -> np.ndarray:
        return fast.evaluate_array(schedule.initial_learning_rate, schedule.decay_steps,
                             schedule.decay_rate, arr, staircase=schedule.staircase,
                             dtype=schedule.dtype, order=order)

    if isinstance(steps, np.ndarray):
        return np.asarray(run(steps))
    if not isinstance(steps, (list, tuple)):
        values = [steps]
        shape: tuple[int, ...] = ()
    else:
        values = list(steps)
        shape = (len(values),)
    out = np.empty(len(values), schedule.format.dtype)
    ints, floats, other = _step_groups(values)
    for idx, dtype in ((ints, np.int64), (floats, np.float64), (other, object)):
        if idx.size:
            arr = np.empty(idx.size, dtype)
            arr[:] = [values[i] for i in idx]
            out[idx] = run(arr)
    return out.reshape(shape)
