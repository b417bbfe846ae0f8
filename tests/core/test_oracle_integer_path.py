"""The oracle's integer path (plain floats and ints, dyadic Fractions) against
the independent Arb oracle, in the regions where that path decides by itself:
rates within 1000 ulps of 1, exact powers (rates that are powers of two,
perfect powers with fractional exponents, integer exponents), midpoints
reached exactly, negative exponents whose result is exact, and the special
values that the keras order's casts produce in narrow formats.

Expected values come from ``tests/support/arb_oracle.py`` (python-flint balls, no
expdecay import) or from exact rationals rounded by that module.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from expdecay import oracle
from support.arb_oracle import FORMATS as ARB_FORMATS
from support.arb_oracle import arb_evaluate, round_fraction
from support.bits import same

FMT_NAMES = ["float16", "bfloat16", "float32", "float64"]
ORDERS = ["exact", "keras"]
COMBOS = [(f, o, st_) for f in FMT_NAMES for o in ORDERS for st_ in (False, True)]
IDS = [f"{f}-{o}-{'stair' if s else 'smooth'}" for f, o, s in COMBOS]


def _check(I: Any, D: Any, r: Any, s: Any, staircase: bool, fmt: str, order: str) -> None:  # noqa: N803
    want = arb_evaluate(Fraction(I), Fraction(D), Fraction(r), Fraction(s), staircase, fmt, order)
    got = float(oracle.evaluate(I, D, r, s, staircase=staircase, dtype=fmt, order=order))
    assert same(got, want), (I, D, r, s, staircase, fmt, order, got, want)


def _typical(rng: random.Random) -> tuple[float, int, float, int]:
    """The benchmark's inputs: I in [1e-4, 1], D in [10, 1e5], r in [0.5, 0.999]."""
    r = rng.uniform(0.5, 0.999)
    D = rng.randint(10, 100000)
    return 10 ** rng.uniform(-4, 0), D, r, rng.randint(0, int(20 / -math.log(r) * D))


@pytest.mark.parametrize("fmt,order,staircase", COMBOS, ids=IDS)
def test_typical_float_inputs(fmt: str, order: str, staircase: bool) -> None:
    rng = random.Random(f"typical-{fmt}-{order}-{staircase}")
    for _ in range(40):
        _check(*_typical(rng), staircase, fmt, order)


def _ulps_from_one(k: int) -> float:
    """The float64 ``k`` ulps above 1 (``k > 0``) or ``-k`` ulps below it."""
    return 1.0 + k * 2.0**-52 if k > 0 else 1.0 + k * 2.0**-53


@pytest.mark.parametrize("fmt,order,staircase", COMBOS, ids=IDS)
def test_rates_within_1000_ulps_of_one(fmt: str, order: str, staircase: bool) -> None:
    rng = random.Random(f"near-one-{fmt}-{order}-{staircase}")
    ks = [1, -1, 2, -2, 999, -1000, 1000] + [rng.choice([-1, 1]) * rng.randint(1, 1000)
                                              for _ in range(20)]
    for k in ks:
        r = _ulps_from_one(k)
        D = rng.choice([1, 3, 10, 1000, 100000])
        s = rng.choice([1, 7, 10**6, 2**40 + 1, -12345, rng.randint(1, 10**12)])
        _check(rng.choice([1.0, 0.1, 3.5e-3]), D, r, s, staircase, fmt, order)


@given(
    k=st.integers(-1000, 1000).filter(bool),
    D=st.integers(1, 10**6),
    s=st.integers(-(10**15), 10**15),
    I=st.floats(1e-6, 10.0),
    combo=st.sampled_from(COMBOS),
)
@example(k=1, D=1, s=2**53, I=1.0, combo=("float64", "exact", False))
@example(k=-1, D=3, s=10**15, I=0.1, combo=("float64", "keras", False))
@settings(max_examples=150, deadline=None)
def test_near_one_property(
    k: int, D: int, s: int, I: float, combo: tuple[str, str, bool]  # noqa: N803
) -> None:
    fmt, order, staircase = combo
    _check(I, D, _ulps_from_one(k), s, staircase, fmt, order)


