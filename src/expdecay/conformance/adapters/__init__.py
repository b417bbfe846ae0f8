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
* ``python:module:function``: any callable (see :mod:`.pycallable`);
* ``cmd:COMMAND``: an external program speaking the JSON-lines protocol.

Framework adapters run in a worker subprocess by default (``isolated=True``):
Keras's backend must be chosen before keras is imported, and a crash or a
hang must not take the caller down.  ``timeout`` bounds each request and,
twice over, the worker's start-up (see :mod:`.protocol`).

A name that does not resolve (an unknown implementation, a ``python:``
module that cannot be imported or has no such callable) raises
:class:`ImplementationLookupError`, a ``ValueError`` with a one-line message.
Option values are scalars (str, int, float, bool or None).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from typing import IO, TYPE_CHECKING, Any

from .base import (
    Adapter,
    AdapterError,
    ImplementationLookupError,
    NotApplicableError,
    Outcome,
    Params,
)
from .protocol import (
    PROTOCOL,
    STARTUP_FACTOR,
    FreshProcessAdapter,
    Process,
    SubprocessAdapter,
    close_all_workers,
)

if TYPE_CHECKING:
    from .hub import Hub

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

#: name -> (module providing it, class name, modules it needs)
IMPLEMENTATIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "expdecay": ("reference", "ReferenceAdapter", ()),
    "keras": ("keras3", "KerasAdapter", ("keras",)),
    "tf-keras": ("tfkeras", "TfKerasAdapter", ("tf_keras", "tensorflow")),
    "optax": ("optax_impl", "OptaxAdapter", ("optax", "jax")),
    "torch": ("torch_impl", "TorchAdapter", ("torch",)),
    "tf-compat-v1": ("tf_compat_v1", "TfCompatV1Adapter", ("tensorflow",)),
    "jax-example-libraries": ("jax_example_libraries", "JaxExampleLibrariesAdapter", ("jax",)),
    "mlx": ("mlx_impl", "MlxAdapter", ("mlx",)),
    "paddle": ("paddle_impl", "PaddleAdapter", ("paddle",)),
    "timm": ("timm_impl", "TimmAdapter", ("timm", "torch")),
    "mindspore": ("mindspore_impl", "MindSporeAdapter", ("mindspore",)),
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
        elif name in ("optax", "jax-example-libraries"):
            out += [(name, {"x64": False}), (name, {"x64": True})]
        elif name == "paddle":  # the legacy function shows an upstream bug
            out += [("paddle", {}), ("paddle", {"api": "legacy"})]
        elif name == "mindspore":
            out += [("mindspore", {}), ("mindspore", {"form": "list"})]
        else:
            out.append((name, {}))
    return out


def missing_configurations() -> list[tuple[str, str]]:
    """What ``expdecay check`` looks for by default and does not find:
    ``(label, reason)`` for each built-in implementation or Keras backend
    whose packages are not installed."""
    out: list[tuple[str, str]] = []
    for name, (_, _, needs) in IMPLEMENTATIONS.items():
        missing = [m for m in needs if not _installed(m)]
        if missing:
            out.append((name, f"not installed ({', '.join(missing)} missing)"))
        elif name == "keras":
            for b, m in _KERAS_BACKEND_MODULE.items():
                if not _installed(m):
                    out.append((label("keras", {"backend": b}), f"backend not installed ({m} "
                                                                 "missing)"))
    return out


def make_inprocess(name: str, **options: Any) -> Adapter:
    """The adapter ``name`` in this process (no isolation)."""
    if name.startswith("python:"):
        from .pycallable import PythonAdapter

        return PythonAdapter(name[len("python:"):], **options)
    if name not in IMPLEMENTATIONS:
        raise ImplementationLookupError(_unknown(name))
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


#: Modules a start-up hub imports for the workers of a framework (see
#: :mod:`expdecay.conformance.adapters.hub`): the framework and what its
#: adapters' ``prepare`` imports, nothing that reads ``KERAS_BACKEND``
#: other than TensorFlow (which imports parts of Keras, hence the hub's
#: ``KERAS_BACKEND=tensorflow``).
HUB_MODULES: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow",),
    "torch": ("torch", "torch._dynamo", "torch.optim.lr_scheduler"),
    "jax": ("jax", "jax.numpy"),
    "paddle": ("paddle",),
}


def hub_family(name: str, options: dict[str, Any]) -> str | None:
    """The key of :data:`HUB_MODULES` whose hub can start the worker of
    ``name`` with ``options``, or None (no hub: started the usual way).  A
    Keras backend other than the one ``KERAS_BACKEND`` already names in this
    process's environment gets no hub, so that the hub and its workers
    always see the same environment at import."""
    if name == "keras":
        family = str(options.get("backend", ""))
        if os.environ.get("KERAS_BACKEND", family) != family:
            return None
    else:
        needs = IMPLEMENTATIONS.get(name, ("", "", ()))[2]
        family = next((m for m in needs if m in HUB_MODULES), "")
    if family not in HUB_MODULES or not _installed(family):
        return None
    if family == "tensorflow" and os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return None
    return family


def hub_env(family: str) -> dict[str, str]:
    """The environment of the hub of ``family`` (:func:`worker_env`, with
    the Keras backend TensorFlow's import selects made explicit)."""
    env = worker_env()
    if family == "tensorflow":
        env["KERAS_BACKEND"] = "tensorflow"
    return env


