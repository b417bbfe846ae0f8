"""Bit-for-bit agreement of expdecay.oracle.evaluate with the independent Arb oracle.

tests/support/arb_oracle.py is written without importing expdecay: own format table,
own integer rounding, own pow special-value table, and an arb-ball Ziv loop.

Random cases: ``--arb-cases N`` (default 2000) in total, split over the 16
(format, order, staircase) combinations; each combination is its own test and
asserts that it compared exactly its share of cases.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from support import arb_oracle
from support.arb_oracle import FORMATS, arb_evaluate, round_fraction
from support.bits import pow2, same

FMT_NAMES = ["float16", "bfloat16", "float32", "float64"]
ORDERS = ["exact", "keras"]
COMBOS = [(f, o, st) for f in FMT_NAMES for o in ORDERS for st in (False, True)]
SCALAR_TYPES = {
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
    "float32": np.float32,
    "float64": np.float64,
}




def show(x) -> str:
    if isinstance(x, Fraction):
        if x.denominator == 1:
            return str(x.numerator)
        return f"Fraction({x.numerator}, {x.denominator})"
    return repr(x)


def run_expdecay(I, D, r, s, staircase, fmt, order) -> float:
    from expdecay.oracle import evaluate

    res = evaluate(I, D, r, s, staircase=staircase, dtype=fmt, order=order)
    assert type(res) is SCALAR_TYPES[fmt], (type(res), fmt)
    return float(res)


def n_cases_for(request, index: int) -> int:
    try:
        total = request.config.getoption("--arb-cases")
    except ValueError:  # option not registered (conftest missing)
        total = 2000
    return total // len(COMBOS) + (1 if index < total % len(COMBOS) else 0)


# ---------------------------------------------------------------------------
# random case generator (exact Fractions)
# ---------------------------------------------------------------------------


def _rand_format_value(rng: random.Random, name: str) -> Fraction:
    """A random positive value exactly representable in the format (normal or subnormal)."""
    f = FORMATS[name]
    q = rng.randint(f.emin - f.prec + 1, f.emax - f.prec + 1)
    if q == f.emin - f.prec + 1 and rng.random() < 0.5:
        m = rng.randint(1, (1 << f.prec) - 1)
    else:
        m = rng.randint(1 << (f.prec - 1), (1 << f.prec) - 1)
    return m * pow2(q)


def draw_initial(rng: random.Random, name: str) -> Fraction:
    f = FORMATS[name]
    k = rng.randrange(7)
    if k == 0:
        v = Fraction(rng.uniform(1e-4, 1.0))
    elif k == 1:
        v = Fraction(f"{rng.randint(1, 9999)}e-{rng.randint(0, 8)}")
    elif k == 2:
        v = _rand_format_value(rng, name)
    elif k == 3:
        # any magnitude around and beyond the format's range (subnormal results,
        # overflow, underflow)
        v = Fraction(rng.getrandbits(53) | (1 << 52)) * pow2(
            rng.randint(f.emin - f.prec - 12, f.emax + 12) - 52
        )
    elif k == 4:
        v = Fraction(rng.randint(1, 1000))
    elif k == 5:
        v = Fraction(rng.choice(["0.1", "0.01", "0.001", "1e-3", "3e-4", "0.05", "1", "2.5"]))
    else:
        # near the smallest subnormal / the largest finite value
        if rng.random() < 0.5:
            v = f.min_subnormal * Fraction(rng.randint(1, 64), rng.randint(1, 8))
        else:
            v = f.max_finite * Fraction(rng.randint(1, 64), rng.randint(32, 64))
    if rng.random() < 0.15:
        v = -v
    return v


def draw_decay_steps(rng: random.Random, name: str) -> Fraction:
    k = rng.randrange(9)
    if k == 0:
        return Fraction(rng.randint(1, 10))
    if k == 1:
        return Fraction(rng.randint(1, 100000))
    if k == 2:
        return Fraction(rng.randint(1 << 20, 1 << 40))
    if k == 3:
        return Fraction(rng.uniform(0.1, 1000.0))
    if k == 4:
        return Fraction(f"{rng.randint(1, 999)}.{rng.randint(1, 99)}")
    if k == 5:
        return pow2(rng.randint(-30, 40))
    if k == 6:
        return Fraction(rng.uniform(1e-12, 1e-5))  # rounds to 0 / subnormal in small formats
    if k == 7:
        # around float16's overflow threshold 65520 (Df -> inf in the keras order)
        return Fraction(rng.choice([65504, 65519, 65520, 65536, 100000, 2**20, 3 * 2**30]))
    return Fraction(rng.randint(1, 50)) * 1000


def draw_r(rng: random.Random, name: str) -> Fraction:
    k = rng.randrange(10)
    if k == 0:
        return Fraction(rng.uniform(0.01, 1.0))
    if k == 1:
        return Fraction(rng.choice(["0.96", "0.5", "0.9", "0.99", "0.999", "0.1", "0.95"]))
    if k == 2:
        return Fraction(f"0.{rng.randint(1, 9999):04d}")
    if k == 3:
        return Fraction(rng.uniform(1.0, 10.0))
    if k == 4:
        return 1 + rng.choice([1, -1]) * pow2(-rng.randint(1, 70))  # near 1
    if k == 5:
        return Fraction(rng.uniform(1.0, 2.0)) * pow2(-rng.randint(10, 1100))  # tiny
    if k == 6:
        return Fraction(rng.uniform(1.0, 2.0)) * pow2(rng.randint(10, 1100))  # huge
    if k == 7:
        # perfect powers: exact roots for p = j/n
        a, b = rng.randint(1, 12), rng.randint(1, 12)
        return Fraction(a, b) ** rng.randint(2, 4)
    if k == 8:
        return _rand_format_value(rng, name)
    return Fraction(rng.choice([1, 2, 4, Fraction(1, 4), Fraction(9, 4), Fraction(1, 9), 10]))


def draw_s(rng: random.Random, D: Fraction, name: str) -> Fraction:
    k = rng.randrange(12)
    if k == 0:
        s = Fraction(0)
    elif k == 1:
        s = D * rng.randint(1, 1000)
    elif k == 2:
        s = D * rng.randint(0, 1000) + rng.choice([1, -1])
    elif k == 3:
        s = Fraction(rng.randint(1, 10**6))
    elif k == 4:
        s = Fraction(2**24 + rng.randint(-4, 4))
    elif k == 5:
        s = Fraction(rng.randint(2**24, 2**62))
    elif k == 6:
        s = Fraction(2 ** rng.randint(25, 62) + rng.randint(-3, 3))
    elif k == 7:
        s = Fraction(rng.uniform(0, 1e5))
    elif k == 8:
        s = D * Fraction(2 * rng.randint(0, 40) + 1, rng.choice([2, 3, 4]))  # fractional p
    elif k == 9:
        s = Fraction(2**53 + rng.randint(-4, 4))
    elif k == 10:
        s = Fraction(rng.randint(1, 200))
    else:
        s = Fraction(f"{rng.randint(0, 99999)}.{rng.randint(0, 9)}")
    if rng.random() < 0.2:
        s = -s
    return s


def _log2(q: Fraction) -> float:
    q = abs(q)
    if abs(q - 1) < Fraction(1, 2):
        return math.log1p(float(q - 1)) / math.log(2)
    return math.log2(q.numerator) - math.log2(q.denominator)


def draw_case(rng: random.Random, name: str):
    I = draw_initial(rng, name)
    D = draw_decay_steps(rng, name)
    r = draw_r(rng, name)
    if r != 1 and rng.random() < 0.5:
        # targeted: choose s so that |I * r**(s/D)| is about 2**t, with t in the
        # format's range (subnormals and the overflow threshold included)
        f = FORMATS[name]
        if rng.random() < 0.5:
            t = rng.uniform(f.emin - f.prec - 2, f.emax + 2)
        else:
            t = rng.uniform(-20.0, 2.0)
        p = (t - _log2(I)) / _log2(r)
        s = D * Fraction(p)
        k = rng.randrange(3)
        if k == 0 and abs(s) >= 1:
            s = Fraction(round(s))
        elif k == 1:
            s = Fraction(float(s))
        return I, D, r, s
    s = draw_s(rng, D, name)
    return I, D, r, s


def compare_case(I, D, r, s, staircase, fmt, order):
    """Return None on agreement, else a description of the disagreement."""
    exp = arb_evaluate(I, D, r, s, staircase, fmt, order)
    call = (
        f"evaluate({show(I)}, {show(D)}, {show(r)}, {show(s)}, staircase={staircase}, "
        f"dtype={fmt!r}, order={order!r})"
    )
    try:
        got = run_expdecay(I, D, r, s, staircase, fmt, order)
    except Exception as e:  # reported as a disagreement, with the inputs
        return f"{call} raised {type(e).__name__}: {e!r}; arb oracle: {exp!r} ({exp.hex()})"
    if same(got, exp):
        return None
    return f"{call} = {got!r} ({got.hex()}), arb oracle: {exp!r} ({exp.hex()})"


@pytest.mark.parametrize(
    "index,fmt,order,staircase",
    [(i, *c) for i, c in enumerate(COMBOS)],
    ids=[f"{f}-{o}-{'stair' if st else 'smooth'}" for f, o, st in COMBOS],
)
def test_random_cases_vs_arb(request, index, fmt, order, staircase):
    n = n_cases_for(request, index)
    rng = random.Random(f"expdecay-arb-{fmt}-{order}-{staircase}")
    compared = 0
    failures = []
    for _ in range(n):
        I, D, r, s = draw_case(rng, fmt)
        msg = compare_case(I, D, r, s, staircase, fmt, order)
        compared += 1
        if msg is not None:
            failures.append(msg)
    assert compared == n
    assert not failures, f"{len(failures)} of {n} disagree:\n" + "\n".join(failures[:20])


# ---------------------------------------------------------------------------
# hand-derived exact cases
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_sqrt_exact_case(fmt, order):
    """0.75 * 0.25 ** (1/2) = 0.375 exactly: a Ziv loop alone would never settle."""
    args = (Fraction(3, 4), 2, Fraction(1, 4), 1)
    assert arb_evaluate(*args, False, fmt, order) == 0.375
    assert run_expdecay(*args, False, fmt, order) == 0.375
    # staircase: floor(1/2) = 0 -> 0.75
    assert arb_evaluate(*args, True, fmt, order) == 0.75
    assert run_expdecay(*args, True, fmt, order) == 0.75
    # float inputs, string-free
    assert run_expdecay(0.75, 2, 0.25, 1, False, fmt, order) == 0.375


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_other_exact_roots(fmt, order):
    # 8/27 ** (2/3) = 4/9 ; 0.9 * 4/9 = 0.4 (rounded once)
    exp = round_fraction(Fraction(9, 10) * Fraction(4, 9), fmt)
    if order == "keras":
        # keras: rf = rnd(8/27), not a perfect cube in general; use the oracle
        exp = arb_evaluate(Fraction(9, 10), 3, Fraction(8, 27), 2, False, fmt, order)
    else:
        assert arb_evaluate(Fraction(9, 10), 3, Fraction(8, 27), 2, False, fmt, order) == exp
    assert run_expdecay(Fraction(9, 10), 3, Fraction(8, 27), 2, False, fmt, order) == exp
    # 16 ** (-3/4) = 1/8 exactly in both orders
    for I in (Fraction(1), Fraction(5, 7), Fraction(-3)):
        e = (
            round_fraction(I / 8, fmt)
            if order == "exact"
            else round_fraction(Fraction(round_fraction(I, fmt)) / 8, fmt)
        )
        assert arb_evaluate(I, 4, 16, -3, False, fmt, order) == e
        assert run_expdecay(I, 4, 16, -3, False, fmt, order) == e


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_final_multiply_ties_to_even(fmt, order):
    """If * w lies exactly halfway between two format values: the even one wins.

    w = (9/4) ** (1/2) = 1.5 exactly.  With u = 2**-(p-1) (ulp of [1, 2)):
      I = 1 + u:  I*w = 1.5 + 1.5u.  In units of u: 3*2**(p-2) + 1.5, the integer part
                  3*2**(p-2)+1 is odd, so the tie goes UP to 1.5 + 2u.
      I = 1 + 3u: I*w = 1.5 + 4.5u -> integer part 3*2**(p-2)+4 even: goes DOWN to 1.5 + 4u.
    Both I are format values, 9/4, 2 and 1 are too, so the keras order sees the same tie.
    """
    p = FORMATS[fmt].prec
    u = pow2(-(p - 1))
    cases = [
        (1 + u, Fraction(3, 2) + 2 * u),
        (1 + 3 * u, Fraction(3, 2) + 4 * u),
    ]
    for I, expected in cases:
        prod = I * Fraction(3, 2)
        # it is a genuine tie: exactly halfway between expected and its neighbour
        assert abs(prod - expected) == u / 2
        for sgn in (1, -1):
            args = (sgn * I, 2, Fraction(9, 4), 1)
            e = float(sgn * expected)
            assert arb_evaluate(*args, False, fmt, order) == e
            assert run_expdecay(*args, False, fmt, order) == e
            assert round_fraction(sgn * prod, fmt) == e
    if fmt == "float16":
        assert run_expdecay(Fraction(1025, 1024), 2, 2.25, 1, False, fmt, order) == 1.501953125
        assert run_expdecay(Fraction(1027, 1024), 2, 2.25, 1, False, fmt, order) == 1.50390625


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_subnormal_ties_to_even(fmt, order):
    """I = 3 or 5 smallest subnormals, w = 0.25 ** (1/2) = 1/2: results 1.5 and 2.5
    quanta, ties to 2 quanta (even) in both cases."""
    ms = FORMATS[fmt].min_subnormal
    for m in (3, 5):
        for sgn in (1, -1):
            args = (sgn * m * ms, 2, Fraction(1, 4), 1)
            e = float(sgn * 2 * ms)
            assert arb_evaluate(*args, False, fmt, order) == e
            assert run_expdecay(*args, False, fmt, order) == e
    # 1 quantum * 1/2 = half the smallest subnormal: ties to (signed) zero
    for sgn in (1, -1):
        args = (sgn * ms, 2, Fraction(1, 4), 1)
        e = math.copysign(0.0, sgn)
        assert same(arb_evaluate(*args, False, fmt, order), e)
        assert same(run_expdecay(*args, False, fmt, order), e)


@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_overflow_tie_exact_order(fmt):
    """I * w = max + half ulp exactly (I = 2*(max + half ulp), w = 1/2): ties to inf;
    a hair less gives max."""
    f = FORMATS[fmt]
    half_ulp = pow2(f.emax - f.prec)
    t = f.max_finite + half_ulp
    for sgn in (1, -1):
        args = (sgn * 2 * t, 2, Fraction(1, 4), 1)
        assert arb_evaluate(*args, False, fmt, "exact") == sgn * math.inf
        assert run_expdecay(*args, False, fmt, "exact") == sgn * math.inf
        args = (sgn * (2 * t - pow2(-100)), 2, Fraction(1, 4), 1)
        assert arb_evaluate(*args, False, fmt, "exact") == float(sgn * f.max_finite)
        assert run_expdecay(*args, False, fmt, "exact") == float(sgn * f.max_finite)


def _keras_staircase_fraction(I, D, r, s, fmt):
    """Keras order with staircase, computed with Fractions + arb_oracle rounding only,
    for finite non-zero I, D, r, s whose rounded values stay finite and non-zero."""
    If, Df, rf, sf = (Fraction(round_fraction(x, fmt)) for x in (I, D, r, s))
    p = Fraction(round_fraction(sf / Df, fmt))
    k = math.floor(p)
    if k == 0:
        w = 1.0
    else:
        w = round_fraction(rf**k, fmt)
    if math.isinf(w):
        return math.copysign(math.inf, If)
    if w == 0:
        return math.copysign(0.0, If)
    return round_fraction(If * Fraction(w), fmt)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_staircase_integer_exponents_vs_fraction(fmt, order):
    """staircase: w = r ** k with k integer; exact Fraction arithmetic + own rounding."""
    rng = random.Random(f"stair-{fmt}-{order}")
    f = FORMATS[fmt]
    n = 0
    for _ in range(150):
        I = Fraction(rng.uniform(0.001, 10.0)) * rng.choice([1, -1])
        if rng.random() < 0.3:
            I = Fraction(f"{rng.randint(1, 999)}e-{rng.randint(0, 4)}")
        r = Fraction(rng.uniform(0.3, 3.0))
        if rng.random() < 0.3:
            r = Fraction(f"0.{rng.randint(1, 99):02d}")
        D = Fraction(rng.choice([1, 2, 3, 7, 10, 100, 1000]))
        k = rng.randint(-60, 60)
        s = D * k + rng.choice([0, 0, 1, D / 2, D - 1 if D > 1 else 0])
        if order == "exact":
            kk = math.floor(s / D)
            exp = round_fraction(I * r**kk, fmt)
        else:
            exp = _keras_staircase_fraction(I, D, r, s, fmt)
        assert same(arb_evaluate(I, D, r, s, True, fmt, order), exp), (I, D, r, s)
        got = run_expdecay(I, D, r, s, True, fmt, order)
        assert same(got, exp), (show(I), show(D), show(r), show(s), got, exp)
        n += 1
    assert n == 150
    del f


# ---------------------------------------------------------------------------
# special values (beyond the regular domain), both oracles implement the C99 table
# ---------------------------------------------------------------------------

SPECIAL_I = [0.0, -0.0, 1.5, -2.0, math.inf, -math.inf, math.nan]
SPECIAL_R = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -0.5, -2.0, math.inf, -math.inf, math.nan, 1e-30, 1e30]
SPECIAL_S = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    2.0,
    3.0,
    -3.0,
    0.5,
    -0.5,
    math.inf,
    -math.inf,
    math.nan,
    2.0**30,
    -(2.0**30) - 1,
    1e6,
]
SPECIAL_D = [1.0, 2.0, 1e-9, 1e6]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_special_values_vs_arb(fmt, order):
    failures = []
    n = 0
    for I in SPECIAL_I:
        for r in SPECIAL_R:
            for s in SPECIAL_S:
                for D in SPECIAL_D:
                    for staircase in (False, True):
                        msg = compare_case(I, D, r, s, staircase, fmt, order)
                        n += 1
                        if msg is not None:
                            failures.append(msg)
    assert n == len(SPECIAL_I) * len(SPECIAL_R) * len(SPECIAL_S) * len(SPECIAL_D) * 2
    assert not failures, f"{len(failures)} of {n} disagree:\n" + "\n".join(failures[:30])


def test_spec_examples_special_table():
    """A few entries of the semantics' pow table, checked on the Arb oracle itself."""
    ev = arb_evaluate
    inf, nan = math.inf, math.nan
    # pow(x, +-0) = 1 even for NaN x
    assert ev(2, 1, nan, 0.0, False, "float32", "exact") == 2
    # pow(+1, NaN) = 1
    assert ev(2, 1, 1, nan, False, "float32", "exact") == 2
    # pow(+0, -1) = +inf (odd) ; pow(-0, -1) = -inf ; pow(-0, -2) = +inf
    assert ev(1, 1, 0.0, -1, False, "float32", "exact") == inf
    assert ev(1, 1, -0.0, -1, False, "float32", "exact") == -inf
    assert ev(1, 1, -0.0, -2, False, "float32", "exact") == inf
    # pow(-0, 3) = -0 ; times 1 -> -0
    assert same(ev(1, 1, -0.0, 3, False, "float32", "exact"), -0.0)
    # pow(-1, +-inf) = 1
    assert ev(3, 1, -1, inf, False, "float32", "exact") == 3
    # pow(-2, 0.5) = NaN
    assert math.isnan(ev(1, 2, -2, 1, False, "float32", "exact"))
    # pow(-2, 3) = -8
    assert ev(1, 1, -2, 3, False, "float32", "exact") == -8
    # 0 * inf = NaN: pow(0.5, -inf) = inf
    assert math.isnan(ev(0.0, 1, 0.5, -inf, False, "float32", "exact"))
    # keras: float16 D = 65520 rounds to inf -> p = +0 -> w = 1
    assert ev(0.5, 65520, 0.5, 1000, False, "float16", "keras") == 0.5
    # keras: odd integer test on a float: 2**11+1 is not a float16, rounds to 2048 (even)
    assert ev(1, 1, -0.0, -(2**11 + 1), False, "float16", "keras") == inf
    assert ev(1, 1, -0.0, -(2**11 + 1), False, "float32", "keras") == -inf


