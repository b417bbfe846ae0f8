"""The JSON-lines protocol between the runner and an implementation.

Every implementation is checked through this one protocol: the built-in
adapters run in a worker subprocess (:mod:`expdecay.adapters.worker`) and an
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

The runner enforces a timeout on each request and restarts a worker that
crashed or hung, charging the failure to the steps involved.
"""

from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from ..oracle import to_exact
from .base import Adapter, AdapterError, Outcome, Params, encode_number, step_value

PROTOCOL = "expdecay-conformance/1"

#: Steps per request; a failing request is retried one step at a time.
CHUNK = 4096

#: Crashes or timeouts in a row after which the implementation is given up.
MAX_CONSECUTIVE_FAILURES = 5

#: Longest accepted line from an implementation (bytes).
MAX_LINE = 1 << 26


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


def decode_value(text: Any) -> float:
    """An implementation's output string -> its value as a float64.

    Raises ``ValueError`` when the text is not a number or its value is not
    exactly a float64 (so it cannot be a value of any of the four formats).
    """
    if not isinstance(text, str) or len(text) > 200:
        raise ValueError(f"an output must be a number string; got {str(text)[:60]!r}")
    q = to_exact(text, "output")
    if isinstance(q, float):
        return q
    f = float(q)
    if q != f:
        raise ValueError(f"output {text!r} is not exactly a float64 value")
    return f


# ---------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------


def hello(adapter: Adapter) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL,
        "name": adapter.name,
        "version": adapter.version,
        "vectorised": bool(getattr(adapter, "vectorised", False)),
        "ops": ["evaluate", "applicable"],
    }


def answer(adapter: Adapter, request: Any) -> dict[str, Any]:
    """The response to one request (never raises)."""
    rid = request.get("id") if isinstance(request, dict) else None
    try:
        if not isinstance(request, dict):
            raise ValueError("a request must be a JSON object")
        params = Params.from_json(request.get("params"))
        if request.get("op", "evaluate") == "applicable":
            return {"id": rid, "applicable": adapter.applicable(params)}
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
            results.append({"na": out.not_applicable[i]})
        elif i in out.errors:
            results.append({"error": out.errors[i]})
        else:
            results.append(encode_value(float(v)))
    return {"id": rid, "results": results}


def serve(adapter: Adapter, inp: IO[str], out: IO[str]) -> None:
    """Answer requests from ``inp`` until end of input."""
    out.write(json.dumps(hello(adapter)) + "\n")
    out.flush()
    for line in inp:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as e:
            response: dict[str, Any] = {"id": None, "error": f"bad JSON: {e}"}
        else:
            response = answer(adapter, request)
        out.write(json.dumps(response) + "\n")
        out.flush()


# ---------------------------------------------------------------------------
# Runner side
# ---------------------------------------------------------------------------


class WorkerError(AdapterError):
    """The worker crashed, hung or broke the protocol."""


class Worker:
    """One implementation process and its stdout reader thread."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None, startup_timeout: float):
        self.stderr = tempfile.TemporaryFile(mode="w+b")
        try:
            self.proc = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self.stderr, env=env, text=True, bufsize=1,
            )
        except OSError as e:
            raise WorkerError(f"cannot start {' '.join(argv)!r}: {e}") from None
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.receive(startup_timeout, "start-up")
        if not isinstance(first, dict) or first.get("protocol") != PROTOCOL:
            self.close()
            raise WorkerError(f"no {PROTOCOL} hello line; got {str(first)[:120]!r}")
        self.hello = first

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                line = self.proc.stdout.readline(MAX_LINE)
                if not line:
                    break
                self.lines.put(line)
        except (OSError, ValueError):
            pass
        self.lines.put(None)

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 2000))
            lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1][:200] if lines else ""

    def receive(self, timeout: float, what: str) -> Any:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise WorkerError(f"timeout: no answer to {what} within {timeout:g} s") from None
        if line is None:
            code = self.proc.wait()
            tail = self.stderr_tail()
            self.close()
            raise WorkerError(
                f"process exited (status {code}) during {what}" + (f": {tail}" if tail else ""))
        if not line.endswith("\n") and len(line) >= MAX_LINE:
            self.close()
            raise WorkerError(f"line longer than {MAX_LINE} bytes during {what}")
        try:
            return json.loads(line)
        except ValueError:
            self.close()
            raise WorkerError(f"not JSON during {what}: {line[:120]!r}") from None

    def request(self, obj: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            tail = self.stderr_tail()
            self.close()
            msg = "process closed its input" + (f": {tail}" if tail else "")
            raise WorkerError(msg) from None
        got = self.receive(timeout, f"request {obj.get('id')}")
        if not isinstance(got, dict) or got.get("id") != obj.get("id"):
            self.close()
            raise WorkerError(
                f"answer does not match request {obj.get('id')}: {str(got)[:120]!r}")
        return got

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


class SubprocessAdapter(Adapter):
    """An implementation behind the protocol, in its own process.

    ``timeout`` bounds each request (seconds); ``startup_timeout`` the hello
    line (TensorFlow alone takes seconds to import).
    """

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 timeout: float = 60.0, startup_timeout: float = 120.0,
                 label: str | None = None) -> None:
        if not argv:
            raise ValueError("argv must name a program")
        self.argv = list(argv)
        self.env = env
        self.timeout = float(timeout)
        self.startup_timeout = float(startup_timeout)
        self._worker: Worker | None = None
        self._next_id = 0
        self.broken: str | None = None
        self.restarts = 0
        self.consecutive_failures = 0
        self.name = label or " ".join(self.argv)
        self.version = "unknown"
        try:
            self._start()
        except WorkerError as e:
            self.broken = str(e)

    def _start(self) -> Worker:
        if self._worker is None:
            self._worker = Worker(self.argv, self.env, self.startup_timeout)
            h = self._worker.hello
            self.name = str(h.get("name", self.name))[:80]
            self.version = str(h.get("version", "unknown"))[:120]
            self.vectorised = bool(h.get("vectorised", False))
            self.ops = h.get("ops", ["evaluate"])
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
        except WorkerError:
            self._worker = None
            self.restarts += 1
            raise

    def applicable(self, params: Params) -> str | None:
        if self.broken:
            return None
        if "applicable" not in getattr(self, "ops", []):
            return None
        try:
            got = self._call({"op": "applicable", "params": params.to_json()}, self.timeout)
        except WorkerError:
            return None
        reason = got.get("applicable")
        return str(reason)[:300] if reason is not None else None

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
            for i in idx:
                result.errors[i] = str(e)
            return
        self.consecutive_failures = 0
        _store(got, idx, result)

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
            result.errors[i] = str(got["error"])[:300]
        return
    items = got.get("results")
    if not isinstance(items, list) or len(items) != len(idx):
        for i in idx:
            result.errors[i] = "protocol: results missing or of the wrong length"
        return
    for i, item in zip(idx, items, strict=True):
        if isinstance(item, dict) and "na" in item:
            result.not_applicable[i] = str(item["na"])[:300]
        elif isinstance(item, dict) and "error" in item:
            result.errors[i] = str(item["error"])[:300]
        else:
            try:
                result.values[i] = decode_value(item)
            except ValueError as e:
                result.errors[i] = f"protocol: {e}"
