"""Where the time of the default ``expdecay check`` goes.

Runs what ``expdecay check`` runs with no ``--impl`` (every installed
implementation in its default configurations, both profiles, the installed
vectors) through :func:`expdecay.conformance.runner.check_implementations`
and prints a breakdown of the wall time:

* ``load``: reading and schema-checking the vector files;
* ``startup``: starting a worker, up to its hello line;
* ``evaluation``: the first evaluation of every group;
* ``rerun``: the fresh re-run of failing groups (by default all of them in
  one fresh process, in reverse order, and again where answers differed;
  ``--isolate``: one forked child per group);
* ``shutdown``: closing the worker (its input closed, its exit awaited);
* ``diagnosis``: judging every output and diagnosing every failure.

The implementations are checked in parallel, so the phases overlap: for each
phase the table gives the wall time during which at least one check was in
it (seconds and fraction of the wall time; the fractions add up to more than
1) and the sum over the checks.  CPU time is given too, since the wall time
depends on what else the machine runs (the load average before and after is
printed for that reason), split into the runner process itself (judging,
diagnosis, the protocol) and the processes it waited for (the workers, with
the fresh children and zygotes they reaped).  Machine, cores and library
versions are printed with the figures.

The *fresh re-run floor* is what the per-group guarantee of the re-run
costs by itself: for each implementation, its number of failing groups
(each re-run in a child of its own) times its measured cost of one fresh
child (the median wall time of a fresh batch of one small group, through
the worker and its zygote, after the worker evaluated the same group),
summed; divided by the cores it is a lower bound of the re-run's wall time.
``--no-child-cost`` skips that measurement (a worker start per
implementation).

    PYTHONPATH=src python benchmarks/bench_check.py [--no-rerun | --isolate]
        [--impl NAME [--option KEY=VALUE ...]] [--jobs N] [--sequential]
        [--no-child-cost] [--json FILE]
    PYTHONPATH=src python benchmarks/bench_check.py --numpy-port [--isolate]

``--impl`` checks one implementation instead of the default set.
``--numpy-port`` checks a numpy port of the schedule, a ``cmd:`` program
(:data:`NUMPY_PORT`) that fails many groups, once with ``--no-rerun`` and
once with the re-run, and prints the ratio of the two.

``--sequential`` also runs the same check one implementation at a time in
the same process (``jobs=1``) and prints the ratio of the wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from expdecay.conformance import runner
from expdecay.conformance.adapters import default_configurations, get_adapter
from expdecay.conformance.adapters.client import SubprocessAdapter
from expdecay.conformance.adapters.codec import FRESH_PARALLEL
from expdecay.conformance.adapters.registry import label
from expdecay.conformance.vectors import decode_number, load_vector_file

PHASES = ("load", *runner.PHASES)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def cpu_split() -> tuple[float, float]:
    """CPU seconds of this process, and of the children it waited for."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def cpu_seconds() -> float:
    return sum(cpu_split())


