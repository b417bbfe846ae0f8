"""timm's ``StepLRScheduler`` (``timm.scheduler.step_lr``).

``StepLRScheduler(optimizer, decay_t, decay_rate)`` sets the optimizer's
learning rate to ``lr * decay_rate ** (t // decay_t)`` at ``step(t)``: the
staircase schedule, with ``decay_t = decay_steps`` (an int or a float; a
float ``t // decay_t`` is Python's float floor division).  The continuous
schedule is expressible only with ``decay_steps = 1`` (then ``t // 1 = t``
for the integer counts timm takes); anything else is not applicable, as is a
non-bool ``staircase`` (no such argument) and a non-integer step (an epoch or
update count).  Negative counts are passed on: timm does not refuse them.

The scheduler needs an optimizer: a ``torch.optim.SGD`` over one dummy
parameter with ``lr=initial_learning_rate``; the adapter reads the learning
rate ``step(t)`` writes into its parameter group (a Python float, cast to the
case's format as an optimizer does for parameters of that dtype).

**Import.** ``import timm`` imports its models, which need ``torchvision``;
torchvision is not installed beside the CPU build of torch here (pip would
replace torch with a CUDA build to satisfy it).  The adapter therefore loads
the two files it needs, ``timm/scheduler/scheduler.py`` and
``timm/scheduler/step_lr.py``, from the installed timm as the submodules of a
private package (:data:`PACKAGE`), without running ``timm/__init__.py`` or
``timm/scheduler/__init__.py``.  Install timm with ``pip install --no-deps
timm`` (plus ``torch``): the scheduler needs nothing else.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .base import Adapter, AdapterError, Params
from .mapping import cast_all, integral_value

#: The private package the two scheduler files are loaded into.
PACKAGE = "_expdecay_timm_scheduler"


def load_step_lr() -> Any:
    """timm's ``StepLRScheduler`` class, loaded without importing ``timm``."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise AdapterError("timm: not installed (timm missing)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "scheduler"
    if PACKAGE not in sys.modules:
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = [str(folder)]
        sys.modules[PACKAGE] = pkg
    for name in ("scheduler", "step_lr"):
        full = f"{PACKAGE}.{name}"
        if full in sys.modules:
            continue
        mspec = importlib.util.spec_from_file_location(full, folder / f"{name}.py")
        if mspec is None or mspec.loader is None:
            raise AdapterError(f"timm: cannot load {folder / name}.py")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[full] = module
        mspec.loader.exec_module(module)
    return sys.modules[f"{PACKAGE}.step_lr"].StepLRScheduler


class TimmAdapter(Adapter):
    """``timm.scheduler.step_lr.StepLRScheduler`` on a torch SGD optimizer."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.StepLRScheduler = load_step_lr()
        self.name = "timm"
        self.version = f"timm {metadata.version('timm')}, torch {torch.__version__}"

    def prepare(self) -> None:
        """Import what the first optimizer imports lazily (torch.optim pulls in
        torch._dynamo, seconds), evaluating nothing: the fresh re-run forks a
        child per group from a worker that has done this."""
        import torch._dynamo  # noqa: F401
        import torch.optim  # noqa: F401

    def applicable(self, params: Params) -> str | None:
        if not isinstance(params.staircase, bool):
            return "StepLRScheduler has no staircase argument to pass a non-bool to"
        I, D, r = params.as_python()
        if not params.staircase and D != 1:
            return "StepLRScheduler decays every decay_t steps: the continuous schedule " \
                   "only with decay_steps = 1"
        return None

    def step_applicable(self, params: Params, step: int | float) -> str | None:
        if integral_value(step) is None:
            return "timm's epoch or update count is an integer"
        return None

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        I, D, r = params.as_python()
        p = self.torch.nn.Parameter(self.torch.zeros(1))
        opt = self.torch.optim.SGD([p], lr=float(I))
        sched = self.StepLRScheduler(opt, decay_t=D, decay_rate=r)
        out = []
        for s in steps:
            sched.step(int(s))
            out.append(float(opt.param_groups[0]["lr"]))
        return cast_all(out, params.format)
