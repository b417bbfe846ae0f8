"""The pytest plugin ``expdecay.testing.plugin``, run for real in a pytest
subprocess in ``tmp_path``: inactive without its option; with it, one item
per vector test (``<stem>::tc<tcId>``), verdicts in the terminal report and
in JUnit XML.  Expected outcomes come from the vector files read directly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from expdecay import ExponentialDecay
from support.bits import IN_CI
from support.paths import ROOT

VECTORS = ROOT / "conformance" / "vectors"
EXAMPLE = ROOT / "conformance" / "example" / "expdecay_powf.c"
PLUGIN = "expdecay.testing.plugin"


def plugin_args() -> list[str]:
    """``-p expdecay.testing.plugin`` unless the ``pytest11`` entry point
    already loads it (loading the module under both names is an error)."""
    installed = any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", PLUGIN]


def run_pytest(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugin_args(), "-p", "no:cacheprovider",
         "--rootdir", str(cwd), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def vector_tests() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """``"<stem>::tc<tcId>" -> (group, test)`` for every committed test."""
    out = {}
    for p in sorted(VECTORS.glob("*.json")):
        for g in json.loads(p.read_text())["testGroups"]:
            for t in g["tests"]:
                out[f"{p.stem}::tc{t['tcId']}"] = (g, t)
    return out


def junit_outcomes(path: Path) -> dict[str, tuple[str, str]]:
    """``"<classname>::<name>" -> (outcome, failure text)`` from JUnit XML."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        outcome, text = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome, text = tag, (node.get("message") or "") + "\n" + (node.text or "")
                break
        out[key] = (outcome, text)
    return out


