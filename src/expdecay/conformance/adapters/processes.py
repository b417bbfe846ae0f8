"""Processes of the protocol: fork children and process groups.

Worker side: a *fresh* answer comes from a child forked from a worker that
has evaluated nothing, so that it sees the process state of a fresh start
(:func:`fork_writer` is the one way such a child is made: it writes its
answers to a pipe, one JSON line each, and exits).  :func:`fresh_answers`
runs one child per group of a batch, :func:`fresh_sequence` one child for
all of them in order, :func:`answer_in_child` one child for one request,
and a :class:`Zygote` keeps such a state for a worker that evaluates
itself.  Each takes ``respond``, the worker's answer to one request or group
(:func:`expdecay.conformance.adapters.worker.answer_group`).

Runner side: each worker runs in its own session and process group, so that
a terminal's Ctrl-C reaches only the runner and a worker's children (a shell
script's background jobs that inherited its output, say) can be ended with
it: :func:`end_process_group` sends SIGTERM to the whole group, waits up to
:data:`TERM_GRACE` seconds, then sends SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, Protocol

from .codec import FRESH_PARALLEL, batch_deadline, fresh_child_timeout

__all__ = [
    "CLOSE_GRACE", "TERM_GRACE", "KILL_WAIT", "POLL_INTERVAL", "Respond", "fork_writer",
    "reap", "fresh_answers", "fresh_sequence", "answer_in_child", "Zygote", "Process",
    "Spawn", "end_process_group",
]

#: Seconds a worker has to exit by itself once its input is closed.
CLOSE_GRACE = 2.0

#: Seconds a worker's process group has between SIGTERM and SIGKILL.
TERM_GRACE = 0.5

#: Seconds to wait for a process to be reaped after SIGKILL (an unkillable
#: process, in uninterruptible sleep, is then left behind rather than waited for).
KILL_WAIT = 2.0

#: Granularity of the runner's waits (seconds).
POLL_INTERVAL = 0.1


#: The worker's answer to one request or group (a JSON object; never raises).
Respond = Callable[[Any], dict[str, Any]]


def fork_writer(answers: Callable[[], Iterable[dict[str, Any]]]) -> tuple[int, int]:
    """Fork a child that writes each object of ``answers()`` (called in the
    child) to a pipe, one JSON line each, as it goes, then exits: status 0,
    or 70 when anything failed (the parent then has the lines written so
    far).  Returns ``(pid, read end of the pipe)`` in the parent."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(read_end)
            for one in answers():
                view = memoryview((json.dumps(one) + "\n").encode())
                while view:
                    view = view[os.write(write_end, view):]
        except BaseException:  # noqa: BLE001 - the parent sees the answers so far
            status = 70
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def fresh_answers(respond: Respond, groups: list[Any], timeout: float,
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

                def one(group: Any = groups[i]) -> list[dict[str, Any]]:
                    return [respond(group)]

                pid, read_end = fork_writer(one)
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
                status = reap(pid)
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
                    reap(pid)
                    results[i] = {"crashed": f"timeout: no answer within {child_timeout:g} s "
                                             "in a fresh process"}
    return [r if r is not None else {"crashed": "no answer"} for r in results]


def fresh_sequence(respond: Respond, groups: list[Any], timeout: float
                   ) -> list[dict[str, Any]]:
    """Every group of a batch answered, in order, by ONE child forked from
    this process (which must have evaluated nothing): the groups see the
    process state of a fresh start followed by the groups before them in
    the list.  The child writes one line per group as it goes; it is killed
    when it has not finished within :func:`batch_deadline` (one request
    timeout per group), and a group without an answer gets
    ``{"crashed": why}``."""
    deadline = time.monotonic() + batch_deadline(timeout, len(groups))
    pid, read_end = fork_writer(lambda: (respond(g) for g in groups))
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
    status = reap(pid)
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


def reap(pid: int) -> int:
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

    def __init__(self, respond: Respond, close: Sequence[int] = ()) -> None:
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
                            got = fresh_sequence(respond, req["groups"], float(req["timeout"]))
                        else:
                            got = fresh_answers(respond, req["groups"], float(req["timeout"]),
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


def answer_in_child(respond: Respond, request: dict[str, Any]) -> str | None:
    """The response line to ``request``, computed in a forked child (None
    when the child gave no complete answer)."""
    pid, read_end = fork_writer(lambda: [respond(request)])
    chunks = []
    with os.fdopen(read_end, "rb") as f:
        while chunk := f.read(1 << 16):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if status != 0 or not data.endswith(b"\n"):
        return None
    return data.decode()


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
