"""Conformance vectors: deterministic generation and validation.

A vector file holds the tests of one theme (documented examples, step
boundaries, large steps, ...), in the layout of ``spec/vectors.schema.json``
and ``spec/conformance.md``: shared parameters in ``testGroups``, one entry
per step in ``tests``, every number written exactly (integers as decimal
strings, floats as a float64 bit pattern plus its hex float), the expected
bits of both orders, the exact value to 40 digits, flags explained in
``notes`` and a tolerance in ulps per profile.

Generation is deterministic: no clock, no unseeded randomness, fixed key
order, so the same version of the package rewrites byte-identical files.
Validation reads only regular files of bounded size, refuses duplicate keys
and lone surrogates, checks the schema, then regenerates every test from its
inputs with the generator's own code (:func:`make_tests`) and compares it
field by field: a file validates only if every expectation, tolerance, flag
and result is exactly what expdecay writes for those inputs.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, resources
from ..fileio import ReadRefusedError, atomic_write, read_limited
from ..floats import Format, from_bits, get_format, round_rational, to_bits, to_hex
from ..inputs import to_exact
from ..oracle import ExactOps, RoundedOps, value

__all__ = [
    "THEMES",
    "NOTES",
    "DERIVED_FLAGS",
    "ANALYSIS_NOTES",
    "SEARCH_THEME",
    "CAMPAIGN_THEME",
    "keras_tolerance",
    "generate",
    "make_tests",
    "write_vectors",
    "load_vector_file",
    "validate_file",
    "VectorFileError",
    "decode_number",
    "encode_number",
    "default_vectors_dir",
    "schema",
]

SCHEMA_NAME = "vectors.schema.json"
ALGORITHM = "ExponentialDecay"
#: Tolerance (ulps) of the keras profile when the order's pow is inexact:
#: a pow within 1 ulp moves the final product by at most 2 ulps.
KERAS_POW_TOLERANCE = 2
#: Largest vector file accepted (bytes).
MAX_FILE_BYTES = 64 << 20

INT64_MAX = 2**63 - 1

# ---------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------

#: flag -> (bugType, description, effect of a failure)
NOTES: dict[str, tuple[str, str, str]] = {
    "Example": ("Functionality", "A documented example (README, spec).",
                "The implementation disagrees with a published value."),
    "StepBoundary": ("EdgeCase", "The step is 0 or next to a multiple k*D of decay_steps.",
                     "A staircase that floors at the wrong step, or an exponent off by one."),
    "LargeStep": ("EdgeCase", "The step is large (around 2**24, 2**31, 2**53 or int64's limit).",
                  "Integer-to-float conversion or integer overflow of the step."),
    "StepCast": ("CastOfInput", "The step is not a value of the format: casting it rounds it.",
                 "An implementation that casts the step first (Keras) sees another step."),
    "DecayStepsCast": ("CastOfInput", "decay_steps is not a value of the format.",
                       "Casting decay_steps changes the exponent."),
    "RateCast": ("CastOfInput", "decay_rate is not a value of the format.",
                 "Casting decay_rate changes every value by up to |p| half-ulps of r."),
    "InitialCast": ("CastOfInput", "initial_learning_rate is not a value of the format.",
                    "Casting the initial rate changes the value by up to half an ulp."),
    "Misfloor": ("CastOfInput",
                 "Staircase: the floor of the rounded quotient differs from the exact floor.",
                 "The staircase decays one step early or late in the keras order."),
    "OrdersDiffer": ("Informative", "The exact and keras orders give different bits.",
                     "Passing one profile implies failing the other."),
    "PowExact": ("Informative", "pow in the keras order is exact (or a special value).",
                 "No libm error is allowed: the keras tolerance is 0."),
    "DecayRate": ("EdgeCase", "A decay rate below, at, above or very near 1, or tiny.",
                  "pow mishandled near 1, for tiny bases, or for growth."),
    "Subnormal": ("EdgeCase", "The expected result is subnormal in the format.",
                  "Subnormals flushed to zero, or lost precision in gradual underflow."),
    "Overflow": ("EdgeCase", "The exact value exceeds the format's range: the result is inf.",
                 "Saturation to the largest finite value, or NaN instead of inf."),
    "Underflow": ("EdgeCase", "The exact value is nonzero but rounds to zero.",
                  "A wrong sign of zero or a spurious smallest subnormal."),
    "FormatLimit": ("EdgeCase", "Values at the limits of float16/bfloat16.",
                    "A cast to the format saturating, or decay_steps cast to inf."),
    "SpecialValue": ("EdgeCase", "A NaN, infinity or zero input (IEEE 754 / C99 pow table).",
                     "pow or multiplication special cases handled differently."),
    "NegativeRate": ("EdgeCase", "A negative decay_rate: real only for integer exponents.",
                     "Missing NaN for non-integer exponents, or a wrong sign."),
    "NegativeStep": ("EdgeCase", "A negative step (the schedule grows backwards).",
                     "Clamping, integer wrap-around or rejection of the step."),
    "NonFiniteStep": ("EdgeCase", "A NaN or infinite step.",
                      "Integer conversion errors or a wrong special value."),
    "IntegerInput": ("Functionality", "initial_learning_rate is a Python int.",
                     "Integer arithmetic (the value truncated to 0 or 1)."),
    "InvalidDecaySteps": ("InvalidConfiguration", "decay_steps <= 0 or not finite.",
                          "Missing validation: the configuration must be rejected."),
    "HardRounding": ("RoundingBoundary",
                     "The exact-order value is very close to a rounding midpoint "
                     "(found by search).",
                     "An implementation that is not correctly rounded picks the other float."),
    "InvalidStaircase": ("InvalidConfiguration",
                         "staircase is not a bool (the string \"False\", an integer, null), "
                         "passed to the implementation as given.",
                         "Missing validation: a truthy string such as \"False\" silently "
                         "selects the staircase schedule."),
    "ReciprocalDivision": ("CastOfInput",
                           "Staircase with a small decay_steps D whose rounded reciprocal "
                           "1/D is below 1/D: s * (1/D) falls just below the integer s / D "
                           "for these steps (all below 2**24).",
                           "s / D computed as a multiplication by a rounded reciprocal "
                           "floors one period early."),
    "LongHorizon": ("Functionality",
                    "Many decay periods (up to 10**5), with a rate that is not a power of two, "
                    "or a result that underflows.",
                    "A chained product (the rate multiplied in once per period) drifts by "
                    "tens of ulps, or stays on a subnormal instead of reaching zero."),
    "NonIntegerDecaySteps": ("EdgeCase", "decay_steps is not an integer (2.5, 1000.5, 0.75).",
                             "decay_steps truncated or converted to an integer."),
    "NegativeStaircase": ("EdgeCase",
                          "Staircase with negative steps, the exponent between two integers.",
                          "floor replaced by truncation toward zero (or by rounding)."),
    "DoubleRounding": ("RoundingBoundary",
                       "The exact value is a midpoint of the format (r = m**3, p = 1/3); a "
                       "float64 pipeline lands a few float64 ulps below it.",
                       "Computing in float64 and rounding to the format at the end picks "
                       "the other neighbour of the midpoint."),
    "DtypePath": ("CastOfInput",
                  "A float64 schedule whose steps reach far (beyond 2**24 and 2**31), for the "
                  "variants that give the dtype in other ways (a numpy float64 scalar, "
                  "floatx float64, the step counter's dtype).",
                  "The dtype is not honoured on that path: float32 arithmetic shows as "
                  "errors of about 2**29 ulps, or a misfloor."),
    "HardRoundingPow": ("RoundingBoundary",
                        "pow in the keras order is very close to a rounding midpoint.",
                        "A libm pow that is faithful but not correctly rounded."),
}

#: flags of the tests whose result is "acceptable": an error also passes.
ACCEPTABLE_FLAGS = ("NegativeStep", "NonFiniteStep")

#: Flags computed from a test's inputs and expected results (by
#: :func:`automatic_flags` and :func:`make_tests`).  The others are declared by
#: the theme that made the test (what it is an example of); a theme never
#: declares a derived flag, so a file's flags split unambiguously into the
#: declared ones, written first, and the derived ones.
DERIVED_FLAGS = frozenset({
    "StepCast", "DecayStepsCast", "RateCast", "InitialCast", "Misfloor", "OrdersDiffer",
    "PowExact", "Subnormal", "Overflow", "Underflow", "NonFiniteStep", "NegativeStep",
})

#: Theme of the vector files written by ``expdecay analyze --search``.
SEARCH_THEME = "analysis_search"

#: Flags of ``expdecay analyze --search`` files beyond :data:`NOTES`.
ANALYSIS_NOTES: dict[str, tuple[str, str, str]] = {
    "SearchWorstCase": (
        "Functionality",
        "A step where the analysed implementation was far from the correctly rounded value "
        "(found by a directed search).",
        "An implementation failing it carries the same precision defect.",
    ),
    "RandomCampaign": (
        "Functionality",
        "A case drawn by a random differential campaign (expdecay check --random) on which "
        "the checked implementation failed; the comment gives the seed, the case number and "
        "the region it was drawn from.",
        "The implementation fails a case that a seeded random campaign found.",
    ),
}

#: Theme of the vector files written by ``expdecay check --random --write-failures``.
CAMPAIGN_THEME = "random_campaign"

#: The declared flags of a test of a search file: one per finding.
SEARCH_FLAGS: tuple[tuple[str, ...], ...] = (("SearchWorstCase",), ("HardRounding",))

#: The declared flags each theme written outside :data:`THEMES` allows.
OTHER_THEMES: dict[str, tuple[tuple[str, ...], ...]] = {
    SEARCH_THEME: SEARCH_FLAGS,
    CAMPAIGN_THEME: (("RandomCampaign",),),
}


# ---------------------------------------------------------------------------
# Number encoding
# ---------------------------------------------------------------------------


def encode_number(x: int | float) -> dict[str, str]:
    """An input number, exactly: ``{"int": "123"}`` or a float64's bits and hex."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"number must be an int or float; got {x!r}")
    if isinstance(x, int):
        if not -INT64_MAX - 1 <= x <= INT64_MAX:
            raise ValueError(f"integer inputs must fit in int64; got {x!r}")
        return {"int": str(x)}
    f64 = get_format("float64")
    return {"hex": to_hex(x), "bits": f"{to_bits(x, f64):016x}"}


