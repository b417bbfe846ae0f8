"""The conformance runner: pass rules, isolation (errors, crashes, hangs),
reporting, and the cmd: protocol with the example C program."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expdecay import oracle
from expdecay.cli import main
from expdecay.conformance.diagnosis import diagnose
from expdecay.conformance.runner import judge
from expdecay.conformance.vectors import decode_number, decode_result, encode_result, iter_tests
from expdecay.floats import get_format, next_up
from support.bits import IN_CI
from support.paths import ROOT

VECTORS = ROOT / "conformance" / "vectors"
F32 = get_format("float32")


# ---------------------------------------------------------------------------
# Callables checked through python:module:function (run in a worker process)
# ---------------------------------------------------------------------------


def constant_half(I: Any, D: Any, r: Any, steps: np.ndarray, *, staircase: bool,
                  dtype: str) -> np.ndarray:
    """Always 0.5, never an error."""
    return np.full(len(steps), 0.5)


def reference(I: Any, D: Any, r: Any, steps: np.ndarray, *, staircase: bool,
              dtype: str) -> np.ndarray:
    """The oracle's exact order; misbehaves on the step 16777999 according to
    the environment variable EXPDECAY_TEST_MODE (raise, crash or hang)."""
    mode = os.environ.get("EXPDECAY_TEST_MODE", "")
    out = []
    for s in steps.tolist():
        if s == 16777999:
            if mode == "raise":
                raise RuntimeError("deliberate failure")
            if mode == "crash":
                os._exit(9)
            if mode == "hang":
                time.sleep(3600)
        out.append(float(oracle.evaluate(I, D, r, s, staircase=staircase, dtype=dtype)))
    return np.array(out)


# ---------------------------------------------------------------------------
# Pass rules
# ---------------------------------------------------------------------------


def _test(exact: float, keras: float, tol: int = 2, result: str = "valid") -> dict[str, Any]:
    return {"tcId": 1, "result": result, "flags": [], "exact": encode_result(exact, F32),
            "keras": encode_result(keras, F32), "tolerance": {"exact": 0, "keras": tol}}


def test_pass_rules() -> None:
    x = 0.1015625
    up = next_up(x, F32)
    t = _test(x, x)
    assert judge(t, F32, "exact", x, None, None).status == "pass"
    assert judge(t, F32, "exact", up, None, None).status == "fail"
    v = judge(t, F32, "keras", up, None, None)
    assert v.status == "pass" and v.within_tolerance and v.ulps == 1
    assert judge(t, F32, "keras", next_up(next_up(up, F32), F32), None, None).status == "fail"
    nan_test = _test(math.nan, math.nan)
    assert judge(nan_test, F32, "exact", -math.nan, None, None).status == "pass"
    assert judge(nan_test, F32, "exact", 0.0, None, None).status == "fail"
    zero = _test(-0.0, -0.0)
    assert judge(zero, F32, "keras", 0.0, None, None).status == "fail"  # sign of zero
    inf = _test(math.inf, math.inf)
    assert judge(inf, F32, "keras", F32.max_finite, None, None).status == "fail"
    assert judge(t, F32, "exact", 0.1, None, None).status == "fail"  # not a float32
    assert judge(t, F32, "exact", None, "boom", None).status == "fail"
    assert judge(_test(x, x, result="acceptable"), F32, "exact", None, "no", None).status == "pass"
    invalid = {"tcId": 2, "result": "invalid", "flags": []}
    assert judge(invalid, F32, "exact", None, "rejected", None).status == "pass"
    assert judge(invalid, F32, "exact", 0.5, None, None).status == "fail"
    assert judge(t, F32, "exact", None, None, "cannot").status == "na"


def _find(theme: str, step: int, dtype: str,
          staircase: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = json.loads((VECTORS / f"{theme}.json").read_text())
    for g, t in iter_tests(doc):
        if decode_number(t["step"]) == step and g["dtype"] == dtype and \
                g["staircase"] == staircase:
            return g, t
    raise LookupError(step)


def test_diagnoses_the_step_cast() -> None:
    g, t = _find("examples", 16777999, "float32", True)
    keras = decode_result(t["keras"], F32, "k")
    d = diagnose(t, g, F32, "exact", keras)
    assert (d.status, d.ids) == ("proven", ["keras-order"])
    # Under the keras profile the exact order's bits are reproduced by the
    # exact order and by the keras order run in float64 and rounded to
    # float32: two explanations, so no cause is claimed.
    exact = decode_result(t["exact"], F32, "e")
    d = diagnose(t, g, F32, "keras", exact)
    assert d.status == "ambiguous" and d.ids == []
    assert sorted(d.alternatives) == [["computed-in-wider-format"], ["exact-order"]]


def test_diagnoses_flush_to_zero_and_wider_output() -> None:
    doc = json.loads((VECTORS / "ranges.json").read_text())
    for g, t in iter_tests(doc):
        if g["dtype"] == "float32" and "Subnormal" in t["flags"]:
            d = diagnose(t, g, F32, "exact", 0.0)
            assert "subnormal-flushed" in d.ids or any(
                a == ["subnormal-flushed"] for a in d.alternatives), d
            break
    else:
        raise AssertionError("no subnormal float32 test")
    g, t = _find("examples", 10**6, "float32", False)
    d = diagnose(t, g, F32, "exact", 0.066483263599150)
    assert (d.status, d.ids) == ("proven", ["output-not-in-format"])


def test_a_value_no_mistake_reproduces_is_unexplained() -> None:
    g, t = _find("examples", 10**6, "float32", False)
    far = float(np.float32(0.0123))  # a float32 value no known mistake gives
    d = diagnose(t, g, F32, "keras", far)
    assert d.status == "unexplained" and d.ids == [] and d.label == "unexplained"


def test_two_mistakes_giving_the_same_bits_are_ambiguous() -> None:
    """Staircase, D = 3, step 2, r = 0.5 in float64: the floor gives p = 0.
    The step shifted by one (3: p = 1) and the exponent rounded to nearest
    (round(2/3) = 1) both give 0.1 * 0.5, so the diagnosis cannot choose."""
    doc = json.loads((VECTORS / "boundaries.json").read_text())
    [(g, t)] = [(g, t) for g, t in iter_tests(doc)
                if g["dtype"] == "float64" and g["staircase"] and g["decaySteps"] == {"int": "3"}
                and t["step"] == {"int": "2"}]
    assert decode_number(g["decayRate"]) == 0.5 and decode_number(g["initialLearningRate"]) == 0.1
    d = diagnose(t, g, get_format("float64"), "keras", 0.1 * 0.5)
    assert d.status == "ambiguous"
    assert ["floor-as-round"] in d.alternatives and ["step-shifted"] in d.alternatives
    # the continuous value 0.1 * 0.5 ** (2/3) is proven to be the floor ignored
    cont = float(np.float64(0.1) * np.float64(0.5) ** (2 / 3))
    d = diagnose(t, g, get_format("float64"), "keras", cont)
    assert d.ids in (["staircase-ignored"], ["staircase-ignored", "pow-not-correctly-rounded"])


def test_a_crashed_step_is_not_run_never_passed() -> None:
    x = 0.1015625
    for result in ("valid", "acceptable", "invalid"):
        t = _test(x, x, result=result) if result != "invalid" else {
            "tcId": 3, "result": "invalid", "flags": []}
        v = judge(t, F32, "exact", None, None, None, crashed="process exited")
        assert v.status == "notrun"


# ---------------------------------------------------------------------------
# Runs through the command line
# ---------------------------------------------------------------------------


def _check(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    report = tmp_path / "report.json"
    rc = main(["check", *argv, "--report", str(report)])
    return rc, json.loads(report.read_text())


def _counts(rep: dict[str, Any], profile: str) -> dict[str, tuple[int, int, int]]:
    [imp] = [i for i in rep["implementations"] if i["profile"] == profile]
    return {f["file"]: (f["passed"], f["failed"], f["notApplicable"]) for f in imp["files"]}


def test_our_fast_path_conforms(tmp_path: Path) -> None:
    rc, rep = _check(tmp_path, "--impl", "expdecay")
    assert rc == 0
    total = sum(json.loads(p.read_text())["numberOfTests"] for p in VECTORS.glob("*.json"))
    for profile in ("exact", "keras"):
        assert sum(p for p, f, n in _counts(rep, profile).values()) == total


def test_constant_implementation_counts(tmp_path: Path) -> None:
    """Counts derived from the files: 0.5 passes exactly where 0.5 is expected."""
    rc, rep = _check(tmp_path, "--impl", "python:test_conformance:constant_half",
                     "--vectors", str(VECTORS / "boundaries.json"), str(VECTORS / "invalid.json"))
    assert rc == 1
    for profile in ("exact", "keras"):
        want = {}
        for name in ("boundaries.json", "invalid.json"):
            doc = json.loads((VECTORS / name).read_text())
            passed = sum(1 for g, t in iter_tests(doc) if t["result"] != "invalid"
                         and decode_result(t[profile], get_format(g["dtype"]), "x") == 0.5)
            want[name] = (passed, doc["numberOfTests"] - passed, 0)
        assert _counts(rep, profile) == want
    [imp] = [i for i in rep["implementations"] if i["profile"] == "exact"]
    invalid = json.loads((VECTORS / "invalid.json").read_text())["numberOfTests"]
    assert imp["failureClasses"]["missing-validation"] == invalid
    assert imp["causeIds"]["missing-validation"] == invalid


@pytest.mark.parametrize("mode, needle", [("raise", "deliberate failure"),
                                          ("crash", "status 9"), ("hang", "timeout")])
def test_isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str,
                   needle: str) -> None:
    """An exception, a crash or a hang on one step fails that step only."""
    monkeypatch.setenv("EXPDECAY_TEST_MODE", mode)
    rc, rep = _check(tmp_path, "--impl", "python:test_conformance:reference",
                     "--vectors", str(VECTORS / "examples.json"), "--profile", "exact",
                     "--timeout", "4")
    assert rc == 1
    doc = json.loads((VECTORS / "examples.json").read_text())
    bad = [t["tcId"] for g, t in iter_tests(doc) if t["step"] == {"int": "16777999"}]
    [imp] = rep["implementations"]
    [f] = imp["files"]
    if mode == "raise":  # an error reported by the implementation: a failure
        assert (f["passed"], f["failed"]) == (doc["numberOfTests"] - len(bad), len(bad))
        assert sorted(x["tcId"] for x in f["failures"]) == bad
        assert all(needle in x["error"] for x in f["failures"])
    else:  # no answer: not run, never passed, never failed as if answered
        assert (f["passed"], f["failed"], f["notRun"]) == (
            doc["numberOfTests"] - len(bad), 0, len(bad))
        assert sorted(x["tcId"] for x in f["notRunTests"]) == bad
        assert all(needle in x["reason"] for x in f["notRunTests"])


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--impl", "nonsense"]) == 2
    assert main(["check", "--impl", "expdecay", "--timeout", "0"]) == 2
    assert main(["check", "--impl", "torch", "--backend", "jax"]) == 2
    err = capsys.readouterr().err
    assert err.count("expdecay: error:") == 3 and "Traceback" not in err


def test_unusable_vector_file_is_reported(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[")
    assert main(["check", "--impl", "expdecay", "--vectors", str(bad)]) == 1
    assert f"{bad}: not valid JSON" in capsys.readouterr().err


def test_a_program_that_cannot_start_is_unavailable_and_passes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    false = shutil.which("false")
    assert false is not None
    rc, rep = _check(tmp_path, "--impl", f"cmd:{false}")
    assert rc == 3
    for imp in rep["implementations"]:
        assert imp["status"] == "unavailable" and imp["passed"] == 0 and imp["failed"] == 0
        assert "exited" in imp["error"]
    out = capsys.readouterr().out
    assert "UNAVAILABLE" in out and "Found but could not start" in out


def test_missing_program_is_a_usage_error_not_a_pass(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    rc = main(["check", "--impl", "cmd:/nonexistent/program", "--vectors",
               str(VECTORS / "examples.json"), "--report", str(report)])
    assert rc == 2 and not report.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no executable program '/nonexistent/program'" in err[0]


@pytest.mark.parametrize("argv,needle", [
    (["--vectors", "/nonexistent.json"], "no such file"),
    (["--impl", "python:no_such_module_xyz:f"], "cannot import"),
    (["--impl", "python:math:no_such_function"], "no callable"),
])
def test_bad_check_arguments_are_one_line_usage_errors(
        argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("expdecay: error:") and needle in err[0]


# ---------------------------------------------------------------------------
# The example C program, against an independent float32/float64 pipeline
# ---------------------------------------------------------------------------


def _compile(tmp_path: Path) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        if IN_CI:
            pytest.fail("no C compiler in CI")
        pytest.skip("no C compiler")
    exe = tmp_path / "expdecay_powf"
    subprocess.run([cc, "-O2", "-o", str(exe), str(ROOT / "conformance" / "example" /
                                                    "expdecay_powf.c"), "-lm"], check=True)
    return exe


def _libm_pipeline(I: float, D: float, r: float, s: float, staircase: bool,
                   dtype: str) -> float | None:
    """What the C program computes, with numpy's IEEE arithmetic and libm."""
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.powf.restype, libm.powf.argtypes = ctypes.c_float, [ctypes.c_float, ctypes.c_float]
    libm.pow.restype, libm.pow.argtypes = ctypes.c_double, [ctypes.c_double, ctypes.c_double]
    if not (D > 0) or math.isinf(D) or not isinstance(staircase, bool):
        return None  # the program reports an error
    with np.errstate(all="ignore"):
        if dtype == "float32":
            f = np.float32
            p = f(s) / f(D)
            if staircase:
                p = np.floor(p)
            return float(f(I) * f(libm.powf(f(r), p)))
        pd = s / D
        if staircase:
            pd = math.floor(pd) if math.isfinite(pd) else pd
        return float(np.float64(I) * np.float64(libm.pow(r, pd)))


