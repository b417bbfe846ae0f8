"""The fast runner gives the verdicts of the plain one.

* Groups go in batches (several groups per request, applicability in the
  same round trip) only to a worker that announces the ``batch`` op in its
  hello; a program speaking version 1 without it gets one request per group
  as before.
* Implementations are checked in parallel; the verdicts do not depend on it.
* The fresh re-run of failing groups forks each group from a zygote kept by
  the worker; a group that hangs there is bounded by the timeout, and no
  process is left behind.

Expected values come from the vector files (computed by the generator with
the oracle) or from the programs' own fixed answers, never from the runner.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from expdecay.conformance.adapters import Params, get_adapter
from expdecay.conformance.adapters.client import SubprocessAdapter
from expdecay.conformance.runner import (
    check_implementation,
    check_implementations,
    evaluate_docs,
    group_params,
)
from expdecay.conformance.vectors import decode_number, decode_result, iter_tests
from expdecay.floats import get_format
from support.paths import MUTANT_DIR, ROOT

VECTORS = ROOT / "conformance" / "vectors"


def _doc(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]


def _bits(x: float) -> str:
    return "nan" if math.isnan(x) else float(x).hex()


def test_a_batch_answers_as_single_requests_do() -> None:
    """The same groups through one batch request and one request each: the
    same bits, errors and reasons, and the vectors' expected bits."""
    doc = _doc("examples.json")
    a = get_adapter("expdecay", isolated=True, timeout=60)
    try:
        assert isinstance(a, SubprocessAdapter) and "batch" in a.ops
        items = [(group_params(g), [decode_number(t["step"]) for t in g["tests"]])
                 for g in doc["testGroups"]]
        batch = a.evaluate_batch(items)
        assert batch is not None and len(batch) == len(items)
        for (params, steps), got, g in zip(items, batch, doc["testGroups"], strict=True):
            one = a.evaluate_outcome(params, steps)
            assert [_bits(v) for v in got.values] == [_bits(v) for v in one.values]
            assert (got.errors, got.not_applicable, got.crashed) == (
                one.errors, one.not_applicable, one.crashed)
            fmt = get_format(g["dtype"])
            for i, t in enumerate(g["tests"]):
                if t["result"] == "valid":
                    assert _bits(got.values[i]) == _bits(decode_result(t["exact"], fmt, "x"))
    finally:
        a.close()


#: A version 1 program: ``evaluate`` only, no ``batch`` in its hello.  It
#: records every request it gets and answers 0.0625 for every step.
V1_PROGRAM = """
import json, sys
log = open(sys.argv[1], "a")
print(json.dumps({"protocol": "expdecay-conformance/1", "name": "v1", "version": "1",
                  "vectorised": True, "ops": OPS}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    log.write(json.dumps(req) + "\\n"); log.flush()
    if req.get("op") == "batch":
        print(json.dumps({"id": req["id"], "groups": [
            {"results": ["0x1p-4"] * len(g["steps"])} for g in req["groups"]]}), flush=True)
    else:
        print(json.dumps({"id": req["id"], "results": ["0x1p-4"] * len(req["steps"])}),
              flush=True)
"""


def _program(tmp_path: Path, ops: list[str]) -> tuple[str, Path]:
    script = tmp_path / "prog.py"
    script.write_text(V1_PROGRAM.replace("OPS", json.dumps(ops)))
    log = tmp_path / "requests.jsonl"
    return f"cmd:{shlex.join([sys.executable, str(script), str(log)])}", log


def _outputs_per_test(reports: list[Any]) -> dict[str, Any]:
    return {r.profile: (r.passed, r.failed, r.na, r.not_run,
                        [f.to_json() for f in r.files]) for r in reports}


@pytest.mark.parametrize("ops", [["evaluate"], ["evaluate", "applicable", "batch"]],
                         ids=["v1", "v1+batch"])
