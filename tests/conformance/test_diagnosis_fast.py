"""The diagnosis's own integer-arithmetic helpers agree with
:mod:`expdecay.floats` (exact rationals), and recomputing a group's failures
at once (:func:`diagnosis.prepare`) gives the diagnoses made one by one.

Expected values: :mod:`expdecay.floats` (Fraction arithmetic, an
independent route), and the one-by-one diagnoses with every cache empty.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from expdecay import floats
from expdecay.conformance import diagnosis
from expdecay.conformance.vectors import decode_result
from support.paths import ROOT

FORMATS = [floats.get_format(n) for n in ("float16", "bfloat16", "float32", "float64")]


def _from64(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


@st.composite
def values(draw: st.DrawFn) -> float:
    """Any float64, or a value of one of the formats, or its float64 neighbour."""
    if draw(st.booleans()):
        return _from64(draw(st.integers(0, 2**64 - 1)))
    fmt = draw(st.sampled_from(FORMATS))
    x = floats.from_bits(draw(st.integers(0, 2**fmt.width - 1)), fmt)
    return math.nextafter(x, draw(st.sampled_from([math.inf, -math.inf]))) if draw(
        st.booleans()) else x


@settings(max_examples=3000, deadline=None)
@given(values(), values(), st.sampled_from(FORMATS))
@example(5e-324, 0.0, FORMATS[3])
@example(2.0**-149, -(2.0**-149), FORMATS[2])
@example(65504.0, 65520.0, FORMATS[0])
@example(2.0**-24, 2.0**-25, FORMATS[0])
def test_bits_helpers_agree_with_exact_rationals(x: float, y: float,
                                                 fmt: floats.Format) -> None:
    r = floats.is_representable(x, fmt)
    assert diagnosis.is_representable(x, fmt) == r
    if not r:
        return
    assert diagnosis._bits(x, fmt) == floats.to_bits(x, fmt)
    if not math.isnan(x):
        for mine, ref in ((diagnosis.next_up, floats.next_up),
                          (diagnosis.next_down, floats.next_down)):
            a, b = mine(x, fmt), ref(x, fmt)
            assert struct.pack("<d", a) == struct.pack("<d", b)
    if floats.is_representable(y, fmt):
        if math.isnan(x) or math.isnan(y):
            want = math.isnan(x) and math.isnan(y)
        else:
            want = floats.to_bits(x, fmt) == floats.to_bits(y, fmt)
            assert diagnosis.ulps_between(x, y, fmt) == float(abs(floats.ulp_distance(x, y, fmt)))
        assert diagnosis.same_bits(x, y, fmt) == want


def _clear() -> None:
    diagnosis._CACHE.clear()
    diagnosis._TABLES.clear()


def test_a_group_recomputed_at_once_gives_the_values_recomputed_one_by_one() -> None:
    """The recomputations of a schedule's explanations made in bulk
    (:func:`diagnosis._fill`, one fast-path call per schedule) and one by
    one with every cache empty: the same bits for every explanation and
    test, and the same diagnoses of outputs one ulp off."""
    doc = json.loads((ROOT / "conformance" / "vectors" / "defect_classes.json").read_text())
    groups = [g for g in doc["testGroups"] if all(t["result"] == "valid" for t in g["tests"])]
    assert len(groups) > 20

    def tables(bulk: bool) -> list[dict[Any, Any]]:
        _clear()
        out = []
        for g in groups:
            fmt = floats.get_format(g["dtype"])
            tabs = [diagnosis._table(t, g, fmt, "exact") for t in g["tests"]]
            keys = sorted({k for tab in tabs for k in tab.entries})
            if bulk:
                diagnosis._fill((tab, k) for tab in tabs for k in keys)
            else:
                diagnosis._CACHE.clear()
            for tab in tabs:
                for k in keys:
                    tab.level(k, 0)
                out.append(dict(tab.values))
        return out

    one, batched = tables(False), tables(True)
    assert batched == one
    assert sum(len(v) for v in one) > 1000

    def diagnoses() -> list[dict[str, Any]]:
        _clear()
        res = []
        for g in groups:
            fmt = floats.get_format(g["dtype"])
            outs = []
            for t in g["tests"]:
                k = decode_result(t["keras"], fmt, "keras")
                outs.append((t, g, floats.next_up(k, fmt) if math.isfinite(k) else k))
            res += [d.to_json() for d in diagnosis.diagnose_outputs(
                outs, list(range(len(outs))), fmt, "keras")]
        return res

    first = diagnoses()
    assert first == diagnoses()
    assert any(d["diagnosis"] == "proven" for d in first)
