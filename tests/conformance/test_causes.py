"""A proven cause explains every output the implementation gave for its schedule.

The diagnosis proves a cause only when its recomputation reproduces every
output of the schedule (the passes as well as the failures, across the
groups with the same parameters); a candidate that matches the failing test
alone is "consistent with" it, never proven, and the failure is unexplained,
with the pattern of the outputs shown instead.

Expected values: the vector file's expected bits (the generator's, an
independent route) for the right outputs, and for the wrong ones values
derived by hand with exact rationals (``fractions``): with ``decay_rate``
0.5 and an integer exponent ``k`` the keras order gives exactly
``float32(0.1) * 2**-k``.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from support.paths import MUTANT_DIR, ROOT

VECTORS = ROOT / "conformance" / "vectors"
if str(MUTANT_DIR) not in sys.path:
    sys.path.insert(0, str(MUTANT_DIR))  # the workers inherit sys.path

import unnamed_mutants  # noqa: E402

from expdecay.conformance.diagnosis import CAUSES, FACTS, RIVALS  # noqa: E402
from expdecay.conformance.runner import check_implementation, summarise  # noqa: E402
from expdecay.conformance.vectors import decode_number, decode_result  # noqa: E402
from expdecay.floats import get_format  # noqa: E402

F32 = get_format("float32")
I32 = float(np.float32(0.1))  # the initial rate 0.1 cast to float32


def _group(file: str, dtype: str, staircase: bool, D: int, r: float) -> dict[str, Any]:
    doc = json.loads((VECTORS / file).read_text())
    for g in doc["testGroups"]:
        if (g["dtype"], g["staircase"], decode_number(g["decaySteps"]),
                decode_number(g["decayRate"]), decode_number(g["initialLearningRate"])) == (
                dtype, staircase, D, r, 0.1):
            return copy.deepcopy(g)
    raise AssertionError("group not found")


#: float32, staircase, I = 0.1, D = 3, r = 0.5, steps 0 to 301.
GROUP = _group("boundaries.json", "float32", True, 3, 0.5)


def _steps(g: dict[str, Any]) -> list[int]:
    return [decode_number(t["step"]) for t in g["tests"]]


def _right(t: dict[str, Any]) -> float:
    return decode_result(t["keras"], F32, "keras")


def _halvings(k: int) -> float:
    """float32(0.1) * 2**-k rounded once to float32 (exact rationals)."""
    q = Fraction(I32) / 2**k
    y = float(np.float32(float(q)))
    assert Fraction(y) == q or abs(Fraction(y) - q) < Fraction(2) ** -149  # exact or tiny
    return y


def _no_decay_steps(s: int) -> float:
    """The keras order with decay_steps taken as 1: floor(s / 1) = s."""
    return _halvings(s)


def _run(groups: list[dict[str, Any]], values: dict[int, float],
         profile: str = "keras") -> dict[int, dict[str, Any]]:
    """The failures (tcId -> report entry) of the outputs ``values``."""
    doc = {"testGroups": groups}
    outputs = {tc: (v, None, None, None) for tc, v in values.items()}
    summary = summarise("t.json", doc, outputs, profile)
    return {e["tcId"]: e for e in summary.failures}


def test_a_cause_the_schedules_other_outputs_refute_is_not_proven() -> None:
    """One output with decay_steps ignored, the others right: the other
    outputs refute decay-steps-ignored (it would change them too)."""
    g = GROUP
    k = _steps(g).index(4)
    values = {t["tcId"]: _right(t) for t in g["tests"]}
    values[g["tests"][k]["tcId"]] = _no_decay_steps(4)
    [(tc, e)] = _run([g], values).items()
    assert tc == g["tests"][k]["tcId"]
    assert (e["diagnosis"], e["causeIds"]) == ("unexplained", [])
    assert e["consistentWith"] == [["decay-steps-ignored"]]
    # the pattern: floor(4 / 3) = 1 expected (0.05), 2**-4 given: 3 binades below
    assert e["causes"][1] == "no known mistake reproduces every output of this schedule: " \
                             "1 of 13 wrong"
    assert e["causes"][2] == ("signed ulp distances of the wrong outputs from the expected "
                              f"values: {-3 * 2**23} (1)")
    assert e["causes"][3] == "wrong at steps 4; right at steps 0, 2, 3, 5, 6, 7, ... " \
                             "(12 in all)"


def test_a_cause_that_reproduces_every_output_is_proven() -> None:
    g = GROUP
    values = {t["tcId"]: _no_decay_steps(decode_number(t["step"])) for t in g["tests"]}
    failures = _run([g], values)
    wrong = sum(not (values[t["tcId"]] == _right(t)) for t in g["tests"])
    assert len(failures) == wrong == 12  # step 0 is right (the initial rate)
    for e in failures.values():
        assert (e["diagnosis"], e["causeIds"]) == ("proven", ["decay-steps-ignored"])
        assert e["causes"][-1] == ("reproduces every output of this schedule (13, 12 of them "
                                   "wrong)")


def test_groups_with_the_same_schedule_are_one_evidence() -> None:
    """The same schedule in two groups: the right outputs of one refute the
    cause the other's outputs alone would prove."""
    a, b = copy.deepcopy(GROUP), copy.deepcopy(GROUP)
    for n, t in enumerate(b["tests"]):
        t["tcId"] = 1000 + n
    values = {t["tcId"]: _no_decay_steps(decode_number(t["step"])) for t in a["tests"]}
    values.update({t["tcId"]: _right(t) for t in b["tests"]})
    failures = _run([a, b], values)
    assert len(failures) == 12
    assert {e["diagnosis"] for e in failures.values()} == {"unexplained"}
    assert all(["decay-steps-ignored"] in e["consistentWith"] for e in failures.values())
    # alone, group a proves it
    alone = _run([a], {t["tcId"]: values[t["tcId"]] for t in a["tests"]})
    assert {e["diagnosis"] for e in alone.values()} == {"proven"}