def decode_number(obj: Any, where: str = "number") -> int | float:
    """Inverse of :func:`encode_number`; ``ValueError`` names ``where``."""
    if isinstance(obj, dict) and set(obj) == {"int"} and isinstance(obj["int"], str):
        text = obj["int"]
        if not (0 < len(text) <= 20) or not text.lstrip("-").isdigit():
            raise ValueError(f"{where}: bad integer {text[:40]!r}")
        n = int(text)
        if not -INT64_MAX - 1 <= n <= INT64_MAX:
            raise ValueError(f"{where}: integer outside int64: {text}")
        return n
    if isinstance(obj, dict) and set(obj) == {"hex", "bits"}:
        bits, hx = obj["bits"], obj["hex"]
        if not isinstance(bits, str) or len(bits) != 16:
            raise ValueError(f"{where}: bits must be 16 hex digits")
        try:
            x = from_bits(int(bits, 16), get_format("float64"))
        except ValueError:
            raise ValueError(f"{where}: bad bits {bits!r}") from None
        if not isinstance(hx, str) or to_hex(x) != hx:
            raise ValueError(f"{where}: hex {str(hx)[:40]!r} does not match bits {bits}")
        return x
    raise ValueError(f"{where}: a number is {{'int': ...}} or {{'hex': ..., 'bits': ...}}")


def encode_result(x: float, fmt: Format) -> dict[str, str]:
    """An expected output: its bits in the format and its hex float."""
    return {"bits": f"{to_bits(x, fmt):0{fmt.width // 4}x}", "hex": to_hex(x)}


def decode_result(obj: dict[str, str], fmt: Format, where: str) -> float:
    bits = obj["bits"]
    if len(bits) != fmt.width // 4:
        raise ValueError(f"{where}: {fmt.name} bits need {fmt.width // 4} hex digits")
    x = from_bits(int(bits, 16), fmt)
    if to_hex(x) != obj["hex"]:
        raise ValueError(f"{where}: hex {obj['hex']!r} does not match bits {bits}")
    return x


# ---------------------------------------------------------------------------
# Case description
# ---------------------------------------------------------------------------


@dataclass
class Case:
    """One test before its expectations are computed."""

    step: int | float
    comment: str
    flags: tuple[str, ...] = ()


@dataclass
class Group:
    """Shared parameters and the cases of a test group."""

    dtype: str
    staircase: bool | int | str | None  # not a bool: an invalid test
    initial_learning_rate: int | float
    decay_steps: int | float
    decay_rate: int | float
    cases: list[Case] = field(default_factory=list)
    flags: tuple[str, ...] = ()
    comment: str = ""

    def add(self, step: int | float, comment: str, *flags: str) -> Group:
        self.cases.append(Case(step, comment, flags))
        return self


FORMAT_NAMES = ("float16", "bfloat16", "float32", "float64")


def _both(dtype: str, I: int | float, D: int | float, r: int | float, comment: str,
          flags: tuple[str, ...], steps: Iterable[tuple[int | float, str]]) -> list[Group]:
    """Continuous and staircase groups over the same steps."""
    out = []
    for staircase in (False, True):
        g = Group(dtype, staircase, I, D, r, flags=flags, comment=comment)
        for s, c in steps:
            g.add(s, c)
        out.append(g)
    return out


# ---------------------------------------------------------------------------
# Themes
# ---------------------------------------------------------------------------


