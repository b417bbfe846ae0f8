"""The host tables behind the training adapters (spec/training.md), and their
in-graph lookups under jax and torch in this process: every value is
expdecay's own (:class:`expdecay.ExponentialDecay`, checked against the oracle
elsewhere), or a hand-derived power of two."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from expdecay import ExponentialDecay
from expdecay.frameworks.tables import INT64_MAX, INT64_MIN, Table, build_table
from support.bits import require_peers

WIDTH = {2: np.uint16, 4: np.uint32, 8: np.uint64}

CASES = [
    ((0.1, 1000, 0.96), {"staircase": True}),
    ((0.1, 1000, 0.96), {"staircase": True, "dtype": "float16"}),
    ((0.1, 1000, 0.96), {"staircase": True, "dtype": "bfloat16"}),
    (("0.1", 10, "0.96"), {"dtype": "float64"}),
    ((0.1, 10, 0.96), {}),
    ((0.1, 100000, 0.96), {}),  # open: one value per step up to the horizon
    ((0.1, 1, 0.9999), {"staircase": True}),  # a stair per step: dense, open
    ((3.0, 7, 1.5), {"staircase": True}),  # growing to inf
    ((0.1, 1000, 1.0), {}),  # constant
    ((0.0, 1000, 1.5), {}),  # 0, then 0 * inf = NaN
    ((0.1, 1000, 0.0), {"staircase": True}),  # pow(0, 0) = 1, then 0
]


def lookup(table: Table, step: int) -> Any:
    """The table's value at ``step``, read as the graph reads it (None: open)."""
    if step < table.start:
        return None if table.low is None else table.low[0]
    if step >= table.stop:
        return None if table.high is None else table.high[0]
    if table.dense:
        return table.values[step - table.start]
    assert table.bounds is not None
    return table.values[np.searchsorted(table.bounds, step, side="right") - 1]


def _steps(table: Table, rng: np.random.Generator) -> np.ndarray:
    lo, hi = max(table.start, INT64_MIN), min(table.stop, INT64_MAX)
    parts = [rng.integers(lo, hi, 3000, endpoint=True),
             rng.integers(INT64_MIN, INT64_MAX, 300, dtype=np.int64, endpoint=True),
             np.array([INT64_MIN, INT64_MAX, 0, -1, 1, 2**31 - 1, -(2**31), 16_777_999])]
    for edge in (table.start, table.stop):
        parts.append(np.clip(np.arange(edge - 3, edge + 3), INT64_MIN, INT64_MAX))
    if table.bounds is not None:
        b = table.bounds[rng.integers(0, table.bounds.size, 200)]
        parts += [b, np.maximum(b - 1, INT64_MIN)]
    return np.concatenate(parts).astype(np.int64)


