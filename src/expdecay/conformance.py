"""The conformance runner: check implementations against the vectors.

``expdecay check`` loads the vector files, runs each implementation in a
worker subprocess (one per implementation, the JSON-lines protocol of
:mod:`expdecay.adapters.protocol`), compares every output with the expected
bits of the chosen profile and prints, per file, the passed / failed /
not-applicable counts, the largest ulp error and the worst case; then one
table over all implementations.  Each failure is explained where the runner
can recognise its cause (:func:`diagnose`): the value an implementation
returns is compared with the values that known mistakes would produce
(a cast of the step, of decay_rate or of decay_steps; division by a rounded
reciprocal; arithmetic in another format; subnormals flushed to zero;
integer arithmetic; a pow that is not correctly rounded; missing
validation).

Pass rules (``spec/conformance.md``): under profile ``p`` a ``valid`` test
passes when the output is a value of the group's format at most
``tolerance[p]`` ulps from the expected bits of order ``p`` (a NaN matches
any NaN; zeros and infinities must match bit for bit); an ``invalid`` test
passes when the implementation reports an error; an ``acceptable`` test
passes either way.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .adapters import (
    Adapter,
    ImplementationLookupError,
    Params,
    check_loadable,
    default_configurations,
    get_adapter,
    label,
)
from .adapters.base import Outcome
from .adapters.protocol import MAX_TIMEOUT, STARTUP_FACTOR
from .floats import Format, get_format, is_representable, to_bits, to_hex
from .floats import ulp_distance as _ulp_distance
from .inputs import to_exact
from .oracle import RoundedOps, evaluate_exact, round_node
from .vectors import (
    VectorFileError,
    decode_number,
    decode_result,
    default_vectors_dir,
    iter_tests,
    load_vector_file,
)

__all__ = [
    "PROFILES",
    "TestResult",
    "FileSummary",
    "judge",
    "diagnose",
    "check_implementation",
    "add_check_arguments",
    "run_check",
]

PROFILES = ("exact", "keras")


# ---------------------------------------------------------------------------
# Judging one output
# ---------------------------------------------------------------------------


@dataclass
class TestResult:
    """The verdict on one test."""

    tc_id: int
    status: str  # "pass", "fail", "na"
    ulps: float | None = None  # |distance| to the expected value, None if undefined
    observed: str | None = None  # hex of the output, or None
    expected: str | None = None
    detail: str = ""  # error message or reason not applicable
    classes: list[str] = field(default_factory=list)
    within_tolerance: bool = False  # passed but not bit-identical


def ulps_between(expected: float, observed: float, fmt: Format) -> float:
    """|distance| in ulps of ``fmt``; inf when one is NaN and the other not."""
    if math.isnan(expected) or math.isnan(observed):
        return 0.0 if math.isnan(expected) and math.isnan(observed) else math.inf
    if not is_representable(observed, fmt):
        return math.inf
    return float(abs(_ulp_distance(expected, observed, fmt)))


def same_bits(a: float, b: float, fmt: Format) -> bool:
    """Bit equality with every NaN equal (a NaN matches any NaN)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return is_representable(b, fmt) and to_bits(a, fmt) == to_bits(b, fmt)


def judge(test: dict[str, Any], fmt: Format, profile: str, value: float | None,
          error: str | None, na: str | None) -> TestResult:
    """The verdict of ``profile`` on one output (``value``), error or n/a."""
    tc = int(test["tcId"])
    result = test["result"]
    if na is not None:
        return TestResult(tc, "na", detail=na)
    if result == "invalid":
        if error is not None:
            return TestResult(tc, "pass", detail=error)
        obs = to_hex(value) if value is not None else None
        return TestResult(tc, "fail", observed=obs, expected="an error",
                          classes=["missing validation: an invalid configuration was accepted"])
    expected = decode_result(test[profile], fmt, f"tcId {tc}")
    exp_hex = to_hex(expected)
    if error is not None:
        if result == "acceptable":
            return TestResult(tc, "pass", expected=exp_hex, detail=error)
        return TestResult(tc, "fail", expected=exp_hex, detail=error,
                          classes=[f"raised: {error[:120]}"])
    assert value is not None
    obs = to_hex(value) if not math.isnan(value) else "nan"
    if same_bits(expected, value, fmt):
        return TestResult(tc, "pass", ulps=0.0, observed=obs, expected=exp_hex)
    tol = int(test["tolerance"][profile])
    d = ulps_between(expected, value, fmt)
    finite_both = math.isfinite(expected) and math.isfinite(value)
    zero_sign = expected == 0 and value == 0
    if d <= tol and finite_both and not zero_sign:
        return TestResult(tc, "pass", ulps=d, observed=obs, expected=exp_hex,
                          within_tolerance=True)
    return TestResult(tc, "fail", ulps=d, observed=obs, expected=exp_hex)


