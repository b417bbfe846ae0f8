"""The doctests of the drop-ins where their framework is missing (the top-level
``conftest.py``): skipped with the framework as the reason, or a failure where
``EXPDECAY_REQUIRE_FRAMEWORKS=1`` (or ``CI=true``) requires every framework.

Each case runs pytest in a child process in which keras, jax and torch are
hidden (they cannot be imported and ``importlib.util.find_spec`` does not find
them), as on a plain ``pip install -e '.[test]'``; the modules themselves
need no framework to be missing for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.bits import REQUIRE_VARIABLE, frameworks_required, require_peers
from support.paths import ROOT, SRC

#: A pytest plugin (loaded with -p before any conftest) that hides frameworks.
HIDE = '''
import importlib.util
import sys

HIDDEN = {"keras", "jax", "torch"}


class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())
for name in list(sys.modules):
    if name.partition(".")[0] in HIDDEN:
        del sys.modules[name]
_find_spec = importlib.util.find_spec


def find_spec(name, package=None):
    if name.partition(".")[0] in HIDDEN:
        return None
    return _find_spec(name, package)


importlib.util.find_spec = find_spec
'''

DROP_INS = ["src/expdecay/keras.py", "src/expdecay/optax.py", "src/expdecay/torch.py"]


def run_pytest(tmp_path: Path, *args: str, required: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "hide_frameworks.py").write_text(HIDE)
    env = {k: v for k, v in os.environ.items() if k not in (REQUIRE_VARIABLE, "CI")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path), str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    if required:
        env[REQUIRE_VARIABLE] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "hide_frameworks", "-p", "no:cacheprovider",
         "-q", "-rs", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_missing_framework_skips_the_drop_ins_doctests(tmp_path: Path) -> None:
    got = run_pytest(tmp_path, *DROP_INS, "src/expdecay/orders.py", required=False)
    out = got.stdout + got.stderr
    assert got.returncode == 0, out
    for module, framework in (("keras", "keras"), ("optax", "jax"), ("torch", "torch")):
        assert (f"{framework} is not installed (needed by the doctests of "
                f"expdecay/{module}.py)") in out, out
    # the other modules' doctests still run (orders.py has some)
    assert re.search(r"\b[1-9]\d* passed, 3 skipped\b", out), out


def test_missing_framework_fails_where_frameworks_are_required(tmp_path: Path) -> None:
    got = run_pytest(tmp_path, *DROP_INS, required=True)
    out = got.stdout + got.stderr
    assert got.returncode not in (0, 5), out
    assert "skipped" not in out, out
    for module in ("keras", "optax", "torch"):
        assert f"ERROR collecting src/expdecay/{module}.py" in out, out
    assert f"{REQUIRE_VARIABLE} or CI is set: a missing framework is a failure" in out, out


@pytest.mark.parametrize(("env", "want"), [
    ({}, False),
    ({REQUIRE_VARIABLE: "1"}, True),
    ({REQUIRE_VARIABLE: "true"}, True),
    ({REQUIRE_VARIABLE: "0"}, False),
    ({"CI": "true"}, True),
    ({"CI": ""}, False),
])
def test_frameworks_required_reads_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                env: dict[str, str], want: bool) -> None:
    monkeypatch.delenv(REQUIRE_VARIABLE, raising=False)
    monkeypatch.delenv("CI", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert frameworks_required() is want


def test_require_peers_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    absent = "expdecay_no_such_framework"
    monkeypatch.delenv(REQUIRE_VARIABLE, raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=rf"^{absent} is not installed "
                                                    r"\(needed by x\)$"):
        require_peers("os", absent, needed_by="x")
    with pytest.raises(pytest.skip.Exception, match=rf"^{absent}, {absent}2 are not installed$"):
        require_peers(absent, "os", f"{absent}2")
    monkeypatch.setenv(REQUIRE_VARIABLE, "1")
    with pytest.raises(ImportError, match=rf"^{absent} is not installed; {REQUIRE_VARIABLE}"):
        require_peers(absent)
    require_peers("os", "json")  # present: nothing happens
