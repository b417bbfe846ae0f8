"""The registry of implementations: names, options, and how each is started.

:data:`IMPLEMENTATIONS` maps each built-in ``--impl`` name to the module of
this package that adapts it (named after it: ``tf-keras`` is
:mod:`.tf_keras`, ``expdecay`` is :mod:`.expdecay`), its class and the
modules it needs.  :func:`get_adapter` makes an adapter, in this process
(:func:`make_inprocess`) or in a worker process (:mod:`.worker`, through
:class:`~.client.SubprocessAdapter`); ``python:module:function`` is
:mod:`.python`, ``cmd:COMMAND`` an external program speaking the protocol.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from typing import IO, TYPE_CHECKING, Any

from .base import Adapter, AdapterError, ImplementationLookupError
from .client import FreshProcessAdapter, SubprocessAdapter
from .codec import MAX_TIMEOUT, STARTUP_FACTOR
from .processes import Process

if TYPE_CHECKING:
    from .hub import Hub

__all__ = [
    "IMPLEMENTATIONS",
    "KERAS_BACKEND_MODULES",
    "OPTION_TYPES",
    "installed",
    "available_adapters",
    "default_configurations",
    "missing_configurations",
    "make_inprocess",
    "worker_env",
    "get_adapter",
    "check_loadable",
    "check_options",
    "parse_options",
    "unknown_message",
    "make_check",
    "label",
]

#: name -> (module providing it, class name, modules it needs)
IMPLEMENTATIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "expdecay": ("expdecay", "ReferenceAdapter", ()),
    "keras": ("keras", "KerasAdapter", ("keras",)),
    "tf-keras": ("tf_keras", "TfKerasAdapter", ("tf_keras", "tensorflow")),
    "optax": ("optax", "OptaxAdapter", ("optax", "jax")),
    "torch": ("torch", "TorchAdapter", ("torch",)),
    "tf-compat-v1": ("tf_compat_v1", "TfCompatV1Adapter", ("tensorflow",)),
    "jax-example-libraries": ("jax_example_libraries", "JaxExampleLibrariesAdapter", ("jax",)),
    "mlx": ("mlx", "MlxAdapter", ("mlx",)),
    "paddle": ("paddle", "PaddleAdapter", ("paddle",)),
    "timm": ("timm", "TimmAdapter", ("timm", "torch")),
    "mindspore": ("mindspore", "MindSporeAdapter", ("mindspore",)),
}

KERAS_BACKEND_MODULES = {"numpy": "numpy", "jax": "jax", "torch": "torch",
                         "tensorflow": "tensorflow"}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_adapters() -> list[str]:
    """Names of the built-in implementations whose packages are installed."""
    return [name for name, (_, _, needs) in IMPLEMENTATIONS.items()
            if all(installed(m) for m in needs)]


def default_configurations() -> list[tuple[str, dict[str, Any]]]:
    """Every installed implementation and variant ``expdecay check`` runs."""
    out: list[tuple[str, dict[str, Any]]] = []
    names = available_adapters()
    for name in names:
        if name == "keras":
            out += [("keras", {"backend": b}) for b, m in KERAS_BACKEND_MODULES.items()
                    if installed(m)]
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
        missing = [m for m in needs if not installed(m)]
        if missing:
            out.append((name, f"not installed ({', '.join(missing)} missing)"))
        elif name == "keras":
            for b, m in KERAS_BACKEND_MODULES.items():
                if not installed(m):
                    out.append((label("keras", {"backend": b}), f"backend not installed ({m} "
                                                                 "missing)"))
    return out


def make_inprocess(name: str, **options: Any) -> Adapter:
    """The adapter ``name`` in this process (no isolation)."""
    if name.startswith("python:"):
        from .python import PythonAdapter

        return PythonAdapter(name[len("python:"):], **options)
    if name not in IMPLEMENTATIONS:
        raise ImplementationLookupError(unknown_message(name))
    module, cls, needs = IMPLEMENTATIONS[name]
    missing = [m for m in needs if not installed(m)]
    if missing:
        raise AdapterError(f"{name}: not installed ({', '.join(missing)} missing)")
    mod = importlib.import_module(f"{__package__}.{module}")
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
        startup = min(STARTUP_FACTOR * timeout, MAX_TIMEOUT)
        from .hub import hub_family

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
        raise ImplementationLookupError(unknown_message(name))


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


def unknown_message(name: str) -> str:
    return (f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, "
            f"python:module:function or cmd:COMMAND; got {name[:80]!r}")


def make_check(name: str) -> None:
    """Raise :class:`ImplementationLookupError` for an unknown name,
    ``AdapterError`` if its framework is missing."""
    if name not in IMPLEMENTATIONS:
        raise ImplementationLookupError(unknown_message(name))
    missing = [m for m in IMPLEMENTATIONS[name][2] if not installed(m)]
    if missing:
        raise AdapterError(f"{name}: not installed ({', '.join(missing)} missing)")


def label(name: str, options: dict[str, Any]) -> str:
    """A short display name for an implementation and its options."""
    if not options:
        return name
    parts = [f"{k}={v}" for k, v in sorted(options.items())]
    return f"{name}[{','.join(parts)}]"
