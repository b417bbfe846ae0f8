"""``expdecay.testing.ulp.assert_ulp_close``: hand-derived distances, special
values, the failure message, argument validation, and agreement of the
vectorised distance with :func:`expdecay.floats.ulp_distance`."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from expdecay.floats import FORMATS, from_bits, get_format, ulp_distance
from expdecay.testing.ulp import assert_ulp_close

BF16 = ml_dtypes.bfloat16


def _fails(actual: Any, expected: Any, ulps: float, dtype: Any) -> str:
    with pytest.raises(AssertionError) as info:
        assert_ulp_close(actual, expected, ulps=ulps, dtype=dtype)
    return str(info.value)


# ---------------------------------------------------------------------------
# Hand-derived distances
# ---------------------------------------------------------------------------


def test_float64_next_after_one_is_one_ulp() -> None:
    up = math.nextafter(1.0, 2.0)  # 1 + 2**-52
    assert_ulp_close(up, 1.0, ulps=1, dtype="float64")
    assert "1 ulp above" in _fails(up, 1.0, 0, "float64")
    assert "1 ulp below" in _fails(1.0, up, 0, np.float64)


def test_bfloat16_bits_3f80_3f81_are_one_ulp() -> None:
    one, nxt = np.array([0x3F80, 0x3F81], np.uint16).view(BF16)
    assert float(one) == 1.0 and float(nxt) == 1 + 2**-7  # 7 fraction bits
    for dtype in ("bfloat16", BF16, np.dtype(BF16)):
        assert_ulp_close(nxt, one, ulps=1, dtype=dtype)
    msg = _fails(nxt, one, 0, BF16)
    assert "bits 0x3f81" in msg and "bits 0x3f80" in msg and "1 ulp above" in msg
    # Python floats with bfloat16 values are accepted as well.
    assert_ulp_close(1 + 2**-7, 1.0, ulps=1, dtype="bfloat16")


def test_binade_crossing_and_float16_counts() -> None:
    # float16: 2 - 2**-10 is the last value below 2; 2 + 2**-9 the first above.
    assert_ulp_close(2 + 2**-9, 2 - 2**-10, ulps=2, dtype="float16")
    assert "2 ulps above" in _fails(2 + 2**-9, 2 - 2**-10, 1, "float16")
    # float32: 1 and 1 + 5 * 2**-23 are 5 ulps apart.
    assert "5 ulps above" in _fails(np.float32(1 + 5 * 2**-23), np.float32(1), 4, "float32")
    assert_ulp_close(np.float32(1 + 5 * 2**-23), np.float32(1), ulps=5, dtype="float32")


@pytest.mark.parametrize("name", list(FORMATS))
def test_across_zero_smallest_subnormals_are_two_ulps(name: str) -> None:
    tiny = get_format(name).min_subnormal
    assert_ulp_close(tiny, -tiny, ulps=2, dtype=name)
    assert "2 ulps above" in _fails(tiny, -tiny, 1, name)
    assert_ulp_close(tiny, 0.0, ulps=1, dtype=name)
    assert_ulp_close(-tiny, 0.0, ulps=1, dtype=name)


@pytest.mark.parametrize("name", list(FORMATS))
def test_signed_zero_is_a_mismatch(name: str) -> None:
    msg = _fails(0.0, -0.0, 100, name)
    assert "+0 vs -0" in msg and "1 of 1 elements" in msg
    assert_ulp_close(-0.0, -0.0, ulps=0, dtype=name)
    assert_ulp_close(0.0, 0.0, ulps=0, dtype=name)


@pytest.mark.parametrize("name", list(FORMATS))
def test_nan_matches_nan_only(name: str) -> None:
    fmt = get_format(name)
    other_nan = from_bits((1 << fmt.width) - 1, fmt)  # negative NaN, all payload bits
    assert_ulp_close(math.nan, other_nan, ulps=0, dtype=name)
    assert_ulp_close(np.array([math.nan, 1.0]), np.array([math.nan, 1.0]), ulps=0, dtype=name)
    assert "NaN against a number" in _fails(math.nan, 1.0, math.inf, name)
    assert "NaN against a number" in _fails(0.0, math.nan, math.inf, name)


@pytest.mark.parametrize("name", list(FORMATS))
def test_infinities_match_exactly(name: str) -> None:
    big = get_format(name).max_finite
    assert_ulp_close(math.inf, math.inf, ulps=0, dtype=name)
    assert_ulp_close(-math.inf, -math.inf, ulps=0, dtype=name)
    for a, e in [(math.inf, big), (big, math.inf), (-math.inf, math.inf), (-math.inf, -big)]:
        assert "infinity" in _fails(a, e, math.inf, name)
        assert "infinity" in _fails(a, e, 10**6, name)


def test_largest_distance_float64_opposite_signs() -> None:
    big = FORMATS["float64"].max_finite
    # 2 * (2**63 - 2**52 - 1) steps: beyond int64, held exactly in uint64.
    msg = _fails(big, -big, 2**63, "float64")
    assert f"{2 * (0x7FEFFFFFFFFFFFFF)} ulps above" in msg
    assert_ulp_close(big, -big, ulps=2 * 0x7FEFFFFFFFFFFFFF, dtype="float64")
    assert_ulp_close(big, -big, ulps=math.inf, dtype="float64")


# ---------------------------------------------------------------------------
# Arrays, broadcasting, the message
# ---------------------------------------------------------------------------


def test_message_names_worst_element_and_counts() -> None:
    expected = np.ones((2, 3), np.float32)
    actual = expected.copy()
    ulp = np.float32(2**-23)
    actual[0, 1] += 2 * ulp      # 2 ulps
    actual[1, 2] += 7 * ulp      # 7 ulps: the worst
    actual[1, 0] += 3 * ulp      # 3 ulps
    msg = _fails(actual, expected, 2, "float32")
    assert msg.startswith("2 of 6 elements differ by more than 2 ulps of float32")
    assert "worst at index (1, 2)" in msg
    worst = 1 + 7 * 2**-23
    assert repr(worst) in msg and "0x1.00000ep+0" in msg
    assert "bits 0x3f800007" in msg and "bits 0x3f800000" in msg
    assert msg.endswith("7 ulps above")


def test_special_mismatch_ranks_first_then_distance_then_zero_sign() -> None:
    actual = np.array([-0.0, 1.0 + 2**-52 * 9, math.inf, 5.0])
    expected = np.array([0.0, 1.0, 3.0, 5.0])
    msg = _fails(actual, expected, 1, "float64")
    assert "3 of 4 elements" in msg and "index (2,)" in msg
    msg = _fails(actual[:2], expected[:2], 1, "float64")
    assert "index (1,)" in msg and "9 ulps above" in msg
    msg = _fails(actual[:1], expected[:1], 1, "float64")
    assert "index (0,)" in msg


def test_ties_report_the_first_index() -> None:
    msg = _fails([1.0, 3.0, 3.0], [1.0, 2.0, 2.0], 0, "float16")
    assert "index (1,)" in msg and "2 of 3" in msg


def test_broadcasting() -> None:
    expected = np.float32(0.5)
    actual = np.full((3, 2), 0.5, np.float32)
    assert_ulp_close(actual, expected, ulps=0, dtype="float32")
    actual[2, 1] = np.nextafter(np.float32(0.5), np.float32(0))
    msg = _fails(actual, expected, 0, "float32")
    assert "index (2, 1)" in msg and "1 ulp below" in msg
    assert_ulp_close([[1.0], [1.0]], [1.0, 1.0, 1.0], ulps=0, dtype="float64")
    assert "broadcast" in _fails(np.zeros(3), np.zeros(2), 0, "float64")


def test_exact_objects_and_integers_accepted() -> None:
    assert_ulp_close(Fraction(3, 4), 0.75, ulps=0, dtype="float16")
    assert_ulp_close(np.array([1, 2, 2048], np.int64), [1.0, 2.0, 2048.0], ulps=0,
                     dtype="float16")
    assert_ulp_close(2**64, float(2**64), ulps=0, dtype="float32")


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("actual", "expected", "dtype", "word"), [
    (0.1, 0.1, "float32", "actual"),                  # float64 0.1 is not a float32
    (np.float32(0.1), 0.1, "float32", "expected"),
    (1.0, 1 + 2**-8, "bfloat16", "expected"),
    (np.array([1.0, 70000.0]), 1.0, "float16", r"actual.*index \(1,\)"),  # overflows
    (Fraction(1, 3), 1.0, "float64", "actual"),
    (2**53 + 1, 1.0, "float64", "actual"),
    (np.array([2**63 - 1]), 1.0, "float64", "actual"),
    (1.0, 1.0, "float8", "dtype"),
    (1.0, 1.0, np.int32, "dtype"),
])
def test_not_representable_or_bad_dtype_is_value_error(actual: Any, expected: Any, dtype: Any,
                                                       word: str) -> None:
    with pytest.raises(ValueError, match=word):
        assert_ulp_close(actual, expected, ulps=1, dtype=dtype)


@pytest.mark.parametrize(("kwargs", "exc"), [
    (dict(ulps=-1), ValueError),
    (dict(ulps=math.nan), ValueError),
    (dict(ulps=-0.5), ValueError),
    (dict(ulps=True), TypeError),
    (dict(ulps="1"), TypeError),
    (dict(ulps=None), TypeError),
    (dict(ulps=1j), TypeError),
])
def test_bad_ulps(kwargs: dict[str, Any], exc: type) -> None:
    with pytest.raises(exc, match="ulps"):
        assert_ulp_close(1.0, 1.0, dtype="float64", **kwargs)


@pytest.mark.parametrize(("actual", "word"), [
    (np.array([True]), "actual"),
    ("1.0", "actual"),
    (np.array([1 + 1j]), "actual"),
    ([[1.0], [1.0, 2.0]], "actual"),
    (None, "actual"),
])
def test_bad_values_are_type_errors(actual: Any, word: str) -> None:
    with pytest.raises(TypeError, match=word):
        assert_ulp_close(actual, 1.0, ulps=1, dtype="float64")


def test_ulps_float_is_floored() -> None:
    assert_ulp_close(2 + 2**-9, 2.0, ulps=1.5, dtype="float16")
    with pytest.raises(AssertionError):
        assert_ulp_close(2 + 2**-9, 2.0, ulps=0.99, dtype="float16")
    assert_ulp_close(2 + 2**-9, 2.0, ulps=np.int8(1), dtype="float16")


# ---------------------------------------------------------------------------
# The vectorised distance is floats.ulp_distance
# ---------------------------------------------------------------------------


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[str, list[float], list[float]]:
    name = draw(st.sampled_from(list(FORMATS)))
    fmt = get_format(name)
    finite_bits = st.integers(0, (1 << fmt.width) - 1).filter(
        lambda b: math.isfinite(from_bits(b, fmt)))
    values = finite_bits.map(lambda b: from_bits(b, fmt))
    n = draw(st.integers(1, 6))
    a = draw(st.lists(values, min_size=n, max_size=n))
    near = st.tuples(st.sampled_from(range(n)), st.integers(-3, 3))
    e = [x for x in a]
    for i, k in draw(st.lists(near, max_size=n)):
        b = a[i]
        for _ in range(abs(k)):
            b = _step(b, k, fmt)
        if math.isfinite(b):
            e[i] = b
    e = [draw(st.one_of(st.just(x), values)) for x in e]
    return name, a, e


def _step(x: float, k: int, fmt: Any) -> float:
    from expdecay.floats import next_down, next_up
    return next_up(x, fmt) if k > 0 else next_down(x, fmt)


@given(_pairs(), st.integers(0, 2**64))
def test_distance_agrees_with_floats_ulp_distance(pair: tuple[str, list[float], list[float]],
                                                   tol: int) -> None:
    name, a, e = pair
    fmt = get_format(name)
    want = [abs(ulp_distance(y, x, fmt)) for x, y in zip(a, e, strict=True)]
    zero_sign = [x == y == 0 and math.copysign(1, x) != math.copysign(1, y)
                 for x, y in zip(a, e, strict=True)]
    bad = sum(d > tol or z for d, z in zip(want, zero_sign, strict=True))
    arr_a = np.array(a).astype(fmt.dtype)
    if bad == 0:
        assert_ulp_close(arr_a, e, ulps=tol, dtype=name)
        return
    with pytest.raises(AssertionError) as info:
        assert_ulp_close(arr_a, e, ulps=tol, dtype=name)
    msg = str(info.value)
    assert msg.startswith(f"{bad} of {len(a)} elements")
    worst = max(d for d, z in zip(want, zero_sign, strict=True) if d > tol or z)
    m = re.search(r"(\d+) ulps? (above|below)$", msg)
    if m:
        assert int(m.group(1)) == worst
    else:
        assert worst == 0 and "+0 vs -0" in msg
