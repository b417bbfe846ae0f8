"""``expdecay.testing.strategies``: every draw is a valid input, invalid draws
raise what they declare, ``steps`` reaches each hard region (shown with
``hypothesis.find``, derandomized), and ``expected`` is the oracle bit for bit."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from expdecay import oracle
from expdecay.floats import FORMATS, get_format, is_representable, round_rational, to_bits
from expdecay.schedule import ExponentialDecay
from expdecay.testing import assert_ulp_close
from expdecay.testing.strategies import (
    InvalidSchedule,
    Schedule,
    expected,
    invalid_schedules,
    schedules,
    steps,
)

FORMAT_NAMES = list(FORMATS)
ORDERS = ["keras", "exact"]
COMBOS = [(f, o, s) for f in FORMAT_NAMES for o in ORDERS for s in (False, True)]


def _find(strategy: st.SearchStrategy[Any], predicate: Callable[[Any], bool],
          max_examples: int = 3000) -> Any:
    """``hypothesis.find``, deterministic: no example database, derandomized."""
    return find(strategy, predicate,
                settings=settings(database=None, derandomize=True, max_examples=max_examples))


def _oracle_bits(s: Schedule, step: Any, order: str) -> int:
    v = oracle.evaluate(s.initial_learning_rate, s.decay_steps, s.decay_rate, step,
                        staircase=s.staircase, dtype=s.dtype, order=order)
    return to_bits(float(v), s.format)


def _value(s: Schedule, step: Any) -> float:
    return float(oracle.evaluate(s.initial_learning_rate, s.decay_steps, s.decay_rate, step,
                                 staircase=s.staircase, dtype=s.dtype, order="exact"))


def _nice(name: str, staircase: bool = False, I: float = 0.1, D: int = 1000,
          r: float = 0.96) -> Schedule:
    fmt = get_format(name)
    return Schedule(round_rational(Fraction(I), fmt), D, round_rational(Fraction(r), fmt),
                    staircase, name)


# ---------------------------------------------------------------------------
# Every draw is valid; every invalid draw raises what it declares
# ---------------------------------------------------------------------------


@settings(max_examples=300)
@given(schedules(special_values=True))
def test_drawn_schedules_are_valid_and_exact_in_their_format(s: Schedule) -> None:
    fmt = s.format
    assert type(s.initial_learning_rate) is float and type(s.decay_rate) is float
    assert type(s.decay_steps) in (int, float) and type(s.staircase) is bool
    for x in (s.initial_learning_rate, s.decay_steps, s.decay_rate):
        assert is_representable(float(x), fmt), (x, fmt)
    assert math.isfinite(s.decay_steps) and s.decay_steps > 0
    built = s.build()
    assert isinstance(built, ExponentialDecay) and built.format == fmt
    assert built.staircase is s.staircase
    ExponentialDecay(**s.kwargs(), dtype=s.dtype)


@settings(max_examples=100)
@given(schedules())
def test_ordinary_schedules_are_positive_and_finite(s: Schedule) -> None:
    assert 0 < s.initial_learning_rate < math.inf and 0 < s.decay_rate < math.inf


@pytest.mark.parametrize("name", FORMAT_NAMES)
@pytest.mark.parametrize("staircase", [False, True])
@settings(max_examples=30)
@given(data=st.data())
def test_dtypes_and_staircase_arguments_are_obeyed(name: str, staircase: bool,
                                                   data: st.DataObject) -> None:
    s = data.draw(schedules(dtypes=[name], staircase=staircase))
    assert s.dtype == name and s.staircase is staircase
    s = data.draw(schedules(dtypes=get_format(name).dtype))
    assert s.dtype == name


@settings(max_examples=300)
@given(invalid_schedules())
def test_invalid_schedules_raise_the_declared_exception(bad: InvalidSchedule) -> None:
    with pytest.raises(bad.exception, match=bad.argument):
        bad.build()
    with pytest.raises(bad.exception, match=bad.argument):
        ExponentialDecay(**bad.kwargs)


def test_invalid_schedules_cover_the_documented_kinds() -> None:
    for arg, pred in [
        ("decay_steps", lambda v: v == 0),
        ("decay_steps", lambda v: isinstance(v, float) and math.isnan(v)),
        ("decay_steps", lambda v: v == math.inf),
        ("decay_steps", lambda v: isinstance(v, (int, float)) and v < 0),
        ("staircase", lambda v: not isinstance(v, bool)),
        ("dtype", lambda v: True),
    ]:
        bad = _find(invalid_schedules(),
                    lambda b, arg=arg, pred=pred: b.argument == arg and pred(b.kwargs[arg]))
        assert bad.argument == arg


def test_strategy_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="dtypes"):
        schedules(dtypes="float8")
    with pytest.raises(ValueError, match="dtypes"):
        schedules(dtypes=[])
    with pytest.raises(TypeError, match="staircase"):
        schedules(staircase="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schedule"):
        steps((0.1, 1000, 0.96))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_step"):
        steps(_nice("float32"), max_step=0)
    with pytest.raises(TypeError, match="allow_float"):
        steps(_nice("float32"), allow_float=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order"):
        expected(_nice("float32"), [1], order="numpy")
    with pytest.raises(TypeError, match="schedule"):
        expected(ExponentialDecay(0.1, 1000, 0.96), [1])  # type: ignore[arg-type]


def test_shrinks_to_readable_values() -> None:
    s = _find(schedules(), lambda s: True)
    assert (s.decay_steps, s.staircase, s.dtype) == (1000, False, "float32")
    assert s.initial_learning_rate == float(np.float32(0.1))
    assert s.decay_rate == float(np.float32(0.96))
    s16 = _find(schedules(dtypes="float16", staircase=True), lambda s: s.decay_rate > 1)
    assert s16.decay_rate in (1.0009765625, 1.5, 2.0)
    assert _find(steps(_nice("float32")), lambda x: True) == 0


# ---------------------------------------------------------------------------
# Steps: valid, and reaching each hard region
# ---------------------------------------------------------------------------


@settings(max_examples=100)
@given(data=st.data())
def test_drawn_steps_are_valid_inputs(data: st.DataObject) -> None:
    s = data.draw(schedules(special_values=True))
    negative = data.draw(st.booleans())
    floats = data.draw(st.booleans())
    xs = data.draw(st.lists(steps(s, allow_negative=negative, allow_float=floats),
                            min_size=1, max_size=5))
    for x in xs:
        assert type(x) is int or (floats and type(x) is float)
        assert math.isfinite(x) and abs(x) <= 2**63 - 1
        assert negative or x >= 0
    got = expected(s, xs, order="keras")
    assert got.shape == (len(xs),) and got.dtype == s.format.dtype


def _midpoint_miss(s: Schedule, step: int | float) -> float:
    """Distance, in ulps of the format, of the exact value to the nearest rounding
    midpoint (an independent mpmath computation at 200 bits)."""
    fmt = s.format
    with mpmath.workprec(200):
        I, r = mpmath.mpf(s.initial_learning_rate), mpmath.mpf(s.decay_rate)
        q = Fraction(step) / Fraction(s.decay_steps)
        if s.staircase:
            q = Fraction(math.floor(q))
        y = I * r ** (mpmath.mpf(q.numerator) / q.denominator)
        if not fmt.min_normal <= y <= fmt.max_finite:
            return 1.0
        e = int(mpmath.floor(mpmath.log(y, 2)))
        pos = mpmath.ldexp(y, fmt.precision - 1 - e)
        return float(abs(pos - mpmath.floor(pos) - mpmath.mpf(0.5)))


def _crosses(s: Schedule, step: Any, test: Callable[[float], bool]) -> bool:
    """``test`` holds at ``step`` but not three steps before (int steps only)."""
    if type(step) is not int or step < 3:
        return False
    return test(abs(_value(s, step))) and not test(abs(_value(s, step - 3)))


REACH: dict[str, tuple[Schedule, Callable[[Schedule, Any], bool]]] = {
    "staircase boundary above 2**24 (float32 misfloor)": (
        _nice("float32", staircase=True),
        lambda s, x: type(x) is int and x > 2**24 and x % 1000 in (999, 0, 1)),
    "staircase boundary, small k": (
        _nice("float16", staircase=True, D=7),
        lambda s, x: type(x) is int and 0 < x < 100 and x % 7 in (6, 0, 1)),
    "2**24 neighbourhood (odd int the float32 cast rounds)": (
        _nice("float32"),
        lambda s, x: type(x) is int and 2**24 < x < 2**24 + 64 and x % 2 == 1),
    "float step above 2**24 with a fraction": (
        _nice("float32"),
        lambda s, x: type(x) is float and 2**24 < x < 2**25 and x != int(x)),
    "near a float32 midpoint": (
        _nice("float32"), lambda s, x: _midpoint_miss(s, x) < 2**-12),
    "near a float16 midpoint": (
        _nice("float16"), lambda s, x: _midpoint_miss(s, x) < 2**-12),
    "near a bfloat16 midpoint": (
        _nice("bfloat16"), lambda s, x: _midpoint_miss(s, x) < 2**-12),
    "near a float32 midpoint, staircase": (
        _nice("float32", staircase=True), lambda s, x: _midpoint_miss(s, x) < 2**-8),
    "float32 subnormal threshold": (
        _nice("float32"), lambda s, x: _crosses(s, x, lambda v: v < 2.0**-126)),
    "float32 underflow to zero": (
        _nice("float32"), lambda s, x: _crosses(s, x, lambda v: v == 0)),
    "float16 subnormal threshold, staircase": (
        _nice("float16", staircase=True, D=100),
        lambda s, x: _crosses(s, x, lambda v: v < 2.0**-14)),
    "float64 subnormal threshold": (
        _nice("float64", D=10, r=0.5),
        lambda s, x: _crosses(s, x, lambda v: v < 2.0**-1022)),
    "bfloat16 underflow to zero": (
        _nice("bfloat16", D=10),
        lambda s, x: _crosses(s, x, lambda v: v == 0)),
    "float16 overflow": (
        _nice("float16", D=100, r=2.0), lambda s, x: _crosses(s, x, math.isinf)),
    "float32 overflow, staircase": (
        _nice("float32", staircase=True, D=10, r=1.5),
        lambda s, x: _crosses(s, x, math.isinf)),
    "large random int": (_nice("float64"), lambda s, x: type(x) is int and x > 2**40),
    "random float": (_nice("float64"), lambda s, x: type(x) is float and 10 < x < 1e6),
}


@pytest.mark.parametrize("region", list(REACH))
def test_steps_reach(region: str) -> None:
    schedule, predicate = REACH[region]
    found = _find(steps(schedule), lambda x: predicate(schedule, x))
    assert predicate(schedule, found)


def test_no_float_no_negative_by_default_only() -> None:
    s = _nice("float32", r=2.0)
    neg = _find(steps(s, allow_negative=True), lambda x: x < -10**6)
    assert neg < -10**6
    # The float32 subnormal threshold of a growing schedule is at negative steps.
    hit = _find(steps(s, allow_negative=True, allow_float=False),
                lambda x: x < 0 and 0 < _value(s, x) < 2.0**-126 <= _value(s, x + 3))
    assert type(hit) is int


# ---------------------------------------------------------------------------
# expected() is the oracle, bit for bit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "order", "staircase"), COMBOS)
@settings(max_examples=25)
@given(data=st.data())
def test_expected_is_the_oracle(name: str, order: str, staircase: bool,
                                data: st.DataObject) -> None:
    s = data.draw(schedules(dtypes=name, staircase=staircase,
                            special_values=data.draw(st.booleans())), label="schedule")
    xs = data.draw(st.lists(steps(s, allow_negative=data.draw(st.booleans())), min_size=1,
                            max_size=4), label="steps")
    got = expected(s, xs, order=order)
    assert got.dtype == s.format.dtype and got.shape == (len(xs),)
    bits = got.view(f"u{s.format.width // 8}")
    for i, x in enumerate(xs):
        assert int(bits[i]) == _oracle_bits(s, x, order), (i, x)


@pytest.mark.parametrize("order", ORDERS)
def test_expected_shapes_and_mixed_steps(order: str) -> None:
    s = _nice("bfloat16", staircase=True)
    mixed = [3, 2.5, 2**70, np.int32(7), 16777999]
    got = expected(s, mixed, order=order)
    for i, x in enumerate(mixed):
        assert int(got.view(np.uint16)[i]) == _oracle_bits(s, x, order)
    scalar = expected(s, 12345, order=order)
    assert scalar.shape == () and int(scalar.view(np.uint16)) == _oracle_bits(s, 12345, order)
    arr = np.arange(6, dtype=np.int64).reshape(2, 3) * 999
    assert expected(s, arr, order=order).shape == (2, 3)


# ---------------------------------------------------------------------------
# The README example: a user's own schedule tested with the strategies
# ---------------------------------------------------------------------------
#
# float32 and float16 only: numpy rounds float64 to them correctly, while
# ml_dtypes 0.6 rounds float64 to bfloat16 through float32 (double rounding), and
# these strategies find a step where that gives inf instead of the largest
# bfloat16 (Schedule(0.10009765625, 364544, 1.0078125, False, 'bfloat16'), step
# 4263827408).  max_step=10**6 keeps the steps far enough apart in value that a
# float64 pipeline cannot land on the wrong side of the overflow threshold.


def my_schedule(initial_learning_rate: float, decay_steps: float, decay_rate: float,
                staircase: bool, step: int, dtype: Any) -> Any:
    """A user's implementation: Keras's operations in float64, rounded at the end."""
    p = step / decay_steps
    if staircase:
        p = math.floor(p)
    with np.errstate(all="ignore"):  # overflow to inf, underflow to 0
        return (np.float64(initial_learning_rate) * np.float64(decay_rate) ** p).astype(dtype)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_readme_example_user_schedule(data: st.DataObject) -> None:
    s = data.draw(schedules(dtypes=["float32", "float16"]))
    step = data.draw(steps(s, max_step=10**6, allow_float=False))
    got = my_schedule(s.initial_learning_rate, s.decay_steps, s.decay_rate, s.staircase,
                      step, s.format.dtype)
    assert_ulp_close(got, expected(s, step, order="exact"), ulps=1, dtype=s.dtype)


def test_bfloat16_double_rounding_of_ml_dtypes_is_what_the_strategies_found() -> None:
    """The value behind the comment above: float64 below the bfloat16 overflow
    midpoint, correctly rounded to the largest bfloat16, not to inf."""
    s = Schedule(0.10009765625, 364544, 1.0078125, False, "bfloat16")
    v = float(np.float64(s.initial_learning_rate) * np.float64(s.decay_rate) ** (4263827408
                                                                                 / 364544))
    midpoint = 2.0**128 - 2.0**119
    assert v < midpoint
    want = expected(s, 4263827408, order="exact")
    assert float(want) == round_rational(Fraction(v), s.format) == s.format.max_finite