# ---------------------------------------------------------------------------
# Diagnosis
# ---------------------------------------------------------------------------


Args = tuple[Any, Any, Any, Any]


def _keras_variant(args: Args, staircase: bool, fmt: Format, *, reciprocal: bool = False,
                   work: Format | None = None) -> float:
    """The keras order with one change: ``s * (1/D)`` instead of ``s / D``,
    or the whole pipeline in the format ``work``, rounded to ``fmt`` at the end."""
    ops = RoundedOps(work or fmt)
    I, D, r, s = (ops.round(a) for a in args)
    p = ops.mul(s, ops.div(Fraction(1), D)) if reciprocal else ops.div(s, D)
    if staircase:
        p = ops.floor(p)
    y = ops.mul(I, ops.pow(r, p))
    return round_node(y, fmt)


def _exact_with_casts(args: Args, staircase: bool, fmt: Format, which: tuple[int, ...]) -> float:
    """The exact order after casting only the inputs numbered ``which``."""
    ops = RoundedOps(fmt)
    cast = tuple(ops.round(a) if i in which else a for i, a in enumerate(args))
    return evaluate_exact(cast, staircase, fmt, "exact")  # type: ignore[arg-type]


def _wrap_int32(step: int | float) -> int | None:
    """The step after a two's-complement wrap to int32 (None if unchanged)."""
    if not isinstance(step, int) or -2**31 <= step < 2**31:
        return None
    w = step & 0xFFFFFFFF
    return w - 2**32 if w >= 2**31 else w


_INPUT_NAMES = ("initial_learning_rate", "decay_steps", "decay_rate", "step")
_CAST_FLAGS = (("step", "StepCast"), ("decay_rate", "RateCast"),
               ("decay_steps", "DecayStepsCast"), ("initial_learning_rate", "InitialCast"))


class _Case:
    """One failing output and the alternative values it is compared with."""

    def __init__(self, test: dict[str, Any], group: dict[str, Any], fmt: Format,
                 observed: float) -> None:
        self.inputs = (decode_number(group["initialLearningRate"]),
                       decode_number(group["decaySteps"]), decode_number(group["decayRate"]),
                       decode_number(test["step"]))
        self.args: Args = tuple(to_exact(x) for x in self.inputs)  # type: ignore[assignment]
        self.staircase = bool(group["staircase"])
        self.fmt = fmt
        self.observed = observed
        self.exact = decode_result(test["exact"], fmt, "exact")
        self.keras = decode_result(test["keras"], fmt, "keras")
        self.flags = set(test["flags"])

    def matches(self, x: float) -> bool:
        return same_bits(x, self.observed, self.fmt)

    def matches_variant(self, fn: Any, *a: Any, **k: Any) -> bool:
        try:
            return self.matches(fn(*a, **k))
        except (ArithmeticError, ValueError):
            return False

    def casts(self) -> str:
        """Which single input cast reproduces the output (from the flags otherwise)."""
        single = [_INPUT_NAMES[i] for i in (3, 2, 1, 0) if self.matches_variant(
            _exact_with_casts, self.args, self.staircase, self.fmt, (i,))]
        names = single or [n for n, f in _CAST_FLAGS if f in self.flags]
        text = ("input cast of " + ", ".join(names) if names
                else "each operation rounded (s / D, pow, product)")
        if "Misfloor" in self.flags:
            text += " (the staircase floors on the rounded step)"
        return text


