"""Verdicts never pass a wrong answer.

* A wrong answer in any process state is a failure: the re-run of the
  failing groups says why (``process-state``, ``nondeterministic``), never
  whether.  The mutants of ``tests/support/mutants/state_mutants.py`` (wrong at
  random, memoised without the dtype) and TensorFlow's constant cache fail.
* The default re-run evaluates the failing groups in one fresh process;
  ``--isolate`` one per group.
* ``assert_conforms`` takes only outputs that are exactly real numbers; the
  plugin refuses a vector file whose expectations do not decode, and an
  empty ``--expdecay-vectors``; an output path that cannot be written is
  refused before any work.

Expected values come from the vector files read directly, from the mutants'
own definition (4 ulps, counted with exact rationals) or from hand-made
outputs.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.bits import require_peers
from support.paths import MUTANT_DIR, ROOT

VECTORS = ROOT / "conformance" / "vectors"
if str(MUTANT_DIR) not in sys.path:
    sys.path.insert(0, str(MUTANT_DIR))  # the workers inherit sys.path

from expdecay.conformance.adapters.base import AdapterError  # noqa: E402
from expdecay.conformance.runner import (  # noqa: E402
    check_implementation,
    check_output_path,
    rerun_mode,
    summarise,
)
from expdecay.conformance.vectors import decode_result  # noqa: E402
from expdecay.floats import get_format  # noqa: E402
from expdecay.testing import assert_conforms  # noqa: E402
from expdecay.testing.conformance import exact_outputs  # noqa: E402


def _docs(*names: str) -> dict[str, dict[str, Any]]:
    names = names or tuple(sorted(p.name for p in VECTORS.glob("*.json")))
    return {n: json.loads((VECTORS / n).read_text()) for n in names}


def _run(name: str, docs: dict[str, dict[str, Any]], rerun: bool | str = True,
         **kw: Any) -> dict[str, Any]:
    reps = check_implementation(name, {}, docs, ("exact", "keras"), rerun=rerun, **kw)
    return {r.profile: r for r in reps}


def _failing(rep: Any) -> set[tuple[str, int]]:
    return {(f.file, e["tcId"]) for f in rep.files for e in f.failures}


def _ulps_exact(a_hex: str, b_hex: str, fmt_name: str) -> int:
    """Ulps between two finite values of a format of the same sign and
    binade neighbourhood, counted with exact rationals (independent of the
    runner's integer keys)."""
    fmt = get_format(fmt_name)
    a, b = Fraction(float.fromhex(a_hex)), Fraction(float.fromhex(b_hex))
    lo, hi = min(a, b), max(a, b)
    n = 0
    x = lo
    while x < hi:
        e = math.frexp(float(x))[1] if x != 0 else fmt.emin
        quantum = Fraction(2) ** (max(e, fmt.emin + 1) - fmt.precision)
        x += quantum
        n += 1
        assert n < 100
    assert x == hi
    return n


# ---------------------------------------------------------------------------
# 1. Every wrong answer is a failure
# ---------------------------------------------------------------------------


def test_the_memoising_mutant_does_not_conform() -> None:
    """Results memoised on a key without the dtype: the second format of a
    schedule gets the first format's values.  The first evaluation's
    failures all stay failures; the re-run only labels them."""
    docs = _docs()
    plain = _run("python:state_mutants:memo_without_dtype", docs, rerun=False)
    rerun = _run("python:state_mutants:memo_without_dtype", docs)
    for profile in ("exact", "keras"):
        before, after = plain[profile], rerun[profile]
        assert before.status == after.status == "fails"
        assert before.failed > 1000
        assert _failing(before) <= _failing(after)  # nothing excused
        assert after.process_state > 1000
        labelled = [e for f in after.files for e in f.failures if e.get("state")]
        assert len(labelled) == after.process_state + after.nondeterministic
        for e in labelled:
            explains = e["state"] == "nondeterministic" or any(
                p["status"] == "pass" for p in e["passes"])
            assert (e["causeIds"] == [e["state"]]) == explains
            seen = [p["observed"] for p in e["passes"]]
            assert len(set(seen[:2])) == 2  # the evidence: two different answers
            assert any(p["status"] == "fail" for p in e["passes"])
    # keras profile: the unmemoised baseline passes it, so a labelled failure
    # is right in one of its passes: that answer has the vector's bits
    right = 0
    for f in rerun["keras"].files:
        by_tc = {t["tcId"]: (g, t) for g in docs[f.file]["testGroups"] for t in g["tests"]}
        for e in f.failures:
            g, t = by_tc[e["tcId"]]
            want = decode_result(t["keras"], get_format(g["dtype"]), "keras").hex() \
                if "keras" in t else None
            for p in e.get("passes", []):
                if p["status"] == "pass" and want is not None and p["observed"] not in (
                        None, "nan") and not p["observed"].startswith(("error", "not ")):
                    got = float.fromhex(p["observed"]).hex()
                    if got != want:  # passed within the test's tolerance
                        tol = t["tolerance"]["keras"]
                        assert 0 < _ulps_exact(got, want, g["dtype"]) <= tol
                    right += 1
    assert right > 1000


def test_the_memoising_mutant_fails_with_isolated_reruns_too() -> None:
    """``isolate``: each failing group in a fresh process of its own; the
    failures are exactly those of the first evaluation, labelled."""
    doc = _docs("special_values.json")
    plain = _run("python:state_mutants:memo_without_dtype", doc, rerun=False)
    iso = _run("python:state_mutants:memo_without_dtype", doc, rerun="isolate")
    keras = iso["keras"]
    assert keras.status == "fails" and keras.rerun_mode == "isolate"
    assert _failing(keras) == _failing(plain["keras"]) and keras.failed > 0
    assert keras.process_state == keras.failed  # every one right in a fresh process


@pytest.mark.parametrize("name", ["random_4ulp_rare", "random_4ulp_often"])
def test_a_mutant_wrong_at_random_does_not_conform(name: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """4 ulps off at random: every keras-profile failure is such an answer
    (the baseline has none), and the implementation fails whenever it gave
    one.  The log holds every wrong value the mutant returned."""
    log = tmp_path / "wrong.log"
    monkeypatch.setenv("EXPDECAY_MUTANT_LOG", str(log))
    reps = _run(f"python:state_mutants:{name}", _docs())
    keras = reps["keras"]
    wrong = log.read_text().splitlines() if log.exists() else []
    assert (keras.status == "fails") == bool(wrong)
    assert reps["exact"].status == "fails"
    if name == "random_4ulp_often":
        assert len(wrong) > 20 and keras.failed > 20
    for f in keras.files:
        for e in f.failures:
            assert e["ulps"] == 4.0
            assert _ulps_exact(e["expected"], e["observed"], e["inputs"]["dtype"]) == 4
            assert e.get("state") in (None, "process-state", "nondeterministic")


def test_the_tensorflow_constant_cache_counts_as_failures() -> None:
    """TensorFlow's eager constant cache turns a -0.0 into +0.0 after a
    schedule with +0.0: failures, with the cause ``process-state``, the
    fresh process giving the vector's negative value."""
    require_peers("tensorflow", "keras", needed_by="Keras 3 on its TensorFlow backend")
    docs = _docs("special_values.json")
    reps = {r.profile: r for r in check_implementation(
        "keras", {"backend": "tensorflow"}, docs, ("exact", "keras"))}
    for rep in reps.values():
        assert rep.status == "fails"
        labelled = [e for f in rep.files for e in f.failures if e.get("state")]
        assert len(labelled) == rep.process_state > 0
        for e in labelled:
            assert e["causeIds"] == ["process-state"]
            # a negative zero (or -inf, a product with it) came out positive
            assert e["expected"] in ("-0x0p+0", "-inf")
            assert e["observed"] == e["expected"][1:]
            assert [p["observed"] for p in e["passes"]][1:] == [e["expected"]] * (
                len(e["passes"]) - 1)


def _entry(observed: float | None, error: str | None = None
           ) -> tuple[Any, Any, Any, Any]:
    return (observed, error, None, None)


def test_labels_from_hand_made_outputs() -> None:
    """``summarise`` on one test and hand-made outputs of its three passes
    (first, re-run, re-run again)."""
    doc = {"testGroups": [{"dtype": "float32", "staircase": False,
                           "initialLearningRate": {"hex": "0x1p-1", "bits": "3fe0000000000000"},
                           "decaySteps": {"int": "1"},
                           "decayRate": {"hex": "0x1p-1", "bits": "3fe0000000000000"},
                           "tests": [{"tcId": 1, "flags": [], "result": "valid",
                                      "step": {"int": "1"},
                                      "exact": {"bits": "3e800000", "hex": "0x1p-2"},
                                      "keras": {"bits": "3e800000", "hex": "0x1p-2"},
                                      "tolerance": {"exact": 0, "keras": 0}}]}]}
    right, wrong, other = 0.25, float.fromhex("0x1.000008p-2"), float.fromhex("0x1.00001p-2")

    def judged(first: Any, fresh: Any = None, again: Any = None) -> Any:
        return summarise("f", doc, {1: first}, "keras",
                         fresh={1: fresh} if fresh is not None else None,
                         again={1: again} if again is not None else None)

    s = judged(_entry(wrong), _entry(right), _entry(right))
    assert (s.failed, s.process_state, s.nondeterministic) == (1, 1, 0)
    assert [p["observed"] for p in s.failures[0]["passes"]] == [
        "0x1.000008p-2", "0x1p-2", "0x1p-2"]
    s = judged(_entry(wrong), _entry(right), _entry(other))
    assert (s.failed, s.process_state, s.nondeterministic) == (1, 0, 1)
    assert s.failures[0]["causeIds"] == ["nondeterministic"]
    s = judged(_entry(wrong), _entry(other), _entry(other))  # wrong in every state
    assert (s.failed, s.process_state, s.nondeterministic) == (1, 1, 0)
    assert s.failures[0]["state"] == "process-state"
    assert "process-state" not in s.failures[0]["causeIds"]  # its own diagnosis
    assert s.failures[0]["observed"] == "0x1.000008p-2"
    s = judged(_entry(wrong), _entry(wrong))  # the same wrong answer: not labelled
    assert (s.failed, s.process_state, s.nondeterministic) == (1, 0, 0)
    s = judged(_entry(right), _entry(wrong), _entry(wrong))  # wrong in the re-run only
    assert (s.passed, s.failed, s.process_state) == (0, 1, 1)
    assert s.failures[0]["observed"] == "0x1.000008p-2"
    s = judged(_entry(right), _entry(right))
    assert (s.passed, s.failed) == (1, 0)
    s = judged(_entry(wrong), (None, None, None, "crashed"))  # no answer: no label
    assert (s.failed, s.process_state, s.nondeterministic) == (1, 0, 0)


def test_rerun_modes() -> None:
    assert [rerun_mode(x) for x in (True, False, None, "sequence", "isolate")] == [
        "sequence", None, None, "sequence", "isolate"]
    for bad in ("fresh", 1, "Isolate"):
        with pytest.raises(ValueError, match="rerun"):
            rerun_mode(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# 3. The default re-run: one fresh process
# ---------------------------------------------------------------------------


def test_a_cmd_program_is_rerun_in_one_new_process(tmp_path: Path) -> None:
    """Every group of a ``cmd:`` program fails (it answers 0.0625 for every
    step): the default re-run starts ONE new process for all of them (the
    old re-run started one per failing group); ``isolate`` one per group."""
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys
        with open(sys.argv[1], "a") as f:
            f.write(f"{os.getpid()}\\n")
        print(json.dumps({"protocol": "expdecay-conformance/1", "name": "sixteenth",
                          "version": "1", "ops": ["evaluate", "batch"]}), flush=True)
        for line in sys.stdin:
            req = json.loads(line)
            if req.get("op") == "batch":
                print(json.dumps({"id": req["id"], "groups": [
                    {"results": ["0x1p-4"] * len(g["steps"])} for g in req["groups"]]}),
                    flush=True)
            else:
                print(json.dumps({"id": req["id"], "results": ["0x1p-4"] * len(req["steps"])}),
                      flush=True)
    """))
    doc = _docs("examples.json")
    groups = len(doc["examples.json"]["testGroups"])
    for mode, starts in ((True, 2), ("isolate", 1 + groups)):
        log = tmp_path / f"pids-{mode}"
        name = f"cmd:{shlex.join([sys.executable, str(script), str(log)])}"
        [rep] = check_implementation(name, {}, doc, ("keras",), rerun=mode)
        assert rep.rerun_groups == groups and rep.status == "fails"
        assert rep.process_state == rep.nondeterministic == 0  # the same answers again
        assert len(log.read_text().split()) == starts


def test_a_fresh_sequence_is_one_process_forked_from_the_fresh_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the protocol: a cache-like defect (+0 answered for -0 once a
    +0 schedule was seen).  A fresh sequence starts from the zygote's state
    (no +0 seen: -0 comes back), and its groups share ONE process (a +0
    group earlier in the same sequence turns the -0 group's answer)."""
    (tmp_path / "zeromod.py").write_text(textwrap.dedent('''
        import math
        import numpy as np
        ZEROS = []
        def f(I, D, r, steps, staircase=False, dtype="float32"):
            if I == 0 and math.copysign(1, I) > 0:
                ZEROS.append(I)
            if I == 0 and ZEROS:
                I = 0.0
            return np.full(len(steps), I)
    '''))
    from expdecay.conformance.adapters import Params, get_adapter
    from expdecay.conformance.adapters.client import SubprocessAdapter

    monkeypatch.syspath_prepend(str(tmp_path))
    a = get_adapter("python:zeromod:f", isolated=True, timeout=60, zygote=True)
    try:
        assert isinstance(a, SubprocessAdapter) and "fresh-sequence" in a.ops
        plus = Params("0", 1000, "0x1p-1", False, "float32")
        minus = Params("-0x0p+0", 1000, "0x1p-1", False, "float32")

        def signs(outcomes: Any) -> list[list[float]]:
            return [[math.copysign(1.0, v) for v in o.values] for o in outcomes]

        assert signs(a.evaluate_batch([(plus, [0, 5]), (minus, [0, 5])])) == [
            [1, 1], [1, 1]]  # the worker's state: -0 lost
        assert signs(a.evaluate_batch([(minus, [0, 5])], sequence=True)) == [[-1, -1]]
        assert signs(a.evaluate_batch([(minus, [1]), (plus, [1]), (minus, [1])],
                                      sequence=True)) == [[-1], [1], [1]]
    finally:
        a.close()


# ---------------------------------------------------------------------------
# 4. assert_conforms, the plugin, output paths
# ---------------------------------------------------------------------------


def _keras(I: Any, D: Any, r: Any, steps: Any, *, staircase: Any = False,
           dtype: str = "float32") -> np.ndarray:
    import expdecay_mutants

    return expdecay_mutants.baseline(I, D, r, steps, staircase=staircase, dtype=dtype)


def test_assert_conforms_refuses_complex_outputs() -> None:
    """``values + 5j``: every valid float32 test is without a usable answer
    (the old conversion dropped the imaginary part and passed 732 of them)."""
    assert_conforms(_keras, dtypes="float32", vectors=VECTORS / "examples.json")

    def complex_port(*a: Any, **k: Any) -> Any:
        return _keras(*a, **k) + 5j

    with pytest.raises(AssertionError, match="not a real number") as info:
        assert_conforms(complex_port, dtypes="float32", vectors=VECTORS / "examples.json")
    assert "0 failed" not in str(info.value) or "without a usable answer" in str(info.value)

    def zero_imaginary(*a: Any, **k: Any) -> Any:  # complex even when the value is real
        return _keras(*a, **k).astype(np.complex128)

    with pytest.raises(AssertionError, match="not a real number"):
        assert_conforms(zero_imaginary, dtypes="float32", vectors=VECTORS / "examples.json")


def test_named_implementation_with_complex_outputs_does_not_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rule for an implementation named ``python:module:function``
    and run in a worker: its adapter dropped the imaginary part (with a numpy
    warning) and passed the real part."""
    (tmp_path / "complexport.py").write_text(textwrap.dedent('''
        import expdecay_mutants

        def f(I, D, r, steps, staircase=False, dtype="float32"):
            return expdecay_mutants.baseline(I, D, r, steps, staircase=staircase,
                                             dtype=dtype) + 5j

        def g(I, D, r, steps, staircase=False, dtype="float32"):
            return expdecay_mutants.baseline(I, D, r, steps, staircase=staircase, dtype=dtype)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    docs = _docs("examples.json")
    [real] = check_implementation("python:complexport:g", {}, docs, ("keras",), rerun=False)
    [cplx] = check_implementation("python:complexport:f", {}, docs, ("keras",), rerun=False)
    assert real.passed >= 30 and real.not_run == 0
    # Not one passes, NaN expectations included (a complex output is no answer).
    assert cplx.passed == 0 and cplx.not_run == real.passed


def test_assert_conforms_refuses_outputs_that_are_not_exactly_floats() -> None:
    """A ``Fraction`` 2**-80 above the right value, and a string of the
    right value, were rounded or parsed into a pass."""
    def fraction_port(*a: Any, **k: Any) -> Any:
        return np.array([Fraction(v) + Fraction(1, 2**80) if math.isfinite(v) else v
                         for v in _keras(*a, **k).tolist()], dtype=object)

    def string_port(*a: Any, **k: Any) -> Any:
        return np.array([float(v).hex() for v in _keras(*a, **k).tolist()])

    for port in (fraction_port, string_port):
        with pytest.raises(AssertionError, match="not a real number"):
            assert_conforms(port, dtypes="float32", vectors=VECTORS / "examples.json")


def test_exact_outputs() -> None:
    values, bad = exact_outputs(np.array([0.5, 2.0**-1074, math.inf]), 3)
    assert values.tolist() == [0.5, 2.0**-1074, math.inf] and bad == {}
    values, bad = exact_outputs([2**53 + 1, 2**53, Fraction(1, 3), Fraction(3, 4), True,
                                 1 + 0j, "0.5"], 7)
    assert sorted(bad) == [0, 2, 4, 5, 6]
    assert values[1] == 2.0**53 and values[3] == 0.75
    with pytest.raises(AdapterError, match="expected 2 outputs"):
        exact_outputs([1.0, 2.0, 3.0], 2)


def _plugin_args() -> list[str]:
    from importlib.metadata import entry_points

    installed = any(ep.value == "expdecay.testing.plugin"
                    for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "expdecay.testing.plugin"]


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", *_plugin_args(), "-p",
                           "no:cacheprovider", "--rootdir", str(cwd), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_plugin_a_file_whose_hex_and_bits_disagree_is_one_collection_error(
        tmp_path: Path) -> None:
    doc = json.loads((VECTORS / "examples.json").read_text())
    test = doc["testGroups"][0]["tests"][0]
    test["exact"]["hex"] = "0x1p+0" if test["exact"]["hex"] != "0x1p+0" else "0x1p-1"
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(doc))
    ran = _pytest(tmp_path, "-q", "--expdecay-impl", "expdecay",
                  f"--expdecay-vectors={bad}", f"--expdecay-vectors={VECTORS / 'ranges.json'}")
    out = ran.stdout + ran.stderr
    assert ran.returncode == 2, out  # interrupted by a collection error
    assert "1 error" in out and "failed" not in out, out
    assert "does not match bits" in out and "tampered.json" in out


def test_plugin_refuses_an_empty_vectors_option(tmp_path: Path) -> None:
    """``--expdecay-vectors=`` named the current directory (whose vector
    file was then run): it is a usage error."""
    (tmp_path / "examples.json").write_text((VECTORS / "examples.json").read_text())
    ran = _pytest(tmp_path, "-q", "--expdecay-impl", "expdecay", "--expdecay-vectors=")
    assert ran.returncode == 4, ran.stdout + ran.stderr
    assert "--expdecay-vectors" in ran.stderr and "empty" in ran.stderr
    with pytest.raises(ValueError, match="empty path"):
        assert_conforms(_keras, vectors="")


def test_check_output_path(tmp_path: Path) -> None:
    assert check_output_path(str(tmp_path / "r.json"), "--report") == tmp_path / "r.json"
    # missing directories are created by the write
    assert check_output_path(str(tmp_path / "a" / "b" / "r.json"), "--report")
    assert list(tmp_path.iterdir()) == []  # the probe is gone, nothing created
    (tmp_path / "file").write_text("")
    for bad, why in ((tmp_path / "file" / "r.json", "is not a directory"),
                     (Path("/proc/r.json"), "cannot write '/proc/r.json'"),
                     (tmp_path, "is a directory"), ("", "must name a file")):
        with pytest.raises(ValueError, match=why) as info:
            check_output_path(str(bad), "--report")
        assert "--report" in str(info.value) and ".tmp" not in str(info.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "expdecay", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("flag", ["--report", "--markdown"])
def test_cli_refuses_an_unwritable_report_before_the_run(tmp_path: Path, flag: str) -> None:
    """/proc takes no new file: the run used to check everything, then fail
    naming its temporary file."""
    target = "/proc/out.json"
    ran = _cli("check", "--impl", "expdecay", flag, target)
    assert ran.returncode == 2
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"expdecay: error: {flag}: cannot write {target!r}: "), ran.stderr
    assert ".tmp" not in ran.stderr and ran.stdout == ""  # nothing was checked


def test_cli_refuses_unwritable_failures_before_the_campaign(tmp_path: Path) -> None:
    ran = _cli("check", "--impl", "expdecay", "--random", "50", "--write-failures",
               str(tmp_path))
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [
        f"expdecay: error: --write-failures: {str(tmp_path)!r} is a directory"], ran.stderr
    assert ran.stdout == ""
    ran = _cli("check", "--impl", "expdecay", "--random", "50", "--write-failures",
               "/proc/failures.json")
    assert ran.returncode == 2 and ran.stdout == ""
    assert ran.stderr.startswith("expdecay: error: --write-failures: cannot write "
                                 "'/proc/failures.json': ") and ".tmp" not in ran.stderr
