"""Shared test configuration: options, markers and Hypothesis profiles."""

from __future__ import annotations

import os

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
