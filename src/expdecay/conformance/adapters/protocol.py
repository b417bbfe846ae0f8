"""The JSON-lines protocol between the runner and an implementation.

Every implementation is checked through this one protocol: the built-in
adapters run in a worker subprocess (:mod:`expdecay.conformance.adapters.worker`) and an
external program (``cmd:COMMAND``) speaks it directly.  The full description
is in ``conformance/README.md``; in short, one JSON object per line:

* the implementation first prints a hello line
  ``{"protocol": "expdecay-conformance/1", "name": ..., "version": ...}``;
* the runner sends requests
  ``{"id": 1, "params": {...}, "steps": ["0", "16777999", "nan", ...]}``
  (every number an exact string: decimal integer, C99 hex float, ``nan``,
  ``inf``, ``-inf``);
* the implementation answers ``{"id": 1, "results": [...]}`` with one entry
  per step: an exact number string (``"0x1.1050bep-4"``), or
  ``{"error": "why"}``, or ``{"na": "why not applicable"}``; or, for the
  whole request, ``{"id": 1, "error": "why"}``;
* end of input means the implementation should exit.

Output values
-------------
An output string denotes an exact number, and that number must be exactly a
float64 (every value of the four formats is one): ``nan``, ``inf``, ``-inf``
(any case, optional sign, ``infinity`` too), a C99 hex float or a decimal
(integer, fraction, exponent).  A string whose exact value is not a float64
is a protocol error charged to that step, never rounded.  In particular a
finite string beyond float64's range, such as ``"1e400"``, is **not** read as
infinity (an implementation that overflows writes ``"inf"``), and a nonzero
string that underflows, such as ``"1e-400"``, is not read as zero.  Strings
are at most :data:`MAX_NUMBER_CHARS` characters; decoding one costs time
linear in its length whatever its exponent.

What the runner enforces
------------------------
Every wait is bounded and every failure is charged to the steps of the
request concerned (the runner then retries them one at a time in a fresh
worker, so only the guilty steps fail):

* the hello line must arrive within the start-up timeout, which is
  :data:`STARTUP_FACTOR` times the request timeout (``--timeout``) unless
  given explicitly: starting a framework (importing TensorFlow takes ten
  seconds) is slower than answering a request;
* each request must be read and answered within the request timeout
  (``--timeout``); a ``batch`` request of ``n`` groups within ``n`` request
  timeouts (:func:`batch_deadline`), so that a slow but live implementation
  is not ended for being sent a large batch; a fresh batch (each group in a
  child of its own, :func:`fresh_answers`) of ``n`` groups, ``k`` children
  run at once, within ``n + k`` request timeouts, each child being allowed
  ``k`` request timeouts since the children share the processors
  (:func:`fresh_batch_deadline`);
* a line is at most :data:`MAX_LINE` bytes (newline included), UTF-8,
  one JSON value nested at most as deep as Python's recursion limit allows;
* the runner reads at most :data:`MAX_QUEUED_LINES` lines ahead of what it
  asked for; beyond that it stops reading, so a program that floods its
  output blocks on its own writes instead of filling the runner's memory
  (at most ``(MAX_QUEUED_LINES + 1) * MAX_LINE`` bytes are held);
* a process that closes its output, exits, writes bytes that are not UTF-8,
  a line that is not JSON, too long, or an answer to another request has
  failed that request, and is ended.

Each worker runs in its own session and process group, so that a terminal's
Ctrl-C reaches only the runner and a worker's children (a shell script's
background jobs that inherited its output, say) can be ended with it: the
runner closes the worker's input, waits up to :data:`CLOSE_GRACE` seconds
for a clean exit (nothing when the worker has failed), sends SIGTERM to the
whole group, waits up to :data:`TERM_GRACE` seconds, then sends SIGKILL.
:func:`close_all_workers` ends every live worker (the CLI calls it on
Ctrl-C; it also runs at interpreter exit); a :class:`WorkerSet` ends only the
workers started while it was :func:`owning` them (one check among others).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import json
import math
import os
import queue
import re
import reprlib
import selectors
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import IO, Any, Protocol

import numpy as np

from .base import (
    Adapter,
    AdapterError,
    ImplementationLookupError,
    Outcome,
    Params,
    encode_number,
    step_value,
)

PROTOCOL = "expdecay-conformance/1"

#: Steps per request; a failing request is retried one step at a time.
CHUNK = 4096

#: Crashes or timeouts in a row after which the implementation is given up.
MAX_CONSECUTIVE_FAILURES = 5

#: Longest accepted line from an implementation, in bytes, newline included.
#: The longest answer the built-in worker writes is :data:`CHUNK` results
#: of at most 300 characters each, under 8 MiB even with every character
#: escaped as ``\\uXXXX``; twice that leaves room for other programs.
MAX_LINE = 1 << 24

#: Lines read from an implementation ahead of the runner (see the module
#: docstring): a well-behaved implementation never has more than one line
#: outstanding, since it answers one request at a time.
MAX_QUEUED_LINES = 2

#: Longest accepted output value string (a float64 needs under 30).
MAX_NUMBER_CHARS = 200

#: The start-up timeout, when not given, is this many request timeouts.
STARTUP_FACTOR = 2.0

#: Largest accepted timeout, in seconds (one day).
MAX_TIMEOUT = 86400.0

#: Seconds a worker has to exit by itself once its input is closed.
CLOSE_GRACE = 2.0

#: Seconds a worker's process group has between SIGTERM and SIGKILL.
TERM_GRACE = 0.5

#: Seconds to wait for a process to be reaped after SIGKILL (an unkillable
#: process, in uninterruptible sleep, is then left behind rather than waited for).
KILL_WAIT = 2.0

#: After the worker closed its output: seconds it has to exit before it is
#: reported as still running (and killed).
EXIT_GRACE = 1.0

#: After the worker exited while another process holds its output open:
#: seconds during which lines it wrote before exiting are still read.
EXIT_DRAIN = 0.2

#: Granularity of the runner's waits (seconds).
POLL_INTERVAL = 0.1


def check_timeout(value: Any, name: str = "timeout") -> float:
    """``value`` as a float in (0, :data:`MAX_TIMEOUT`], else ``ValueError``/``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds; got {value!r}")
    t = float(value)
    if not 0 < t <= MAX_TIMEOUT:
        raise ValueError(f"{name} must be > 0 and at most {MAX_TIMEOUT:g} seconds; got {value!r}")
    return t


