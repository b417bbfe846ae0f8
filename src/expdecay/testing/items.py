"""The items of the pytest plugin: every conformance vector becomes a pytest item.

This module is loaded and registered by :mod:`expdecay.testing.plugin` only
when ``--expdecay-impl`` is given.

::

    pytest --expdecay-impl "cmd:./my_port" [--expdecay-profile keras]
           [--expdecay-vectors=PATH ...] [--expdecay-timeout SECONDS]

``--expdecay-impl`` takes any name ``expdecay check --impl`` accepts
(``cmd:COMMAND``, ``python:module:function``, ``optax``, ...).  Each test of
each vector file is an item whose id is the file's stem and the test's id,
``boundaries::tc64``, so failures show up in the usual report, in ``-k``
selection (flags and dtypes are keywords too: ``-k "Misfloor and float32"``),
``--lf`` and ``--junitxml`` (classname ``boundaries``, name ``tc64``), each
with the readable text of :func:`expdecay.testing.conformance.describe_failure`.
Tests the implementation cannot express are skipped with the reason.

``--expdecay-vectors`` takes one or more paths and may be repeated.  Prefer
the ``--expdecay-vectors=PATH`` spelling: pytest chooses its rootdir (and
so its ini file) before plugins add their options, from every argument that
names an existing path, a plugin option's value included.

Design.

* Inactive unless ``--expdecay-impl`` is given: without it the plugin
  registers its options and nothing else happens (no items, no header, no
  implementation started), so a test suite that loads it through the
  ``pytest11`` entry point is unchanged.
* Items are collected by pytest's own collection, so that selection and
  deselection (``-k``, ``-m``, ``--deselect``, ``--lf``) and every
  ``pytest_collection_modifyitems`` hook see them: a wrapper around
  ``pytest_make_collect_report`` adds one :class:`VectorFile` collector per
  vector file to the session's own collection report (the session is a
  collector like any other; the wrapper touches no other node).  A
  :class:`VectorFile` reads and schema-checks its file when it is collected,
  and decodes every test's inputs and expected values (a hex float and bit
  pattern that disagree, say); a bad file is a collection error of that
  node alone, not one failing item per test.
* Evaluation is per file, once per session: the first item of a file to run
  evaluates the whole file (one call per test group, as ``expdecay check``
  does, through :func:`expdecay.testing.conformance.evaluate_document`), and
  every item looks up its own verdict, so the plugin costs what
  ``expdecay check`` costs, and a file whose items are all deselected is
  never evaluated.  One implementation (one worker process for names other
  than ``expdecay``) serves the session and is closed at its end.
* Verdicts are the conformance runner's (pass rules of ``spec/conformance.md``);
  nothing here judges a test.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from ..conformance.adapters import Adapter
from ..conformance.adapters.codec import MAX_TIMEOUT
from ..conformance.runner import PROFILES, check_name, group_params
from ..conformance.vectors import (
    VectorFileError,
    decode_number,
    decode_result,
    iter_tests,
    load_vector_file,
)
from ..errors import ExpdecayError
from ..floats import get_format
from ..orders import Order
from .conformance import (
    FileResult,
    close_adapter,
    evaluate_document,
    open_implementation,
    vector_files,
)

__all__ = ["VectorFile", "VectorItem", "ConformanceError", "EvaluationError", "activate"]


class ConformanceError(ExpdecayError, AssertionError):
    """A vector test failed; the message is the readable failure text."""


class EvaluationError(ExpdecayError, RuntimeError):
    """A vector file could not be evaluated (the implementation could not be
    started, or the evaluation itself failed); each of its items reports why."""


class _Run:
    """The session's implementation and the verdicts of the files evaluated."""

    def __init__(self, impl: str, profile: Order, files: list[tuple[str, Path]],
                 timeout: float) -> None:
        self.impl = impl
        self.profile = profile
        self.files = files
        self.timeout = timeout
        self._adapter: Adapter | None = None
        self._adapter_error: str | None = None
        self._results: dict[str, FileResult | str] = {}

    def adapter(self) -> Adapter:
        if self._adapter_error is not None:
            raise EvaluationError(self._adapter_error)
        if self._adapter is None:
            try:
                self._adapter = open_implementation(self.impl, self.profile,
                                                    timeout=self.timeout)
            except Exception as e:  # noqa: BLE001 - reported by every item
                self._adapter_error = f"cannot run {self.impl}: {type(e).__name__}: {e}"
                raise EvaluationError(self._adapter_error) from None
        return self._adapter

    def result(self, name: str, doc: dict[str, Any]) -> FileResult:
        """The file's verdicts, evaluated on first use; a failure to evaluate
        is kept too, so that the file's other items report it at no cost."""
        got = self._results.get(name)
        if got is None:
            try:
                got = evaluate_document(self.adapter(), name, doc, self.profile)
            except EvaluationError as e:
                got = str(e)
            except Exception as e:  # noqa: BLE001 - every item of the file reports it
                got = f"evaluating {name} failed: {type(e).__name__}: {e}"
            self._results[name] = got
        if isinstance(got, str):
            raise EvaluationError(got)
        return got

    def close(self) -> None:
        if self._adapter is not None:
            close_adapter(self._adapter)
            self._adapter = None


