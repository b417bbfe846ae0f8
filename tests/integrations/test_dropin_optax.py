"""``expdecay.optax.exponential_decay`` as a drop-in for optax's function of that
name: every argument of optax's signature (the delay, the clipping, the
constant schedules and their log records), integer and float counts, arrays,
``jax.jit``, ``jax.vmap``, ``optax.inject_hyperparams``, and bad input.  The
cases follow what optax's own ExponentialTest checks; the expected bits come
from the independent oracle of ``tests/support/arb_oracle.py`` (or are hand-derived)."""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from support.bits import require_peers

# the drop-in needs jax, and is tested inside optax
require_peers("jax", "optax", needed_by="the optax drop-in")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import expdecay.optax  # noqa: E402
from support.arb_oracle import arb_evaluate, round_fraction  # noqa: E402

schedule_of = expdecay.optax.exponential_decay


def bits32(x: Any) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32)


def expected(init: Any, steps: Any, rate: Any, count: Any, *, begin: int = 0,
             staircase: bool = False, end: Any = None, order: str = "keras") -> float:
    """The value the spec defines at ``count``: the oracle at
    ``count - begin`` (``rnd(init)`` up to ``begin``), then clipped."""
    d = Fraction(count) - begin
    if d <= 0:
        value = round_fraction(Fraction(init), "float32") if init else 0.0
    else:
        value = arb_evaluate(init, steps, rate, d, staircase, "float32", order)
    if end is not None:
        e = round_fraction(Fraction(end), "float32")
        value = max(value, e) if Fraction(rate) < 1 else min(value, e)
    return value


def assert_bits(got: Any, want: list[float]) -> None:
    got = np.asarray(got)
    assert got.dtype == np.float32
    want_a = np.asarray(want, np.float32).reshape(got.shape)
    nan = np.isnan(want_a)
    assert (np.isnan(got) == nan).all()
    assert (bits32(got)[~nan] == bits32(want_a)[~nan]).all(), (got, want_a)


# ---------------------------------------------------------------------------
# optax's documented behaviour, argument by argument
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("staircase", [False, True])
def test_rate_one_is_constant(staircase: bool) -> None:
    fn = jax.jit(schedule_of(init_value=1.0, transition_steps=15, decay_rate=1.0,
                             staircase=staircase))
    assert_bits(jnp.stack([fn(c) for c in range(15)]), [1.0] * 15)


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("transition_steps", [-1, 0, -2.5])
def test_non_positive_transition_steps_give_the_constant_init_value(
        staircase: bool, transition_steps: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="expdecay.optax"):
        fn = schedule_of(init_value=0.1, transition_steps=transition_steps, decay_rate=0.5,
                         staircase=staircase, end_value=1.0)
    assert any("transition_steps" in r.getMessage() for r in caplog.records)
    want = round_fraction(Fraction(0.1), "float32")  # end_value has no effect
    assert_bits(jax.jit(fn)(jnp.arange(15)), [want] * 15)
    assert_bits(fn(7), [want])


@pytest.mark.parametrize("staircase", [False, True])
def test_zero_decay_rate_gives_the_constant_init_value(
        staircase: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="expdecay.optax"):
        fn = schedule_of(init_value=1.0, transition_steps=2, decay_rate=0.0,
                         staircase=staircase)
    assert any("decay_rate" in r.getMessage() for r in caplog.records)
    assert_bits(jax.jit(fn)(jnp.arange(15)), [1.0] * 15)


@pytest.mark.parametrize(("staircase", "begin"), [(False, 0), (True, 0), (False, 5), (True, 5)])
def test_growth_with_a_delay(staircase: bool, begin: int) -> None:
    fn = jax.jit(schedule_of(init_value=1.0, transition_steps=2, decay_rate=2.0,
                             transition_begin=begin, staircase=staircase))
    counts = list(range(15 + begin))
    want = [expected(1.0, 2, 2.0, c, begin=begin, staircase=staircase) for c in counts]
    assert_bits(jnp.stack([fn(c) for c in counts]), want)
    # and by hand: 2 ** ((c - begin) / 2), floored when staircase
    assert float(fn(begin + 4)) == 4.0 and float(fn(begin - 1)) == 1.0


@pytest.mark.parametrize(("rate", "end"), [(0.2, 0.1), (1.0, 0.1), (2.0, 3.0), (0.5, 0.3)])
@pytest.mark.parametrize("staircase", [False, True])
def test_end_value_is_a_floor_when_decaying_and_a_ceiling_when_growing(
        rate: float, end: float, staircase: bool) -> None:
    fn = jax.jit(schedule_of(1.0, 2, rate, transition_begin=3, staircase=staircase,
                             end_value=end))
    counts = list(range(14))
    want = [expected(1.0, 2, rate, c, begin=3, staircase=staircase, end=end) for c in counts]
    assert_bits(fn(jnp.asarray(counts)), want)


def test_halving_every_step() -> None:
    fn = jax.jit(schedule_of(init_value=32.0, transition_steps=1, decay_rate=0.5))
    assert_bits(jnp.stack([fn(c) for c in range(5)]), [32.0, 16.0, 8.0, 4.0, 2.0])


def test_negative_transition_begin_falls_back_to_zero(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="expdecay.optax"):
        fn = schedule_of(0.1, 10, 0.5, transition_begin=-4)
    assert any("transition_begin" in r.getMessage() for r in caplog.records)
    assert_bits(fn(jnp.arange(12)), [expected(0.1, 10, 0.5, c) for c in range(12)])