def theme_examples() -> list[Group]:
    """The values quoted in the README and the spec."""
    groups = []
    for dtype in FORMAT_NAMES:
        groups += _both(dtype, 0.1, 100000, 0.96, "README example", ("Example",),
                        [(10**6, "README: step 10**6"), (0, "step 0"),
                         (100000, "one decay period"), (50000, "half a period")])
    groups.append(Group("float16", False, 0.75, 2, 0.25, flags=("Example",),
                        comment="spec example").add(1, "0.75 * 0.25**0.5 = 0.375"))
    for staircase in (True, False):
        groups.append(Group("float32", staircase, 0.1, 1000, 0.999, flags=("Example",),
                            comment="misfloor in float32: the step cast rounds up")
                      .add(16777999, "float32 cast of the step gives 16778000"))
    return groups


def theme_boundaries() -> list[Group]:
    """Step 0 and k*D-1, k*D, k*D+1 for several decay_steps."""
    groups = []
    for dtype in FORMAT_NAMES:
        for D in (1, 3, 1000, 100000):
            steps: list[tuple[int | float, str]] = [(0, "step 0")]
            for k in (1, 2, 7, 100):
                for d in (-1, 0, 1):
                    s = k * D + d
                    if s >= 0:
                        steps.append((s, f"k*D{d:+d} with k={k}" if d else f"k*D with k={k}"))
            groups += _both(dtype, 0.1, D, 0.5, f"boundaries, D={D}",
                            ("StepBoundary",), dict(steps).items())
    return groups


def theme_large_steps() -> list[Group]:
    """Steps around 2**24, 2**31-1, 2**53 and int64's limit."""
    centres = [(2**24, "2**24"), (2**31 - 1, "2**31-1"), (2**53, "2**53"),
               (INT64_MAX - 1, "int64 max - 1")]
    groups = []
    for dtype in ("float32", "float64", "float16", "bfloat16"):
        for D, r in ((1000, 0.999), (2**20, 0.5), (10**9, 0.99)):
            steps: dict[int | float, str] = {}
            for c, name in centres:
                for d in (-1, 0, 1):
                    s = c + d
                    if s <= INT64_MAX:
                        steps[s] = f"{name}{d:+d}" if d else name
            if D == 1000:
                steps[16777999] = "misfloor: float32 rounds the step to 16778000"
                steps[16777216 + 999] = "2**24 + 999"
            groups += _both(dtype, 0.1, D, r, f"large steps, D={D}", ("LargeStep",),
                            steps.items())
    return groups


def theme_decay_rates() -> list[Group]:
    """Rates below, at, above, near 1, and tiny."""
    rates = [(0.5, "0.5"), (0.96, "0.96"), (0.1, "0.1"), (1.0, "exactly 1"),
             (1.5, "1.5"), (2.0, "2"), (10.0, "10"),
             (1 - 2.0**-24, "1 - 2**-24"), (1 - 2.0**-53, "1 - 2**-53"),
             (1 + 2.0**-52, "1 + 2**-52"), (1 - 2.0**-11, "1 - 2**-11"),
             (1e-10, "1e-10"), (2.0**-149, "float32's smallest subnormal"),
             (5e-324, "float64's smallest subnormal")]
    groups = []
    for dtype in FORMAT_NAMES:
        for r, name in rates:
            steps = [(0, "step 0"), (1, "step 1"), (500, "half a period"),
                     (1000, "one period"), (12345, "12345"), (10**6, "10**6")]
            groups += _both(dtype, 0.1, 1000, r, f"decay_rate {name}", ("DecayRate",), steps)
    return groups


def theme_ranges() -> list[Group]:
    """Subnormal results, overflow, underflow and float16/bfloat16 limits."""
    groups = []
    for dtype in FORMAT_NAMES:
        fmt = get_format(dtype)
        tiny = fmt.min_subnormal
        big = fmt.max_finite
        # Subnormal and underflowing results: 0.5 ** p from the smallest normal.
        e0 = -fmt.emin
        g = Group(dtype, False, fmt.min_normal, 1, 0.5, comment="halving the smallest normal")
        for k in (1, 2, fmt.precision - 2, fmt.precision - 1, fmt.precision, fmt.precision + 1):
            g.add(k, f"min_normal * 2**-{k}")
        groups.append(g)
        g = Group(dtype, False, 1.0, 1000, 0.5, comment="down to the subnormals")
        for k in (e0 - 1, e0, e0 + 1, e0 + fmt.precision - 2, e0 + fmt.precision - 1,
                  e0 + fmt.precision):
            g.add(1000 * k + 500, f"2**-({k}.5)")
        groups.append(g)
        # Growth to overflow.
        g = Group(dtype, False, big, 1000, 2.0, comment="overflow from the largest finite")
        for s in (0, 1, 10, 1000, 2000):
            g.add(s, f"step {s}")
        groups.append(g)
        g = Group(dtype, True, tiny, 1, 0.5, comment="smallest subnormal halved")
        g.add(0, "smallest subnormal").add(1, "half of it: ties to even gives 0").add(2, "0")
        groups.append(g)
        g = Group(dtype, False, 1.0, 1, 2.0, comment="powers of two up to overflow")
        for k in (fmt.emax - 1, fmt.emax, fmt.emax + 1):
            g.add(k, f"2**{k}")
        groups.append(g)
    # float16 / bfloat16 limits: decay_steps beyond float16's range casts to inf.
    for dtype in ("float16", "bfloat16"):
        for D in (65504, 65519, 65520, 10**6, 2**60):
            g = Group(dtype, False, 0.1, D, 0.5, flags=("FormatLimit",),
                      comment=f"decay_steps {D}")
            for s in (1, 65504, 65520, 10**6):
                g.add(s, f"step {s}")
            groups.append(g)
        g = Group(dtype, False, 65504.0, 1, 1.0, flags=("FormatLimit",),
                  comment="float16 max as initial rate")
        g.add(0, "max").add(3, "r = 1")
        groups.append(g)
    return groups


def theme_special_values() -> list[Group]:
    """NaN, infinities, zeros, negative rates and negative steps."""
    nan, inf = math.nan, math.inf
    groups = []
    for dtype in FORMAT_NAMES:
        steps = [(0, "step 0"), (500, "p = 0.5"), (1000, "p = 1"), (3000, "p = 3"),
                 (-1000, "p = -1"), (-0.0, "step -0.0"), (nan, "NaN step"),
                 (inf, "+inf step"), (-inf, "-inf step")]
        for I, r, name in ((0.1, 0.0, "r = 0"), (0.1, -0.0, "r = -0"), (0.1, inf, "r = inf"),
                           (0.1, -inf, "r = -inf"), (0.1, nan, "r = NaN"),
                           (0.1, -0.5, "r = -0.5"), (0.1, -1.0, "r = -1"),
                           (0.0, 0.5, "I = 0"), (-0.0, 0.5, "I = -0"), (inf, 0.5, "I = inf"),
                           (nan, 0.5, "I = NaN"), (-0.1, 0.5, "I < 0"), (0.1, 1.0, "r = 1"),
                           (0.1, 0.5, "r = 0.5")):
            flags = ("NegativeRate",) if r < 0 else ("SpecialValue",)
            groups += _both(dtype, I, 1000, r, name, flags, steps)
    for dtype in ("float32", "float64"):
        g = Group(dtype, False, 1, 1000, 0.96, flags=("IntegerInput",),
                  comment="integer initial_learning_rate")
        g.add(0, "step 0").add(1000, "one period").add(123456, "123456")
        groups.append(g)
    return groups


