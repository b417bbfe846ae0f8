"""Compatibility alias: the adapters now live in :mod:`expdecay.conformance.adapters`.

``from expdecay.adapters import get_adapter, Params`` keeps working, and so does
the worker command ``python -m expdecay.adapters.worker`` (see :mod:`.worker`).
"""

from __future__ import annotations

from ..conformance import adapters as _owner
from ..conformance.adapters import *  # noqa: F403 - the alias re-exports the owner's names

__all__ = list(_owner.__all__)