@pytest.mark.parametrize("order", ["keras", "exact"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_table_equals_expdecay_wherever_it_answers(case, order):  # type: ignore[no-untyped-def]
    args, kw = case
    s = ExponentialDecay(*args, **kw)
    table = build_table(s, order)
    steps = _steps(table, np.random.default_rng(1))
    want = s(steps) if order == "keras" else s.exact(steps)
    width = WIDTH[want.dtype.itemsize]
    answered = 0
    for step, w in zip(steps.tolist(), want, strict=True):
        got = lookup(table, step)
        if got is None:
            assert not table.start <= step < table.stop
            continue
        assert np.asarray(got).view(width) == np.asarray(w).view(width), step
        answered += 1
    assert answered >= 3000


def test_staircase_costs_one_entry_per_stair_and_is_complete() -> None:
    table = build_table(ExponentialDecay(0.1, 1000, 0.96, staircase=True))
    assert table.complete and not table.dense
    # float32: 0.1 * 0.96**k underflows to 0 near k = 2494 and reaches inf
    # near k = -2173 (steps are k * 1000): at most one entry per stair in
    # between (stairs whose subnormal values coincide share one), consecutive
    # entries distinct, and the boundaries are stair starts.
    stairs = (table.stop - table.start) // 1000 + 1
    assert stairs - 100 < table.values.size <= stairs
    bits = table.values.view(np.uint32)
    assert (bits[1:] != bits[:-1]).all()
    assert table.bounds is not None and (table.bounds % 1000 == 0).all()
    assert table.nbytes == table.values.size * 12


def test_hand_derived_powers_of_two() -> None:
    # 1 * 0.5 ** floor(s / 2) in float32: stair k (steps 2k, 2k+1) is 2**-k,
    # bits (127 - k) << 23 while normal, then subnormal, then 0 for good.
    table = build_table(ExponentialDecay(1.0, 2, 0.5, staircase=True))
    assert table.complete
    for step in range(0, 300):
        k = step // 2
        e = 127 - k
        want = e << 23 if e >= 1 else (1 << (22 + e) if 22 + e >= 0 else 0)
        got = lookup(table, step)
        assert got is not None and int(np.asarray(got).view(np.uint32)) == want, step
    assert table.high is not None and float(table.high[0]) == 0.0
    assert table.stop == 2 * 150  # 2**-150 rounds to 0 (a tie to even)


def test_explicit_horizon_and_first_step() -> None:
    s = ExponentialDecay(0.1, 100000, 0.96)
    table = build_table(s, first_step=16_777_990, horizon=16_778_100)
    assert (table.start, table.stop, table.dense, table.values.size) == (
        16_777_990, 16_778_100, True, 110)
    assert table.low is None and table.high is None
    with pytest.raises(ValueError, match="max_entries"):
        build_table(s, horizon=1 << 21)
    with pytest.raises(ValueError, match="horizon"):
        build_table(s, first_step=10, horizon=10)


@pytest.mark.parametrize("args, kw, match", [
    ((0.1, 10, -0.5), {}, "decay_rate"),
    ((float("inf"), 10, 0.5), {}, "initial_learning_rate"),
    ((0.1, 10, float("nan")), {}, "decay_rate"),
    ((0.1, 70000, 0.5), {"dtype": "float16"}, "decay_steps"),
])
def test_refused_at_construction(args, kw, match):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        build_table(ExponentialDecay(*args, **kw))


STEPS = [0, 1, 5, 99_999, 100_000, (1 << 20) - 1, 1 << 20, 16_777_990, 16_777_999,
         2**31 - 1, -1, -(2**31)]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("staircase", [False, True])
def test_jax_lookup_jitted(staircase: bool, dtype: str) -> None:
    require_peers("jax")
    import jax
    import jax.numpy as jnp

    import expdecay.optax

    fn = expdecay.optax.exponential_decay(0.1, 10000, 0.96, staircase=staircase, dtype=dtype)
    jitted = jax.jit(fn)
    s = ExponentialDecay(0.1, 10000, 0.96, staircase=staircase, dtype=dtype)
    x64 = jax.config.read("jax_enable_x64")  # type: ignore[no-untyped-call]
    itype = jnp.int64 if x64 else jnp.int32
    width = WIDTH[s.dtype.itemsize]
    got = [int(np.asarray(jitted(jnp.asarray(x, itype))).view(width)) for x in STEPS]
    # optax's semantics: a count up to transition_begin (0) gives init_value,
    # the schedule's value at 0
    want = [int(v) for v in s(np.maximum(np.array(STEPS), 0)).view(width)]
    assert got == want


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
@pytest.mark.parametrize("staircase", [False, True])
def test_torch_lookup(staircase: bool, dtype: str) -> None:
    require_peers("torch")
    import torch

    from expdecay.frameworks.graph import torch_value
    from expdecay.frameworks.tables import host_values

    s = ExponentialDecay(0.1, 10000, 0.96, staircase=staircase, dtype=dtype)
    table = build_table(s)
    width = WIDTH[s.dtype.itemsize]
    signed = {2: torch.int16, 4: torch.int32, 8: torch.int64}[s.dtype.itemsize]
    got = []
    for x in STEPS:
        v = torch_value(table, torch.tensor(x), lambda k: host_values(s, "keras", [k])[0], {})
        got.append(int(np.asarray(v.view(signed).numpy()).view(width)))
    want = [int(v) for v in s(np.array(STEPS)).view(width)]
    assert got == want


@settings(max_examples=30, deadline=None)
@given(
    I=st.floats(1e-3, 10.0),
    D=st.integers(1, 5000) | st.floats(0.5, 5000.0),
    r=st.floats(0.0, 2.0),
    staircase=st.booleans(),
    fmt=st.sampled_from(["float16", "bfloat16", "float32", "float64"]),
    order=st.sampled_from(["keras", "exact"]),
    first=st.integers(0, 2**40),
    seed=st.integers(0, 2**32 - 1),
)
@example(I=1.0, D=2, r=0.5, staircase=True, fmt="float32", order="keras", first=0, seed=0)
@example(I=0.1, D=1000, r=0.96, staircase=True, fmt="float32", order="keras",
         first=16_777_990, seed=1)
def test_property_table_equals_expdecay(I: float, D: float, r: float, staircase: bool,
                                        fmt: str, order: str, first: int, seed: int) -> None:
    s = ExponentialDecay(I, D, r, staircase, dtype=fmt)
    if order == "keras" and not np.isfinite(np.asarray(D).astype(s.dtype)):
        with pytest.raises(ValueError, match="decay_steps"):
            build_table(s, order, first_step=first, max_entries=4096)
        return
    table = build_table(s, order, first_step=first, max_entries=4096)
    assert table.values.size <= 4096
    steps = _steps(table, np.random.default_rng(seed))
    want = s(steps) if order == "keras" else s.exact(steps)
    width = WIDTH[want.dtype.itemsize]
    for step, w in zip(steps.tolist(), want, strict=True):
        got = lookup(table, step)
        if got is not None:
            assert np.asarray(got).view(width) == np.asarray(w).view(width), step
        else:
            assert not table.start <= step < table.stop