def test_arb_oracle_self_consistency():
    """The Arb oracle against plain float64 math on easy cases (within 1 ulp), and the
    exact-path statistics are exercised."""
    rng = random.Random("self")
    for _ in range(300):
        I = rng.uniform(0.01, 1.0)
        r = rng.uniform(0.5, 0.999)
        D = rng.randint(1, 1000)
        s = rng.randint(0, 10000)
        y = arb_evaluate(I, D, r, s, False, "float64", "exact")
        approx = I * math.exp(math.log(r) * (s / D))
        assert abs(y - approx) <= 1e-12 * abs(approx)
    assert arb_oracle.STATS["ziv"] > 0


def _near_midpoint_cases(fmt: str, count: int):
    """Cases whose exact-order value I * r**(s/D) lies within 2**-k (relative) of a
    rounding midpoint, k between 80 and 900: both Ziv loops must go deep."""
    import flint
    from flint import arb, fmpq

    f = FORMATS[fmt]
    rng = random.Random(f"near-mid-{fmt}")
    out = []
    for _ in range(count):
        r = Fraction(rng.uniform(0.05, 0.999))
        D = Fraction(rng.randint(1, 1000))
        s = Fraction(rng.randint(1, 5000))
        k = rng.randint(80, 900)
        # a midpoint M between two format values, normal or subnormal, inside the range
        e = rng.randint(f.emin - f.prec + 1, f.emax - f.prec)
        if e == f.emin - f.prec + 1:
            m = rng.randint(0, (1 << f.prec) - 2)
        else:
            m = rng.randint(1 << (f.prec - 1), (1 << f.prec) - 2)
        M = (2 * m + 1) * pow2(e - 1)
        p = s / D
        with flint.ctx.workprec(k + 64):
            log_r = arb(fmpq(r.numerator, r.denominator)).log()
            W = (arb(fmpq(p.numerator, p.denominator)) * log_r).exp()
            Q = arb(fmpq(M.numerator, M.denominator)) / W
            mm, ee = Q.mid().man_exp()
        I = Fraction(int(mm)) * pow2(int(ee))
        if rng.random() < 0.3:
            I = -I
        out.append((I, D, r, s))
    return out


