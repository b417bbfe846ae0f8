"""What a conformance test expects: the flags and their notes, the exact
encoding of numbers, and the one definition of a test's record.

:func:`make_tests` turns the cases of a test group into test entries with
the expected bits of both orders, the exact value to 40 digits, the flags
(declared by a theme, or derived from the inputs and results) and the
tolerances.  The generator (:mod:`.generation`) writes what it returns, and
the validator (:mod:`.validation`) compares every test of a file with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ...floats import Format, from_bits, get_format, round_rational, to_bits, to_hex
from ...inputs import to_exact
from ...oracle import ExactOps, RoundedOps, value

__all__ = [
    "NOTES",
    "DERIVED_FLAGS",
    "ACCEPTABLE_FLAGS",
    "ANALYSIS_NOTES",
    "SEARCH_THEME",
    "CAMPAIGN_THEME",
    "OTHER_THEMES",
    "KERAS_POW_TOLERANCE",
    "INT64_MAX",
    "Case",
    "Group",
    "encode_number",
    "decode_number",
    "encode_result",
    "decode_result",
    "valid_decay_steps",
    "valid_config",
    "automatic_flags",
    "declared_flags",
    "keras_tolerance",
    "make_tests",
    "make_test",
]

#: Tolerance (ulps) of the keras profile when the order's pow is inexact:
#: a pow within 1 ulp moves the final product by at most 2 ulps.
KERAS_POW_TOLERANCE = 2

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
    from ...oracle import Power, rational_power

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
    from ...fast import evaluate_array as fast_evaluate

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
