"""The conformance runner: check implementations against the vectors.

``expdecay check`` loads the vector files, runs each implementation in a
worker subprocess (one per implementation, the JSON-lines protocol of
:mod:`expdecay.conformance.adapters.client`), compares every output with the expected
bits of the chosen profile and prints, per file, the passed / failed /
not-applicable counts, the largest ulp error and the worst case; then one
table over all implementations.  Each failure gets a proven cause, or is
marked ambiguous or unexplained (:func:`diagnose`): a cause is reported only
when recomputing the schedule with that mistake reproduces the observed
bits and no other equally simple explanation does.  An implementation that
cannot start is ``unavailable`` (nothing run, nothing passed); a test that
got no answer (the worker crashed or hung) is ``not run``, never passed;
a wrong answer in any process state is a failure: the groups with a
failure are evaluated once more in a fresh process state, which only says
why a failure happened (``process-state``, ``nondeterministic``), never
whether.

Pass rules (``spec/conformance.md``): under profile ``p`` a ``valid`` test
passes when the output is a value of the group's format at most
``tolerance[p]`` ulps from the expected bits of order ``p`` (a NaN matches
any NaN; zeros and infinities must match bit for bit); an ``invalid`` test
passes when the implementation reports an error; an ``acceptable`` test
passes either way.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExpdecayError
from ..floats import (
    Format,
    get_format,
    same_bits,
    to_hex,
    ulps_between,
)
from ..orders import Order, check_order
from .adapters import (
    Adapter,
    ImplementationLookupError,
    Params,
    check_loadable,
    get_adapter,
)
from .adapters.base import Outcome
from .adapters.client import CHUNK, SubprocessAdapter, WorkerSet, owning
from .adapters.codec import STARTUP_FACTOR
from .adapters.hub import HUB_MODULES, Hub, hub_env, hub_family
from .adapters.registry import label
from .diagnosis import (
    CAUSES,
    FACTS,
    Diagnosis,
    classify,
    diagnose,
    diagnose_outputs,
    fact,
)
from .vectors import (
    decode_number,
    decode_result,
    default_vectors_dir,
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
    "diagnose",
    "classify",
    "CAUSES",
    "FACTS",
    "rerun_failing",
    "rerun_sequence",
    "rerun_mode",
    "RERUN_MODES",
    "STATES",
    "failing_groups",
    "check_implementations",
    "evaluate_docs",
    "check_output_path",
]

PROFILES = ("exact", "keras")


# ---------------------------------------------------------------------------
# Judging one output
# ---------------------------------------------------------------------------


@dataclass
class TestResult:
    """The verdict on one test."""

    tc_id: int
    status: str  # "pass", "fail", "na", "notrun" (no answer: the worker crashed)
    ulps: float | None = None  # |distance| to the expected value, None if undefined
    observed: str | None = None  # hex of the output, or None
    expected: str | None = None
    detail: str = ""  # error message or reason not applicable / not run
    diagnosis: Diagnosis | None = None
    within_tolerance: bool = False  # passed but not bit-identical
    #: The evidence of a re-run whose answers differed (``state``: its
    #: label, ``passes``: every output), None otherwise.
    state: dict[str, Any] | None = None

    @property
    def classes(self) -> list[str]:
        """The English causes (compatibility: empty when not diagnosed)."""
        return self.diagnosis.text if self.diagnosis is not None else []


def judge(test: dict[str, Any], fmt: Format, profile: Order, value: float | None,
          error: str | None, na: str | None, crashed: str | None = None) -> TestResult:
    """The verdict of ``profile`` on one output (``value``), error, n/a, or
    a step that got no answer (``crashed``: never a pass)."""
    tc = int(test["tcId"])
    result = test["result"]
    if na is not None:
        return TestResult(tc, "na", detail=na)
    if crashed is not None:
        return TestResult(tc, "notrun", detail=crashed)
    if result == "invalid":
        if error is not None:
            return TestResult(tc, "pass", detail=error)
        obs = _hex(value) if value is not None else None
        return TestResult(tc, "fail", observed=obs, expected="an error",
                          diagnosis=fact("missing-validation"))
    expected, exp_hex = _expected(test, fmt, profile)
    if error is not None:
        if result == "acceptable":
            return TestResult(tc, "pass", expected=exp_hex, detail=error)
        return TestResult(tc, "fail", expected=exp_hex, detail=error,
                          diagnosis=fact("raised", error[:120]))
    assert value is not None
    obs = _hex(value)
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


#: The expected value of a test under a profile, and its hex, decoded once
#: per process (keyed by the test object's identity, which the entry keeps
#: alive): every implementation's outputs are judged against them.
_EXPECTED: dict[tuple[int, str, str], tuple[dict[str, Any], float, str]] = {}
_EXPECTED_MAX = 200_000


def _expected(test: dict[str, Any], fmt: Format, profile: Order) -> tuple[float, str]:
    key = (id(test), fmt.name, profile)
    hit = _EXPECTED.get(key)
    if hit is not None and hit[0] is test:
        return hit[1], hit[2]
    value = decode_result(test[profile], fmt, f"tcId {test['tcId']}")
    out = (test, value, to_hex(value))
    if len(_EXPECTED) >= _EXPECTED_MAX:
        _EXPECTED.clear()
    _EXPECTED[key] = out
    return out[1], out[2]


def _hex(value: float) -> str:
    return to_hex(value) if not math.isnan(value) else "nan"


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
    not_run: int = 0
    process_state: int = 0  # failures labelled process-state (counted in ``failed``)
    nondeterministic: int = 0  # failures labelled nondeterministic (counted in ``failed``)
    within_tolerance: int = 0
    max_ulps: float = 0.0
    worst: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    not_run_tests: list[dict[str, Any]] = field(default_factory=list)
    state_tests: list[dict[str, Any]] = field(default_factory=list)
    classes: Counter[str] = field(default_factory=Counter)
    cause_ids: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "passed": self.passed, "failed": self.failed,
                "notApplicable": self.na, "notRun": self.not_run,
                "dependsOnProcessState": self.process_state,
                "nondeterministic": self.nondeterministic,
                "withinTolerance": self.within_tolerance,
                "maxUlpError": _json_float(self.max_ulps), "worst": self.worst,
                "failureClasses": dict(sorted(self.classes.items())),
                "causeIds": dict(sorted(self.cause_ids.items())),
                "failures": self.failures, "notRunTests": self.not_run_tests,
                "processState": self.state_tests}


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "nan")


def group_params(group: dict[str, Any]) -> Params:
    I = decode_number(group["initialLearningRate"])
    D = decode_number(group["decaySteps"])
    r = decode_number(group["decayRate"])
    return Params(I, D, r, group["staircase"], group["dtype"])


def case_inputs(group: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """The inputs of a test, for reports (hex floats, decimal integers)."""
    def show(obj: dict[str, str]) -> str:
        return obj.get("int") or obj["hex"]

    return {"dtype": group["dtype"], "staircase": group["staircase"],
            "initial_learning_rate": show(group["initialLearningRate"]),
            "decay_steps": show(group["decaySteps"]), "decay_rate": show(group["decayRate"]),
            "step": show(test["step"])}


#: ``tcId -> (value, error, not applicable, not run)``: one file's outputs.
Outputs = dict[int, tuple[Any, Any, Any, Any]]


def evaluate_file(adapter: Adapter, doc: dict[str, Any],
                  groups: set[int] | None = None) -> Outputs:
    """``tcId -> (value, error, na, crashed)`` for every test of a document
    (or of the groups numbered ``groups``, 0-based)."""
    out: Outputs = {}
    for number, group in enumerate(doc["testGroups"]):
        if group["tests"] and (groups is None or number in groups):
            _record(out, group["tests"], _evaluate_group(adapter, group))
    return out


def _record(out: Outputs, tests: list[dict[str, Any]], res: Outcome) -> None:
    """Store one group's outcome per test (no value when the whole group is
    not applicable)."""
    for i, t in enumerate(tests):
        na = res.not_applicable.get(i)
        value = None if na is not None and len(res.not_applicable) == len(tests) \
            else float(res.values[i])
        out[t["tcId"]] = (value, res.errors.get(i), na, res.crashed.get(i))


def _evaluate_group(adapter: Adapter, group: dict[str, Any]) -> Outcome:
    """One group without a batch: its applicability, then its steps in one
    call (an exception is an answer to no step: every test not run)."""
    tests = group["tests"]
    params = group_params(group)
    why = adapter.applicable(params)
    if why is not None:
        return Outcome(np.full(len(tests), math.nan),
                       not_applicable=dict.fromkeys(range(len(tests)), why))
    try:
        return adapter.evaluate_outcome(params, [decode_number(t["step"]) for t in tests])
    except Exception as e:  # noqa: BLE001 - no answer: the tests were not run
        return Outcome(values=np.full(len(tests), math.nan),
                       crashed=dict.fromkeys(range(len(tests)), f"{type(e).__name__}: {e}"))


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise _CancelledError("stopped")


#: Groups per batch request (at most), besides the :data:`CHUNK` steps.
BATCH_GROUPS = 512


def _batches(items: list[tuple[str, dict[str, Any]]]
             ) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Consecutive groups, at most :data:`CHUNK` steps and
    :data:`BATCH_GROUPS` groups per batch (a larger group alone)."""
    batch: list[tuple[str, dict[str, Any]]] = []
    steps = 0
    for item in items:
        n = len(item[1]["tests"])
        if batch and (steps + n > CHUNK or len(batch) >= BATCH_GROUPS):
            yield batch
            batch, steps = [], 0
        batch.append(item)
        steps += n
    if batch:
        yield batch