_RUN = pytest.StashKey[_Run]()


def activate(config: pytest.Config, impl: str) -> None:
    """Check the plugin's options and set up the session's run (called by
    :mod:`expdecay.testing.plugin` when ``--expdecay-impl`` is given, before
    this module is registered as a plugin for its hooks)."""
    vectors = config.getoption("expdecay_vectors", None)
    timeout = float(config.getoption("expdecay_timeout"))
    if not 0 < timeout <= MAX_TIMEOUT:
        raise pytest.UsageError(f"--expdecay-timeout must be > 0 and at most {MAX_TIMEOUT:g}; "
                                f"got {timeout:g}")
    try:
        check_name(impl, timeout)
    except ValueError as e:  # the library names its argument impl: say the option
        why = str(e)
        shown = ("--expdecay-impl" + why.removeprefix("impl") if why.startswith("impl ")
                 else f"--expdecay-impl: {why}")
        raise pytest.UsageError(shown) from None
    try:
        files = vector_files(vectors)
    except ValueError as e:
        why = str(e).removeprefix("--vectors: ").removeprefix("vectors: ")
        raise pytest.UsageError(f"--expdecay-vectors: {why}") from None
    run = _Run(impl, config.getoption("expdecay_profile"), files, timeout)
    config.stash[_RUN] = run
    config.add_cleanup(run.close)


def pytest_report_header(config: pytest.Config) -> str | None:
    run = config.stash.get(_RUN, None)
    if run is None:
        return None
    return (f"expdecay: conformance vectors ({len(run.files)} files) against {run.impl}, "
            f"{run.profile} profile")


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
        collector: pytest.Collector) -> Generator[None, pytest.CollectReport,
                                                  pytest.CollectReport]:
    report = yield
    run = collector.config.stash.get(_RUN, None)
    if run is not None and isinstance(collector, pytest.Session) and report.passed:
        assert isinstance(report.result, list)
        # The node id is the bare stem (as a file's would be its path), so that
        # items are "boundaries::tc64", not "::boundaries::tc64".
        report.result.extend(VectorFile.from_parent(collector, name=name, path=path, nodeid=name)
                             for name, path in run.files)
    return report


class VectorFile(pytest.Collector):
    """The tests of one vector file (node id: the file's stem)."""

    doc: dict[str, Any]

    def collect(self) -> list[pytest.Item]:
        self.doc = load_vector_file(self.path)
        check_expectations(self.doc, self.path)
        items: list[pytest.Item] = []
        for group, test in iter_tests(self.doc):
            item = VectorItem.from_parent(self, name=f"tc{test['tcId']}",
                                          tc_id=int(test["tcId"]))
            item.extra_keyword_matches.update([group["dtype"], *test["flags"]])
            items.append(item)
        return items

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        if isinstance(excinfo.value, VectorFileError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def result(self) -> FileResult:
        return self.config.stash[_RUN].result(self.name, self.doc)


def check_expectations(doc: dict[str, Any], path: Path) -> None:
    """:class:`VectorFileError` unless every test's inputs and expected
    values decode (a hex float and bit pattern that disagree, say): the
    file is then one collection error, not one failing item per test."""
    for group, test in iter_tests(doc):
        where = f"tcId {test.get('tcId')}"
        try:
            fmt = get_format(group["dtype"])
            group_params(group)
            decode_number(test["step"])
            for profile in PROFILES:
                if profile in test:
                    decode_result(test[profile], fmt, f"expected value of the {profile} profile")
        except (ValueError, TypeError, KeyError) as e:
            raise VectorFileError(f"{path}: {where}: {e}"[:500]) from None


class VectorItem(pytest.Item):
    """One test of a vector file (node id ``<stem>::tc<tcId>``)."""

    def __init__(self, *, tc_id: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tc_id = tc_id

    def runtest(self) -> None:
        parent = self.parent
        assert isinstance(parent, VectorFile)
        verdict = parent.result().verdicts.get(self.tc_id)
        if verdict is None:  # pragma: no cover - every test has a verdict
            raise ConformanceError(f"{self.nodeid}: no verdict")
        if verdict.status == "na":
            pytest.skip(f"not applicable: {verdict.message}")
        if verdict.status == "fail":
            raise ConformanceError(verdict.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        if isinstance(excinfo.value, (ConformanceError, EvaluationError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        assert self.parent is not None
        return self.path, None, f"{self.parent.name}::{self.name}"
