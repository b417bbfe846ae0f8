"""The verified schedule inside real training loops (spec/training.md).

Keras reads its backend when it is imported, so every backend runs in its own
process (``train_worker.py``, started once per module with all its jobs):
jax with 64-bit mode, jax without it (int32 counters), tensorflow (Keras 3 and
tf.keras) and torch (Keras 3 and plain torch).  Each job trains a tiny model
and records, at every step, the learning rate the optimizer *applied* inside
the compiled step (a recording SGD keeps it in a variable) and, for Keras 3,
``optimizer.learning_rate`` read after the step.  The tests compare those
bits with :class:`expdecay.ExponentialDecay` at the same steps (itself checked
against the oracle and Arb elsewhere) and with hand-derived exact values
(``decay_rate`` 0.5 and ``initial_learning_rate`` 1: every value is a power
of two, or 0 once it underflows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import expdecay
from expdecay.floats import get_format
from support.bits import require_peers
from support.paths import SRC as SRC_DIR
from support.paths import SUPPORT, TESTS

pytestmark = pytest.mark.peers

require_peers("keras", "tensorflow", "tf_keras", "jax", "optax", "torch")

HERE = TESTS
SRC = SRC_DIR
RESUME = 16_777_990  # above 2**24: float32 step casts round here
WIDTH = {"float16": np.uint16, "bfloat16": np.uint16, "float32": np.uint32,
         "float64": np.uint64}

# The schedules: a continuous one whose table must be bounded (declared steps
# under TensorFlow+XLA), a staircase one whose table is complete, and the
# hand-derived one.
CONT = [0.1, 100000, 0.96]
STAIR = [0.1, 1000, 0.96]
HALF = [1.0, 2, 0.5]


def _declared(start: int) -> dict[str, int]:
    return {"first_step": start, "horizon": start + 64}


def _keras_jobs(dtypes: list[str], tf_xla: bool) -> list[dict[str, Any]]:
    jobs = []
    for dtype in dtypes:
        for start in (0, RESUME) if dtype == "float32" else (RESUME,):
            cont_kwargs = {"dtype": dtype, **(_declared(start) if tf_xla else {})}
            jobs.append({"kind": "keras3", "dtype": dtype, "args": CONT, "kwargs": cont_kwargs,
                         "jit": True, "start": start, "steps": 5})
        jobs.append({"kind": "keras3", "dtype": dtype, "args": HALF,
                     "kwargs": {"staircase": True, "dtype": dtype}, "jit": True,
                     "start": 0, "steps": 6})
    jobs.append({"kind": "keras3", "dtype": "float64", "args": [1.0, 1, 0.5],
                 "kwargs": {"dtype": "float64", "order": "exact"}, "jit": True,
                 "start": 0, "steps": 4})
    # Across the float32 misfloor at 16,777,999 (the step casts to 16,778,000),
    # then saved and loaded.
    jobs.append({"kind": "keras3", "dtype": "float32", "args": STAIR,
                 "kwargs": {"staircase": True}, "jit": True, "start": 16_777_996, "steps": 5,
                 "save": True})
    return jobs


def _optax_jobs(dtypes: list[str], start: int) -> list[dict[str, Any]]:
    return [{"kind": "optax", "dtype": d, "args": CONT, "kwargs": {"dtype": d}, "start": s,
             "steps": 4, "direct": [0, 1, 99999, 100000, RESUME, 2**31 - 1]}
            for d in dtypes for s in (0, start)]


JOBS: dict[str, tuple[dict[str, str], list[dict[str, Any]]]] = {
    "jax64": ({"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"},
              _keras_jobs(["float32", "float64"], False)
              + _optax_jobs(["float32", "float64"], RESUME)),
    "jax32": ({"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "0"}, [
        {"kind": "keras3", "dtype": "float32", "args": CONT, "kwargs": {}, "jit": True,
         "start": 2**31 - 3, "steps": 3},
        {"kind": "keras3", "dtype": "float32", "args": CONT, "kwargs": {"dtype": "float64"},
         "jit": True, "start": 0, "steps": 1},
        {"kind": "keras3", "dtype": "float32", "args": CONT, "kwargs": {}, "jit": False,
         "start": RESUME, "steps": 3},
        *_optax_jobs(["float32"], 2**31 - 3),
    ]),
    "tensorflow": ({"KERAS_BACKEND": "tensorflow"}, [
        *_keras_jobs(["float32", "float64"], True),
        {"kind": "keras3", "dtype": "float32", "args": CONT, "kwargs": {}, "jit": False,
         "start": RESUME, "steps": 3},
        {"kind": "keras3", "dtype": "float32", "args": CONT, "kwargs": {}, "jit": True,
         "start": RESUME, "steps": 1},
        *[{"kind": "tf_keras", "dtype": d, "args": CONT,
           "kwargs": {"dtype": d, **_declared(s)}, "jit": True, "start": s, "steps": 4}
          for d in ("float32", "float64") for s in (0, RESUME)],
        {"kind": "tf_keras", "dtype": "float32", "args": CONT, "kwargs": {}, "jit": False,
         "start": RESUME, "steps": 3},
    ]),
    "torch": ({"KERAS_BACKEND": "torch"}, [
        *_keras_jobs(["float32", "float64"], False),
        {"kind": "keras3", "dtype": "float32", "args": CONT, "kwargs": {}, "jit": False,
         "start": RESUME, "steps": 3},
        # each format from both starts, each start with and without compile
        *[{"kind": "torch", "dtype": d, "args": CONT[1:], "kwargs": {"dtype": d},
           "start": s, "steps": 4, "compile": c}
          for d, s, c in (("float32", 0, False), ("float32", RESUME, True),
                          ("float64", 0, True), ("float64", RESUME, False))],
    ]),
}


def _run(name: str) -> list[dict[str, Any]]:
    env_extra, jobs = JOBS[name]
    env = {**os.environ, **env_extra, "PYTHONPATH": f"{SRC}{os.pathsep}"
           + os.environ.get("PYTHONPATH", ""), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(SUPPORT / "train_worker.py"), json.dumps(jobs)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(jobs)
    return results


@pytest.fixture(scope="module")
def runs() -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = dict(zip(JOBS, pool.map(_run, JOBS), strict=True))
    return {k: list(zip(JOBS[k][1], outs[k], strict=True)) for k in JOBS}


def expected_bits(job: dict[str, Any], steps: list[int]) -> list[int]:
    """expdecay's own values, as bits of the format."""
    kw = dict(job.get("kwargs", {}))
    order = kw.pop("order", "keras")
    for k in ("first_step", "horizon", "max_entries"):
        kw.pop(k, None)
    if job["kind"] == "torch":
        s = expdecay.ExponentialDecay(0.5, *job["args"], **kw)
    else:
        s = expdecay.ExponentialDecay(*job["args"], **kw)
    arr = np.asarray(steps, dtype=np.int64)
    values = s(arr) if order == "keras" else s.exact(arr)
    return [int(b) for b in values.view(WIDTH[s.format.name])]