def evaluate_docs(adapter: Adapter, docs: dict[str, dict[str, Any]],
                  only: dict[str, set[int]] | None = None, *, fresh: bool = False,
                  stop: threading.Event | None = None) -> dict[str, Outputs]:
    """``file -> tcId -> (value, error, na, crashed)`` for every test of the
    documents (or of the groups ``only[file]``, 0-based), in document order.

    An implementation that announces the ``batch`` op gets many groups per
    request, applicability answered in the same round trip; a batch that
    fails is evaluated again group by group (:func:`evaluate_file`'s way).
    With ``fresh`` (``fresh-batch`` op required; nothing is evaluated
    otherwise), each group is evaluated in a fresh process state."""
    items = [(fname, group) for fname, doc in docs.items()
             for number, group in enumerate(doc["testGroups"])
             if group["tests"] and (only is None or number in only.get(fname, ()))]
    return _evaluate_items(adapter, list(docs), items, fresh=fresh, stop=stop)


def _evaluate_items(adapter: Adapter, files: list[str],
                    items: list[tuple[str, dict[str, Any]]], *, fresh: bool = False,
                    stop: threading.Event | None = None) -> dict[str, Outputs]:
    """:func:`evaluate_docs` on the groups ``items`` (``(file, group)``), in
    the order given."""
    outputs: dict[str, Outputs] = {f: {} for f in files}
    batching = isinstance(adapter, SubprocessAdapter) and (
        "fresh-batch" if fresh else "batch") in adapter.ops
    if not batching:
        if fresh:
            return {}
        for fname, group in items:
            _check_stop(stop)
            _record(outputs[fname], group["tests"], _evaluate_group(adapter, group))
        return outputs
    assert isinstance(adapter, SubprocessAdapter)
    for batch in _batches(items):
        _check_stop(stop)
        got = adapter.evaluate_batch(
            [(group_params(g), [decode_number(t["step"]) for t in g["tests"]])
             for _, g in batch], fresh=fresh)
        if got is None and fresh:
            continue  # no fresh state: the first verdicts stand
        for k, (fname, group) in enumerate(batch):
            if got is None:
                _check_stop(stop)
            res = got[k] if got is not None else _evaluate_group(adapter, group)
            _record(outputs[fname], group["tests"], res)
    return {f: o for f, o in outputs.items() if o} if fresh else outputs