def batch_deadline(timeout: float, groups: int) -> float:
    """Seconds allowed for a ``batch`` request of ``groups`` groups: one
    request timeout per group (at most :data:`MAX_TIMEOUT`)."""
    return min(MAX_TIMEOUT, timeout * max(1, groups))


def fresh_batch_deadline(timeout: float, groups: int, parallel: int) -> float:
    """Seconds allowed for a fresh batch of ``groups`` groups whose children
    run ``parallel`` at once: each child is allowed ``parallel`` request
    timeouts (:func:`fresh_child_timeout`), and at most ``ceil(groups /
    parallel)`` rounds of them run one after another, so ``groups +
    parallel`` request timeouts bound the whole (at most :data:`MAX_TIMEOUT`)."""
    return min(MAX_TIMEOUT, timeout * (max(1, groups) + max(1, parallel)))


def fresh_child_timeout(timeout: float, parallel: int) -> float:
    """Seconds a fresh child may take when ``parallel`` run at once: they
    share the processors, so each is allowed ``parallel`` request timeouts."""
    return min(MAX_TIMEOUT, timeout * max(1, parallel))


def encode_step(x: int | float) -> str:
    """A step as an exact string."""
    return encode_number(step_value(x))


def encode_value(x: float) -> str:
    """An output value (a float64 holding it exactly) as an exact string."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x).hex()


_SPECIAL = re.compile(r"([+-]?)(nan|inf|infinity)\Z", re.IGNORECASE)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_HEX = re.compile(
    r"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?\Z")


def decode_value(text: Any) -> float:
    """An implementation's output string -> its value as a float64.

    Raises ``ValueError`` (and nothing else) when the text is not a number
    string or its exact value is not a float64 value: see "Output values"
    in the module docstring (``"1e400"`` is an error, not infinity).

    >>> decode_value("0x1.8p-1"), decode_value("-0"), decode_value("16777216")
    (0.75, -0.0, 16777216.0)
    """
    if not isinstance(text, str) or len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"an output must be a number string; got {_brief(text)}")
    t = text.strip()
    if m := _SPECIAL.match(t):
        if m.group(2).lower() == "nan":
            return math.nan
        return -math.inf if m.group(1) == "-" else math.inf
    if m := _HEX.match(t):
        return _decode_hex(t, m)
    if _DECIMAL.match(t):
        # Decimal holds the string exactly and float() of it is correctly
        # rounded, with an exponent of any size handled in constant time.
        d = Decimal(t)
        f = float(d)
        if math.isinf(f):
            raise ValueError(f"output {text!r} overflows float64 (an infinite output is 'inf')")
        if Decimal(f) != d:
            raise ValueError(f"output {text!r} is not exactly a float64 value")
        return f
    raise ValueError(f"an output must be a number string; got {text[:60]!r}")


def _decode_hex(text: str, m: re.Match[str]) -> float:
    whole, frac, exp = m.group(2), m.group(3) or "", m.group(4) or "0"
    if not whole and not frac:
        raise ValueError(f"an output must be a number string; got {text[:60]!r}")
    try:
        f = float.fromhex(text)
    except OverflowError:
        raise ValueError(
            f"output {text!r} overflows float64 (an infinite output is 'inf')") from None
    mantissa = int(whole + frac, 16) if whole + frac else 0
    if f == 0:
        if mantissa != 0:
            raise ValueError(f"output {text!r} is not exactly a float64 value (underflow)")
        return f
    # f is finite and nonzero, so the binary exponent below is bounded
    # (mantissa < 16**200): the exact comparison is cheap.
    e2 = int(exp) - 4 * len(frac)
    exact = Fraction(mantissa) * (Fraction(2) ** e2)
    if Fraction(abs(f)) != exact:
        raise ValueError(f"output {text!r} is not exactly a float64 value")
    return f


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 80
_REPR.maxother = 80


def _brief(obj: Any) -> str:
    """A short repr of anything an implementation sent (bounded in depth and length)."""
    return _REPR.repr(obj)[:120]


def _text(obj: Any) -> str:
    """A message an implementation sent, as at most 300 characters."""
    return obj[:300] if isinstance(obj, str) else _brief(obj)


# ---------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------


def hello(adapter: Adapter, *, fresh_batch: bool = False) -> dict[str, Any]:
    """The hello line: ``ops`` lists ``batch`` (several groups per request,
    see :func:`answer_batch`), and ``fresh-batch`` and ``fresh-sequence``
    when the worker can evaluate each group of a batch in a fresh process
    state of its own, or every group of a batch, one after another, in one
    fresh process state (:func:`fresh_sequence`)."""
    return {
        "protocol": PROTOCOL,
        "name": adapter.name,
        "version": adapter.version,
        "vectorised": bool(getattr(adapter, "vectorised", False)),
        "ops": ["evaluate", "applicable", "batch",
                *(["fresh-batch", "fresh-sequence"] if fresh_batch else [])],
    }


def answer(adapter: Adapter, request: Any) -> dict[str, Any]:
    """The response to one request (never raises)."""
    rid = request.get("id") if isinstance(request, dict) else None
    try:
        if not isinstance(request, dict):
            raise ValueError("a request must be a JSON object")
        params = Params.from_json(request.get("params"))
        if request.get("op", "evaluate") == "applicable":
            why = adapter.applicable(params)
            return {"id": rid, "applicable": None if why is None else str(why)[:300]}
        steps = request.get("steps")
        if not isinstance(steps, list):
            raise ValueError("steps must be a list")
        out = adapter.evaluate_outcome(params, [step_value(s) for s in steps])
    except Exception as e:  # noqa: BLE001 - reported to the runner
        from .base import describe_exception

        return {"id": rid, "error": describe_exception(e)}
    results: list[Any] = []
    for i, v in enumerate(out.values):
        if i in out.not_applicable:
            results.append({"na": str(out.not_applicable[i])[:300]})
        elif i in out.errors:
            results.append({"error": str(out.errors[i])[:300]})
        elif i in out.crashed:  # no usable answer (an output that is not a number)
            results.append({"crashed": str(out.crashed[i])[:300]})
        else:
            results.append(encode_value(float(v)))
    return {"id": rid, "results": results}


def answer_batch(adapter: Adapter, request: dict[str, Any]) -> dict[str, Any]:
    """The response to a ``batch`` request (never raises): ``{"id": ...,
    "groups": [...]}`` with, per group ``{"params": ..., "steps": [...]}``
    of the request and in its order, what :func:`answer` gives for it
    without the id (``{"results": [...]}`` or ``{"error": ...}``).  A group
    the implementation cannot express answers ``{"na": why}`` for each step,
    so that applicability needs no round trip of its own."""
    rid = request.get("id")
    groups = request.get("groups")
    if not isinstance(groups, list):
        return {"id": rid, "error": "groups must be a list"}
    out = []
    for g in groups:
        one = answer(adapter, g)
        one.pop("id", None)
        out.append(one)
    return {"id": rid, "groups": out}


#: Fresh children run at once by :func:`fresh_answers` (at most).
FRESH_PARALLEL = max(1, min(4, os.cpu_count() or 1))

#: Largest ``parallel`` a fresh batch request may ask for.
MAX_FRESH_PARALLEL = 64


def fresh_answers(adapter: Adapter, groups: list[Any], timeout: float,
                  parallel: int = FRESH_PARALLEL) -> list[dict[str, Any]]:
    """Each group of a batch answered by a child of its own, forked from this
    process (which must have evaluated nothing): every group then sees the
    process state of a fresh start.  Up to ``parallel`` children run at
    once; a child that does not answer within :func:`fresh_child_timeout`
    (``parallel`` times ``timeout`` seconds: the children share the
    processors) is killed, and a group without an answer gets
    ``{"crashed": why}``."""
    parallel = max(1, parallel)
    child_timeout = fresh_child_timeout(timeout, parallel)
    results: list[dict[str, Any] | None] = [None] * len(groups)
    running: dict[int, tuple[int, int, float, list[bytes]]] = {}  # fd -> (pid, i, deadline, buf)
    todo = list(range(len(groups)))[::-1]
    with selectors.DefaultSelector() as sel:
        while todo or running:
            while todo and len(running) < parallel:
                i = todo.pop()
                read_end, write_end = os.pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - runs in the child
                    status = 0
                    try:
                        os.close(read_end)
                        g = groups[i]
                        one = answer(adapter, g) if isinstance(g, dict) else {
                            "error": "a group must be a JSON object"}
                        one.pop("id", None)
                        view = memoryview((json.dumps(one) + "\n").encode())
                        while view:
                            view = view[os.write(write_end, view):]
                    except BaseException:  # noqa: BLE001 - the parent sees no answer
                        status = 70
                    finally:
                        os._exit(status)
                os.close(write_end)
                sel.register(read_end, selectors.EVENT_READ)
                running[read_end] = (pid, i, time.monotonic() + child_timeout, [])
            now = time.monotonic()
            wait = max(0.0, min(d for _, _, d, _ in running.values()) - now)
            for key, _ in sel.select(min(wait, POLL_INTERVAL)):
                fd = int(key.fd)
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    running[fd][3].append(chunk)
                    continue
                pid, i, _, buf = running.pop(fd)
                sel.unregister(fd)
                os.close(fd)
                status = _reap(pid)
                data = b"".join(buf)
                try:
                    got = json.loads(data.decode()) if status == 0 and data.endswith(b"\n") \
                        else None
                except ValueError:
                    got = None
                results[i] = got if isinstance(got, dict) else {
                    "crashed": f"the fresh process exited (status {status}) without answering"}
            now = time.monotonic()
            for fd, (pid, i, deadline, _) in list(running.items()):
                if now >= deadline:
                    running.pop(fd)
                    sel.unregister(fd)
                    os.close(fd)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    _reap(pid)
                    results[i] = {"crashed": f"timeout: no answer within {child_timeout:g} s "
                                             "in a fresh process"}
    return [r if r is not None else {"crashed": "no answer"} for r in results]


def fresh_sequence(adapter: Adapter, groups: list[Any], timeout: float
                   ) -> list[dict[str, Any]]:
    """Every group of a batch answered, in order, by ONE child forked from
    this process (which must have evaluated nothing): the groups see the
    process state of a fresh start followed by the groups before them in
    the list.  The child writes one line per group as it goes; it is killed
    when it has not finished within :func:`batch_deadline` (one request
    timeout per group), and a group without an answer gets
    ``{"crashed": why}``."""
    deadline = time.monotonic() + batch_deadline(timeout, len(groups))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(read_end)
            for g in groups:
                one = answer(adapter, g) if isinstance(g, dict) else {
                    "error": "a group must be a JSON object"}
                one.pop("id", None)
                view = memoryview((json.dumps(one) + "\n").encode())
                while view:
                    view = view[os.write(write_end, view):]
        except BaseException:  # noqa: BLE001 - the parent sees the answers so far
            status = 70
        finally:
            os._exit(status)
    os.close(write_end)
    buf: list[bytes] = []
    killed = False
    with selectors.DefaultSelector() as sel:
        sel.register(read_end, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed = True
                break
            if not sel.select(min(left, POLL_INTERVAL)):
                continue
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            buf.append(chunk)
    os.close(read_end)
    status = _reap(pid)
    lines = b"".join(buf).split(b"\n")[:-1]  # complete lines only
    out: list[dict[str, Any]] = []
    for line in lines[:len(groups)]:
        try:
            got = json.loads(line.decode())
        except ValueError:
            got = None
        out.append(got if isinstance(got, dict) else {"crashed": "protocol: a bad answer line"})
    why = (f"timeout: no answer within {batch_deadline(timeout, len(groups)):g} s in a fresh "
           "process" if killed else
           f"the fresh process exited (status {status}) without answering")
    return out + [{"crashed": why}] * (len(groups) - len(out))


def _reap(pid: int) -> int:
    """Wait for a child; its exit status (0 when it was reaped by someone
    else: SIGCHLD ignored, say; its answer then decides)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0
    return status


