"""Directed search for the worst steps of an implementation, and for steps
whose exact value is hard to round; findings can be written as vectors.

The search is Hypothesis driven by ``target()``: one target maximises the
implementation's ulp error against the ``exact`` order, the other maximises
``-log2`` of the distance (in ulps) from the exact value to the nearest
rounding boundary of the format.  Hypothesis's targeted phase then climbs
both, starting from random steps and from the seeds given (the worst steps of
a sweep, the misfloors).  Runs are derandomised, so a search is repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..conformance.vectors import ANALYSIS_NOTES
from ..fileio import atomic_write
from ..floats import Format, next_down, next_up, ulp_keys
from ..inputs import to_exact
from ..oracle import Power, amplification_bits, enclose, exact_node
from ..resources import require
from .sweep import Schedule, StepSet, evaluate_order
from .sweep.evaluation import implementation_values

__all__ = ["Finding", "SearchResult", "search_worst", "boundary_distance", "write_vectors"]


@dataclass(frozen=True)
class Finding:
    """One step and what it shows."""

    step: int
    ulp: int  # implementation - exact
    distance: float  # ulps from the exact value to the nearest rounding boundary
    kind: str  # "worst-case" or "hard-to-round"


@dataclass
class SearchResult:
    """The best steps found by :func:`search_worst`."""

    examples: int
    worst: list[Finding] = field(default_factory=list)
    hardest: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        w = self.worst[0] if self.worst else None
        h = self.hardest[0] if self.hardest else None
        return {
            "examples": self.examples,
            "worst_step": w.step if w else None,
            "worst_ulp": w.ulp if w else 0,
            "hardest_step": h.step if h else None,
            "hardest_distance_ulp": h.distance if h else math.inf,
            "worst": [f.__dict__ for f in self.worst],
            "hardest": [f.__dict__ for f in self.hardest],
        }


def boundary_distance(schedule: Schedule, step: int) -> float:
    """Distance, in ulps of the result, from the exact value of the schedule
    at ``step`` to the nearest rounding boundary (midpoint) of the format.

    Small values are hard cases: a ``pow`` with an error of that size rounds
    the wrong way.  ``inf`` for special values.  The exact value is enclosed
    in an interval about ``2**-80`` ulps wide (exactly when it is rational),
    so distances are resolved far below anything a float computation sees.
    """
    fmt = schedule.format
    sch = schedule
    node = exact_node(sch.initial_learning_rate, sch.decay_steps, sch.decay_rate, step,
                      staircase=sch.staircase)
    if isinstance(node, Power):
        lo, hi = enclose(node, fmt.precision + 80 + amplification_bits(node))
        y = (_mpf_to_fraction(lo) + _mpf_to_fraction(hi)) / 2
    elif isinstance(node, Fraction):
        y = node
    else:
        return math.inf
    yf = float(evaluate_order(sch.initial_learning_rate, sch.decay_steps, sch.decay_rate,
                              np.asarray([step]), staircase=sch.staircase, dtype=fmt.name,
                              order="exact")[0])
    if not math.isfinite(yf) or yf == 0.0:
        return math.inf
    return _midpoint_distance(abs(y), abs(yf), fmt)


def _mpf_to_fraction(x: Any) -> Fraction:
    """The exact value of an mpmath mpf tuple (finite)."""
    sign, man, exp, _ = x
    q = Fraction(int(man)) * Fraction(2) ** int(exp)
    return -q if sign else q


def _midpoint_distance(y: Fraction, yf: float, fmt: Format) -> float:
    up, down = next_up(yf, fmt), next_down(yf, fmt)
    if not (math.isfinite(up) and math.isfinite(down)):
        return math.inf
    f = Fraction(yf)
    ulp = Fraction(up) - f if y >= f else f - Fraction(down)
    mid = (f + Fraction(up)) / 2 if y >= f else (f + Fraction(down)) / 2
    return float(abs(y - mid) / ulp)


def search_worst(
    schedule: Schedule,
    steps: StepSet,
    *,
    examples: int = 300,
    implementation: str = "expdecay",
    options: dict[str, Any] | None = None,
    seeds: tuple[int, ...] = (),
    keep: int = 10,
) -> SearchResult:
    """Search ``[steps.lo, steps.hi)`` for the largest error of the
    implementation and for the hardest-to-round exact values."""
    require("hypothesis", "search", "the worst-case search")
    from hypothesis import HealthCheck, Phase, given, settings, target
    from hypothesis import strategies as st

    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise ValueError(f"examples must be an int >= 1; got {examples!r}")
    options = dict(options or {})
    seen: dict[int, Finding] = {}
    lo, hi = steps.lo, steps.hi - 1

    def measure(step: int) -> Finding:
        if step not in seen:
            arr = np.asarray([step], dtype=np.int64)
            sch = schedule
            exact = evaluate_order(sch.initial_learning_rate, sch.decay_steps, sch.decay_rate, arr,
                                   staircase=sch.staircase, dtype=sch.dtype, order="exact")
            impl = implementation_values(sch, arr, implementation, options)
            fmt = sch.format
            if np.isnan(exact[0]) or np.isnan(impl[0]):
                err = 0
            else:
                err = int(ulp_keys(impl, fmt)[0] - ulp_keys(exact, fmt)[0])
            seen[step] = Finding(step, err, boundary_distance(sch, step), "")
        return seen[step]

    # Offsets that climb well in both directions over a wide range.
    step_strategy = st.one_of(
        st.integers(lo, hi),
        st.integers(0, 60).map(lambda k: min(hi, max(lo, 1 << k))).flatmap(
            lambda c: st.integers(max(lo, c - 4096), min(hi, c + 4096))),
    )

    @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate, Phase.target],
              suppress_health_check=list(HealthCheck))
    @given(step_strategy)
    def probe(step: int) -> None:
        f = measure(step)
        target(float(abs(f.ulp)), label="ulp error")
        d = f.distance if f.distance > 0 else 1e-300
        target(-math.log2(d) if math.isfinite(d) else -1e9, label="hardness")

    for s in seeds:
        if lo <= s <= hi:
            measure(s)
    probe()
    found = list(seen.values())
    worst = sorted(found, key=lambda f: (-abs(f.ulp), f.step))[:keep]
    hard = sorted(found, key=lambda f: (f.distance, f.step))[:keep]
    return SearchResult(
        len(seen),
        [Finding(f.step, f.ulp, f.distance, "worst-case") for f in worst if f.ulp],
        [Finding(f.step, f.ulp, f.distance, "hard-to-round") for f in hard],
    )


# ---------------------------------------------------------------------------
# Vectors
# ---------------------------------------------------------------------------

#: Our flag for a step found by the worst-case search (HardRounding is shared);
#: its note lives with the other notes, where the validator checks it.
WORST_CASE_NOTE = ANALYSIS_NOTES["SearchWorstCase"]


def python_inputs(schedule: Schedule) -> tuple[Schedule, bool]:
    """The schedule with its inputs as Python numbers (int when integral and
    within int64, else the nearest float64), as vector files hold them; and
    whether any input changed value on the way."""
    out: list[int | float] = []
    changed = False
    for x, name in ((schedule.initial_learning_rate, "initial_learning_rate"),
                    (schedule.decay_steps, "decay_steps"), (schedule.decay_rate, "decay_rate")):
        q = to_exact(x, name)
        if isinstance(q, Fraction) and q.denominator == 1 and abs(q.numerator) < 1 << 63:
            out.append(int(q))
        else:
            f = float(q)
            changed |= not (isinstance(q, float) or Fraction(f) == q)
            out.append(f)
    return Schedule(out[0], out[1], out[2], schedule.staircase, schedule.dtype), changed


def write_vectors(schedule: Schedule, found: SearchResult, path: str) -> str:
    """Write the findings as one conformance vector file (``vectors.schema.json``:
    one test group, a test per step, expectations from the oracle) to ``path``,
    atomically (:func:`expdecay.fileio.atomic_write`).

    The inputs must be ints or float64s there: a decimal input such as
    ``"0.1"`` is written as the double nearest it, and the expectations are
    those of that double (the header says so).
    """
    from .. import __version__
    from ..conformance.vectors import (
        ALGORITHM,
        NOTES,
        SCHEMA_NAME,
        SEARCH_THEME,
        Case,
        Group,
        dumps,
        encode_number,
        make_tests,
    )

    sch, changed = python_inputs(schedule)
    cases, seen = [], set()
    for f, flag, text in (
        *((f, "SearchWorstCase", f"search: implementation off by {f.ulp:+d} ulp")
          for f in found.worst),
        *((f, "HardRounding", f"exact value {f.distance:.3g} ulp from a rounding midpoint")
          for f in found.hardest),
    ):
        if f.step not in seen:
            seen.add(f.step)
            cases.append(Case(f.step, text, (flag,)))
    group = Group(sch.dtype, sch.staircase, sch.initial_learning_rate, sch.decay_steps,
                  sch.decay_rate, cases, comment="steps found by expdecay analyze --search")
    tests = make_tests(group, range(1, len(cases) + 1))
    used = {fl for t in tests for fl in t["flags"]}
    notes_src = {**NOTES, **ANALYSIS_NOTES}
    header = ["Steps found by `expdecay analyze --search`: the largest errors of the "
              "analysed implementation and the hardest-to-round exact values."]
    if changed:
        header.append("Decimal inputs were written as the nearest float64; the expectations "
                      "are those of the float64 inputs.")
    doc = {
        "algorithm": ALGORITHM,
        "schema": SCHEMA_NAME,
        "generatorVersion": __version__,
        "theme": SEARCH_THEME,
        "numberOfTests": len(tests),
        "header": header,
        "notes": {n: {"bugType": b, "description": d, "effect": e}
                  for n, (b, d, e) in notes_src.items() if n in used},
        "testGroups": [{
            "type": "ExponentialDecayTest",
            "comment": group.comment,
            "dtype": sch.dtype,
            "staircase": sch.staircase,
            "initialLearningRate": encode_number(sch.initial_learning_rate),
            "decaySteps": encode_number(sch.decay_steps),
            "decayRate": encode_number(sch.decay_rate),
            "tests": tests,
        }],
    }
    atomic_write(path, dumps(doc), encoding="ascii")
    return path