def _verdict(test: dict[str, Any], fmt: Format, profile: Order,
             output: tuple[Any, Any, Any, Any]) -> TestResult:
    value, error, na, crashed = output
    plain = error is None and na is None and crashed is None
    return judge(test, fmt, profile, value if plain else None, error, na, crashed)


def failing_groups(doc: dict[str, Any], outputs: Outputs,
                   profiles: tuple[Order, ...]) -> set[int]:
    """Numbers (0-based) of the groups with a failing test under a profile."""
    out = set()
    for number, group in enumerate(doc["testGroups"]):
        fmt = get_format(group["dtype"])
        for t in group["tests"]:
            o = outputs.get(t["tcId"])
            if o is not None and any(_verdict(t, fmt, p, o).status == "fail" for p in profiles):
                out.add(number)
                break
    return out


def summarise(name: str, doc: dict[str, Any], outputs: Outputs,
              profile: Order, explain: bool = True, fresh: Outputs | None = None,
              again: Outputs | None = None) -> FileSummary:
    """Judge every test of a document under ``profile``.  ``fresh`` holds the
    outputs of the re-run of the failing groups and ``again`` those of its
    repetition: a test is a failure when any of them is wrong, and a test
    whose answers differ between them is labelled ``process-state`` or
    ``nondeterministic`` (:func:`_rerun_state`), with every output as
    evidence; the re-run never turns a failure into a pass."""
    summary = FileSummary(name)
    judged = []
    for group in doc["testGroups"]:
        fmt = get_format(group["dtype"])
        for test in group["tests"]:
            output = outputs.get(test["tcId"], (None, None, None, "no output"))
            v = _verdict(test, fmt, profile, output)
            if fresh is not None:
                v = _rerun_state(test, fmt, profile, output, v, fresh, again) or v
            judged.append((group, test, fmt, output, v))
    if explain:
        _diagnose_schedules(judged, profile)
    for group, test, _fmt, _output, v in judged:
        if v.status == "na":
            summary.na += 1
            continue
        if v.status == "notrun":
            summary.not_run += 1
            summary.not_run_tests.append({"tcId": v.tc_id, "inputs": case_inputs(group, test),
                                          "reason": v.detail[:300]})
            continue
        if v.status == "pass":
            summary.passed += 1
            summary.within_tolerance += v.within_tolerance
        else:
            summary.failed += 1
            if v.diagnosis is None:
                v.diagnosis = Diagnosis("unexplained")
            summary.classes[v.diagnosis.label] += 1
            for cid in v.diagnosis.ids:
                summary.cause_ids[cid] += 1
            entry = {"tcId": v.tc_id, "inputs": case_inputs(group, test),
                     "flags": test["flags"], "expected": v.expected, "observed": v.observed,
                     "ulps": _json_float(v.ulps) if v.ulps is not None else None,
                     **v.diagnosis.to_json()}
            if v.detail:
                entry["error"] = v.detail[:300]
            if v.state is not None:
                _note_state(summary, entry, v.state)
            summary.failures.append(entry)
        u = v.ulps if v.ulps is not None else (math.inf if v.status == "fail" else 0.0)
        if v.status == "fail" and (summary.worst is None or u > summary.max_ulps):
            summary.worst = summary.failures[-1]
        summary.max_ulps = max(summary.max_ulps, u)
    return summary


def _note_state(summary: FileSummary, entry: dict[str, Any], state: dict[str, Any]) -> None:
    """Count a failure labelled by the re-run, and keep its evidence."""
    entry.update(state)
    if state["state"] == "nondeterministic":
        summary.nondeterministic += 1
    else:
        summary.process_state += 1
    summary.state_tests.append({k: entry[k] for k in (
        "tcId", "inputs", "flags", "expected", "observed", "state", "passes", "freshObserved",
        "freshError") if k in entry})


def _schedule_key(group: dict[str, Any]) -> str:
    return json.dumps([group[k] for k in ("dtype", "staircase", "initialLearningRate",
                                          "decaySteps", "decayRate")], sort_keys=True)


def _diagnose_schedules(judged: list[tuple[dict[str, Any], dict[str, Any], Format,
                                           tuple[Any, Any, Any, Any], TestResult]],
                        profile: Order) -> None:
    """Give each failure still without a diagnosis the diagnosis of its
    schedule's outputs (:func:`diagnose_outputs`): every value the
    implementation gave for the groups of this document with the same
    parameters, the passes as well as the failures, is the evidence."""
    schedules: dict[str, list[tuple[dict[str, Any], dict[str, Any], float, TestResult]]] = {}
    for group, test, _fmt, output, v in judged:
        value, error, na, crashed = output
        if value is None or error is not None or na is not None or crashed is not None or (
                test["result"] == "invalid" or v.status not in ("pass", "fail") or (
                v.diagnosis is not None)):
            continue
        schedules.setdefault(_schedule_key(group), []).append((test, group, float(value), v))
    for items in schedules.values():
        failing = [k for k, item in enumerate(items) if item[3].status == "fail"]
        if not failing:
            continue
        fmt = get_format(items[0][1]["dtype"])
        diagnoses = _diagnose(items, failing, fmt, profile)
        for k, d in zip(failing, diagnoses, strict=True):
            items[k][3].diagnosis = d


#: Diagnoses already made in this process: the same outputs of the same
#: schedule (several implementations often agree) are diagnosed once.
#: Keyed by the identities of the test objects, which the entry keeps alive;
#: :data:`_DIAG_LOCK` also serialises the diagnoses of parallel checks.
_DIAG_CACHE: dict[tuple[Any, ...], tuple[list[dict[str, Any]], list[Diagnosis]]] = {}
_DIAG_LOCK = threading.RLock()
_DIAG_CACHE_MAX = 20_000