#: Non-bool staircase values of the ``invalid`` theme (passed as given).
INVALID_STAIRCASES: tuple[str | int | None, ...] = ("False", "True", 0, 1, None)


def theme_invalid() -> list[Group]:
    """Configurations that must be rejected: decay_steps <= 0 or not finite,
    or a staircase that is not a bool."""
    groups = []
    for dtype in ("float32", "float64"):
        for st in INVALID_STAIRCASES:
            g = Group(dtype, st, 0.1, 1000, 0.96, flags=("InvalidStaircase",),
                      comment=f"staircase {st!r}, not a bool")
            g.add(500, "step 500").add(1500, "step 1500")
            groups.append(g)
    for dtype in ("float32", "float64"):
        for D in (0, -1, -1000, 0.0, -0.0, -0.5, math.inf, -math.inf, math.nan):
            g = Group(dtype, False, 0.1, D, 0.96, flags=("InvalidDecaySteps",),
                      comment=f"decay_steps {D!r}")
            g.add(0, "step 0").add(1000, "step 1000")
            groups.append(g)
            g = Group(dtype, True, 0.1, D, 0.96, flags=("InvalidDecaySteps",),
                      comment=f"decay_steps {D!r}, staircase")
            g.add(1000, "step 1000")
            groups.append(g)
    return groups


