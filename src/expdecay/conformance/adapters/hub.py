"""Start-up hubs: one import of a framework shared by several workers.

Importing TensorFlow costs about 5 CPU-seconds, and the default ``expdecay
check`` starts three workers that need it (``keras[backend=tensorflow]``,
``tf-keras``, ``tf-compat-v1``); PyTorch, JAX and Paddle are each needed by
two or more.  A hub is a process that imports such a framework once, runs
nothing with it, and then forks each of those workers on request.  A worker
forked from a hub is in the state of a process that has just imported the
framework: nothing has been evaluated in it, exactly as when a new
interpreter is started (the worker itself then imports its adapter and
proceeds as usual, zygote included).

Protocol between the runner (:class:`Hub`) and the hub (:func:`main`), one
JSON object per ``SOCK_SEQPACKET`` message on a Unix socket pair:

* hub -> runner, once: ``{"ready": true}`` when the modules are imported, or
  ``{"error": why}`` (the hub then exits; the runner starts those workers
  the usual way);
* runner -> hub: ``{"spec": SPEC, "env": {...}}`` with three file
  descriptors attached (the worker's standard input, output and error);
  the hub forks, and the child makes itself the leader of a new session
  (so that the runner can end its whole process group), installs the three
  descriptors and the environment, and runs
  :func:`expdecay.conformance.adapters.worker.main` with SPEC;
* hub -> runner: ``{"pid": PID}`` for that request (requests are answered
  in order), or ``{"pid": null, "error": why}``;
* hub -> runner: ``{"exit": PID, "status": CODE}`` when a worker it forked
  has ended (``CODE`` as :attr:`subprocess.Popen.returncode`: negative for
  a signal);
* end of the socket: the hub stops forking, and exits once every worker it
  forked has ended (their exits can no longer be reported).

The runner's side of a forked worker is a :class:`HubProcess`, which has
the part of :class:`subprocess.Popen`'s interface the protocol's
:class:`~expdecay.conformance.adapters.client.Worker` uses.
:func:`hub_family` says which hub, if any, can start the worker of an
implementation.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from .registry import IMPLEMENTATIONS, installed, worker_env

#: Seconds the hub waits between two looks at its children's exits.
REAP_INTERVAL = 0.02

#: Largest message, in bytes.
MAX_MESSAGE = 1 << 20

__all__ = ["HUB_MODULES", "hub_family", "hub_env", "Hub", "HubProcess", "main"]

#: Modules a start-up hub imports for the workers of a framework (see
#: :mod:`expdecay.conformance.adapters.hub`): the framework and what its
#: adapters' ``prepare`` imports, nothing that reads ``KERAS_BACKEND``
#: other than TensorFlow (which imports parts of Keras, hence the hub's
#: ``KERAS_BACKEND=tensorflow``).
HUB_MODULES: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow",),
    "torch": ("torch", "torch._dynamo", "torch.optim.lr_scheduler"),
    "jax": ("jax", "jax.numpy"),
    "paddle": ("paddle",),
}


def hub_family(name: str, options: dict[str, Any]) -> str | None:
    """The key of :data:`HUB_MODULES` whose hub can start the worker of
    ``name`` with ``options``, or None (no hub: started the usual way).  A
    Keras backend other than the one ``KERAS_BACKEND`` already names in this
    process's environment gets no hub, so that the hub and its workers
    always see the same environment at import."""
    if name == "keras":
        family = str(options.get("backend", ""))
        if os.environ.get("KERAS_BACKEND", family) != family:
            return None
    else:
        needs = IMPLEMENTATIONS.get(name, ("", "", ()))[2]
        family = next((m for m in needs if m in HUB_MODULES), "")
    if family not in HUB_MODULES or not installed(family):
        return None
    if family == "tensorflow" and os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return None
    return family


def hub_env(family: str) -> dict[str, str]:
    """The environment of the hub of ``family`` (:func:`worker_env`, with
    the Keras backend TensorFlow's import selects made explicit)."""
    env = worker_env()
    if family == "tensorflow":
        env["KERAS_BACKEND"] = "tensorflow"
    return env


# ---------------------------------------------------------------------------
# The hub process
# ---------------------------------------------------------------------------


def _send(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.sendall(json.dumps(obj).encode())


def main(argv: list[str] | None = None) -> int:
    """``python -m expdecay.conformance.adapters.hub FD MODULES``: import the
    JSON list MODULES, then serve fork requests on the socket FD."""
    args = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(args[0]))
    os.dup2(2, 1)  # nothing a framework prints goes anywhere but stderr
    sys.stdout = sys.stderr
    try:
        import importlib

        for module in json.loads(args[1]):
            importlib.import_module(module)
    except BaseException as e:  # noqa: BLE001 - reported; the runner starts workers itself
        _send(sock, {"error": f"{type(e).__name__}: {e}"[:300]})
        return 3
    _send(sock, {"ready": True})
    children: set[int] = set()
    open_ = True
    while open_ or children:
        ready, _, _ = select.select([sock] if open_ else [], [], [], REAP_INTERVAL)
        if ready:
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 3)
            except OSError:
                data, fds = b"", []
            if not data:
                open_ = False
                for fd in fds:
                    os.close(fd)
            else:
                pid = _fork_worker(sock, data, fds)
                if pid is not None:
                    children.add(pid)
        for pid in list(children):
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                got, status = pid, 0
            if got:
                children.discard(pid)
                if open_:
                    try:
                        _send(sock, {"exit": pid, "status": os.waitstatus_to_exitcode(status)})
                    except OSError:
                        open_ = False
    return 0


