"""Start-up hubs (expdecay.conformance.adapters.hub): workers forked from a
process that imported their framework once.

The hubs here import cheap modules (``json``, ``fractions``) so that the
tests do not depend on a framework; the expected outputs come from exact
rationals (powers of two), not from the code under test.
"""

from __future__ import annotations

import json
import os
import time
from fractions import Fraction
from typing import Any

import pytest

from expdecay.conformance import runner
from expdecay.conformance.adapters import Params, get_adapter
from expdecay.conformance.adapters import hub as hub_module
from expdecay.conformance.adapters.client import SubprocessAdapter
from expdecay.conformance.adapters.hub import Hub
from expdecay.conformance.adapters.registry import worker_env
from expdecay.conformance.vectors import load_vector_file

# 0.5 ** (step / 2) for even steps: exact powers of two.
PARAMS = Params("1", "2", "0.5", False, "float64")
STEPS = [0, 2, 4, 40]
EXPECTED = [float(Fraction(1, 2) ** (s // 2)) for s in STEPS]


@pytest.fixture
def hub() -> Any:
    h = Hub(["json", "fractions"], worker_env(), timeout=60.0)
    assert h.error is None, h.error
    yield h
    h.close()


def test_a_worker_forked_from_a_hub_answers_like_a_started_one(hub: Hub) -> None:
    a = get_adapter("expdecay", isolated=True, hub=hub)
    b = get_adapter("expdecay", isolated=True)
    try:
        assert isinstance(a, SubprocessAdapter) and a.broken is None, a.broken
        out_a = a.evaluate_outcome(PARAMS, STEPS)
        out_b = b.evaluate_outcome(PARAMS, STEPS)
        assert list(out_a.values) == EXPECTED == list(out_b.values)
        assert not out_a.errors and not out_a.crashed
        worker = a._worker
        assert worker is not None
        pid = worker.proc.pid
        assert isinstance(worker.proc, hub_module.HubProcess)  # it did come from the hub
        assert os.getsid(pid) == pid  # leader of its own session: its group can be ended
    finally:
        a.close()
        b.close()
    assert worker.proc.poll() is not None  # its exit was reported by the hub


def test_the_exit_status_of_a_forked_worker_is_reported(hub: Hub) -> None:
    import tempfile

    with tempfile.TemporaryFile() as err:
        proc = hub.spawn(json.dumps({"name": "no-such-implementation"}), worker_env(), err, 60.0)
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["protocol"] == "none" and first.get("kind") == "lookup"
        assert proc.wait(timeout=30.0) == 3  # worker.main's status for a failed start-up
        assert proc.stdin is not None
        proc.stdin.close()
        proc.stdout.close()


def test_a_hub_that_cannot_import_reports_it_and_starts_nothing() -> None:
    h = Hub(["expdecay_no_such_module_anywhere"], worker_env(), timeout=60.0)
    try:
        assert h.error is not None and "ModuleNotFoundError" in h.error
        with pytest.raises(OSError):
            h.spawn(json.dumps({"name": "expdecay"}), worker_env(), open(os.devnull, "rb"), 5.0)
    finally:
        h.close()


def test_a_closed_hub_means_a_worker_of_its_own() -> None:
    h = Hub(["json"], worker_env(), timeout=60.0)
    assert h.error is None
    h.close()
    a = get_adapter("expdecay", isolated=True, hub=h)
    try:
        assert isinstance(a, SubprocessAdapter) and a.broken is None, a.broken
        assert list(a.evaluate_outcome(PARAMS, STEPS).values) == EXPECTED
        assert a._worker is not None and not isinstance(a._worker.proc, hub_module.HubProcess)
    finally:
        a.close()


def test_a_hub_ends_when_the_runner_closes_it_with_workers_still_running(hub: Hub) -> None:
    a = get_adapter("expdecay", isolated=True, hub=hub)
    assert isinstance(a, SubprocessAdapter)
    try:
        assert a.broken is None
        hub_proc = hub.proc
        hub.close()
        assert hub_proc is not None and hub_proc.poll() is not None  # the hub is gone
        assert list(a.evaluate_outcome(PARAMS, STEPS).values) == EXPECTED  # the worker is not
    finally:
        a.close()
    assert a._worker is None


def test_check_implementations_shares_a_hub_and_gives_the_same_reports(
        monkeypatch: pytest.MonkeyPatch) -> None:
    docs = {p.name: load_vector_file(p) for p in runner.vector_paths(None)
            if p.name == "examples.json"}
    configs: list[tuple[str, dict[str, Any]]] = [("expdecay", {}), ("expdecay", {})]

    def reports() -> list[Any]:
        out = []
        for reps in runner.check_implementations(configs, docs, runner.PROFILES):
            out += [(r.name, r.profile, [f.to_json() for f in r.files]) for r in reps]
        return out

    plain = reports()
    spawned: list[int] = []
    real_spawn = Hub.spawn

    def spawn(self: Hub, *args: Any, **kwargs: Any) -> Any:
        proc = real_spawn(self, *args, **kwargs)
        spawned.append(proc.pid)
        return proc

    monkeypatch.setattr(Hub, "spawn", spawn)
    monkeypatch.setitem(hub_module.HUB_MODULES, "test-family", ("json",))
    monkeypatch.setattr(runner, "hub_family", lambda name, options: "test-family")
    shared = reports()
    assert len(spawned) == 4  # two configurations, both orders each: every worker came from it
    assert json.dumps(shared, sort_keys=True) == json.dumps(plain, sort_keys=True)


def test_the_hub_reaps_its_workers_promptly(hub: Hub) -> None:
    a = get_adapter("expdecay", isolated=True, hub=hub)
    assert isinstance(a, SubprocessAdapter) and a._worker is not None
    proc = a._worker.proc
    a.close()
    deadline = time.monotonic() + 10.0
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)  # reaped, not a zombie


def test_a_hub_without_workers_exits_by_itself_when_closed() -> None:
    h = Hub(["json"], worker_env(), timeout=60.0)
    assert h.error is None and h.proc is not None
    a = get_adapter("expdecay", isolated=True, hub=h)
    a.close()  # its worker has ended; the hub has nothing left to report
    h.close()
    assert h.proc.returncode == 0  # it saw the end of its socket; it was not killed


def test_a_hub_that_did_not_answer_in_time_is_not_asked_again() -> None:
    """Its late answer would otherwise be taken for the next request's."""
    import signal
    import tempfile

    h = Hub(["json"], worker_env(), timeout=60.0)
    assert h.error is None and h.proc is not None
    spec = json.dumps({"name": "expdecay"})
    try:
        os.kill(h.proc.pid, signal.SIGSTOP)
        with tempfile.TemporaryFile() as err:
            with pytest.raises(OSError, match="did not answer"):
                h.spawn(spec, worker_env(), err, 0.5)
            os.kill(h.proc.pid, signal.SIGCONT)
            with pytest.raises(OSError, match="did not answer"):
                h.spawn(spec, worker_env(), err, 30.0)
    finally:
        os.kill(h.proc.pid, signal.SIGCONT)
        h.close()
