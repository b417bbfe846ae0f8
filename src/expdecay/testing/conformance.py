"""``assert_conforms``: the conformance vectors as one assertion.

Another project's test suite checks its implementation of the schedule with
one call::

    from expdecay.testing import assert_conforms

    def test_schedule_conforms():
        assert_conforms(my_schedule, profile="keras")

``impl`` is a Python callable with the signature of the ``python:`` adapter
(``fn(initial_learning_rate, decay_steps, decay_rate, steps, *, staircase,
dtype)``, see :mod:`expdecay.conformance.adapters.python`), or any name
``expdecay check --impl`` accepts: ``expdecay``, ``keras``, ``tf-keras``,
``optax``, ``torch``, ``python:module:function`` or ``cmd:COMMAND``.

Design.  Nothing here judges a test: the verdicts are the conformance
runner's own (:func:`expdecay.conformance.runner.evaluate_file` runs a file
one test group per call, :func:`~expdecay.conformance.runner.summarise`
judges it and diagnoses the failures), so ``assert_conforms``, the pytest
plugin (:mod:`expdecay.testing.plugin`) and ``expdecay check`` cannot
disagree.  A callable is wrapped in the ``python:`` adapter's class
(:class:`~expdecay.conformance.adapters.python.PythonAdapter`) with the
function object in place of an imported name, and runs in this process; a
name is resolved by :func:`~expdecay.conformance.adapters.get_adapter`
exactly as the runner does (frameworks, ``python:`` modules and ``cmd:``
programs in a worker process; the ``expdecay`` reference in process, with the
profile's order).

This module adds the parts a test suite needs on top of the runner: a
per-test verdict with a readable message (:func:`evaluate_document`, which
the plugin uses for its items), the failure table of the assertion, and the
rule against false passes: a run passes only if at least one test passed by
returning a value.  A run where every test was not applicable, or where the
implementation crashed on every call (its errors then "pass" the ``invalid``
tests), raises ``AssertionError`` like a failure.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..conformance.adapters import Adapter, get_adapter
from ..conformance.adapters.base import exact_outputs
from ..conformance.adapters.python import PythonAdapter
from ..conformance.runner import (
    PROFILES,
    FileSummary,
    check_name,
    evaluate_file,
    summarise,
    vector_paths,
)
from ..conformance.vectors import iter_tests, load_vector_file
from ..orders import Order, check_order

__all__ = [
    "DTYPES",
    "PROFILES",
    "ConformanceSummary",
    "FileCounts",
    "Verdict",
    "FileResult",
    "assert_conforms",
    "open_implementation",
    "close_adapter",
    "load_documents",
    "vector_files",
    "evaluate_document",
    "exact_outputs",
    "check_profile",
    "check_dtypes",
    "describe_failure",
    "failure_table",
]

#: The formats a vector group can name, in the order reports list them.
DTYPES = ("float16", "bfloat16", "float32", "float64")


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileCounts:
    """Counts of one vector file (``file`` is its stem, e.g. ``boundaries``)."""

    file: str
    passed: int
    failed: int
    not_applicable: int
    within_tolerance: int
    max_ulps: float


@dataclass(frozen=True)
class ConformanceSummary:
    """What :func:`assert_conforms` checked, returned when everything passed.

    ``passed`` counts every passing test, ``checked`` only those that passed
    by returning a value (the others passed by raising an error where one
    was expected or allowed); ``within_tolerance`` counts the passes that were
    not bit-identical (the keras profile allows 2 ulps where ``pow`` is
    inexact).  ``dtypes`` are the formats whose tests were run.
    """

    implementation: str
    version: str
    profile: Order
    dtypes: tuple[str, ...]
    passed: int
    failed: int
    not_applicable: int
    within_tolerance: int
    checked: int
    files: tuple[FileCounts, ...]

    @property
    def total(self) -> int:
        """Every test run: passed, failed and not applicable."""
        return self.passed + self.failed + self.not_applicable


@dataclass(frozen=True)
class Verdict:
    """The verdict on one test: ``status`` is ``"pass"``, ``"fail"`` or
    ``"na"``; ``message`` the failure text or the reason it is not applicable."""

    status: str
    message: str = ""


@dataclass(frozen=True)
class FileResult:
    """One vector file run under one profile: the runner's summary, a
    verdict per ``tcId`` and the number of passes by a returned value."""

    name: str
    summary: FileSummary
    verdicts: Mapping[int, Verdict]
    checked: int

    def counts(self) -> FileCounts:
        s = self.summary
        return FileCounts(self.name, s.passed, s.failed, s.na, s.within_tolerance, s.max_ulps)


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def check_profile(profile: Any) -> Order:
    """``profile`` as the order it is named after (:func:`expdecay.orders.check_order`,
    naming the argument ``profile``)."""
    return check_order(profile, "profile")


def check_dtypes(dtypes: Iterable[str] | str | None) -> tuple[str, ...]:
    """The formats selected by ``dtypes`` (``None``: all; a string: that one),
    in :data:`DTYPES` order; ``ValueError`` for anything else."""
    if dtypes is None:
        return DTYPES
    if isinstance(dtypes, str):
        dtypes = [dtypes]
    try:
        chosen = list(dtypes)
    except TypeError:
        raise ValueError(f"dtypes must be None or a subset of {', '.join(DTYPES)}; "
                         f"got {dtypes!r}") from None
    for d in chosen:
        if not isinstance(d, str) or d not in DTYPES:
            raise ValueError(f"dtypes must be a subset of {', '.join(DTYPES)}; "
                             f"got {d!r} in dtypes={dtypes!r}")
    if not chosen:
        raise ValueError("dtypes must name at least one format; got an empty collection")
    return tuple(d for d in DTYPES if d in chosen)


def load_documents(vectors: Sequence[str | Path] | str | Path | None = None,
                   dtypes: Iterable[str] | str | None = None) -> dict[str, dict[str, Any]]:
    """The vector files (``None``: the default directory), keyed by stem,
    their test groups restricted to ``dtypes``.

    Paths may name files or directories (their ``*.json``).  An unreadable
    or invalid file raises :class:`~expdecay.conformance.vectors.VectorFileError`
    (a ``ValueError``); two files with the same stem are told apart by a
    ``-2``, ``-3``... suffix.
    """
    chosen = set(check_dtypes(dtypes))
    docs: dict[str, dict[str, Any]] = {}
    for name, path in vector_files(vectors):
        doc = load_vector_file(path)
        groups = [g for g in doc["testGroups"] if g["dtype"] in chosen]
        docs[name] = {**doc, "testGroups": groups}
    return docs


def vector_files(vectors: Sequence[str | Path] | str | Path | None = None
                 ) -> list[tuple[str, Path]]:
    """``(name, path)`` of every vector file named by ``vectors`` (files or
    directories; ``None``: the default set).  The name is the file's stem,
    with a ``-2``, ``-3``... suffix for a stem seen before; ``ValueError``
    for a path that does not exist or a directory without ``*.json``."""
    if isinstance(vectors, (str, Path)):
        vectors = [vectors]
    if vectors is not None and any(isinstance(p, str) and not p.strip() for p in vectors):
        raise ValueError(f"vectors: an empty path names no file (the current directory is "
                         f"not a default); got {list(vectors)!r}")
    paths = vector_paths([str(p) for p in vectors] if vectors is not None else None)
    out: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for path in paths:
        name, n = path.stem, 1
        while name in seen:
            n += 1
            name = f"{path.stem}-{n}"
        seen.add(name)
        out.append((name, path))
    return out


# ---------------------------------------------------------------------------
# Implementations
# ---------------------------------------------------------------------------


class _CallableAdapter(PythonAdapter):
    """The ``python:`` adapter around a function object instead of a name.

    ``PythonAdapter.__init__`` imports its target by name; a callable needs
    no import, so only the attributes its evaluation uses are set.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        module = str(getattr(fn, "__module__", None) or "")
        qualname = str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)
        self.name = f"python:{module}:{qualname}" if module else f"python:{qualname}"
        top = sys.modules.get(module.partition(".")[0]) if module else None
        self.version = str(getattr(top, "__version__", "unversioned"))