def _through_float32(x: Any, ftz: bool) -> Any:
    """An exact input after a conversion to float32 (subnormals flushed if ``ftz``)."""
    f32 = get_format("float32")
    y = round_node(x, f32)
    if ftz and y != 0 and abs(y) < f32.min_normal:
        y = math.copysign(0.0, y)
    return to_exact(y)


def _subnormal(x: float, fmt: Format) -> bool:
    return x != 0 and abs(x) < fmt.min_normal


def _narrower_format(observed: float, expected: tuple[float, ...], fmt: Format) -> str | None:
    """The name of a much narrower format holding ``observed`` but none of
    the ``expected`` values (a sign that the arithmetic ran in it)."""
    if not math.isfinite(observed) or observed == 0:
        return None
    for name in ("bfloat16", "float16", "float32"):
        g = get_format(name)
        if g.precision + 8 > fmt.precision:
            continue
        if is_representable(observed, g) and not any(
                math.isfinite(e) and is_representable(e, g) for e in expected):
            return name
    return None


def diagnose(test: dict[str, Any], group: dict[str, Any], fmt: Format, profile: str,
             observed: float) -> list[str]:
    """Recognised causes of a failing output, most specific first (empty when
    none matches).  Each cause is a value some known mistake produces."""
    c = _Case(test, group, fmt, observed)
    causes: list[str] = []
    if not math.isnan(observed) and not is_representable(observed, fmt):
        causes.append(f"output is not a {fmt.name} value (returned in a wider format)")
    if causes:
        return causes
    I = c.inputs[0]
    special = not math.isfinite(observed) or observed == c.exact == c.keras == 0
    cast_I = round_node(c.args[0], fmt) if not isinstance(I, int) else float(I)
    if fmt.name == "float64" and not special and not c.matches(c.keras):
        for ftz in (False, True):
            through = tuple(_through_float32(a, ftz) if i in (1, 2) else a
                            for i, a in enumerate(c.args))
            if c.matches_variant(_keras_variant, through, c.staircase, fmt):
                causes.append("decay_rate and decay_steps converted through float32 first" +
                              (" (float32 subnormals flushed to zero)" if ftz else ""))
                break
    if observed in (float(I), cast_I) and observed != 0 and not special and (
            not c.matches(c.keras)) and not causes:
        causes.append("initial_learning_rate returned unchanged (case short-circuited"
                      + (", negative step clamped)" if c.inputs[3] < 0 else ")"))
    narrow = _narrower_format(observed, (c.exact, c.keras), fmt)
    if narrow is not None:
        causes.append(f"result has {narrow} precision: the dtype {fmt.name} was not honoured")
    if causes:
        return causes
    if isinstance(I, int) and float(observed).is_integer() and not c.matches(c.exact):
        causes.append("integer arithmetic (an integer initial_learning_rate kept as an int)")
    if profile == "exact" and c.matches(c.keras):
        causes.append("keras order: " + c.casts())
    if profile == "keras" and c.matches(c.exact):
        causes.append("no input casts: the exact order, not the keras order")
    wrapped = _wrap_int32(c.inputs[3])
    if wrapped is not None:
        args = (*c.args[:3], to_exact(wrapped))
        if c.matches_variant(_keras_variant, args, c.staircase, fmt):
            causes.append(f"step wrapped to int32 ({wrapped})")
    for name in ("float64", "float32", "float16", "bfloat16"):
        other = get_format(name)
        if other == fmt or c.matches(c.keras) or c.matches(c.exact) or special or causes:
            continue
        if observed == 0 and (other.precision < fmt.precision and other.name != "float32"
                              or _subnormal(c.exact, fmt) or _subnormal(c.keras, fmt)):
            continue  # a flushed subnormal, or no evidence for one narrow format
        if c.matches_variant(_keras_variant, c.args, c.staircase, fmt, work=other):
            wider = other.precision > fmt.precision
            causes.append(f"computed in {name}, then rounded to {fmt.name}" if wider else
                          f"computed in {name}: the dtype {fmt.name} was not honoured")
            break
    if not special and not c.matches(c.keras) and c.matches_variant(
            _keras_variant, c.args, c.staircase, fmt, reciprocal=True):
        causes.append("division done as multiplication by a rounded reciprocal")
    if observed == 0 and (_subnormal(c.exact, fmt) or _subnormal(c.keras, fmt)):
        causes.append("subnormal result flushed to zero")
    ref = c.keras if profile == "keras" else c.exact
    if math.isnan(observed) != math.isnan(ref) or math.isinf(observed) != math.isinf(ref) or (
            math.isinf(observed) and observed != ref):
        causes.append("special value handled differently from the C99 pow / IEEE rules")
    elif observed == 0 and ref == 0:
        causes.append("wrong sign of zero")
    elif not causes and math.isfinite(observed) and math.isfinite(c.keras) and (
            not c.matches(c.keras) and (observed < 0) == (c.keras < 0)
            and observed != 0 and c.keras != 0):
        d = int(ulps_between(c.keras, observed, fmt))
        if d <= 8:
            causes.append(f"pow not correctly rounded (libm error: {d} ulp from the keras order)")
        else:
            causes.append(f"inaccurate pow ({d} ulp from the keras order with the same casts)")
    return causes


