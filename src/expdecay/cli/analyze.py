"""``expdecay analyze`` and ``expdecay report``: precision analysis of a schedule.

The analysis is :mod:`expdecay.analysis`; this module reads the arguments,
prints the summary (or JSON) and names the files written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from ..analysis.report import Analysis, analyze, summary_lines, write_report
from ..analysis.sweep import Schedule, parse_steps
from ..floats import get_format
from ..resources import require

__all__ = ["add_analyze_arguments", "run_analyze", "add_report_arguments", "run_report"]


def _common_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_schedule_arguments

    add_schedule_arguments(p, step=False)
    p.add_argument("--steps", default="log:0:10**8:2000", metavar="SPEC",
                   help="START:STOP[:STEP] (every integer, or every STEP-th), "
                   "log:START:STOP:N (N log-spaced steps) or A,B,C (default %(default)s)")
    p.add_argument("--implementation", "--impl", default="expdecay", metavar="NAME",
                   help="implementation to analyse, as for `expdecay check` "
                   "(default: this package's keras order)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the implementation (repeatable)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--max-points", type=int, default=None, metavar="N",
                   help="cap on evaluated steps (sampled log-spaced beyond it)")
    p.add_argument("--pow-ulps", type=float, default=1.0,
                   help="pow error assumed by the bound (default 1)")
    p.add_argument("--no-bound", action="store_true",
                   help="skip the error bound (faster exhaustive sweeps)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--exhaustive", action="store_true",
                   help="evaluate every step of --steps (no sampling, however many)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the sweep on the Dask cluster at ADDRESS (needs the dask "
                   "extra; default: local processes on all cores)")


def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``expdecay analyze``."""
    _common_arguments(p)
    p.add_argument("--plot", metavar="FILE", help="write a plot (.png or .svg)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--first", type=int, default=10, help="misfloors to list (default 10)")
    p.add_argument("--search", type=int, default=0, metavar="N",
                   help="also run a directed worst-case search of N examples")
    p.add_argument("--write-vectors", metavar="FILE",
                   help="write the search's findings as a conformance vector file")


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``expdecay report``."""
    _common_arguments(p)
    p.add_argument("--output", "-o", required=True, metavar="FILE",
                   help="report file, .md (plot beside it) or .html (plot embedded)")
    p.add_argument("--plot", metavar="FILE", help="where the plot goes (default: beside)")


def _flags() -> dict[str, str]:
    """The flag of each Python argument of the analysis, for its messages."""
    from ..cli import SCHEDULE_FLAGS

    return {**SCHEDULE_FLAGS, "implementation": "--implementation", "options": "--option",
            "workers": "--workers", "max_points": "--max-points", "pow_ulps": "--pow-ulps",
            "scheduler": "--scheduler", "examples": "--search", "output": "--output",
            "plot": "--plot"}


def _options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option must be KEY=VALUE; got {item!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _analysis_from_args(args: argparse.Namespace) -> Analysis:
    from ..cli import schedule_inputs

    I, D, r = schedule_inputs(args)
    sch = Schedule(I, D, r, bool(args.staircase), get_format(args.dtype).name)
    sch.rounded()  # validates I and r early
    steps = parse_steps(args.steps)
    options = _options(args.option)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {args.workers}")
    if args.max_points is not None and args.max_points < 1:
        raise ValueError(f"--max-points must be >= 1; got {args.max_points}")
    max_points = args.max_points
    if args.exhaustive:
        if max_points is not None:
            raise ValueError("--exhaustive and --max-points exclude each other")
        max_points = max(len(steps), 1)
    a = analyze(sch, steps, implementation=args.implementation, options=options,
                workers=args.workers, max_points=max_points,
                pow_ulps=None if args.no_bound else args.pow_ulps,
                progress=None if args.quiet else stderr_progress,
                scheduler=args.scheduler)
    if len(a.sweep.steps) < len(steps):
        print(f"notice: {len(a.sweep.steps):,} of {len(steps):,} steps evaluated (sampled); "
              f"add --exhaustive to evaluate all of them", file=sys.stderr)
    return a


def run_analyze(args: argparse.Namespace) -> int:
    """``expdecay analyze``: print the summary (or JSON), write the plot."""
    from ..cli import flags_in_errors

    with flags_in_errors(_flags()):
        return _run_analyze(args)


def _run_analyze(args: argparse.Namespace) -> int:
    if args.plot:
        ext = os.path.splitext(args.plot)[1].lower()
        if ext not in (".png", ".svg"):
            raise ValueError(f"--plot must be a .png or .svg file; got {args.plot!r}")
    if args.write_vectors and not args.search:
        raise ValueError("--write-vectors needs --search N (the steps it writes)")
    if args.first < 0 or args.search < 0:
        raise ValueError(f"--first and --search must be >= 0; got {args.first}, {args.search}")
    if args.plot:  # a missing extra is said before the sweep, not after it
        require("matplotlib", "plot", "--plot")
    if args.search:
        require("hypothesis", "search", "--search")
    a = _analysis_from_args(args)
    doc = a.to_json(args.first)
    if args.plot:
        from ..analysis.plot import plot_analysis

        doc["plot"] = plot_analysis(a, args.plot)
    if args.search:
        from ..analysis.search import python_inputs, search_worst, write_vectors

        # Vector files hold int/float64 inputs: search the schedule they will describe.
        target = python_inputs(a.schedule)[0] if args.write_vectors else a.schedule
        seeds = tuple(s for _, s in a.sweep.vs_exact.worst)
        seeds += tuple(a.misfloor.first(5)) if a.misfloor else ()
        found = search_worst(target, a.sweep.steps, examples=args.search,
                             implementation=a.implementation, options=a.options, seeds=seeds)
        doc["search"] = found.to_json()
        if args.write_vectors:
            doc["vectors"] = write_vectors(target, found, args.write_vectors)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    for line in summary_lines(a, args.first):
        print(line)
    if "search" in doc:
        s = doc["search"]
        print(f"search    worst {s['worst_ulp']:+d} ulp at step {s['worst_step']}; "
              f"hardest to round: step {s['hardest_step']} "
              f"({s['hardest_distance_ulp']:.3g} ulp from a rounding boundary)")
    if "vectors" in doc:
        print(f"vectors   {doc['vectors']}")
    if args.plot:
        print(f"plot      {args.plot}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """``expdecay report``: write the Markdown/HTML page and its plot."""
    from ..cli import flags_in_errors

    require("matplotlib", "plot", "expdecay report")
    with flags_in_errors(_flags()):
        a = _analysis_from_args(args)
        files = write_report(a, args.output, args.steps, args.plot)
    print("wrote " + ", ".join(files))
    return 0


#: Seconds between progress lines when stderr is not a terminal (a log file).
LOG_PROGRESS_INTERVAL = 10.0


def stderr_progress(label: str, unit: str = "steps") -> Callable[[int, int, float], None]:
    """A progress callback on stderr (``unit`` names what is counted: steps
    for a sweep, cells for misfloors).  On a terminal, one line updated in
    place with carriage returns; otherwise (a log file, a pipe) plain lines,
    the first, then at most one every :data:`LOG_PROGRESS_INTERVAL` seconds,
    and the last."""
    tty = _isatty(sys.stderr)
    last = [-math.inf]
    one = unit[:-1] if unit.endswith("s") else unit

    def show(done: int, total: int, seconds: float) -> None:
        finished = done >= total
        if not tty and not finished and seconds - last[0] < LOG_PROGRESS_INTERVAL:
            return
        last[0] = seconds
        rate = done / seconds if seconds > 0 else 0.0
        line = (f"{label}: {done:,}/{total:,} {one if total == 1 else unit} "
                f"({100 * done / max(total, 1):.0f}%), "
                f"{rate:,.0f} {one if round(rate) == 1 else unit}/s")
        if tty:
            print("\r" + line, end="\n" if finished else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return show


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
