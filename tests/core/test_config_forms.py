"""The two config forms (spec/exponential_decay.md §11): expdecay's own form
round-trips everything, the format included; the Keras-compatible form holds
only JSON numbers and evaluates in Keras's own ExponentialDecay."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from fractions import Fraction
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from expdecay import ExponentialDecay, deserialize, serialize
from expdecay.floats import get_format
from support.bits import IN_CI

os.environ.setdefault("KERAS_BACKEND", "numpy")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FORMATS = ["float16", "bfloat16", "float32", "float64"]
NUMPY = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32,
         "float64": np.float64}
STEPS = np.array([0, 1, 999, 1000, 12345, 100000, 16777999, 2**40], dtype=np.int64)


def _json(x: object) -> Any:
    return json.loads(json.dumps(x))


@pytest.mark.parametrize("dtype", FORMATS)
@pytest.mark.parametrize("staircase", [False, True])
def test_own_form_round_trips_the_format_and_the_bits(dtype: str, staircase: bool) -> None:
    for args, kw in [
        ((0.1, 1000, 0.96), {"dtype": dtype}),
        (("0.1", "1000", "24/25"), {"dtype": dtype}),
        ((Fraction(1, 10), Decimal("1000"), Decimal("0.96")), {"dtype": dtype}),
        ((NUMPY[dtype](0.1), 1000, NUMPY[dtype](0.96)), {}),  # the format from the dtype rule
    ]:
        s = ExponentialDecay(*args, staircase=staircase, **kw)
        t = deserialize(_json(serialize(s)))
        assert t.format.name == dtype, args
        assert ExponentialDecay.from_config(_json(s.get_config())).format.name == dtype
        assert t.get_config() == s.get_config()
        for order in ("keras", "exact"):
            a = s(STEPS) if order == "keras" else s.exact(STEPS)
            b = t(STEPS) if order == "keras" else t.exact(STEPS)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (args, order)


def test_own_form_keeps_exact_inputs_exact() -> None:
    s = ExponentialDecay("0.1", 1000, "24/25", dtype="float64")
    cfg = s.get_config()
    assert cfg["initial_learning_rate"] == "0.1" and cfg["decay_rate"] == "24/25"
    assert cfg["dtype"] == "float64"


def test_configs_written_before_the_format_key_still_read() -> None:
    old = {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
           "config": {"initial_learning_rate": "0.1", "decay_steps": 1000,
                      "decay_rate": "24/25", "staircase": False, "name": "old"},
           "registered_name": None}
    s = deserialize(old)
    assert s.format.name == "float32"  # Keras's rule for values without a dtype
    assert s.initial_learning_rate == "0.1"
    assert float(s.exact(0)) == float(np.float32(0.1))


def _within_half_ulp(written: float, exact: Fraction, dtype: str) -> bool:
    """Hand check: ``written`` is a value of the format and no farther than
    half an ulp of the format from ``exact`` (with exact rationals)."""
    fmt = get_format(dtype)
    if float(NUMPY[dtype](written)) != written:
        return False
    e = Fraction(written).numerator.bit_length() - Fraction(written).denominator.bit_length()
    ulp = Fraction(2) ** (e - fmt.precision + 1)
    return abs(Fraction(written) - exact) <= ulp / 2


@pytest.mark.parametrize("dtype", FORMATS)
def test_keras_form_has_only_json_numbers_rounded_to_the_format(dtype: str) -> None:
    s = ExponentialDecay("0.1", "1000", "24/25", dtype=dtype)
    blob = serialize(s, form="keras")
    cfg = blob["config"]
    assert set(cfg) == {"initial_learning_rate", "decay_steps", "decay_rate", "staircase", "name"}
    assert cfg["decay_steps"] == 1000 and type(cfg["decay_steps"]) is int
    for key, exact in (("initial_learning_rate", Fraction(1, 10)),
                       ("decay_rate", Fraction(24, 25))):
        assert type(cfg[key]) is float
        assert _within_half_ulp(cfg[key], exact, dtype), (key, cfg[key])
    # Python floats stay as given: Keras casts them as the keras order does.
    assert ExponentialDecay(0.1, 1000, 0.96).get_keras_config()["initial_learning_rate"] == 0.1


def _require(module: str):  # type: ignore[no-untyped-def]
    try:
        return __import__(module)
    except ImportError:
        if IN_CI:
            raise
        pytest.skip(f"{module} is not installed")


@pytest.mark.parametrize("lib", ["keras", "tf_keras"])
@pytest.mark.parametrize("staircase", [False, True])
def test_keras_form_evaluates_in_keras_own_class(lib: str, staircase: bool) -> None:
    # Issue 10: exact inputs used to be written as strings ("0.1", "24/25"),
    # which Keras deserialized and then failed on when called.
    mod = _require(lib)
    s = ExponentialDecay("0.1", 1000, "24/25", staircase=staircase, name="decay")
    theirs = mod.optimizers.schedules.deserialize(_json(serialize(s, form="keras")))
    assert type(theirs).__name__ == "ExponentialDecay"
    for step in (0, 1, 999, 1000, 12345, 100000):
        value = float(np.asarray(theirs(step)))
        ours = float(s(step))
        # Keras differs from the keras order only by its pow's error.
        assert abs(value - ours) <= 4 * np.spacing(np.float32(ours)), step


def test_keras_reads_the_own_form_as_the_expdecay_adapter() -> None:
    # Deserialization only: under this process's backend (numpy) the adapter
    # cannot run, which test_train_frameworks.py covers on the others.
    keras = _require("keras")
    import expdecay.keras

    s = ExponentialDecay("0.1", 1000, "24/25", staircase=True, dtype="float64")
    obj = keras.saving.deserialize_keras_object(_json(serialize(s)))
    assert isinstance(obj, expdecay.keras.ExponentialDecay)
    assert obj.schedule.get_config() == s.get_config()
    assert obj.table.fmt.name == "float64"


def test_bad_form_is_refused() -> None:
    with pytest.raises(ValueError, match="form"):
        serialize(ExponentialDecay(0.1, 10, 0.5), form="tf")
    with pytest.raises(ValueError, match="unknown keys"):
        ExponentialDecay.from_config({"initial_learning_rate": 0.1, "decay_steps": 1,
                                      "decay_rate": 0.5, "format": "float64"})
