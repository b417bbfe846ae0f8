"""Every input is kept exactly through ``get_config`` / ``from_config`` (a
JSON round trip included), and ``==`` / ``hash`` follow what the schedule
computes with: the exact inputs, the format, the staircase flag and the name.

Expected exact values come from numpy's own ``as_integer_ratio`` and
``fractions`` (not from expdecay); expected bits at the steps from the Arb
oracle (``tests/support/arb_oracle.py``).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from expdecay import ExponentialDecay
from expdecay.inputs import to_exact
from support.arb_oracle import arb_evaluate

LONG = np.finfo(np.longdouble).nmant > 52
needs_long = pytest.mark.skipif(not LONG, reason="np.longdouble is float64 on this platform")


def _exact(x: np.longdouble) -> Fraction:
    """The exact value of a finite numpy float (numpy's own ``as_integer_ratio``)."""
    n, d = x.as_integer_ratio()
    return Fraction(n, d)


def _round_trip(s: ExponentialDecay) -> ExponentialDecay:
    config = json.loads(json.dumps(s.get_config(), allow_nan=False))
    return ExponentialDecay.from_config(config)


@needs_long
def test_long_double_inputs_are_kept_exactly() -> None:
    third = np.longdouble(1) / np.longdouble(3)
    rate = np.longdouble(96) / np.longdouble(100)
    s = ExponentialDecay(third, 1000, rate)
    config = s.get_config()
    # the exact binary value, which float64 cannot hold
    assert to_exact(config["initial_learning_rate"]) == _exact(third) != Fraction(float(third))
    assert to_exact(config["decay_rate"]) == _exact(rate) != Fraction(float(rate))
    t = _round_trip(s)
    assert t == s and hash(t) == hash(s)
    steps = np.arange(0, 200_000, 997)
    assert np.array_equal(t(steps).view(np.uint32), s(steps).view(np.uint32))


@needs_long
def test_long_double_cut_to_float64_is_a_different_schedule() -> None:
    """The config of the long double schedule used to hold float64 values:
    the rebuilt schedule compared equal yet gave other values.  A schedule
    built from the float64 values is not equal to the long double one, and
    they do differ at some step (the Arb oracle says by how much)."""
    rate = np.longdouble(96) / np.longdouble(100)
    exact_rate, cut_rate = _exact(rate), Fraction(float(rate))
    assert exact_rate != cut_rate
    s = ExponentialDecay(0.1, 1, rate, dtype="float64", staircase=True)
    cut = ExponentialDecay(0.1, 1, float(rate), dtype="float64", staircase=True)
    assert s != cut
    step = 10_000  # 0.96 ** 10000: the rate's error is multiplied by 10,000
    want = arb_evaluate(0.1, 1, exact_rate, step, True, "float64", "exact")
    want_cut = arb_evaluate(0.1, 1, cut_rate, step, True, "float64", "exact")
    assert want != want_cut
    assert float(s.exact(step)) == want and float(_round_trip(s).exact(step)) == want
    assert float(cut.exact(step)) == want_cut


@pytest.mark.parametrize("value", [
    0.1, 3, np.float16(0.1), np.float32(0.1), np.float64(0.1), np.int32(7), np.uint64(2**63),
    np.array(0.25), np.array(np.float32(0.96)), np.array(5, dtype=np.int8), "0.1",
    "0x1.8p-3", "1/3", Fraction(1, 3), Fraction(3, 4), Decimal("0.1"), Decimal("1E+2"),
    Decimal("-0"), "-0.0", -0.0,
])
def test_every_input_type_round_trips_through_json(value: Any) -> None:
    """As initial_learning_rate and as decay_rate, exactly (the same exact
    value, signed zeros kept), with a JSON-ready config."""
    for s in (ExponentialDecay(value, 10, 0.5), ExponentialDecay(0.5, 10, value)):
        t = _round_trip(s)
        for name in ("initial_learning_rate", "decay_rate"):
            a, b = to_exact(getattr(s, name)), to_exact(getattr(t, name))
            assert a == b and (not isinstance(a, float) or
                               math.copysign(1, a) == math.copysign(1, b))
        assert t == s and hash(t) == hash(s)


def test_zero_dimensional_arrays_are_json_ready_and_hash() -> None:
    s = ExponentialDecay(np.array(0.1), np.array(1000), np.array(0.96))
    assert json.loads(json.dumps(s.get_config())) == {
        "initial_learning_rate": 0.1, "decay_steps": 1000, "decay_rate": 0.96,
        "staircase": False, "name": "ExponentialDecay", "dtype": "float64"}
    t = ExponentialDecay(0.1, 1000, 0.96, dtype="float64")
    assert s == t and hash(s) == hash(t)
    assert {s: 1}[t] == 1


def test_specials_round_trip() -> None:
    """NaN and the infinities (Decimal and float) keep their meaning; the
    config is strict JSON for the Decimal forms (strings)."""
    for value, text in ((math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")):
        s = ExponentialDecay(0.1, 10, Decimal(text))
        config = s.get_config()
        assert isinstance(config["decay_rate"], str)
        t = ExponentialDecay.from_config(json.loads(json.dumps(config, allow_nan=False)))
        assert t == s and hash(t) == hash(s)
        got = to_exact(t.decay_rate)
        assert math.isnan(got) if math.isnan(value) else got == value


SAME = [  # each group: one exact input, given as different types
    [0.5, np.float32(0.5), np.float16(0.5), "0.5", "0x1p-1", Fraction(1, 2), Decimal("0.50"),
     np.array(0.5), "1/2"],
    [1000, 1000.0, np.int64(1000), "1000", Decimal("1E+3"), np.uint16(1000)],
]


@pytest.mark.parametrize("group", SAME)
def test_equal_exact_inputs_give_equal_schedules_and_hashes(group: list[Any]) -> None:
    schedules = [ExponentialDecay(0.1, 7, x, dtype="float32") for x in group] \
        if group[0] == 0.5 else [ExponentialDecay(0.1, x, 0.5, dtype="float32") for x in group]
    steps = np.arange(-50, 5000, 7)
    first = schedules[0]
    for s in schedules[1:]:
        assert s == first and hash(s) == hash(first)
        assert np.array_equal(s(steps).view(np.uint32), first(steps).view(np.uint32))


@pytest.mark.parametrize("a, b", [
    ((0.1, 10, 0.5), ("0.1", 10, 0.5)),           # binary 0.1 vs decimal 0.1
    ((0.1, 10, 0.0), (0.1, 10, -0.0)),            # the sign of a zero rate
    ((0.1, 10, 0.5), (0.1, 10, 0.5, True)),       # staircase
    ((0.1, 10, np.float32(0.96)), (0.1, 10, 0.96)),
])
def test_different_exact_inputs_are_different_schedules(a: tuple[Any, ...],
                                                        b: tuple[Any, ...]) -> None:
    assert ExponentialDecay(*a) != ExponentialDecay(*b)


def test_signed_zero_rates_compute_different_values() -> None:
    """Why -0.0 and +0.0 are different schedules: (-0) ** 1 = -0 (C99 pow)."""
    plus, minus = ExponentialDecay(0.1, 1, 0.0), ExponentialDecay(0.1, 1, -0.0)
    assert arb_evaluate(0.1, 1, -0.0, 1, False, "float32", "keras") == 0.0
    assert math.copysign(1, arb_evaluate(0.1, 1, -0.0, 1, False, "float32", "keras")) == -1
    assert math.copysign(1, float(minus(1))) == -1 and math.copysign(1, float(plus(1))) == 1
    assert plus != minus


def test_format_is_part_of_equality() -> None:
    assert ExponentialDecay(0.1, 10, 0.5) != ExponentialDecay(0.1, 10, 0.5, dtype="float64")
    assert ExponentialDecay(np.float64(0.1), 10, 0.5) == ExponentialDecay(0.1, 10, 0.5,
                                                                            dtype="float64")


@pytest.mark.parametrize("kwargs, error, words", [
    ({"initial_learning_rate": np.array([0.1, 0.2])}, TypeError, ["initial_learning_rate"]),
    ({"initial_learning_rate": np.complex128(1)}, TypeError, ["initial_learning_rate"]),
    ({"decay_rate": np.datetime64("2020-01-01")}, TypeError, ["decay_rate"]),
    ({"decay_rate": "zero"}, ValueError, ["decay_rate", "zero"]),
    ({"decay_steps": np.array(0)}, ValueError, ["decay_steps"]),
    ({"decay_steps": True}, TypeError, ["decay_steps", "True"]),
    ({"staircase": np.array(True)}, TypeError, ["staircase"]),
    ({"name": 1.5}, TypeError, ["name", "1.5"]),
    ({"dtype": "complex64"}, ValueError, ["complex64"]),
])
def test_bad_inputs_are_refused_at_construction(kwargs: dict[str, Any], error: type,
                                                words: list[str]) -> None:
    args = {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5, **kwargs}
    with pytest.raises(error) as info:
        ExponentialDecay(**args)
    for w in words:
        assert w in str(info.value)
