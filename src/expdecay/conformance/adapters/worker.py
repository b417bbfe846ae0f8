"""Worker process: serve one built-in adapter over the JSON-lines protocol.

``python -m expdecay.conformance.adapters.worker SPEC``, SPEC for example
``'{"name": "keras", "options": {"backend": "jax"}}'`` (``python -m
expdecay.adapters.worker SPEC``, the older name, runs the same code).

The protocol's stdout is a duplicate of the original standard output; file
descriptor 1 is pointed at standard error before any framework is imported,
so that nothing a framework prints can corrupt the protocol.

With ``"fresh": true`` in SPEC, every evaluation runs in a child forked
from the worker before it evaluated anything (see
:func:`expdecay.conformance.adapters.protocol.serve`).  With ``"zygote":
true``, the worker evaluates as usual but first forks a child that keeps
the state of a fresh start (:class:`~expdecay.conformance.adapters.protocol.Zygote`);
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

from .protocol import PROTOCOL


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
        from . import make_inprocess

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
    from .protocol import Zygote, serve

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
            zygote = Zygote(adapter, close=(proto.fileno(),))
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
            jax.config.update(key.lower(), value)  # type: ignore[no-untyped-call]


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


if __name__ == "__main__":
    assert PROTOCOL
    sys.exit(main())