def _reciprocal_misfloors(fmt: Format, D: int, limit: int, keep: int) -> list[int]:
    """The first ``keep`` multiples ``k*D < limit`` of ``D`` whose quotient
    computed as ``fl(fl(k*D) * fl(1/D))`` in ``fmt`` is below ``k``, and the
    largest one (exact rational arithmetic on the format's roundings)."""
    inv = round_rational(Fraction(1, D), fmt)
    out: list[int] = []
    last = None
    for k in range(1, limit // D):
        s = round_rational(Fraction(k * D), fmt)
        if round_rational(Fraction(s) * Fraction(inv), fmt) < k:
            if len(out) < keep:
                out.append(k * D)
            last = k * D
            if len(out) >= keep and k > 1000:
                break
    for k in range(limit // D - 1, 0, -1):
        s = round_rational(Fraction(k * D), fmt)
        if round_rational(Fraction(s) * Fraction(inv), fmt) < k:
            last = k * D
            break
    if last is not None and last not in out:
        out.append(last)
    return out


def theme_defect_classes() -> list[Group]:
    """Cases that single out the defect classes measured on frameworks:
    division by a rounded reciprocal (below 2**24), chained products over
    long horizons, non-integer decay_steps, staircase with negative steps,
    and float64 schedules for the dtype paths."""
    groups = []
    f32, f64 = get_format("float32"), get_format("float64")
    for fmt, Ds, limit in ((f32, (41, 61, 97, 109), 2**24), (f64, (49, 103), 10**7)):
        for D in Ds:
            g = Group(fmt.name, True, 0.1, D, 0.99999, flags=("ReciprocalDivision",),
                      comment=f"s * (1/D) below the integer s / D, D={D}")
            for s in _reciprocal_misfloors(fmt, D, limit, 3):
                g.add(s, f"{s} = {s // D} * D")
            g.add(D - 1, "one step before the first period")
            groups.append(g)
    for r in (0.9999, 0.99999, 0.97):
        g = Group("float64", False, 0.1, 1, r, flags=("LongHorizon",),
                  comment=f"rate {r!r} per step, long horizon")
        for s in (1000, 10**4, 10**5):
            g.add(s, f"{s} periods")
        groups.append(g)
    g = Group("float64", True, 0.1, 10, 0.9999, flags=("LongHorizon",),
              comment="staircase, rate 0.9999 per 10 steps, long horizon")
    g.add(10**5, "10**4 periods").add(10**5 + 9, "10**4 periods and 9 steps")
    groups.append(g)
    g = Group("float64", False, 1e-300, 1, 0.75, flags=("LongHorizon",),
              comment="down to the subnormals and below: the result reaches 0")
    for s in (200, 1000, 5000):
        g.add(s, f"{s} periods")
    groups.append(g)
    for dtype in ("float32", "float64"):
        for Df in (2.5, 1000.5, 0.75):
            groups += _both(dtype, 0.1, Df, 0.5, f"decay_steps {Df!r}", ("NonIntegerDecaySteps",),
                            [(1, "step 1"), (2, "step 2"), (3, "step 3"), (7, "step 7"),
                             (2001, "step 2001"), (10**5, "step 10**5")])
        g = Group(dtype, True, 0.1, 1000, 0.5, flags=("NegativeStaircase",),
                  comment="staircase, negative steps")
        for s in (-1, -500, -999, -1000, -1001, -1500, -2500):
            g.add(s, f"step {s}")
        groups.append(g)
    steps = [(0, "step 0"), (1, "step 1"), (999, "step 999"), (1000, "one period"),
             (123456, "123456"), (16777999, "beyond 2**24"), (2**31 + 1, "beyond 2**31")]
    groups += _both("float64", 0.1, 1000, 0.96, "float64 dtype paths", ("DtypePath",), steps)
    for dtype, m in (("float16", 1025.5), ("bfloat16", 129.5)):
        groups.append(Group(dtype, False, 1.0, 3, m ** 3, flags=("DoubleRounding",),
                            comment=f"r = {m}**3: the exact value {m} is a midpoint")
                      .add(1, "p = 1/3"))
    groups += _both("float64", 0.1, 2**24 + 1, 0.5, "float64, decay_steps 2**24+1 (not a "
                    "float32 value)", ("DtypePath",),
                    [(2**24 + 1, "one period"), (2**30, "2**30"), (10**9, "10**9")])
    return groups


def _midpoint_distance(v: Any, fmt: Format) -> float:
    """Distance (in ulps of ``fmt``) of the mpf ``v > 0`` from the nearest
    rounding midpoint, as a float in [0, 0.5]."""
    import mpmath

    m, e = mpmath.frexp(v)  # v = m * 2**e, 0.5 <= m < 1
    q = max(int(e) - 1, fmt.emin) - fmt.precision + 1
    scaled = mpmath.ldexp(v, -q)
    frac = scaled - mpmath.floor(scaled)
    return float(abs(frac - mpmath.mpf(0.5)))


#: How each order's hard cases are drawn and labelled (see :func:`_hard_cases`):
#: flags, the group's comment, the case's comment.
_HARD_KINDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "exact": (("HardRounding",), "hard case, {d:.2e} ulp from a midpoint",
              "exact value {d:.2e} ulp from a {fmt} midpoint"),
    "keras": (("HardRoundingPow",), "hard pow, {d:.2e} ulp from a midpoint",
              "keras-order pow {d:.2e} ulp from a {fmt} midpoint"),
}


def _hard_cases(fmt: Format, rng: random.Random, tries: int, keep: int,
                order: str) -> list[Group]:
    """Seeded search (I = 1) for the ``keep`` cases of ``order`` nearest a
    rounding midpoint of ``fmt``, out of ``tries`` random draws.

    ``exact``: r a double in [0.5, 1), D < 10**6, s < 10**7, and the exact
    value ``r ** (s / D)``.  ``keras``: r, D and the rounded quotient
    ``p = fl(s / D)`` values of the format (D < 2**min(P, 20), s < 2**min(P, 24)),
    and the pow ``r ** p`` the keras order rounds.
    """
    import mpmath

    flags, group_comment, case_comment = _HARD_KINDS[order]
    found: list[tuple[float, float, int, int]] = []
    with mpmath.workprec(fmt.precision + 80):
        for _ in range(tries):
            if order == "keras":
                r = round_rational(Fraction(rng.randrange(2**22, 2**23), 2**23), fmt)
                D = rng.randrange(1, 2**min(fmt.precision, 20))
                s = rng.randrange(1, 2**min(fmt.precision, 24))
                p = mpmath.mpf(round_rational(Fraction(s, D), fmt))
            else:
                r = round_rational(Fraction(rng.randrange(1, 2**30), 2**30), get_format("float64"))
                r = 0.5 + r / 2  # in [0.5, 1)
                D = rng.randrange(1, 10**6)
                s = rng.randrange(1, 10**7)
                p = mpmath.mpf(s) / D
            v = mpmath.power(mpmath.mpf(r), p)
            if v < fmt.min_normal or r == 1.0:
                continue
            found.append((_midpoint_distance(v, fmt), r, D, s))
    found.sort()
    return [Group(fmt.name, False, 1.0, D, r, flags=flags,
                  comment=group_comment.format(d=d, fmt=fmt.name))
            .add(s, case_comment.format(d=d, fmt=fmt.name))
            for d, r, D, s in found[:keep]]


def theme_hard_rounding() -> list[Group]:
    """Cases closest to a rounding midpoint, found by a seeded search."""
    groups = []
    for i, dtype in enumerate(FORMAT_NAMES):
        fmt = get_format(dtype)
        rng = random.Random(20240 + i)
        groups += _hard_cases(fmt, rng, tries=4000, keep=12, order="exact")
        groups += _hard_cases(fmt, rng, tries=4000, keep=12, order="keras")
    return groups


THEMES: dict[str, tuple[Callable[[], list[Group]], str]] = {
    "examples": (theme_examples, "The documented examples."),
    "boundaries": (theme_boundaries, "Step 0 and k*D-1, k*D, k*D+1."),
    "large_steps": (theme_large_steps, "Steps around 2**24, 2**31-1, 2**53 and int64's limit."),
    "decay_rates": (theme_decay_rates, "Decay rates below, at, above and near 1, and tiny."),
    "ranges": (theme_ranges, "Each format's range: subnormals, overflow, underflow, limits."),
    "special_values": (theme_special_values, "NaN, infinities, zeros, negative rates and steps."),
    "invalid": (theme_invalid, "Invalid configurations, to be rejected."),
    "defect_classes": (theme_defect_classes,
                       "Cases singling out known defect classes: division by a rounded "
                       "reciprocal, chained products, non-integer decay_steps, staircase "
                       "with negative steps, float64 dtype paths."),
    "hard_rounding": (theme_hard_rounding, "Results closest to a rounding midpoint."),
}


# ---------------------------------------------------------------------------
# Expectations
# ---------------------------------------------------------------------------


def _exact_args(g: Group, step: int | float) -> tuple[Any, Any, Any, Any]:
    return (to_exact(g.initial_learning_rate), to_exact(g.decay_steps),
            to_exact(g.decay_rate), to_exact(step))


def valid_decay_steps(D: int | float) -> bool:
    return isinstance(D, int) and D > 0 or isinstance(D, float) and math.isfinite(D) and D > 0


def valid_config(D: int | float, staircase: Any) -> bool:
    """A configuration that must be accepted: valid decay_steps, bool staircase."""
    return valid_decay_steps(D) and isinstance(staircase, bool)


def automatic_flags(g: Group, step: int | float, fmt: Format,
                    exact: float, keras: float, exact_value: str) -> list[str]:
    """Flags that follow from the inputs and the expected values."""
    flags = []
    ops = RoundedOps(fmt)
    I, D, r, s = _exact_args(g, step)
    casts = (("StepCast", s), ("DecayStepsCast", D), ("RateCast", r), ("InitialCast", I))
    for name, x in casts:
        if isinstance(x, Fraction) and ops.round(x) != x:
            flags.append(name)
    if g.staircase:
        sf, Df = ops.round(s), ops.round(D)
        p_keras = ops.floor(ops.div(sf, Df))
        p_exact = ExactOps().floor(ExactOps().div(s, D))
        if p_keras != p_exact and not (_nan(p_keras) and _nan(p_exact)):
            flags.append("Misfloor")
    if to_bits(exact, fmt) != to_bits(keras, fmt):
        flags.append("OrdersDiffer")
    if _pow_exact(g, step, fmt):
        flags.append("PowExact")
    for x in (exact,):
        if x != 0 and math.isfinite(x) and abs(x) < fmt.min_normal:
            flags.append("Subnormal")
    if math.isinf(exact) and exact_value not in ("inf", "-inf"):
        flags.append("Overflow")
    if exact == 0 and exact_value not in ("0", "-0"):
        flags.append("Underflow")
    return flags


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _pow_exact(g: Group, step: int | float, fmt: Format) -> bool:
    """True when pow in the keras order is exact (no libm error possible)."""
    from ..oracle import Power, rational_power

    ops = RoundedOps(fmt)
    I, D, r, s = (ops.round(x) for x in _exact_args(g, step))
    p = ops.div(s, D)
    if g.staircase:
        p = ops.floor(p)
    w = ExactOps().pow(r, p)
    if not isinstance(w, Power):
        return True
    q = rational_power(w, budget_bits=4 * fmt.precision)
    if q is None:
        return False
    frac, k = q
    if abs(k) > 4 * fmt.emax:
        return False
    exact = frac * Fraction(2) ** k
    rounded = round_rational(exact, fmt)
    return math.isfinite(rounded) and rounded != 0 and Fraction(rounded) == exact


def keras_tolerance(g: Group, step: int | float) -> int:
    """The ``keras`` tolerance (ulps) of the test of ``g`` at ``step``, as
    :func:`make_tests` writes it: 0 when pow in the keras order is exact, else
    :data:`KERAS_POW_TOLERANCE` (valid configurations only)."""
    return 0 if _pow_exact(g, step, get_format(g.dtype)) else KERAS_POW_TOLERANCE


def declared_flags(g: Group, case: Case) -> list[str]:
    """The flags a theme gives a test (its group's, then the case's own), in
    the order they are written; the derived flags follow them."""
    flags = list(g.flags) + [f for f in case.flags if f not in g.flags]
    derived = [f for f in flags if f in DERIVED_FLAGS]
    if derived:
        raise ValueError(f"flags {', '.join(derived)} are derived from the inputs; "
                         "a theme cannot declare them")
    return flags


def _expected_values(g: Group) -> list[tuple[float, float]]:
    """``(exact, keras)`` results of every case of ``g`` (valid decay_steps),
    from the vectorised fast path: one call per order and kind of step (int64
    or float64 array), bit-identical to :func:`expdecay.oracle.evaluate_exact`."""
    from ..fast import evaluate_array as fast_evaluate

    out = [(0.0, 0.0)] * len(g.cases)
    for kind, dtype in ((int, np.int64), (float, np.float64)):
        idx = [i for i, c in enumerate(g.cases) if type(c.step) is kind]
        if not idx:
            continue
        steps = np.array([g.cases[i].step for i in idx], dtype=dtype)
        exact, keras = (
            fast_evaluate(g.initial_learning_rate, g.decay_steps, g.decay_rate, steps,
                          staircase=bool(g.staircase), dtype=g.dtype, order=order)
            .astype(np.float64).tolist()
            for order in ("exact", "keras"))
        for i, e, k in zip(idx, exact, keras, strict=True):
            out[i] = (e, k)
    return out


def make_tests(g: Group, tc_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The test entries of the cases of ``g``, numbered ``tc_ids``, with
    their expectations.

    This is the one definition of a test's record: the generator writes it
    and :func:`validate_file` compares every test of a file with it.  The
    results of both orders come from the fast path, vectorised over the
    group; the flags, the 40-digit exact value and the tolerances follow
    from the inputs and those results.
    """
    if len(tc_ids) != len(g.cases):
        raise ValueError(f"tc_ids must have one id per case; got {len(tc_ids)} for "
                         f"{len(g.cases)} cases")
    fmt = get_format(g.dtype)
    valid = valid_config(g.decay_steps, g.staircase)
    values = _expected_values(g) if valid else []
    tests = []
    for n, (case, tc_id) in enumerate(zip(g.cases, tc_ids, strict=True)):
        flags = declared_flags(g, case)
        test: dict[str, Any] = {"tcId": tc_id, "comment": case.comment, "flags": flags,
                                "step": encode_number(case.step)}
        tests.append(test)
        if not valid:
            test["result"] = "invalid"
            continue
        exact, keras = values[n]
        args = _exact_args(g, case.step)
        exact_value = value(*args, staircase=bool(g.staircase), digits=40)
        for f in automatic_flags(g, case.step, fmt, exact, keras, exact_value):
            if f not in flags:
                flags.append(f)
        step = case.step
        if isinstance(step, float) and not math.isfinite(step):
            flags.append("NonFiniteStep")
        elif step < 0 or (isinstance(step, float) and math.copysign(1.0, step) < 0):
            flags.append("NegativeStep")
        acceptable = any(f in ACCEPTABLE_FLAGS for f in flags)
        test["result"] = "acceptable" if acceptable else "valid"
        test["exact"] = encode_result(exact, fmt)
        test["keras"] = encode_result(keras, fmt)
        test["value"] = exact_value
        test["tolerance"] = {"exact": 0,
                             "keras": 0 if "PowExact" in flags else KERAS_POW_TOLERANCE}
    return tests


def make_test(g: Group, case: Case, tc_id: int) -> dict[str, Any]:
    """One test entry with its expectations (:func:`make_tests` for one case)."""
    one = Group(g.dtype, g.staircase, g.initial_learning_rate, g.decay_steps, g.decay_rate,
                [case], g.flags, g.comment)
    return make_tests(one, [tc_id])[0]


def build_file(theme: str) -> dict[str, Any]:
    """The JSON document of one theme."""
    builder, description = THEMES[theme]
    groups_out = []
    tc_id = 0
    used: set[str] = set()
    for g in builder():
        tests = make_tests(g, range(tc_id + 1, tc_id + 1 + len(g.cases)))
        tc_id += len(g.cases)
        for t in tests:
            used.update(t["flags"])
        groups_out.append({
            "type": "ExponentialDecayTest",
            "comment": g.comment,
            "dtype": g.dtype,
            "staircase": g.staircase,
            "initialLearningRate": encode_number(g.initial_learning_rate),
            "decaySteps": encode_number(g.decay_steps),
            "decayRate": encode_number(g.decay_rate),
            "tests": tests,
        })
    return {
        "algorithm": ALGORITHM,
        "schema": SCHEMA_NAME,
        "generatorVersion": __version__,
        "theme": theme,
        "numberOfTests": tc_id,
        "header": [description,
                   "Inputs are exact: integers as decimal strings, floats as float64 bits "
                   "and hex. Expected results are bit patterns of the group's dtype.",
                   "See spec/conformance.md for the fields, flags and profiles."],
        "notes": {name: {"bugType": bt, "description": d, "effect": e}
                  for name, (bt, d, e) in NOTES.items() if name in used},
        "testGroups": groups_out,
    }


def dumps(doc: dict[str, Any]) -> str:
    """The canonical text of a vector file (stable across runs)."""
    return json.dumps(doc, indent=1, ensure_ascii=True) + "\n"


def generate(themes: Iterable[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(theme, document)`` for each theme (all by default)."""
    for theme in themes or THEMES:
        if theme not in THEMES:
            raise ValueError(f"theme must be one of {', '.join(THEMES)}; got {theme!r}")
        yield theme, build_file(theme)


def write_vectors(out_dir: Path | str, themes: Iterable[str] | None = None,
                  progress: Callable[[str], object] | None = None) -> list[Path]:
    """Generate and write one file per theme; returns the paths written.
    ``progress``, if given, is called with one line of text per file."""
    out = Path(out_dir)
    paths = []
    t0 = time.monotonic()
    for theme, doc in generate(themes):
        path = out / f"{theme}.json"
        atomic_write(path, dumps(doc), encoding="ascii")
        paths.append(path)
        if progress:
            progress(f"wrote {path} ({doc['numberOfTests']} tests, "
                     f"{time.monotonic() - t0:.1f} s)")
        t0 = time.monotonic()
    return paths


# ---------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------


class VectorFileError(ValueError):
    """A vector file that cannot be used: ``str()`` gives the file and reason."""


def default_vectors_dir() -> Path:
    """The vector files shipped with the package (:func:`expdecay.resources.vectors_dir`)."""
    return resources.vectors_dir()


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of vector files (:func:`expdecay.resources.schema_path`)."""
    doc: dict[str, Any] = json.loads(resources.schema_path().read_text(encoding="utf-8"))
    return doc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


class _RejectedJSONError(ValueError):
    """Well-formed JSON that a vector file must not contain."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of duplicate keys silently; a tampered file
    # could hide a value behind a second key, so duplicates are refused.
    obj: dict[str, Any] = {}
    for key, val in pairs:
        if key in obj:
            raise _RejectedJSONError(f"duplicate key {ascii(key[:60])} in a JSON object")
        obj[key] = val
    return obj


def _lone_surrogate(doc: Any) -> str | None:
    """The first lone surrogate (``\\ud800`` escapes decode to one) in a key or
    string of ``doc``, or None.  Iterative: the depth is not bounded yet."""
    stack = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x)
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str) and not x.isascii():
            try:
                x.encode("utf-8")
            except UnicodeEncodeError as e:
                return x[e.start]
    return None


