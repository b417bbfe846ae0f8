"""The conformance suite tests itself: mutants with one deliberate defect.

Each mutant of ``tests/support/mutants/expdecay_mutants.py`` must fail under at
least one profile and carry its cause: at least one of its failures is
proven with its own cause id (alone, or joined only by the order or a pow
one ulp off), or, where the outputs cannot tell it from another, has it
among the alternatives of an ambiguous diagnosis (a finer mistake that
``diagnosis.FINER`` lists under it counts as its own: where the outputs
cannot tell the whole pipeline in float32 from one input through float32,
the narrower mistake is proven); none is proven with another cause.  The unmutated
baseline passes the keras profile on every vector file.  The full
measurement (every file, mutation score, labelling accuracy) is
``tests/support/mutants/measure.py``.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from typing import Any

import pytest

from support.paths import MUTANT_DIR, ROOT

VECTORS = ROOT / "conformance" / "vectors"
if str(MUTANT_DIR) not in sys.path:
    sys.path.insert(0, str(MUTANT_DIR))  # the workers inherit sys.path

import expdecay_mutants  # noqa: E402

from expdecay.conformance.diagnosis import FINER  # noqa: E402
from expdecay.conformance.runner import check_implementation  # noqa: E402
from expdecay.conformance.vectors import decode_number, iter_tests  # noqa: E402

NEUTRAL = {"keras-order", "exact-order", "pow-not-correctly-rounded"}

#: The vector files each mutant is run on (the compact set kills most).
COMPACT = ("examples.json", "invalid.json", "defect_classes.json")
EXTRA = {
    "negative_zero_lost": ("special_values.json",),
    "zero_rate_constant": ("special_values.json",),
    "pow_nan_propagates": ("special_values.json",),
    "negative_step_clamped": ("special_values.json",),
    "integer_arithmetic": ("special_values.json",),
    "subnormal_flushed": ("ranges.json",),
    "step_wrapped_int32": ("large_steps.json",),
    "step_through_float32": ("large_steps.json",),
}


def _docs(names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return {n: json.loads((VECTORS / n).read_text()) for n in names}


def _run(name: str, docs: dict[str, dict[str, Any]], rerun: bool = False) -> dict[str, Any]:
    reps = check_implementation(f"python:expdecay_mutants:{name}", {}, docs,
                                ("exact", "keras"), rerun=rerun)
    return {r.profile: r for r in reps}


def test_the_baseline_passes_the_keras_profile() -> None:
    reps = _run("baseline", _docs(tuple(sorted(p.name for p in VECTORS.glob("*.json")))))
    k = reps["keras"]
    assert (k.failed, k.not_run, k.process_state) == (0, 0, 0) and k.passed > 2000
    # and fails the exact profile only where the keras order differs
    assert reps["exact"].failed > 0
    assert set(reps["exact"].cause_ids) <= {"keras-order", "pow-not-correctly-rounded",
                                            "step-shifted", "chained-product",
                                            "decay-steps-ignored", "staircase-ignored",
                                            "floor-as-round", "subnormal-flushed",
                                            "computed-in-narrower-format",
                                            "negative-zero-lost"} or all(
        "keras-order" in e["causeIds"] for f in reps["exact"].files for e in f.failures
        if e["diagnosis"] == "proven")


@pytest.mark.parametrize("name", list(expdecay_mutants.MUTANTS))
def test_each_mutant_is_killed_and_labelled(name: str) -> None:
    cause = expdecay_mutants.MUTANTS[name][1]
    reps = _run(name, _docs(COMPACT + EXTRA.get(name, ())))
    # The baseline passes the keras profile: a mutant is killed when it fails it.
    assert reps["keras"].failed > 0, f"{name} was not killed"
    own = wrong = 0
    for f in reps["keras"].files:
        for e in f.failures:
            if e["diagnosis"] != "proven":
                continue
            ids = set(e["causeIds"])
            if cause in ids and not ids - {cause} - NEUTRAL:
                own += 1
            elif len(ids - NEUTRAL) == 1 and ids - NEUTRAL <= set(FINER.get(cause, ())):
                own += 1  # a finer mistake the outputs cannot tell from the cause
            else:
                wrong += 1  # proven with a cause the mutant does not have
    # Where the schedule's outputs cannot tell the cause from another, the
    # failures are ambiguous with the cause among the alternatives.
    among = sum(any(cause in a for a in e.get("alternatives", []))
                for f in reps["keras"].files for e in f.failures)
    assert own > 0 or among > 0, f"{name}: no failure proven as {cause}"
    assert wrong == 0, f"{name}: {wrong} failures proven with another cause"


def test_a_crashing_worker_passes_nothing_it_did_not_answer() -> None:
    """The mutant exits on NaN steps: those tests are "not run", never passed
    (even the acceptable ones, where an error would pass)."""
    doc = copy.deepcopy(json.loads((VECTORS / "special_values.json").read_text()))
    doc["testGroups"] = doc["testGroups"][:6]
    reps = _run("crash", {"special_values.json": doc})
    nan_steps = {t["tcId"] for g, t in iter_tests(doc)
                 if isinstance(decode_number(t["step"]), float)
                 and math.isnan(decode_number(t["step"]))}
    assert nan_steps
    for rep in reps.values():
        [f] = rep.files
        not_run = {e["tcId"] for e in f.not_run_tests}
        assert nan_steps <= not_run
        assert rep.passed + rep.failed + rep.not_run + rep.na == doc_tests(doc)
        assert not rep.ok


def doc_tests(doc: dict[str, Any]) -> int:
    return sum(len(g["tests"]) for g in doc["testGroups"])


def test_a_failure_that_depends_on_process_state_is_found_by_the_fresh_rerun() -> None:
    """A value-keyed constant cache (like TensorFlow's eager cache) gives
    +0.0 for -0.0 once 0.0 was seen: the I = -0 groups fail after the I = 0
    groups and give -0.0 in a fresh process.  They stay failures, labelled
    ``process-state``, with both outputs as evidence."""
    doc = json.loads((VECTORS / "special_values.json").read_text())
    docs = {"special_values.json": doc}
    plain = _run("process_state", docs, rerun=False)
    fresh = _run("process_state", docs, rerun=True)
    for profile in ("exact", "keras"):
        before, after = plain[profile], fresh[profile]
        assert before.failed > 0 and before.process_state == 0
        assert after.process_state > 0 and after.failed == before.failed
        assert after.status == "fails"
        [f] = after.files
        assert len(f.state_tests) == after.process_state
        for e in f.state_tests:
            assert e["inputs"]["initial_learning_rate"] == "-0x0p+0"
            assert e["observed"] != e["freshObserved"] == e["expected"]
        # the baseline has no failure of the keras profile: every one is a
        # state effect of the I = -0 groups
        if profile == "keras":
            assert after.failed == after.process_state