def _passes(got: float | None, t: dict[str, Any], dtype: str, profile: str) -> bool:
    if t["result"] == "invalid" or got is None:
        return got is None and t["result"] != "valid"
    fmt = get_format(dtype)
    want = decode_result(t[profile], fmt, "x")
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    wb = int(t[profile]["bits"], 16)
    gb = int(encode_result(got, fmt)["bits"], 16)
    if wb == gb:
        return True
    tol = t["tolerance"][profile]
    sign = 1 << (fmt.width - 1)
    same_sign = (wb & sign) == (gb & sign)
    finite = math.isfinite(want) and math.isfinite(got) and want != 0 and got != 0
    return bool(tol) and finite and same_sign and abs(wb - gb) <= tol


def test_c_example_counts_match_an_independent_derivation(tmp_path: Path) -> None:
    exe = _compile(tmp_path)
    rc, rep = _check(tmp_path, "--impl", f"cmd:{exe}")
    assert rc == 1  # it computes in float32 with powf: the exact profile fails
    for profile in ("exact", "keras"):
        want = {}
        for path in sorted(VECTORS.glob("*.json")):
            doc = json.loads(path.read_text())
            counts = [0, 0, 0]
            for g, t in iter_tests(doc):
                if g["dtype"] not in ("float32", "float64"):
                    counts[2] += 1
                    continue
                I, D, r = (float(decode_number(g[k])) for k in
                           ("initialLearningRate", "decaySteps", "decayRate"))
                s = float(decode_number(t["step"]))
                got = _libm_pipeline(I, D, r, s, g["staircase"], g["dtype"])
                counts[0 if _passes(got, t, g["dtype"], profile) else 1] += 1
            want[path.name] = tuple(counts)
        assert _counts(rep, profile) == want, profile
    assert sum(f for _, f, _ in _counts(rep, "exact").values()) > 50


def test_the_default_run_lists_what_it_did_not_find(monkeypatch: pytest.MonkeyPatch) -> None:
    from expdecay.conformance import adapters
    from expdecay.conformance.adapters import registry

    # as if every framework but tf_keras and jax were installed, whatever is here
    monkeypatch.setattr(registry, "installed", lambda m: m not in ("tf_keras", "jax"))
    missing = dict(adapters.missing_configurations())
    assert missing["tf-keras"] == "not installed (tf_keras missing)"
    assert missing["optax"] == "not installed (jax missing)"
    assert missing["keras[backend=jax]"] == "backend not installed (jax missing)"
    assert all(name not in dict(adapters.missing_configurations()) for name in ("expdecay",))
    names = {n for n, _ in adapters.default_configurations()}
    assert "tf-keras" not in names and "optax" not in names
