"""The oracle: special values (spec §8), validation (§3), inputs (§3.1), the
dtype rule (§4), exact cases (§10.4) and Hypothesis properties.

Expected values are derived by hand or with exact rationals; none is computed
by the code under test.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from expdecay.floats import FORMATS, get_format, next_up
from expdecay.oracle import PrecisionError, evaluate, to_exact, value
from support.arb_oracle import round_fraction
from support.bits import same

FORMAT_NAMES = list(FORMATS)
ORDERS = ["exact", "keras"]
NAN, INF = math.nan, math.inf


def _same(got: np.generic, want: float) -> bool:
    """Bitwise-meaningful equality: NaN matches NaN, zeros must agree in sign."""
    return same(float(got), want)


def _check(I, D, r, s, want, *, staircase=False, formats=FORMAT_NAMES, orders=ORDERS):
    for name in formats:
        for order in orders:
            got = evaluate(I, D, r, s, staircase=staircase, dtype=name, order=order)
            assert got.dtype == FORMATS[name].dtype
            assert _same(got, want), (name, order, I, D, r, s, staircase, got, want)


# ---------------------------------------------------------------------------
# §8.4 special values, row by row (values exactly representable in every
# format, so both orders and all formats agree)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("r", [0.5, 3.0, NAN, INF, -INF, 0.0, -0.0, -2.0])
def test_sv1_step_zero_gives_initial(r, staircase):
    for s in (0, 0.0, -0.0):
        _check(0.75, 10, r, s, 0.75, staircase=staircase)
        _check(-0.75, 10, r, s, -0.75, staircase=staircase)


@pytest.mark.parametrize("r", [0.5, NAN, INF, -3.0])
def test_sv2_staircase_below_first_boundary(r):
    for s in (1, 9, 9.5):
        _check(0.75, 10, r, s, 0.75, staircase=True)


@pytest.mark.parametrize("s", [0, 5, 10**30, -(10**30), INF, -INF, NAN, 0.25])
@pytest.mark.parametrize("staircase", [False, True])
def test_sv3_rate_one(s, staircase):
    _check(0.75, 7, 1, s, 0.75, staircase=staircase)
    _check(0.75, 7, "1.0", s, 0.75, staircase=staircase)


@pytest.mark.parametrize("staircase", [False, True])
def test_sv4_nan_step(staircase):
    for r in (0.5, 2.0, -1.0, 0.0, INF):
        _check(0.75, 10, r, NAN, NAN, staircase=staircase)


@pytest.mark.parametrize("staircase", [False, True])
def test_sv5_sv6_infinite_steps(staircase):
    kw = {"staircase": staircase}
    _check(0.75, 10, 0.5, INF, 0.0, **kw)
    _check(-0.75, 10, 0.5, INF, -0.0, **kw)
    _check(0.75, 10, 2.0, INF, INF, **kw)
    _check(0.75, 10, -1.0, INF, 0.75, **kw)  # P-5
    _check(0.75, 10, NAN, INF, NAN, **kw)
    _check(INF, 10, 0.5, INF, NAN, **kw)  # inf * 0
    _check(0.0, 10, 2.0, INF, NAN, **kw)  # 0 * inf
    _check(0.75, 10, 0.0, INF, 0.0, **kw)
    _check(0.75, 10, 0.5, -INF, INF, **kw)
    _check(0.75, 10, 2.0, -INF, 0.0, **kw)
    _check(-0.75, 10, 2.0, -INF, -0.0, **kw)
    _check(0.75, 10, -1.0, -INF, 0.75, **kw)
    _check(0.75, 10, 0.0, -INF, INF, **kw)


def test_sv7_negative_steps_grow():
    # 0.5 ** (-20 / 10) = 4; 0.5 ** floor(-25 / 10) = 0.5 ** -3 = 8
    _check(0.75, 10, 0.5, -20, 3.0)
    _check(0.75, 10, 0.5, -25, 6.0, staircase=True)
    # float16 overflows: 0.75 * 2**20 > 65504
    for order in ORDERS:
        assert evaluate(0.75, 1, 0.5, -20, dtype="float16", order=order) == np.inf
        assert evaluate(0.75, 1, 0.5, -20, dtype="float32", order=order) == 0.75 * 2**20


def test_sv8_sv9_zero_rate():
    _check(0.75, 1, 0.0, 1, 0.0)
    _check(0.75, 1, -0.0, 1, -0.0)  # p = 1 is an odd integer
    _check(0.75, 1, -0.0, 2, 0.0)
    _check(0.75, 2, -0.0, 1, 0.0)  # p = 1/2 is not an integer
    _check(-0.75, 1, 0.0, 3, -0.0)
    _check(0.75, 1, 0.0, -1, INF)
    _check(0.75, 1, -0.0, -1, -INF)
    _check(0.75, 1, -0.0, -2, INF)
    _check(0.0, 1, 0.0, -1, NAN)
    _check(INF, 1, 0.0, 1, NAN)


def test_sv10_sv11_negative_rate():
    _check(0.75, 1, -2.0, 3, -6.0)
    _check(0.75, 1, -2.0, 2, 3.0)
    _check(0.75, 10, -2.0, 30, -6.0)  # continuous, s/D an integer
    _check(0.75, 10, -2.0, 35, -6.0, staircase=True)
    _check(0.75, 10, -0.5, -10, -1.5)
    _check(0.75, 10, -1.0, 10**40 + 10, -0.75, orders=["exact"])
    _check(0.75, 10, -2.0, 35, NAN)  # 3.5 is not an integer
    _check(0.75, 10, -0.5, 1, NAN)


def test_sv10_keras_large_exponents_are_even():
    # float16: sf = 4097 rounds to 4096 (tie to even), p = 4096 even: positive.
    got = evaluate(1.0, 1, -1.0, 4097, dtype="float16", order="keras")
    assert float(got) == 1.0
    assert float(evaluate(1.0, 1, -1.0, 4097, dtype="float16", order="exact")) == -1.0


@pytest.mark.parametrize("staircase", [False, True])
def test_sv12_to_sv14_nan_and_infinite_rate(staircase):
    kw = {"staircase": staircase}
    _check(0.75, 1, NAN, 5, NAN, **kw)
    _check(0.75, 1, INF, 5, INF, **kw)
    _check(0.75, 1, INF, -5, 0.0, **kw)
    _check(0.0, 1, INF, 5, NAN, **kw)
    _check(0.75, 1, -INF, 3, -INF, **kw)
    _check(0.75, 1, -INF, 2, INF, **kw)
    _check(0.75, 1, -INF, -3, -0.0, **kw)
    _check(0.75, 1, -INF, -2, 0.0, **kw)
    _check(0.75, 2, -INF, 1, INF, staircase=False)  # p = 1/2: not an odd integer


def test_sv15_to_sv17_special_initial_rate():
    _check(0.0, 10, 0.5, 7, 0.0)
    _check(-0.0, 10, 0.5, 7, -0.0)
    _check(-0.0, 10, -2.0, 10, 0.0)  # w = -2
    _check(INF, 10, 0.5, 7, INF)
    _check(-INF, 10, 0.5, 7, -INF)
    _check(NAN, 10, 0.5, 0, NAN)
    _check(NAN, 10, 1.0, 7, NAN)
    # Exact order: w = 2**-200 is never rounded, so inf * w = inf; in the
    # keras order w underflows to +0 in float32 and inf * 0 = NaN.
    assert float(evaluate(INF, 1, 0.5, 200, dtype="float32", order="exact")) == INF
    assert math.isnan(float(evaluate(INF, 1, 0.5, 200, dtype="float32", order="keras")))
    # And 0 * huge: keras w overflows to inf in float16, 0 * inf = NaN.
    assert float(evaluate(0.0, 1, 2.0, 20, dtype="float16", order="exact")) == 0.0
    assert math.isnan(float(evaluate(0.0, 1, 2.0, 20, dtype="float16", order="keras")))


def test_sv18_sv19_degenerate_decay_steps_casts():
    # float16: D = 70000 casts to +inf, so p = +0 and the keras schedule is constant.
    assert float(evaluate(0.75, 70000, 0.5, 35000, dtype="float16", order="keras")) == 0.75
    # 0.75 * 0.5 ** 0.5 = 0.5303...: float16 neighbours 0.5303 +- 2**-11
    assert float(evaluate(0.75, 70000, 0.5, 35000, dtype="float16", order="exact")) == 1086 / 2048
    # s = 70000 casts to +inf too: inf / inf = NaN.
    assert math.isnan(float(evaluate(0.75, 70000, 0.5, INF, dtype="float16", order="keras")))
    # float16: D = 2**-30 casts to +0: s/0 = inf, 0.5**inf = 0.
    assert float(evaluate(0.75, 2.0**-30, 0.5, 1, dtype="float16", order="keras")) == 0.0
    assert math.isnan(float(evaluate(0.75, 2.0**-30, 0.5, 0, dtype="float16", order="keras")))
    assert float(evaluate(0.75, 2.0**-30, 1.0, 0, dtype="float16", order="keras")) == 0.75


# ---------------------------------------------------------------------------
# §3 validation and inputs, §4 the dtype rule
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 0.0, -0.0, INF, NAN, "-3", "nan", Fraction(-1, 2)])
def test_decay_steps_must_be_finite_positive(bad):
    with pytest.raises(ValueError, match="decay_steps") as e:
        evaluate(0.1, bad, 0.96, 10)
    assert repr(bad) in str(e.value)


@pytest.mark.parametrize("bad", ["False", "True", 0, 1, None, 1.0])
def test_staircase_must_be_bool(bad):
    with pytest.raises(TypeError, match="staircase") as e:
        evaluate(0.1, 10, 0.96, 10, staircase=bad)
    assert repr(bad) in str(e.value)


def test_numpy_bool_staircase_accepted():
    assert evaluate(0.1, 10, 0.5, 15, staircase=np.True_, dtype="float64") == 0.05


@pytest.mark.parametrize("arg", ["initial_learning_rate", "decay_steps", "decay_rate", "step"])
@pytest.mark.parametrize("bad", [True, None, [1.0], 1j])
def test_bad_number_types_name_the_argument(arg, bad):
    kwargs = {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5, "step": 3}
    kwargs[arg] = bad
    with pytest.raises(TypeError, match=arg):
        evaluate(*kwargs.values())


@pytest.mark.parametrize("arg", ["initial_learning_rate", "decay_rate", "step"])
def test_unparseable_strings_name_the_argument(arg):
    kwargs = {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5, "step": 3}
    kwargs[arg] = "0.9.6"
    with pytest.raises(ValueError, match=arg):
        evaluate(*kwargs.values())


def test_bad_dtype_and_order():
    with pytest.raises(ValueError, match="dtype.*float8"):
        evaluate(0.1, 10, 0.5, 3, dtype="float8")
    with pytest.raises(ValueError, match="dtype"):
        evaluate(0.1, 10, 0.5, 3, dtype=np.int32)
    with pytest.raises(ValueError, match="order.*'fast'"):
        evaluate(0.1, 10, 0.5, 3, order="fast")


def test_inputs_are_taken_exactly():
    assert to_exact("0.96") == Fraction(24, 25)
    assert to_exact(" 1e-3 ") == Fraction(1, 1000)
    assert to_exact("0x1.8p-1") == Fraction(3, 4)
    assert to_exact("-0x1p+3") == -8
    assert to_exact("0x1.00000000000000000001p0") == 1 + Fraction(1, 2**80)  # beyond float64
    assert to_exact(Decimal("0.1")) == Fraction(1, 10)
    assert to_exact(0.1) == Fraction(3602879701896397, 2**55)
    assert to_exact(np.float32(0.1)) == Fraction(13421773, 2**27)
    assert to_exact(ml_dtypes.bfloat16(0.1)) == Fraction(205, 2**11)
    assert to_exact(np.int64(2**62 + 1)) == 2**62 + 1
    assert to_exact(np.array(0.5)) == Fraction(1, 2)
    for neg_zero in (-0.0, "-0", "-0.0", Decimal("-0"), np.float16(-0.0)):
        z = to_exact(neg_zero)
        assert z == 0 and math.copysign(1.0, z) < 0, neg_zero
    assert math.isnan(to_exact("nan")) and to_exact("-inf") == -INF
    assert to_exact(Decimal("Infinity")) == INF


def test_exact_decimal_differs_from_double_in_float64():
    # "0.1" is exactly 1/10; the double 0.1 is 1/10 + 5.55e-18.  In float64 the
    # exact order sees the difference: rnd(1/10 * 1) vs rnd(double 0.1) agree,
    # but 0.1 * 3 (r = 3, s = D) does not: 3/10 rounds to 0x1.3333333333333p-2
    # while 3 * double(0.1) = 0.30000000000000001665 rounds to 0x1.3333333333334p-2.
    assert float(evaluate("0.1", 1, 3, 1, dtype="float64")).hex() == "0x1.3333333333333p-2"
    assert float(evaluate(0.1, 1, 3, 1, dtype="float64")).hex() == "0x1.3333333333334p-2"


def test_integer_initial_rate_is_never_integer_arithmetic():
    # Keras would make an int32 tensor of 1 and cast 0.5 to 0; here 1 is a number.
    assert float(evaluate(1, 1, 0.5, 1, order="keras")) == 0.5
    assert evaluate(1, 1, 0.5, 1).dtype == np.float32


def test_dtype_rule():
    assert evaluate(0.1, 10, 0.5, 3).dtype == np.float32
    assert evaluate(np.float64(0.1), 10, 0.5, 3).dtype == np.float64
    assert evaluate(np.float16(0.1), 10, 0.5, 3).dtype == np.float16
    assert evaluate(ml_dtypes.bfloat16(0.1), 10, 0.5, 3).dtype == ml_dtypes.bfloat16
    assert evaluate(np.array(0.1, dtype=np.float64), 10, 0.5, 3).dtype == np.float64
    assert evaluate(np.float64(0.1), 10, 0.5, 3, dtype="float16").dtype == np.float16
    assert evaluate(np.int64(1), 10, 0.5, 3).dtype == np.float32


# ---------------------------------------------------------------------------
# §10.4 exact cases: values that are exactly floats or midpoints
# ---------------------------------------------------------------------------


def test_perfect_power_rates():
    _check(0.75, 2, 0.25, 1, 0.375)  # 0.25 ** 0.5 = 0.5
    _check(1.0, 3, 0.125, 2, 0.25, orders=["exact"])  # 0.125 ** (2/3) = 1/4
    # keras, bfloat16: p = rnd(2/3) = 0x1.56p-1 = 0.66796875, so
    # 0.125 ** p = 2 ** -2.00390625 = 0.24932..., whose bfloat16 neighbours are
    # 255/1024 = 0.249023 and 0.25: the nearer is 255/1024.
    assert float(evaluate(1.0, 3, 0.125, 2, dtype="bfloat16", order="keras")) == 255 / 1024
    _check(1.0, 2, 0.5625, 1, 0.75)  # (9/16) ** (1/2) = 3/4
    for name in FORMAT_NAMES:
        want = round_fraction(Fraction(2, 3), name)
        assert float(evaluate(1.0, 2, "2.25", -1, dtype=name)) == want  # (9/4) ** -1/2
        want = round_fraction(Fraction(4, 9), name)
        assert float(evaluate(1, 3, "8/27", 2, dtype=name)) == want  # (8/27) ** (2/3)


def test_exact_midpoints_tie_to_even_float16():
    # 4 ** (1/2) = 2; I = 1 + 2**-11 gives 2 + 2**-10, halfway between 2 and
    # 2 + 2**-9 in float16: ties to the even significand, 2.
    I = 1 + 2.0**-11
    assert float(evaluate(I, 2, 4.0, 1, dtype="float16", order="exact")) == 2.0
    # I = 1 + 3 * 2**-11: 2 + 3 * 2**-10 is halfway between 2 + 2**-9 (odd)
    # and 2 + 2**-8 (even): rounds up.
    I = 1 + 3 * 2.0**-11
    assert float(evaluate(I, 2, 4.0, 1, dtype="float16", order="exact")) == 2 + 2.0**-8
    # keras: If = rnd(1 + 3 * 2**-11) = 1 + 2**-9 (tie to even), times 2.
    assert float(evaluate(I, 2, 4.0, 1, dtype="float16", order="keras")) == 2 + 2.0**-8


def test_huge_integer_exponents_of_powers_of_two():
    # 0.5 ** 10**18 underflows; 2 ** 1000 * 2**-1000 = 1 exactly.
    _check(1.0, 1, 0.5, 10**18, 0.0, staircase=True, orders=["exact"])
    _check(2.0**-1000, 1, 2.0, 1000, 1.0, formats=["float64"])
    _check(2.0**-1000, 1, 2.0, 1000, 1.0, orders=["exact"])


def test_decimal_rate_staircase_is_rational_and_rounded_once():
    # I * (24/25)**k exactly, rounded once.
    for k in (1, 2, 7, 100):
        want = Fraction(1, 10) * Fraction(24, 25) ** k
        for name in FORMAT_NAMES:
            got = evaluate("0.1", 1000, "0.96", 1000 * k + 999, staircase=True, dtype=name)
            assert float(got) == round_fraction(want, name), (k, name)


def test_precision_cap_raises():
    # A case needing more than 64 bits (the smallest cap): a step close to a midpoint.
    with pytest.raises(PrecisionError, match="cap"):
        for s in range(1, 400):
            evaluate(0.1, 1000, 0.96, s, dtype="float64", max_prec=64)


def test_mpmath_global_precision_untouched():
    import mpmath

    before = (mpmath.mp.prec, mpmath.iv.prec)
    evaluate(0.1, 1000, 0.96, 12345, dtype="float64")
    value(0.1, 1000, 0.96, 12345, digits=60)
    assert (mpmath.mp.prec, mpmath.iv.prec) == before


# ---------------------------------------------------------------------------
# value(): exact decimal digits
# ---------------------------------------------------------------------------


def test_value_exact_decimals():
    assert value(0.5, 1, 1, 7, digits=3) == "5.00e-1"
    assert value("0.1", 1, "0.96", 10, digits=25) == "6.648326359915010457600000e-2"
    assert value(1, 1, "0.5", -3, digits=1) == "8e+0"
    assert value(1, 1, 3, -1, digits=5) == "3.3333e-1"
    assert value(2, 1, 3, -1, digits=5) == "6.6667e-1"
    assert value(1, 1, "0.96", 1, digits=2) == "9.6e-1"
    assert value(1, 1, "0.965", 1, digits=2) == "9.6e-1"  # tie to even
    assert value(1, 1, "0.975", 1, digits=2) == "9.8e-1"
    # Decimal midpoints reached through perfect powers must be exact ties:
    # "0.0625" ** (1/2) = 0.25 -> one digit: tie, to even "2e-1"; 0.35 -> "4e-1".
    assert value(1, 2, "0.0625", 1, digits=1) == "2e-1"
    assert value("1.4", 2, "0.0625", 1, digits=1) == "4e-1"
    # 0.1 ** 10**18 is exactly 10 ** -(10**18): never expanded.
    assert value(1, 1, "0.1", 10**18, staircase=True, digits=5) == "1.0000e-1000000000000000000"
    assert value(1, 1, "0.4", 3, digits=4) == "6.400e-2"
    assert value(NAN, 1, 2, 1) == "nan"
    assert value(-1, 1, 0.0, -1) == "-inf"
    assert value(-0.0, 1, 2, 1) == "-0"


def test_value_of_irrational_and_huge():
    # sqrt(2) to 30 digits, from the definition.
    assert value(1, 2, 2, 1, digits=30) == "1.41421356237309504880168872421e+0"
    # e ** -10**18 via 0.5 ** (10**18 / ln 2) is not needed: 0.5 ** (10**18 + 1/2)
    # = 2**-(10**18) / sqrt(2): 10**18 * log10(2) = 301029995663981195.6...
    v = value(1, 2, 0.25, 10**18 + 1, digits=5)
    assert v.endswith("e-301029995663981196"), v


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, 10**6])
def test_value_digits_validated(bad):
    with pytest.raises(ValueError, match="digits"):
        value(1, 1, 2, 1, digits=bad)


# ---------------------------------------------------------------------------
# Hypothesis properties, all formats x both orders (x staircase where it applies)
# ---------------------------------------------------------------------------

rates_below_one = st.one_of(
    st.floats(min_value=1e-6, max_value=1.0, exclude_max=True),
    st.integers(1, 60).map(lambda k: 1 - 2.0**-k),
)
initial_rates = st.floats(min_value=1e-30, max_value=1e30)
formats = st.sampled_from(FORMAT_NAMES)
orders = st.sampled_from(ORDERS)


@given(initial_rates, st.integers(1, 10**6), rates_below_one, st.integers(0, 2**40),
       st.integers(1, 10**6), st.booleans(), formats, orders)
@example(0.1, 1000, 0.96, 16777999, 1, True, "float32", "keras")
@example(0.1, 1000, 0.96, 16777000, 999, True, "float32", "keras")
@example(1.0, 1, 1 - 2.0**-60, 2**40, 1, False, "float64", "exact")
def test_monotone_non_increasing_for_rates_below_one(I, D, r, s, ds, staircase, fmt, order):
    # An I that overflows the format gives inf * 0 = NaN once w underflows.
    assume(math.isfinite(round_fraction(Fraction(I), fmt)))
    if fmt == "float16":
        # Steps and decay_steps from 65520 on cast to inf in float16 (keras:
        # inf / inf = NaN): fold them into the format's range instead.
        s, ds, D = s % 32768, ds % 32768 + 1, D % 65519 + 1
    a = evaluate(I, D, r, s, staircase=staircase, dtype=fmt, order=order)
    b = evaluate(I, D, r, s + ds, staircase=staircase, dtype=fmt, order=order)
    assert float(b) <= float(a)


@given(initial_rates, st.integers(1, 1000), st.floats(0.01, 100.0), st.integers(0, 10**9),
       formats)
@example(0.1, 1000, 0.96, 16777, "float32")
def test_staircase_constant_between_multiples_exact_order(I, D, r, k, fmt):
    lo = evaluate(I, D, r, k * D, staircase=True, dtype=fmt, order="exact")
    for j in {j for j in (1, D // 2, D - 1) if 0 < j < D}:
        got = evaluate(I, D, r, k * D + j, staircase=True, dtype=fmt, order="exact")
        assert _same(got, float(lo))


@given(initial_rates, st.integers(1, 50), st.floats(0.01, 100.0), st.integers(0, 40), formats)
def test_staircase_constant_between_multiples_keras_order_while_exact(I, D, r, k, fmt):
    # With (k + 1) * D < 2**(P-1) the step and the quotient's floor are exact in
    # every format (float16: P = 11), so the keras order is constant too.
    if (k + 1) * D >= 2 ** (FORMATS[fmt].precision - 1):
        k = 0
    lo = evaluate(I, D, r, k * D, staircase=True, dtype=fmt, order="keras")
    for j in range(1, D):
        got = evaluate(I, D, r, k * D + j, staircase=True, dtype=fmt, order="keras")
        assert _same(got, float(lo))


@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(1, 10**9),
       st.floats(allow_nan=False), st.booleans(), formats, orders)
@example(1e300, 1, 0.5, False, "float16", "keras")
def test_step_zero_gives_rounded_initial_rate(I, D, r, staircase, fmt, order):
    want = round_fraction(Fraction(I), fmt) if I else I
    assert _same(evaluate(I, D, r, 0, staircase=staircase, dtype=fmt, order=order), want)


@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(1, 10**9),
       st.integers(-(2**63), 2**63), st.booleans(), formats, orders)
def test_rate_one_gives_rounded_initial_rate(I, D, s, staircase, fmt, order):
    want = round_fraction(Fraction(I), fmt) if I else I
    assert _same(evaluate(I, D, 1.0, s, staircase=staircase, dtype=fmt, order=order), want)


@given(formats, st.integers(0, 200))
def test_exact_powers_of_two_are_exact(fmt, k):
    # I * 0.5**k with I = next_up(1) is I * 2**-k exactly: representable, or
    # rounded only by gradual underflow.  Exact rationals give the expectation.
    f = get_format(fmt)
    I = next_up(1.0, f)
    got = float(evaluate(I, 1, 0.5, k, dtype=fmt, order="exact"))
    assert got == round_fraction(Fraction(I) / 2**k, fmt)


@given(formats, st.integers(1, 60), st.integers(3, 99).filter(lambda n: n % 2))
def test_inexact_odd_powers_round_to_nearest(fmt, k, n):
    # w = (n/2**k)**3 exactly (n odd, an integer exponent): its odd part n**3
    # exceeds 2**(P+1) only for large n, so some cases are exact and some are
    # not; both must equal the exact rational rounded once.
    r = Fraction(n, 2**k)
    got = float(evaluate(1, 1, str(r), 3, dtype=fmt, order="exact"))
    assert got == round_fraction(r**3, fmt)


@pytest.mark.parametrize("gmpy", [True, False])
def test_exact_root_with_and_without_gmpy2(gmpy, monkeypatch):
    """``introot.exact_root`` (the oracle's rational-power test and the
    adapters' per-step rates): perfect powers built here give their root,
    their neighbours none; also on the integer Newton fallback."""
    import random

    from expdecay import introot

    if not gmpy:
        monkeypatch.setattr(introot, "_gmpy_iroot", None)
    rng = random.Random(7)
    assert [introot.exact_root(a, 3) for a in (0, 1, 2, 7, 8, 9)] == [0, 1, None, None, 2, None]
    for _ in range(300):
        n = rng.randint(1, 40)
        x = rng.choice([rng.randint(2, 50), rng.getrandbits(rng.randint(2, 300)) | 2])
        assert introot.exact_root(x**n, n) == x, (x, n)
        if n > 1:
            assert introot.exact_root(x**n + 1, n) is None, (x, n)
            assert introot.exact_root(x**n - 1, n) is None, (x, n)