class Zygote:
    """A child forked from a worker before it evaluates anything: it keeps
    that fresh process state and answers fresh batches (:func:`fresh_answers`)
    for the worker, once the worker itself has evaluated.  It reads requests
    from a pipe and ends at end of input (or with the worker's process
    group)."""

    def __init__(self, adapter: Adapter, close: Sequence[int] = ()) -> None:
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the zygote
            status = 0
            try:
                os.close(req_w)
                os.close(resp_r)
                for fd in close:  # the protocol's pipes belong to the worker alone
                    os.close(fd)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.close(devnull)
                with os.fdopen(req_r, "rb") as inp, os.fdopen(resp_w, "wb") as out:
                    for line in inp:
                        req = json.loads(line)
                        if req.get("sequence"):
                            got = fresh_sequence(adapter, req["groups"], float(req["timeout"]))
                        else:
                            got = fresh_answers(adapter, req["groups"], float(req["timeout"]),
                                                int(req["parallel"]))
                        out.write((json.dumps(got) + "\n").encode())
                        out.flush()
            except BaseException:  # noqa: BLE001 - the worker sees the pipe close
                status = 70
            finally:
                os._exit(status)
        os.close(req_r)
        os.close(resp_w)
        self.pid = pid
        self._req = os.fdopen(req_w, "wb")
        self._resp = os.fdopen(resp_r, "rb")

    def close(self, wait: float = CLOSE_GRACE) -> None:
        """End of input for the zygote; wait up to ``wait`` seconds for it
        to exit (then it is left to the process group's end)."""
        try:
            self._req.close()
            self._resp.close()
        except OSError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                return
            time.sleep(0.01)

    def run(self, groups: list[Any], timeout: float, parallel: int = FRESH_PARALLEL,
            sequence: bool = False) -> list[dict[str, Any]] | None:
        """The zygote's answers to ``groups`` (None if it is gone): each in a
        child of its own, or with ``sequence`` all in one child, in order
        (:func:`fresh_sequence`)."""
        try:
            self._req.write((json.dumps({"groups": groups, "timeout": timeout,
                                         "parallel": parallel, "sequence": sequence})
                             + "\n").encode())
            self._req.flush()
            line = self._resp.readline()
            got = json.loads(line) if line.endswith(b"\n") else None
        except (OSError, ValueError):
            return None
        return got if isinstance(got, list) and len(got) == len(groups) else None


