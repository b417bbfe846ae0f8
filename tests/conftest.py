"""Shared test configuration: options, tiers, markers and Hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

#: The tests folder (``EXTENDED`` is relative to it).
TESTS = Path(__file__).resolve().parent

settings.register_profile(
    "default",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


#: The tiers of the suite (tests/README.md): each test belongs to exactly one.
TIERS = ("core", "extended", "slow")


#: The extended tier: node ids relative to ``tests/`` (a file, or a test of a file with
#: all its parameters). These are the checks that take most of the suite's time: whole
#: conformance runs against the mutants through workers, machine code compiled for every
#: named CPU, bit identity across CPU targets in children, pytest run in children.
EXTENDED = (
    # fast: every kernel compiled for five CPUs; children per CPU target; long random runs
    "fast/test_kernels_machine_code.py",
    "fast/test_fast_reproducible.py",
    "fast/test_kernels_f64_broadcast.py::test_small_formats_keras_random_schedules",
    "fast/test_kernels.py::test_broadcast_kernels_vs_arb",
    # conformance: the runner end to end, through workers and fresh processes
    "conformance/test_conformance_mutants.py",
    "conformance/test_causes.py",
    "conformance/test_verdicts.py",
    "conformance/test_runner_speed.py",
    "conformance/test_runner_robustness.py",
    "conformance/test_runner_lifecycle.py",
    "conformance/test_hub.py",
    "conformance/test_campaign.py",
    "conformance/test_conformance.py::test_isolation",
    "conformance/test_conformance.py::test_c_example_counts_match_an_independent_derivation",
    # analysis: long ranges, searches and interrupted drawing in children
    "analysis/test_analysis.py::test_default_budgets_bound_a_huge_range",
    "analysis/test_analysis.py::test_cli_search_writes_valid_vectors",
    "analysis/test_analysis.py::test_killed_while_drawing_keeps_previous_files",
    "analysis/test_analyze_exhaustive.py::test_exhaustive_float32_takes_the_fused_route",
    "analysis/test_scaleout.py::test_grid_same_everywhere",
    "analysis/test_misfloor.py::test_exhaustive_int32_range_float32_d1000",
    # testing API: pytest itself run in children on the plugin
    "testing_api/test_testing_plugin.py",
    "testing_api/test_testing_strategies.py::test_invalid_schedules_cover_the_documented_kinds",
    "testing_api/test_testing_strategies.py::test_shrinks_to_readable_values",
    # package: the wheel built and installed in a venv (.ci/run also checks the wheel)
    "package/test_packaging.py::test_wheel_carries_vectors_schema_and_licence",
    "package/test_packaging.py::test_installed_package_runs_its_main_job_from_anywhere",
    "analysis/test_analyze_exhaustive.py::test_without_numba_same_bits",
)


def tier_of(item: pytest.Item) -> str:
    """The tier of a collected test: ``slow`` by its marker, ``extended`` by its
    marker or by :data:`EXTENDED`, else ``core``."""
    if item.get_closest_marker("slow") is not None:
        return "slow"
    if item.get_closest_marker("extended") is not None:
        return "extended"
    path = Path(str(item.path))
    if TESTS in path.parents:
        node = f"{path.relative_to(TESTS).as_posix()}::{item.name.partition('[')[0]}"
        if any(node == entry or node.startswith(f"{entry}::") for entry in EXTENDED):
            return "extended"
    return "core"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--arb-cases", type=int, default=2000,
                     help="random cases compared with the Arb oracle (default 2000)")
    parser.addoption("--near-one-cases", type=int, default=4000,
                     help="near-1 decay-rate cases compared with the Arb oracle (default 4000)")
    parser.addoption("--tier", action="append", choices=(*TIERS, "all"), default=None,
                     help="which tier of tests to run: core (the default), extended, slow or "
                          "all; may be repeated (tests/README.md)")


def selected_tiers(config: pytest.Config) -> set[str]:
    chosen = config.getoption("--tier") or ["core"]
    return set(TIERS) if "all" in chosen else set(chosen)


#: Tests collected but left out, per tier (for the closing summary line).
NOT_RUN = pytest.StashKey[dict[str, int]]()


def pytest_report_header(config: pytest.Config) -> str:
    tiers = selected_tiers(config)
    return f"expdecay tiers: {', '.join(t for t in TIERS if t in tiers)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tests of the selected tiers; the others are deselected (pytest counts them
    in its summary line as "deselected", and a closing line says which tiers they are)."""
    tiers = selected_tiers(config)
    keep, drop = [], []
    not_run: dict[str, int] = {}
    for item in items:
        tier = tier_of(item)
        if tier in tiers:
            keep.append(item)
        else:
            drop.append(item)
            not_run[tier] = not_run.get(tier, 0) + 1
    config.stash[NOT_RUN] = not_run
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line, even under ``-q``: the tiers run and the tests of the others."""
    tiers = [t for t in TIERS if t in selected_tiers(config)]
    not_run = config.stash.get(NOT_RUN, {})
    line = f"expdecay tiers run: {', '.join(tiers)}"
    if not_run:
        line += "; not run: " + ", ".join(
            f"{tier} ({n} tests, --tier {tier})" for tier, n in not_run.items())
    terminalreporter.write_line(line)


class AdapterPool:
    """The adapters of one test module: one worker process per implementation
    and options, started on first use and closed when the module is done
    (fixture :func:`adapter_pool`)."""

    def __init__(self) -> None:
        self._adapters: dict[str, Any] = {}

    def get(self, name: str, options: dict[str, Any], timeout: float = 120.0) -> Any:
        """The adapter ``name`` with ``options`` (a working one: not broken)."""
        from expdecay.conformance.adapters import get_adapter

        key = f"{name}{sorted(options.items())}"
        if key not in self._adapters:
            a = get_adapter(name, timeout=timeout, **options)
            assert getattr(a, "broken", None) is None, a.broken  # type: ignore[attr-defined]
            self._adapters[key] = a
        return self._adapters[key]

    def close(self) -> None:
        for a in self._adapters.values():
            a.close()
        self._adapters.clear()


@pytest.fixture(scope="module")
def adapter_pool() -> Iterator[AdapterPool]:
    """A pool of adapters shared by the tests of a module (:class:`AdapterPool`)."""
    pool = AdapterPool()
    try:
        yield pool
    finally:
        pool.close()
