"""Mutants whose wrong answers depend on when they are asked.

Each is :func:`expdecay_mutants.baseline` (the keras order, which passes the
keras profile on every vector file) with one defect that a single
evaluation of a test cannot pin down:

* :func:`random_4ulp_rare` and :func:`random_4ulp_often` move a result 4
  ulps up on about 0.2% and 2% of the values they return, at random.  The
  draws come from the operating system (:class:`random.SystemRandom`), not
  from a seeded generator, so that two processes forked from the same state
  do not draw the same numbers: a real source of nondeterminism (threads,
  timing, hardware) is not copied by ``fork`` either.
* :func:`memo_without_dtype` memoises its results on a key that omits the
  dtype: once a schedule was evaluated in one format, the same schedule in
  another format returns the first format's values.

A wrong answer in any process state is a failure, so neither may conform
under either profile (``tests/conformance/test_verdicts.py``).  When the environment
variable ``EXPDECAY_MUTANT_LOG`` names a file, every wrong value a random
mutant returns is appended to it (one line each), so that a test can tell
how many it gave.
"""

from __future__ import annotations

import math
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import expdecay_mutants  # noqa: E402

from expdecay.floats import get_format, next_up  # noqa: E402

_SYSTEM = random.SystemRandom()


def _random_4ulp(rate: float) -> Any:
    def fn(I: Any, D: Any, r: Any, steps: Any, *, staircase: Any = False,
           dtype: str = "float32") -> np.ndarray:
        out = expdecay_mutants.baseline(I, D, r, steps, staircase=staircase, dtype=dtype)
        fmt = get_format(dtype)
        log = os.environ.get("EXPDECAY_MUTANT_LOG")
        for i, v in enumerate(out.tolist()):
            if math.isfinite(v) and v != 0 and _SYSTEM.random() < rate:
                w = v
                for _ in range(4):
                    w = next_up(w, fmt)
                if math.isfinite(w):
                    out[i] = w
                    if log:
                        with open(log, "a") as f:
                            f.write(f"{os.getpid()} {dtype} {v.hex()} {w.hex()}\n")
        return out

    return fn


#: 4 ulps off on about 0.2% of the values returned.
random_4ulp_rare = _random_4ulp(0.002)
#: 4 ulps off on about 2% of the values returned.
random_4ulp_often = _random_4ulp(0.02)

_MEMO: dict[Any, float] = {}


def memo_without_dtype(I: Any, D: Any, r: Any, steps: Any, *, staircase: Any = False,
                       dtype: str = "float32") -> np.ndarray:
    """The baseline, memoised per step on ``(I, D, r, staircase, step)``:
    the dtype is missing from the key."""
    values = np.asarray(steps).tolist()
    key = (repr(I), repr(D), repr(r), repr(staircase))
    todo = [s for s in values if (key, repr(s)) not in _MEMO]
    if todo:
        got = expdecay_mutants.baseline(I, D, r, np.array(todo, dtype=np.asarray(steps).dtype),
                                        staircase=staircase, dtype=dtype)
        for s, v in zip(todo, got.tolist(), strict=True):
            _MEMO[key, repr(s)] = v
    return np.array([_MEMO[key, repr(s)] for s in values], dtype=np.float64)
