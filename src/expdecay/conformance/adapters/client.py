"""The runner's side of the JSON-lines protocol: a :class:`Worker` process and
the adapters that speak to one (:class:`SubprocessAdapter`,
:class:`FreshProcessAdapter`).

The wire format is :mod:`.codec`.  Every wait is bounded and every failure
is charged to the steps of the request concerned (the runner then retries
them one at a time in a fresh worker, so only the guilty steps fail):

* the hello line must arrive within the start-up timeout, which is
  :data:`~.codec.STARTUP_FACTOR` times the request timeout (``--timeout``)
  unless given explicitly: starting a framework (importing TensorFlow takes
  ten seconds) is slower than answering a request;
* each request must be read and answered within the request timeout
  (``--timeout``); a ``batch`` request of ``n`` groups within ``n`` request
  timeouts (:func:`~.codec.batch_deadline`), so that a slow but live
  implementation is not ended for being sent a large batch; a fresh batch
  (each group in a child of its own, :func:`~.processes.fresh_answers`) of
  ``n`` groups, ``k`` children run at once, within ``n + k`` request
  timeouts, each child being allowed ``k`` request timeouts since the
  children share the processors (:func:`~.codec.fresh_batch_deadline`);
* a line is at most :data:`~.codec.MAX_LINE` bytes (newline included),
  UTF-8, one JSON value nested at most as deep as Python's recursion limit
  allows;
* the runner reads at most :data:`MAX_QUEUED_LINES` lines ahead of what it
  asked for; beyond that it stops reading, so a program that floods its
  output blocks on its own writes instead of filling the runner's memory
  (at most ``(MAX_QUEUED_LINES + 1) * MAX_LINE`` bytes are held);
* a process that closes its output, exits, writes bytes that are not UTF-8,
  a line that is not JSON, too long, or an answer to another request has
  failed that request, and is ended.

Each worker runs in its own session and process group (see
:mod:`.processes`): the runner closes the worker's input, waits up to
:data:`~.processes.CLOSE_GRACE` seconds for a clean exit (nothing when the
worker has failed), then ends the whole group
(:func:`~.processes.end_process_group`).  :func:`close_all_workers` ends
every live worker (the CLI calls it on Ctrl-C; it also runs at interpreter
exit); a :class:`WorkerSet` ends only the workers started while it was
:func:`owning` them (one check among others).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import json
import os
import queue
import selectors
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .base import (
    Adapter,
    AdapterError,
    ImplementationLookupError,
    Outcome,
    Params,
    step_value,
)
from .codec import (
    FRESH_PARALLEL,
    MAX_LINE,
    MAX_TIMEOUT,
    PROTOCOL,
    STARTUP_FACTOR,
    batch_deadline,
    brief_repr,
    check_timeout,
    decode_value,
    encode_step,
    fresh_batch_deadline,
    short_text,
)
from .processes import CLOSE_GRACE, POLL_INTERVAL, Process, Spawn, end_process_group

__all__ = [
    "CHUNK", "MAX_CONSECUTIVE_FAILURES", "MAX_QUEUED_LINES", "EXIT_GRACE", "EXIT_DRAIN",
    "WorkerError", "close_all_workers", "WorkerSet", "owning", "Worker", "SubprocessAdapter",
    "FreshProcessAdapter",
]

#: Steps per request; a failing request is retried one step at a time.
CHUNK = 4096

#: Crashes or timeouts in a row after which the implementation is given up.
MAX_CONSECUTIVE_FAILURES = 5

#: Lines read from an implementation ahead of the runner (see the module
#: docstring): a well-behaved implementation never has more than one line
#: outstanding, since it answers one request at a time.
MAX_QUEUED_LINES = 2

#: After the worker closed its output: seconds it has to exit before it is
#: reported as still running (and killed).
EXIT_GRACE = 1.0

#: After the worker exited while another process holds its output open:
#: seconds during which lines it wrote before exiting are still read.
EXIT_DRAIN = 0.2


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
                why = short_text(first["error"])
                if lookup_errors and first.get("kind") == "lookup":
                    self.close(graceful=False)
                    raise ImplementationLookupError(why)
                raise self._fail(f"start-up failed: {why}")
            raise self._fail(f"no {PROTOCOL} hello line; got {brief_repr(first)}")
        ops = first.get("ops", ["evaluate"])
        bad = [k for k in ("name", "version") if not isinstance(first.get(k, ""), str)]
        if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
            bad.append("ops")
        if bad:
            raise self._fail(f"malformed hello line ({', '.join(bad)}): {brief_repr(first)}")
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
            raise self._fail(f"protocol: answer does not match {what}: {brief_repr(got)}")
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
        return short_text(reason) if reason is not None else None

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
                result.crashed = dict.fromkeys(idx, short_text(one["crashed"]))
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
            result.errors[i] = short_text(got["error"])
        return
    items = got.get("results")
    if not isinstance(items, list) or len(items) != len(idx):
        for i in idx:  # no usable answer: not run (never an error that could pass)
            result.crashed[i] = "protocol: results missing or of the wrong length"
        return
    for i, item in zip(idx, items, strict=True):
        if isinstance(item, dict) and "na" in item:
            result.not_applicable[i] = short_text(item["na"])
        elif isinstance(item, dict) and "error" in item:
            result.errors[i] = short_text(item["error"])
        elif isinstance(item, dict) and "crashed" in item:
            result.crashed[i] = short_text(item["crashed"])
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