def open_implementation(impl: Callable[..., Any] | str, profile: Order, *,
                        options: Mapping[str, Any] | None = None,
                        timeout: float = 60.0) -> Adapter:
    """The adapter that runs ``impl`` under ``profile``.

    A callable runs in this process (no timeout, no isolation: name it as
    ``python:module:function`` to run it in a worker).  A name goes through
    :func:`~expdecay.conformance.adapters.get_adapter` as ``expdecay check``
    does: ``expdecay`` in process with ``order=profile``, everything else in
    a worker process.  An unknown name, a ``cmd:`` program that cannot be
    found or a ``python:`` target that cannot be loaded raises
    :class:`~expdecay.conformance.adapters.ImplementationLookupError`
    (a ``ValueError``).  The caller closes the adapter (``close()``, if any).
    """
    check_profile(profile)
    if not isinstance(impl, str):
        if not callable(impl):
            raise TypeError(f"impl must be a callable or an implementation name; got {impl!r}")
        if options:
            raise ValueError(f"options apply to named implementations only; got {options!r}")
        return _CallableAdapter(impl)
    opts = dict(options or {})
    if not impl.startswith("python:"):
        check_name(impl, timeout)  # a python: target is checked by its own worker below
    if impl == "expdecay":
        opts.setdefault("order", profile)
        return get_adapter(impl, isolated=False, timeout=timeout, **opts)
    return get_adapter(impl, isolated=True, timeout=timeout, **opts)