def test_a_single_output_proves_nothing() -> None:
    """A schedule with one output: a candidate matching it is consistent
    with it, never proven."""
    g = copy.deepcopy(GROUP)
    g["tests"] = [t for t in g["tests"] if decode_number(t["step"]) == 4]
    [e] = _run([g], {g["tests"][0]["tcId"]: _no_decay_steps(4)}).values()
    assert (e["diagnosis"], e["causeIds"]) == ("unexplained", [])
    assert e["consistentWith"] == [["decay-steps-ignored"]]
    assert "a single output cannot tell one mistake from another" in e["causes"]


def test_the_pattern_names_the_property_of_the_wrong_steps() -> None:
    """Three ulps above the answer exactly where s / D is an integer: no
    mistake reproduces it (a pow one ulp above a power of two moves
    float32(0.1) times it by 1.6 ulps: two)."""
    g = GROUP
    values = {}
    wrong = []
    for t in g["tests"]:
        s, v = decode_number(t["step"]), _right(t)
        if s % 3 == 0 and v != 0:
            for _ in range(3):
                v = float(np.nextafter(np.float32(v), np.float32(1)))
            wrong.append(s)
        values[t["tcId"]] = v
    failures = _run([g], values)
    assert sorted(_steps_of(failures)) == wrong == [0, 3, 6, 21, 300]
    for e in failures.values():
        assert e["diagnosis"] == "unexplained"
        assert e["causes"][2].endswith("from the expected values: +3 (5)")
        assert e["causes"][4] == "the wrong outputs are those with s / D an integer"
        assert "this output: +3 ulp from the expected value, +3 from the keras order" in \
            e["causes"]


def _steps_of(failures: dict[int, dict[str, Any]]) -> list[int]:
    return [int(e["inputs"]["step"]) for e in failures.values()]


def test_a_proven_cause_matches_the_pattern_of_every_group_output() -> None:
    """The exact profile: the keras order proves itself only with the
    schedule's passes (its outputs that equal the exact order's)."""
    g = GROUP
    values = {t["tcId"]: _right(t) for t in g["tests"]}
    failures = _run([g], values, profile="exact")
    for e in failures.values():
        assert e["diagnosis"] == "proven" and e["causeIds"] == ["keras-order"]


# ---------------------------------------------------------------------------
# Mutants whose defect has no cause id (tests/support/mutants/unnamed_mutants.py)
# ---------------------------------------------------------------------------


def _mutant(name: str, files: tuple[str, ...]) -> dict[str, Any]:
    docs = {f: json.loads((VECTORS / f).read_text()) for f in files}
    reps = check_implementation(f"python:unnamed_mutants:{name}", {}, docs,
                                ("exact", "keras"), rerun=False)
    return {r.profile: r for r in reps}


