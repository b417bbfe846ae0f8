"""``expdecay.testing.conformance.assert_conforms``: passes, failures and
their messages, the rule against false passes, argument validation.

Expected counts come from the vector files read directly (json), not from
the code under test."""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expdecay import ExponentialDecay
from expdecay.conformance.adapters import available_adapters
from expdecay.testing import ConformanceSummary, assert_conforms
from support.bits import IN_CI
from support.paths import ROOT

VECTORS = ROOT / "conformance" / "vectors"


def count_tests(dtypes: tuple[str, ...] | None = None) -> int:
    """Tests of the committed vector files in ``dtypes`` (None: all)."""
    n = 0
    for p in sorted(VECTORS.glob("*.json")):
        for g in json.loads(p.read_text())["testGroups"]:
            if dtypes is None or g["dtype"] in dtypes:
                n += len(g["tests"])
    return n


# README snippet (b): a Python library checked through a callable.  The
# "library" is expdecay's own ExponentialDecay (its __call__ is the keras order).
def my_schedule(I: Any, D: Any, r: Any, steps: np.ndarray, *, staircase: bool,
                dtype: str) -> np.ndarray:
    return np.asarray(ExponentialDecay(I, D, r, staircase, dtype=dtype)(steps))


def test_readme_snippet_callable_passes_keras() -> None:
    summary = assert_conforms(my_schedule, profile="keras")
    assert isinstance(summary, ConformanceSummary)
    assert summary.failed == 0 and summary.profile == "keras"
    assert summary.passed == count_tests() and summary.total == count_tests()
    assert 0 < summary.checked <= summary.passed
    assert summary.implementation.endswith(":my_schedule")
    assert sum(f.passed for f in summary.files) == summary.passed
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.passed = 0  # type: ignore[misc]


@pytest.mark.parametrize("profile", ["keras", "exact"])
def test_reference_passes_both_profiles(profile: str) -> None:
    summary = assert_conforms("expdecay", profile=profile)
    assert summary.profile == profile
    assert summary.passed == count_tests() > 0
    assert summary.failed == 0 and summary.not_applicable == 0 and summary.checked > 0
    assert {f.file for f in summary.files} == {p.stem for p in VECTORS.glob("*.json")}
    assert all(f.passed > 0 for f in summary.files)


def test_keras_order_fails_exact_profile_with_readable_table() -> None:
    """The keras order under the exact profile: known failures (OrdersDiffer)."""
    with pytest.raises(AssertionError) as info:
        assert_conforms(my_schedule, profile="exact", dtypes=["float32"], show=3)
    msg = str(info.value)
    assert "does not conform to the exact profile" in msg
    assert "dtypes float32" in msg
    assert re.search(r"first 3 of \d+ failures:", msg)
    rows = [line for line in msg.splitlines() if re.match(r"\s+\w+::tc\d+\s", line)]
    assert len(rows) == 3
    assert "keras order" in msg  # the diagnosed cause
    header = next(line for line in msg.splitlines() if line.strip().startswith("test "))
    for col in ("expected", "observed", "ulps", "cause", "step"):
        assert col in header


def _rows(msg: str) -> list[list[str]]:
    return [line.split() for line in msg.splitlines() if re.match(r"\s+\w+::tc\d+\s", line)]


def ignores_staircase(I: Any, D: Any, r: Any, steps: np.ndarray, *, staircase: bool,
                      dtype: str) -> np.ndarray:
    return np.asarray(ExponentialDecay(I, D, r, False, dtype=dtype)(steps))


def test_broken_callable_fails_on_staircase_tests_only() -> None:
    with pytest.raises(AssertionError) as info:
        assert_conforms(ignores_staircase, dtypes="float32", show=100000)
    rows = _rows(str(info.value))
    assert rows
    # It also accepts a staircase that is not a bool (it never looks at it):
    # those invalid tests fail too, and show the value as given.
    invalid = [r for r in rows if r[2] not in ("yes", "no")]
    assert invalid and all(r[7:9] == ["an", "error"] for r in invalid)
    rows = [r for r in rows if r not in invalid]
    assert rows
    assert all(r[1] == "float32" and r[2] == "yes" for r in rows)  # dtype, staircase
    assert all(r[7] != r[8] for r in rows)  # expected and observed hex differ


