"""The conformance runner: check implementations against the vectors.

``expdecay check`` loads the vector files, runs each implementation in a
worker subprocess (one per implementation, the JSON-lines protocol of
:mod:`expdecay.conformance.adapters.protocol`), compares every output with the expected
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

import math
import shlex
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..floats import Format, get_format, to_hex
from .adapters import (
    Adapter,
    ImplementationLookupError,
    Params,
    check_loadable,
    get_adapter,
    label,
)
from .adapters.base import Outcome
from .diagnosis import classify, diagnose, same_bits, ulps_between
from .vectors import (
    decode_number,
    decode_result,
    default_vectors_dir,
    iter_tests,
)

__all__ = [
    "PROFILES",
    "TestResult",
    "FileSummary",
    "judge",
    "check_implementation",
    "markdown_table",
    "vector_paths",
    "check_name",
    "ulps_between",
    "same_bits",
    "diagnose",
    "classify",
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
                         progress: Callable[[str], object] | None = None
                         ) -> list[ImplementationReport]:
    """Run one implementation on the documents; one report per profile.
    ``progress``, if given, is called with one line of text per step (the
    command line prints them on stderr)."""
    reports = []
    orders = profiles if name == "expdecay" else (None,)
    for order in orders:
        opts = dict(options)
        if order is not None:
            opts["order"] = order
        shown = label(name, options) if order in (None, "exact") else f"{name}[order=keras]"
        t0 = time.monotonic()
        if progress:
            progress(f"checking {shown} ...")
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
                    progress(f"  {shown}: {fname} ({i}/{len(docs)})")
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
