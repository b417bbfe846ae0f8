"""Hostile and extreme inputs: each once hung, raised a stray exception or
refused a documented valid input.  Expected values are hand-derived exact
rationals or come from python-flint's Arb."""

from __future__ import annotations

import time
from decimal import Decimal
from fractions import Fraction

import flint
import numpy as np
import pytest

from expdecay import ExponentialDecay
from expdecay.oracle import PrecisionError, evaluate, to_exact, value

# --- inputs whose size is bounded before anything is expanded ---------------


@pytest.mark.parametrize("text", ["1e1_000_000", "1e10_000_000", "1e1_000_000_000",
                                  "-2.5e-1_000_000", "1_0e+100_001"])
def test_underscored_exponents_are_bounded(text):
    started = time.monotonic()
    with pytest.raises(ValueError, match="initial_learning_rate is too large or too small"):
        evaluate(text, 1, 0.5, 1)
    with pytest.raises(ValueError, match="too large or too small"):
        ExponentialDecay(text, 1, 0.5)
    with pytest.raises(ValueError, match="step is too large or too small"):
        value(1, 1, 0.5, text)
    assert time.monotonic() - started < 5  # refused, never expanded


def test_underscores_keep_python_meaning():
    assert to_exact("1_000.5") == Fraction(2001, 2)
    assert to_exact("1e1_0") == 10**10
    assert to_exact("-1_2/4") == Fraction(-3)


def test_long_decimal_strings_are_exact():
    """Decimal strings of 4,301 to 10,000 characters (CPython's int/str
    limit is 4,300 digits) are taken exactly."""
    text = "0." + "1" * 9000
    assert to_exact(text) == Fraction((10**9000 - 1) // 9, 10**9000)
    assert to_exact("3" * 5000) == (10**5000 - 1) // 3
    assert to_exact("1" * 4301 + "/7") == Fraction((10**4301 - 1) // 9, 7)
    with pytest.raises(ValueError, match="longer than 10000"):
        to_exact("1" * 10001)


# --- value(): digits and max_prec ---------------------------------------------


@pytest.mark.parametrize("digits", [4300, 4301, 6000, 10000])
def test_value_digits_beyond_int_str_limit(digits):
    # 1/3, hand-derived: every digit is 3.
    assert value(1, 1, Fraction(1, 3), 1, digits=digits) == "3." + "3" * (digits - 1) + "e-1"


def test_value_many_digits_of_an_irrational_vs_arb():
    digits = 4500
    got = value(1, 2, 2, 1, digits=digits)  # 2**(1/2)
    ctx = flint.ctx
    old = ctx.prec
    try:
        ctx.prec = int(digits * 3.33) + 64
        ref = flint.arb(2).sqrt().str(digits + 5, radius=False)
    finally:
        ctx.prec = old
    mantissa = got.split("e")[0].replace(".", "")
    assert ref.replace(".", "").startswith(mantissa[:-1])
    assert got.endswith("e+0")


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (63, ValueError), (1 << 21, ValueError),
                                     (True, TypeError), (1.5, TypeError), ("64", TypeError)])
def test_max_prec_validated(bad, exc):
    with pytest.raises(exc, match="max_prec"):
        value(0.1, 1, 0.96, 3, max_prec=bad)
    with pytest.raises(exc, match="max_prec"):
        evaluate(0.1, 1, 0.96, 3, max_prec=bad)


def test_small_max_prec_is_a_precision_error():
    """1/(1 - 2**-53) lies 2**-106 above a float64 midpoint: 64 bits cannot
    decide it, and the cap says so instead of guessing."""
    with pytest.raises(PrecisionError, match="undecided at 64 bits"):
        evaluate(1, 1, 1 - 2.0**-53, -1, dtype="float64", max_prec=64)
    assert float(evaluate(1, 1, 1 - 2.0**-53, -1, dtype="float64", max_prec=128)) == 1 + 2.0**-52


# --- stray exceptions ---------------------------------------------------------


def test_near_one_decimal_rate_exact_order():
    """A 28-digit rate within 1e-28 of 1: ``0.1 * r**0 = 0.1`` rounded."""
    sch = ExponentialDecay(1, 1, "0.9999999999999999999999999999")
    assert float(sch.exact(0)) == 1.0
    assert float(sch.exact(1)) == 1.0  # 1 - 1e-28 rounds to 1 in float32
    assert sch.exact(np.arange(3)).tolist() == [1.0, 1.0, 1.0]


def test_subnormal_decay_steps():
    """D = 5e-324: ``0.96**(s / D)`` is 0 for s > 0 and inf for s < 0."""
    sch = ExponentialDecay(0.1, 5e-324, 0.96)
    assert sch.exact(np.array([0, 1, -1])).tolist() == [np.float32(0.1), 0.0, np.inf]
    assert float(sch.exact(1)) == 0.0
    assert float(sch(1)) == 0.0  # keras: D rounds to 0 in float32, s / 0 = inf


@pytest.mark.parametrize("kwargs,step", [
    (dict(initial_learning_rate=10**400, decay_steps=1, decay_rate=0.96), 1),
    (dict(initial_learning_rate=0.1, decay_steps=1, decay_rate=0.96), 10**400),
    (dict(initial_learning_rate=0.1, decay_steps=1, decay_rate="1e400"), 1),
    (dict(initial_learning_rate=0.1, decay_steps=5e-324, decay_rate=0.96), 1),
], ids=["I=1e400", "step=1e400", "rate=1e400", "D=5e-324"])
def test_error_bound_of_out_of_range_inputs(kwargs, step):
    """Inputs beyond float64 make the bound infinite (a cast to inf), never
    an OverflowError."""
    bound = ExponentialDecay(**kwargs).error_bound(step)
    assert np.isinf(bound)


def test_nested_zero_d_object_arrays():
    a = np.array(0.5, dtype=object)
    for _ in range(5):
        b = np.empty((), dtype=object)
        b[()] = a
        a = b
    assert to_exact(a, "step") == Fraction(1, 2)
    for _ in range(3000):
        b = np.empty((), dtype=object)
        b[()] = a
        a = b
    with pytest.raises(TypeError, match="step is a 0-d array nested"):
        evaluate(0.1, 1, 0.96, a)


@pytest.mark.parametrize("bad", [np.timedelta64(3), np.datetime64("2020-01-01"),
                                 np.void(b"ab"), np.str_("x")])
def test_numpy_non_numbers_named(bad):
    with pytest.raises((TypeError, ValueError), match="step"):
        evaluate(0.1, 1, 0.96, bad)
    with pytest.raises((TypeError, ValueError), match="decay_rate"):
        evaluate(0.1, 1, bad, 1)


def test_from_config_with_non_string_keys():
    with pytest.raises(ValueError, match=r"unknown keys \['a', 1\]"):
        ExponentialDecay.from_config({1: 2, "a": 3})


def test_decimal_inputs_still_exact():
    assert to_exact(Decimal("0.96")) == Fraction(24, 25)
