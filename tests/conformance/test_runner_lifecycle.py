"""Findings of a review of the runner, one test each.

* A ``batch`` request is allowed one request timeout per group (a fresh
  batch also scales with the children run at once), so that a slow but live
  implementation is not ended for being sent a large batch.
* A check that stops early ends the workers it started, and no other (not
  another run's, not its caller's); its temporary directory is never
  removed from under a check still running.
* ``jobs`` below 1 is an error naming it (one line and exit 2 on the CLI).
* ``evaluate_file`` and the runner's own group-by-group path give the same
  outputs (one shared implementation).
* ``--step-mode`` says which option it needs; ``--max-failures`` is checked
  in one place.

The implementations are throwaway ``cmd:`` programs or ``python:`` modules
written into ``tmp_path``, with fixed answers; expected values are those
fixed answers, never the runner's.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from expdecay.cli import main
from expdecay.conformance import runner
from expdecay.conformance.adapters import Params, client, codec, get_adapter
from expdecay.conformance.adapters.client import SubprocessAdapter
from expdecay.conformance.runner import check_implementations, evaluate_docs, evaluate_file
from support.paths import ROOT

EXAMPLES = ROOT / "conformance" / "vectors" / "examples.json"
PARAMS = Params(0.1, 1000, 0.5, False, "float32")


def _doc() -> dict[str, Any]:
    return json.loads(EXAMPLES.read_text())  # type: ignore[no-any-return]


def _cmd(tmp_path: Path, name: str, source: str) -> str:
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(source))
    return "cmd:" + shlex.join([sys.executable, str(script)])


# A program announcing ``batch`` that takes 0.3 s per group of a batch.
SLOW_BATCH = '''
    import json, sys, time
    def send(obj):
        sys.stdout.write(json.dumps(obj) + "\\n"); sys.stdout.flush()
    send({"protocol": "expdecay-conformance/1", "name": "slow", "version": "1",
          "ops": ["evaluate", "applicable", "batch"]})
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("op") == "batch":
            out = []
            for g in req["groups"]:
                time.sleep(0.3)
                out.append({"results": ["0x1p-4"] * len(g["steps"])})
            send({"id": req["id"], "groups": out})
        else:
            send({"id": req["id"], "results": ["0x1p-4"] * len(req["steps"])})
'''


def test_a_large_batch_of_a_slow_implementation_is_not_ended(tmp_path: Path) -> None:
    """10 groups at 0.3 s each (3 s) with a 1 s request timeout: the batch is
    answered (1 s per group allowed), the worker is not restarted."""
    a = get_adapter(_cmd(tmp_path, "slow", SLOW_BATCH), timeout=1.0)
    try:
        assert isinstance(a, SubprocessAdapter) and a.broken is None
        got = a.evaluate_batch([(PARAMS, [0, 1])] * 10)
        assert got is not None and a.restarts == 0
        assert all(o.values.tolist() == [0.0625, 0.0625] and not o.crashed for o in got)
    finally:
        a.close()


def test_batch_deadlines() -> None:
    """The documented rule: one timeout per group; a fresh batch of n groups
    with k children at once gets n + k timeouts, each child k."""
    assert codec.batch_deadline(2.0, 512) == 1024.0
    assert codec.batch_deadline(2.0, 0) == 2.0
    assert codec.fresh_batch_deadline(2.0, 10, 4) == 28.0
    assert codec.fresh_child_timeout(2.0, 4) == 8.0
    assert codec.batch_deadline(codec.MAX_TIMEOUT, 3) == codec.MAX_TIMEOUT


SLOW_CHILD = '''
    import os, time
    import numpy as np
    def f(I, D, r, steps, staircase=False, dtype="float32"):
        time.sleep(float(os.environ["EXPDECAY_TEST_SLEEP"]))
        return np.full(len(steps), 0.0625)
'''


def test_fresh_children_run_at_once_are_allowed_their_share(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two fresh children at once, each taking 1.3 request timeouts: both
    answer (each is allowed two timeouts, since they share the processors)."""
    (tmp_path / "slowchild.py").write_text(textwrap.dedent(SLOW_CHILD))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("EXPDECAY_TEST_SLEEP", "2.6")
    monkeypatch.setattr(client, "FRESH_PARALLEL", 2)
    a = get_adapter("python:slowchild:f", isolated=True, timeout=2.0, zygote=True)
    try:
        assert isinstance(a, SubprocessAdapter) and "fresh-batch" in a.ops
        got = a.evaluate_batch([(PARAMS, [0, 1]), (PARAMS, [2])], fresh=True)
        assert got is not None
        assert [o.crashed for o in got] == [{}, {}]
        assert [o.values.tolist() for o in got] == [[0.0625, 0.0625], [0.0625]]
    finally:
        a.close()


ANSWERS = '''
    import json, sys, time
    def send(obj):
        sys.stdout.write(json.dumps(obj) + "\\n"); sys.stdout.flush()
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
    send({"protocol": "expdecay-conformance/1", "name": "answers", "version": "1"})
    for line in sys.stdin:
        req = json.loads(line)
        send({"id": req["id"], "results": ["0x1p-4"] * len(req["steps"])})
'''


