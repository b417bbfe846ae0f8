"""The pytest plugin of expdecay, registered through the ``pytest11`` entry
point: every conformance vector as a pytest item.

::

    pytest --expdecay-impl "cmd:./my_port" [--expdecay-profile keras]
           [--expdecay-vectors=PATH ...] [--expdecay-timeout SECONDS]

Without ``--expdecay-impl`` this module only adds its options: it imports
nothing heavy (no numpy, no SymPy), so a test suite in an environment where
expdecay is installed pays nothing for it.  With the option, it loads
:mod:`expdecay.testing.items`, which holds the collectors, the items and the
design notes, and registers it as a plugin for their hooks.
"""

from __future__ import annotations

import pytest

from ..orders import ORDERS

#: The profiles of the conformance runner (``expdecay.conformance.runner.PROFILES``):
#: one per order of evaluation, named after it (:mod:`expdecay.orders` imports
#: nothing, so adding the options stays free; a test checks that the two agree).
PROFILES = ORDERS


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("expdecay", "expdecay conformance vectors as test items")
    group.addoption(
        "--expdecay-impl", metavar="NAME", default=None,
        help="check this implementation against the expdecay conformance vectors, one item "
        "per test: cmd:COMMAND, python:module:function, or a built-in name (expdecay, keras, "
        "tf-keras, optax, torch). Without it the plugin does nothing.")
    group.addoption(
        "--expdecay-profile", choices=PROFILES, default="keras",
        help="expected order and tolerances: keras (Keras's order, 2 ulps where pow is "
        "inexact) or exact (correctly rounded); default: keras")
    group.addoption(
        "--expdecay-vectors", nargs="+", action="extend", metavar="PATH", default=None,
        help="vector files or directories (default: the vectors shipped with expdecay); "
        "write --expdecay-vectors=PATH (repeatable) so that pytest does not take PATH into "
        "account when it chooses the rootdir")
    group.addoption(
        "--expdecay-timeout", type=float, default=60.0, metavar="SECONDS",
        help="seconds allowed for each request to a worker process (default: 60)")


def pytest_configure(config: pytest.Config) -> None:
    impl = config.getoption("expdecay_impl", None)
    if impl is None:
        if config.getoption("expdecay_vectors", None):
            raise pytest.UsageError("--expdecay-vectors needs --expdecay-impl")
        return
    from . import items

    items.activate(config, impl)
    config.pluginmanager.register(items, "expdecay-conformance-items")