def _parse_json(text: str) -> Any:
    doc = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    bad = _lone_surrogate(doc)
    if bad is not None:
        raise _RejectedJSONError(f"lone surrogate \\u{ord(bad):04x} in a string (not Unicode text)")
    return doc


def load_vector_file(path: Path | str) -> dict[str, Any]:
    """Read and schema-check a vector file; :class:`VectorFileError` otherwise.

    Only a regular file is read, and at most ``MAX_FILE_BYTES + 1`` bytes of
    it (:func:`expdecay.fileio.read_limited`): a FIFO or a device is refused
    without blocking.  Duplicate keys and lone surrogates are refused.
    """
    p = Path(path)
    try:
        raw = read_limited(p, MAX_FILE_BYTES)
    except ReadRefusedError as e:
        raise VectorFileError(str(e)) from None
    except OSError as e:
        raise VectorFileError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
        doc = _parse_json(text)
    except UnicodeDecodeError:
        raise VectorFileError(f"{p}: not UTF-8 text") from None
    except RecursionError:
        raise VectorFileError(f"{p}: JSON nested too deeply") from None
    except _RejectedJSONError as e:
        raise VectorFileError(f"{p}: {e}") from None
    except ValueError as e:
        raise VectorFileError(f"{p}: not valid JSON: {str(e)[:200]}") from None
    check_schema(doc, p)
    return doc  # type: ignore[no-any-return]


