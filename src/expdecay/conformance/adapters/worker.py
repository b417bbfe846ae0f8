"""The worker side of the protocol: serve one built-in adapter over JSON lines.

``python -m expdecay.conformance.adapters.worker SPEC``, SPEC for example
``'{"name": "keras", "options": {"backend": "jax"}}'``.  :func:`serve`
answers requests (:func:`answer`, :func:`answer_batch`); the wire format is
:mod:`.codec`, the fork children :mod:`.processes`.

The protocol's stdout is a duplicate of the original standard output; file
descriptor 1 is pointed at standard error before any framework is imported,
so that nothing a framework prints can corrupt the protocol.

With ``"fresh": true`` in SPEC, every evaluation runs in a child forked
from the worker before it evaluated anything (see
:func:`serve`).  With ``"zygote": true``, the worker evaluates as usual
but first forks a child that keeps the state of a fresh start
(:class:`~expdecay.conformance.adapters.processes.Zygote`);
the ``batch`` requests marked ``"fresh": true`` are answered by children
forked from it, one per group, so that the re-run of failing groups needs
no second start-up of the implementation.

When the implementation cannot be made, the first line is
``{"protocol": "none", "error": "why"}``, with ``"kind": "lookup"`` when the
name does not resolve (an unknown name, a ``python:`` module that cannot be
imported or lacks the callable): the runner reports that as a bad argument.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

from .base import Adapter, Params, describe_exception, step_value
from .codec import (
    FRESH_PARALLEL,
    MAX_FRESH_PARALLEL,
    MAX_TIMEOUT,
    PROTOCOL,
    brief_repr,
    encode_value,
)
from .processes import Respond, Zygote, answer_in_child, fresh_answers, fresh_sequence

__all__ = ["main", "hello", "answer", "answer_group", "answer_batch", "serve"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        spec = json.loads(args[0]) if args else {}
        cache = spec.get("cache")
        if isinstance(cache, str) and cache:  # before any framework is imported
            for key, value in _jax_cache_settings(cache).items():
                os.environ.setdefault(key, value)
            if "jax" in sys.modules:  # forked from a hub: JAX read its settings already
                _configure_jax_cache()
        name = spec["name"]
        options = dict(spec.get("options", {}))
        from .registry import make_inprocess

        adapter = make_inprocess(name, **options)
    except Exception as e:  # noqa: BLE001 - reported as a failed start-up
        from .base import ImplementationLookupError

        print(f"worker start-up failed: {type(e).__name__}: {e}", file=sys.stderr)
        failure: dict[str, str] = {"protocol": "none", "error": str(e)[:300]}
        if isinstance(e, (ImplementationLookupError, TypeError, ValueError)) and not isinstance(
                e, ImportError):  # a bad name or a bad option: the caller's error
            # The runner turns this into a usage error (see SubprocessAdapter).
            failure["kind"] = "lookup"
        proto.write(json.dumps(failure) + "\n")
        return 3
    fresh = bool(spec.get("fresh", False))
    keep = bool(spec.get("zygote", False)) and not fresh
    if fresh or keep:
        try:
            adapter.prepare()
            _import_lazy_modules()
        except Exception as e:  # noqa: BLE001 - only slower children
            print(f"worker: prepare failed: {type(e).__name__}: {e}", file=sys.stderr)
    zygote = None
    if keep:  # forked before anything is evaluated: the fresh state for re-runs
        try:
            zygote = Zygote(respond_group(adapter), close=(proto.fileno(),))
        except OSError as e:
            print(f"worker: no fresh process state: {e}", file=sys.stderr)
    serve(adapter, sys.stdin, proto, fresh=fresh, zygote=zygote)
    return 0


def _jax_cache_settings(directory: str) -> dict[str, str]:
    """Environment that points JAX's persistent compilation cache at
    ``directory`` for every compilation (the runner gives each worker a
    directory of its own, so that a fresh child loads what its worker
    compiled for the same shapes instead of compiling it again; a loaded
    executable is the one the compiler produced).  No size limit: with one,
    JAX locks the directory and scans it at every write, which costs more
    than the compilations it saves."""
    return {"JAX_COMPILATION_CACHE_DIR": directory,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _configure_jax_cache() -> None:
    """Apply the environment's compilation-cache settings to a JAX imported
    before they were set (the configuration names are the variables'
    names in lower case); nothing has been compiled yet."""
    import jax

    for key in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"):
        text = os.environ.get(key)
        if text is not None:
            value: str | float | int = text if key.endswith("_DIR") else (
                float(text) if key.endswith("_SECS") else int(text))
            jax.config.update(key.lower(), value)


#: Modules a framework imports at its first evaluation (measured): imported
#: before the fresh state is forked, so that each fresh child need not.
_LAZY_MODULES = {"jax": ("jaxlib.mlir.dialects.mhlo", "jaxlib.mlir.dialects.builtin",
                         "jaxlib.mlir.extras.meta")}


def _import_lazy_modules() -> None:
    import importlib

    for framework, modules in _LAZY_MODULES.items():
        if framework in sys.modules:
            for m in modules:
                try:
                    importlib.import_module(m)
                except ImportError:
                    pass

def hello(adapter: Adapter, *, fresh_batch: bool = False) -> dict[str, Any]:
    """The hello line: ``ops`` lists ``batch`` (several groups per request,
    see :func:`answer_batch`), and ``fresh-batch`` and ``fresh-sequence``
    when the worker can evaluate each group of a batch in a fresh process
    state of its own, or every group of a batch, one after another, in one
    fresh process state (:func:`~.processes.fresh_sequence`)."""
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
    return {"id": rid, "groups": [answer_group(adapter, g) for g in groups]}


def answer_group(adapter: Adapter, group: Any) -> dict[str, Any]:
    """The answer to one group of a ``batch`` request: :func:`answer` without
    the id (never raises)."""
    one = answer(adapter, group) if isinstance(group, dict) else {
        "error": "a group must be a JSON object"}
    one.pop("id", None)
    return one


def respond_group(adapter: Adapter) -> Respond:
    """:func:`answer_group` for ``adapter``, as the fork children of
    :mod:`.processes` call it."""
    return lambda group: answer_group(adapter, group)


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
        return {"id": rid,
                "error": f"timeout must be a number of seconds; got {brief_repr(timeout)}"}
    parallel = request.get("parallel", FRESH_PARALLEL)
    if isinstance(parallel, bool) or not isinstance(parallel, int) or not (
            1 <= parallel <= MAX_FRESH_PARALLEL):
        return {"id": rid, "error": "parallel must be an integer from 1 to "
                                    f"{MAX_FRESH_PARALLEL}; got {brief_repr(parallel)}"}
    sequence = request.get("sequence", False)
    if not isinstance(sequence, bool):
        return {"id": rid, "error": f"sequence must be true or false; got {brief_repr(sequence)}"}
    if fresh:  # this worker evaluates nothing itself: fork from it
        respond = respond_group(adapter)
        here = fresh_sequence(respond, groups, float(timeout)) if sequence else \
            fresh_answers(respond, groups, float(timeout), parallel)
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
                text = answer_in_child(lambda r: answer(adapter, r), request)
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


if __name__ == "__main__":
    sys.exit(main())