def test_a_program_gets_batches_only_when_it_announces_them(tmp_path: Path,
                                                            ops: list[str]) -> None:
    cmd, log = _program(tmp_path, ops)
    doc = _doc("examples.json")
    reps = check_implementation(cmd, {}, {"examples.json": doc}, ("exact", "keras"),
                                timeout=30, rerun=False)
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    groups = [g for g in doc["testGroups"] if g["tests"]]
    if "batch" in ops:
        assert all(r.get("op") == "batch" for r in requests)
        assert sum(len(r["groups"]) for r in requests) == len(groups) and len(requests) < len(
            groups)
    else:
        assert not any("groups" in r or r.get("op") == "batch" for r in requests)
        assert len(requests) == len(groups)  # one evaluate per group, no applicable query
    # Every valid test observed 0.0625, the program's fixed answer.
    for r in reps:
        for f in r.files:
            for e in f.failures:
                if e["expected"] != "an error":
                    assert e["observed"] == "0x1p-4"
        assert r.passed + r.failed + r.na + r.not_run == sum(len(g["tests"]) for g in groups)


def test_both_programs_get_the_same_verdicts(tmp_path: Path) -> None:
    doc = _doc("examples.json")
    got = []
    for ops in (["evaluate"], ["evaluate", "batch"]):
        sub = tmp_path / "-".join(ops)
        sub.mkdir()
        cmd, _ = _program(sub, ops)
        reps = check_implementation(cmd, {}, {"examples.json": doc}, ("exact", "keras"),
                                    timeout=30, rerun=False)
        got.append(_outputs_per_test(reps))
    assert got[0] == got[1]
    assert got[0]["keras"][1] > 0  # the fixed answer fails somewhere: the check can fail


def test_parallel_checks_give_the_verdicts_of_sequential_ones() -> None:
    """Three mutants checked one at a time and all at once: identical reports."""
    mutants = MUTANT_DIR
    if str(mutants) not in sys.path:
        sys.path.insert(0, str(mutants))  # the workers inherit sys.path
    docs = {n: _doc(n) for n in ("examples.json", "special_values.json")}
    configs: list[tuple[str, dict[str, Any]]] = [
        (f"python:expdecay_mutants:{m}", {}) for m in ("process_state", "baseline",
                                                        "negative_zero_lost")]
    runs = []
    for jobs in (1, 3):
        reps = [r for rs in check_implementations(configs, docs, ("exact", "keras"), 60.0,
                                                  jobs=jobs) for r in rs]
        runs.append(([(r.name, _outputs_per_test([r])) for r in reps],
                     sum(r.process_state for r in reps)))
    assert runs[0] == runs[1]
    assert runs[0][1] > 0  # the process-state mutant is seen as such (the re-run ran)


