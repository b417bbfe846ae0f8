"""Compatibility alias: the adapters now live in :mod:`expdecay.conformance.adapters`.

``from expdecay.adapters import get_adapter, Params`` keeps working, and so does
the worker command ``python -m expdecay.adapters.worker`` (see :mod:`.worker`).
"""

from __future__ import annotations

from ..conformance.adapters import (
    IMPLEMENTATIONS,
    PROTOCOL,
    Adapter,
    AdapterError,
    ImplementationLookupError,
    NotApplicableError,
    Outcome,
    Params,
    SubprocessAdapter,
    available_adapters,
    check_loadable,
    check_options,
    close_all_workers,
    default_configurations,
    get_adapter,
    make_inprocess,
    parse_options,
)

__all__ = [
    "Params",
    "Adapter",
    "AdapterError",
    "NotApplicableError",
    "ImplementationLookupError",
    "Outcome",
    "SubprocessAdapter",
    "PROTOCOL",
    "get_adapter",
    "check_loadable",
    "check_options",
    "parse_options",
    "close_all_workers",
    "available_adapters",
    "make_inprocess",
    "default_configurations",
    "IMPLEMENTATIONS",
]