def test_exact_order() -> None:
    fn = schedule_of(0.1, 1000, 0.96, transition_begin=7, order="exact")
    counts = [0, 7, 8, 1007, 123456]
    assert_bits(fn(jnp.asarray(counts)),
                [expected(0.1, 1000, 0.96, c, begin=7, order="exact") for c in counts])


# ---------------------------------------------------------------------------
# counts: shapes, dtypes, jit, vmap, inject_hyperparams
# ---------------------------------------------------------------------------

#: 0.1 * 0.96 ** (s / 100000): its table covers 2**20 steps from 0; the
#: others come from the host.
OPEN = (0.1, 100000, 0.96)
COUNTS = [0, 1, 99_999, (1 << 20) - 1, 1 << 20, 3 << 20, 16_777_990, 2**31 - 1, -5]


def test_zero_init_value_at_count_zero() -> None:
    """Raised IndexError (an empty table) before the builder handled tails
    that meet."""
    fn = schedule_of(0.0, 1000, 0.5)
    got = fn(0)
    assert float(got) == 0.0 and math.copysign(1.0, float(got)) == 1.0
    assert_bits(jax.jit(fn)(jnp.asarray([0, 1, 10**9])), [0.0, 0.0, 0.0])


def test_vmap_over_counts() -> None:
    """Raised NotImplementedError (pure_callback without a vmap rule)."""
    fn = schedule_of(*OPEN)
    want = [expected(*OPEN, c) for c in COUNTS]
    assert_bits(jax.vmap(fn)(jnp.asarray(COUNTS)), want)
    assert_bits(jax.jit(jax.vmap(fn))(jnp.asarray(COUNTS)), want)


@pytest.mark.parametrize("shape", [(9,), (3, 3), (1, 9, 1)])
def test_arrays_of_counts_with_open_steps(shape: tuple[int, ...]) -> None:
    """Raised TypeError (a scalar condition on an array) for a table that does
    not cover every count."""
    fn = schedule_of(*OPEN)
    counts = np.asarray(COUNTS).reshape(shape)
    want = [expected(*OPEN, c) for c in COUNTS]
    assert_bits(fn(jnp.asarray(counts)), want)
    assert_bits(jax.jit(fn)(jnp.asarray(counts)), want)
    assert fn(jnp.asarray(counts)).shape == shape


def test_float_counts() -> None:
    fn = schedule_of(*OPEN, transition_begin=2)
    counts = [0.0, 2.0, 3.0, 3.5, 2.0 + 2.0**-20, 1e6 + 0.25, float(1 << 22), 1e30,
              -math.inf]
    want = [expected(*OPEN, Fraction(c), begin=2) if math.isfinite(c)
            else round_fraction(Fraction(0.1), "float32") for c in counts]
    # 1e30 - 2 is far past the point where the schedule is 0 in float32
    assert want[7] == 0.0
    assert_bits(fn(jnp.asarray(counts, jnp.float32)), want)
    assert_bits(jax.jit(fn)(jnp.asarray(counts, jnp.float32)), want)
    assert math.isnan(float(fn(jnp.float32(math.nan))))
    # an integral float count is the integer count
    assert bits32(fn(jnp.float32(12345.0))) == bits32(fn(12345))


def test_inject_hyperparams_under_jit() -> None:
    fn = schedule_of(0.1, 3, 0.5, transition_begin=2, staircase=True, end_value=0.02)
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=fn)
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)

    @jax.jit
    def step(params: Any, state: Any) -> Any:
        updates, state = tx.update({"w": jnp.ones(2)}, state, params)
        return optax.apply_updates(params, updates), state

    seen = []
    for _ in range(12):
        params, state = step(params, state)
        seen.append(state.hyperparams["learning_rate"])
    # the state's rate after update n was computed at count n
    want = [expected(0.1, 3, 0.5, c, begin=2, staircase=True, end=0.02) for c in range(12)]
    assert_bits(jnp.stack(seen), want)


# ---------------------------------------------------------------------------
# bad input: the argument is named, at construction
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"init_value": "0.1"}, TypeError, "init_value"),
    ({"init_value": math.inf}, ValueError, "init_value"),
    ({"init_value": None}, TypeError, "init_value"),
    ({"transition_steps": math.nan}, ValueError, "transition_steps"),
    ({"transition_steps": "10"}, TypeError, "transition_steps"),
    ({"decay_rate": -0.5}, ValueError, "decay_rate"),
    ({"decay_rate": math.nan}, ValueError, "decay_rate"),
    ({"transition_begin": True}, TypeError, "transition_begin"),
    ({"transition_begin": 1.5}, TypeError, "transition_begin"),
    ({"staircase": "yes"}, TypeError, "staircase"),
    ({"end_value": math.nan}, ValueError, "end_value"),
    ({"end_value": "x"}, TypeError, "end_value"),
    ({"order": "fast"}, ValueError, "order"),
])
def test_bad_arguments_are_named(kwargs: dict[str, Any], error: type, name: str) -> None:
    args = {"init_value": 0.1, "transition_steps": 10, "decay_rate": 0.5, **kwargs}
    with pytest.raises(error, match=name):
        schedule_of(**args)


def test_bad_count_dtype_is_named() -> None:
    fn = schedule_of(0.1, 10, 0.5)
    with pytest.raises(TypeError, match="count"):
        fn(jnp.asarray(True))
