"""The table builder's bound on its work (``expdecay.frameworks.tables``): schedules whose
two saturated tails meet (``rnd(I) == 0`` in the keras order: NaN below a step,
zero from it on), the full int64 range in the change-point search, and the
number of evaluations, each under a time limit.  Expected values are
hand-derived powers of two, rounded by the independent oracle of
``tests/support/arb_oracle.py``."""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import expdecay.frameworks.tables as tables
from expdecay import ExponentialDecay
from expdecay.frameworks.graph import host_lookup
from expdecay.frameworks.tables import INT64_MAX, INT64_MIN, build_table
from support.arb_oracle import arb_evaluate, round_fraction
from support.bits import require_peers

LIMIT = 300  # seconds: generous on a loaded machine (each build takes seconds), finite


@contextmanager
def time_limit(seconds: int = LIMIT) -> Iterator[None]:
    """Fail (instead of hanging) when the body runs longer than ``seconds``."""
    def stop(signum: int, frame: Any) -> None:
        raise TimeoutError(f"did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def bits32(x: Any) -> int:
    return int(np.asarray(x, np.float32).view(np.uint32))


def value(table: Any, step: int) -> float:
    return float(host_lookup(table, lambda s: pytest.fail(f"step {s} is open"), step))


def power_of_two_f32(k: int) -> float:
    """``2**k`` rounded to float32: inf from 2**128 on, 0 up to 2**-150 (a tie,
    to even), else by the independent oracle (exact for these)."""
    if k >= 128:
        return math.inf
    if k <= -150:
        return 0.0
    return round_fraction(Fraction(2) ** k, "float32")


# ---------------------------------------------------------------------------
# rnd(I) == 0: the tails meet, one entry
# ---------------------------------------------------------------------------

#: keras order, float32, I rounding to zero, r = 1/2, D = 1000:
#: w = 2 ** -floor(rnd(s / 1000)) is inf from 2**128 on, i.e. for s <= -127001
#: (staircase) or s <= -128000 (continuous: p = rnd(s / 1000) <= -128); the
#: value is 0 * w: NaN there, +0 elsewhere.
ZERO_CASES = [
    ((0.0, 1000, 0.5, True), {}, -127001),
    ((0.0, 1000, 0.5, False), {}, -128000),
    ((5e-324, 1000, 0.5, True), {"dtype": "float32"}, -127001),  # rounds to 0 in float32
    ((5e-324, 1000, 0.5, False), {"dtype": "float32"}, -128000),
]


@pytest.mark.parametrize(("args", "kwargs", "last_nan"), ZERO_CASES)
def test_zero_initial_rate_builds_a_complete_table(args: Any, kwargs: Any, last_nan: int) -> None:
    with time_limit():
        table = build_table(ExponentialDecay(*args, **kwargs), "keras")
    assert table.complete
    assert len(table.values) == 1
    for step in (INT64_MIN, -(10**12), last_nan - 1, last_nan):
        assert math.isnan(value(table, step)), step
    for step in (last_nan + 1, -1, 0, 1, 10**6, 2**31 - 1, 2**40, INT64_MAX):
        got = value(table, step)
        assert got == 0.0 and math.copysign(1.0, got) == 1.0, (step, got)


@pytest.mark.parametrize(("args", "kwargs", "last_nan"), ZERO_CASES)
def test_zero_initial_rate_table_agrees_with_the_oracle(args: Any, kwargs: Any,
                                                         last_nan: int) -> None:
    I, D, r, staircase = args
    with time_limit():
        table = build_table(ExponentialDecay(*args, **kwargs), "keras")
    for step in (last_nan - 1, last_nan, last_nan + 1, 0, 12345):
        want = arb_evaluate(I, D, r, step, staircase, "float32", "keras")
        got = value(table, step)
        assert (math.isnan(want) and math.isnan(got)) or bits32(want) == bits32(got), step


def test_subnormal_initial_rate_exact_order_staircase() -> None:
    """5e-324 = 2**-1074 taken exactly: the value is 2**(k - 1074) with
    k = -floor(s / 1000), rounded to float32: inf from k = 1202 (2**128) on,
    0 below k = 925 (2**-150 is a tie, to even: 0)."""
    with time_limit():
        table = build_table(ExponentialDecay(5e-324, 1000, 0.5, True, dtype="float32"), "exact")
    assert table.complete
    steps = [INT64_MIN, -1202001, -1201001, -1201000, -1200999, -1000000, -925001, -925000,
             -924001, -924000, -923999, 0, INT64_MAX]
    for step in steps:
        k = -(step // 1000)
        want = power_of_two_f32(k - 1074)
        assert bits32(value(table, step)) == bits32(want), step
    assert len(table.values) == 1201 - 925 + 1  # one entry per stair between the tails


def test_subnormal_initial_rate_exact_order_continuous() -> None:
    with time_limit():
        table = build_table(ExponentialDecay(5e-324, 1000, 0.5, dtype="float32"), "exact")
    # by hand: 2**(-s/1000 - 1074) is 2**128 (inf) at -1202000, 2**-150 (a
    # tie, to 0) at -924000, 2**-1074 at 0
    for step, want in ((-1202000, math.inf), (-924000, 0.0), (0, 0.0)):
        assert bits32(value(table, step)) == bits32(want), step
    for step in (-1100000, -924001):
        want = arb_evaluate(5e-324, 1000, 0.5, step, False, "float32", "exact")
        assert bits32(value(table, step)) == bits32(want), step


# ---------------------------------------------------------------------------
# the change-point search on int64 extremes
# ---------------------------------------------------------------------------


def step_function(points: list[int]) -> Any:
    """A monotone integer function of int64 steps changing exactly at ``points``."""
    marks = np.array(sorted(points), np.int64)

    def v(steps: np.ndarray) -> np.ndarray:
        return np.searchsorted(marks, np.asarray(steps, np.int64), side="right").astype(np.int64)

    return v


@pytest.mark.parametrize("points", [
    [0],
    [INT64_MIN + 1],
    [INT64_MAX],
    [INT64_MIN + 1, -1, 0, 1, 2**40, INT64_MAX],
])
def test_change_points_over_the_whole_int64_range(points: list[int]) -> None:
    with time_limit():
        got = tables.change_points(step_function(points), INT64_MIN, INT64_MAX, 100)
    assert got.tolist() == sorted(points)


def test_change_points_of_an_empty_range() -> None:
    v = step_function([5])
    with time_limit():
        assert tables.change_points(v, 5, 5, 10).tolist() == []
        assert tables.change_points(v, 6, 5, 10).tolist() == []
        assert tables.change_points(v, 4, 5, 10).tolist() == [5]


def test_change_points_stop_past_the_limit() -> None:
    v = step_function(list(range(0, 1000, 7)))
    with time_limit(), pytest.raises(tables.TooManyEntriesError):
        tables.change_points(v, INT64_MIN, INT64_MAX, 50)


@pytest.mark.parametrize(("a", "b"), [
    (INT64_MIN, INT64_MAX), (INT64_MIN, INT64_MIN + 2), (INT64_MAX - 2, INT64_MAX),
    (-3, 4), (-4, 3), (-1, 1), (5, 7), (INT64_MIN, 0), (0, INT64_MAX), (-7, -5),
])
def test_midpoint_is_the_floor_of_the_mean_without_overflow(a: int, b: int) -> None:
    got = int(tables.midpoint(np.array([a], np.int64), np.array([b], np.int64))[0])
    assert got == (a + b) // 2  # Python integers: exact
    assert a < got < b


# ---------------------------------------------------------------------------
# the bound on the work
# ---------------------------------------------------------------------------


class Counting:
    """Wraps ``host_values``: counts the calls and the steps evaluated."""

    def __init__(self) -> None:
        self.calls = 0
        self.steps = 0
        self.inner = tables.host_values

    def __call__(self, schedule: Any, order: str, steps: Any) -> np.ndarray:
        self.calls += 1
        self.steps += int(np.size(steps))
        return self.inner(schedule, order, steps)


@pytest.mark.parametrize(("args", "kwargs", "order", "cap"), [
    ((0.1, 1000, 0.96, True), {}, "keras", 1 << 20),
    ((0.1, 1000, 0.96, True), {}, "keras", 64),  # too many stairs: the open table
    ((0.1, 10, 0.96, True), {"dtype": "float64"}, "exact", 1000),
    ((0.0, 1000, 0.5, True), {}, "keras", 1 << 20),
    ((3.0, 7, 1.5, True), {}, "keras", 1 << 20),
])
def test_work_is_within_the_documented_bound(monkeypatch: pytest.MonkeyPatch, args: Any,
                                             kwargs: Any, order: str, cap: int) -> None:
    counter = Counting()
    monkeypatch.setattr(tables, "host_values", counter)
    with time_limit():
        try:
            build_table(ExponentialDecay(*args, **kwargs), order, max_entries=cap)
        except ValueError:
            pass  # too many stairs for cap within the horizon: refused, still bounded
    # the bound written in expdecay.frameworks.tables' docstring
    assert counter.calls <= 264
    assert counter.steps <= 2 + 2 * 64 + 2 * (2 + 65 * cap)


def test_keras_schedule_with_zero_initial_rate_is_built() -> None:
    """``expdecay.keras.ExponentialDecay(0.0, 1000, 0.5, staircase=True)`` never
    returned (its table's change-point search did not end)."""
    require_peers("keras", needed_by="the Keras drop-in")
    import expdecay.keras

    with time_limit():
        lr = expdecay.keras.ExponentialDecay(0.0, 1000, 0.5, staircase=True)
    # Keras's backend in this process may be one the drop-in does not run on
    # (other test modules choose "numpy"); tests/integrations/test_dropin_keras.py calls
    # the same schedule under jax.  Here: the table it built, and the host route.
    view = lr.table.view(64)
    assert view.values.dtype == np.float32 and not np.any(view.values.view(np.uint32))
    assert view.complete  # +0.0 below and above: nothing is left to the host
    assert lr.host(10**6).view(np.uint32) == 0
