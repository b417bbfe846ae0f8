"""MindSpore's ``nn.ExponentialDecayLR`` and ``nn.exponential_decay_lr``.

Opt-in: MindSpore is a 2.5 GB install, so it is not in the ``peers`` extra
nor in CI.  Install it with ``pip install mindspore`` (CPU build) and
``expdecay check`` runs it with the other installed implementations; without
it, the default run lists it under "Looked for and not found" and ``--impl
mindspore`` reports that it is not installed.

Two forms (option ``form``):

* ``"cell"`` (default): ``nn.ExponentialDecayLR(learning_rate, decay_rate,
  decay_steps, is_stair)``, called with ``global_step`` as an int32 scalar
  tensor, one call per step.  The cell casts the step to float32 and
  computes in float32, so only float32 cases are applicable, and steps
  outside int32 or non-integer are not.
* ``"list"``: ``nn.exponential_decay_lr(learning_rate, decay_rate,
  total_step, step_per_epoch=1, decay_epoch=decay_steps, is_stair)``, the
  list of rates for steps ``0 .. total_step - 1`` computed with Python floats,
  cast to the case's format as an optimizer does; steps are indices into the
  list, so negative steps and steps beyond :data:`MAX_LIST` are not
  applicable.

Both take an ``int`` ``decay_steps`` (a non-integer one is not applicable)
and validate their other arguments: ``learning_rate`` and ``decay_rate`` must
be positive finite Python floats and ``is_stair`` a bool.  Measured upstream,
``decay_rate <= 0`` and non-finite rates and initial rates are refused,
although the spec treats them as valid inputs: those tests are answered with
an error and reported as failures (``raised``), not as crashes or as not
applicable.
"""

from __future__ import annotations

import numpy as np

from .base import Adapter, Params
from .mapping import cast_all, integral_value

FORMS = ("cell", "list")
#: Longest list ``exponential_decay_lr`` is asked for.
MAX_LIST = 1_000_000


class MindSporeAdapter(Adapter):
    """``mindspore.nn.ExponentialDecayLR`` / ``exponential_decay_lr``."""

    def __init__(self, form: str = "cell") -> None:
        if form not in FORMS:
            raise ValueError(f"form must be 'cell' or 'list'; got {form!r}")
        import mindspore
        from mindspore import nn

        self.ms = mindspore
        self.nn = nn
        self.form = form
        self.name = "mindspore" + ("" if form == "cell" else "[list]")
        self.version = f"mindspore {mindspore.__version__}"

    def applicable(self, params: Params) -> str | None:
        I, D, r = params.as_python()
        d = integral_value(D)
        if d is None:
            return "MindSpore takes an int decay_steps (decay_epoch)"
        if self.form == "cell" and params.dtype != "float32":
            return "ExponentialDecayLR casts the step to float32 and computes in float32"
        return None

    def step_applicable(self, params: Params, step: int | float) -> str | None:
        if not isinstance(step, int):
            return "MindSpore's global step is an integer"
        if self.form == "cell" and not -2**31 <= step < 2**31:
            return "global_step is an int32 tensor"
        if self.form == "list" and not 0 <= step < MAX_LIST:
            return f"exponential_decay_lr: a step is an index into a list of at most " \
                   f"{MAX_LIST} rates"
        return None

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        I, D, r = params.as_python()
        d = integral_value(D)
        if self.form == "list":
            total = max(int(s) for s in steps) + 1
            rates = self.nn.exponential_decay_lr(I, r, total, 1, d, params.staircase)
            return cast_all([float(rates[int(s)]) for s in steps], params.format)
        cell = self.nn.ExponentialDecayLR(I, r, d, params.staircase)
        out = []
        for s in steps:
            v = cell(self.ms.Tensor(int(s), self.ms.int32))
            out.append(float(np.asarray(v.asnumpy(), dtype=np.float64)))
        return np.array(out, dtype=np.float64)