def power_of_two_bits(exponent: int, dtype: str) -> int:
    """Hand-derived: the bits of 2**exponent (0 below the smallest subnormal)."""
    fmt = get_format(dtype)
    mant = fmt.precision - 1
    bias = (1 << (fmt.width - mant - 2)) - 1
    if exponent + bias >= 1:
        return (exponent + bias) << mant
    shift = exponent + bias - 1 + mant
    return 1 << shift if shift >= 0 else 0


def _ok(job: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    assert "error" not in res, (job, res["error"])
    return res


def _keras_results(runs: Any, backend: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The Keras 3 jobs expected to train (all but TensorFlow's undeclared
    continuous ones, tested on their own)."""
    return [(j, _ok(j, r)) for j, r in runs[backend] if j["kind"] == "keras3" and j["kwargs"]]


@pytest.mark.parametrize("backend", ["jax64", "tensorflow", "torch"])
def test_keras3_applied_bits_equal_expdecay(runs: Any, backend: str) -> None:
    checked = 0
    for job, res in _keras_results(runs, backend):
        steps = [r[0] for r in res["records"]]
        assert steps == list(range(job["start"], job["start"] + job["steps"])), job
        applied = [r[1] for r in res["records"]]
        assert applied == expected_bits(job, steps), job
        after = [r[2] for r in res["records"]]
        assert [r[3] for r in res["records"]] == expected_bits(job, after), job
        checked += 1
    assert checked >= 7


@pytest.mark.parametrize("backend", ["jax64", "tensorflow", "torch"])
def test_keras3_hand_derived_powers_of_two(runs: Any, backend: str) -> None:
    seen = 0
    for job, res in runs[backend]:
        if job["kind"] != "keras3" or job["args"][0] != 1.0:
            continue
        _ok(job, res)
        staircase = job["kwargs"].get("staircase", False)
        for step, applied, *_ in res["records"]:
            k = step // 2 if staircase else step  # D = 2 staircase, D = 1 continuous
            assert applied == power_of_two_bits(-k, job["dtype"]), (job, step)
            seen += 1
    assert seen == 2 * 6 + 4


def test_three_backends_agree_bit_for_bit(runs: Any) -> None:
    def key(job: dict[str, Any]) -> str:
        kw = {k: v for k, v in job["kwargs"].items() if k not in ("first_step", "horizon")}
        return json.dumps([job["args"], kw, job["dtype"], job["start"], job["steps"]])

    tables = []
    for backend in ("jax64", "tensorflow", "torch"):
        tables.append({key(j): [r[1] for r in res["records"]]
                       for j, res in runs[backend]
                       if j["kind"] == "keras3" and "records" in res})
    common = set(tables[0]) & set(tables[1]) & set(tables[2])
    assert len(common) >= 7
    for k in common:
        assert tables[0][k] == tables[1][k] == tables[2][k], k


def test_keras3_int32_counter_near_its_limit(runs: Any) -> None:
    job, res = runs["jax32"][0]
    res = _ok(job, res)
    assert res["iter_dtype"] == "int32"
    steps = [r[0] for r in res["records"]]
    assert steps == [2**31 - 3, 2**31 - 2, 2**31 - 1]
    assert [r[1] for r in res["records"]] == expected_bits(job, steps)
    # Keras's counter wraps after 2**31 - 1; the value read then is expdecay's
    # value at the counter's (negative) value, never a table's clamped entry.
    after = [r[2] for r in res["records"]]
    assert after[-1] == -(2**31)
    assert [r[3] for r in res["records"]] == expected_bits(job, after)


def test_jax_without_x64_refuses_float64_clearly(runs: Any) -> None:
    _, res = runs["jax32"][1]
    assert res["error"].startswith("ValueError") and "jax_enable_x64" in res["error"]


@pytest.mark.parametrize("backend", ["jax32", "torch"])
def test_keras3_jit_off_open_steps_from_the_host(runs: Any, backend: str) -> None:
    job, res = next((j, r) for j, r in runs[backend] if j["kind"] == "keras3"
                    and not j["jit"])
    steps = [r[0] for r in _ok(job, res)["records"]]
    assert steps == [RESUME, RESUME + 1, RESUME + 2]
    assert [r[1] for r in res["records"]] == expected_bits(job, steps)


def test_tensorflow_xla_refuses_open_table_and_host_route_without_xla(runs: Any) -> None:
    by_kind = [(j, r) for j, r in runs["tensorflow"] if not j["kwargs"] and j["args"] == CONT]
    (nojit, r1), (jit, r2), (tfk, r3) = by_kind
    assert not nojit["jit"] and jit["jit"] and tfk["kind"] == "tf_keras"
    steps = [r[0] for r in _ok(nojit, r1)["records"]]
    assert [r[1] for r in r1["records"]] == expected_bits(nojit, steps)
    assert r2["error"].startswith("ValueError") and "jit_compile=False" in r2["error"]
    steps = [r[0] for r in _ok(tfk, r3)["records"]]
    assert [r[1] for r in r3["records"]] == expected_bits(tfk, steps)


def test_tf_keras_applied_bits(runs: Any) -> None:
    jobs = [(j, _ok(j, r)) for j, r in runs["tensorflow"] if j["kind"] == "tf_keras"]
    assert len(jobs) == 5
    for job, res in jobs:
        steps = [r[0] for r in res["records"]]
        assert steps == list(range(job["start"], job["start"] + job["steps"]))
        assert [r[1] for r in res["records"]] == expected_bits(job, steps), job
        assert res["iter_dtype"] == "int64"


@pytest.mark.parametrize("backend", ["jax64", "jax32"])
def test_optax_jitted_loop_under_inject_hyperparams(runs: Any, backend: str) -> None:
    jobs = [(j, _ok(j, r)) for j, r in runs[backend] if j["kind"] == "optax"]
    assert jobs
    for job, res in jobs:
        steps = [r[0] for r in res["records"]]
        # optax's int32 counters saturate at 2**31 - 1 (safe_increment)
        assert steps == [min(s, 2**31 - 1)
                         for s in range(job["start"], job["start"] + job["steps"])]
        want = expected_bits(job, steps)
        assert [r[1] for r in res["records"]] == want  # the injected hyperparameter
        assert [r[2] for r in res["records"]] == want  # -update of a unit gradient
        direct = res["direct"]
        assert [d[1] for d in direct] == expected_bits(job, [d[0] for d in direct])
        assert res["count_dtype"] == "int32"


def test_torch_loop_with_and_without_compile(runs: Any) -> None:
    jobs = [(j, _ok(j, r)) for j, r in runs["torch"] if j["kind"] == "torch"]
    assert len(jobs) == 4
    for job, res in jobs:
        steps = [r[0] for r in res["records"]]
        assert steps == list(range(job["start"], job["start"] + job["steps"]))
        want = expected_bits(job, steps)
        assert [r[1] for r in res["records"]] == want, job  # the group's tensor lr
        assert [r[2] for r in res["records"]] == want, job  # w = 0 - lr * 1
        # state_dict through torch.save / torch.load(weights_only=True)
        assert res["resumed"] == res["next"]
        assert res["next"][0] == job["start"] + job["steps"] + 1


@pytest.mark.parametrize("backend", ["jax64", "tensorflow", "torch"])
def test_keras3_model_save_and_load(runs: Any, backend: str) -> None:
    job, res = next((j, r) for j, r in runs[backend] if j.get("save"))
    res = _ok(job, res)
    assert res["loaded_class"] == "expdecay.keras.ExponentialDecay"
    assert res["loaded_config"] == {
        "initial_learning_rate": 0.1, "decay_steps": 1000, "decay_rate": 0.96,
        "staircase": True, "name": "ExponentialDecay", "dtype": "float32", "order": "keras",
        "horizon": None, "first_step": 0, "max_entries": 1 << 20}
    end = job["start"] + job["steps"]
    assert res["loaded_iterations"] == end
    assert res["loaded_lr"] == expected_bits(job, [end])[0]
