"""The sweep itself: cutting a step set into tasks, running them (locally, in
processes or threads, or on a Dask cluster) and merging their results in
order."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from . import steps as step_sets
from .evaluation import Schedule, adapter_label
from .fused import fused_setup, run_fused, warm_fused
from .stats import Envelope, ErrorStats, SweepResult
from .steps import StepSet
from .unfused import Task, run_task

#: Chunk length of the fused route (:func:`fused_available`).
FUSED_CHUNK = 1 << 22


def worker_count(workers: Any, tasks: int) -> int:
    """Processes to start: ``workers`` (default: the usable cores), never more
    than the usable cores or the tasks; ``workers`` must be an int >= 1."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    if workers is None:
        return max(1, min(cores, tasks))
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int; got {type(workers).__name__} {workers!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1; got {workers}")
    return max(1, min(workers, cores, tasks))


def sweep(
    schedule: Schedule,
    steps: StepSet,
    *,
    implementation: str = "expdecay",
    options: dict[str, Any] | None = None,
    workers: int | None = None,
    bins: int = 2000,
    top: int = 10,
    pow_ulps: float | None = 1,
    progress: Callable[[int, int, float], None] | None = None,
    chunk: int | None = None,
    extra: tuple[int, ...] = (),
    max_points: int | None = None,
    scheduler: str | None = None,
) -> SweepResult:
    """Measure the implementation's ulp error on ``steps``.

    A set longer than ``max_points`` is cut down to about that many
    log-spaced samples plus ``extra``; a note says so.  The default is
    ``2**20`` for an external implementation and :data:`FAST_BUDGET` for
    expdecay's own keras order (whose longer
    sets are cut to :data:`FAST_SAMPLES` samples, so that work and memory
    stay bounded whatever the range).  ``pow_ulps=None`` skips the error bound.

    ``scheduler`` (a Dask scheduler address) runs the chunks on that cluster;
    otherwise they run on ``workers`` local processes (threads on the fused
    route, whose compiled kernel releases the GIL).  Chunks are fixed by
    ``chunk`` alone (default :data:`CHUNK`, or :data:`FUSED_CHUNK` on the
    fused route) and merged in chunk order (every reduction is exact), so
    the result is the same, bit for bit, however the work is spread.

    The fused route (:func:`fused_available`: expdecay's keras order, no
    bound, float16/bfloat16/float32) evaluates the three orders and reduces
    them in one compiled pass per chunk; the unfused route evaluates with
    :func:`expdecay.fast.evaluate_array` and reduces with numpy.  Both give the
    same result.
    """
    options = dict(options or {})
    notes: list[str] = []
    external = not (implementation == "expdecay" and options.get("order", "keras") == "keras")
    samples = max_points
    if max_points is None:
        if external:
            max_points = samples = 1 << 20
        else:
            max_points, samples = step_sets.FAST_BUDGET, step_sets.FAST_SAMPLES
    if len(steps) > max_points:
        if external:
            why = "external implementation"
        else:
            why = f"more than {max_points} steps for the fast path"
        notes.append(f"{why}: {len(steps)} steps cut to about {samples} log-spaced samples "
                     "(misfloors are still enumerated over the whole range)")
        steps = steps.sample(samples if samples is not None else max_points, extra)
    env0 = Envelope.empty(steps, bins)
    fused = not external and pow_ulps is None and fused_setup(schedule) is not None
    if chunk is None:
        chunk = FUSED_CHUNK if fused else step_sets.CHUNK
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1; got {chunk!r}")
    tasks = [Task(schedule, c, implementation, tuple(sorted(options.items())), env0, top,
                   pow_ulps) for c in steps.chunks(chunk)]
    result = SweepResult(schedule, adapter_label(implementation, options), steps,
                         ErrorStats(), ErrorStats(), ErrorStats(), env0.copy(),
                         evaluator="fused" if fused else "fast", pow_ulps=pow_ulps,
                         notes=notes)
    t0 = time.perf_counter()
    done = 0
    bmax = -math.inf
    nworkers = worker_count(workers, len(tasks))
    run = run_fused if fused else run_task
    outs: Iterator[Any]
    if scheduler is not None:
        from ..scaleout import map_ordered

        outs = map_ordered(run, tasks, scheduler=scheduler)
    elif fused:
        # The compiled kernel releases the GIL: threads share the plans and
        # the compiled code (loaded once, here, before they start).
        warm_fused(schedule)
        from ..scaleout import map_ordered

        outs = map_ordered(run, tasks, workers=nworkers, threads=True)
    elif not external and nworkers > 1 and len(tasks) > 1:
        # Warm the fast path's tables and plans before forking, so that the
        # workers inherit them instead of each building its own.
        # The compiled kernels are loaded too (an array large enough for them).
        run_task(Task(schedule, StepSet(steps.lo, steps.lo + 4096), implementation,
                        tuple(sorted(options.items())), Envelope.empty(steps, bins), top,
                        pow_ulps))
        pool = ProcessPoolExecutor(max_workers=nworkers)
        outs = _closing(pool, pool.map(run_task, tasks))
    else:
        outs = map(run_task, tasks)
    for task, out in zip(tasks, outs, strict=True):
        bmax = _absorb(result, out, top, bmax)
        done += len(task.steps)
        if progress:
            progress(done, len(steps), time.perf_counter() - t0)
    result.seconds = time.perf_counter() - t0
    result.bound_available = bmax > -math.inf
    result.bound_max = bmax if result.bound_available else None
    return result


def _closing(pool: ProcessPoolExecutor, outs: Iterator[Any]) -> Iterator[Any]:
    """``outs``, then the pool shut down (also when the caller stops early)."""
    with pool:
        yield from outs


def _absorb(result: SweepResult, out: tuple[Any, ...], top: int, bmax: float) -> float:
    vs_e, vs_k, vs_r, env, b, viol, why = out
    if why and why not in result.notes:
        result.notes.append(why)
    result.vs_exact.merge(vs_e, top)
    result.vs_keras.merge(vs_k, top)
    result.vs_rounded.merge(vs_r, top)
    result.envelope.merge(env)
    result.bound_violations += viol
    return max(bmax, float(b))
