"""Recomputing a group's failures at once (:func:`diagnosis.prepare`) gives
the diagnoses made one by one.

Expected values: the one-by-one diagnoses with every cache empty.  (The bit
helpers the diagnosis uses are those of :mod:`expdecay.floats`, tested in
``test_floats_bits.py``.)
"""

from __future__ import annotations

import json
import math
from typing import Any

from expdecay import floats
from expdecay.conformance import diagnosis
from expdecay.conformance.vectors import decode_result
from support.paths import ROOT


def test_a_group_recomputed_at_once_gives_the_values_recomputed_one_by_one() -> None:
    """The recomputations of a schedule's explanations made in bulk
    (:func:`diagnosis.fill_tables`, one fast-path call per schedule) and one by
    one with every cache empty: the same bits for every explanation and
    test, and the same diagnoses of outputs one ulp off."""
    doc = json.loads((ROOT / "conformance" / "vectors" / "defect_classes.json").read_text())
    groups = [g for g in doc["testGroups"] if all(t["result"] == "valid" for t in g["tests"])]
    assert len(groups) > 20

    def tables(bulk: bool) -> list[dict[Any, Any]]:
        diagnosis.clear_caches()
        out = []
        for g in groups:
            fmt = floats.get_format(g["dtype"])
            tabs = [diagnosis.explanation_table(t, g, fmt, "exact") for t in g["tests"]]
            keys = sorted({k for tab in tabs for k in tab.entries})
            if bulk:
                diagnosis.fill_tables((tab, k) for tab in tabs for k in keys)
            else:
                diagnosis.clear_caches()
            for tab in tabs:
                for k in keys:
                    tab.level(k, 0)
                out.append(dict(tab.values))
        return out

    one, batched = tables(False), tables(True)
    assert batched == one
    assert sum(len(v) for v in one) > 1000

    def diagnoses() -> list[dict[str, Any]]:
        diagnosis.clear_caches()
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
