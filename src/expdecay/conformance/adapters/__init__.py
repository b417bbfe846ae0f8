"""Adapters: every implementation the conformance runner can check.

>>> from expdecay.conformance.adapters import Params, get_adapter
>>> a = get_adapter("expdecay")
>>> a.evaluate(Params(0.1, 100000, 0.96, False, "float32"), [10**6]).tolist()
[0.0664832666516304]

``get_adapter(name, **options)`` returns an object with ``.name``,
``.version``, ``.applicable(params)`` and ``.evaluate(params, steps)``
(see :mod:`expdecay.conformance.adapters.base`).  Names:

* ``expdecay`` (options ``order="exact"|"keras"``): this package's fast path;
* ``keras`` (``backend``, ``step_mode="array"|"scalar"``): Keras 3;
* ``tf-keras`` (``step_mode``): tf.keras on TensorFlow;
* ``optax`` (``x64``, ``step_mode``): optax.exponential_decay on JAX;
* ``torch`` (``form="closed"|"chainable"``): StepLR / ExponentialLR;
* ``tf-compat-v1`` (``step_mode``): ``tf.compat.v1.train.exponential_decay``;
* ``jax-example-libraries`` (``x64``, ``step_mode``):
  ``jax.example_libraries.optimizers.exponential_decay`` (continuous only);
* ``mlx``: ``mlx.optimizers.step_decay`` / ``exponential_decay`` (float32);
* ``paddle`` (``api="classes"|"legacy"``): ``paddle.optimizer.lr.StepDecay`` /
  ``ExponentialDecay``, or the legacy function ``exponential_decay``;
* ``timm``: ``StepLRScheduler``, loaded without importing ``timm``;
* ``mindspore`` (``form="cell"|"list"``): ``nn.ExponentialDecayLR`` /
  ``nn.exponential_decay_lr`` (opt-in: not in the ``peers`` extra);
* ``python:module:function``: any callable (see :mod:`.python`);
* ``cmd:COMMAND``: an external program speaking the JSON-lines protocol.

Framework adapters run in a worker subprocess by default (``isolated=True``):
Keras's backend must be chosen before keras is imported, and a crash or a
hang must not take the caller down.  ``timeout`` bounds each request and,
twice over, the worker's start-up (see :mod:`.client`).

A name that does not resolve (an unknown implementation, a ``python:``
module that cannot be imported or has no such callable) raises
:class:`ImplementationLookupError`, a ``ValueError`` with a one-line message.
Option values are scalars (str, int, float, bool or None).

Modules: :mod:`.registry` (the names and :func:`get_adapter`), :mod:`.base`
(the interface), one module per implementation named after it, and the
protocol: :mod:`.codec` (wire format), :mod:`.worker` (worker side),
:mod:`.client` (runner side), :mod:`.processes` (fork children, process
groups), :mod:`.hub` (start-up hubs).
"""

from __future__ import annotations

from .base import (
    Adapter,
    AdapterError,
    ImplementationLookupError,
    NotApplicableError,
    Outcome,
    Params,
)
from .client import FreshProcessAdapter, SubprocessAdapter, close_all_workers
from .codec import PROTOCOL
from .registry import (
    IMPLEMENTATIONS,
    available_adapters,
    check_loadable,
    check_options,
    default_configurations,
    get_adapter,
    make_inprocess,
    missing_configurations,
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
    "FreshProcessAdapter",
    "PROTOCOL",
    "missing_configurations",
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
