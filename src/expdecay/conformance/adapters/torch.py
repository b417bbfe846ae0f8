"""PyTorch's ``StepLR`` and ``ExponentialLR`` schedulers.

PyTorch has no exponential-decay schedule with a ``decay_steps`` argument.
Two schedulers express special cases, evaluated in their closed form (the
formula ``scheduler.step(epoch)`` uses) from the scheduler objects:

* ``StepLR(step_size=D, gamma=r)``: ``lr * r ** (epoch // D)``, the
  staircase schedule with an integer ``D``;
* ``ExponentialLR(gamma=r)``: ``lr * r ** epoch``, the continuous schedule
  with ``D = 1``.

With ``form="chainable"`` the scheduler is stepped ``epoch`` times instead
(``lr`` multiplied by ``gamma`` at each decay), up to :data:`MAX_CHAIN` steps.

The learning rate is a Python float (float64) in both; for another format the
float64 result is cast to it, as an optimizer does when it applies the rate
to parameters of that dtype (a double rounding).  Everything else (other
``D``, negative or non-integral epochs) is not applicable.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .base import Adapter, Params
from .mapping import cast_all

MAX_CHAIN = 100_000
FORMS = ("closed", "chainable")


def _integer(x: int | float) -> bool:
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


class TorchAdapter(Adapter):
    """``torch.optim.lr_scheduler.StepLR`` / ``ExponentialLR``."""

    def __init__(self, form: str = "closed") -> None:
        if form not in FORMS:
            raise ValueError(f"form must be 'closed' or 'chainable'; got {form!r}")
        import torch

        self.torch = torch
        self.form = form
        self.name = "torch" + ("" if form == "closed" else "[chainable]")
        self.version = f"torch {torch.__version__}"

    def prepare(self) -> None:
        """Import what the first scheduler imports lazily (torch.optim pulls in
        torch._dynamo, about 3 s), without evaluating anything: the fresh
        re-run forks a child per group from a worker that has done this."""
        import torch._dynamo  # noqa: F401
        import torch.optim.lr_scheduler  # noqa: F401

    def applicable(self, params: Params) -> str | None:
        if not isinstance(params.staircase, bool):
            return "torch schedulers have no staircase argument to pass a non-bool to"
        I, D, r = params.as_python()
        if not isinstance(D, int) and not (isinstance(D, float) and math.isfinite(D)
                                           and D.is_integer()):
            return "torch schedulers take an integer step_size (decay_steps)"
        if not params.staircase and D != 1:
            return "ExponentialLR decays once per epoch: only decay_steps = 1 is expressible"
        return None

    def step_applicable(self, params: Params, step: int | float) -> str | None:
        if not _integer(step) or step < 0:
            return "a torch scheduler's epoch is a non-negative integer"
        if self.form == "chainable" and step > MAX_CHAIN:
            return f"chainable form limited to {MAX_CHAIN} epochs"
        return None

    def _scheduler(self, params: Params) -> tuple[object, object]:
        I, D, r = params.as_python()
        p = self.torch.nn.Parameter(self.torch.zeros(1))
        opt = self.torch.optim.SGD([p], lr=float(I))
        lrs = self.torch.optim.lr_scheduler
        if params.staircase:
            sched = lrs.StepLR(opt, step_size=int(D), gamma=r)
        else:
            sched = lrs.ExponentialLR(opt, gamma=r)
        return opt, sched

    def _one(self, params: Params, step: int) -> float:
        opt, sched = self._scheduler(params)
        if self.form == "closed":
            sched.last_epoch = step  # type: ignore[attr-defined]
            return float(sched._get_closed_form_lr()[0])  # type: ignore[attr-defined]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(step):
                opt.step()  # type: ignore[attr-defined]
                sched.step()  # type: ignore[attr-defined]
        return float(opt.param_groups[0]["lr"])  # type: ignore[attr-defined]

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        return cast_all([self._one(params, int(s)) for s in steps], params.format)