def _fork_worker(sock: socket.socket, data: bytes, fds: list[int]) -> int | None:
    """Fork one worker for the request ``data`` with descriptors ``fds``;
    its pid (after answering the runner), or None."""
    try:
        request = json.loads(data)
        spec, env = request["spec"], request["env"]
        if len(fds) != 3 or not isinstance(spec, str) or not isinstance(env, dict):
            raise ValueError("a request is a spec, an environment and three descriptors")
        pid = os.fork()
    except (ValueError, KeyError, TypeError, OSError) as e:
        for fd in fds:
            os.close(fd)
        _send(sock, {"pid": None, "error": f"{type(e).__name__}: {e}"[:300]})
        return None
    if pid == 0:  # pragma: no cover - runs in the worker
        code = 70
        try:
            sock.close()
            os.setsid()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in fds:
                if fd > 2:
                    os.close(fd)
            os.environ.clear()
            os.environ.update({str(k): str(v) for k, v in env.items()})
            sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - its own input
            sys.stdout = sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            signal.signal(signal.SIGINT, signal.default_int_handler)
            from .worker import main as worker_main

            code = worker_main([spec])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - the runner sees the exit status
            code = 70
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os._exit(code)
    for fd in fds:
        os.close(fd)
    _send(sock, {"pid": pid})
    return pid


# ---------------------------------------------------------------------------
# The runner's side
# ---------------------------------------------------------------------------


class HubProcess:
    """A worker forked by a hub, seen like a :class:`subprocess.Popen` with
    ``stdin=PIPE, stdout=PIPE``: ``pid``, ``stdin``, ``stdout``,
    ``returncode``, :meth:`poll`, :meth:`wait`, :meth:`send_signal`."""

    def __init__(self, hub: Hub, pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.hub = hub
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.hub.exit_status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.005)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


class Hub:
    """A hub process that has imported ``modules`` (see the module
    docstring); :meth:`spawn` forks a worker from it.  ``env`` is the hub's
    environment (that of the workers, less what each request changes: the
    environment variables a framework reads at import, such as
    ``KERAS_BACKEND``, must be the same for the hub and its workers)."""

    def __init__(self, modules: Sequence[str], env: dict[str, str] | None,
                 timeout: float) -> None:
        self.modules = list(modules)
        self.error: str | None = None
        self._exits: dict[int, int] = {}
        self._replies: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._lock = threading.Lock()  # one spawn at a time
        self._stderr = tempfile.TemporaryFile()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = mine
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-m", "expdecay.conformance.adapters.hub",
                 str(theirs.fileno()), json.dumps(self.modules)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                env=env, pass_fds=(theirs.fileno(),), start_new_session=True)
        except OSError as e:
            self.proc = None
            self.error = f"cannot start a hub: {e}"
            mine.close()
            return
        finally:
            theirs.close()
        self._ready = threading.Event()
        threading.Thread(target=self._read, name=f"expdecay-hub-{self.proc.pid}",
                         daemon=True).start()
        if not self._ready.wait(timeout) and self.error is None:
            self.error = f"the hub did not import {', '.join(self.modules)} within {timeout:g} s"
        if self.error is not None:
            self.close()

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if "ready" in msg:
                self._ready.set()
            elif "exit" in msg:
                with self._cond:
                    self._exits[int(msg["exit"])] = int(msg["status"])
                    self._cond.notify_all()
            elif "error" in msg and "pid" not in msg:
                self.error = str(msg["error"])
                self._ready.set()
            else:
                with self._cond:
                    self._replies.append(msg)
                    self._cond.notify_all()
        with self._cond:
            if self.error is None:
                self.error = "the hub has ended"
            self._cond.notify_all()
        self._ready.set()

    def exit_status(self, pid: int) -> int | None:
        """The exit status of a worker forked by this hub, None while it
        runs.  Once the hub has ended, a worker that no longer exists has
        status -9 (its real status could not be reported)."""
        with self._cond:
            if pid in self._exits:
                return self._exits[pid]
            hub_gone = self.error is not None
        if hub_gone:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return -signal.SIGKILL
            except PermissionError:
                pass
        return None

    def spawn(self, spec: str, env: dict[str, str], stderr: IO[bytes],
              timeout: float) -> HubProcess:
        """Fork a worker running ``spec`` with environment ``env``; its
        standard error goes to ``stderr``.  ``OSError`` when the hub cannot."""
        if self.error is not None:
            raise OSError(self.error)
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            with self._lock:
                socket.send_fds(self._sock, [json.dumps({"spec": spec, "env": env}).encode()],
                                [in_r, out_w, stderr.fileno()])
                deadline = time.monotonic() + timeout
                with self._cond:
                    while not self._replies:
                        left = deadline - time.monotonic()
                        if self.error is None and left <= 0:
                            # A late answer would be taken for the next request's.
                            self.error = f"the hub did not answer within {timeout:g} s"
                        if self.error is not None:
                            raise OSError(self.error)
                        self._cond.wait(left)
                    reply = self._replies.pop(0)
        except BaseException:
            for fd in (in_w, out_r):
                os.close(fd)
            raise
        finally:
            os.close(in_r)
            os.close(out_w)
        if not isinstance(reply.get("pid"), int):
            os.close(in_w)
            os.close(out_r)
            raise OSError(f"the hub could not start a worker: {reply.get('error')}")
        return HubProcess(self, reply["pid"], os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb"))

    def close(self) -> None:
        """End the hub (its workers go on; they end with their input)."""
        try:  # shutdown first: it ends the reader's recv, and the hub sees the end
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    self.proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
                    pass
        self._stderr.close()


if __name__ == "__main__":
    sys.exit(main())

