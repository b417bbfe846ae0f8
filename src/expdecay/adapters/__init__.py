"""Adapters: every implementation the conformance runner can check.

>>> from expdecay.adapters import Params, get_adapter
>>> a = get_adapter("expdecay")
>>> a.evaluate(Params(0.1, 100000, 0.96, False, "float32"), [10**6]).tolist()
[0.0664832666516304]

``get_adapter(name, **options)`` returns an object with ``.name``,
``.version``, ``.applicable(params)`` and ``.evaluate(params, steps)``
(see :mod:`expdecay.adapters.base`).  Names:

* ``expdecay`` (options ``order="exact"|"keras"``): this package's fast path;
* ``keras`` (``backend``, ``step_mode="array"|"scalar"``): Keras 3;
* ``tf-keras`` (``step_mode``): tf.keras on TensorFlow;
* ``optax`` (``x64``, ``step_mode``): optax.exponential_decay on JAX;
* ``torch`` (``form="closed"|"chainable"``): StepLR / ExponentialLR;
* ``python:module:function``: any callable (see :mod:`.pycallable`);
* ``cmd:COMMAND``: an external program speaking the JSON-lines protocol.

Framework adapters run in a worker subprocess by default (``isolated=True``):
Keras's backend must be chosen before keras is imported, and a crash or a
hang must not take the caller down.  ``timeout`` bounds each request.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from typing import Any

from .base import Adapter, AdapterError, NotApplicableError, Outcome, Params
from .protocol import PROTOCOL, SubprocessAdapter

__all__ = [
    "Params",
    "Adapter",
    "AdapterError",
    "NotApplicableError",
    "Outcome",
    "SubprocessAdapter",
    "PROTOCOL",
    "get_adapter",
    "available_adapters",
    "make_inprocess",
    "default_configurations",
    "IMPLEMENTATIONS",
]

#: name -> (module providing it, class name, modules it needs)
IMPLEMENTATIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "expdecay": ("reference", "ReferenceAdapter", ()),
    "keras": ("keras3", "KerasAdapter", ("keras",)),
    "tf-keras": ("tfkeras", "TfKerasAdapter", ("tf_keras", "tensorflow")),
    "optax": ("optax_impl", "OptaxAdapter", ("optax", "jax")),
    "torch": ("torch_impl", "TorchAdapter", ("torch",)),
}

_KERAS_BACKEND_MODULE = {"numpy": "numpy", "jax": "jax", "torch": "torch",
                         "tensorflow": "tensorflow"}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_adapters() -> list[str]:
    """Names of the built-in implementations whose packages are installed."""
    return [name for name, (_, _, needs) in IMPLEMENTATIONS.items()
            if all(_installed(m) for m in needs)]


def default_configurations() -> list[tuple[str, dict[str, Any]]]:
    """Every installed implementation and variant ``expdecay check`` runs."""
    out: list[tuple[str, dict[str, Any]]] = []
    names = available_adapters()
    for name in names:
        if name == "keras":
            out += [("keras", {"backend": b}) for b, m in _KERAS_BACKEND_MODULE.items()
                    if _installed(m)]
        elif name == "optax":
            out += [("optax", {"x64": False}), ("optax", {"x64": True})]
        else:
            out.append((name, {}))
    return out


def make_inprocess(name: str, **options: Any) -> Adapter:
    """The adapter ``name`` in this process (no isolation)."""
    if name.startswith("python:"):
        from .pycallable import PythonAdapter

        return PythonAdapter(name[len("python:"):], **options)
    if name not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, "
            f"python:module:function or cmd:COMMAND; got {name!r}")
    module, cls, needs = IMPLEMENTATIONS[name]
    missing = [m for m in needs if not _installed(m)]
    if missing:
        raise AdapterError(f"{name}: not installed ({', '.join(missing)} missing)")
    mod = importlib.import_module(f"{__name__}.{module}")
    return getattr(mod, cls)(**options)  # type: ignore[no-any-return]


def worker_env() -> dict[str, str]:
    """Environment of a worker: quiet frameworks, this package importable."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("PYTHONWARNINGS", "ignore")
    paths = [p for p in sys.path if p]
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *paths])
    return env


def get_adapter(name: str, *, isolated: bool | None = None, timeout: float = 60.0,
                **options: Any) -> Adapter:
    """The adapter called ``name`` with ``options`` (see the module docstring).

    ``isolated`` (default: True except for ``expdecay`` and ``python:``) runs
    it in a worker subprocess speaking the JSON-lines protocol.
    """
    if not isinstance(name, str):
        raise TypeError(f"implementation name must be a str; got {name!r}")
    if name.startswith("cmd:"):
        argv = shlex.split(name[len("cmd:"):])
        if options:
            raise ValueError(f"cmd: implementations take no options; got {options!r}")
        return SubprocessAdapter(argv, timeout=timeout, label=name)
    if isolated is None:
        isolated = not (name == "expdecay" or name.startswith("python:"))
    if not isolated:
        return make_inprocess(name, **options)
    if not name.startswith("python:"):
        make_check(name)
    env = worker_env()
    if name == "keras" and options.get("backend"):
        env["KERAS_BACKEND"] = str(options["backend"])
    spec = json.dumps({"name": name, "options": options})
    return SubprocessAdapter([sys.executable, "-m", "expdecay.adapters.worker", spec],
                             env=env, timeout=timeout, label=label(name, options))


def make_check(name: str) -> None:
    """Raise ``ValueError`` for an unknown name, ``AdapterError`` if missing."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, "
            f"python:module:function or cmd:COMMAND; got {name!r}")
    missing = [m for m in IMPLEMENTATIONS[name][2] if not _installed(m)]
    if missing:
        raise AdapterError(f"{name}: not installed ({', '.join(missing)} missing)")


def label(name: str, options: dict[str, Any]) -> str:
    """A short display name for an implementation and its options."""
    if not options:
        return name
    parts = [f"{k}={v}" for k, v in sorted(options.items())]
    return f"{name}[{','.join(parts)}]"
