"""The Keras-compatible schedule: API, validation, config and interoperability
with the real Keras 3 and tf.keras (installed in CI, never skipped there)."""

from __future__ import annotations

import importlib
import json
import os

import ml_dtypes
import numpy as np
import pytest

import expdecay
from expdecay import ExponentialDecay, deserialize, serialize
from expdecay.floats import FORMATS, ulp_distance
from expdecay.oracle import evaluate
from support.bits import IN_CI

os.environ.setdefault("KERAS_BACKEND", "numpy")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def require(module: str):
    """Import a peer; in CI a missing peer is a failure, never a skip."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if IN_CI:
            raise
        pytest.skip(f"{module} is not installed")


# ---------------------------------------------------------------------------
# Values: every element bit-identical to the oracle
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("staircase", [False, True])
def test_call_and_exact_match_the_oracle(fmt, staircase):
    s = ExponentialDecay(0.1, 1000, 0.96, staircase=staircase, dtype=fmt)
    steps = np.array([0, 1, 999, 1000, 1001, 123456, 2**24 + 1, 16777999], dtype=np.int64)
    for order, fn in (("keras", s), ("exact", s.exact)):
        got = fn(steps)
        assert got.dtype == FORMATS[fmt].dtype and got.shape == steps.shape
        for k, step in enumerate(steps):
            want = evaluate(0.1, 1000, 0.96, int(step), staircase=staircase, dtype=fmt, order=order)
            assert got[k].tobytes() == want.tobytes(), (order, int(step))


def test_scalar_and_array_shapes():
    s = ExponentialDecay(0.1, 10, 0.5)
    assert isinstance(s(3), np.float32)
    assert isinstance(s(np.int64(3)), np.float32)
    assert s(np.array(3)).shape == ()
    assert s(np.arange(6, dtype=np.uint16).reshape(2, 3)).shape == (2, 3)
    assert float(s(20)) == np.float32(0.1) * np.float32(0.25)  # exact power of two
    assert float(s.exact(20)) == float(np.float32(0.025))
    assert s(np.array([10.0, 20.0], dtype=np.float32)).tolist() == s(np.array([10, 20])).tolist()


def test_dtype_rule_on_the_class():
    assert ExponentialDecay(0.1, 10, 0.5).dtype == np.float32
    assert ExponentialDecay(np.float64(0.1), 10, 0.5).dtype == np.float64
    assert ExponentialDecay(ml_dtypes.bfloat16(0.1), 10, 0.5).dtype == ml_dtypes.bfloat16
    assert ExponentialDecay(0.1, 10, 0.5, dtype="float16").format.name == "float16"


@pytest.mark.parametrize("bad", [0, -5, float("inf"), float("nan")])
def test_decay_steps_must_be_positive(bad):
    with pytest.raises(ValueError, match="decay_steps"):
        ExponentialDecay(0.1, bad, 0.96)


def test_validation_names_the_argument():
    with pytest.raises(TypeError, match="staircase.*'False'"):
        ExponentialDecay(0.1, 10, 0.96, staircase="False")
    with pytest.raises(TypeError, match="initial_learning_rate"):
        ExponentialDecay(None, 10, 0.96)
    with pytest.raises(TypeError, match="decay_rate"):
        ExponentialDecay(0.1, 10, True)
    with pytest.raises(TypeError, match="name"):
        ExponentialDecay(0.1, 10, 0.96, name=3)
    with pytest.raises(TypeError, match="step"):
        ExponentialDecay(0.1, 10, 0.96)("3")
    with pytest.raises(TypeError, match="step"):
        ExponentialDecay(0.1, 10, 0.96)(np.array([True]))
    with pytest.raises(ValueError, match="dtype"):
        ExponentialDecay(0.1, 10, 0.96, dtype="int8")


# ---------------------------------------------------------------------------
# Config and serialization
# ---------------------------------------------------------------------------


def test_get_config_has_keras_keys_plus_the_format_and_round_trips():
    # expdecay's own form carries the format (issue 10: it was lost); the
    # Keras-compatible form, without it, is get_keras_config().
    s = ExponentialDecay(0.1, 1000, 0.96, staircase=True, name="lr")
    cfg = s.get_config()
    assert cfg == {"initial_learning_rate": 0.1, "decay_steps": 1000, "decay_rate": 0.96,
                   "staircase": True, "name": "lr", "dtype": "float32"}
    assert s.get_keras_config() == {k: v for k, v in cfg.items() if k != "dtype"}
    t = ExponentialDecay.from_config(json.loads(json.dumps(cfg)))
    assert t.get_config() == cfg
    steps = np.arange(0, 5000, 7)
    assert s(steps).tobytes() == t(steps).tobytes()


def test_numpy_scalars_become_plain_json_numbers():
    s = ExponentialDecay(np.float32(0.1), np.int64(1000), np.float32(0.96))
    cfg = s.get_config()
    assert type(cfg["initial_learning_rate"]) is float and type(cfg["decay_steps"]) is int
    assert cfg["initial_learning_rate"] == float(np.float32(0.1))
    json.dumps(cfg)


def test_serialize_forms():
    s = ExponentialDecay(0.1, 1000, 0.96)
    # Default: expdecay's own form under its registered name (round-trips the
    # format); form="keras": Keras's own class and keys (issue 10).
    blob = serialize(s)
    assert blob == {"module": "expdecay", "class_name": "ExponentialDecay",
                    "config": s.get_config(), "registered_name": "expdecay>ExponentialDecay"}
    assert deserialize(blob).get_config() == s.get_config()
    kblob = serialize(s, form="keras")
    assert kblob == {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
                     "config": s.get_keras_config(), "registered_name": None}
    assert deserialize(kblob).get_config() == s.get_config()
    keras2 = {"class_name": "ExponentialDecay", "config": s.get_keras_config()}
    assert deserialize(keras2).get_config() == s.get_config()
    with pytest.raises(ValueError, match="class_name"):
        deserialize({"class_name": "PiecewiseConstantDecay", "config": {}})
    with pytest.raises(ValueError, match="unknown keys"):
        deserialize({"class_name": "ExponentialDecay", "config": {**s.get_config(), "x": 1}})
    with pytest.raises(TypeError):
        deserialize("ExponentialDecay")


# ---------------------------------------------------------------------------
# Interoperability with the real libraries
# ---------------------------------------------------------------------------

STEPS = [0, 1, 999, 1000, 12345, 100000, 16777999]


def _interop_check(lib_schedules, s: ExponentialDecay):
    theirs = lib_schedules.deserialize(serialize(s, form="keras"))
    assert type(theirs).__name__ == "ExponentialDecay"
    assert theirs.get_config() == s.get_keras_config()
    native = type(theirs)(**{k: v for k, v in s.get_keras_config().items()})
    fmt = s.format
    for step in STEPS:
        a = np.asarray(theirs(step))
        b = np.asarray(native(step))
        assert a.tobytes() == b.tobytes(), step
        # Keras's value differs from our keras order only by its pow's error:
        # at most a couple of ulps here (15 e-folds at most).
        assert abs(ulp_distance(float(s(step)), float(a), fmt)) <= 2, step
    # And a config written by the library deserializes here.
    mine = deserialize(lib_schedules.serialize(native))
    assert mine.get_config() == s.get_config()


@pytest.mark.parametrize("staircase", [False, True])
def test_keras3_interoperability(staircase):
    keras = require("keras")
    s = ExponentialDecay(0.1, 1000, 0.96, staircase=staircase, name="decay")
    _interop_check(keras.optimizers.schedules, s)


@pytest.mark.parametrize("staircase", [False, True])
def test_tf_keras_interoperability(staircase):
    tf_keras = require("tf_keras")
    s = ExponentialDecay(0.1, 1000, 0.96, staircase=staircase, name="decay")
    _interop_check(tf_keras.optimizers.schedules, s)


def test_keras_staircase_artefact_is_reproduced():
    # Step 16777999 casts to 16778000 in float32: Keras decays one interval
    # early, and so does the keras order; the exact order does not.
    keras = require("keras")
    k = keras.optimizers.schedules.ExponentialDecay(0.1, 1000, 0.9999, staircase=True)
    s = ExponentialDecay(0.1, 1000, 0.9999, staircase=True)
    early, on_time = (float(np.asarray(k(n))) for n in (16777999, 16778000))
    assert early == on_time
    assert float(s(16777999)) == float(s(16778000))
    assert abs(ulp_distance(float(s(16777999)), early, s.format)) <= 2
    assert float(s.exact(16777999)) == float(s.exact(16777000))
    assert float(s.exact(16777999)) > float(s.exact(16778000)) > 0


def test_version_and_exports():
    assert expdecay.__version__
    assert {"ExponentialDecay", "serialize", "deserialize", "evaluate", "value"} <= set(
        expdecay.__all__
    )
