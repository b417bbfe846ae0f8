"""Every adapter, run for real on a few cases with independently derived
answers.  A missing peer framework skips locally but fails in CI (CI=true)."""

from __future__ import annotations

import importlib.util
import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from expdecay.conformance.adapters import Params, available_adapters
from support.bits import IN_CI

if TYPE_CHECKING:
    from conftest import AdapterPool

F32 = np.float32

KERAS = [("keras", {"backend": b}) for b in ("numpy", "jax", "torch", "tensorflow")]
FLOAT32_IMPLS = [*KERAS, ("tf-keras", {}), ("optax", {})]
NEEDS = {"numpy": "numpy", "jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}


def _require(name: str, options: dict[str, Any]) -> None:
    missing = name not in available_adapters() or (
        name == "keras" and importlib.util.find_spec(NEEDS[options["backend"]]) is None)
    if missing:
        if IN_CI:
            pytest.fail(f"{name} {options} is not installed in CI")
        pytest.skip(f"{name} {options} not installed")


def adapter(pool: AdapterPool, name: str, options: dict[str, Any]) -> Any:
    """The module's worker for ``name`` and ``options`` (skipped when missing)."""
    _require(name, options)
    return pool.get(name, options)


def ids(cfg: tuple[str, dict[str, Any]]) -> str:
    return cfg[0] + "".join(f"-{v}" for v in cfg[1].values())


def f32_fraction(x: float) -> Fraction:
    return Fraction(float(F32(x)))


@pytest.mark.parametrize("cfg", FLOAT32_IMPLS, ids=ids)
def test_float32_staircase_decays_one_step_early(
        cfg: tuple[str, dict[str, Any]], adapter_pool: AdapterPool) -> None:
    """step 16777999, D=1000: float32 rounds the step to 16778000, so the
    floor is 16778, not 16777 (the value is one step early)."""
    a = adapter(adapter_pool, *cfg)
    [got] = a.evaluate(Params(0.1, 1000, 0.999, True, "float32"), [16777999])
    early = f32_fraction(0.1) * f32_fraction(0.999) ** 16778
    right = f32_fraction(0.1) * f32_fraction(0.999) ** 16777
    assert got == pytest.approx(float(early), rel=2**-21)
    assert abs(got / float(right) - 0.999) < 1e-6
    assert F32(got) == got


@pytest.mark.parametrize("cfg", FLOAT32_IMPLS, ids=ids)
def test_float32_bits_where_pow_is_exact(
        cfg: tuple[str, dict[str, Any]], adapter_pool: AdapterPool) -> None:
    """r = 0.5, D = 1: pow is a power of two, so every output is exactly
    float32(0.1) * 2**-s, bit for bit."""
    a = adapter(adapter_pool, *cfg)
    steps = list(range(40))
    got = a.evaluate(Params(0.1, 1, 0.5, False, "float32"), steps)
    want = [float(F32(0.1)) * 2.0**-s for s in steps]
    assert got.tolist() == want
    [one] = a.evaluate(Params(0.1, 1000, 0.999, True, "float32"), [1999])
    assert one == float(F32(0.1) * F32(0.999))  # pow(r, 1) = r, one rounding


def test_torch_closed_forms_are_python_float_arithmetic(adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "torch", {})
    got = a.evaluate(Params(0.1, 1000, 0.999, True, "float64"), [16777999, 0, 999, 1000])
    assert got.tolist() == [0.1 * 0.999**16777, 0.1, 0.1, 0.1 * 0.999]
    assert a.evaluate(Params(0.1, 1, 0.5, False, "float64"), [3]).tolist() == [0.1 * 0.125]
    why = a.applicable(Params(0.1, 1000, 0.96, False, "float64"))
    assert why and "decay_steps = 1" in why
    out = a.evaluate_outcome(Params(0.1, 1000, 0.96, True, "float64"), [-1, 0.5, 7])
    assert set(out.not_applicable) == {0, 1} and out.values[2] == 0.1


def test_optax_x64_has_no_step_cast(adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "optax", {"x64": True})
    [got] = a.evaluate(Params(0.1, 1000, 0.999, True, "float64"), [16777999])
    assert got == pytest.approx(0.1 * 0.999**16777, rel=4 * 2**-52)
    why = a.applicable(Params(0.1, 1000, 0.999, True, "float32"))
    assert why and "float64" in why


def test_optax_measured_facts(adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "optax", {})
    out = a.evaluate_outcome(Params(0.1, 1000, 0.999, True, "float32"), [2**31, 5])
    assert 0 in out.not_applicable and 1 not in out.not_applicable
    # transition_steps = 0 is not rejected: a constant schedule (the Python float).
    assert a.evaluate(Params(0.1, 0, 0.96, False, "float32"), [0, 10]).tolist() == [0.1, 0.1]


@pytest.mark.parametrize("cfg", KERAS, ids=ids)
def test_keras_rejects_decay_steps_zero_but_not_nan(
        cfg: tuple[str, dict[str, Any]], adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, *cfg)
    out = a.evaluate_outcome(Params(0.1, 0, 0.96, False, "float32"), [0])
    assert "decay_steps" in out.errors[0]
    out = a.evaluate_outcome(Params(0.1, math.nan, 0.96, False, "float32"), [0])
    assert not out.errors and math.isnan(out.values[0])


def test_tf_keras_does_not_validate_decay_steps(adapter_pool: AdapterPool) -> None:
    a = adapter(adapter_pool, "tf-keras", {})
    out = a.evaluate_outcome(Params(0.1, 0, 0.96, False, "float32"), [0, 1000])
    assert not out.errors and math.isnan(out.values[0]) and out.values[1] == 0.0


@pytest.mark.parametrize("cfg, honoured", [
    (("keras", {"backend": "numpy"}), False), (("keras", {"backend": "jax"}), False),
    (("keras", {"backend": "torch"}), True), (("keras", {"backend": "tensorflow"}), True),
    (("tf-keras", {}), True)], ids=lambda x: ids(x) if isinstance(x, tuple) else str(x))
def test_float64_is_honoured_or_not(
        cfg: tuple[str, dict[str, Any]], honoured: bool, adapter_pool: AdapterPool) -> None:
    """With a float64 initial rate, numpy and jax backends compute in float32."""
    a = adapter(adapter_pool, *cfg)
    [got] = a.evaluate(Params(0.1, 1000, 0.96, False, "float64"), [500])
    assert got == pytest.approx(0.1 * 0.96**0.5, rel=2**-20)
    assert (float(F32(got)) != got) == honoured


def test_scalar_step_mode_matches_array_mode(adapter_pool: AdapterPool) -> None:
    arr = adapter(adapter_pool, "keras", {"backend": "tensorflow"})
    sca = adapter(adapter_pool, "keras", {"backend": "tensorflow", "step_mode": "scalar"})
    p = Params(0.1, 1000, 0.96, False, "float32")
    steps = [0, 1, 999, 1000, 123456]
    assert sca.evaluate(p, steps).tolist() == arr.evaluate(p, steps).tolist()
    assert arr.vectorised and not sca.vectorised
