"""Keras 3 (``keras.optimizers.schedules.ExponentialDecay``) on one backend.

The backend is fixed when keras is first imported (``KERAS_BACKEND``), so a
Keras adapter for another backend than the current process's must run in a
worker subprocess (see :mod:`expdecay.conformance.adapters.worker`), which
:func:`expdecay.conformance.adapters.get_adapter` arranges by default.

The computation dtype follows Keras's rule: the dtype of
``initial_learning_rate``.  float32 cases pass a Python float (Keras's floatx);
the other formats pass a 0-d numpy array of that dtype (the value rounded to
it, as Keras's own cast would).  Steps are given the way
an optimizer gives them: an int64 array (or float64 for non-integral steps),
or, with ``step_mode="scalar"``, one Python number per call.

Two options take the dtype paths users take: ``initial="numpy_scalar"``
gives a non-float32 initial rate as a numpy scalar (``np.float64(0.1)``)
rather than a 0-d array, and ``floatx="float64"`` calls
``keras.config.set_floatx("float64")`` first, so that a float64 case passes
a Python float.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ...floats import get_format, to_numpy
from .base import Adapter, AdapterError, Params

BACKENDS = ("numpy", "jax", "torch", "tensorflow")
STEP_MODES = ("array", "scalar")


#: How a non-floatx initial rate is given: a 0-d numpy array, or a numpy scalar.
INITIAL_KINDS = ("array", "numpy_scalar")
FLOATX = ("float32", "float64")


def initial_value(params: Params, x: int | float, kind: str = "array",
                  floatx: str = "float32") -> Any:
    """``initial_learning_rate`` carrying the case's dtype by Keras's rule:
    a Python number when the dtype is floatx, else a value of the dtype (a
    0-d array, or with ``kind="numpy_scalar"`` a numpy scalar such as
    ``np.float64(0.1)``)."""
    if params.dtype == floatx or isinstance(x, int):
        return x
    fmt = get_format(params.dtype)
    if kind == "numpy_scalar":
        return to_numpy(float(x), fmt)
    return np.asarray(to_numpy(float(x), fmt), dtype=fmt.dtype)


def step_array(steps: list[int | float]) -> np.ndarray:
    """The steps as an int64 array when all are integers, else float64."""
    if all(isinstance(s, int) for s in steps):
        return np.array(steps, dtype=np.int64)
    return np.array([float(s) for s in steps], dtype=np.float64)


def to_numpy_values(x: Any) -> np.ndarray:
    """A backend tensor as a numpy array (bfloat16 via float32, exactly)."""
    if hasattr(x, "detach"):  # torch
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return np.asarray(x.cpu().numpy())
    if hasattr(x, "numpy"):  # tensorflow eager tensor
        return np.asarray(x.numpy())
    return np.asarray(x)


class KerasAdapter(Adapter):
    """Keras 3's ExponentialDecay on the backend of the current process."""

    def __init__(self, backend: str | None = None, step_mode: str = "array",
                 initial: str = "array", floatx: str = "float32") -> None:
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        if step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be 'array' or 'scalar'; got {step_mode!r}")
        if initial not in INITIAL_KINDS:
            raise ValueError(f"initial must be one of {', '.join(INITIAL_KINDS)}; "
                             f"got {initial!r}")
        if floatx not in FLOATX:
            raise ValueError(f"floatx must be 'float32' or 'float64'; got {floatx!r}")
        self.initial = initial
        self.floatx = floatx
        if backend is not None:
            current = os.environ.get("KERAS_BACKEND")
            if current not in (None, backend) or (current is None and "keras" in _modules()):
                raise AdapterError(
                    f"keras backend {backend!r} must be chosen before keras is imported; "
                    "use get_adapter(..., isolated=True)")
            os.environ["KERAS_BACKEND"] = backend
        import keras

        self.keras = keras
        if floatx != "float32":
            keras.config.set_floatx(floatx)
        self.backend = keras.backend.backend()
        if backend is not None and self.backend != backend:
            raise AdapterError(f"keras runs on {self.backend!r}, not {backend!r}")
        self.step_mode = step_mode
        self.vectorised = step_mode == "array"
        self.name = f"keras[{self.backend}]" + ("" if self.vectorised else "[scalar]") + (
            "" if initial == "array" else f"[{initial}]") + (
            "" if floatx == "float32" else f"[floatx={floatx}]")
        self.version = f"keras {keras.__version__}, {self.backend} {_backend_version(self.backend)}"

    def make(self, params: Params) -> Any:
        I, D, r = params.as_python()
        return self.keras.optimizers.schedules.ExponentialDecay(
            initial_value(params, I, self.initial, self.floatx), D, r,
            staircase=params.staircase)

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        sched = self.make(params)
        if self.vectorised:
            return to_numpy_values(sched(step_array(steps))).astype(np.float64)
        return np.array([float(to_numpy_values(sched(s))) for s in steps])


def _modules() -> set[str]:
    import sys

    return set(sys.modules)


def _backend_version(backend: str) -> str:
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy"}[backend]
    import importlib

    return str(getattr(importlib.import_module(module), "__version__", "?"))
