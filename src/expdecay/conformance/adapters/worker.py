"""Worker process: serve one built-in adapter over the JSON-lines protocol.

``python -m expdecay.conformance.adapters.worker SPEC``, SPEC for example
``'{"name": "keras", "options": {"backend": "jax"}}'`` (``python -m
expdecay.adapters.worker SPEC``, the older name, runs the same code).

The protocol's stdout is a duplicate of the original standard output; file
descriptor 1 is pointed at standard error before any framework is imported,
so that nothing a framework prints can corrupt the protocol.

With ``"fresh": true`` in SPEC, every evaluation runs in a child forked
from the worker before it evaluated anything (see
:func:`expdecay.conformance.adapters.protocol.serve`).

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
    from .protocol import serve

    fresh = bool(spec.get("fresh", False))
    if fresh:
        try:
            adapter.prepare()
        except Exception as e:  # noqa: BLE001 - only slower children
            print(f"worker: prepare failed: {type(e).__name__}: {e}", file=sys.stderr)
    serve(adapter, sys.stdin, proto, fresh=fresh)
    return 0


if __name__ == "__main__":
    assert PROTOCOL
    sys.exit(main())
