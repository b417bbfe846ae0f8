"""``expdecay.keras`` as a drop-in for Keras's own ``ExponentialDecay``
(spec/training.md): every step type Keras accepts, eagerly and compiled, on
each Keras 3 backend and on tf.keras; saving and loading in a fresh process;
pickling; the degenerate parameters; bad input.

Keras reads its backend when it is imported, so each backend runs in its own
process (the code in ``_WORKER``, given the cases as JSON); the values come
back as integer bits of their format and are compared here with the
independent Arb oracle (``tests/support/arb_oracle.py``, which does not import
expdecay) at the exact value of the step the framework was given, or with
hand-derived values (``decay_rate`` a power of two: every value is exact).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.arb_oracle import arb_evaluate
from support.bits import require_peers
from support.paths import SRC as SRC_DIR
from support.paths import TESTS

pytestmark = pytest.mark.peers

require_peers("keras", "tensorflow", "tf_keras", "jax", "torch")

HERE = TESTS
SRC = SRC_DIR
WIDTH = {"float16": np.uint16, "bfloat16": np.uint16, "float32": np.uint32,
         "float64": np.uint64}
BACKENDS = ("jax", "tensorflow", "torch")


def _env(backend: str) -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": backend, "JAX_ENABLE_X64": "1",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": f"{SRC}{os.pathsep}{HERE}{os.pathsep}" + os.environ.get("PYTHONPATH", "")}


def _python(code: str, backend: str, arg: Any = None, timeout: float = 600) -> Any:
    """Run ``code`` in a fresh interpreter under ``backend``; the JSON it prints last."""
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(arg)], capture_output=True,
                          text=True, env=_env(backend), timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# The worker: evaluates the cases it is given and prints their bits.
# ---------------------------------------------------------------------------

_WORKER = textwrap.dedent('''
    import json, sys
    import numpy as np
    import keras
    from keras import ops
    import expdecay.keras as ek

    B = keras.backend.backend()
    WIDTH = {2: np.uint16, 4: np.uint32, 8: np.uint64}

    def bits(x):
        name = keras.backend.standardize_dtype(x.dtype)
        if name == "bfloat16":  # not every backend hands bfloat16 to numpy: widen, exactly
            import ml_dtypes
            a = np.asarray(ops.convert_to_numpy(ops.cast(x, "float32"))).astype(
                ml_dtypes.bfloat16)
        else:
            a = np.asarray(ops.convert_to_numpy(x))
        a = a.reshape(())
        assert a.dtype.name == name, (a.dtype, name)
        return [a.dtype.name, int(a.view(WIDTH[a.dtype.itemsize]))]

    def tensor(value, dtype):
        return ops.convert_to_tensor(np.asarray(value, dtype=np.float64), dtype=dtype)

    def make_step(kind, value, dtype):
        if kind == "python":
            return float(value)
        if kind == "numpy":
            return np.asarray(value, dtype=np.float64).astype(dtype)[()]
        if kind == "variable":
            v = keras.Variable(0.0, dtype=dtype)
            v.assign(tensor(value, dtype))
            return v
        return tensor(value, dtype)

    def jitted(fn, dtype, xla=False):
        """fn compiled by the backend for a scalar float step of ``dtype``."""
        if B == "jax":
            import jax
            return jax.jit(fn)
        if B == "tensorflow":
            import tensorflow as tf
            return tf.function(fn, jit_compile=xla)
        import torch
        torch._dynamo.reset()  # each case is a new closure: no recompile limit
        return torch.compile(fn, backend="eager", fullgraph=True)

    def attempt(fn):
        try:
            return bits(fn())
        except Exception as e:  # reported, the test decides
            return ["error", type(e).__name__ + ": " + str(e)[:300]]

    out = []
    for case in json.loads(sys.argv[1]):
        args, kw = case["args"], case["kwargs"]
        cls = ek.ExponentialDecay
        if case.get("tf_keras"):
            cls = ek.TFKerasExponentialDecay
        try:
            s = cls(*args, **kw)
        except Exception as e:
            out.append(["error", type(e).__name__ + ": " + str(e)[:300]])
            continue
        res = []
        for kind, value, dtype in case["steps"]:
            if kind == "jit" or kind == "xla":
                f = jitted(lambda x: s(x), dtype, xla=kind == "xla")
                res.append(attempt(lambda: f(tensor(value, dtype))))
            elif kind == "int":
                res.append(attempt(lambda: s(int(value))))
            else:
                res.append(attempt(lambda: s(make_step(kind, value, dtype))))
        out.append(res)
    print(json.dumps(out))
''')


def _run_cases(backend: str, cases: list[dict[str, Any]]) -> list[Any]:
    res: list[Any] = _python(_WORKER, backend, cases)
    assert len(res) == len(cases)
    return res


def _exact_step(value: float, dtype: str) -> Any:
    """The exact value of ``value`` once stored in ``dtype`` (what the
    framework holds): a Fraction, or the float for nan/inf/-0."""
    if dtype == "bfloat16":
        import ml_dtypes

        x = float(np.asarray(value, dtype=np.float64).astype(ml_dtypes.bfloat16))
    else:
        x = float(np.asarray(value, dtype=np.float64).astype(dtype))
    return Fraction(x) if np.isfinite(x) and x != 0 else x


def _bits_of(x: float, dtype: str) -> int:
    if dtype == "bfloat16":
        import ml_dtypes

        arr = np.asarray(x, dtype=np.float64).astype(ml_dtypes.bfloat16)
    else:
        arr = np.asarray(x, dtype=np.float64).astype(dtype)
    return int(arr.reshape(()).view(WIDTH[dtype]))


def _arb_bits(args: list[Any], kw: dict[str, Any], step: Any) -> int:
    I, D, r = args[:3]
    dtype = kw.get("dtype", "float32")
    x = arb_evaluate(I, D, r, step, kw.get("staircase", False), dtype, kw.get("order", "keras"))
    if x != x:  # NaN: compare as "any NaN" by the canonical quiet NaN of the format
        return -1
    return _bits_of(x, dtype)


def _got_bits(got: list[Any], dtype: str) -> int:
    """The bits a worker reported, checked to be of ``dtype``; -1 for any NaN."""
    assert got[0] == dtype, got
    b = int(got[1])
    if dtype == "bfloat16":
        value = float(np.asarray(b << 16, np.uint32).view(np.float32))
    else:
        value = float(np.asarray(b, WIDTH[dtype]).view(dtype))
    return -1 if value != value else b


# ---------------------------------------------------------------------------
# Float steps: the value at the real step, as Keras computes it.
# ---------------------------------------------------------------------------

# (args, kwargs): continuous and staircase, keras and exact order, four formats.
FLOAT_SCHEDULES: list[tuple[list[Any], dict[str, Any]]] = [
    ([0.1, 3, 0.96], {}),
    ([0.1, 3, 0.96], {"staircase": True}),
    ([0.1, 3, 0.96], {"order": "exact"}),
    ([0.1, 100000, 0.96], {"dtype": "float64"}),
    ([0.1, 1000, 0.96], {"dtype": "float16"}),
    ([0.1, 7, 0.5], {"dtype": "bfloat16", "staircase": True}),
]
# (kind, step value, step dtype): Python floats, numpy values, variables and
# tensors; integral and not; beyond the int32 and int64 counters; the specials.
FLOAT_STEPS: list[tuple[str, float, str]] = [
    ("python", 1.5, "float32"), ("python", 2.0, "float32"), ("python", 0.25, "float32"),
    ("numpy", 1.5, "float32"), ("numpy", 1.5, "float64"), ("numpy", 100.5, "float16"),
    ("variable", 1.5, "float32"), ("variable", 100.0, "float32"),
    ("variable", -2.5, "float32"), ("variable", 7.0, "float64"),
    ("tensor", 1.5, "float16"), ("tensor", 2.5, "bfloat16"), ("tensor", 5.75, "float64"),
    ("tensor", 16777217.0, "float64"), ("tensor", 3e9 + 0.5, "float64"),
    ("tensor", 2.0**70, "float32"), ("tensor", float("nan"), "float32"),
    ("tensor", float("inf"), "float32"), ("tensor", -0.0, "float32"),
    ("jit", 1.5, "float32"), ("jit", 4.0, "float32"), ("jit", 1e10, "float64"),
    ("jit", 12345.678, "float64"), ("jit", float("-inf"), "float32"),
]


@pytest.fixture(scope="module")
def float_runs() -> dict[str, list[Any]]:
    cases = [{"args": a, "kwargs": k, "steps": FLOAT_STEPS} for a, k in FLOAT_SCHEDULES]
    cases.append({"args": [0.1, 3, 0.96], "kwargs": {}, "tf_keras": True,
                  "steps": [s for s in FLOAT_STEPS if s[0] != "variable"]})
    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = dict(zip(BACKENDS, pool.map(
            lambda b: _run_cases(b, cases if b == "tensorflow" else cases[:-1]), BACKENDS),
            strict=True))
    return outs


def test_hand_derived_float_steps() -> None:
    """The reference itself at non-integral steps, by hand: 0.25 ** 1.5 = 1/8,
    0.25 ** 2.25 = 2 ** -4.5 (irrational: its rounding interval holds it), staircase
    floors the real quotient."""
    assert arb_evaluate(1, 1, "0.25", Fraction(3, 2), False, "float64", "keras") == 0.125
    assert arb_evaluate(1, 2, "0.25", Fraction(7, 2), True, "float64", "keras") == 0.25
    v = arb_evaluate(1, 1, "0.25", Fraction(9, 4), False, "float64", "exact")
    lo = (Fraction(v) + Fraction(np.nextafter(v, 0.0))) / 2  # the rounding interval
    hi = (Fraction(v) + Fraction(np.nextafter(v, 1.0))) / 2
    assert lo**2 < Fraction(1, 2**9) < hi**2


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_steps_take_the_value_at_the_real_step(float_runs: Any, backend: str) -> None:
    checked = 0
    for (args, kw), results in zip(FLOAT_SCHEDULES, float_runs[backend], strict=False):
        dtype = kw.get("dtype", "float32")
        for (kind, value, sdtype), got in zip(FLOAT_STEPS, results, strict=True):
            assert got[0] != "error", (backend, args, kw, kind, value, sdtype, got)
            want = _arb_bits(args, kw, _exact_step(value, sdtype))
            assert _got_bits(got, dtype) == want, (backend, args, kw, kind, value, sdtype)
            checked += 1
    assert checked == len(FLOAT_SCHEDULES) * len(FLOAT_STEPS)


def test_tf_keras_float_steps(float_runs: Any) -> None:
    results = float_runs["tensorflow"][-1]
    steps = [s for s in FLOAT_STEPS if s[0] != "variable"]
    for (kind, value, sdtype), got in zip(steps, results, strict=True):
        want = _arb_bits([0.1, 3, 0.96], {}, _exact_step(value, sdtype))
        assert _got_bits(got, "float32") == want, (kind, value, sdtype, got)


def test_step_one_and_a_half_is_not_step_one() -> None:
    """Keras's own figure for ``ExponentialDecay(0.1, 3, 0.96)`` at step 1.5
    (0.09797959) against the value at the truncated step 1 (0.09864848)."""
    at_1_5 = _arb_bits([0.1, 3, 0.96], {}, Fraction(3, 2))
    at_1 = _arb_bits([0.1, 3, 0.96], {}, 1)
    assert np.asarray(at_1_5, np.uint32).view(np.float32) == np.float32(0.09797959)
    assert np.asarray(at_1, np.uint32).view(np.float32) == np.float32(0.09864848)


# ---------------------------------------------------------------------------
# TensorFlow under XLA: integral float steps from the table, others refused
# (or NaN once the steps are declared); integer steps unchanged.
# ---------------------------------------------------------------------------


def test_tensorflow_xla_float_steps() -> None:
    xla = [("xla", 2.0, "float32"), ("xla", 1.5, "float32"), ("xla", 99.0, "float64")]
    cases = [{"args": [0.1, 3, 0.96], "kwargs": {"staircase": True}, "steps": xla},
             {"args": [0.1, 3, 0.96], "kwargs": {"staircase": True, "horizon": 1000},
              "steps": xla}]
    undeclared, declared = _run_cases("tensorflow", cases)
    # the trace cannot know whether a float step is integral: refused up front
    for got in undeclared:
        assert got[0] == "error" and got[1].startswith("ValueError")
        assert "jit_compile=False" in got[1] and "horizon=" in got[1]
    args, kw = [0.1, 3, 0.96], {"staircase": True}
    assert _got_bits(declared[0], "float32") == _arb_bits(args, kw, 2)
    assert _got_bits(declared[1], "float32") == -1  # declared: a non-integral step is NaN
    assert _got_bits(declared[2], "float32") == _arb_bits(args, kw, 99)


# ---------------------------------------------------------------------------
# decay_rate = +-0: the sign of 0 ** p, every order, staircase, format.
# ---------------------------------------------------------------------------

ZERO_STEPS: list[tuple[str, float, str]] = [
    *[("int", float(k), "int64") for k in range(-3, 5)],
    ("tensor", 1.5, "float32"), ("tensor", 2.0, "float32"), ("tensor", 3.0, "float64"),
    ("jit", 1.0, "float32"), ("jit", 2.0, "float32"), ("jit", 0.0, "float32"),
]
ZERO_SCHEDULES = [([0.1, d, r], {"staircase": st, "order": order, "dtype": dtype})
                  for r in (0.0, -0.0) for d in (1, 2) for st in (False, True)
                  for order in ("keras", "exact") for dtype in ("float16", "float32", "float64")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_decay_rate_signed_zero(backend: str) -> None:
    cases = [{"args": a, "kwargs": k, "steps": ZERO_STEPS} for a, k in ZERO_SCHEDULES]
    results = _run_cases(backend, cases)
    for (args, kw), res in zip(ZERO_SCHEDULES, results, strict=True):
        for (kind, value, sdtype), got in zip(ZERO_STEPS, res, strict=True):
            assert got[0] != "error", (args, kw, kind, value, got)
            step = int(value) if kind == "int" else _exact_step(value, sdtype)
            want = _arb_bits(args, kw, step)
            assert _got_bits(got, kw["dtype"]) == want, (backend, args, kw, kind, value)


def test_decay_rate_negative_zero_at_step_two_by_hand() -> None:
    """(-0) ** 2 = +0 and (-0) ** 1 = -0 (C99 pow), times 0.1: +0.0 and -0.0."""
    cases = [{"args": [0.1, 1, -0.0], "kwargs": {"order": "exact"},
              "steps": [("int", 2.0, "int64"), ("int", 1.0, "int64")]}]
    (res,) = _run_cases("jax", cases)
    assert res == [["float32", 0x00000000], ["float32", 0x80000000]]


# ---------------------------------------------------------------------------
# Construction never hangs (saturated and underflowing schedules).
# ---------------------------------------------------------------------------

_BUILD = textwrap.dedent('''
    import json, sys
    import numpy as np
    import expdecay, expdecay.keras as ek
    args, kw = json.loads(sys.argv[1])
    s = ek.ExponentialDecay(*args, **kw)
    steps = [0, 1, 999, 1000, 5000, 2**40]
    got = [int(np.asarray(s(k)).view(np.uint32)) for k in steps]
    print(json.dumps(got))
''')


@pytest.mark.parametrize("args, kw", [
    ([0.0, 1000, 0.5], {"staircase": True}),
    ([5e-324, 1000, 0.5], {"staircase": True}),
    ([5e-324, 1000, 0.5], {}),
])
def test_degenerate_schedules_build_in_bounded_time(args: list[Any], kw: dict[str, Any]) -> None:
    """I = 0, and I = 5e-324 (0 once cast to float32): every value is +0."""
    try:
        got = _python(_BUILD, "jax", [args, kw], timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"expdecay.keras.ExponentialDecay(*{args}, **{kw}) did not return in 120 s")
    assert got == [0] * 6


# ---------------------------------------------------------------------------
# Saving: model.save, then load_model in a fresh process, trains on with the
# same bits.
# ---------------------------------------------------------------------------

_TRAIN = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    job = json.loads(sys.argv[1])
    TFK = job["kind"] == "tf_keras"
    if TFK:
        import tf_keras as K
    else:
        import keras as K
    import expdecay.keras
    W = {4: np.uint32, 8: np.uint64}

    def bits(a):
        a = np.asarray(a)
        return [int(x) for x in a.reshape(-1).view(W[a.dtype.itemsize])]

    x = np.arange(16, dtype="float32").reshape(8, 2) / 8
    y = (x @ np.array([[1.0], [-2.0]], dtype="float32")).astype("float32")
    if job["phase"] == "save":
        cls = expdecay.keras.TFKerasExponentialDecay if TFK else expdecay.keras.ExponentialDecay
        lr = cls(0.1, 2, 0.5, staircase=job["staircase"])
        K.utils.set_random_seed(1)
        model = K.Sequential([K.Input((2,)), K.layers.Dense(1)])
        model.compile(optimizer=K.optimizers.SGD(learning_rate=lr), loss="mse")
        model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)
        model.save(job["path"])
    else:
        model = K.models.load_model(job["path"])
    lr = model.optimizer._learning_rate if TFK else model.optimizer._learning_rate
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)
    print(json.dumps({"weights": [bits(w) for w in model.get_weights()],
                      "iterations": int(np.asarray(model.optimizer.iterations)),
                      "class": type(lr).__module__ + "." + type(lr).__name__,
                      "config": lr.get_config()}))
''')


@pytest.mark.parametrize("backend, kind", [("jax", "keras3"), ("tensorflow", "keras3"),
                                           ("torch", "keras3"), ("tensorflow", "tf_keras")])
def test_save_then_load_in_a_fresh_process_trains_on(tmp_path: Path, backend: str,
                                                      kind: str) -> None:
    path = str(tmp_path / ("m.keras"))
    job = {"kind": kind, "path": path, "staircase": False}
    # process 1: train 4 steps, save, train 4 more
    saved = _python(_TRAIN, backend, {**job, "phase": "save"})
    # process 2 (fresh): import keras and expdecay.keras only, load, train 4 more
    loaded = _python(_TRAIN, backend, {**job, "phase": "load"})
    assert loaded["class"] == saved["class"] == (
        "expdecay.keras." + ("TFKerasExponentialDecay" if kind == "tf_keras"
                             else "ExponentialDecay"))
    assert loaded["config"] == saved["config"]
    assert loaded["iterations"] == saved["iterations"] == 8
    assert loaded["weights"] == saved["weights"]


def test_load_needs_only_the_import_of_expdecay_keras(tmp_path: Path) -> None:
    """Without ``import expdecay.keras`` Keras cannot find the class (it
    imports nothing outside its own packages); with it, loading works: the
    other test does exactly that in a fresh process."""
    path = str(tmp_path / "m.keras")
    _python(_TRAIN, "jax", {"kind": "keras3", "path": path, "staircase": True,
                            "phase": "save"})
    code = ("import sys, json, keras\n"
            "try:\n"
            "    keras.models.load_model(json.loads(sys.argv[1]))\n"
            "    print(json.dumps('loaded'))\n"
            "except Exception as e:\n"
            "    print(json.dumps(type(e).__name__))\n")
    assert _python(code, "jax", path) != "loaded"


def test_tf_keras_class_registered_on_import() -> None:
    """Under the tensorflow backend (TensorFlow loaded), importing
    expdecay.keras registers the tf.keras class before anything touches it."""
    code = textwrap.dedent('''
        import json
        import keras
        import expdecay.keras
        import tf_keras
        cls = tf_keras.saving.get_registered_object("expdecay>TFKerasExponentialDecay")
        print(json.dumps(None if cls is None else cls.__module__ + "." + cls.__qualname__))
    ''')
    assert _python(code, "tensorflow") == "expdecay.keras.TFKerasExponentialDecay"


def test_pickle_round_trip() -> None:
    code = textwrap.dedent('''
        import json, pickle
        import numpy as np
        import expdecay.keras as ek
        out = []
        for cls in (ek.ExponentialDecay, ek.TFKerasExponentialDecay):
            s = cls("0.1", 1000, np.float32(0.96), staircase=True, name="n", dtype="float64",
                    order="exact", first_step=5)
            t = pickle.loads(pickle.dumps(s))
            out.append([type(t).__qualname__, t.get_config() == s.get_config(),
                        [float(np.asarray(t.host(k))) for k in (0, 4000, 10**6)]])
        print(json.dumps(out))
    ''')
    got = _python(code, "tensorflow")
    want = [arb_evaluate("0.1", 1000, float(np.float32(0.96)), k, True, "float64", "exact")
            for k in (0, 4000, 10**6)]
    assert got == [["ExponentialDecay", True, want], ["TFKerasExponentialDecay", True, want]]


# ---------------------------------------------------------------------------
# Bad input: TypeError / ValueError naming the argument and the value.
# ---------------------------------------------------------------------------

_BAD = textwrap.dedent('''
    import json, sys
    import numpy as np
    import keras
    import expdecay.keras as ek
    out = []
    for args, kw, step in json.loads(sys.argv[1]):
        try:
            s = ek.ExponentialDecay(*args, **kw)
            s(step if step != "bool" else True)
            out.append(["ok", ""])
        except (TypeError, ValueError) as e:
            out.append([type(e).__name__, str(e)])
    print(json.dumps(out))
''')

BAD = [
    (([0.1, 0, 0.96], {}, 1), "ValueError", ["decay_steps", "0"]),
    (([0.1, -5, 0.96], {}, 1), "ValueError", ["decay_steps", "-5"]),
    (([0.1, 10, -0.5], {}, 1), "ValueError", ["decay_rate", "-0.5"]),
    (([0.1, 10, "nan"], {}, 1), "ValueError", ["decay_rate", "nan"]),
    ((["inf", 10, 0.5], {}, 1), "ValueError", ["initial_learning_rate", "inf"]),
    ((["abc", 10, 0.5], {}, 1), "ValueError", ["initial_learning_rate", "abc"]),
    (([[0.1, 0.2], 10, 0.5], {}, 1), "TypeError", ["initial_learning_rate", "[0.1, 0.2]"]),
    (([0.1, 10, 0.5], {"staircase": "yes"}, 1), "TypeError", ["staircase", "yes"]),
    (([0.1, 10, 0.5], {"order": "fast"}, 1), "ValueError", ["order", "fast"]),
    (([0.1, 10, 0.5], {"horizon": 1.5}, 1), "TypeError", ["horizon", "1.5"]),
    (([0.1, 10, 0.5], {"first_step": "3"}, 1), "TypeError", ["first_step", "3"]),
    (([0.1, 10, 0.5], {"max_entries": 0}, 1), "ValueError", ["max_entries", "0"]),
    (([0.1, 10, 0.5], {"dtype": "int32"}, 1), "ValueError", ["int32"]),
    (([0.1, 10, 0.5], {"name": 7}, 1), "TypeError", ["name", "7"]),
    (([0.1, 10, 0.5], {}, "bool"), "TypeError", ["step", "bool"]),
    (([0.1, 10, 0.5], {}, "3"), "TypeError", ["step"]),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_names_the_argument(backend: str) -> None:
    got = _python(_BAD, backend, [case for case, _, _ in BAD])
    for (case, etype, words), (kind, msg) in zip(BAD, got, strict=True):
        assert kind == etype, (case, kind, msg)
        for w in words:
            assert w in msg, (case, msg)