@pytest.mark.parametrize("fmt,order,staircase", COMBOS, ids=IDS)
def test_powers_of_two_rates(fmt: str, order: str, staircase: bool) -> None:
    # r = 2**i: the value is a power of two times I whenever the exponent
    # times i is an integer, else an irrational power of two.
    for r in (0.5, 0.25, 2.0, 0.125, 1024.0, 2.0**-20):
        for D, s in ((1, 3), (2, 1), (2, 3), (3, 2), (4, 7), (5, -3), (10, 10**6), (7, 10**9)):
            for I in (1.0, 0.1, 3.0):
                _check(I, D, r, s, staircase, fmt, order)


def test_powers_of_two_by_hand() -> None:
    # 0.25 ** (1/2) = 0.5 exactly; 0.5 ** 10 = 2**-10; 2 ** -3 = 1/8.
    for fmt in FMT_NAMES:
        for order in ORDERS:
            assert float(oracle.evaluate(1.0, 2, 0.25, 1, dtype=fmt, order=order)) == 0.5
            assert float(oracle.evaluate(3.0, 1, 0.5, 10, dtype=fmt, order=order)) == 3 * 2.0**-10
            assert float(oracle.evaluate(1.0, 1, 2.0, -3, dtype=fmt, order=order)) == 0.125


@pytest.mark.parametrize("fmt", FMT_NAMES)
@pytest.mark.parametrize("order", ORDERS)
def test_perfect_powers_with_fractional_exponents(fmt: str, order: str) -> None:
    # 9/16 ** (1/2) = 3/4, 9/16 ** (3/2) = 27/64, 0.0625 ** (1/4) = 1/2,
    # 81/256 ** (1/4) = 3/4: rational powers, rounded once (exact order).
    for r, D, s in ((0.5625, 2, 1), (0.5625, 2, 3), (0.0625, 4, 1), (0.31640625, 4, 3),
                    (0.5625, 2, -1), (0.5625, 2, -3)):
        for I in (1.0, 0.1, 0.3, 1 / 3):
            for staircase in (False, True):
                _check(I, D, r, s, staircase, fmt, order)
    want = round_fraction(Fraction(1, 10) * Fraction(27, 64), ARB_FORMATS[fmt])
    if order == "exact":
        got = float(oracle.evaluate(Fraction(1, 10), 2, 0.5625, 3, dtype=fmt, order="exact"))
        assert got == want


