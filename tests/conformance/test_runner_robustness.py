"""The conformance runner against misbehaving implementations: every wait is
bounded, every failure is charged to the steps concerned, no process is left
behind, and bad arguments become one-line errors (items of a fuzzing report).

The implementations are throwaway ``cmd:`` programs written into ``tmp_path``
and run with this interpreter; each writes its pid (and its children's) to a
file, so that the tests can check that the runner ended them.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from expdecay import cli
from expdecay.cli import main
from expdecay.conformance.adapters import (
    ImplementationLookupError,
    Params,
    check_options,
    client,
    codec,
    get_adapter,
    parse_options,
)
from expdecay.conformance.adapters.client import (
    MAX_QUEUED_LINES,
    SubprocessAdapter,
    Worker,
    WorkerError,
)
from expdecay.conformance.adapters.codec import decode_value
from support.paths import ROOT

EXAMPLES = ROOT / "conformance" / "vectors" / "examples.json"
PARAMS = Params(0.1, 1000, 0.5, False, "float32")

#: Helpers every test program starts with.  ``argv[1]`` is the pid file.
PRELUDE = '''\
import json, os, subprocess, sys, time
def send(obj):
    sys.stdout.write(json.dumps(obj) + "\\n")
    sys.stdout.flush()
def hello(**extra):
    send({"protocol": "expdecay-conformance/1", "name": "test-program", **extra})
def requests():
    for line in sys.stdin:
        yield json.loads(line)
def sleeper():
    """A child that inherits stdout and outlives us unless its group is ended."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]).pid
def pids(*more):
    """Record this process's pid and ``more`` (one file per process)."""
    path = os.path.join(sys.argv[1], str(os.getpid()))
    with open(path + ".tmp", "w") as fh:
        fh.write(" ".join(str(p) for p in (os.getpid(), *more)))
    os.replace(path + ".tmp", path)