def test_dead_implementation_fails() -> None:
    with pytest.raises(AssertionError) as info:
        assert_conforms("cmd:/bin/false", dtypes="float64")
    msg = str(info.value)
    assert "could not run" in msg and "nothing was checked" in msg


def test_nothing_applicable_is_not_a_pass() -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        return NotImplemented

    with pytest.raises(AssertionError, match="nothing was checked"):
        assert_conforms(never, dtypes=["float16"])


def test_always_raising_is_not_a_pass() -> None:
    """Errors pass the invalid tests; with every valid test failing, no pass."""
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("unsupported")

    with pytest.raises(AssertionError) as info:
        assert_conforms(boom, vectors=[VECTORS / "invalid.json"])
    assert "nothing was checked" in str(info.value)


def test_dtypes_subset_and_single_file() -> None:
    summary = assert_conforms("expdecay", dtypes=("float64",))
    assert summary.dtypes == ("float64",)
    assert summary.total == count_tests(("float64",))
    one = assert_conforms("expdecay", vectors=[VECTORS / "examples.json"])
    assert [f.file for f in one.files] == ["examples"]
    assert one.passed == len([t for g in json.loads((VECTORS / "examples.json").read_text())
                              ["testGroups"] for t in g["tests"]])


def test_python_module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``python:module:function`` name runs in a worker (the cwd is importable)."""
    (tmp_path / "halfport.py").write_text(textwrap.dedent("""
        import numpy as np
        def half(I, D, r, steps, *, staircase, dtype):
            return np.full(len(steps), 0.5)
    """))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match=r"python:halfport:half|halfport"):
        assert_conforms("python:halfport:half", dtypes=["float32"],
                        vectors=[VECTORS / "examples.json"])
    with pytest.raises(ValueError, match="nosuchmodule"):
        assert_conforms("python:nosuchmodule:f")


def test_optax_fails_exact_profile() -> None:
    if "optax" not in available_adapters():
        if IN_CI:
            pytest.fail("optax is not installed in CI")
        pytest.skip("optax not installed")
    with pytest.raises(AssertionError) as info:
        assert_conforms("optax", profile="exact", dtypes=["float32"], show=5)
    msg = str(info.value)
    assert msg.startswith("optax (optax ")
    assert "does not conform to the exact profile" in msg
    assert re.search(r"\d+ passed, [1-9]\d* failed, \d+ not applicable", msg)
    # Keras's order casts decay_rate and the step: optax does too.
    assert "keras order" in msg or "reciprocal" in msg
    rows = _rows(msg)
    assert len(rows) == 5 and all(r[1] == "float32" for r in rows)
    assert "invalid" in msg  # per-file line of the invalid configurations


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"profile": "both"}, r"profile.*'both'"),
    ({"dtypes": ["float8"]}, r"dtypes.*'float8'"),
    ({"dtypes": []}, r"dtypes"),
    ({"dtypes": 3}, r"dtypes.*3"),
    ({"show": -1}, r"show.*-1"),
    ({"vectors": ["/nonexistent/vectors"]}, r"nonexistent"),
])
def test_bad_arguments(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        assert_conforms("expdecay", **kwargs)


def test_a_profile_that_is_not_a_str_is_a_type_error() -> None:
    """A profile is named after its order: the order check's rule (spec §3.3)."""
    with pytest.raises(TypeError, match=r"profile must be a str, 'exact' or 'keras'; got None"):
        assert_conforms("expdecay", profile=None)  # type: ignore[arg-type]


def test_bad_implementation() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        assert_conforms("nonsense")
    with pytest.raises(ValueError, match="no executable program"):
        assert_conforms("cmd:/nonexistent/port")
    with pytest.raises(TypeError, match="impl"):
        assert_conforms(42)  # type: ignore[arg-type]