def _diagnose(items: list[tuple[dict[str, Any], dict[str, Any], float, TestResult]],
              failing: list[int], fmt: Format, profile: Order) -> list[Diagnosis]:
    key = (profile, tuple((id(t), id(g), np.float64(v).tobytes()) for t, g, v, _ in items),
           tuple(failing))
    with _DIAG_LOCK:
        hit = _DIAG_CACHE.get(key)
        if hit is not None and all(a is b for a, (b, *_rest) in zip(hit[0], items,
                                                                     strict=True)):
            return hit[1]
        d = diagnose_outputs([(t, g, v) for t, g, v, _ in items], failing, fmt, profile)
        if len(_DIAG_CACHE) >= _DIAG_CACHE_MAX:
            _DIAG_CACHE.clear()
        _DIAG_CACHE[key] = ([t for t, *_rest in items], d)
        return d


@dataclass
class ImplementationReport:
    """Everything measured for one implementation under one profile.

    ``unavailable`` is set (with ``error``) when the implementation could
    not be started or did not answer the hello: then nothing was run and
    nothing passed.
    """

    name: str
    version: str
    profile: Order
    vectorised: bool
    files: list[FileSummary]
    seconds: float
    error: str | None = None
    unavailable: bool = False
    rerun_seconds: float = 0.0
    #: ``phase -> (start, end)`` in ``time.monotonic()`` seconds (see :data:`PHASES`).
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: Failing groups re-run in a fresh process state.
    rerun_groups: int = 0
    #: How they were re-run (:data:`RERUN_MODES`), None when not at all.
    rerun_mode: str | None = None

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
    def not_run(self) -> int:
        return sum(f.not_run for f in self.files)

    @property
    def process_state(self) -> int:
        return sum(f.process_state for f in self.files)

    @property
    def nondeterministic(self) -> int:
        return sum(f.nondeterministic for f in self.files)

    @property
    def classes(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for f in self.files:
            c.update(f.classes)
        return c

    @property
    def cause_ids(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for f in self.files:
            c.update(f.cause_ids)
        return c

    @property
    def status(self) -> str:
        """``unavailable``, ``conforms`` or ``fails`` (a failure, in any
        process state, or a test not run)."""
        if self.unavailable:
            return "unavailable"
        return "conforms" if self.failed == 0 and self.not_run == 0 else "fails"

    @property
    def ok(self) -> bool:
        return self.status == "conforms"

    def to_json(self) -> dict[str, Any]:
        return {"implementation": self.name, "version": self.version, "profile": self.profile,
                "status": self.status, "vectorised": self.vectorised, "passed": self.passed,
                "failed": self.failed, "notApplicable": self.na, "notRun": self.not_run,
                "dependsOnProcessState": self.process_state,
                "nondeterministic": self.nondeterministic, "rerun": self.rerun_mode,
                "seconds": round(self.seconds, 2), "rerunSeconds": round(self.rerun_seconds, 2),
                "error": self.error, "failureClasses": dict(self.classes.most_common()),
                "causeIds": dict(self.cause_ids.most_common()),
                "files": [f.to_json() for f in self.files]}


#: Phases of a check timed by :attr:`ImplementationReport.phases`.
PHASES = ("startup", "evaluation", "rerun", "shutdown", "diagnosis")


def check_implementation(name: str, options: dict[str, Any], docs: dict[str, dict[str, Any]],
                         profiles: tuple[str, ...], timeout: float = 60.0,
                         progress: Callable[[str], object] | None = None,
                         rerun: bool | str = True) -> list[ImplementationReport]:
    """Run one implementation on the documents; one report per profile.
    ``progress``, if given, is called with one line of text per step (the
    command line prints them on stderr).

    An implementation that cannot start (or does not answer the hello) is
    reported ``unavailable``, with nothing run.  With ``rerun`` (True or
    ``"sequence"``), the groups with a failing test are evaluated once
    more, in reverse order, in one fresh process (forked from the worker
    before it evaluated anything; a new process for ``cmd:``); with
    ``"isolate"``, each in a fresh process of its own.  Groups that answer
    differently there are evaluated the same way once more, and their
    failures are labelled ``process-state`` or ``nondeterministic``
    (:data:`STATES`): still failures, since a wrong answer in any process
    state is one."""
    [reports] = check_implementations([(name, options)], docs, profiles, timeout,
                                      progress=progress, rerun=rerun)
    return reports


def usable_jobs() -> int:
    """Implementations checked at once by default: 16 (8 per core below two
    cores), so that the default run starts every worker at once and one
    implementation's start-up overlaps another's evaluation or re-run."""
    return max(2, min(16, 8 * (os.cpu_count() or 1)))


#: Seconds the checks of a stopped run have to give up once their workers
#: are ended; a check still running after that finishes in the background
#: (every wait of a check is bounded), and the run's temporary directory is
#: removed when the last one ends.
STOP_GRACE = 30.0


def check_implementations(configs: list[tuple[str, dict[str, Any]]],
                          docs: dict[str, dict[str, Any]], profiles: tuple[str, ...],
                          timeout: float = 60.0,
                          progress: Callable[[str], object] | None = None,
                          rerun: bool | str = True, jobs: int | None = None
                          ) -> Generator[list[ImplementationReport], None, None]:
    """:func:`check_implementation` for every ``(name, options)``, checked
    in parallel (``jobs`` at once, an int >= 1; default :func:`usable_jobs`):
    every worker starts at once, so that start-ups overlap one another and
    the evaluations.  Yields the reports of each configuration in the order
    given, each as soon as it and those before it are done.  Verdicts do
    not depend on the parallelism: each implementation has its own worker,
    which evaluates the groups in document order.

    When the run stops early (an exception, Ctrl-C, or the caller closing
    the iterator), the workers this run started are ended, and no other."""
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be an int >= 1; got {jobs!r}")
    rerun_mode(rerun)
    checked = tuple(check_order(p, "profiles") for p in profiles)
    return _check_implementations(configs, docs, checked, timeout, progress, rerun, jobs)


def _check_implementations(configs: list[tuple[str, dict[str, Any]]],
                           docs: dict[str, dict[str, Any]], profiles: tuple[Order, ...],
                           timeout: float, progress: Callable[[str], object] | None,
                           rerun: bool | str, jobs: int | None
                           ) -> Generator[list[ImplementationReport], None, None]:
    units: list[list[tuple[str, dict[str, Any], Order | None]]] = []
    for name, options in configs:
        orders: tuple[Order | None, ...] = profiles if name == "expdecay" else (None,)
        units.append([(name, options, order) for order in orders])
    flat = [u for us in units for u in us]
    if not flat:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs or usable_jobs(), len(flat))),
                              thread_name_prefix="expdecay-check")
    stop = threading.Event()
    workers = WorkerSet()  # this run's, and only those
    futures: list[Future[list[ImplementationReport]]] = []
    cache = tempfile.TemporaryDirectory(prefix="expdecay-check-", ignore_cleanup_errors=True)
    hubs = _Hubs(flat, timeout)
    try:
        futures += [pool.submit(_check_unit, name, options, order, docs, profiles, timeout,
                                progress, rerun, stop, os.path.join(cache.name, str(k)),
                                workers, hubs)
                    for k, (name, options, order) in enumerate(flat)]
        k = 0
        for us in units:
            reports: list[ImplementationReport] = []
            for _ in us:
                reports += futures[k].result()
                k += 1
            yield reports
    except BaseException:  # Ctrl-C, a bad argument, or the caller stopped early
        stop.set()
        raise
    finally:
        for f in futures:
            f.cancel()
        if stop.is_set():  # end this run's workers until every check has given up
            deadline = time.monotonic() + STOP_GRACE
            while any(not f.done() for f in futures) and time.monotonic() < deadline:
                workers.close_all()
                time.sleep(0.05)
        pool.shutdown(wait=not stop.is_set())
        hubs.close()
        _cleanup_when_done(cache, futures)