def close_adapter(adapter: Adapter) -> None:
    """End an adapter's worker process, if it has one."""
    close = getattr(adapter, "close", None)
    if close is not None:
        close()


# ---------------------------------------------------------------------------
# Running and judging
# ---------------------------------------------------------------------------


def evaluate_document(adapter: Adapter, name: str, doc: dict[str, Any],
                      profile: Order) -> FileResult:
    """Run every test of ``doc`` (one call per test group) and judge it under
    ``profile``; failures carry :func:`describe_failure`'s text."""
    outputs = evaluate_file(adapter, doc)
    summary = summarise(name, doc, outputs, profile)
    failures = {int(e["tcId"]): e for e in summary.failures}
    verdicts: dict[int, Verdict] = {}
    checked = 0
    for _group, test in iter_tests(doc):
        tc = int(test["tcId"])
        _value, error, na, crashed = outputs.get(tc, (None, None, None, "no output"))
        if crashed is not None and na is None:  # no answer: never a pass
            verdicts[tc] = Verdict("fail", f"{name}::tc{tc} was not run (no answer from the "
                                           f"implementation: {crashed})")
        elif tc in failures:
            verdicts[tc] = Verdict("fail", describe_failure(f"{name}::tc{tc}", failures[tc],
                                                            profile))
        elif na is not None:
            verdicts[tc] = Verdict("na", str(na))
        else:
            verdicts[tc] = Verdict("pass")
            checked += error is None
    return FileResult(name, summary, verdicts, checked)