def test_a_fresh_rerun_that_hangs_is_bounded_and_leaves_nothing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """A group whose fresh re-run never answers: the re-run is given up
    after the timeout (the first verdict stands), and every process the
    check started (worker, zygote, fresh children) has ended."""
    (tmp_path / "hangmod.py").write_text(textwrap.dedent('''
        import os, time
        import numpy as np
        EVALUATED = []
        def f(I, D, r, steps, staircase=False, dtype="float32"):
            with open(os.environ["EXPDECAY_TEST_PIDS"], "a") as fh:
                fh.write(f"{os.getpid()}\\n")
            if not EVALUATED and os.path.exists(os.environ["EXPDECAY_TEST_PIDS"] + ".main"):
                time.sleep(3600)  # a fresh child (the worker evaluated before): no answer
            EVALUATED.append(1)
            with open(os.environ["EXPDECAY_TEST_PIDS"] + ".main", "w") as fh:
                fh.write(str(os.getpid()))
            return np.full(len(steps), 0.5)
    '''))
    pids = tmp_path / "pids"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EXPDECAY_TEST_PIDS", str(pids))
    doc = _doc("examples.json")
    doc["testGroups"] = doc["testGroups"][:2]
    # A short request timeout (the hung re-run is given up after it), but a
    # start-up allowance that a loaded machine meets (2 x 3 s was missed at
    # load average 20, and the worker was reported unavailable).
    from expdecay.conformance import runner
    from expdecay.conformance.adapters import client, registry

    for module in (runner, registry, client):
        monkeypatch.setattr(module, "STARTUP_FACTOR", 20.0)
    t0 = time.monotonic()
    reps = check_implementation("python:hangmod:f", {}, {"examples.json": doc}, ("keras",),
                                timeout=3, rerun=True)
    took = time.monotonic() - t0
    [rep] = reps
    assert not rep.unavailable, rep.error
    assert rep.failed > 0 and rep.process_state == 0 and rep.not_run == 0
    assert took < 90
    seen = {int(p) for p in pids.read_text().split()}
    assert len(seen) >= 2  # the worker and at least one fresh child evaluated
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in seen):
        assert time.monotonic() < deadline, "a process of the check is still running"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_fresh_batch_of_a_worker_finds_process_state(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Directly through the protocol: a cache-like defect seen in the worker
    (+0 after a +0 group) is absent when the same group is evaluated fresh.
    Expected: the vectors' bits for I = -0 (a negative zero)."""
    (tmp_path / "statemod.py").write_text(textwrap.dedent('''
        import math
        import numpy as np
        from expdecay import ExponentialDecay
        ZEROS = []
        def f(I, D, r, steps, staircase=False, dtype="float32"):
            if I == 0 and math.copysign(1, I) > 0:
                ZEROS.append(I)
            if I == 0 and ZEROS:
                I = 0.0  # the cached +0 answers for -0
            return ExponentialDecay(I, D, r, staircase=staircase, dtype=dtype)(np.asarray(steps))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    a = get_adapter("python:statemod:f", isolated=True, timeout=60, zygote=True)
    try:
        assert isinstance(a, SubprocessAdapter) and "fresh-batch" in a.ops
        plus = Params("0", 1000, "0x1p-1", False, "float32")
        minus = Params("-0x0p+0", 1000, "0x1p-1", False, "float32")
        first = a.evaluate_batch([(plus, [0, 5]), (minus, [0, 5])])
        assert first is not None
        assert [_bits(v) for v in first[1].values] == ["0x0.0p+0", "0x0.0p+0"]  # state
        fresh = a.evaluate_batch([(minus, [0, 5])], fresh=True)
        assert fresh is not None
        assert [_bits(v) for v in fresh[0].values] == ["-0x0.0p+0", "-0x0.0p+0"]
    finally:
        a.close()


def test_progress_names_every_implementation() -> None:
    lines: list[str] = []
    docs = {"examples.json": _doc("examples.json")}
    for _ in check_implementations([("expdecay", {})], docs, ("exact", "keras"), 60.0,
                                   progress=lines.append):
        pass
    for shown in ("expdecay", "expdecay[order=keras]"):
        assert f"checking {shown} ..." in lines
        assert any(x.startswith(f"  {shown}: started in ") for x in lines)
        assert any(x.startswith(f"  {shown}: done in ") for x in lines)


def test_evaluate_docs_only_the_groups_asked(tmp_path: Path) -> None:
    doc = _doc("examples.json")
    a = get_adapter("expdecay", isolated=True, timeout=60)
    try:
        out = evaluate_docs(a, {"examples.json": doc}, {"examples.json": {1}}, fresh=False)
    finally:
        a.close()
    want = {t["tcId"] for t in doc["testGroups"][1]["tests"]}
    got = out["examples.json"]
    assert set(got) == want
    # and every output has the vectors' exact bits
    for g, t in iter_tests(doc):
        if t["tcId"] in got and t["result"] == "valid":
            assert _bits(got[t["tcId"]][0]) == _bits(
                decode_result(t["exact"], get_format(g["dtype"]), "x"))