def classify(causes: list[str]) -> str:
    """The short class of a failure (its first recognised cause)."""
    if not causes:
        return "unexplained"
    first = causes[0]
    for prefix in ("raised", "keras order", "pow not correctly rounded", "inaccurate pow",
                   "step wrapped to int32"):
        if first.startswith(prefix):
            return prefix
    return first


# ---------------------------------------------------------------------------
# Running one implementation
# ---------------------------------------------------------------------------


@dataclass
class FileSummary:
    """Counts and the worst case of one implementation on one file."""

    file: str
    passed: int = 0
    failed: int = 0
    na: int = 0
    within_tolerance: int = 0
    max_ulps: float = 0.0
    worst: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    classes: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "passed": self.passed, "failed": self.failed,
                "notApplicable": self.na, "withinTolerance": self.within_tolerance,
                "maxUlpError": _json_float(self.max_ulps), "worst": self.worst,
                "failureClasses": dict(sorted(self.classes.items())),
                "failures": self.failures}


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "nan")


def group_params(group: dict[str, Any]) -> Params:
    I = decode_number(group["initialLearningRate"])
    D = decode_number(group["decaySteps"])
    r = decode_number(group["decayRate"])
    return Params(I, D, r, bool(group["staircase"]), group["dtype"])


def case_inputs(group: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """The inputs of a test, for reports (hex floats, decimal integers)."""
    def show(obj: dict[str, str]) -> str:
        return obj.get("int") or obj["hex"]

    return {"dtype": group["dtype"], "staircase": group["staircase"],
            "initial_learning_rate": show(group["initialLearningRate"]),
            "decay_steps": show(group["decaySteps"]), "decay_rate": show(group["decayRate"]),
            "step": show(test["step"])}


def evaluate_file(adapter: Adapter, doc: dict[str, Any]) -> dict[int, tuple[Any, Any, Any]]:
    """``tcId -> (value, error, na)`` for every test of a document."""
    out: dict[int, tuple[Any, Any, Any]] = {}
    for group in doc["testGroups"]:
        tests = group["tests"]
        if not tests:
            continue
        params = group_params(group)
        why = adapter.applicable(params)
        if why is not None:
            for t in tests:
                out[t["tcId"]] = (None, None, why)
            continue
        steps = [decode_number(t["step"]) for t in tests]
        try:
            res: Outcome = adapter.evaluate_outcome(params, steps)
        except Exception as e:  # noqa: BLE001 - the implementation's failure
            res = Outcome(values=np.full(len(tests), math.nan),
                          errors=dict.fromkeys(range(len(tests)), f"{type(e).__name__}: {e}"))
        for i, t in enumerate(tests):
            out[t["tcId"]] = (float(res.values[i]), res.errors.get(i),
                              res.not_applicable.get(i))
    return out


def summarise(name: str, doc: dict[str, Any], outputs: dict[int, tuple[Any, Any, Any]],
              profile: str, explain: bool = True) -> FileSummary:
    """Judge every test of a document under ``profile``."""
    summary = FileSummary(name)
    for group, test in iter_tests(doc):
        fmt = get_format(group["dtype"])
        value, error, na = outputs.get(test["tcId"], (None, "no output", None))
        v = judge(test, fmt, profile, value if error is None and na is None else None,
                  error, na)
        if v.status == "na":
            summary.na += 1
            continue
        if v.status == "pass":
            summary.passed += 1
            summary.within_tolerance += v.within_tolerance
        else:
            summary.failed += 1
            if not v.classes and value is not None and error is None and explain:
                v.classes = diagnose(test, group, fmt, profile, value)
            summary.classes[classify(v.classes)] += 1
            entry = {"tcId": v.tc_id, "inputs": case_inputs(group, test),
                     "flags": test["flags"], "expected": v.expected, "observed": v.observed,
                     "ulps": _json_float(v.ulps) if v.ulps is not None else None,
                     "causes": v.classes or ["unexplained"]}
            if v.detail:
                entry["error"] = v.detail[:300]
            summary.failures.append(entry)
        u = v.ulps if v.ulps is not None else (math.inf if v.status == "fail" else 0.0)
        if v.status == "fail" and (summary.worst is None or u > summary.max_ulps):
            summary.worst = summary.failures[-1]
        summary.max_ulps = max(summary.max_ulps, u)
    return summary


@dataclass
class ImplementationReport:
    """Everything measured for one implementation under one profile."""

    name: str
    version: str
    profile: str
    vectorised: bool
    files: list[FileSummary]
    seconds: float
    error: str | None = None

    @property
    def passed(self) -> int:
        return sum(f.passed for f in self.files)

    @property
    def failed(self) -> int:
        return sum(f.failed for f in self.files)

    @property
    def na(self) -> int:
        return sum(f.na for f in self.files)

    @property
    def classes(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for f in self.files:
            c.update(f.classes)
        return c

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0

    def to_json(self) -> dict[str, Any]:
        return {"implementation": self.name, "version": self.version, "profile": self.profile,
                "vectorised": self.vectorised, "passed": self.passed, "failed": self.failed,
                "notApplicable": self.na, "seconds": round(self.seconds, 2),
                "error": self.error, "failureClasses": dict(self.classes.most_common()),
                "files": [f.to_json() for f in self.files]}


def check_implementation(name: str, options: dict[str, Any], docs: dict[str, dict[str, Any]],
                         profiles: tuple[str, ...], timeout: float = 60.0,
                         progress: bool = True) -> list[ImplementationReport]:
    """Run one implementation on the documents; one report per profile."""
    reports = []
    orders = profiles if name == "expdecay" else (None,)
    for order in orders:
        opts = dict(options)
        if order is not None:
            opts["order"] = order
        shown = label(name, options) if order in (None, "exact") else f"{name}[order=keras]"
        t0 = time.monotonic()
        if progress:
            print(f"checking {shown} ...", file=sys.stderr, flush=True)
        try:
            adapter = get_adapter(name, isolated=True, timeout=timeout, **opts)
        except ImplementationLookupError:
            raise  # a bad argument, not a property of the implementation
        except Exception as e:  # noqa: BLE001 - reported as the implementation's error
            for p in profiles if order is None else (order,):
                reports.append(ImplementationReport(shown, "unavailable", p, False, [],
                                                    time.monotonic() - t0, str(e)[:300]))
            continue
        broken = getattr(adapter, "broken", None)  # a start-up failure
        outputs = {}
        try:
            for i, (fname, doc) in enumerate(docs.items(), 1):
                if progress:
                    print(f"  {shown}: {fname} ({i}/{len(docs)})", file=sys.stderr, flush=True)
                outputs[fname] = evaluate_file(adapter, doc)
        finally:  # on Ctrl-C too: no worker is left running
            close = getattr(adapter, "close", None)
            if close:
                close()
        version = getattr(adapter, "version", "unknown")
        vectorised = bool(getattr(adapter, "vectorised", False))
        elapsed = time.monotonic() - t0
        for p in profiles if order is None else (order,):
            files = [summarise(fname, docs[fname], outputs[fname], p) for fname in docs]
            reports.append(ImplementationReport(shown, version, p, vectorised, files, elapsed,
                                                broken))
    return reports


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------


def _fmt_ulps(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:g}"


def describe_case(entry: dict[str, Any]) -> str:
    i = entry["inputs"]
    head = (f"tcId {entry['tcId']}: {i['dtype']}{' staircase' if i['staircase'] else ''} "
            f"I={i['initial_learning_rate']} D={i['decay_steps']} r={i['decay_rate']} "
            f"step={i['step']}: got {entry['observed']} want {entry['expected']}")
    if entry.get("error"):
        head += f" ({entry['error'][:80]})"
    return head + f" [{'; '.join(entry['causes'])}]"


def print_report(rep: ImplementationReport, out: Any = None) -> None:
    out = out or sys.stdout
    print(f"\n{rep.name} ({rep.version}), profile {rep.profile}"
          f"{', vectorised' if rep.vectorised else ''}", file=out)
    if rep.error:
        print(f"  error: {rep.error}", file=out)
    for f in rep.files:
        line = (f"  {f.file:<22} passed {f.passed:5d}  failed {f.failed:5d}  n/a {f.na:5d}  "
                f"max ulp {_fmt_ulps(f.max_ulps)}")
        if f.within_tolerance:
            line += f"  ({f.within_tolerance} within tolerance)"
        print(line, file=out)
        if f.worst is not None:
            print(f"    worst: {describe_case(f.worst)}", file=out)
    if rep.classes:
        print("  failure classes: " + "; ".join(f"{k} x{v}" for k, v in
                                                rep.classes.most_common()), file=out)


def print_table(reports: list[ImplementationReport], out: Any = None) -> None:
    out = out or sys.stdout
    print("\nConformance table", file=out)
    head = (f"{'implementation':<34} {'profile':<7} {'passed':>7} {'failed':>7} {'n/a':>6}  "
            "main failure classes")
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in reports:
        classes = ", ".join(f"{k} ({v})" for k, v in r.classes.most_common(3))
        if r.error and not r.files:
            classes = f"ERROR: {r.error[:60]}"
        print(f"{r.name:<34} {r.profile:<7} {r.passed:>7} {r.failed:>7} {r.na:>6}  {classes}",
              file=out)


def markdown_table(reports: list[ImplementationReport]) -> str:
    """The conformance table as Markdown: one row per implementation and
    profile, with every recognised failure class and its count."""
    lines = ["| implementation | version | steps | profile | passed | failed | n/a | "
             "failure classes (count) |", "|---|---|---|---|---:|---:|---:|---|"]
    for r in reports:
        classes = "; ".join(f"{k} ({v})" for k, v in r.classes.most_common()) or "-"
        if r.error and not r.files:
            classes = f"error: {r.error}"
        steps = "array" if r.vectorised else "scalar"
        lines.append(f"| {r.name} | {r.version} | {steps} | {r.profile} | {r.passed} | "
                     f"{r.failed} | {r.na} | {classes} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl", action="append", metavar="NAME",
                   help="implementation: expdecay, keras, tf-keras, optax, torch, "
                   "python:module:function or cmd:COMMAND (repeatable; default: every "
                   "installed implementation)")
    p.add_argument("--vectors", nargs="+", metavar="PATH",
                   help="vector files or directories (default: conformance/vectors)")
    p.add_argument("--profile", choices=[*PROFILES, "both"], default="both",
                   help="expected order and tolerances (default: both)")
    p.add_argument("--report", metavar="FILE.json", help="write the full report as JSON")
    p.add_argument("--markdown", metavar="FILE.md", help="write the table as Markdown")
    p.add_argument("--backend", choices=["numpy", "jax", "torch", "tensorflow"],
                   help="Keras 3 backend (keras only)")
    p.add_argument("--x64", action="store_true", help="enable JAX x64 (optax only)")
    p.add_argument("--step-mode", choices=["array", "scalar"],
                   help="one call per step array (default) or per step")
    p.add_argument("--all-variants", action="store_true",
                   help="with no --impl: also scalar-step variants and torch's chainable form")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds allowed for each request to an implementation "
                   f"(default %(default)g, at most {MAX_TIMEOUT:g}); its start-up, up to "
                   f"its hello line, is allowed {STARTUP_FACTOR:g} times as long")


def vector_paths(items: list[str] | None) -> list[Path]:
    """Files named, or the ``*.json`` of directories named (sorted)."""
    if not items:
        items = [str(default_vectors_dir())]
    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out += sorted(p.glob("*.json"))
        elif p.exists():
            out.append(p)
        else:
            raise ValueError(f"--vectors: no such file or directory: {it}")
    if not out:
        raise ValueError(f"vectors: no .json files in {', '.join(items)}")
    return out


def _options(args: argparse.Namespace, name: str) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.backend:
        if name != "keras":
            raise ValueError(f"--backend applies to keras only; got --impl {name}")
        opts["backend"] = args.backend
    if args.x64:
        if name != "optax":
            raise ValueError(f"--x64 applies to optax only; got --impl {name}")
        opts["x64"] = True
    if args.step_mode:
        if name not in ("keras", "tf-keras", "optax"):
            raise ValueError(f"--step-mode applies to keras, tf-keras and optax; got {name}")
        opts["step_mode"] = args.step_mode
    return opts


def check_name(name: str, timeout: float = 60.0) -> str:
    """``ValueError`` (:class:`ImplementationLookupError`) unless ``name``
    names an implementation.  A ``python:`` module is imported in a throwaway
    worker process, never in the runner's (it may even ``sys.exit`` at import)."""
    from .adapters import IMPLEMENTATIONS

    ok = name in IMPLEMENTATIONS or (name.startswith("cmd:") and name[4:].strip()) or (
        name.startswith("python:") and ":" in name[7:])
    if not ok:
        raise ImplementationLookupError(
            f"--impl must be one of {', '.join(IMPLEMENTATIONS)}, "
            f"python:module:function or cmd:COMMAND; got {name[:80]!r}")
    if name.startswith("cmd:"):
        try:
            argv = shlex.split(name[4:])
        except ValueError as e:
            raise ImplementationLookupError(f"--impl {name[:80]!r}: {e}") from None
        if not argv:
            raise ImplementationLookupError(f"--impl {name[:80]!r}: no program")
        if shutil.which(argv[0]) is None:
            raise ImplementationLookupError(
                f"--impl {name[:80]!r}: no executable program {argv[0]!r}")
    elif name.startswith("python:"):
        try:
            check_loadable(name, timeout=timeout)
        except ImplementationLookupError as e:
            raise ImplementationLookupError(f"--impl {e}") from None
    return name


def configurations(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    if args.impl:
        out = []
        for name in args.impl:
            opts = _options(args, name)  # cheap checks before a python: module's probe
            out.append((check_name(name, args.timeout), opts))
        return out
    configs = default_configurations()
    if args.all_variants:
        extra: list[tuple[str, dict[str, Any]]] = []
        for name, opts in configs:
            if name in ("keras", "tf-keras", "optax"):
                extra.append((name, {**opts, "step_mode": "scalar"}))
            if name == "torch":
                extra.append((name, {"form": "chainable"}))
        configs = configs + extra
    return configs


def run_check(args: argparse.Namespace) -> int:
    if not 0 < args.timeout <= MAX_TIMEOUT:
        raise ValueError(f"--timeout must be > 0 and at most {MAX_TIMEOUT:g}; got {args.timeout}")
    profiles = PROFILES if args.profile == "both" else (args.profile,)
    configs = configurations(args)
    docs: dict[str, dict[str, Any]] = {}
    bad_files = 0
    for path in vector_paths(args.vectors):
        try:
            docs[path.name] = load_vector_file(path)
        except VectorFileError as e:
            print(f"expdecay check: {e}", file=sys.stderr)
            bad_files += 1
    if not docs:
        print("expdecay check: no usable vector file", file=sys.stderr)
        return 1
    reports: list[ImplementationReport] = []
    for name, opts in configs:
        reps = check_implementation(name, opts, docs, profiles, args.timeout)
        for r in reps:
            print_report(r)
        reports += reps
    print_table(reports)
    if args.report:
        from .vectors import atomic_write

        doc = {"profiles": list(profiles), "vectorFiles": list(docs),
               "implementations": [r.to_json() for r in reports]}
        atomic_write(Path(args.report), json.dumps(doc, indent=1) + "\n")
    if args.markdown:
        from .vectors import atomic_write

        atomic_write(Path(args.markdown), markdown_table(reports))
    ok = bad_files == 0 and all(r.ok for r in reports)
    return 0 if ok else 1