def _fresh_batch(adapter: Adapter, request: dict[str, Any], zygote: Zygote | None,
                 fresh: bool) -> dict[str, Any]:
    """The response to a ``batch`` request with ``"fresh": true``."""
    rid = request.get("id")
    groups = request.get("groups")
    if not isinstance(groups, list):
        return {"id": rid, "error": "groups must be a list"}
    timeout = request.get("timeout", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            0 < timeout <= MAX_TIMEOUT):
        return {"id": rid, "error": f"timeout must be a number of seconds; got {_brief(timeout)}"}
    parallel = request.get("parallel", FRESH_PARALLEL)
    if isinstance(parallel, bool) or not isinstance(parallel, int) or not (
            1 <= parallel <= MAX_FRESH_PARALLEL):
        return {"id": rid, "error": "parallel must be an integer from 1 to "
                                    f"{MAX_FRESH_PARALLEL}; got {_brief(parallel)}"}
    sequence = request.get("sequence", False)
    if not isinstance(sequence, bool):
        return {"id": rid, "error": f"sequence must be true or false; got {_brief(sequence)}"}
    if fresh:  # this worker evaluates nothing itself: fork from it
        here = fresh_sequence(adapter, groups, float(timeout)) if sequence else \
            fresh_answers(adapter, groups, float(timeout), parallel)
        return {"id": rid, "groups": here}
    if zygote is None:
        return {"id": rid, "error": "this worker has no fresh process state to fork from"}
    got = zygote.run(groups, float(timeout), parallel, sequence)
    if got is None:
        return {"id": rid, "error": "the fresh process state was lost (its process ended)"}
    return {"id": rid, "groups": got}


