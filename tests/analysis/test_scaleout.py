"""Scale-out: the same bits on one process, local processes and a Dask
``LocalCluster``, and a sweep through ``--scheduler`` equal to a local one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest

from expdecay import fast
from expdecay.analysis import scaleout
from expdecay.analysis.sweep import Schedule, StepSet, sweep

distributed = pytest.importorskip("distributed")

SCHEDULES = [("0.1", 1000, r) for r in ("0.9", "0.96", "0.999")]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c.scheduler_address


def _expected_digests(start: int, stop: int, chunk: int) -> list[str]:
    """Digests computed here, independently of scaleout's chunking code."""
    out = []
    for I, D, r in SCHEDULES:
        h = hashlib.sha256()
        for a in range(start, stop, chunk):
            vals = fast.evaluate_array(I, D, r, np.arange(a, min(a + chunk, stop)), dtype="float32",
                                 order="exact")
            h.update(hashlib.sha256(vals.tobytes()).digest())
        out.append(h.hexdigest())
    return out


def test_grid_same_everywhere(cluster: str) -> None:
    kw = dict(dtype="float32", order="exact", chunk=50_000)
    one = scaleout.run_grid(SCHEDULES, 0, 200_000, workers=1, **kw)  # type: ignore[arg-type]
    local = scaleout.run_grid(SCHEDULES, 0, 200_000, workers=2, **kw)  # type: ignore[arg-type]
    dask = scaleout.run_grid(SCHEDULES, 0, 200_000, scheduler=cluster, **kw)  # type: ignore[arg-type]
    assert one.digests == _expected_digests(0, 200_000, 50_000)
    assert one == local == dask
    assert one.elements == 3 * 200_000
    # The digests tell schedules apart (the comparison can fail).
    assert len(set(one.digests)) == 3


def test_random_campaign_same_everywhere(cluster: str) -> None:
    kw = dict(seed=7, dtype="bfloat16", order="keras", chunk=300)
    one = scaleout.random_campaign(600, workers=1, **kw)  # type: ignore[arg-type]
    dask = scaleout.random_campaign(600, scheduler=cluster, **kw)  # type: ignore[arg-type]
    assert one == dask and one.elements == 600
    other = scaleout.random_campaign(600, workers=1, **{**kw, "seed": 8})  # type: ignore[arg-type]
    assert other.digest != one.digest


def test_sweep_on_cluster_equals_local(cluster: str) -> None:
    sch = Schedule("0.1", 1000, "0.96", False, "float32")
    steps = StepSet(0, 300_000)
    local = sweep(sch, steps, workers=1, chunk=65536, pow_ulps=None)
    remote = sweep(sch, steps, chunk=65536, pow_ulps=None, scheduler=cluster)
    for name in ("vs_exact", "vs_keras", "vs_rounded"):
        assert getattr(local, name) == getattr(remote, name)
    assert np.array_equal(local.envelope.err_max, remote.envelope.err_max)
    assert np.array_equal(local.envelope.arith_min, remote.envelope.arith_min)


def test_missing_scheduler_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaleout, "CONNECT_TIMEOUT", 2.0)
    with pytest.raises(ValueError, match="scheduler"):
        list(scaleout.map_ordered(abs, [1, 2], scheduler="tcp://127.0.0.1:9"))