def _wrong(rep: Any, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """Failures proven with a cause the mutant does not have."""
    right = set(allowed) | set(FACTS) | ({"keras-order"} if rep.profile == "exact" else set())
    return [e for f in rep.files for e in f.failures
            if e["diagnosis"] == "proven" and not set(e["causeIds"]) <= right]


def test_zero_for_nan_is_not_proven_to_ignore_decay_steps() -> None:
    """Returning 0 where the answer is NaN: decay_steps taken as 1 also
    gives 0 there (the exponent overflows), but zeros prove no such
    mistake."""
    reps = _mutant("nan_as_zero", ("large_steps.json", "boundaries.json",
                                   "special_values.json"))
    for rep in reps.values():
        assert rep.failed > 0
        assert not any("decay-steps-ignored" in e["causeIds"]
                       for f in rep.files for e in f.failures)
    assert _wrong(reps["keras"], ()) == []


def test_a_staircase_rounded_up_is_not_proven_to_ignore_decay_steps() -> None:
    reps = _mutant("staircase_ceil", ("decay_rates.json", "boundaries.json"))
    for rep in reps.values():
        assert rep.failed > 0
        assert not any("decay-steps-ignored" in e["causeIds"]
                       for f in rep.files for e in f.failures)


def test_one_input_through_float16_is_proven_as_such_not_the_whole_pipeline() -> None:
    """The initial rate stored as float16 in float32 schedules whose powers
    are exact: the whole pipeline in float16 reproduces the outputs too,
    but the narrower mistake is proven."""
    reps = _mutant("initial_rate_through_float16", ("decay_rates.json",))
    k = reps["keras"]
    proven = [e for f in k.files for e in f.failures if e["diagnosis"] == "proven"]
    assert proven
    assert not any("computed-in-narrower-format" in e["causeIds"] for e in proven)
    finer = [e for e in proven if e["causeIds"] == ["input-through-narrower-format"]]
    assert finer and all("initial_learning_rate through float16" in e["causes"]
                         for e in finer)


#: The vector files each unnamed mutant is run on.
FILES = {
    "nan_as_zero": ("special_values.json", "large_steps.json"),
    "staircase_ceil": ("boundaries.json", "decay_rates.json"),
    "step_through_float16": ("boundaries.json", "large_steps.json"),
    "rate_clamped_unit": ("decay_rates.json", "special_values.json"),
    "multiply_toward_zero": ("decay_rates.json",),
    "inputs_flushed": ("ranges.json",),
    "staircase_stale_chunk": ("boundaries.json",),
    "pow_as_exp_log": ("decay_rates.json",),
    "division_toward_zero": ("boundaries.json",),
    "zero_pow_zero_nan": ("special_values.json",),
    "overflow_saturated": ("ranges.json", "special_values.json"),
    "nan_step_to_num": ("special_values.json",),
    "decay_steps_ceil": ("defect_classes.json",),
    "negative_step_abs": ("special_values.json", "defect_classes.json"),
    "rate_through_bfloat16": ("decay_rates.json",),
    "initial_rate_through_float16": ("boundaries.json",),
}

#: The wrong proofs left (measured by tests/support/mutants/measure.py --set
#: unnamed, listed in tests/support/mutants/README.md): exp(p * log(r)) in float64
#: gives the exact order's bits on one output of decay_rates.json under the
#: keras profile, every other output of its schedule right.
REMAINING = {("pow_as_exp_log", "keras"): [["exact-order"]]}


@pytest.mark.parametrize("name", list(unnamed_mutants.MUTANTS))
def test_each_unnamed_mutant_is_killed_and_gets_no_wrong_proven_cause(name: str) -> None:
    reps = _mutant(name, FILES[name])
    assert reps["keras"].failed > 0, f"{name} was not killed"
    allowed = unnamed_mutants.MUTANTS[name][1]
    for rep in reps.values():
        wrong = [e["causeIds"] for e in _wrong(rep, allowed)]
        assert wrong == REMAINING.get((name, rep.profile), []), f"{name} ({rep.profile})"


def test_the_unnamed_mutants_are_documented() -> None:
    text = (MUTANT_DIR / "README.md").read_text()
    for name, (_knob, _ids, what) in unnamed_mutants.MUTANTS.items():
        assert f"`{name}`" in text, name
        assert what
    assert len(unnamed_mutants.MUTANTS) >= 12
    assert math.isnan(unnamed_mutants.baseline(0.1, 1000, -0.5, [500], staircase=False,
                                               dtype="float32")[0])


def test_a_product_rounded_toward_zero_is_not_proven_a_pow_one_ulp_off() -> None:
    """Results one ulp low: a pow one ulp off reproduces every output, but so
    does the final product rounded toward zero (a rival with no cause id):
    ambiguous, never proven."""
    reps = _mutant("multiply_toward_zero", ("decay_rates.json",))
    for rep in reps.values():
        fails = [e for f in rep.files for e in f.failures]
        assert fails
        assert not any(e["diagnosis"] == "proven" and "pow-not-correctly-rounded" in
                       e["causeIds"] for e in fails)
        assert any(e["diagnosis"] == "ambiguous" and any(
            "product-toward-zero" in a for a in e["alternatives"]) for e in fails)
    assert "product-toward-zero" in RIVALS and "product-toward-zero" not in CAUSES
