"""Shared test configuration: options, markers and Hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

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


def tier_of(item: pytest.Item) -> str:
    """The tier of a collected test: its ``slow`` or ``extended`` marker, else core."""
    for tier in ("slow", "extended"):
        if item.get_closest_marker(tier) is not None:
            return tier
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


def pytest_report_header(config: pytest.Config) -> str:
    tiers = selected_tiers(config)
    return f"expdecay tiers: {', '.join(t for t in TIERS if t in tiers)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tests of the selected tiers; the others are deselected (pytest counts them
    in its summary line as "deselected")."""
    tiers = selected_tiers(config)
    keep, drop = [], []
    for item in items:
        (keep if tier_of(item) in tiers else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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
