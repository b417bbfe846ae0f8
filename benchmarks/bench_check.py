"""Where the time of the default ``expdecay check`` goes.

Runs what ``expdecay check`` runs with no ``--impl`` (every installed
implementation in its default configurations, both profiles, the installed
vectors) through :func:`expdecay.conformance.runner.check_implementations`
and prints a breakdown of the wall time:

* ``load``: reading and schema-checking the vector files;
* ``startup``: starting a worker, up to its hello line;
* ``evaluation``: the first evaluation of every group;
* ``rerun``: the fresh re-run of failing groups (one forked child per group);
* ``shutdown``: closing the worker (its input closed, its exit awaited);
* ``diagnosis``: judging every output and diagnosing every failure.

The implementations are checked in parallel, so the phases overlap: for each
phase the table gives the wall time during which at least one check was in
it (seconds and fraction of the wall time; the fractions add up to more than
1) and the sum over the checks.  CPU time (this process and every process it
waited for: workers, their fresh children) is given too, since the wall time
depends on what else the machine runs; the load average before and after is
printed for that reason.  Machine, cores and library versions are printed
with the figures.

    PYTHONPATH=src python benchmarks/bench_check.py [--no-rerun] [--jobs N]
        [--sequential] [--json FILE]

``--sequential`` also runs the same check one implementation at a time in
the same process (``jobs=1``) and prints the ratio of the wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

from expdecay.conformance import runner
from expdecay.conformance.adapters import default_configurations
from expdecay.conformance.vectors import load_vector_file

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


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def union(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of intervals."""
    total, end = 0.0, -float("inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def run(jobs: int | None, rerun: bool) -> dict[str, Any]:
    load0 = os.getloadavg()
    cpu0 = cpu_seconds()
    t0 = time.monotonic()
    docs = {p.name: load_vector_file(p) for p in runner.vector_paths(None)}
    t1 = time.monotonic()
    configs = default_configurations()
    reports: list[runner.ImplementationReport] = []
    for reps in runner.check_implementations(configs, docs, runner.PROFILES, 60.0,
                                             rerun=rerun, jobs=jobs):
        reports += reps
    wall = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
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
    for r in reports:
        per_impl.setdefault(r.name, {p: round(b - a, 2) for p, (a, b) in r.phases.items()})
    return {"wall": wall, "cpu": cpu, "loadBefore": load0, "loadAfter": os.getloadavg(),
            "jobs": jobs or runner.usable_jobs(), "rerun": rerun, "checks": len(seen),
            "implementations": [r.name for r in reports if r.profile == reports[0].profile
                                or r.name.startswith("expdecay")],
            "phases": phases, "perImplementation": per_impl,
            "verdicts": [(r.name, r.profile, r.passed, r.failed, r.not_run, r.process_state)
                         for r in reports]}


def show(res: dict[str, Any], title: str) -> None:
    print(f"\n{title}: wall {res['wall']:.1f} s, CPU {res['cpu']:.1f} s "
          f"({res['cpu'] / res['wall']:.2f} cores busy on average), {res['checks']} checks, "
          f"{res['jobs']} at once, re-run {'on' if res['rerun'] else 'off'}")
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
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--sequential", action="store_true",
                    help="also run one check at a time, and print the ratio")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    import numpy

    print(f"machine: {machine()}")
    print(f"python {sys.version.split()[0]}, numpy {numpy.__version__}")
    res = run(args.jobs, not args.no_rerun)
    show(res, "default check")
    out = {"machine": machine(), "parallel": res}
    if args.sequential:
        seq = run(1, not args.no_rerun)
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
