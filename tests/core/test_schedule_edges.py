"""The schedule's edges: integer steps beyond int64, steps that are not numbers,
equality, and the error bound's scalar form.

Expected values are derived by hand: with ``decay_rate = 0.5`` and a power
of two for both the step and ``decay_steps`` every operation of both orders
is exact, so the value is ``rnd32(0.1)`` scaled by a power of two.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from expdecay import ExponentialDecay
from support.bits import require_peers

F32_TENTH = np.float32(0.1)  # rnd32(0.1) = 0x1.99999ap-4


def bits32(x: Any) -> list[int]:
    return np.asarray(x, dtype=np.float32).reshape(-1).view(np.uint32).tolist()


# -- integer steps beyond int64 -------------------------------------------------


@pytest.mark.parametrize("order", ["keras", "exact"])
def test_scalar_int_step_beyond_int64(order: str) -> None:
    s = ExponentialDecay(0.1, 2**67, 0.5)
    f = s if order == "keras" else s.exact
    got = f(2**70)  # exponent 8
    assert isinstance(got, np.float32)
    assert bits32(got) == bits32(F32_TENTH / np.float32(256))
    assert bits32(f(-(2**70))) == bits32(F32_TENTH * np.float32(256))
    assert bits32(f(10**30)) == [0]  # 2**-(10**30 / 2**67) ~ 2**-6776: underflows to +0


@pytest.mark.parametrize("order", ["keras", "exact"])
def test_array_of_ints_beyond_int64(order: str) -> None:
    s = ExponentialDecay(0.1, 2**67, 0.5)
    f = s if order == "keras" else s.exact
    got = f([1, 2**70, 2**71])  # exponents 2**-67 (rounds to 1 in both orders), 8, 16
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (3,)
    assert bits32(got) == bits32([F32_TENTH, F32_TENTH / np.float32(2**8),
                                  F32_TENTH / np.float32(2**16)])
    grid = f(np.array([[2**70], [2**71]], dtype=object))
    assert grid.shape == (2, 1)
    assert bits32(grid) == bits32([F32_TENTH / np.float32(2**8), F32_TENTH / np.float32(2**16)])


def test_non_numeric_object_steps_still_refused() -> None:
    s = ExponentialDecay(0.1, 1000, 0.96)
    for bad in ("x", [1, "2"], [True], None):
        with pytest.raises(TypeError, match=r"^step must be"):
            s(bad)


def test_torch_bfloat16_step_error_names_step() -> None:
    require_peers("torch", needed_by="torch tensors as steps")
    import torch
    s = ExponentialDecay(0.1, 1000, 0.96)
    with pytest.raises(TypeError, match=r"^step must be .*bfloat16"):
        s(torch.tensor(5.0, dtype=torch.bfloat16))
    assert bits32(s(torch.tensor(5.0, dtype=torch.float32))) == bits32(s(5))
    with pytest.raises(TypeError, match=r"^step must be .*bfloat16"):
        s.error_bound(torch.tensor([5.0], dtype=torch.bfloat16))


# -- __eq__, error_bound's scalar ----------------------------------------------


def test_eq_compares_configs_and_dtype() -> None:
    a = ExponentialDecay(0.1, 100000, 0.96)
    b = ExponentialDecay(0.1, 100000.0, 0.96, staircase=False)
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != ExponentialDecay(0.1, 100000, 0.95)
    assert a != ExponentialDecay(0.1, 100000, 0.96, staircase=True)
    assert a != ExponentialDecay(0.1, 100000, 0.96, dtype="float64")
    assert a != ExponentialDecay(0.1, 100000, 0.96, name="other")
    assert a != ExponentialDecay(0.1, 100000, "0.96")  # the decimal 0.96, not the double
    assert a != ExponentialDecay(np.float32(0.1), 100000, 0.96)  # rnd32(0.1) != 0.1
    assert a != "ExponentialDecay" and a is not None


def test_error_bound_scalar_in_scalar_out() -> None:
    s = ExponentialDecay(1.0, 1, 0.5, dtype="float16")
    b = s.error_bound(3)
    assert isinstance(b, np.float64) and not isinstance(b, np.ndarray)
    arr = s.error_bound(np.array([3, 3]))
    assert isinstance(arr, np.ndarray) and arr.shape == (2,)
    assert float(b) == float(arr[0])
    zero_d = s.error_bound(np.array(3))
    assert isinstance(zero_d, np.ndarray) and zero_d.shape == ()  # an array stays an array