def _cleanup_when_done(cache: tempfile.TemporaryDirectory[str],
                       futures: list[Future[list[ImplementationReport]]]) -> None:
    """Remove the run's temporary directory now, or when the last check
    still running ends (never from under a running check)."""
    left = [f for f in futures if not f.done()]
    if not left:
        cache.cleanup()
        return
    lock = threading.Lock()
    count = [len(left)]

    def one_done(_: object) -> None:
        with lock:
            count[0] -= 1
            last = count[0] == 0
        if last:
            cache.cleanup()

    for f in left:
        f.add_done_callback(one_done)


class _Hubs:
    """The start-up hubs of a run (:mod:`expdecay.conformance.adapters.hub`):
    one per framework that two or more of the run's workers import, started
    by the first check that needs it (the others wait for its import, which
    they would otherwise each do).  A hub that cannot start is not retried;
    its workers start the usual way."""

    def __init__(self, units: list[tuple[str, dict[str, Any], Order | None]],
                 timeout: float) -> None:
        families = Counter(hub_family(name, options) for name, options, _ in units)
        self.wanted = {f for f, n in families.items() if f is not None and n >= 2}
        self.timeout = min(STARTUP_FACTOR * timeout, 86400.0)
        self._hubs: dict[str, Hub | None] = {}
        self._locks = {f: threading.Lock() for f in self.wanted}

    def get(self, name: str, options: dict[str, Any]) -> Hub | None:
        family = hub_family(name, options)
        if family not in self.wanted:
            return None
        assert family is not None
        with self._locks[family]:
            if family not in self._hubs:
                hub: Hub | None = Hub(HUB_MODULES[family], hub_env(family), self.timeout)
                assert hub is not None
                if hub.error is not None:
                    hub = None
                self._hubs[family] = hub
            return self._hubs[family]

    def close(self) -> None:
        for family, lock in self._locks.items():
            with lock:
                hub = self._hubs.pop(family, None)
            if hub is not None:
                hub.close()


class _CancelledError(ExpdecayError):
    """Another check failed or the run was interrupted: stop this one."""


def _check_unit(name: str, options: dict[str, Any], order: Order | None,
                docs: dict[str, dict[str, Any]], profiles: tuple[Order, ...], timeout: float,
                progress: Callable[[str], object] | None, rerun: bool | str,
                stop: threading.Event | None = None, cache_dir: str | None = None,
                workers: WorkerSet | None = None, hubs: _Hubs | None = None
                ) -> list[ImplementationReport]:
    """One implementation (in one order for ``expdecay``) on the documents
    (:class:`_CancelledError` once ``stop`` is set); every worker it starts
    joins ``workers``."""
    with owning(workers if workers is not None else WorkerSet()):
        return _check_one(name, options, order, docs, profiles, timeout, progress, rerun,
                          stop, cache_dir, hubs)