def serve(adapter: Adapter, inp: IO[str], out: IO[str], *, fresh: bool = False,
          zygote: Zygote | None = None) -> None:
    """Answer requests from ``inp`` until end of input.

    With ``fresh``, every ``evaluate`` request (and every group of a
    ``batch``) is answered by a child forked from this process, which has
    imported the implementation but evaluated nothing: each request then
    sees the process state of a fresh start (no cache filled by an earlier
    request), which is how the runner tells a failure of the function from
    one that depends on process state.  A ``zygote`` (:class:`Zygote`, forked
    before anything was evaluated) answers the ``batch`` requests marked
    ``"fresh": true`` the same way, while this process answers the others.
    """
    out.write(json.dumps(hello(adapter, fresh_batch=fresh or zygote is not None)) + "\n")
    out.flush()
    for line in inp:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as e:
            response: dict[str, Any] = {"id": None, "error": f"bad JSON: {str(e)[:200]}"}
        else:
            if isinstance(request, dict) and request.get("op") == "batch":
                if request.get("fresh") is True or fresh:
                    response = _fresh_batch(adapter, request, zygote, fresh)
                else:
                    response = answer_batch(adapter, request)
                out.write(json.dumps(response) + "\n")
                out.flush()
                continue
            if fresh and isinstance(request, dict) and request.get("op", "evaluate") == "evaluate":
                text = _answer_in_child(adapter, request)
                if text is None:  # the child died without answering
                    os._exit(70)
                out.write(text)
                out.flush()
                continue
            response = answer(adapter, request)
        out.write(json.dumps(response) + "\n")
        out.flush()
    if zygote is not None:
        zygote.close()


def _answer_in_child(adapter: Adapter, request: dict[str, Any]) -> str | None:
    """The response line to ``request``, computed in a forked child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(read_end)
            data = (json.dumps(answer(adapter, request)) + "\n").encode()
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
        except BaseException:  # noqa: BLE001 - the parent sees no answer
            status = 70
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as f:
        while chunk := f.read(1 << 16):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if status != 0 or not data.endswith(b"\n"):
        return None
    return data.decode()


# ---------------------------------------------------------------------------
# Runner side
# ---------------------------------------------------------------------------


class WorkerError(AdapterError):
    """The worker crashed, hung or broke the protocol."""


class _Signal:
    """What the reader thread queues besides lines."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_EOF = _Signal("end of output")
_TOO_LONG = _Signal("line too long")

#: Workers started and not yet closed (ended by :func:`close_all_workers`).
_LIVE: set[Worker] = set()
_LIVE_LOCK = threading.Lock()


def close_all_workers() -> None:
    """End every worker process still running (and its process group)."""
    with _LIVE_LOCK:
        workers = list(_LIVE)
    for w in workers:
        w.close(graceful=False)


atexit.register(close_all_workers)


class WorkerSet:
    """The workers started while this set was :func:`owning` them: a check
    ends its own workers, and none of another check's or its caller's."""

    def __init__(self) -> None:
        self._workers: set[Worker] = set()
        self._lock = threading.Lock()

    def add(self, worker: Worker) -> None:
        with self._lock:
            self._workers.add(worker)

    def discard(self, worker: Worker) -> None:
        with self._lock:
            self._workers.discard(worker)

    def __len__(self) -> int:
        with self._lock:
            return len(self._workers)

    def close_all(self) -> None:
        """End every worker of the set still running (and its process group)."""
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            w.close(graceful=False)


_OWNER: contextvars.ContextVar[WorkerSet | None] = contextvars.ContextVar(
    "expdecay_worker_owner", default=None)


@contextlib.contextmanager
def owning(workers: WorkerSet) -> Iterator[WorkerSet]:
    """Every :class:`Worker` started in this thread (context) inside the
    ``with`` block joins ``workers``, until it is closed."""
    token = _OWNER.set(workers)
    try:
        yield workers
    finally:
        _OWNER.reset(token)


def _signal_group(proc: Process, sig: int) -> bool:
    """Send ``sig`` to the worker's process group; False when it is empty."""
    try:
        os.killpg(proc.pid, sig)  # the worker leads its own group (new session)
        return True
    except ProcessLookupError:
        return False
    except (PermissionError, AttributeError):  # a member we may not signal; no killpg
        if proc.poll() is None:
            proc.send_signal(sig)
            return True
        return False


def _group_alive(proc: Process) -> bool:
    try:
        os.killpg(proc.pid, 0)
        return True
    except ProcessLookupError:
        return False
    except (PermissionError, AttributeError):
        return proc.poll() is None