def union(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of intervals."""
    total, end = 0.0, -float("inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def run(jobs: int | None, rerun: bool | str,
        configs: list[tuple[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    load0 = os.getloadavg()
    own0, kids0 = cpu_split()
    t0 = time.monotonic()
    docs = {p.name: load_vector_file(p) for p in runner.vector_paths(None)}
    t1 = time.monotonic()
    configs = default_configurations() if configs is None else configs
    reports: list[runner.ImplementationReport] = []
    for reps in runner.check_implementations(configs, docs, runner.PROFILES, 60.0,
                                             rerun=rerun, jobs=jobs):
        reports += reps
    wall = time.monotonic() - t0
    own1, kids1 = cpu_split()
    cpu = own1 + kids1 - own0 - kids0
    spans: dict[str, list[tuple[float, float]]] = {p: [] for p in PHASES}
    spans["load"].append((t0, t1))
    seen = set()
    for r in reports:
        if id(r.phases) in seen:  # one set of phases per check (shared by its profiles)
            continue
        seen.add(id(r.phases))
        for phase, span in r.phases.items():
            spans[phase].append(span)
    phases = {p: {"wall": union(s), "fraction": union(s) / wall,
                  "sum": sum(b - a for a, b in s)} for p, s in spans.items()}
    per_impl: dict[str, dict[str, float]] = {}
    groups: dict[str, int] = {}
    for r in reports:
        per_impl.setdefault(r.name, {p: round(b - a, 2) for p, (a, b) in r.phases.items()})
        groups.setdefault(r.name, getattr(r, "rerun_groups", 0))
    return {"wall": wall, "cpu": cpu, "cpuRunner": own1 - own0, "cpuWorkers": kids1 - kids0,
            "rerunGroups": groups, "loadBefore": load0, "loadAfter": os.getloadavg(),
            "jobs": jobs or runner.usable_jobs(), "rerun": rerun, "checks": len(seen),
            "implementations": [r.name for r in reports if r.profile == reports[0].profile
                                or r.name.startswith("expdecay")],
            "phases": phases, "perImplementation": per_impl,
            "verdicts": [(r.name, r.profile, r.passed, r.failed, r.not_run, r.process_state,
                          r.nondeterministic) for r in reports]}


#: A numpy port of the schedule speaking the protocol (a ``cmd:`` program):
#: ``I * r ** (s / D)`` in the format's numpy type (the keras order with
#: numpy's ``pow``; bfloat16 through ml_dtypes), the staircase floored, bad
#: configurations refused.  It fails hundreds of tests in hundreds of
#: groups: the case where one fresh process per failing group is costly.
NUMPY_PORT = r"""
import json, math, sys
import numpy as np

def num(t):
    t = t.strip()
    try:
        return int(t)
    except ValueError:
        return float.fromhex(t) if t.lower().lstrip("+-") not in ("nan", "inf") else float(t)

def out(x):
    x = float(x)
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf") if math.isinf(x) else x.hex()

DT = {"float16": np.float16, "float32": np.float32, "float64": np.float64}
try:
    import ml_dtypes
    DT["bfloat16"] = ml_dtypes.bfloat16
except ImportError:
    pass

def one(g):
    p = g["params"]
    steps = [num(s) for s in g["steps"]]
    if p["dtype"] not in DT:
        return {"results": [{"na": "numpy has no " + p["dtype"]}] * len(steps)}
    I, D, r = (num(p[k]) for k in ("initial_learning_rate", "decay_steps", "decay_rate"))
    if not isinstance(p["staircase"], bool) or not (math.isfinite(D) and D > 0):
        return {"error": "bad configuration"}
    t = DT[p["dtype"]]
    with np.errstate(all="ignore"):
        q = np.array(steps, dtype=np.float64).astype(t) / t(D)
        if p["staircase"]:
            q = np.floor(q)
        y = (t(I) * np.power(t(r), q)).astype(t).astype(np.float64)
    return {"results": [out(v) for v in y]}

print(json.dumps({"protocol": "expdecay-conformance/1", "name": "numpy-port",
                  "version": np.__version__, "vectorised": True,
                  "ops": ["evaluate", "batch"]}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req.get("op") == "batch":
        print(json.dumps({"id": req["id"], "groups": [one(g) for g in req["groups"]]}),
              flush=True)
    else:
        print(json.dumps({"id": req["id"], **one(req)}), flush=True)
"""


def numpy_port(directory: str) -> str:
    """The ``cmd:`` name of :data:`NUMPY_PORT`, written in ``directory``."""
    script = Path(directory) / "numpy_port.py"
    script.write_text(NUMPY_PORT)
    return f"cmd:{sys.executable} {script}"


def small_group(docs: dict[str, dict[str, Any]]) -> tuple[Any, list[int | float]]:
    """A small float32 group of the vectors: ``(params, steps)``."""
    for doc in docs.values():
        for g in doc["testGroups"]:
            if g["dtype"] == "float32" and g["staircase"] is False and 2 <= len(g["tests"]) <= 8 \
                    and all("int" in t["step"] for t in g["tests"]):
                return runner.group_params(g), [decode_number(t["step"]) for t in g["tests"]]
    raise LookupError("no small float32 group in the vectors")


def child_cost(name: str, options: dict[str, Any], docs: dict[str, dict[str, Any]],
               repeat: int = 5) -> float | None:
    """Median wall seconds of one fresh child of ``name`` (see the module
    docstring), or None when it cannot be measured."""
    item = small_group(docs)
    with tempfile.TemporaryDirectory(prefix="bench-check-") as cache:
        a = get_adapter(name, isolated=True, timeout=120.0, zygote=True, cache_dir=cache,
                        **options)
        try:
            if not isinstance(a, SubprocessAdapter) or a.broken or "fresh-batch" not in a.ops:
                return None
            a.evaluate_batch([item])  # the worker has evaluated it, as in a check
            times = []
            for _ in range(repeat):
                t = time.monotonic()
                got = a.evaluate_batch([item], fresh=True)
                times.append(time.monotonic() - t)
                if got is None or got[0].crashed:
                    return None
            return statistics.median(times)
        finally:
            a.close()


def rerun_floor(res: dict[str, Any], docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Failing groups x measured cost of one fresh child, per implementation."""
    rows: dict[str, Any] = {}
    for name, options in default_configurations():
        shown = label(name, options)
        n = res["rerunGroups"].get(shown, 0)
        if name == "expdecay" or n == 0:
            continue
        cost = child_cost(name, options, docs)
        rows[shown] = {"groups": n, "child": cost,
                       "floor": None if cost is None else n * cost}
    total = sum(r["floor"] for r in rows.values() if r["floor"] is not None)
    return {"rows": rows, "total": total, "cores": os.cpu_count() or 1,
            "parallel": FRESH_PARALLEL}


def show_floor(floor: dict[str, Any], res: dict[str, Any]) -> None:
    print("\nfresh re-run floor (failing groups x cost of one fresh child):")
    print(f"{'implementation':<34} {'groups':>7} {'child ms':>9} {'floor s':>8}")
    for name, r in floor["rows"].items():
        cost = "-" if r["child"] is None else f"{1000 * r['child']:.0f}"
        fl = "-" if r["floor"] is None else f"{r['floor']:.1f}"
        print(f"{name:<34} {r['groups']:>7} {cost:>9} {fl:>8}")
    cores = floor["cores"]
    rerun = res["phases"]["rerun"]
    print(f"fresh re-run floor: {sum(r['groups'] for r in floor['rows'].values())} groups, "
          f"{floor['total']:.1f} s of children in all, {floor['total'] / cores:.1f} s on "
          f"{cores} cores; the re-run phase took {rerun['wall']:.1f} s of wall "
          f"({rerun['sum']:.1f} s summed over the checks)")


def show(res: dict[str, Any], title: str) -> None:
    how = res["rerun"] if isinstance(res["rerun"], str) else "sequence" if res["rerun"] else "off"
    print(f"\n{title}: wall {res['wall']:.1f} s, CPU {res['cpu']:.1f} s "
          f"({res['cpu'] / res['wall']:.2f} cores busy on average), {res['checks']} checks, "
          f"{res['jobs']} at once, re-run {how}")
    print("failed (process-state, nondeterministic) per check: " + "; ".join(
        f"{n} {p} {f} ({s}, {d})" for n, p, _, f, _, s, d in res["verdicts"]))
    print(f"CPU: runner process {res['cpuRunner']:.1f} s (judging, diagnosis, protocol), "
          f"workers and their children {res['cpuWorkers']:.1f} s")
    print(f"load average before {res['loadBefore'][0]:.2f}, after {res['loadAfter'][0]:.2f}")
    print(f"{'phase':<11} {'wall s':>8} {'of wall':>8} {'sum s':>8}")
    for p, v in res["phases"].items():
        print(f"{p:<11} {v['wall']:8.1f} {v['fraction']:8.0%} {v['sum']:8.1f}")
    print("\nper implementation (seconds):")
    print(f"{'implementation':<30}" + "".join(f"{p:>11}" for p in runner.PHASES))
    for name, ph in res["perImplementation"].items():
        print(f"{name:<30}" + "".join(f"{ph.get(p, 0.0):11.2f}" for p in runner.PHASES))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-rerun", action="store_true")
    ap.add_argument("--isolate", action="store_true",
                    help="re-run each failing group in a child of its own (expdecay check "
                    "--isolate)")
    ap.add_argument("--impl", metavar="NAME", help="check this implementation only")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of --impl (e.g. backend=jax)")
    ap.add_argument("--numpy-port", action="store_true",
                    help="check the numpy cmd: port (NUMPY_PORT) with and without the "
                    "re-run, and print the ratio")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--sequential", action="store_true",
                    help="also run one check at a time, and print the ratio")
    ap.add_argument("--no-child-cost", action="store_true",
                    help="skip the fresh re-run floor (one worker start per implementation)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    import numpy

    print(f"machine: {machine()}")
    print(f"python {sys.version.split()[0]}, numpy {numpy.__version__}")
    mode: bool | str = False if args.no_rerun else "isolate" if args.isolate else True
    configs = None
    if args.impl:
        from expdecay.conformance.adapters import parse_options

        configs = [(args.impl, parse_options(args.option))]
    if args.numpy_port:  # each run in a process of its own: no cache shared
        import subprocess

        with tempfile.TemporaryDirectory(prefix="bench-check-") as d:
            port = numpy_port(d)
            got = []
            for flags in (["--no-rerun"], ["--isolate"] if args.isolate else []):
                out_file = Path(d) / "run.json"
                subprocess.run([sys.executable, __file__, "--impl", port, "--no-child-cost",
                                "--json", str(out_file), *flags], check=True,
                               stdout=subprocess.DEVNULL)
                got.append(json.loads(out_file.read_text())["parallel"])
            plain, again = got
        show(plain, "numpy cmd: port, --no-rerun")
        show(again, f"numpy cmd: port, re-run {mode}")
        print(f"\nre-run / --no-rerun wall: {again['wall'] / plain['wall']:.2f}, CPU: "
              f"{again['cpu'] / plain['cpu']:.2f}; failing groups re-run: "
              f"{sum(again['rerunGroups'].values())}")
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "noRerun": plain,
                                                   "rerun": again}, indent=1) + "\n")
        return 0
    res = run(args.jobs, mode, configs)
    show(res, "default check" if configs is None else f"check of {args.impl}")
    out: dict[str, Any] = {"machine": machine(), "parallel": res}
    if res["rerun"] and not args.no_child_cost and configs is None:
        docs = {p.name: load_vector_file(p) for p in runner.vector_paths(None)}
        floor = rerun_floor(res, docs)
        show_floor(floor, res)
        out["rerunFloor"] = floor
    if args.sequential:
        seq = run(1, mode, configs)
        show(seq, "one check at a time")
        same = seq["verdicts"] == res["verdicts"]
        print(f"\nparallel / sequential wall: {res['wall'] / seq['wall']:.2f}; verdicts "
              f"{'identical' if same else 'DIFFER'}")
        out["sequential"] = seq
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