def _check_one(name: str, options: dict[str, Any], order: Order | None,
               docs: dict[str, dict[str, Any]], profiles: tuple[Order, ...], timeout: float,
               progress: Callable[[str], object] | None, rerun: bool | str,
               stop: threading.Event | None, cache_dir: str | None,
               hubs: _Hubs | None = None) -> list[ImplementationReport]:
    opts = dict(options)
    if order is not None:
        opts["order"] = order
    shown = label(name, options) if order in (None, "exact") else f"{name}[order=keras]"
    mine = profiles if order is None else (order,)
    mode = rerun_mode(rerun)
    phases: dict[str, tuple[float, float]] = {}
    t0 = time.monotonic()
    if progress:
        progress(f"checking {shown} ...")
    try:
        hub = hubs.get(name, opts) if hubs is not None else None
        adapter = get_adapter(name, isolated=True, timeout=timeout, zygote=mode is not None,
                              cache_dir=cache_dir, hub=hub, **opts)
        broken = getattr(adapter, "broken", None)  # a start-up failure
    except ImplementationLookupError:
        raise  # a bad argument, not a property of the implementation
    except Exception as e:  # noqa: BLE001 - reported as the implementation's error
        broken = f"{type(e).__name__}: {e}"
        adapter = None
    t1 = time.monotonic()
    phases["startup"] = (t0, t1)
    if broken is not None or adapter is None:
        if adapter is not None:
            adapter.close()
        return [ImplementationReport(shown, "unavailable", p, False, [], time.monotonic() - t0,
                                     str(broken)[:300], unavailable=True, phases=phases)
                for p in mine]
    if progress:
        progress(f"  {shown}: started in {t1 - t0:.1f} s; evaluating {len(docs)} files")
    fresh: dict[str, Outputs] = {}
    again: dict[str, Outputs] = {}
    rerun_groups = 0
    try:
        outputs = evaluate_docs(adapter, docs, stop=stop)
        t2 = time.monotonic()
        phases["evaluation"] = (t1, t2)
        version = getattr(adapter, "version", "unknown")
        vectorised = bool(getattr(adapter, "vectorised", False))
        broken_after = getattr(adapter, "broken", None)
        if mode is not None:
            todo = {f: g for f in docs if (g := failing_groups(docs[f], outputs[f], mine))}
            rerun_groups = sum(map(len, todo.values()))
            if todo:
                if progress:
                    how = ("each in a fresh process" if mode == "isolate" else
                           "in reverse order in one fresh process")
                    progress(f"  {shown}: evaluated in {t2 - t1:.1f} s; re-running "
                             f"{rerun_groups} failing groups, {how}")
                fresh, again = _rerun_twice(adapter, name, opts, docs, outputs, todo, timeout,
                                            mode, stop)
            phases["rerun"] = (t2, time.monotonic())
    except BaseException:  # on Ctrl-C too: no worker is left running
        adapter.close()
        raise
    # The worker ends (its input closed, its exit awaited) while the
    # outputs are judged.
    t3 = time.monotonic()
    closing = threading.Thread(target=adapter.close, name=f"expdecay-close-{shown}")
    closing.start()
    elapsed = t2 - t0
    rerun_seconds = phases["rerun"][1] - phases["rerun"][0] if "rerun" in phases else 0.0
    t4 = time.monotonic()
    reports = []
    try:
        with _DIAG_LOCK:
            for p in mine:
                files = []
                for fname in docs:
                    _check_stop(stop)
                    files.append(summarise(fname, docs[fname], outputs[fname], p,
                                           fresh=fresh.get(fname), again=again.get(fname)))
                reports.append(ImplementationReport(shown, version, p, vectorised, files,
                                                    elapsed, broken_after,
                                                    rerun_seconds=rerun_seconds,
                                                    phases=phases, rerun_groups=rerun_groups,
                                                    rerun_mode=mode))
        phases["diagnosis"] = (t4, time.monotonic())
    finally:
        closing.join()
        phases["shutdown"] = (t3, time.monotonic())
    if progress:
        progress(f"  {shown}: done in {time.monotonic() - t0:.1f} s")
    return reports


def _has_outputs(outputs: Outputs | None, doc: dict[str, Any], number: int) -> bool:
    return outputs is not None and all(
        t["tcId"] in outputs for t in doc["testGroups"][number]["tests"])


#: How the failing groups of a check are re-run (``rerun=``): ``sequence``
#: (the default, ``rerun=True``) evaluates them once more, in reverse
#: order, in ONE fresh process; ``isolate`` evaluates each in a fresh
#: process of its own (a child per group).  Neither changes whether a test
#: fails: a wrong answer in any pass is a failure, and the re-run only says
#: why (:data:`STATES`).
RERUN_MODES = ("sequence", "isolate")

#: The labels a re-run puts on a failure (its cause), with their meaning.
STATES: dict[str, str] = {
    "process-state": "the answer depends on process state: the same test gave different "
                     "answers in different process states (a fresh process gave one of them "
                     "again when asked twice)",
    "nondeterministic": "nondeterministic: the same process state gave two different answers",
}


class StateDiagnosis(Diagnosis):
    """The cause a re-run gives a failure (an id of :data:`STATES`)."""

    @property
    def text(self) -> list[str]:
        return [STATES.get(i, i) for i in self.ids] + self.details


def rerun_mode(rerun: bool | str | None) -> str | None:
    """``rerun`` as a mode of :data:`RERUN_MODES`, or None (no re-run)."""
    if rerun is None or rerun is False:
        return None
    if rerun is True:
        return "sequence"
    if isinstance(rerun, str) and rerun in RERUN_MODES:
        return rerun
    raise ValueError(f"rerun must be True, False, 'sequence' or 'isolate'; got {rerun!r}")


def _group_items(docs: dict[str, dict[str, Any]], todo: dict[str, set[int]]
                 ) -> list[tuple[str, dict[str, Any]]]:
    """The groups ``todo`` in document order, as ``(file, group)``."""
    return [(f, docs[f]["testGroups"][n]) for f in docs for n in sorted(todo.get(f, ()))]


def _rerun_twice(adapter: Adapter, name: str, options: dict[str, Any],
                 docs: dict[str, dict[str, Any]], outputs: dict[str, Outputs],
                 todo: dict[str, set[int]], timeout: float, mode: str,
                 stop: threading.Event | None) -> tuple[dict[str, Outputs], dict[str, Outputs]]:
    """The re-run of the failing groups ``todo`` (``fresh``) and, when a group
    answered differently there, the same re-run once more (``again``): the
    same process state twice, which tells ``nondeterministic`` from
    ``process-state``."""
    if mode == "isolate":
        fresh = _rerun_isolated(adapter, name, options, docs, todo, timeout, stop)
    else:
        items = _group_items(docs, todo)[::-1]
        fresh = rerun_sequence(adapter, name, options, docs, items, timeout, stop)
    differ = {f: g for f, groups in todo.items()
              if (g := {n for n in groups if _group_differs(docs[f], n, outputs.get(f, {}),
                                                            fresh.get(f, {}))})}
    if not differ:
        return fresh, {}
    if mode == "isolate":
        again = _rerun_isolated(adapter, name, options, docs, differ, timeout, stop)
    else:  # the same sequence, up to its last group that differed: the same states
        last = max(k for k, (f, g) in enumerate(items)
                   if any(g is docs[f]["testGroups"][n] for n in differ.get(f, ())))
        again = rerun_sequence(adapter, name, options, docs, items[:last + 1], timeout, stop)
    return fresh, again