def check_schema(doc: Any, p: Path) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    except RecursionError:
        raise VectorFileError(f"{p}: JSON nested too deeply") from None
    if error is not None:
        where = "/".join(str(x) for x in error.absolute_path) or "(top level)"
        raise VectorFileError(f"{p}: schema: at {where}: {error.message[:200]}")


def iter_tests(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for g in doc["testGroups"]:
        for t in g["tests"]:
            yield g, t


def group_inputs(g: dict[str, Any], where: str) -> tuple[int | float, int | float, int | float]:
    return (decode_number(g["initialLearningRate"], f"{where}: initialLearningRate"),
            decode_number(g["decaySteps"], f"{where}: decaySteps"),
            decode_number(g["decayRate"], f"{where}: decayRate"))


#: Problems listed per file before the rest are summarised.
MAX_PROBLEMS = 50


def _number_key(x: int | float) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(encode_number(x).items()))


def _case_key(dtype: str, staircase: bool | int | str | None, I: int | float, D: int | float,
              r: int | float, s: int | float) -> tuple[Any, ...]:
    return (dtype, staircase, *(_number_key(x) for x in (I, D, r, s)))


@cache
def _theme_index(theme: str) -> dict[tuple[Any, ...], frozenset[tuple[str, ...]]]:
    """For a built-in theme: inputs of each of its tests -> the declared flags
    the theme gives them (more than one when two groups share the inputs)."""
    index: dict[tuple[Any, ...], set[tuple[str, ...]]] = {}
    for g in THEMES[theme][0]():
        for c in g.cases:
            key = _case_key(g.dtype, g.staircase, g.initial_learning_rate, g.decay_steps,
                            g.decay_rate, c.step)
            index.setdefault(key, set()).add(tuple(declared_flags(g, c)))
    return {k: frozenset(v) for k, v in index.items()}


def _check_declared(theme: str, key: tuple[Any, ...], declared: list[str], valid: bool,
                    where: str, staircase_ok: bool = True) -> list[str]:
    """The declared flags of a test against what its theme declares."""
    out = []
    if ("InvalidDecaySteps" in declared) == valid:
        out.append(f"{where}: decay_steps is {'valid' if valid else 'invalid'} but the "
                   f"InvalidDecaySteps flag is {'present' if valid else 'missing'}")
    if ("InvalidStaircase" in declared) == staircase_ok:
        out.append(f"{where}: staircase is {'a bool' if staircase_ok else 'not a bool'} but "
                   f"the InvalidStaircase flag is {'present' if staircase_ok else 'missing'}")
    allowed: frozenset[tuple[str, ...]]
    if theme in OTHER_THEMES:
        allowed = frozenset(OTHER_THEMES[theme])
    elif theme in THEMES:
        found = _theme_index(theme).get(key)
        if found is None:
            return out + [f"{where}: theme {theme!r} has no test with these inputs"]
        allowed = found
    else:
        return out  # an unknown theme is reported once for the file
    if tuple(declared) not in allowed:
        want = " or ".join(_short(list(a)) for a in sorted(allowed))
        out.append(f"{where}: declared flags {_short(declared)} but theme {theme!r} "
                   f"gives {want}")
    return out


def _short(x: Any) -> str:
    text = json.dumps(x, separators=(",", ":"), ensure_ascii=True)
    return text if len(text) <= 120 else text[:117] + "..."


_MISSING = object()

#: Fields of a test in the order problems are reported.
_TEST_FIELDS = ("tcId", "comment", "step", "result", "flags", "exact", "keras", "value",
                "tolerance")


def _compare(want: dict[str, Any], got: dict[str, Any], where: str) -> list[str]:
    """Field-by-field differences between the regenerated and the file's test."""
    out = []
    keys = [*_TEST_FIELDS, *sorted((set(want) | set(got)) - set(_TEST_FIELDS))]
    for key in keys:
        w, g = want.get(key, _MISSING), got.get(key, _MISSING)
        if w == g:
            continue
        if w is _MISSING:
            out.append(f"{where}: {key} {_short(g)} where expdecay writes none")
        elif g is _MISSING:
            out.append(f"{where}: {key} missing; expdecay writes {_short(w)}")
        elif key in ("exact", "keras", "value"):
            gv, wv = (g["bits"], w["bits"]) if key != "value" else (g, w)
            out.append(f"{where}: {key} {'bits ' if key != 'value' else ''}{gv} but the "
                       f"oracle gives {wv}")
        else:
            out.append(f"{where}: {key} {_short(g)} but expdecay writes {_short(w)}")
    return out


