"""Scale-out of long evaluations: local processes, or a Dask cluster.

Work is cut into chunks that depend only on the inputs (the step range, the
chunk length, the seed of a random campaign), never on the number of
workers; each chunk's result is computed independently and the results are
merged in chunk order.  The outcome is therefore the same, bit for bit, on
one process, on all local cores, or on a cluster.

* :func:`map_ordered`: a function over items, results in item order, on a
  Dask scheduler (``scheduler="tcp://host:8786"``) or on local processes.
  ``expdecay analyze --scheduler ADDRESS`` runs its sweep this way.
* :func:`run_grid`: a grid of schedules x a step range (for example every
  float32 decay rate in a range x all int32 steps).  Each schedule gets a
  SHA-256 digest of its output bits in step order, plus counters.
* :func:`random_campaign`: random schedules and steps (all four inputs drawn
  per element from a seeded generator, chunk by chunk), evaluated through the
  broadcasting fast path; a digest of every output bit and counters.

Dask (``distributed``) is an optional dependency: ``pip install
'expdecay[dask]'``.  Without a scheduler address nothing of Dask is imported.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..fast import FastStats
from ..fast import evaluate_array as fast_evaluate
from ..orders import Order, check_order

__all__ = ["map_ordered", "GridResult", "run_grid", "CampaignResult", "random_campaign"]

T = TypeVar("T")
R = TypeVar("R")


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


#: Seconds to wait for a Dask scheduler before giving up.
CONNECT_TIMEOUT = 30.0


def _client(scheduler: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("a Dask scheduler needs the dask extra: "
                         "pip install 'expdecay[dask]'") from None
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT,  # type: ignore[no-untyped-call]
                      set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ValueError(f"scheduler {scheduler!r}: cannot connect ({e})") from None


def map_ordered(fn: Callable[[T], R], items: Iterable[T], *, scheduler: str | None = None,
                workers: int | None = None, window: int | None = None,
                threads: bool = False) -> Iterator[R]:
    """``fn(item)`` for every item, yielded in the items' order.

    ``scheduler``: a Dask scheduler address (or a ``distributed.Client``);
    otherwise ``workers`` local processes (default: every usable core; one
    runs in this process), or threads with ``threads=True`` (for a ``fn``
    that spends its time in compiled code releasing the GIL, such as the
    fused sweep kernel).  At most ``window`` items are in flight (default:
    four per worker), so memory stays bounded however many items there are.
    """
    if scheduler is None:
        n = workers if workers is not None else _cores()
        if n < 1:
            raise ValueError(f"workers must be at least 1; got {n}")
        if n == 1:
            yield from map(fn, items)
            return
        pool: Executor = (ThreadPoolExecutor(max_workers=n) if threads
                          else ProcessPoolExecutor(max_workers=n))
        with pool:
            yield from _windowed(lambda x: pool.submit(fn, x), items, window or 4 * n,
                                 lambda f: f.result())
        return
    own = isinstance(scheduler, str)
    client: Any = _client(scheduler) if own else scheduler
    try:
        n = max(1, len(client.nthreads()))
        yield from _windowed(lambda x: client.submit(fn, x, pure=False), items,
                             window or 4 * n, lambda f: f.result())
    finally:
        if own:
            client.close()


def _windowed(submit: Callable[[Any], Any], items: Iterable[Any], window: int,
              result: Callable[[Any], Any]) -> Iterator[Any]:
    pending: deque[Any] = deque()
    for item in items:
        pending.append(submit(item))
        if len(pending) >= window:
            yield result(pending.popleft())
    while pending:
        yield result(pending.popleft())


# ---------------------------------------------------------------------------
# Grids of schedules x steps
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _GridTask:
    schedule: tuple[Any, Any, Any]
    start: int
    stop: int
    dtype: str
    order: Order
    staircase: bool


def _grid_task(task: _GridTask) -> tuple[bytes, int, int]:
    steps = np.arange(task.start, task.stop, dtype=np.int64)
    stats = FastStats()
    out = fast_evaluate(*task.schedule, steps, staircase=task.staircase, dtype=task.dtype,
                        order=check_order(task.order), stats=stats)
    return hashlib.sha256(out.tobytes()).digest(), stats.elements, stats.oracle


@dataclass
class GridResult:
    """Per schedule: SHA-256 of the output bits in step order (a digest of the
    chunk digests), and the counters of the fast path."""

    digests: list[str] = field(default_factory=list)
    elements: int = 0
    oracle: int = 0


def run_grid(schedules: Sequence[tuple[Any, Any, Any]], start: int, stop: int, *,
             dtype: str = "float32", order: Order = "keras", staircase: bool = False,
             chunk: int = 1 << 22, scheduler: str | None = None,
             workers: int | None = None) -> GridResult:
    """Every schedule ``(I, D, r)`` at every integer step in ``[start, stop)``."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1; got {chunk}")
    if stop < start:
        raise ValueError(f"stop must be >= start; got {start}:{stop}")
    tasks = [_GridTask((s[0], s[1], s[2]), a, min(a + chunk, stop), dtype, order, staircase)
             for s in schedules for a in range(start, stop, chunk)]
    per = max(1, -(-(stop - start) // chunk)) if stop > start else 0
    result = GridResult()
    hashers = [hashlib.sha256() for _ in schedules]
    for i, (digest, elements, oracle) in enumerate(
            map_ordered(_grid_task, tasks, scheduler=scheduler, workers=workers)):
        hashers[i // per].update(digest)
        result.elements += elements
        result.oracle += oracle
    result.digests = [h.hexdigest() for h in hashers]
    return result


# ---------------------------------------------------------------------------
# Random campaigns
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _CampaignTask:
    seed: int
    index: int
    size: int
    dtype: str
    order: Order
    staircase: bool


def _campaign_task(task: _CampaignTask) -> tuple[bytes, int, int]:
    rng = np.random.default_rng([task.seed, task.index])
    n = task.size
    I = rng.uniform(1e-4, 1.0, n)
    D = rng.integers(1, 100_000, n)
    r = rng.uniform(0.5, 0.9999, n)
    s = rng.integers(0, 1 << 31, n)
    stats = FastStats()
    out = fast_evaluate(I, D, r, s, staircase=task.staircase, dtype=task.dtype,
                        order=check_order(task.order), stats=stats)
    return hashlib.sha256(out.tobytes()).digest(), stats.elements, stats.oracle


@dataclass
class CampaignResult:
    """SHA-256 of every output bit in campaign order, and counters."""

    digest: str = ""
    elements: int = 0
    oracle: int = 0


def random_campaign(n: int, *, seed: int = 0, dtype: str = "float32", order: Order = "keras",
                    staircase: bool = False, chunk: int = 1 << 14,
                    scheduler: str | None = None, workers: int | None = None
                    ) -> CampaignResult:
    """``n`` random cases: chunk ``k`` draws its schedules and steps from the
    generator seeded with ``(seed, k)``, so chunks are reproducible alone."""
    if n < 0 or chunk < 1:
        raise ValueError(f"n must be >= 0 and chunk >= 1; got {n}, {chunk}")
    tasks = [_CampaignTask(seed, k, min(chunk, n - a), dtype, order, staircase)
             for k, a in enumerate(range(0, n, chunk))]
    h = hashlib.sha256()
    result = CampaignResult()
    for digest, elements, oracle in map_ordered(_campaign_task, tasks, scheduler=scheduler,
                                                workers=workers):
        h.update(digest)
        result.elements += elements
        result.oracle += oracle
    result.digest = h.hexdigest()
    return result