def rerun_sequence(adapter: Adapter | None, name: str, options: dict[str, Any],
                   docs: dict[str, dict[str, Any]], items: list[tuple[str, dict[str, Any]]],
                   timeout: float, stop: threading.Event | None = None) -> dict[str, Outputs]:
    """The groups ``items`` (``(file, group)``) evaluated in the order given
    by ONE fresh process: a child forked from the zygote of ``adapter`` (the
    ``fresh-sequence`` op), else a new process of the implementation (a
    ``cmd:`` program, or a worker without a zygote).  Empty when no fresh
    process could be started."""
    out: dict[str, Outputs] = {}
    if not items:
        return out
    if isinstance(adapter, SubprocessAdapter) and "fresh-sequence" in adapter.ops \
            and not adapter.broken:
        _check_stop(stop)
        got = adapter.evaluate_batch(
            [(group_params(g), [decode_number(t["step"]) for t in g["tests"]])
             for _, g in items], sequence=True)
        if got is not None:
            for (fname, group), res in zip(items, got, strict=True):
                _record(out.setdefault(fname, {}), group["tests"], res)
            return out
    try:
        other = get_adapter(name, isolated=True, timeout=timeout, **options)
    except Exception:  # noqa: BLE001 - no re-run: the verdicts stand, unexplained
        return out
    try:
        if getattr(other, "broken", None):
            return out
        got_all = _evaluate_items(other, list(docs), items, stop=stop)
        return {f: o for f, o in got_all.items() if o}
    finally:
        other.close()


def _rerun_isolated(adapter: Adapter, name: str, options: dict[str, Any],
                    docs: dict[str, dict[str, Any]], todo: dict[str, set[int]],
                    timeout: float, stop: threading.Event | None) -> dict[str, Outputs]:
    """Each group of ``todo`` evaluated in a fresh process of its own: a
    child forked from the zygote (``fresh-batch``), else fresh workers."""
    fresh: dict[str, Outputs] = {}
    if isinstance(adapter, SubprocessAdapter) and "fresh-batch" in adapter.ops \
            and not adapter.broken:
        fresh = evaluate_docs(adapter, docs, todo, fresh=True, stop=stop)
    missing = {f: {n for n in g if not _has_outputs(fresh.get(f), docs[f], n)}
               for f, g in todo.items()}
    if any(missing.values()):  # no zygote, or it failed: fresh workers
        # merged per test: the zygote's outputs for a file stay
        for f, o in _rerun_in_fresh_workers(name, options, docs, missing, timeout).items():
            fresh.setdefault(f, {}).update(o)
    return fresh


def _differs(a: tuple[Any, Any, Any, Any] | None, b: tuple[Any, Any, Any, Any] | None
             ) -> bool | None:
    """Whether two outputs of a test differ: another value (bit for bit; any
    NaN is the same NaN), an error against a value, ...; None when either
    is no answer (not run, or not evaluated)."""
    if a is None or b is None or a[3] is not None or b[3] is not None:
        return None
    if (a[2] is None) != (b[2] is None) or (a[1] is None) != (b[1] is None):
        return True
    if a[1] is not None or a[2] is not None:
        return False  # an error (or n/a) both times
    x, y = a[0], b[0]
    if x is None or y is None:
        return (x is None) != (y is None)
    if math.isnan(x) and math.isnan(y):
        return False
    return bool(np.float64(x).tobytes() != np.float64(y).tobytes())


def _group_differs(doc: dict[str, Any], number: int, first: Outputs, second: Outputs) -> bool:
    return any(_differs(first.get(t["tcId"]), second.get(t["tcId"]))
               for t in doc["testGroups"][number]["tests"])


def _shown(output: tuple[Any, Any, Any, Any]) -> str | None:
    value, error, na, crashed = output
    if crashed is not None:
        return None
    if error is not None:
        return f"error: {str(error)[:120]}"
    if na is not None:
        return f"not applicable: {str(na)[:120]}"
    return _hex(value) if value is not None else None


def _rerun_state(test: dict[str, Any], fmt: Format, profile: Order,
                 output: tuple[Any, Any, Any, Any], verdict: TestResult,
                 fresh: Outputs | None, again: Outputs | None) -> TestResult | None:
    """The verdict on a test whose answers differ between the passes (the
    first evaluation, the re-run ``fresh`` and its repetition ``again``),
    or None when they do not.  It fails when any pass gave a wrong answer
    (the wrong one is shown), labelled ``nondeterministic`` when the re-run
    and its repetition (the same process state) differ, else
    ``process-state``; ``state`` holds every output as evidence.  The label
    is the failure's cause unless the test was wrong in every pass."""
    tc = test["tcId"]
    second = fresh.get(tc) if fresh is not None else None
    third = again.get(tc) if again is not None else None
    d12, d23 = _differs(output, second), _differs(second, third)
    if d12 is None or (not d12 and not d23):  # no answer in a pass, or the same answers
        return None
    assert second is not None
    label = "nondeterministic" if d23 else "process-state"
    passes = [("first", output, verdict), ("re-run", second, _verdict(test, fmt, profile, second))]
    if third is not None and third[3] is None:
        passes.append(("re-run again", third, _verdict(test, fmt, profile, third)))
    wrong = next((v for _, _, v in passes if v.status == "fail"), None)
    if wrong is None:
        return None  # right every time (within the tolerance): nothing to report
    evidence = [{"pass": p, "observed": _shown(o), "status": v.status} for p, o, v in passes]
    # The label is the failure's cause when it explains it: the same state
    # gave two answers, or some state gave the right one.  Wrong in every
    # state, the failure keeps its own diagnosis (of the first wrong answer).
    why = label == "nondeterministic" or any(v.status == "pass" for _, _, v in passes)
    out = TestResult(wrong.tc_id, "fail", ulps=wrong.ulps, observed=wrong.observed,
                     expected=wrong.expected, detail=wrong.detail,
                     diagnosis=StateDiagnosis("proven", [label]) if why else wrong.diagnosis)
    out.state = {"state": label, "passes": evidence,
                 "freshObserved": _shown(second) if second[1] is None else None,
                 "freshError": second[1]}
    return out


