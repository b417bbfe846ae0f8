"""Generation of the vector files: the themes and the writer.

Each theme builds test groups (:class:`~.expectations.Group`);
:func:`build_file` numbers their cases and computes their expectations with
:func:`~.expectations.make_tests`.  Generation is deterministic: no clock,
no unseeded randomness, fixed key order, so the same version of the package
rewrites byte-identical files.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from ... import __version__
from ...fileio import atomic_write
from ...floats import Format, get_format, round_rational
from ...orders import Order
from .expectations import INT64_MAX, NOTES, Group, encode_number, make_tests

__all__ = ["ALGORITHM", "SCHEMA_NAME", "THEMES", "FORMAT_NAMES", "build_file", "dumps", "generate",
           "write_vectors"]

SCHEMA_NAME = "vectors.schema.json"
ALGORITHM = "ExponentialDecay"

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
_HARD_KINDS: dict[Order, tuple[tuple[str, ...], str, str]] = {
    "exact": (("HardRounding",), "hard case, {d:.2e} ulp from a midpoint",
              "exact value {d:.2e} ulp from a {fmt} midpoint"),
    "keras": (("HardRoundingPow",), "hard pow, {d:.2e} ulp from a midpoint",
              "keras-order pow {d:.2e} ulp from a {fmt} midpoint"),
}


def _hard_cases(fmt: Format, rng: random.Random, tries: int, keep: int,
                order: Order) -> list[Group]:
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
