"""The vectorised fast path against the oracle, bit for bit.

The fast path (:mod:`expdecay.fast`) is a different component from the oracle,
so the oracle provides the expected values here.  The strategies aim at the
places where a fast path goes wrong: steps above 2**24, staircase boundaries
``k*D - 1, k*D, k*D + 1``, subnormal and overflowing results, decay rates above
1 and within ``2**-k`` of 1, huge and tiny ``I``, float, negative and special
steps, special parameters.  ``test_strategy_reaches`` shows with
``hypothesis.find`` that the generator produces each of these categories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import example, find, given, settings
from hypothesis import strategies as st

from expdecay import fast, inputs, oracle
from expdecay.fast import dispatch, numpy_paths
from expdecay.fast.plan import make_plan
from expdecay.floats import FORMATS, Format, get_format, to_bits

FORMAT_NAMES = list(FORMATS)
ORDERS = ["exact", "keras"]
NAN, INF = math.nan, math.inf


@dataclass
class Case:
    """One schedule and an array of steps."""

    I: Any
    D: Any
    r: Any
    steps: np.ndarray


def _expected_bits(case: Case, fmt: Format, order: str, staircase: bool) -> list[int]:
    args = (inputs.to_exact(case.I), inputs.check_decay_steps(case.D), inputs.to_exact(case.r))
    return [
        to_bits(oracle.evaluate_exact(args + (inputs.to_exact(s),), staircase, fmt, order), fmt)
        for s in case.steps.reshape(-1).tolist()
    ]


def _bits(a: np.ndarray, fmt: Format) -> list[int]:
    return [int(b) for b in a.reshape(-1).view(f"u{fmt.width // 8}")]


def _check(case: Case, name: str, order: str, staircase: bool) -> fast.FastStats:
    fmt = get_format(name)
    stats = fast.FastStats()
    got = fast.evaluate_array(case.I, case.D, case.r, case.steps, staircase=staircase, dtype=name,
                        order=order, stats=stats)
    assert got.dtype == fmt.dtype and got.shape == case.steps.shape
    want = _expected_bits(case, fmt, order, staircase)
    have = _bits(got, fmt)
    bad = [(s, hex(w), hex(h)) for s, w, h in zip(case.steps.reshape(-1).tolist(), want, have,
                                                  strict=True) if w != h]
    assert not bad, (case.I, case.D, case.r, name, order, staircase, bad[:5])
    assert stats.elements == case.steps.size == stats.fast + stats.oracle
    return stats


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

SPECIAL = [0.0, -0.0, INF, -INF, NAN]


def _pow10(lo: int, hi: int) -> st.SearchStrategy[Fraction]:
    return st.builds(lambda k, m: Fraction(m) * Fraction(10) ** k,
                     st.integers(lo, hi), st.integers(1, 999))


initial_rates = st.one_of(
    st.sampled_from([0.1, "0.1", 1, 3.0, -2.5, 0.001]),
    _pow10(-60, 40),                                 # huge and tiny, inexact decimals
    st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False),
    st.sampled_from(SPECIAL),
)
decay_steps = st.one_of(
    st.integers(1, 10**6),
    st.integers(1, 2**62),
    st.sampled_from([1, 2, 3, 7, 1000, 100000, 65520, "0.3", 0.1, 2.5, 1e-30, 1e30]),
    st.fractions(min_value=Fraction(1, 1000), max_value=10**6, max_denominator=1000).filter(
        lambda q: q > 0),
)
near_one = st.builds(lambda k, sign: 1 + sign * Fraction(1, 2**k),
                     st.integers(1, 60), st.sampled_from([-1, 1]))
# Within 1024 ulps of 1 in one of the four formats: where |p ln r| is tiny and
# results sit next to rounding midpoints (the float64 oracle once misrounded here).
near_one_ulps = st.builds(
    lambda k, prec, below: 1 - k * Fraction(1, 2**prec) if below else 1 + k * Fraction(2, 2**prec),
    st.integers(1, 1024), st.sampled_from([53, 24]), st.booleans())
decay_rates = st.one_of(
    st.sampled_from([0.96, "0.96", 0.5, 0.25, 0.75, 2, 1.5, "0.999", 1e-5, 1, 4]),
    near_one,
    near_one_ulps,
    st.floats(min_value=1e-300, max_value=1e300),
    st.sampled_from(SPECIAL + [-0.5, -2.0]),
)


@st.composite
def step_arrays(draw: st.DrawFn, D: Any) -> np.ndarray:
    """Steps of one dtype: int64 anywhere (above 2**24 included), staircase
    boundaries of ``D``, negatives, int32/uint64, or floats with specials."""
    kind = draw(st.sampled_from(["small", "large", "boundary", "int32", "uint64", "float",
                                 "float32"]))
    n = draw(st.integers(1, 6))
    if kind == "small":
        return np.array(draw(st.lists(st.integers(-10**6, 10**7), min_size=n, max_size=n)),
                        np.int64)
    if kind == "large":
        return np.array(draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n)),
                        np.int64)
    if kind == "boundary":
        q = inputs.check_decay_steps(D)
        base = max(1, math.ceil(q))
        ks = draw(st.lists(st.integers(0, 2**62 // base), min_size=n, max_size=n))
        return np.array([min(k * base + d, 2**63 - 1) for k in ks for d in (-1, 0, 1)],
                        np.int64)
    if kind == "int32":
        return np.array(draw(st.lists(st.integers(-2**31, 2**31 - 1), min_size=n, max_size=n)),
                        np.int32)
    if kind == "uint64":
        return np.array(draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)),
                        np.uint64)
    width = 64 if kind == "float" else 32
    return np.array(draw(st.lists(st.floats(width=width), min_size=n, max_size=n)),
                    np.float64 if width == 64 else np.float32)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    D = draw(decay_steps)
    return Case(draw(initial_rates), D, draw(decay_rates), draw(step_arrays(D)))


COMBOS = [(f, o, s) for f in FORMAT_NAMES for o in ORDERS for s in (False, True)]


# ---------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "order", "staircase"), COMBOS)
@settings(max_examples=60)
@given(case=cases())
@example(case=Case(-2.5, 100000, 0.75, np.array([967682, -235485, 810189], np.int64)))
@example(case=Case(3.0, 1000, 0.96, np.array([1228595.4743700041])))
@example(case=Case(0.1, 1000, 0.96, np.array([16777999, 16778000, 16777216, 2**24 + 1])))
@example(case=Case(0.1, 65520, 0.96, np.array([0, 1, 65519, 65520, 10**7])))
@example(case=Case(1e-30, 1, 0.5, np.array([0, 10, 100, 120, 149, 1074, 1075, 2000])))
@example(case=Case(1e30, 1, 2, np.array([0, 10, 98, 100, 1000, -1000])))
@example(case=Case(0.1, 3, 1 + 2**-40, np.array([0.0, -0.0, NAN, INF, -INF, 3.5, -7.25])))
@example(case=Case(0.0, 10, 0.5, np.array([0, -1, 5, 10**9])))
@example(case=Case(0.75, 2, 0.25, np.array([-4, -2, 0, 1, 2, 3, 4], np.int64)))
@example(case=Case(1 + 2**-52, 1, 1.5, np.array([1, 2, 3], np.int64)))  # exact midpoints
# Reported misroundings near r = 1 (float64) and staircase gathers past 2**63:
@example(case=Case(1, 1, 0.9999999999999999, np.array([-1, 2, -2], np.int64)))
@example(case=Case(0.75, 1, 0.9999999999999999, np.array([2, 1, 3], np.int64)))
@example(case=Case(3.0, 2, float.fromhex("0x1.fffffffffff2bp-1"), np.array([-2, 2], np.int64)))
@example(case=Case(0.1, 1, 0.96, np.full(4096, 2**63 - 1, np.int64)))
@example(case=Case(0.1, 1e-6, 0.5, np.arange(10**13, 10**13 + 4096, dtype=np.int64)))
@example(case=Case(0.1, 1, 0.96, np.r_[np.zeros(4095, np.int64), 2**63 - 1]))
def test_fast_matches_oracle(name: str, order: str, staircase: bool, case: Case) -> None:
    _check(case, name, order, staircase)


@pytest.mark.parametrize(("order", "staircase"), [(o, s) for o in ORDERS for s in (False, True)])
@settings(max_examples=40)
@given(case=cases())
@example(case=Case("0.1", 100000, "0.96", np.arange(0, 10**7, 999983, dtype=np.int64)))
@example(case=Case(0.5, 3, 0.25, np.array([-3, -6, -4097, -2**35], np.int64)))
@example(case=Case(1e300, 1, 2, np.array([0, 20, 24, 4095, 4096, 2**24 + 1], np.int64)))
@example(case=Case(1 + 2**-52, 1, 1.5, np.array([1, 2, 3], np.int64)))  # exact midpoints
@example(case=Case(0.1, 1e-30, 1e300, np.array([1, 4097, 2**24 + 5, 2**35], np.int64)))
@example(case=Case(0.1, 1e-300, 1e-300, np.array([0, 1, 4097, 2**35], np.int64)))
@example(case=Case(0.1, 1e-30, 0.96, np.array([0])))
def test_float64_power_tables_match_oracle(order: str, staircase: bool, case: Case) -> None:
    """The table path (used for large arrays) forced on small ones."""
    saved = dispatch.TABLE_MIN_ELEMENTS
    dispatch.TABLE_MIN_ELEMENTS = 0
    try:
        _check(case, "float64", order, staircase)
    finally:
        dispatch.TABLE_MIN_ELEMENTS = saved


@pytest.mark.parametrize(("order", "staircase"), [(o, s) for o in ORDERS for s in (False, True)])
@settings(max_examples=40)
@given(case=cases())
@example(case=Case(0.1, 1000, 0.96, np.array([16777999, 16778000, 2**24 + 1, 10**9])))
def test_float32_without_exp2_matches_oracle(order: str, staircase: bool, case: Case) -> None:
    """The float32 path that does not use numpy.exp2 (taken when a flush-to-zero
    mode is detected or the exp2 sample check fails)."""
    saved = numpy_paths.hardware_ok
    numpy_paths.hardware_ok = lambda: False
    try:
        _check(case, "float32", order, staircase)
    finally:
        numpy_paths.hardware_ok = saved


def test_exp2_sample_check_passes_here() -> None:
    """On this machine numpy.exp2 is within the assumed bound (else the float32
    path through it is off and this test reports it)."""
    assert numpy_paths.exp2_sample_ok()
    assert numpy_paths.hardware_ok()


# ---------------------------------------------------------------------------
# The generator reaches every category it is meant to
# ---------------------------------------------------------------------------


def _result_class(case: Case, name: str, order: str) -> set[str]:
    fmt = get_format(name)
    args = (inputs.to_exact(case.I), inputs.check_decay_steps(case.D), inputs.to_exact(case.r))
    out = set()
    for s in case.steps.reshape(-1).tolist():
        v = abs(oracle.evaluate_exact(args + (inputs.to_exact(s),), False, fmt, order))
        if v == INF:
            out.add("overflow")
        elif 0 < v < fmt.min_normal:
            out.add("subnormal")
    return out


def _is_boundary(case: Case) -> bool:
    q = inputs.check_decay_steps(case.D)
    return q.denominator == 1 and q > 1 and any(
        s % q.numerator in (0, 1, q.numerator - 1) and s > 2**24
        for s in case.steps.reshape(-1).tolist() if isinstance(s, int))


def _near_one(r: Any) -> bool:
    x = inputs.to_exact(r)
    return isinstance(x, Fraction) and 0 < abs(x - 1) <= Fraction(1, 2**20)


REACH = {
    "step above 2**24": lambda c: c.steps.dtype.kind in "iu" and int(c.steps.max()) > 2**24,
    "staircase boundary": _is_boundary,
    "negative step": lambda c: bool((c.steps < 0).any()),
    "float step": lambda c: c.steps.dtype.kind == "f" and bool(np.isfinite(c.steps).any()),
    "special step": lambda c: c.steps.dtype.kind == "f" and not np.isfinite(c.steps).all(),
    "uint64 above int64": lambda c: c.steps.dtype == np.uint64 and int(c.steps.max()) >= 2**63,
    "rate above 1": lambda c: isinstance(inputs.to_exact(c.r), Fraction)
    and inputs.to_exact(c.r) > 1,
    "rate near 1": lambda c: _near_one(c.r),
    "huge I": lambda c: isinstance(inputs.to_exact(c.I), Fraction)
    and abs(inputs.to_exact(c.I)) > 10**30,
    "tiny I": lambda c: isinstance(inputs.to_exact(c.I), Fraction)
    and 0 < abs(inputs.to_exact(c.I)) < Fraction(1, 10**30),
    "special I": lambda c: not isinstance(inputs.to_exact(c.I), Fraction),
    "special r": lambda c: not isinstance(inputs.to_exact(c.r), Fraction)
    or inputs.to_exact(c.r) < 0,
    "subnormal float32 result": lambda c: "subnormal" in _result_class(c, "float32", "exact"),
    "overflowing float16 result": lambda c: "overflow" in _result_class(c, "float16", "exact"),
    "subnormal float64 result": lambda c: "subnormal" in _result_class(c, "float64", "exact"),
}


@pytest.mark.parametrize("category", list(REACH))
def test_strategy_reaches(category: str) -> None:
    found = find(cases(), REACH[category], settings=settings(max_examples=3000, database=None))
    assert REACH[category](found)


# ---------------------------------------------------------------------------
# Shapes, dtypes, statistics, validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMAT_NAMES)
@pytest.mark.parametrize("steps", [
    np.array(12345, np.int64),
    np.arange(24, dtype=np.int32).reshape(4, 6) * 100003,
    np.array([[0, 2**64 - 1], [2**63, 5]], np.uint64),
    np.array([1.5, 2**25 + 0.5, -3.25], np.float32),
    np.array([7, 60000], np.float16),
    np.array([3.0, 1e6], ml_dtypes.bfloat16),
    [0, 1, 2**40],
    [10**30, -(10**25), 3],  # Python ints beyond int64: an object array
])
def test_shapes_and_dtypes(name: str, steps: Any) -> None:
    arr = np.asarray(steps)
    for order in ORDERS:
        for staircase in (False, True):
            _check(Case("0.1", 1000, "0.96", arr), name, order, staircase)


def test_scalar_step_gives_0d_array() -> None:
    got = fast.evaluate_array(0.5, 1, 0.5, 3, dtype="float32", order="exact")
    assert got.shape == () and got.dtype == np.float32 and float(got) == 0.0625


def test_hand_values() -> None:
    """Exact powers of two, derived by hand: 0.5 * 0.25**(s/2) = 2**(-1 - s)."""
    steps = np.array([0, 1, 2, 10, 148, 149, 150], np.int64)
    got = fast.evaluate_array(0.5, 2, 0.25, steps, dtype="float32", order="exact")
    want = [0.5, 0.25, 0.125, 2.0**-11, 2.0**-149, 0.0, 0.0]  # 2**-150 ties to even, to 0
    assert got.tolist() == want


def test_stats_count_fast_and_oracle() -> None:
    stats = fast.FastStats()
    steps = np.concatenate([np.arange(0, 10**6, 997), np.array([-1, 0])])
    fast.evaluate_array("0.1", 1000, "0.96", steps, dtype="float32", order="exact", stats=stats)
    assert stats.elements == steps.size
    assert stats.fast + stats.oracle == steps.size
    assert stats.fast >= steps.size - 2
    special = fast.FastStats()
    fast.evaluate_array(NAN, 1000, 0.96, np.array([0.5, 0.5, 2.5, 0.5]), dtype="float16",
                  order="exact", stats=special)
    assert (special.elements, special.fast, special.oracle, special.oracle_calls) == (4, 0, 4, 2)
    keras = fast.FastStats()
    out = fast.evaluate_array(0.1, 100000, 0.96, np.arange(0, 70000, 7), dtype="float16",
                        order="keras", stats=keras)
    # float16 rounds D = 100000 to inf: p = +0 (or NaN beyond 65504), one call each
    assert keras.oracle == out.size and keras.oracle_calls == 2
    constant = fast.FastStats()
    out = fast.evaluate_array("0.1", 10, 1, np.arange(5), dtype="float64", order="exact",
                        stats=constant)
    assert out.tolist() == [0.1] * 5 and constant.fast == 5 and constant.oracle == 0


def test_staircase_fallback_shares_calls_per_floor() -> None:
    """A negative rate is a special schedule (oracle only), one call per stair.
    Expected: 0.1 * (-0.5)**k is exact in float64, then rounded once."""
    stats = fast.FastStats()
    steps = np.arange(5000, dtype=np.int64)
    got = fast.evaluate_array(0.1, 1000, -0.5, steps, staircase=True, dtype="float32",
                        order="exact", stats=stats)
    want = np.array([0.1 * (-0.5) ** k for k in steps // 1000]).astype(np.float32)
    assert got.tobytes() == want.tobytes()
    assert (stats.oracle, stats.oracle_calls, stats.fast) == (5000, 5, 0)


def test_nan_is_canonical() -> None:
    for name in FORMAT_NAMES:
        fmt = get_format(name)
        got = fast.evaluate_array(0.1, 10, -0.5, np.array([5, 15]), dtype=name, order="exact")
        assert _bits(got, fmt) == [fmt.nan_bits, fmt.nan_bits]


@pytest.mark.parametrize(("kwargs", "exc", "word"), [
    (dict(decay_steps=0), ValueError, "decay_steps"),
    (dict(decay_steps=-1.5), ValueError, "decay_steps"),
    (dict(staircase="False"), TypeError, "staircase"),
    (dict(dtype="float8"), ValueError, "dtype"),
    (dict(order="numpy"), ValueError, "order"),
    (dict(initial_learning_rate=[1]), TypeError, "initial_learning_rate"),
    (dict(decay_rate="fast"), ValueError, "decay_rate"),
    (dict(steps=np.array([True])), TypeError, "steps"),
    (dict(steps=np.array(["1"])), TypeError, "steps"),
])
def test_bad_input(kwargs: dict[str, Any], exc: type, word: str) -> None:
    base: dict[str, Any] = dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5,
                                steps=np.arange(3))
    base.update(kwargs)
    with pytest.raises(exc, match=word):
        fast.evaluate_array(base.pop("initial_learning_rate"), base.pop("decay_steps"),
                      base.pop("decay_rate"), base.pop("steps"), **base)


def test_chunks_agree_with_single_elements() -> None:
    """Several chunks in one call give what the elements give one by one."""
    steps = np.arange(0, 3 * fast.CHUNK + 5, dtype=np.int64) * 613
    whole = fast.evaluate_array("0.1", 777, "0.96", steps, dtype="float64", order="exact")
    picks = [0, fast.CHUNK - 1, fast.CHUNK, 2 * fast.CHUNK + 3, steps.size - 1]
    for i in picks:
        one = fast.evaluate_array("0.1", 777, "0.96", steps[i:i + 1], dtype="float64",
                                  order="exact")
        assert one.view(np.uint64)[0] == whole.view(np.uint64)[i]


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("order", ["exact", "keras"])
def test_staircase_gather_matches_elementwise_path(fmt, order, monkeypatch):
    """Large staircase arrays are evaluated once per distinct exponent; the
    result must be the same bits as the element-wise path and the oracle."""
    rng = np.random.default_rng(7)
    D, top = (2**14, 2**25) if fmt != "float16" else (31, 60000)
    r = 0.9999 if fmt in ("float32", "float64") else 0.99  # 0.9999 rounds to 1 in 16 bits
    steps = rng.integers(0, top, 4 * dispatch.GATHER_MIN_ELEMENTS, dtype=np.int64)
    steps[:6] = [0, D - 1, D, D + 1, 16777999 % top, top - 1]
    plan = make_plan(*(inputs.to_exact(x) for x in (0.1, D, r)), get_format(fmt), order,
                      True, False)
    assert dispatch.staircase_table(steps, plan, fast.FastStats()) is not None  # the path is used
    stats = fast.FastStats()
    got = fast.evaluate_array(0.1, D, r, steps, staircase=True, dtype=fmt, order=order,
                        stats=stats)
    assert (stats.elements, stats.fast + stats.oracle) == (steps.size, steps.size)
    monkeypatch.setattr(dispatch, "GATHER_MIN_ELEMENTS", 10**12)
    ref = fast.evaluate_array(0.1, D, r, steps, staircase=True, dtype=fmt, order=order)
    assert got.tobytes() == ref.tobytes()
    for i in range(0, steps.size, 211):
        want = oracle.evaluate(0.1, D, r, int(steps[i]), staircase=True, dtype=fmt,
                               order=order)
        assert got[i].tobytes() == want.tobytes(), int(steps[i])