def _regenerate(group: Group, picked: list[dict[str, Any]]) -> list[str]:
    """Compare the picked tests of a group with :func:`make_tests`' records."""
    from ..oracle import PrecisionError

    try:
        records = make_tests(group, [t["tcId"] for t in picked])
    except (ArithmeticError, ValueError, TypeError):
        if len(picked) == 1:
            raise
        # Find the test(s) at fault; the others are still compared.
        out = []
        for case, t in zip(group.cases, picked, strict=True):
            one = Group(group.dtype, group.staircase, group.initial_learning_rate,
                        group.decay_steps, group.decay_rate, [case])
            try:
                out += _regenerate(one, [t])
            except PrecisionError as e:
                out.append(f"tcId {t['tcId']}: oracle undecided: {str(e)[:200]}")
            except (ArithmeticError, ValueError, TypeError) as e:
                out.append(f"tcId {t['tcId']}: cannot regenerate: {str(e)[:200]}")
        return out
    out = []
    for want, got in zip(records, picked, strict=True):
        out += _compare(want, got, f"tcId {got['tcId']}")
    return out


def _selection(count: int, sample: int | None) -> range:
    """Indices of the tests that are regenerated: all, or ``sample`` of them
    spread evenly (every k-th)."""
    if sample is None:
        return range(count)
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ValueError(f"sample must be None (every test) or an int >= 1; got {sample!r}")
    return range(0, count, max(1, count // sample))[:sample]


def _lint_notes(doc: dict[str, Any]) -> list[str]:
    used = {f for _, t in iter_tests(doc) for f in t["flags"]}
    known = {**NOTES, **ANALYSIS_NOTES}
    out = []
    foreign = sorted(used - set(known))
    if foreign:
        out.append(f"flags expdecay does not write: {', '.join(foreign[:10])}")
    for name, note in doc["notes"].items():
        if name not in used:
            out.append(f"note {name} is for a flag no test has")
        elif name in known and note != dict(zip(("bugType", "description", "effect"),
                                               known[name], strict=True)):
            out.append(f"note {name} differs from expdecay's")
    return out


def lint(doc: dict[str, Any], p: Path, sample: int | None = None) -> list[str]:
    """Semantic problems of a schema-valid document (empty when fine).

    Every test (or, with ``sample``, that many of them) is regenerated from
    its inputs by :func:`make_tests`, the code that writes vector files, and
    compared field by field: expected bits of both orders, the exact value,
    tolerances, result and every flag.  Flags derived from the inputs must be
    exactly those computed; declared flags must be the ones the file's theme
    gives those inputs.  Notes must be expdecay's, and only for flags in use.
    """
    problems: list[str] = []
    tests = [t for _, t in iter_tests(doc)]
    ids = [t["tcId"] for t in tests]
    if ids != list(range(1, len(ids) + 1)):
        dup = len(ids) - len(set(ids))
        problems.append(f"tcIds must run 1..{len(ids)} in order"
                        + (f" ({dup} duplicated)" if dup else ""))
    if doc["numberOfTests"] != len(ids):
        problems.append(f"numberOfTests is {doc['numberOfTests']} but there are {len(ids)} tests")
    theme = doc["theme"]
    if theme not in THEMES and theme not in OTHER_THEMES:
        problems.append(f"theme {theme!r} is not one expdecay writes "
                        f"({', '.join([*THEMES, *OTHER_THEMES])}), so its flags cannot be "
                        "checked")
    problems += _lint_notes(doc)
    selected = set(_selection(len(tests), sample))
    first = 0
    for number, g in enumerate(doc["testGroups"], 1):
        problems += _lint_group(g, number, first, selected, theme, doc["notes"])
        first += len(g["tests"])
        if len(problems) > MAX_PROBLEMS:
            return problems[:MAX_PROBLEMS] + ["(more problems not listed)"]
    return problems


def _lint_group(g: dict[str, Any], number: int, first: int, selected: set[int], theme: str,
                notes: dict[str, Any]) -> list[str]:
    """Problems of one test group; ``first`` is the index of its first test."""
    where_g = f"group {number}"
    try:
        I, D, r = group_inputs(g, where_g)
    except ValueError as e:
        return [str(e)[:300]]
    problems = []
    for name, x in (("initialLearningRate", I), ("decaySteps", D), ("decayRate", r)):
        if encode_number(x) != g[name]:
            problems.append(f"{where_g}: {name} {_short(g[name])} but expdecay writes "
                            f"{_short(encode_number(x))}")
    valid_d = valid_decay_steps(D)
    staircase_ok = isinstance(g["staircase"], bool)
    valid = valid_d and staircase_ok
    fmt = get_format(g["dtype"])
    cases: list[Case] = []
    picked: list[dict[str, Any]] = []
    for j, t in enumerate(g["tests"]):
        where = f"tcId {t['tcId']}"
        unnoted = [f for f in t["flags"] if f not in notes]
        if unnoted:
            problems.append(f"{where}: flags without a note: {', '.join(unnoted[:5])}")
        try:
            s = decode_number(t["step"], f"{where}: step")
            if (t["result"] == "invalid") == valid:
                why = ("decay_steps is valid and staircase a bool" if valid else
                       "decay_steps is invalid" if not valid_d else
                       f"staircase {_short(g['staircase'])} is not a bool")
                problems.append(f"{where}: result {t['result']!r} but {why}")
                continue
            if valid:
                decode_result(t["exact"], fmt, f"{where}: exact")
                decode_result(t["keras"], fmt, f"{where}: keras")
        except ValueError as e:
            problems.append(str(e)[:300])
            continue
        declared = [f for f in t["flags"] if f not in DERIVED_FLAGS]
        key = _case_key(g["dtype"], g["staircase"], I, D, r, s)
        problems += _check_declared(theme, key, declared, valid_d, where, staircase_ok)
        if first + j in selected:
            cases.append(Case(s, t["comment"], tuple(declared)))
            picked.append(t)
    if cases:
        group = Group(g["dtype"], g["staircase"], I, D, r, cases, comment=g["comment"])
        problems += _regenerate(group, picked)
    return problems


def validate_file(path: Path | str, sample: int | None = None) -> list[str]:
    """Problems of a vector file, each ``"FILE: reason"`` (empty when valid).

    ``sample=None`` (the default) regenerates and compares every test;
    ``sample=N`` only N of them, evenly spread (faster, weaker: the other
    tests get only the structural checks).  Never raises for a bad file:
    malformed JSON, wrong types, huge numbers or deep nesting are reported as
    problems.
    """
    _selection(0, sample)  # a bad sample is the caller's error, not the file's
    p = Path(path)
    try:
        doc = load_vector_file(p)
        return [f"{p}: {m}" for m in lint(doc, p, sample)]
    except VectorFileError as e:
        return [str(e)]
    except (RecursionError, MemoryError):
        return [f"{p}: document too deep or too large"]
    except Exception as e:  # noqa: BLE001 - a report, never a traceback
        return [f"{p}: unusable ({type(e).__name__}: {str(e)[:200]})"]