def _midpoint_odd_parts(precision: int, factor: int, count: int) -> list[int]:
    """Odd ``U`` such that ``factor * U`` is odd with ``precision + 1`` bits:
    ``factor * U * 2**e`` is then a midpoint between two values of the format."""
    lo = -(-(1 << precision) // factor)
    out: list[int] = []
    u = lo | 1
    while len(out) < count and factor * u < 1 << (precision + 1):
        out.append(u)
        u += 2
    return out


@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_exact_midpoints_tie_to_even(fmt: str) -> None:
    """``I r**m`` exactly a midpoint, with ``r = 3/4``: positive ``m`` gives
    ``9 U 2**e``; ``m = -2`` gives ``16/9 * 9 U 2**e``.  The expected value is
    the exact rational rounded by the Arb module's own rounding."""
    f = ARB_FORMATS[fmt]
    for U in _midpoint_odd_parts(f.prec, 9, 6):
        I = math.ldexp(U, -f.prec - 3)  # noqa: N806
        want = round_fraction(Fraction(I) * Fraction(9, 16), f)
        for staircase in (False, True):
            got = oracle.evaluate(I, 1, 0.75, 2, staircase=staircase, dtype=fmt, order="exact")
            assert float(got) == want, (U, staircase)
            got = oracle.evaluate(I, 3, 0.75, 6, staircase=staircase, dtype=fmt, order="exact")
            assert float(got) == want, (U, staircase)
        I9 = math.ldexp(9 * U, -f.prec - 3)  # noqa: N806
        want = round_fraction(Fraction(I9) * Fraction(16, 9), f)
        if fmt == "float64" or Fraction(I9) == Fraction(round_fraction(Fraction(I9), f)):
            got = oracle.evaluate(I9, 1, 0.75, -2, dtype=fmt, order="exact")
            assert float(got) == want, U
        for order in ORDERS:
            _check(I, 1, 0.75, 2, False, fmt, order)
            _check(I9, 1, 0.75, -2, True, fmt, order)


@pytest.mark.parametrize("fmt", FMT_NAMES)
@pytest.mark.parametrize("staircase", [False, True])
def test_integer_exponents_exact_results(fmt: str, staircase: bool) -> None:
    # r = 0.75 ** m for m up to the size where 3**m exceeds the format:
    # exact below, Ziv above; both against Arb.
    for m in range(1, 40):
        for I in (1.0, 0.1, 5.0):
            for order in ORDERS:
                _check(I, 10, 0.75, 10 * m + 3, staircase, fmt, order)


@pytest.mark.parametrize("staircase", [False, True])
def test_keras_casts_to_special_values(staircase: bool) -> None:
    """float16: D and s beyond 65504 round to inf in the keras order."""
    for I, D, r, s in [
        (0.1, 100000, 0.96, 7),  # D -> inf: s / inf = 0, r**0 = 1, I
        (0.1, 10, 0.96, 10**6),  # s -> inf: r**inf = 0
        (0.1, 10, 1.5, 10**6),  # r > 1: r**inf = inf
        (0.1, 10, 0.96, -(10**6)),  # r**-inf = inf
        (-0.1, 10, 0.96, 10**6),  # -I * 0 = -0
        (-0.1, 10, 1.5, 10**6),  # -I * inf = -inf
        (0.1, 100000, 0.96, 10**6),  # inf / inf = NaN
        (0.1, 100000, 1.0 + 2.0**-30, 10**6),  # r rounds to 1: 1**NaN = 1
        (0.1, 1.0e-9, 0.96, 1),  # D rounds to 0: the general path
        (0.1, 2.0**-20, 0.96, 60000),  # s / D overflows to inf
        (1e-9, 10, 0.96, 1),  # I rounds to 0
        (0.1, 3, 0.5, 1),
    ]:
        for order in ORDERS:
            _check(I, D, r, s, staircase, "float16", order)


class Route:
    """What one :func:`oracle.evaluate` call did: the results of the integer
    path's runs (``parts_exact`` / ``parts_keras``; None when it gave up),
    the pairs it ran on, and how many times the general path ran."""

    def __init__(self) -> None:
        self.parts: list[float | None] = []
        self.pairs: list[tuple[Any, ...]] = []
        self.general = 0

    def clear(self) -> None:
        self.parts.clear()
        self.pairs.clear()
        self.general = 0


def _spy_parts(monkeypatch: pytest.MonkeyPatch, route: Route) -> None:
    for name in ("parts_exact", "parts_keras"):
        real = getattr(oracle, name)

        def spy(*args: Any, _real: Any = real) -> float | None:
            got: float | None = _real(*args)
            route.pairs.append(args[:4])
            route.parts.append(got)
            return got

        monkeypatch.setattr(oracle, name, spy)


@pytest.fixture
def route(monkeypatch: pytest.MonkeyPatch) -> Route:
    """Spies on the integer path and on the general path of the oracle."""
    out = Route()
    _spy_parts(monkeypatch, out)
    real_general = oracle.evaluate_general

    def general(*args: Any) -> float:
        out.general += 1
        return real_general(*args)

    monkeypatch.setattr(oracle, "evaluate_general", general)
    return out


#: Inputs that are not all plain dyadic numbers in the integer path's domain:
#: zeros, infinities, NaN, a negative rate, non-dyadic or non-plain values.
#: ``evaluate`` validates them and hands them to the general path.
_NOT_PLAIN: list[tuple[Any, Any, Any, Any]] = [
    ("0.1", "1000", "0.96", "12345"),  # strings; 0.1 and 0.96 are not dyadic
    (Fraction(1, 10), 1000, 0.96, 500),  # a non-dyadic Fraction
    (0.0, 10, 0.5, 3),
    (-0.0, 10, 0.5, 3),
    (0.1, 10, -0.5, 20),
    (0.1, 10, 0.0, 3),
    (0.1, 10, 0.5, 0),
    (0.1, 10, 0.5, -0.0),
    (math.inf, 10, 0.5, 3),
    (0.1, 10, math.inf, 3),
    (0.1, 10, 0.5, math.inf),
    (0.1, 10, 0.5, math.nan),
]


def _arb(I: Any, D: Any, r: Any, s: Any, staircase: bool, fmt: str, order: str) -> float:  # noqa: N803
    def conv(x: Any) -> Any:
        return x if isinstance(x, (str, float, int, Fraction)) else Fraction(float(x))

    return arb_evaluate(conv(I), conv(D), conv(r), conv(s), staircase, fmt, order)


def test_inputs_the_integer_path_does_not_take(route: Route) -> None:
    """Zeros, infinities, NaN, negative rates and non-dyadic inputs never
    reach the integer path: the general path alone decides, and agrees with
    Arb."""
    for I, D, r, s in _NOT_PLAIN:  # noqa: N806
        for fmt, order, staircase in COMBOS:
            route.clear()
            got = float(oracle.evaluate(I, D, r, s, staircase=staircase, dtype=fmt, order=order))
            assert (route.parts, route.general) == ([], 1), (I, D, r, s, fmt, order, staircase)
            want = _arb(I, D, r, s, staircase, fmt, order)
            assert same(got, want), (I, D, r, s, fmt, order, staircase, got, want)


def test_numpy_scalars_take_the_integer_path_after_conversion(route: Route) -> None:
    """A numpy scalar is not a plain number, so ``evaluate`` first validates
    it; its exact value is dyadic, so the integer path then decides (once)."""
    import numpy as np

    cases: list[tuple[Any, Any, Any, Any]] = [
        (np.float32(0.1), 1000, 0.96, 500), (0.1, np.int64(1000), np.float64(0.96), 500)]
    for I, D, r, s in cases:  # noqa: N806
        # The pairs the integer path must see: the inputs' exact values.
        pairs = tuple(Fraction(float(x)).as_integer_ratio() for x in (I, D, r, s))
        for fmt, order, staircase in COMBOS:
            route.clear()
            got = float(oracle.evaluate(I, D, r, s, staircase=staircase, dtype=fmt, order=order))
            assert route.general == 0 and len(route.parts) == 1, (I, D, fmt, order, staircase)
            assert route.parts[0] is not None and route.pairs[0] == pairs
            want = _arb(I, D, r, s, staircase, fmt, order)
            assert same(got, want), (I, D, r, s, fmt, order, staircase, got, want)


#: All-plain inputs that the integer path gives up on (``|p ln r| > 2**16``):
#: the general path settles overflow and underflow from log2 of the value.
_GIVE_UP: list[tuple[Any, Any, Any, Any]] = [
    (1.0, 1, 0.5 + 2.0**-10, 2**40),  # underflow
    (-1.0, 1, 2.0 - 2.0**-10, 2**40),  # overflow, negative
    (0.1, 3, 0.999, 2**40 + 1),
    (0.1, 1, 1.0 + 2.0**-40, 2**58),  # the keras order's casts round r to 1 in narrow formats
]


def test_huge_amplification_goes_to_the_general_path(route: Route) -> None:
    # |p ln r| ~ 2**40: the integer path runs once and gives up; the general
    # path decides from log2 of the value (underflow, overflow), not by exp.
    for I, D, r, s in _GIVE_UP[:3]:  # noqa: N806
        for fmt in FMT_NAMES:
            route.clear()
            got = float(oracle.evaluate(I, D, r, s, dtype=fmt))
            assert (route.parts, route.general) == ([None], 1), (I, D, r, s, fmt)
            want = _arb(I, D, r, s, False, fmt, "exact")
            assert same(got, want) and (want == 0.0 or math.isinf(want)), (got, want)


def test_integer_path_runs_once_when_it_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the integer path leaves an all-plain case undecided, ``evaluate``
    goes to the general path without running the integer path a second time
    on the validated values (they are the same pairs)."""
    route = Route()
    _spy_parts(monkeypatch, route)
    for I, D, r, s in _GIVE_UP:  # noqa: N806
        for fmt, order, staircase in COMBOS:
            route.clear()
            oracle.evaluate(I, D, r, s, staircase=staircase, dtype=fmt, order=order)
            assert len(route.parts) == 1, (I, D, r, s, fmt, order, staircase, route.parts)
    route.clear()
    with pytest.raises(oracle.PrecisionError):
        oracle.evaluate(0.1, 1000, 0.96, 229, dtype="float64", max_prec=64)
    assert route.parts == [None]


def test_routing_gives_the_same_values(route: Route) -> None:
    """Whichever path decides, the value is Arb's; the general path runs
    exactly when the integer path did not decide, and the integer path at
    most once."""
    import numpy as np

    cases = _GIVE_UP + _NOT_PLAIN + [
        (np.float32(0.1), 1000, 0.96, 500),
        (0.1, 1000, 0.96, 500),
        (0.1, 10, 1.0, 10**30),
        (3.0, 2, 0.25, 7),
    ]
    general_only = plain_decided = gave_up = 0
    for I, D, r, s in cases:  # noqa: N806
        for fmt, order, staircase in COMBOS:
            route.clear()
            got = float(oracle.evaluate(I, D, r, s, staircase=staircase, dtype=fmt, order=order))
            want = _arb(I, D, r, s, staircase, fmt, order)
            assert same(got, want), (I, D, r, s, fmt, order, staircase, got, want)
            assert len(route.parts) <= 1
            undecided = route.parts == [] or route.parts[0] is None
            assert route.general == (1 if undecided else 0), (I, D, r, s, fmt, order, route.parts)
            general_only += route.parts == []
            gave_up += route.parts == [None]
            plain_decided += bool(route.parts) and route.parts[0] is not None
    assert general_only and plain_decided and gave_up  # every route was exercised


def test_precision_cap_in_integer_path(route: Route) -> None:
    # The same undecided case as test_oracle's cap test, on float inputs: the
    # integer path reaches the cap and gives up, the general path raises.
    with pytest.raises(oracle.PrecisionError, match="cap"):
        oracle.evaluate(0.1, 1000, 0.96, 229, dtype="float64", max_prec=64)
    assert (route.parts, route.general) == ([None], 1)
    route.clear()
    # Without the cap the integer path decides it alone.
    want = arb_evaluate(Fraction(0.1), 1000, Fraction(0.96), 229, False, "float64", "exact")
    assert float(oracle.evaluate(0.1, 1000, 0.96, 229, dtype="float64")) == want
    assert route.general == 0 and len(route.parts) == 1 and route.parts[0] == want


def _near_midpoint_near_one(fmt: str, count: int) -> list[tuple[Fraction, int, float, int]]:
    """Exact-order cases with a rate within 1000 ulps of 1 (float64) whose
    value ``I r**(s/D)`` lies within ``2**-k`` (relative, ``k`` in [70, 400])
    of a midpoint of ``fmt``: ``I`` is a dyadic approximation of ``M / W``,
    ``W = r**(s/D)`` taken from Arb at ``k + 64`` bits."""
    import flint
    from flint import arb, fmpq

    f = ARB_FORMATS[fmt]
    rng = random.Random(f"near-one-mid-{fmt}")
    out = []
    for _ in range(count):
        r = _ulps_from_one(rng.choice([-1, 1]) * rng.randint(1, 1000))
        D = rng.randint(1, 1000)
        s = rng.randint(1, 10**9)
        k = rng.randint(70, 400)
        e = rng.randint(-30, 5)
        m = rng.randint(1 << (f.prec - 1), (1 << f.prec) - 2)
        M = Fraction(2 * m + 1) * Fraction(2) ** (e - f.prec)
        rq, pq = Fraction(r), Fraction(s, D)
        with flint.ctx.workprec(k + 64):
            W = (arb(fmpq(pq.numerator, pq.denominator))
                 * arb(fmpq(rq.numerator, rq.denominator)).log()).exp()
            man, exp = (arb(fmpq(M.numerator, M.denominator)) / W).mid().man_exp()
        I = Fraction(int(man)) * Fraction(2) ** int(exp)  # noqa: N806
        out.append((-I if rng.random() < 0.3 else I, D, r, s))
    return out


@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_near_midpoints_with_rates_near_one(fmt: str) -> None:
    before = oracle.STATS.retries
    for I, D, r, s in _near_midpoint_near_one(fmt, 25):  # noqa: N806
        want = arb_evaluate(I, D, Fraction(r), s, False, fmt, "exact")
        got = float(oracle.evaluate(I, D, r, s, dtype=fmt, order="exact"))
        assert same(got, want), (I, D, r, s, got, want)
    assert oracle.STATS.retries > before  # the cases were hard: the Ziv loop went on


@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_keras_steps_that_round_to_zero_or_are_not_integers(fmt: str) -> None:
    # A float step below the format's smallest subnormal rounds to +-0 in the
    # keras order (s / D = 0, the power 1, the result I); other float steps
    # are rounded before the division.
    for s in (1e-300, -1e-300, 2.0**-30, 0.75, 12345.678, 2.0**60 + 2.0**8, 3 * 2.0**70):
        for staircase in (False, True):
            for order in ORDERS:
                _check(0.1, 7, 0.96, s, staircase, fmt, order)
    # D the smallest subnormal, s a quarter of it: s rounds to 0 (keras gives
    # I) while the exact s / D is 1/4.
    qmin = {"float16": -24, "bfloat16": -133, "float32": -149, "float64": -1074}[fmt]
    for staircase in (False, True):
        for order in ORDERS:
            _check(0.1, Fraction(2) ** qmin, 0.5, Fraction(2) ** (qmin - 2), staircase, fmt, order)