'''


def program(tmp_path: Path, body: str, name: str = "prog") -> tuple[str, Path]:
    """``cmd:`` name of a program running ``PRELUDE + body``, and the
    directory where each of its runs records its pids."""
    script = tmp_path / f"{name}.py"
    script.write_text(PRELUDE + body)
    piddir = tmp_path / f"{name}.pids"
    piddir.mkdir()
    cmd = " ".join(shlex.quote(str(x)) for x in (sys.executable, script, piddir))
    return f"cmd:{cmd}", piddir


def read_pids(piddir: Path, wait: float = 10.0) -> list[int]:
    """Every pid recorded by the runs of a program (waits for the first)."""
    deadline = time.monotonic() + wait
    while not (files := [f for f in piddir.iterdir() if f.suffix != ".tmp"]):
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.02)
    return [int(p) for f in files for p in f.read_text().split()]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def ended(pids: list[int], wait: float = 5.0) -> bool:
    deadline = time.monotonic() + wait
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """``fn()``, failing the test (not hanging it) if it takes longer."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still waiting after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expdecay: error:"), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------
# Hangs
# ---------------------------------------------------------------------------


def test_closed_output_is_a_failure_not_a_hang(tmp_path: Path) -> None:
    """A program that closes stdout and stays alive: the step fails within
    about a second (the 30 s timeout plays no part) and the program is killed."""
    cmd, pidfile = program(tmp_path, """
pids()
hello()
for req in requests():
    os.close(1)
    time.sleep(60)
""")
    a = get_adapter(cmd, timeout=30)
    out = within(10, lambda: a.evaluate_outcome(PARAMS, [3]))
    a.close()
    assert "closed its output" in out.crashed[0] and math.isnan(out.values[0])
    assert not out.errors  # no answer: not run, never an error that could pass
    assert ended(read_pids(pidfile))


def test_undecodable_output_is_a_failure_and_is_killed(tmp_path: Path) -> None:
    cmd, pidfile = program(tmp_path, """
pids()
hello()
for req in requests():
    os.write(1, b'{"id": 1, "results": ["\\xff\\xfe"]}\\n')
    time.sleep(60)
""")
    a = get_adapter(cmd, timeout=30)
    out = within(10, lambda: a.evaluate_outcome(PARAMS, [3]))
    a.close()
    assert "not UTF-8" in out.crashed[0] and not out.errors
    assert ended(read_pids(pidfile))


def test_hello_wait_follows_the_timeout(tmp_path: Path) -> None:
    """No hello line: given up after STARTUP_FACTOR * timeout, not 120 s."""
    cmd, pidfile = program(tmp_path, "pids()\ntime.sleep(60)\n")
    t0 = time.monotonic()
    a = within(10, lambda: get_adapter(cmd, timeout=0.5))
    assert time.monotonic() - t0 >= 0.5 * codec.STARTUP_FACTOR
    assert a.broken == "timeout: no answer to start-up within 1 s"
    assert a.startup_timeout == 1.0
    assert ended(read_pids(pidfile))
    out = a.evaluate_outcome(PARAMS, [1, 2])
    assert out.crashed == {0: a.broken, 1: a.broken} and not out.errors


def test_request_the_program_does_not_read_is_bounded(tmp_path: Path) -> None:
    """4096 steps are more than a pipe holds: writing them must time out too."""
    cmd, pidfile = program(tmp_path, "pids()\nhello()\ntime.sleep(60)\n")
    a = get_adapter(cmd, timeout=0.3)
    out = within(15, lambda: a.evaluate_outcome(PARAMS, [10**15 + i for i in range(4096)]))
    a.close()
    assert len(out.crashed) == 4096 and all("timeout" in e for e in out.crashed.values())
    assert a.broken  # given up after a few failures in a row, not 4096 timeouts
    assert ended(read_pids(pidfile))


def test_timeouts_are_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (0, -1, math.nan, math.inf, 1e300):
        with pytest.raises(ValueError, match="timeout must be > 0"):
            SubprocessAdapter(["true"], timeout=bad)
    assert main(["check", "--impl", "expdecay", "--timeout", "1e300"]) == 2
    assert "--timeout must be > 0 and at most 86400" in one_error_line(capsys)


# ---------------------------------------------------------------------------
# Resource requests
# ---------------------------------------------------------------------------


ANALYZE = ["analyze", "--initial-learning-rate", "0.1", "--decay-steps", "1000",
           "--decay-rate", "0.96", "--steps", "0:10", "--quiet"]


def test_workers_beyond_the_cap_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ANALYZE, "--workers", "4300"]) == 2
    assert one_error_line(capsys) == (
        f"expdecay: error: argument --workers: at most {cli.MAX_WORKERS}; got 4300")


def test_no_more_workers_than_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import expdecay.cli.analyze as analysis

    seen: list[int] = []

    def fake_run(args: Any) -> int:
        seen.append(args.workers)
        return 0

    monkeypatch.setattr(analysis, "run_analyze", fake_run)
    monkeypatch.setattr(cli, "usable_cores", lambda: 2)
    assert main([*ANALYZE, "--workers", "48"]) == 0
    assert main([*ANALYZE, "--workers", "1"]) == 0
    assert main(ANALYZE) == 0
    assert seen == [2, 1, 2]


def test_worker_cap_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"more than {cli.MAX_WORKERS} is refused" in text
    assert "more are never started" in text


# ---------------------------------------------------------------------------
# One-line errors
# ---------------------------------------------------------------------------


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))  # workers inherit sys.path
    return name


def test_unknown_python_module_is_a_lookup_error() -> None:
    with pytest.raises(ImplementationLookupError, match="cannot import 'no_such_mod_q'"):
        get_adapter("python:no_such_mod_q:f")
    with pytest.raises(ImplementationLookupError, match="cannot import 'no_such_mod_q'"):
        get_adapter("python:no_such_mod_q:f", isolated=True, timeout=30)
    with pytest.raises(ImplementationLookupError, match="must be one of"):
        get_adapter("nonsense")
    assert issubclass(ImplementationLookupError, ValueError)


def test_analyze_with_unknown_python_module_is_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ANALYZE, "--impl", "python:no_such_mod_q:f"]) == 2
    line = one_error_line(capsys)
    assert "cannot import 'no_such_mod_q'" in line and "ModuleNotFoundError" in line


def test_cli_reports_a_lookup_error_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def lookup(args: Any) -> int:
        raise ImplementationLookupError("python:x:f: cannot import 'x'")

    monkeypatch.setattr(cli, "run", lookup)
    assert main(["eval", "--initial-learning-rate", "0.1", "--decay-steps", "1",
                 "--decay-rate", "0.5", "--step", "1"]) == 2
    assert one_error_line(capsys) == "expdecay: error: python:x:f: cannot import 'x'"


@pytest.mark.parametrize("value", ['{"b":{"c":1}}', '[1]', " [[", "[" * 100000])
def test_nested_option_value_is_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ANALYZE, "--impl", "keras", "--option", f"a={value}"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("expdecay: error: argument --option: option 'a':")
    assert "not a list or object" in line


def test_options_are_scalars() -> None:
    assert parse_options(["x64=true", "backend=jax", "n=3", "s=\"[\"", "z=null"]) == {
        "x64": True, "backend": "jax", "n": 3, "s": "[", "z": None}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_options(["novalue"])
    deep: list[Any] = []
    for _ in range(10000):
        deep = [deep]
    with pytest.raises(TypeError, match="option 'a' must be .* got a list"):
        check_options({"a": deep})
    with pytest.raises(TypeError, match="got a dict"):
        get_adapter("expdecay", a={"b": {"c": 1}})


def test_module_raising_at_import_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    mod = _module(tmp_path, monkeypatch, "raises_at_import_q",
                  "raise RuntimeError('deliberate failure at import')\n")
    assert main(["check", "--impl", f"python:{mod}:f", "--vectors", str(EXAMPLES)]) == 2
    line = one_error_line(capsys)
    assert "cannot import 'raises_at_import_q' (RuntimeError: deliberate failure" in line
    assert mod not in sys.modules  # imported in a worker only
    with pytest.raises(ImplementationLookupError, match="RuntimeError: deliberate"):
        get_adapter(f"python:{mod}:f")  # in-process, as `expdecay analyze` does


def test_module_exiting_at_import_does_not_end_the_runner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    mod = _module(tmp_path, monkeypatch, "exits_at_import_q", "import sys\nsys.exit(5)\n")
    assert main(["check", "--impl", f"python:{mod}:f", "--vectors", str(EXAMPLES)]) == 2
    line = one_error_line(capsys)
    assert "cannot import 'exits_at_import_q' (SystemExit: 5)" in line
    assert mod not in sys.modules
    with pytest.raises(ImplementationLookupError, match=r"SystemExit: 5"):
        get_adapter(f"python:{mod}:f")


def _answering(tmp_path: Path, answer: str) -> tuple[str, Path]:
    """A program answering every request with ``answer`` (a Python expression
    of the line to write, ``rid`` and ``n`` bound)."""
    return program(tmp_path, f"""
pids()
hello()
for req in requests():
    rid, n = req["id"], len(req["steps"])
    sys.stdout.write({answer} + "\\n")
    sys.stdout.flush()
""")


def test_deeply_nested_answer_is_charged_to_the_steps(tmp_path: Path) -> None:
    cmd, pidfile = _answering(tmp_path, '"[" * 100000')
    a = get_adapter(cmd, timeout=30)
    out = within(20, lambda: a.evaluate_outcome(PARAMS, [1, 2]))
    a.close()
    assert set(out.crashed) == {0, 1} and not out.errors
    assert all("JSON nested too deeply" in e for e in out.crashed.values())
    assert ended(read_pids(pidfile))


def test_output_beyond_float64_is_a_protocol_error(tmp_path: Path) -> None:
    """"1e400" is not read as infinity: the step fails, the others pass."""
    cmd, _ = _answering(
        tmp_path, 'json.dumps({"id": rid, "results": ["0x1p-4", "1e400", "-inf"][:n]})')
    a = get_adapter(cmd, timeout=30)
    out = a.evaluate_outcome(PARAMS, [1, 2, 3])
    a.close()
    assert out.values[0] == 0.0625 and out.values[2] == -math.inf
    assert out.crashed == {1: "protocol: output '1e400' overflows float64 "
                              "(an infinite output is 'inf')"}
    assert not out.errors


@pytest.mark.parametrize("text, value", [
    ("0x1.8p-1", 0.75), ("-0x0p+0", -0.0), ("16777216", 16777216.0), ("0.5", 0.5),
    ("1e2", 100.0), ("0x1p-1074", 5e-324), ("0x1.fffffffffffffp1023", 1.7976931348623157e308),
    ("inf", math.inf), ("-INF", -math.inf), ("-Infinity", -math.inf), (" 0x1p0 ", 1.0),
    ("0x.8p1", 1.0), ("1.e0", 1.0),
])
def test_decode_value_exact(text: str, value: float) -> None:
    got = decode_value(text)
    assert got == value and math.copysign(1, got) == math.copysign(1, value)


@pytest.mark.parametrize("text, needle", [
    ("1e400", "overflows float64"), ("-1e400", "overflows float64"),
    ("0x1.fffffffffffff8p1023", "overflows float64"), ("0x1p99999999999", "overflows"),
    ("1e-400", "not exactly a float64"), ("0x1p-1075", "not exactly a float64"),
    ("1.5e-99999", "not exactly a float64"), ("0x1p-99999999999", "not exactly"),
    ("0.1", "not exactly a float64"), ("0x1.00000000000008p0", "not exactly"),
    ("1_0", "number string"), ("0x", "number string"), ("", "number string"),
    ("1" * 201, "number string"), (1.0, "number string"), (["1"], "number string"),
])
def test_decode_value_refuses(text: Any, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        decode_value(text)


# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------


NO_HELLO_WITH_CHILD = "pids(sleeper())\ntime.sleep(60)\n"


@pytest.mark.parametrize("sig, status, line", [
    (signal.SIGINT, 130, "expdecay: interrupted"),
    (signal.SIGTERM, 128 + signal.SIGTERM, "expdecay: terminated"),
], ids=["SIGINT", "SIGTERM"])
def test_signal_ends_workers_and_prints_one_line(tmp_path: Path, sig: int, status: int,
                                                 line: str) -> None:
    """Ctrl-C (or SIGTERM) while the runner waits for a hello line: one line,
    the status, the program and its child ended (they are in their own
    session, so neither a terminal's Ctrl-C nor its SIGHUP reaches them)."""
    cmd, pidfile = program(tmp_path, NO_HELLO_WITH_CHILD)
    # A shell may start us with SIGINT ignored (background job); the runner
    # must have Python's default handler, as it has from a terminal.
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from expdecay.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "check", "--impl", cmd, "--vectors", str(EXAMPLES)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = read_pids(pidfile, wait=30)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status
    assert err.strip().splitlines()[-1] == line and "Traceback" not in err
    assert ended(pids)


def test_keyboard_interrupt_anywhere_ends_live_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import expdecay.conformance.runner as conformance

    cmd, pidfile = program(tmp_path, "pids(sleeper())\nhello()\ntime.sleep(60)\n")
    started: list[Any] = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        started.append(get_adapter(cmd, timeout=30))
        raise KeyboardInterrupt
        yield  # a generator, like the function it replaces

    monkeypatch.setattr(conformance, "check_implementations", interrupted)
    assert main(["check", "--impl", cmd, "--vectors", str(EXAMPLES)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "expdecay: interrupted"
    assert started and started[0].broken is None
    assert ended(read_pids(pidfile))


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


SERVE_WITH_CHILD = """
pids(sleeper())
hello()
for req in requests():
    if "16777999" in req["steps"]:
        os._exit(9)
    send({"id": req["id"], "results": ["0x1p-4"] * len(req["steps"])})
"""


def test_children_of_a_worker_are_ended_with_it(tmp_path: Path) -> None:
    """A background child holding the program's stdout is not left behind."""
    cmd, pidfile = program(tmp_path, SERVE_WITH_CHILD)
    a = get_adapter(cmd, timeout=30)
    assert a.evaluate(PARAMS, [0, 1]).tolist() == [0.0625, 0.0625]
    pids = read_pids(pidfile)
    assert all(alive(p) for p in pids)
    a.close()
    assert ended(pids)


def test_exit_is_seen_while_a_child_holds_the_output(tmp_path: Path) -> None:
    """The program crashes on one step; its child keeps the pipe open, so no
    end of output comes: the exit is still reported at once, on that step."""
    cmd, pidfile = program(tmp_path, SERVE_WITH_CHILD)
    a = get_adapter(cmd, timeout=30)
    out = within(20, lambda: a.evaluate_outcome(PARAMS, [5, 16777999, 7]))
    a.close()
    assert out.values[0] == out.values[2] == 0.0625
    assert out.crashed == {1: "process exited (status 9) during request 3"}
    pids = read_pids(pidfile)
    assert len(pids) == 6 and ended(pids)  # three runs, each with its child


def test_malformed_hello_is_closed(tmp_path: Path) -> None:
    cmd, pidfile = program(tmp_path, "pids(sleeper())\nhello(ops=5)\ntime.sleep(60)\n")
    a = get_adapter(cmd, timeout=30)
    assert a.broken is not None and a.broken.startswith("malformed hello line (ops)")
    assert ended(read_pids(pidfile))
    assert a.applicable(PARAMS) is None


def test_flood_of_lines_is_not_queued(tmp_path: Path) -> None:
    """A program writing lines nobody asked for fills a bounded queue and
    then blocks on its own writes; the request fails on the first junk line."""
    cmd, pidfile = program(tmp_path, """
pids()
hello()
while True:
    sys.stdout.write("x\\n")
""")
    w = Worker(shlex.split(cmd[4:]), None, 30)
    try:
        time.sleep(0.5)
        assert w.lines.maxsize == MAX_QUEUED_LINES
        assert w.lines.qsize() <= MAX_QUEUED_LINES
        with pytest.raises(WorkerError, match=r"not JSON during request 1: 'x\\n'"):
            w.request({"id": 1, "params": PARAMS.to_json(), "steps": ["1"]}, 30)
    finally:
        w.close()
    assert ended(read_pids(pidfile))


def test_line_longer_than_the_limit_is_a_protocol_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "MAX_LINE", 1000)
    cmd, pidfile = _answering(
        tmp_path, 'json.dumps({"id": rid, "results": ["0x1p-4"] * n, "pad": "y" * 2000})')
    a = get_adapter(cmd, timeout=30)
    out = a.evaluate_outcome(PARAMS, [1])
    a.close()
    assert out.crashed == {0: "protocol: a line longer than 1000 bytes during request 1"}
    assert ended(read_pids(pidfile))