def get_adapter(name: str, *, isolated: bool | None = None, timeout: float = 60.0,
                fresh: bool = False, zygote: bool = False, cache_dir: str | None = None,
                hub: Hub | None = None, **options: Any) -> Adapter:
    """The adapter called ``name`` with ``options`` (see the module docstring).

    ``isolated`` (default: True except for ``expdecay`` and ``python:``) runs
    it in a worker subprocess speaking the JSON-lines protocol; a ``python:``
    target is then imported only in that worker.  ``fresh`` (implies
    ``isolated``) evaluates every request in a fresh process state: a child
    forked from a worker that has evaluated nothing, or for ``cmd:`` a new
    process per request.  ``zygote`` (built-in workers) keeps a fork of the
    worker's state before it evaluated anything, for fresh re-runs through
    :meth:`SubprocessAdapter.evaluate_batch`; ``cache_dir`` is a directory
    for the compilation caches of frameworks that keep one on disk (JAX).
    ``hub`` (a :class:`~expdecay.conformance.adapters.hub.Hub` of the
    family :func:`hub_family` gives) forks the worker from a process that
    has imported the framework already, instead of starting a new one.
    """
    if not isinstance(name, str):
        raise TypeError(f"implementation name must be a str; got {name!r}")
    check_options(options)
    if name.startswith("cmd:"):
        argv = shlex.split(name[len("cmd:"):])
        if not argv:
            raise ImplementationLookupError(f"cmd: must name a program; got {name!r}")
        if options:
            raise ValueError(f"cmd: implementations take no options; got {options!r}")
        if fresh:
            return FreshProcessAdapter(argv, timeout=timeout, label=name)
        return SubprocessAdapter(argv, timeout=timeout, label=name)
    if fresh:
        isolated = True
    if isolated is None:
        isolated = not (name == "expdecay" or name.startswith("python:"))
    if not isolated:
        return make_inprocess(name, **options)
    if not name.startswith("python:"):
        make_check(name)
    env = worker_env()
    if name == "keras" and options.get("backend"):
        env["KERAS_BACKEND"] = str(options["backend"])
    spec = json.dumps({"name": name, "options": options, **({"fresh": True} if fresh else {}),
                       **({"zygote": True} if zygote and not fresh else {}),
                       **({"cache": cache_dir} if cache_dir else {})})
    spawn = None
    if hub is not None and not fresh:
        startup = min(STARTUP_FACTOR * timeout, 86400.0)
        if hub_family(name, options) == "tensorflow":  # as in the hub (see hub_env)
            env.setdefault("KERAS_BACKEND", "tensorflow")

        def spawn(stderr: IO[bytes]) -> Process:
            return hub.spawn(spec, env, stderr, startup)

    return SubprocessAdapter([sys.executable, "-m", "expdecay.conformance.adapters.worker", spec],
                             env=env, timeout=timeout, label=label(name, options),
                             lookup_errors=True, spawn=spawn)


def check_loadable(name: str, *, timeout: float = 60.0) -> None:
    """Raise :class:`ImplementationLookupError` unless ``name`` resolves.

    A ``python:`` target is imported in a throwaway worker process, never in
    this one (its module may do anything at import, ``sys.exit`` included);
    a worker that fails to start counts as a module that cannot be loaded.
    A built-in name must be known (a missing framework is not checked here).
    """
    if name.startswith("python:"):
        module, sep, function = name[len("python:"):].partition(":")
        if not sep or not module or not function:
            raise ImplementationLookupError(
                f"python implementation must be 'python:module:function'; got {name!r}")
        adapter = get_adapter(name, isolated=True, timeout=timeout)
        assert isinstance(adapter, SubprocessAdapter)
        try:
            if adapter.broken:
                raise ImplementationLookupError(f"{name}: cannot be loaded: {adapter.broken}")
        finally:
            adapter.close()
    elif name.startswith("cmd:"):
        if not shlex.split(name[len("cmd:"):]):
            raise ImplementationLookupError(f"cmd: must name a program; got {name!r}")
    elif name not in IMPLEMENTATIONS:
        raise ImplementationLookupError(_unknown(name))


#: Types an option value may have.
OPTION_TYPES = (str, int, float, bool, type(None))


def check_options(options: dict[str, Any]) -> None:
    """``TypeError`` unless every option value is a scalar (see :data:`OPTION_TYPES`)."""
    for key, value in options.items():
        if not isinstance(value, OPTION_TYPES):
            # Name the type only: the repr of a deeply nested value may not exist.
            raise TypeError(f"option {key!r} must be a string, number, boolean or None; "
                            f"got a {type(value).__name__}")


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (the ``--option`` syntax) -> options.

    VALUE is read as a JSON scalar (``true``, ``3``, ``"text"``, ``null``)
    when it is one, else kept as text; a JSON list or object (text starting
    with ``[`` or ``{``) is refused, without being parsed, with a
    ``ValueError`` naming the option.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"option must be KEY=VALUE; got {item[:60]!r}")
        if text.lstrip()[:1] in ("[", "{"):
            raise ValueError(f"option {key[:40]!r}: a value is a number, string, true, false "
                             f"or null, not a list or object; got {text[:40]!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out[key] = value
    return out


def _unknown(name: str) -> str:
    return (f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, "
            f"python:module:function or cmd:COMMAND; got {name[:80]!r}")


def make_check(name: str) -> None:
    """Raise :class:`ImplementationLookupError` for an unknown name,
    ``AdapterError`` if its framework is missing."""
    if name not in IMPLEMENTATIONS:
        raise ImplementationLookupError(_unknown(name))
    missing = [m for m in IMPLEMENTATIONS[name][2] if not _installed(m)]
    if missing:
        raise AdapterError(f"{name}: not installed ({', '.join(missing)} missing)")


def label(name: str, options: dict[str, Any]) -> str:
    """A short display name for an implementation and its options."""
    if not options:
        return name
    parts = [f"{k}={v}" for k, v in sorted(options.items())]
    return f"{name}[{','.join(parts)}]"