def end_process_group(proc: Process) -> None:
    """SIGTERM to the process group led by ``proc``, up to :data:`TERM_GRACE`
    seconds for it to go, then SIGKILL; reap ``proc`` (bounded)."""
    proc.poll()  # reap an exited leader, so that its zombie leaves the group
    if _signal_group(proc, signal.SIGTERM):
        deadline = time.monotonic() + TERM_GRACE
        while True:
            proc.poll()
            if not _group_alive(proc):
                break
            if time.monotonic() >= deadline:
                _signal_group(proc, signal.SIGKILL)
                break
            time.sleep(0.01)
    try:
        proc.wait(timeout=KILL_WAIT)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable process
        pass


class Process(Protocol):
    """What :class:`Worker` uses of a :class:`subprocess.Popen` (started with
    ``stdin=PIPE, stdout=PIPE`` in a new session)."""

    pid: int
    returncode: Any
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...


#: Starts a worker process other than by :class:`subprocess.Popen` (a fork
#: from a start-up hub, :meth:`~expdecay.conformance.adapters.hub.Hub.spawn`);
#: its argument is the file for the process's standard error.  An
#: ``OSError`` from it means: start the process the usual way.
Spawn = Callable[[IO[bytes]], Process]


class Worker:
    """One implementation process and its stdout reader thread.

    Every method that fails ends the process (and its group) before raising
    :class:`WorkerError`, so a failed worker is never left running.
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None,
                 startup_timeout: float, *, lookup_errors: bool = False,
                 spawn: Spawn | None = None) -> None:
        self.argv = list(argv)
        self._closed = threading.Event()
        self._owner: WorkerSet | None = None
        self.lines: queue.Queue[bytes | _Signal] = queue.Queue(maxsize=MAX_QUEUED_LINES)
        self.stderr = tempfile.TemporaryFile(mode="w+b")
        proc: Process | None = None
        if spawn is not None:
            try:
                proc = spawn(self.stderr)
            except OSError as e:  # the hub is gone: a process of its own
                self.stderr.write(f"expdecay: started without the hub: {e}\n".encode())
        try:
            self.proc: Process = proc if proc is not None else subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self.stderr, env=env, start_new_session=True,
            )
        except (OSError, ValueError) as e:
            self.stderr.close()
            raise WorkerError(f"cannot start {shlex.join(self.argv)!r}: {e}") from None
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._owner = _OWNER.get()
        if self._owner is not None:
            self._owner.add(self)
        try:
            assert self.proc.stdin is not None
            os.set_blocking(self.proc.stdin.fileno(), False)
            threading.Thread(target=self._read, name=f"expdecay-reader-{self.proc.pid}",
                             daemon=True).start()
            self.hello = self._hello(startup_timeout, lookup_errors)
        except BaseException:
            self.close(graceful=False)
            raise

    # -- reading ---------------------------------------------------------

    def _put(self, item: bytes | _Signal) -> bool:
        """Queue ``item``, waiting while the queue is full; False once closed."""
        while not self._closed.is_set():
            try:
                self.lines.put(item, timeout=POLL_INTERVAL)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while not self._closed.is_set():
                line = stdout.readline(MAX_LINE)
                if not line:
                    self._put(_EOF)
                    return
                if len(line) == MAX_LINE and not line.endswith(b"\n"):
                    self._put(_TOO_LONG)  # stop reading: the worker will be ended
                    return
                if not self._put(line):
                    return
        except (OSError, ValueError):
            self._put(_EOF)
        finally:
            try:
                stdout.close()
            except OSError:
                pass

    def stderr_tail(self) -> str:
        """The last line the process wrote on stderr (at most 200 characters)."""
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 2000))
            lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1][:200] if lines else ""

    def _fail(self, message: str, *, tail: bool = False) -> WorkerError:
        """End the worker; the error to raise (with stderr's last line if ``tail``)."""
        text = self.stderr_tail() if tail else ""
        self.close(graceful=False)
        return WorkerError(message + (f": {text}" if text else ""))

    def _wait_exit(self, seconds: float) -> int | None:
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def receive(self, deadline: float, what: str, limit: float) -> Any:
        """The next JSON value the worker writes, before ``deadline``
        (``time.monotonic()``; ``limit`` is the timeout, for messages)."""
        exited_at: float | None = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise self._fail(f"timeout: no answer to {what} within {limit:g} s")
            try:
                item = self.lines.get(timeout=min(deadline - now, POLL_INTERVAL))
            except queue.Empty:
                # The process may have exited while a child of it holds its
                # output open: then no end of output comes.
                code = self.proc.poll()
                if code is not None:
                    if exited_at is None:
                        exited_at = now
                    elif now - exited_at >= EXIT_DRAIN:
                        raise self._fail(f"process exited (status {code}) during {what}",
                                         tail=True) from None
                continue
            if item is _EOF:
                code = self._wait_exit(EXIT_GRACE)
                if code is None:
                    raise self._fail(f"process closed its output during {what} and kept "
                                     "running (ended)", tail=True)
                raise self._fail(f"process exited (status {code}) during {what}", tail=True)
            if item is _TOO_LONG:
                raise self._fail(f"protocol: a line longer than {MAX_LINE} bytes during {what}")
            assert isinstance(item, bytes)
            return self._decode(item, what)

    def _decode(self, line: bytes, what: str) -> Any:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._fail(f"protocol: output is not UTF-8 during {what} "
                             f"(byte {e.start}: {line[:40]!r})") from None
        try:
            return json.loads(text)
        except RecursionError:
            raise self._fail(f"protocol: JSON nested too deeply during {what}") from None
        except ValueError:
            raise self._fail(f"protocol: not JSON during {what}: {text[:120]!r}") from None

    def _hello(self, timeout: float, lookup_errors: bool) -> dict[str, Any]:
        first = self.receive(time.monotonic() + timeout, "start-up", timeout)
        if not isinstance(first, dict) or first.get("protocol") != PROTOCOL:
            if isinstance(first, dict) and "error" in first:
                why = _text(first["error"])
                if lookup_errors and first.get("kind") == "lookup":
                    self.close(graceful=False)
                    raise ImplementationLookupError(why)
                raise self._fail(f"start-up failed: {why}")
            raise self._fail(f"no {PROTOCOL} hello line; got {_brief(first)}")
        ops = first.get("ops", ["evaluate"])
        bad = [k for k in ("name", "version") if not isinstance(first.get(k, ""), str)]
        if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
            bad.append("ops")
        if bad:
            raise self._fail(f"malformed hello line ({', '.join(bad)}): {_brief(first)}")
        return first

    # -- writing ---------------------------------------------------------

    def _send(self, data: bytes, deadline: float, what: str, limit: float) -> None:
        """Write ``data`` to the worker's input before ``deadline`` (a worker
        that does not read its input cannot block the runner)."""
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            while view:
                now = time.monotonic()
                if now >= deadline:
                    raise self._fail(f"timeout: {what} not read within {limit:g} s")
                if not sel.select(min(deadline - now, POLL_INTERVAL)):
                    continue
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    continue
                except OSError:
                    raise self._fail("process closed its input", tail=True) from None
                view = view[n:]

    def request(self, obj: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request; its answer (a dict with the request's ``id``)."""
        deadline = time.monotonic() + timeout
        what = f"request {obj.get('id')}"
        self._send((json.dumps(obj) + "\n").encode(), deadline, what, timeout)
        got = self.receive(deadline, what, timeout)
        if not isinstance(got, dict) or got.get("id") != obj.get("id"):
            raise self._fail(f"protocol: answer does not match {what}: {_brief(got)}")
        return got

    # -- ending ----------------------------------------------------------

    def close(self, graceful: bool = True) -> None:
        """End the worker: close its input, give it :data:`CLOSE_GRACE` seconds
        to exit if ``graceful``, then end its whole process group."""
        if self._closed.is_set():
            return
        self._closed.set()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self._owner is not None:
            self._owner.discard(self)
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        if graceful:
            self._wait_exit(CLOSE_GRACE)
        end_process_group(self.proc)
        self.stderr.close()


class SubprocessAdapter(Adapter):
    """An implementation behind the protocol, in its own process.

    ``timeout`` bounds each request (seconds); ``startup_timeout`` the hello
    line (default: :data:`STARTUP_FACTOR` times ``timeout``).  With
    ``lookup_errors`` (the built-in worker), a worker reporting that the
    implementation cannot be found or loaded raises
    :class:`ImplementationLookupError` instead of marking the adapter broken.
    """

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 timeout: float = 60.0, startup_timeout: float | None = None,
                 label: str | None = None, lookup_errors: bool = False,
                 spawn: Spawn | None = None) -> None:
        if not argv:
            raise ValueError("argv must name a program")
        self.argv = list(argv)
        self.env = env
        self.timeout = check_timeout(timeout, "timeout")
        self.startup_timeout = (min(STARTUP_FACTOR * self.timeout, MAX_TIMEOUT)
                                if startup_timeout is None
                                else check_timeout(startup_timeout, "startup_timeout"))
        self.lookup_errors = lookup_errors
        self.spawn = spawn
        self._worker: Worker | None = None
        self._next_id = 0
        self.broken: str | None = None
        self.restarts = 0
        self.consecutive_failures = 0
        self.name = label or " ".join(self.argv)
        self.version = "unknown"
        self.ops: list[str] = ["evaluate"]
        try:
            self._start()
        except WorkerError as e:
            self.broken = str(e)

    def _start(self) -> Worker:
        if self._worker is None:
            try:
                self._worker = Worker(self.argv, self.env, self.startup_timeout,
                                      lookup_errors=self.lookup_errors, spawn=self.spawn)
            finally:
                self.spawn = None  # a restart (after a crash) is a new process
            h = self._worker.hello
            self.name = str(h.get("name", self.name))[:80]
            self.version = str(h.get("version", "unknown"))[:120]
            self.vectorised = bool(h.get("vectorised", False))
            self.ops = list(h.get("ops", ["evaluate"]))
        return self._worker

    def _call(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.broken:
            raise WorkerError(self.broken)
        try:
            worker = self._start()
        except WorkerError as e:
            self.broken = str(e)  # a start-up failure will not improve
            raise
        self._next_id += 1
        try:
            return worker.request({"id": self._next_id, **body}, timeout)
        except WorkerError:  # the worker has ended itself
            self._worker = None
            self.restarts += 1
            raise
        except BaseException:  # Ctrl-C, or a bug: leave nothing running
            self.close()
            raise

    def applicable(self, params: Params) -> str | None:
        if self.broken:
            return None
        if "applicable" not in self.ops:
            return None
        try:
            got = self._call({"op": "applicable", "params": params.to_json()}, self.timeout)
        except WorkerError:
            return None
        reason = got.get("applicable")
        return _text(reason) if reason is not None else None

    def evaluate_outcome(self, params: Params, steps: Any) -> Outcome:
        values = [step_value(s) for s in np.asarray(steps, dtype=object).ravel()]
        result = Outcome(np.full(len(values), np.nan))
        for start in range(0, len(values), CHUNK):
            idx = list(range(start, min(start + CHUNK, len(values))))
            self._run(params, values, idx, result)
        return result

    def _run(self, params: Params, values: list[int | float], idx: list[int],
             result: Outcome) -> None:
        body = {"params": params.to_json(), "steps": [encode_step(values[i]) for i in idx]}
        try:
            got = self._call(body, self.timeout)
        except WorkerError as e:
            if len(idx) > 1 and not self.broken:
                for i in idx:  # find the guilty steps, one request each
                    self._run(params, values, [i], result)
                return
            self.consecutive_failures += 1
            if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES and not self.broken:
                self.broken = f"gave up after {self.consecutive_failures} failures in a row: {e}"
            for i in idx:  # no answer: the test was not run (never an error reported)
                result.crashed[i] = str(e)
            return
        self.consecutive_failures = 0
        _store(got, idx, result)

    def evaluate_batch(self, items: Sequence[tuple[Params, Any]], *, fresh: bool = False,
                       sequence: bool = False) -> list[Outcome] | None:
        """Several groups in one request: the outcome of each ``(params,
        steps)``, in order, or None when the implementation does not
        announce the ``batch`` op (``fresh-batch`` with ``fresh``), the
        request failed (the worker is then ended; the caller evaluates the
        groups one by one) or the answer is unusable.

        With ``fresh``, each group is evaluated in a process state of its
        own, forked from the state the implementation had before it
        evaluated anything, and a group whose fresh process gave no answer
        has every step in ``crashed``.  The request is allowed
        :func:`batch_deadline` (:func:`fresh_batch_deadline` with ``fresh``,
        :data:`FRESH_PARALLEL` children at once).  With ``sequence`` (the
        ``fresh-sequence`` op), every group is evaluated, in the order given,
        by one process forked from that state (:func:`fresh_sequence`),
        within :func:`batch_deadline` and one more request timeout."""
        op = "fresh-sequence" if sequence else "fresh-batch" if fresh else "batch"
        if self.broken or op not in self.ops:
            return None
        values = [[step_value(s) for s in np.asarray(steps, dtype=object).ravel()]
                  for _, steps in items]
        groups = [{"params": p.to_json(), "steps": [encode_step(v) for v in vals]}
                  for (p, _), vals in zip(items, values, strict=True)]
        body: dict[str, Any] = {"op": "batch", "groups": groups}
        limit = batch_deadline(self.timeout, len(items))
        if sequence:
            body.update(fresh=True, sequence=True, timeout=self.timeout)
            limit = min(MAX_TIMEOUT, batch_deadline(self.timeout, len(items)) + self.timeout)
        elif fresh:
            body.update(fresh=True, timeout=self.timeout, parallel=FRESH_PARALLEL)
            limit = fresh_batch_deadline(self.timeout, len(items), FRESH_PARALLEL)
        try:
            got = self._call(body, limit)
        except WorkerError:
            return None
        answers = got.get("groups")
        if not isinstance(answers, list) or len(answers) != len(items):
            return None
        out = []
        for vals, one in zip(values, answers, strict=True):
            result = Outcome(np.full(len(vals), np.nan))
            idx = list(range(len(vals)))
            if isinstance(one, dict) and "crashed" in one:
                result.crashed = dict.fromkeys(idx, _text(one["crashed"]))
            else:
                _store(one if isinstance(one, dict) else {}, idx, result)
            out.append(result)
        return out

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _store(got: dict[str, Any], idx: list[int], result: Outcome) -> None:
    """Record one response's results for the steps ``idx``."""
    if "error" in got and "results" not in got:
        for i in idx:
            result.errors[i] = _text(got["error"])
        return
    items = got.get("results")
    if not isinstance(items, list) or len(items) != len(idx):
        for i in idx:  # no usable answer: not run (never an error that could pass)
            result.crashed[i] = "protocol: results missing or of the wrong length"
        return
    for i, item in zip(idx, items, strict=True):
        if isinstance(item, dict) and "na" in item:
            result.not_applicable[i] = _text(item["na"])
        elif isinstance(item, dict) and "error" in item:
            result.errors[i] = _text(item["error"])
        elif isinstance(item, dict) and "crashed" in item:
            result.crashed[i] = _text(item["crashed"])
        else:
            try:
                result.values[i] = decode_value(item)
            except ValueError as e:  # not an answer: not run
                result.crashed[i] = f"protocol: {e}"


class FreshProcessAdapter(Adapter):
    """A ``cmd:`` implementation with a new process for every request (the
    fresh re-run of a failing group): nothing carries over between requests."""

    def __init__(self, argv: Sequence[str], *, timeout: float = 60.0,
                 label: str | None = None) -> None:
        self.argv = list(argv)
        self.timeout = check_timeout(timeout, "timeout")
        self.label = label
        self.name = label or " ".join(self.argv)
        self.broken: str | None = None

    def evaluate_outcome(self, params: Params, steps: Any) -> Outcome:
        one = SubprocessAdapter(self.argv, timeout=self.timeout, label=self.label)
        try:
            if one.broken:
                values = [step_value(s) for s in np.asarray(steps, dtype=object).ravel()]
                return Outcome(np.full(len(values), np.nan),
                               crashed=dict.fromkeys(range(len(values)), one.broken))
            self.version = one.version
            return one.evaluate_outcome(params, steps)
        finally:
            one.close()

    def close(self) -> None:
        pass