def test_inactive_without_its_option(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    listed = run_pytest(tmp_path, "--collect-only", "-q")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    ids = [line for line in listed.stdout.splitlines() if "::" in line]
    assert ids == ["test_one.py::test_one"]
    ran = run_pytest(tmp_path, "-q")
    assert ran.returncode == 0 and "1 passed" in ran.stdout
    assert "expdecay" not in ran.stdout
    helped = run_pytest(tmp_path, "--help")
    for option in ("--expdecay-impl", "--expdecay-profile", "--expdecay-vectors"):
        assert option in helped.stdout


def test_usage_errors(tmp_path: Path) -> None:
    bad = run_pytest(tmp_path, "--expdecay-impl", "nonsense")
    assert bad.returncode == 4 and "--expdecay-impl must be one of" in bad.stderr, bad.stderr
    assert "impl must" not in bad.stderr.replace("--expdecay-impl must", "")
    nomodule = run_pytest(tmp_path, "--expdecay-impl", "python:nosuchmodule:f")
    assert nomodule.returncode == 4 and "nosuchmodule" in nomodule.stderr
    slow = run_pytest(tmp_path, "--expdecay-impl", "expdecay", "--expdecay-timeout", "0")
    assert slow.returncode == 4 and "--expdecay-timeout" in slow.stderr
    lonely = run_pytest(tmp_path, "--expdecay-vectors", str(VECTORS))
    assert lonely.returncode == 4 and "needs --expdecay-impl" in lonely.stderr
    missing = run_pytest(tmp_path, "--expdecay-impl", "expdecay", "--expdecay-vectors",
                         str(tmp_path / "none.json"))
    assert missing.returncode == 4 and "none.json" in missing.stderr


# README snippet (a): a port in another language, through cmd:.
#   cc -O2 -o expdecay_powf conformance/example/expdecay_powf.c -lm
#   pytest --expdecay-impl "cmd:./expdecay_powf" --expdecay-profile keras --junitxml=report.xml
def test_c_example_passes_keras_profile(tmp_path: Path) -> None:
    cc = shutil.which("cc")
    if cc is None:
        if IN_CI:
            pytest.fail("no C compiler in CI")
        pytest.skip("no C compiler")
    subprocess.run([cc, "-O2", "-o", str(tmp_path / "expdecay_powf"), str(EXAMPLE), "-lm"],
                   check=True, timeout=120)
    res = run_pytest(tmp_path, "--expdecay-impl", "cmd:./expdecay_powf",
                     "--expdecay-profile", "keras", "--junitxml=report.xml")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    tests = vector_tests()
    # The program answers "na" for float16 and bfloat16: exactly those are skipped.
    narrow = {k for k, (g, _) in tests.items() if g["dtype"] in ("float16", "bfloat16")}
    root = ET.parse(tmp_path / "report.xml").getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", -1)) == len(tests)
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert int(suite.get("skipped", -1)) == len(narrow)
    outcomes = junit_outcomes(tmp_path / "report.xml")
    assert set(outcomes) == set(tests)  # ids are <file stem>::tc<tcId>
    assert {k for k, (o, _) in outcomes.items() if o == "skipped"} == narrow
    assert all("not applicable" in text for o, text in outcomes.values() if o == "skipped")
    assert f"{len(tests) - len(narrow)} passed, {len(narrow)} skipped" in res.stdout
    n_files = len(list(VECTORS.glob("*.json")))
    assert f"expdecay: conformance vectors ({n_files} files) against cmd:./expdecay_powf, " \
        "keras profile" \
        in res.stdout


BROKEN_PORT = textwrap.dedent("""
    import numpy as np
    from expdecay import ExponentialDecay

    def schedule(I, D, r, steps, *, staircase, dtype):
        # the bug: staircase is ignored
        return np.asarray(ExponentialDecay(I, D, r, False, dtype=dtype)(steps))
""")


def test_broken_python_port_fails_on_staircase_items(tmp_path: Path) -> None:
    (tmp_path / "brokenport.py").write_text(BROKEN_PORT)
    res = run_pytest(tmp_path, "--expdecay-impl", "python:brokenport:schedule",
                     "--junitxml=report.xml", "-q")
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    tests = vector_tests()
    outcomes = junit_outcomes(tmp_path / "report.xml")
    assert set(outcomes) == set(tests)
    failed = {k for k, (o, _) in outcomes.items() if o == "failure"}
    # Only staircase groups can fail (and the invalid tests of a staircase that
    # is not a bool, which the port never looks at); a staircase step that is
    # a multiple of decay_steps (step 0 here) has the continuous value and passes.
    assert failed and all(tests[k][0]["staircase"] is True
                          or "InvalidStaircase" in tests[k][1]["flags"] for k in failed)
    for key in ("boundaries::tc35", "boundaries::tc64"):
        group, test = tests[key]
        assert group["staircase"] and group["dtype"] == "float16"
        assert key in failed
        text = outcomes[key][1]
        assert f"{key} fails the keras profile" in text
        expected = re.search(r"expected: (\S+)", text)
        observed = re.search(r"observed: (\S+)", text)
        assert expected and observed, text
        assert float.fromhex(expected[1]) == float.fromhex(test["keras"]["hex"])
        step = int(test["step"]["int"])
        port = ExponentialDecay(float.fromhex(group["initialLearningRate"]["hex"]),
                                int(group["decaySteps"]["int"]),
                                float.fromhex(group["decayRate"]["hex"]), False,
                                dtype="float16")
        assert float.fromhex(observed[1]) == float(port(step))
        assert float.fromhex(observed[1]) != float.fromhex(expected[1])
    assert outcomes["boundaries::tc34"][0] == "passed"  # staircase, step 0
    assert tests["boundaries::tc34"][1]["step"]["int"] == "0"
    # The terminal report names the same items and the totals agree.
    assert re.search(rf"\b{len(failed)} failed, {len(tests) - len(failed)} passed\b",
                     res.stdout), res.stdout[-500:]
    assert "_ boundaries::tc35 _" in res.stdout


def test_dead_implementation_and_selection(tmp_path: Path) -> None:
    """``-k`` selects vector items like any others; a dead program fails them."""
    res = run_pytest(tmp_path, "--expdecay-impl", "cmd:/bin/false", "-k", "examples",
                     "--junitxml=report.xml", "-q")
    assert res.returncode == 1
    outcomes = junit_outcomes(tmp_path / "report.xml")
    examples = {k for k in vector_tests() if k.startswith("examples::")}
    assert set(outcomes) == examples
    failed = [text for o, text in outcomes.values() if o == "failure"]
    assert failed and all("process exited" in t for t in failed)


def test_exact_profile_and_reference(tmp_path: Path) -> None:
    """The reference passes the exact profile (its order is the profile's)."""
    res = run_pytest(tmp_path, "--expdecay-impl", "expdecay", "--expdecay-profile", "exact",
                     f"--expdecay-vectors={VECTORS / 'examples.json'}",
                     f"--expdecay-vectors={VECTORS / 'invalid.json'}", "-q")
    assert res.returncode == 0, res.stdout[-2000:]
    n = sum(1 for k in vector_tests() if k.split("::")[0] in ("examples", "invalid"))
    assert f"{n} passed" in res.stdout


def test_bad_vector_file_is_a_collection_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"bad": 1}')
    res = run_pytest(tmp_path, "--expdecay-impl", "expdecay", "--expdecay-vectors",
                     "bad.json", str(VECTORS / "examples.json"), "-q")
    assert res.returncode == 2  # interrupted: an error during collection
    assert "ERROR collecting bad" in res.stdout and "schema" in res.stdout


def test_plugin_module_is_light_and_profiles_agree() -> None:
    """Loading the plugin (as every pytest run in an environment with expdecay
    does) imports no numpy and no SymPy; its option's choices are the runner's."""
    import subprocess

    from expdecay.conformance.runner import PROFILES
    from expdecay.testing import plugin

    assert sorted(plugin.PROFILES) == sorted(PROFILES)
    code = ("import sys, expdecay.testing.plugin; "
            "print(sorted(m for m in ('numpy', 'sympy', 'mpmath') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