def test_stopping_a_check_ends_only_its_own_workers(tmp_path: Path) -> None:
    """The caller has a worker of its own; a run whose second check waits for
    a slow start-up is closed after the first: the slow worker is ended
    (the close returns well before its 60 s start-up), the caller's is not."""
    fast = _cmd(tmp_path, "answers", ANSWERS)
    slow = fast + " 60"
    mine = get_adapter(fast, timeout=30)
    try:
        assert isinstance(mine, SubprocessAdapter) and mine._worker is not None
        proc = mine._worker.proc
        docs = {"examples.json": _doc()}
        run = check_implementations([("expdecay", {}), (slow, {})], docs, ("keras",),
                                   timeout=30, rerun=False)
        t0 = time.monotonic()
        next(run)
        run.close()
        assert time.monotonic() - t0 < 25
        assert proc.poll() is None, "the caller's worker was ended"
        got = mine.evaluate_outcome(PARAMS, [0, 1])
        assert got.values.tolist() == [0.0625, 0.0625] and mine.restarts == 0
    finally:
        mine.close()


def test_the_temporary_directory_outlives_a_check_still_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A check held up past the stop grace (here in its progress callback)
    still has the run's temporary directory (the JAX cache lives there); the
    directory goes once that check ends."""
    made: list[str] = []
    real = tempfile.TemporaryDirectory

    def recording(*args: Any, **kwargs: Any) -> Any:
        d = real(*args, **kwargs)
        made.append(d.name)
        return d

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recording)
    monkeypatch.setattr(runner, "STOP_GRACE", 0.5, raising=False)
    held, release = threading.Event(), threading.Event()
    seen: list[bool] = []
    cmd = _cmd(tmp_path, "answers", ANSWERS)

    def progress(line: str) -> None:
        if line.startswith(f"checking {cmd}"):
            held.set()
            release.wait(60)
            seen.append(os.path.isdir(made[0]))

    run = check_implementations([("expdecay", {}), (cmd, {})], {"examples.json": _doc()},
                                ("keras",), timeout=30, rerun=False, progress=progress)
    next(run)
    assert held.wait(30)
    run.close()
    release.set()
    deadline = time.monotonic() + 30
    while not seen or os.path.isdir(made[0]):
        assert time.monotonic() < deadline, "the directory was never removed"
        time.sleep(0.05)
    assert seen == [True]


@pytest.mark.parametrize("jobs", [0, -2])
def test_jobs_below_one_is_an_error(jobs: int) -> None:
    with pytest.raises(ValueError, match=rf"jobs .*got {jobs}"):
        check_implementations([("expdecay", {})], {"examples.json": _doc()}, ("keras",),
                              jobs=jobs)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expdecay: error:"), err
    return lines[0]


def test_jobs_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--impl", "expdecay", "--vectors", str(EXAMPLES),
                 "--jobs", "0"]) == 2
    line = _one_error_line(capsys)
    assert "jobs" in line and "got 0" in line
    assert main(["check", "--impl", "expdecay", "--vectors", str(EXAMPLES), "--jobs", "1",
                 "--profile", "keras"]) == 0


# One group answered "na" step by step (not through "applicable"), one
# group with a whole-request error, the rest 0.0625.
MIXED = '''
    import json, sys
    def send(obj):
        sys.stdout.write(json.dumps(obj) + "\\n"); sys.stdout.flush()
    send({"protocol": "expdecay-conformance/1", "name": "mixed", "version": "1"})
    for line in sys.stdin:
        req = json.loads(line)
        p = req["params"]
        if p["dtype"] == "float16":
            send({"id": req["id"], "results": [{"na": "no float16"}] * len(req["steps"])})
        elif p["dtype"] == "bfloat16":
            send({"id": req["id"], "error": "no bfloat16"})
        else:
            send({"id": req["id"], "results": ["0x1p-4"] * len(req["steps"])})
'''


def test_evaluate_file_gives_the_runner_s_outputs(tmp_path: Path) -> None:
    """``evaluate_file`` and the runner's group-by-group path agree output by
    output (a group answered "na" step by step included)."""
    doc = _doc()
    assert {g["dtype"] for g in doc["testGroups"]} >= {"float16", "bfloat16", "float32"}
    a = get_adapter(_cmd(tmp_path, "mixed", MIXED), timeout=30)
    try:
        one = evaluate_file(a, doc)
        other = evaluate_docs(a, {"x": doc})["x"]
    finally:
        a.close()
    assert repr(sorted(one.items())) == repr(sorted(other.items()))
    na = [o for o in one.values() if o[2] is not None]
    assert na and all(o == (None, None, "no float16", None) for o in na)
    assert any(o[1] == "no bfloat16" for o in one.values())


@pytest.mark.parametrize("argv, needle", [
    (["--impl", "torch", "--step-mode", "scalar"], "--step-mode applies to --impl keras"),
    (["--step-mode", "scalar"], "--step-mode needs --impl"),
    (["--x64"], "--x64 needs --impl"),
    (["--backend", "jax"], "--backend needs --impl"),
])
def test_an_implementation_option_names_the_option_it_needs(
        argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", *argv, "--vectors", str(EXAMPLES)]) == 2
    assert needle in _one_error_line(capsys)


def test_max_failures_is_checked_in_one_place(capsys: pytest.CaptureFixture[str]) -> None:
    """The command line reports the campaign's own check of the value."""
    from expdecay.conformance import campaign

    with pytest.raises(ValueError) as api:
        campaign.check_random("expdecay", {}, 5, 0, ("keras",), None, max_failures=-1)
    assert main(["check", "--impl", "expdecay", "--random", "5", "--max-failures", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"expdecay: error: {api.value}"]  # before any progress
    assert "Traceback" not in err