def _rerun_in_fresh_workers(name: str, options: dict[str, Any],
                            docs: dict[str, dict[str, Any]], todo: dict[str, set[int]],
                            timeout: float) -> dict[str, Outputs]:
    """The groups ``todo`` evaluated by a fresh worker (:func:`get_adapter`
    with ``fresh=True``: a child per request, or a new process for ``cmd:``)."""
    todo = {f: g for f, g in todo.items() if g}
    try:
        adapter = get_adapter(name, timeout=timeout, fresh=True, **options)
    except Exception:  # noqa: BLE001 - no re-run: the first verdicts stand
        return {}
    try:
        if getattr(adapter, "broken", None):
            return {}
        return {f: evaluate_file(adapter, docs[f], groups) for f, groups in todo.items()}
    finally:
        adapter.close()


def rerun_failing(name: str, options: dict[str, Any], docs: dict[str, dict[str, Any]],
                  outputs: dict[str, Outputs], profiles: tuple[Order, ...], timeout: float,
                  progress: Callable[[str], object] | None = None, shown: str = ""
                  ) -> dict[str, Outputs]:
    """The outputs of every group with a failing test, each group evaluated
    in a fresh process state of its own (the ``isolate`` re-run of a
    worker without a zygote; empty when nothing failed, or when no fresh
    worker could be started)."""
    todo = {f: g for f in docs if (g := failing_groups(docs[f], outputs[f], profiles))}
    if not todo:
        return {}
    if progress:
        progress(f"  {shown}: re-running {sum(map(len, todo.values()))} failing groups, "
                 "each in a fresh process")
    return _rerun_in_fresh_workers(name, options, docs, todo, timeout)


def markdown_table(reports: list[ImplementationReport]) -> str:
    """The conformance table as Markdown: one row per implementation and
    profile, with every failure class (cause ids, ``spec/conformance.md``
    §7) and its count."""
    lines = ["| implementation | version | steps | profile | passed | failed | not run | "
             "process state | n/a | failure classes (count) |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in reports:
        classes = "; ".join(f"{k} ({v})" for k, v in r.classes.most_common()) or "-"
        if r.unavailable:
            classes = f"unavailable: {r.error}"
        steps = "array" if r.vectorised else "scalar"
        state = str(r.process_state) + (f" (+{r.nondeterministic} nondeterministic)"
                                        if r.nondeterministic else "")
        lines.append(f"| {r.name} | {r.version} | {steps} | {r.profile} | {r.passed} | "
                     f"{r.failed} | {r.not_run} | {state} | {r.na} | {classes} |")
    return "\n".join(lines) + "\n"


def vector_paths(items: list[str] | None) -> list[Path]:
    """Files named, or the ``*.json`` of directories named (sorted).
    ``ValueError`` naming ``vectors`` (the argument of
    :func:`expdecay.testing.assert_conforms`) for a missing path."""
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
            raise ValueError(f"vectors: no such file or directory: {it}")
    if not out:
        raise ValueError(f"vectors: no .json files in {', '.join(items)}")
    return out


def check_name(name: str, timeout: float = 60.0) -> str:
    """``ValueError`` (:class:`ImplementationLookupError`, its message naming
    ``impl``, the argument of :func:`expdecay.testing.assert_conforms`)
    unless ``name`` names an implementation.  A ``python:`` module is imported in a throwaway
    worker process, never in the runner's (it may even ``sys.exit`` at import)."""
    from .adapters.registry import IMPLEMENTATIONS

    ok = name in IMPLEMENTATIONS or (name.startswith("cmd:") and name[4:].strip()) or (
        name.startswith("python:") and ":" in name[7:])
    if not ok:
        raise ImplementationLookupError(
            f"impl must be one of {', '.join(IMPLEMENTATIONS)}, "
            f"python:module:function or cmd:COMMAND; got {name[:80]!r}")
    if name.startswith("cmd:"):
        try:
            argv = shlex.split(name[4:])
        except ValueError as e:
            raise ImplementationLookupError(f"impl {name[:80]!r}: {e}") from None
        if not argv:
            raise ImplementationLookupError(f"impl {name[:80]!r}: no program")
        if shutil.which(argv[0]) is None:
            raise ImplementationLookupError(
                f"impl {name[:80]!r}: no executable program {argv[0]!r}")
    elif name.startswith("python:"):
        try:
            check_loadable(name, timeout=timeout)
        except ImplementationLookupError as e:
            raise ImplementationLookupError(f"impl {e}") from None
    return name


def check_output_path(path: str | os.PathLike[str], argument: str) -> Path:
    """``path`` as a :class:`~pathlib.Path` when a file can be written there
    (as :func:`expdecay.fileio.atomic_write` writes one: its missing
    directories created, a temporary file in its directory renamed over
    it), else ``ValueError`` naming ``argument`` and the path as given.
    Called before a run, so that a report that cannot be written is refused
    before the work it reports is done."""
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError(f"{argument} must name a file; got {text!r}")
    target = Path(text)
    if target.is_symlink():
        target = target.resolve()
    if target.is_dir():
        raise ValueError(f"{argument}: {text!r} is a directory")
    # The directories missing are created by the write: probe the nearest
    # one that exists (it must be a directory where files can be created).
    parent = target.parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{argument}: cannot write {text!r}: {str(parent)!r} is not a "
                         "directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name[:100]}.", suffix=".probe",
                                     dir=parent)
    except OSError as e:
        raise ValueError(f"{argument}: cannot write {text!r}: "
                         f"{e.strerror or type(e).__name__}") from None
    os.close(fd)
    os.unlink(probe)
    return Path(text)

