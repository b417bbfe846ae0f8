"""Compatibility alias of :mod:`expdecay.conformance.adapters.worker`:
``python -m expdecay.adapters.worker SPEC`` runs the same worker."""

from __future__ import annotations

import sys

from ..conformance.adapters.worker import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
