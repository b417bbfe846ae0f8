"""``jax.example_libraries.optimizers.exponential_decay`` on JAX.

``exponential_decay(step_size, decay_steps, decay_rate)`` returns
``lambda i: step_size * decay_rate ** (i / decay_steps)``: the continuous
schedule only (a staircase case is not applicable: there is no staircase
argument).  The optimizers of the same module call it with the step count
``i``, which under ``jit`` is an int32 array (int64 with ``jax_enable_x64``);
the adapter passes the group's steps as one such array (float when a step is
not an integer) and evaluates eagerly, or with ``step_mode="scalar"`` one
Python number per call (then the arithmetic is Python's float64, returned as
a Python float).  As for optax, only JAX's default float (float32, or
float64 with ``x64=True``) is applicable.
"""

from __future__ import annotations

import numpy as np

from .base import Adapter, Params
from .keras import STEP_MODES, step_array


class JaxExampleLibrariesAdapter(Adapter):
    """``jax.example_libraries.optimizers.exponential_decay``."""

    def __init__(self, x64: bool = False, step_mode: str = "array") -> None:
        if step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be 'array' or 'scalar'; got {step_mode!r}")
        import jax

        jax.config.update("jax_enable_x64", bool(x64))
        from jax.example_libraries import optimizers

        self.jax = jax
        self.optimizers = optimizers
        self.x64 = bool(x64)
        self.step_mode = step_mode
        self.vectorised = step_mode == "array"
        self.name = "jax-example-libraries" + ("[x64]" if x64 else "") + (
            "" if self.vectorised else "[scalar]")
        self.version = f"jax {jax.__version__}"

    def applicable(self, params: Params) -> str | None:
        if params.staircase is not False:
            return ("jax.example_libraries.optimizers.exponential_decay has no staircase "
                    "argument: continuous schedule only")
        native = "float64" if self.x64 else "float32"
        if params.dtype != native:
            return f"computes in JAX's default float ({native}); no dtype argument"
        return None

    def step_applicable(self, params: Params, step: int | float) -> str | None:
        if self.vectorised and not self.x64 and isinstance(step, int) and not (
                -2**31 <= step < 2**31):
            return "step outside int32, the step count's integer type"
        return None

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        I, D, r = params.as_python()
        fn = self.optimizers.exponential_decay(I, D, r)
        if self.vectorised:
            return np.asarray(fn(self.jax.numpy.asarray(step_array(steps))),
                              dtype=np.float64).ravel()
        return np.array([float(fn(s)) for s in steps])
