"""The adapters of tf.compat.v1, jax.example_libraries, MLX, Paddle, timm
and MindSpore, run for real on hand-derived cases.

Expected values are exact: a rate of 0.5 (or 0.25 over two steps) makes
every output the initial rate times a power of two, and ``Fraction``
arithmetic gives the rest.  A missing framework skips locally but fails in
CI (CI=true), except MindSpore, which CI does not install (2.5 GB): its
tests check the report of a missing install, the only code path that runs
without it.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from expdecay.conformance.adapters import (
    AdapterError,
    Params,
    available_adapters,
    default_configurations,
    get_adapter,
    missing_configurations,
)
from expdecay.conformance.adapters.mapping import per_step_rate
from expdecay.conformance.runner import check_implementation
from expdecay.conformance.vectors import Group, encode_number, make_tests
from support.bits import IN_CI
from support.paths import MUTANT_DIR

if TYPE_CHECKING:
    from conftest import AdapterPool

F32 = np.float32
if str(MUTANT_DIR) not in sys.path:
    sys.path.insert(0, str(MUTANT_DIR))  # the workers inherit sys.path


def adapter(pool: AdapterPool, name: str, **options: Any) -> Any:
    """The module's worker for ``name`` and ``options`` (skipped when missing)."""
    if name not in available_adapters():
        if IN_CI and name != "mindspore":
            pytest.fail(f"{name} is not installed in CI")
        pytest.skip(f"{name} not installed")
    return pool.get(name, options)


def f32(x: float) -> float:
    return float(F32(x))


def powers(I: float, steps: list[int], exponent: Any) -> list[float]:
    """``I * 2**-exponent(s)`` for each step, exactly (I a value of the format)."""
    return [float(Fraction(I) * Fraction(1, 2 ** exponent(s))) for s in steps]


# ---------------------------------------------------------------------------
# The mapping helper
# ---------------------------------------------------------------------------


def test_per_step_rate_is_exact_or_none() -> None:
    assert per_step_rate(0.25, 2) == 0.5
    assert per_step_rate(0.125, 3) == 0.5
    assert per_step_rate(2**900, 300) == 8.0
    assert per_step_rate(0.96, 1) == 0.96  # D = 1: the rate itself
    assert per_step_rate(0.96, 1000) is None  # no float g with g**1000 == 0.96
    assert per_step_rate(0.5, 2) is None  # sqrt(0.5) is irrational
    assert per_step_rate(0.25, 2.5) is None and per_step_rate(0.25, 0) is None
    assert per_step_rate(-0.25, 2) is None and per_step_rate(-0.0, 2) is None
    assert per_step_rate(0.0, 7) == 0.0 and per_step_rate(1.0, 7) == 1.0
    assert math.isnan(per_step_rate(math.nan, 3))  # type: ignore[arg-type]
    # 3**30 over 10 steps is 27 per step; 3**30 + 2 is no tenth power
    assert per_step_rate(float(3**30), 10) == 27.0
    assert per_step_rate(float(3**30 + 2), 10) is None