def _staircase_cell(x: Any) -> str:
    """``yes``/``no`` for a bool, else the value as given (an invalid test)."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    return json.dumps(x)


def _ulps(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return "inf" if math.isinf(x) else f"{x:g}"


def _causes(entry: Mapping[str, Any]) -> str:
    text = "; ".join(entry.get("causes") or ["unexplained"])
    ids = entry.get("causeIds")
    return f"[{'+'.join(ids)}] {text}" if ids else text


def describe_failure(test_id: str, entry: Mapping[str, Any], profile: Order) -> str:
    """A failure of the runner's report (``FileSummary.failures``) as text:
    the test, its inputs, the expected and observed hex, ulps and cause."""
    i = entry["inputs"]
    lines = [
        f"{test_id} fails the {profile} profile",
        f"  inputs:   dtype={i['dtype']} staircase={i['staircase']} "
        f"initial_learning_rate={i['initial_learning_rate']} decay_steps={i['decay_steps']} "
        f"decay_rate={i['decay_rate']} step={i['step']}",
        f"  expected: {entry['expected']}",
        f"  observed: {entry['observed'] if entry['observed'] is not None else 'an error'}"
        + (f" ({_ulps(entry['ulps'])} ulp{'' if entry['ulps'] == 1 else 's'})"
           if entry.get("ulps") is not None else ""),
        f"  cause:    {_causes(entry)}",
    ]
    if entry.get("error"):
        lines.append(f"  error:    {entry['error']}")
    if entry.get("flags"):
        lines.append(f"  flags:    {', '.join(entry['flags'])}")
    return "\n".join(lines)


_COLUMNS = ("test", "dtype", "staircase", "initial_lr", "decay_steps", "decay_rate", "step",
            "expected", "observed", "ulps", "cause")


def failure_table(failures: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """``(test id, failure entry)`` pairs as an aligned text table."""
    rows = [list(_COLUMNS)]
    for test_id, e in failures:
        i = e["inputs"]
        rows.append([test_id, i["dtype"], _staircase_cell(i["staircase"]),
                     i["initial_learning_rate"], i["decay_steps"], i["decay_rate"], i["step"],
                     str(e["expected"]), "error" if e["observed"] is None else str(e["observed"]),
                     _ulps(e.get("ulps")), _causes(e)])
    widths = [max(len(r[k]) for r in rows) for k in range(len(_COLUMNS) - 1)]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=False)]
        lines.append("  " + "  ".join([*cells, r[-1]]).rstrip())
    return "\n".join(lines)


def _file_lines(results: Sequence[FileResult]) -> list[str]:
    width = max([len(r.name) for r in results] + [4])
    out = []
    for r in results:
        s = r.summary
        line = (f"  {r.name:<{width}}  passed {s.passed:5d}  failed {s.failed:5d}  "
                f"n/a {s.na:5d}  max ulp {_ulps(s.max_ulps)}")
        out.append(line)
    return out


def _verdict_message(label: str, version: str, profile: Order, results: Sequence[FileResult],
                     dtypes: tuple[str, ...], show: int, broken: str | None) -> str | None:
    """The assertion message, or ``None`` when the run passes."""
    passed = sum(r.summary.passed for r in results)
    failed = sum(r.summary.failed for r in results)
    na = sum(r.summary.na for r in results)
    not_run = sum(r.summary.not_run for r in results)
    checked = sum(r.checked for r in results)
    if failed == 0 and not_run == 0 and checked > 0 and broken is None:
        return None
    which = "all dtypes" if dtypes == DTYPES else "dtypes " + ", ".join(dtypes)
    head = [f"{label} ({version}) does not conform to the {profile} profile",
            f"  {passed} passed, {failed} failed, {na} not applicable "
            f"in {len(results)} vector files ({which})"]
    if not_run:
        first = next(e for r in results for e in r.summary.not_run_tests)
        head.append(f"  {not_run} without a usable answer (never passed), first tcId "
                    f"{first['tcId']}: {first['reason'][:200]}")
    if broken is not None:
        head.append(f"  the implementation could not run: {broken}")
    if checked == 0:
        head.append(f"  nothing was checked: no test passed by returning a value "
                    f"({passed} passed by raising an error, {na} not applicable)")
    head += ["per file:", *_file_lines(results)]
    fails = [(f"{r.name}::tc{e['tcId']}", e) for r in results for e in r.summary.failures]
    if fails and show > 0:
        shown = fails[:show]
        head.append(f"first {len(shown)} of {len(fails)} failures:")
        head.append(failure_table(shown))
    return "\n".join(head)


def assert_conforms(impl: Callable[..., Any] | str, *, profile: Order = "keras",
                    vectors: Sequence[str | Path] | str | Path | None = None,
                    dtypes: Iterable[str] | str | None = None, show: int = 10,
                    options: Mapping[str, Any] | None = None,
                    timeout: float = 60.0) -> ConformanceSummary:
    """Run the conformance vectors against ``impl``; raise ``AssertionError``
    unless every applicable test passes.

    * ``impl``: a callable ``fn(I, D, r, steps, *, staircase, dtype)``
      (the ``python:`` adapter's signature: ``steps`` an int64 or float64
      array, ``dtype`` a format name; return the outputs, raise to reject
      the input, return ``NotImplemented`` when the case cannot be
      expressed), or a name ``expdecay check --impl`` accepts
      (``"optax"``, ``"python:pkg.mod:fn"``, ``"cmd:./my_port"``, ...).
    * ``profile``: ``"keras"`` (Keras's order of operations, 2 ulps where
      ``pow`` is inexact) or ``"exact"`` (the correctly rounded value).
    * ``vectors``: vector files or directories; ``None``: the default set.
    * ``dtypes``: the formats to run (a subset of ``float16``, ``bfloat16``,
      ``float32``, ``float64``); ``None``: all.
    * ``show``: how many failures the message lists.
    * ``options``: adapter options of a named implementation
      (e.g. ``{"x64": True}`` for optax); ``timeout``: seconds per request
      of a worker process.

    Only an output that is exactly a real number a float64 holds is judged
    (then, as every output, it must be a value of the test's format): a
    complex number, even with a zero imaginary part, a string, a bool, an
    integer or ``Fraction`` that a float64 does not hold exactly, is a test
    without a usable answer, never passed (:func:`exact_outputs`).

    The message has the totals, the counts per file and a table of the
    first ``show`` failures (inputs, expected and observed hex, ulps and the
    diagnosed cause).  A run in which no test passed by returning a value
    (everything not applicable, or every call failed) raises too.  On
    success the counts are returned as a :class:`ConformanceSummary`.
    """
    check_profile(profile)
    chosen = check_dtypes(dtypes)
    if isinstance(show, bool) or not isinstance(show, int) or show < 0:
        raise ValueError(f"show must be an int >= 0; got {show!r}")
    if not isinstance(impl, str) and not callable(impl):
        raise TypeError(f"impl must be a callable or an implementation name; got {impl!r}")
    if isinstance(impl, str) and not impl.startswith("python:"):
        check_name(impl, timeout)  # a bad name fails before the vectors are read
    docs = load_documents(vectors, chosen)
    adapter = open_implementation(impl, profile, options=options, timeout=timeout)
    try:
        results = [evaluate_document(adapter, name, doc, profile) for name, doc in docs.items()]
    finally:
        close_adapter(adapter)
    label = str(getattr(adapter, "name", impl))
    if isinstance(impl, str) and impl.startswith("cmd:"):
        label = f"{impl} ({label})" if label != impl else impl
    version = str(getattr(adapter, "version", "unknown"))
    broken = getattr(adapter, "broken", None)
    message = _verdict_message(label, version, profile, results, chosen, show, broken)
    if message is not None:
        raise AssertionError(message)
    return ConformanceSummary(
        implementation=label, version=version, profile=profile, dtypes=chosen,
        passed=sum(r.summary.passed for r in results),
        failed=0,
        not_applicable=sum(r.summary.na for r in results),
        within_tolerance=sum(r.summary.within_tolerance for r in results),
        checked=sum(r.checked for r in results),
        files=tuple(r.counts() for r in results),
    )