@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_near_midpoints_exact_order(fmt):
    before = arb_oracle.STATS["ziv_max_prec"]
    arb_oracle.STATS["ziv_max_prec"] = 0
    failures = []
    cases = _near_midpoint_cases(fmt, 60)
    for I, D, r, s in cases:
        msg = compare_case(I, D, r, s, False, fmt, "exact")
        if msg is not None:
            failures.append(msg)
    assert len(cases) == 60
    assert not failures, "\n".join(failures[:10])
    # the cases were genuinely hard for the Arb oracle's Ziv loop
    deepest = arb_oracle.STATS["ziv_max_prec"]
    arb_oracle.STATS["ziv_max_prec"] = max(before, deepest)
    assert deepest >= 512


def _hard_pow_cases(fmt: str, pool: int, keep: int):
    """Format values rf > 0 and p for which rf ** p is closest to a rounding midpoint
    (searched among `pool` random candidates): hard cases for the keras pow rounding."""
    import flint
    from flint import arb, fmpq

    f = FORMATS[fmt]
    rng = random.Random(f"hard-pow-{fmt}")
    scored = []
    for _ in range(pool):
        rf = Fraction(round_fraction(Fraction(rng.uniform(0.05, 4.0)), fmt))
        p = Fraction(round_fraction(Fraction(rng.uniform(-40.0, 40.0)), fmt))
        if rf == 1 or p == 0 or p.denominator == 1:
            continue
        with flint.ctx.workprec(256):
            log_r = arb(fmpq(rf.numerator, rf.denominator)).log()
            W = (arb(fmpq(p.numerator, p.denominator)) * log_r).exp()
            mm, ee = W.mid().man_exp()
        w = Fraction(int(mm)) * pow2(int(ee))
        e = math.floor(_log2(w))
        q = max(e, f.emin) - (f.prec - 1)
        t = w / pow2(q)
        d = abs(t - math.floor(t) - Fraction(1, 2))
        scored.append((d, rf, p))
    scored.sort()
    return [(rf, p) for _, rf, p in scored[:keep]]


@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_hard_pow_roundings_keras(fmt):
    cases = _hard_pow_cases(fmt, 4000, 40)
    failures = []
    for rf, p in cases:
        for I in (Fraction(1), Fraction(-1)):
            msg = compare_case(I, 1, rf, p, False, fmt, "keras")
            if msg is not None:
                failures.append(msg)
            msg = compare_case(I, 1, rf, p, False, fmt, "exact")
            if msg is not None:
                failures.append(msg)
    assert len(cases) == 40
    assert not failures, "\n".join(failures[:10])