# ---------------------------------------------------------------------------
# tf.compat.v1.train.exponential_decay
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_tf_compat_v1_exact_powers(dtype: str, adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "tf-compat-v1")
    steps = [0, 1, 2, 3, 7, 20]
    got = a.evaluate(Params(0.5, 2, 0.25, False, dtype), steps)
    assert got.tolist() == powers(0.5, steps, lambda s: s)  # 0.25 ** (s/2) = 2**-s
    got = a.evaluate(Params(0.5, 3, 0.5, True, dtype), steps)
    assert got.tolist() == powers(0.5, steps, lambda s: s // 3)


def test_tf_compat_v1_float32_casts(adapter_pool: AdapterPool) -> None:
    """decay_steps 16777217 is 2**24 in float32, and so is step 16777216:
    the keras order decays one whole period (0.5) where the exact schedule,
    16777216 / 16777217 < 1, has not decayed at all (1.0)."""
    a = adapter(adapter_pool, "tf-compat-v1")
    got = a.evaluate(Params(1.0, 16777217, 0.5, True, "float32"), [16777216, 16777215])
    assert got.tolist() == [0.5, 1.0]
    got = a.evaluate(Params(1.0, 16777217, 0.5, True, "float64"), [16777216, 16777217])
    assert got.tolist() == [1.0, 0.5]


def test_tf_compat_v1_scalar_mode_matches_array_mode(adapter_pool: AdapterPool) -> None:
    arr = adapter(adapter_pool, "tf-compat-v1")
    sca = adapter(adapter_pool, "tf-compat-v1", step_mode="scalar")
    p = Params(0.1, 1000, 0.96, False, "float32")
    steps = [0, 1, 999, 1000, 123456]
    assert sca.evaluate(p, steps).tolist() == arr.evaluate(p, steps).tolist()


# ---------------------------------------------------------------------------
# jax.example_libraries.optimizers.exponential_decay
# ---------------------------------------------------------------------------


def test_jax_example_libraries_continuous_only(adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "jax-example-libraries")
    steps = [0, 1, 2, 5, 30]
    got = a.evaluate(Params(0.5, 2, 0.25, False, "float32"), steps)
    assert got.tolist() == powers(0.5, steps, lambda s: s)
    why = a.applicable(Params(0.5, 2, 0.25, True, "float32"))
    assert why and "staircase" in why
    why = a.applicable(Params(0.5, 2, 0.25, False, "float64"))
    assert why and "float32" in why
    out = a.evaluate_outcome(Params(0.5, 2, 0.25, False, "float32"), [2**31, 4])
    assert 0 in out.not_applicable and out.values[1] == 0.5 / 16


def test_jax_example_libraries_x64_float64(adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "jax-example-libraries", x64=True)
    [got] = a.evaluate(Params(0.1, 1000, 0.96, False, "float64"), [500])
    assert got == pytest.approx(0.1 * 0.96**0.5, rel=4 * 2**-52)
    assert float(F32(got)) != got  # computed in float64
    assert a.applicable(Params(0.1, 1000, 0.96, False, "float32"))


# ---------------------------------------------------------------------------
# MLX
# ---------------------------------------------------------------------------


def test_mlx_step_decay_and_exponential_decay(adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "mlx")
    steps = [0, 1, 2, 3, 5, 6, 20]
    got = a.evaluate(Params(0.5, 3, 0.5, True, "float32"), steps)
    assert got.tolist() == powers(0.5, steps, lambda s: s // 3)
    # 0.25 over 2 steps is 0.5 per step: exponential_decay(0.5, 0.5)
    got = a.evaluate(Params(0.5, 2, 0.25, False, "float32"), steps)
    assert got.tolist() == powers(0.5, steps, lambda s: s)
    [got1] = a.evaluate(Params(0.1, 1, 0.96, False, "float32"), [1])
    assert got1 == float(F32(0.1) * F32(0.96))  # pow(r, 1) = r, one rounding


def test_mlx_floor_is_integer_division(adapter_pool: AdapterPool) -> None:
    """step_decay floors in uint64 (step // step_size): at step 16777999 it
    keeps 16777 periods where float32 arithmetic gets 16778."""
    a = adapter(adapter_pool, "mlx")
    [got] = a.evaluate(Params(1.0, 1000, 0.999, True, "float32"), [16777999])
    right = Fraction(f32(0.999)) ** 16777
    assert got == pytest.approx(float(right), rel=2**-20)
    assert abs(got / float(Fraction(f32(0.999)) ** 16778) - 1 / 0.999) < 1e-6


def test_mlx_reports_what_it_cannot_express(adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "mlx")
    why = a.applicable(Params(0.1, 1000, 0.96, False, "float32"))
    assert why and "rate per step" in why
    why = a.applicable(Params(0.1, 2.5, 0.96, True, "float32"))
    assert why and "integer step_size" in why
    why = a.applicable(Params(0.1, 3, 0.5, True, "float64"))
    assert why and "float32" in why
    out = a.evaluate_outcome(Params(0.5, 3, 0.5, True, "float32"), [-1, 2.5, 3])
    assert set(out.not_applicable) == {0, 1} and out.values[2] == 0.25
    # MLX refuses step_size < 1 itself: an invalid test passes with its error
    out = a.evaluate_outcome(Params(0.5, 0, 0.5, True, "float32"), [1])
    assert "step_size" in out.errors[0]


# ---------------------------------------------------------------------------
# Paddle
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_paddle_classes_map_exactly(dtype: str, adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "paddle")
    steps = [0, 1, 2, 3, 5, 6, 20]
    got = a.evaluate(Params(0.5, 3, 0.5, True, dtype), steps)  # StepDecay(3, 0.5)
    assert got.tolist() == powers(0.5, steps, lambda s: s // 3)
    got = a.evaluate(Params(0.5, 2, 0.25, False, dtype), steps)  # ExponentialDecay(0.5)
    assert got.tolist() == powers(0.5, steps, lambda s: s)


def test_paddle_reports_what_it_cannot_express_and_what_it_refuses(
        adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "paddle")
    why = a.applicable(Params(0.1, 1000, 0.96, False, "float64"))
    assert why and "rate per epoch" in why
    why = a.applicable(Params(0.1, 2.5, 0.96, True, "float64"))
    assert why and "integer step_size" in why
    # gamma >= 1 is refused by Paddle (a valid schedule of the spec: raised)
    out = a.evaluate_outcome(Params(0.1, 3, 1.5, True, "float64"), [1])
    assert "gamma" in out.errors[0]
    out = a.evaluate_outcome(Params(0.1, 1, 1.5, False, "float64"), [1])
    assert "gamma" in out.errors[0]


def test_paddle_legacy_function_ignores_decay_steps(adapter_pool: AdapterPool) -> None:
    """paddle.optimizer.lr.exponential_decay(0.1, 1000, 0.5): epoch 1000
    should be 0.1 * 0.5 = 0.05; Paddle returns 0.1 * 0.5 ** 1000."""
    a = adapter(adapter_pool, "paddle", api="legacy")
    got = a.evaluate(Params(0.1, 1000, 0.5, False, "float64"), [0, 1000])
    assert got[0] == 0.1
    assert got[1] == float(Fraction(0.1) / 2**1000) != 0.05
    assert f"{got[1]:.2g}" == "9.3e-303"
    # staircase dropped too: a fractional epoch is not floored
    [frac] = a.evaluate(Params(0.5, 4, 0.25, True, "float64"), [2.5])
    assert frac == 0.5 * 0.25**2.5 == 0.5 / 32


def _doc(g: Group) -> dict[str, Any]:
    """A one-group vector document with the generator's expectations."""
    tests = make_tests(g, list(range(1, len(g.cases) + 1)))
    return {"algorithm": "ExponentialDecay", "testGroups": [{
        "type": "ScheduleTest", "comment": "", "dtype": g.dtype, "staircase": g.staircase,
        "initialLearningRate": encode_number(g.initial_learning_rate),
        "decaySteps": encode_number(g.decay_steps), "decayRate": encode_number(g.decay_rate),
        "tests": tests}]}


def _causes(name: str, options: dict[str, Any], g: Group) -> dict[tuple[str, Any], Any]:
    """(profile, step) -> the diagnosis of each failure of the run."""
    out = {}
    for rep in check_implementation(name, options, {"t.json": _doc(g)}, ("keras", "exact"),
                                    rerun=False):
        for f in rep.files:
            for e in f.failures:
                out[(rep.profile, e["inputs"]["step"])] = (
                    e["diagnosis"], e["causeIds"], e.get("alternatives"))
    return out


def test_the_runner_proves_the_paddle_legacy_bug(adapter_pool: AdapterPool) -> None:
    """Integer epochs: decay-steps-ignored (the floor of s / 1 is s, so a
    dropped staircase is invisible); a fractional epoch of a staircase
    group shows both arguments dropped."""
    adapter(adapter_pool, "paddle", api="legacy")
    g = Group("float64", True, 0.5, 4, 0.25).add(2.5, "fractional").add(12, "integer")
    got = _causes("paddle", {"api": "legacy"}, g)
    # one explanation of the schedule's outputs: both arguments dropped
    assert got[("keras", "12")] == ("proven", ["staircase-ignored",
                                               "decay-steps-ignored"], None)
    assert got[("keras", "0x1.4p+1")] == ("proven", ["staircase-ignored",
                                                     "decay-steps-ignored"], None)
    g = Group("float64", False, 0.1, 1000, 0.5).add(1000, "one period").add(0, "start")
    got = _causes("paddle", {"api": "legacy"}, g)
    assert got[("keras", "1000")] == ("proven", ["decay-steps-ignored"], None)


def test_the_diagnosis_separates_both_arguments_dropped() -> None:
    """The same two mistakes made by a Python callable (no framework)."""
    g = Group("float64", True, 0.5, 4, 0.25).add(2.5, "fractional").add(6, "integer")
    got = _causes("python:expdecay_mutants:decay_steps_and_staircase_ignored", {}, g)
    assert got[("keras", "0x1.4p+1")] == ("proven", ["staircase-ignored",
                                                     "decay-steps-ignored"], None)
    # the integer step alone is explained by decay-steps-ignored, but the
    # schedule's other output refutes it: the proven cause covers both
    assert got[("keras", "6")] == ("proven", ["staircase-ignored", "decay-steps-ignored"],
                                   None)


def test_the_diagnosis_proves_an_integer_floor() -> None:
    """bfloat16, D = 1000, step 39990: the keras order rounds the step to
    39936 and the quotient up to 40.0 (floor 40); an integer s // D keeps 39,
    and with r = 0.9 no other single mistake gives those bits.  Step 40000
    (rounded to 39936 too, but an exact multiple of D) is right: it refutes
    s / D rounded toward zero (39.75, floor 39), which reproduces step
    39990 as well."""
    g = Group("bfloat16", True, 0.1, 1000, 0.9).add(39990, "a").add(2500, "b").add(0, "c")
    g.add(40000, "d")
    got = _causes("python:expdecay_mutants:integer_floor_division", {}, g)
    assert got[("keras", "39990")] == ("proven", ["integer-floor-division"], None)


# ---------------------------------------------------------------------------
# timm
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_timm_step_lr_scheduler(dtype: str, adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "timm")
    steps = [0, 1, 2, 3, 5, 6, 20]
    got = a.evaluate(Params(0.5, 3, 0.5, True, dtype), steps)
    assert got.tolist() == powers(0.5, steps, lambda s: s // 3)
    got = a.evaluate(Params(0.5, 1, 0.5, False, dtype), steps)  # decay_t = 1
    assert got.tolist() == powers(0.5, steps, lambda s: s)
    why = a.applicable(Params(0.5, 2, 0.25, False, dtype))
    assert why and "decay_steps = 1" in why


def test_timm_quirks(adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "timm")
    # a float decay_t is Python's float floor division
    got = a.evaluate(Params(0.5, 2.5, 0.5, True, "float64"), [2, 3, 5, 7])
    assert got.tolist() == [0.5, 0.25, 0.125, 0.125]
    # a negative count falls into the warm-up branch: lr = 0 + t * 1
    assert a.evaluate(Params(0.5, 3, 0.5, True, "float64"), [-4]).tolist() == [-4.0]
    out = a.evaluate_outcome(Params(0.5, 3, 0.5, True, "float64"), [1.5])
    assert 0 in out.not_applicable


def test_timm_is_loaded_without_importing_timm() -> None:
    if "timm" not in available_adapters():
        if IN_CI:
            pytest.fail("timm is not installed in CI")
        pytest.skip("timm not installed")
    code = ("import sys; from expdecay.conformance.adapters import make_inprocess; "
            "a = make_inprocess('timm'); print(a.name, 'timm' in sys.modules, "
            "'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    assert out == ["timm", "False", "False"]


# ---------------------------------------------------------------------------
# MindSpore (opt-in)
# ---------------------------------------------------------------------------


def test_mindspore_missing_is_reported_not_crashed() -> None:
    if importlib.util.find_spec("mindspore") is not None:
        pytest.skip("mindspore is installed: see test_mindspore_runs")
    assert dict(missing_configurations())["mindspore"] == \
        "not installed (mindspore missing)"
    assert "mindspore" not in {n for n, _ in default_configurations()}
    with pytest.raises(AdapterError, match="mindspore: not installed"):
        get_adapter("mindspore")


def test_mindspore_runs(adapter_pool: AdapterPool) -> None:
    """Only with MindSpore installed (not in CI)."""
    a = adapter(adapter_pool, "mindspore")
    steps = [0, 1, 2, 3, 6]
    assert a.evaluate(Params(0.5, 3, 0.5, True, "float32"), steps).tolist() == powers(
        0.5, steps, lambda s: s // 3)
    out = a.evaluate_outcome(Params(0.5, 3, 0.0, True, "float32"), [1])
    assert out.errors  # decay_rate <= 0 refused (valid in the spec)
    b = adapter(adapter_pool, "mindspore", form="list")
    assert b.evaluate(Params(0.5, 3, 0.5, True, "float64"), steps).tolist() == powers(
        0.5, steps, lambda s: s // 3)


def test_default_configurations_include_the_paddle_legacy_function() -> None:
    configs = default_configurations()
    if "paddle" in available_adapters():
        assert ("paddle", {"api": "legacy"}) in configs and ("paddle", {}) in configs
    if "jax-example-libraries" in available_adapters():
        assert ("jax-example-libraries", {"x64": True}) in configs
