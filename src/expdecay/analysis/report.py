"""Precision analysis of a schedule and an implementation.

One call answers the questions people bring about the exponential-decay
schedule in a low-precision format:

* how many ulps an implementation is off, against the correctly rounded
  ``exact`` order and against the ``keras`` order, where the worst steps are,
  and how that compares with the derived error bound (:mod:`.sweep`);
* which steps of a staircase schedule get the wrong ``floor`` — every one of
  them, found by reasoning on the rounding of the step and of the quotient
  rather than by sampling (:mod:`.misfloor`);
* how much of the error is the rounding of ``initial_learning_rate`` and
  ``decay_rate`` to the format, and how much the arithmetic;
* a plot (:mod:`.plot`), a JSON document, a Markdown or HTML report
  (:func:`write_report`) and a directed search for the worst inputs
  (:mod:`.search`).

>>> a = analyze(Schedule("0.1", 1000, "0.9999", True, "float32"),
...             parse_steps("16777990:16778010"), progress=None)
>>> a.misfloor.first(3), a.sweep.vs_exact.max
([16777999], 3794)
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..fileio import atomic_write
from ..floats import to_hex
from ..oracle import value
from .misfloor import MisfloorResult, misfloors
from .sweep import Schedule, StepSet, SweepResult, parse_steps, quantisation, sweep
from .sweep.quantisation import Quantisation

__all__ = [
    "Analysis",
    "Schedule",
    "StepSet",
    "analyze",
    "parse_steps",
    "misfloors",
    "write_report",
    "summary_lines",
    "report_markdown",
    "report_html",
]

#: ``progress(label, unit)`` of :func:`analyze`: the progress callback of one stage.
ProgressFactory = Callable[[str, str], Callable[[int, int, float], None]]

#: Steps used for the quantisation split (a log-spaced sample of the set).
QUANT_POINTS = 512


@dataclass
class Analysis:
    """Everything :func:`analyze` found."""

    schedule: Schedule
    sweep: SweepResult
    misfloor: MisfloorResult | None
    quant: Quantisation | None
    #: the implementation analysed and its options, as :func:`analyze` got them
    implementation: str = "expdecay"
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self, first: int = 20) -> dict[str, Any]:
        sch = self.schedule
        return {
            "schedule": {
                "initial_learning_rate": str(sch.initial_learning_rate),
                "decay_steps": str(sch.decay_steps),
                "decay_rate": str(sch.decay_rate),
                "staircase": sch.staircase,
                "dtype": sch.dtype,
            },
            "sweep": self.sweep.to_json(),
            "misfloors": self.misfloor.to_json(first) if self.misfloor else None,
            "quantisation": self.quant.to_json() if self.quant else None,
        }


def analyze(
    schedule: Schedule,
    steps: StepSet,
    *,
    implementation: str = "expdecay",
    options: dict[str, Any] | None = None,
    workers: int | None = None,
    max_points: int | None = None,
    pow_ulps: float | None = 1,
    progress: ProgressFactory | None = None,
    scheduler: str | None = None,
) -> Analysis:
    """Sweep, enumerate misfloors (staircase, non-negative steps) and split
    the error into its causes.  ``progress(label, unit)``, if given, returns
    the ``(done, total, seconds)`` callback of one stage (label ``"misfloors"``
    counting ``"cells"``, then ``"analyze"`` counting ``"steps"``); the command
    line shows them as a progress line on stderr.  ``scheduler``: the address
    of a Dask scheduler that runs the sweep's chunks (see
    :mod:`expdecay.analysis.scaleout`)."""
    mf = None
    if schedule.staircase and steps.hi > max(steps.lo, 0):
        prog_mf = progress("misfloors", "cells") if progress else None
        mf = misfloors(schedule.decay_steps, max(steps.lo, 0), steps.hi, schedule.dtype,
                       progress=prog_mf)
    extra = _interesting_steps(schedule, steps, mf)
    if steps.points is not None and steps.log:
        # A log-spaced sample also gets the steps where the story happens.
        more = {e for e in extra if steps.lo <= e < steps.hi}
        steps = StepSet(0, 0, 1, tuple(sorted(set(steps.points) | more)), True)
    prog = progress("analyze", "steps") if progress else None
    sw = sweep(schedule, steps, implementation=implementation, options=options,
               workers=workers, max_points=max_points, pow_ulps=pow_ulps, progress=prog,
               extra=extra, scheduler=scheduler)
    qsteps = steps.sample(QUANT_POINTS, extra).array()
    quant = quantisation(schedule, qsteps) if qsteps.size else None
    return Analysis(schedule, sw, mf, quant, implementation, dict(options or {}))


def _interesting_steps(sch: Schedule, steps: StepSet, mf: MisfloorResult | None) -> tuple[int, ...]:
    """Steps a sample must contain: around ``2**P`` and the first misfloors."""
    big = 1 << sch.format.precision
    pts = {big - 1, big, big + 1, steps.hi - 1}
    if mf is not None:
        for s in mf.first(50):
            pts.update((s - 1, s, s + 1))
    return tuple(sorted(pts))


# ---------------------------------------------------------------------------
# Text output
# ---------------------------------------------------------------------------


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: "1 run", "16,777 runs"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def summary_lines(a: Analysis, first: int = 10) -> list[str]:
    """The human-readable summary printed by ``expdecay analyze``."""
    sch, sw = a.schedule, a.sweep
    fmt = sch.format
    floor = "floor" if sch.staircase else ""
    out = [
        f"schedule  {sch.initial_learning_rate} * {sch.decay_rate} ** {floor}(step / "
        f"{sch.decay_steps})  [{fmt.name}{', staircase' if sch.staircase else ''}]",
        f"impl      {sw.implementation}",
        f"steps     {sw.steps.describe()}  ({sw.evaluator}, {sw.seconds:.1f} s, "
        f"{sw.rate:,.0f} {'step' if round(sw.rate) == 1 else 'steps'}/s)",
    ]
    out += [f"note      {n}" for n in sw.notes]
    for label, st in (("vs exact", sw.vs_exact), ("vs keras", sw.vs_keras),
                      ("arith", sw.vs_rounded)):
        pct = " ".join(f"p{q}={st.percentile(q)}" for q in (50, 90, 99, 99.9))
        out.append(f"{label:<9} max {st.max} ulp, mean {st.mean:.4g}, {pct}; "
                   f"{st.nonzero():,} of {_count(st.count, 'step')} off"
                   + (f", {st.nan_mismatch} NaN mismatches" if st.nan_mismatch else ""))
        if st.worst:
            worst = ", ".join(f"{s} ({e:+d})" for e, s in st.worst[:5])
            out.append(f"          worst at {worst}")
    if sw.bound_available:
        out.append(f"bound     max {sw.bound_max:.4g} ulp (pow within {sw.pow_ulps} ulp); "
                   + ("1 step exceeds it" if sw.bound_violations == 1
                      else f"{sw.bound_violations} steps exceed it"))
    elif sw.pow_ulps is None:
        out.append("bound     not computed (skipped on request: pow_ulps=None, --no-bound)")
    else:
        out.append("bound     unavailable (see the notes)")
    if a.misfloor is not None:
        m = a.misfloor
        out.append(f"misfloors {_count(m.count, 'step')} in [{m.start}, {m.stop}) "
                   f"({m.early:,} early, {m.late:,} late, {m.nonfinite:,} non-finite; "
                   f"{_count(len(m.runs), 'run')}; exact enumeration)")
        if m.count:
            out.append(f"          first: {', '.join(map(str, m.first(first)))}")
    if a.quant is not None:
        q = a.quant.to_json()
        mx = q["max_abs_ulp"]
        out.append("inputs    rnd(initial_learning_rate) rel. error "
                   f"{q['initial_learning_rate_relative_error']:.3g}, "
                   f"rnd(decay_rate) rel. error {q['decay_rate_relative_error']:.3g} "
                   f"(~{q['decay_rate_ulps_per_period']:.3g} ulp per decay period)")
        out.append(f"          max ulps from I {mx['from_initial_learning_rate']}, from r "
                   f"{mx['from_decay_rate']}, from arithmetic {mx['arithmetic']} "
                   f"(keras order, {_count(a.quant.steps.size, 'sampled step')})")
        last = q["at_last_step"]
        if last:
            out.append(f"          at step {last['step']}: "
                       f"{last['from_initial_learning_rate']:+d} (I) "
                       f"{last['from_decay_rate']:+d} (r) {last['arithmetic']:+d} (arithmetic) "
                       f"= {last['total']:+d} ulp")
    return out


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _worst_rows(a: Analysis, worst: list[tuple[int, int]], n: int = 8) -> list[dict[str, str]]:
    """Details of the worst steps: exact value, expected and observed bits."""
    from .sweep.evaluation import evaluate_order, implementation_values

    sch, fmt = a.schedule, a.schedule.format
    rows: list[dict[str, str]] = []
    worst = worst[:n]
    if not worst:
        return rows
    steps = np.asarray([s for _, s in worst], dtype=np.int64)
    kw: dict[str, Any] = {"staircase": sch.staircase, "dtype": sch.dtype}
    I, D, r = sch.initial_learning_rate, sch.decay_steps, sch.decay_rate
    exact = evaluate_order(I, D, r, steps, order="exact", **kw)
    keras = evaluate_order(I, D, r, steps, order="keras", **kw)
    impl_name = a.sweep.implementation
    impl = implementation_values(sch, steps, a.implementation, a.options, keras)
    for (err, s), e, k, i in zip(worst, exact.tolist(), keras.tolist(), impl.tolist(), strict=True):
        rows.append({
            "step": str(s), "ulp": f"{err:+d}",
            "exact_value": value(I, D, r, int(s), staircase=sch.staircase, digits=20),
            "exact": to_hex(float(e), fmt), "keras": to_hex(float(k), fmt),
            "implementation": to_hex(float(i), fmt), "impl_name": impl_name,
        })
    return rows


def _reproduce(a: Analysis, steps_spec: str) -> str:
    sch = a.schedule
    parts = ["expdecay analyze", f"--initial-learning-rate {sch.initial_learning_rate}",
             f"--decay-steps {sch.decay_steps}", f"--decay-rate {sch.decay_rate}",
             f"--dtype {sch.dtype}", f"--steps {steps_spec}"]
    if sch.staircase:
        parts.insert(4, "--staircase")
    if a.implementation != "expdecay" or a.options:
        parts.append(f"--implementation {a.implementation}")
        parts += [f"--option {k}={v}" for k, v in a.options.items()]
    return " ".join(parts)


def report_markdown(a: Analysis, plot_ref: str | None, steps_spec: str) -> str:
    """The report as Markdown (the plot referenced by a relative path)."""
    sch, sw = a.schedule, a.sweep
    lines = [
        f"# Precision report: {sw.implementation}",
        "",
        f"Schedule: `lr = {sch.initial_learning_rate} * {sch.decay_rate} ** "
        f"{'floor' if sch.staircase else ''}(step / {sch.decay_steps})`, "
        f"dtype `{sch.dtype}`, staircase `{sch.staircase}`.",
        "",
        f"Steps: {sw.steps.describe()}. Reference: the correctly rounded `exact` order "
        "(the real value rounded once) and the `keras` order (every operation of Keras "
        "rounded correctly, pow included).",
        "",
        "## Summary",
        "",
        "```",
        *summary_lines(a),
        "```",
        "",
    ]
    if plot_ref:
        lines += ["## Error against step", "", f"![ulp error against step]({plot_ref})", ""]
    lines += ["## Error statistics (ulps)", "",
              "| against | max | mean | p50 | p90 | p99 | p99.9 | steps off |",
              "|---|---|---|---|---|---|---|---|"]
    for label, st in (("exact", sw.vs_exact), ("keras order", sw.vs_keras),
                      ("exact on rounded I, r", sw.vs_rounded)):
        lines.append(f"| {label} | {st.max} | {st.mean:.4g} | {st.percentile(50)} | "
                     f"{st.percentile(90)} | {st.percentile(99)} | {st.percentile(99.9)} | "
                     f"{st.nonzero():,} / {st.count:,} |")
    for title, st in (("Worst steps against the exact order", sw.vs_exact),
                      ("Worst steps against the keras order", sw.vs_keras)):
        rows = _worst_rows(a, st.worst)
        if not rows:
            continue
        lines += ["", f"## {title}", "",
                  "| step | ulp | exact value | exact | keras order | implementation |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['step']} | {r['ulp']} | {r['exact_value']} | `{r['exact']}` | "
                  f"`{r['keras']}` | `{r['implementation']}` |" for r in rows]
    if a.misfloor is not None:
        m = a.misfloor
        lines += ["", "## Staircase misfloors", "",
                  f"{m.count:,} steps in [{m.start}, {m.stop}) where `floor(rnd(rnd(step) / "
                  f"rnd(decay_steps)))` differs from `floor(step / decay_steps)` "
                  f"({m.early:,} early, {m.late:,} late, {m.nonfinite:,} with a non-finite "
                  "exponent). Found by exact enumeration over "
                  "the rounding cells of the step, not by sampling."]
        if m.count:
            lines += ["", f"First: {', '.join(map(str, m.first(20)))}."]
    lines += ["", "## Reproduce", "", "```", _reproduce(a, steps_spec), "```", ""]
    return "\n".join(lines)


def report_html(a: Analysis, plot: bytes | None, steps_spec: str, plot_format: str = "png") -> str:
    """The report as one self-contained HTML page, with ``plot`` (the bytes of
    a ``plot_format`` image) embedded.  The bytes are passed rather than read
    back from the plot file, which a concurrent run may have replaced since."""
    from .plot import PLOT_FORMATS

    md = report_markdown(a, None, steps_spec)
    body = []
    in_code = False
    table: list[str] = []

    def flush_table() -> None:
        if not table:
            return
        rows = [r.strip("|").split("|") for r in table if not set(r) <= set("|-")]
        body.append("<table>")
        for i, cells in enumerate(rows):
            tag = "th" if i == 0 else "td"
            body.append("<tr>" + "".join(f"<{tag}>{html.escape(c.strip().strip('`'))}</{tag}>"
                                         for c in cells) + "</tr>")
        body.append("</table>")
        table.clear()

    for line in md.splitlines():
        if line.startswith("```"):
            body.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            body.append(html.escape(line))
            continue
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
            if line == "## Error statistics (ulps)" and plot:
                data = base64.b64encode(plot).decode()
                mime = PLOT_FORMATS[plot_format]
                body.insert(-1, f'<h2>Error against step</h2><img alt="ulp error against step" '
                                f'src="data:{mime};base64,{data}" style="max-width:100%">')
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;max-width:70em;margin:auto}pre{background:#f4f4f4;"
             "padding:.5em;overflow-x:auto}table{border-collapse:collapse}td,th{border:1px solid "
             "#ccc;padding:.2em .5em;font-family:monospace}")
    title = html.escape(f"Precision report: {a.sweep.implementation}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(a: Analysis, path: str, steps_spec: str, plot: str | None = None) -> list[str]:
    """Write the report to ``path`` (``.md`` or ``.html``); the plot goes beside
    it (``plot`` or ``<stem>.png``).  Returns the files written.

    Each file is replaced atomically (:mod:`expdecay.fileio`): a run that is
    killed leaves the previous files whole, and of concurrent runs each file
    is one run's complete output.  An HTML page embeds the very bytes written
    to its plot file (rendered once, in memory).
    """
    from .plot import plot_format, render_plot

    stem, ext = os.path.splitext(path)
    if ext.lower() not in (".md", ".html", ".htm"):
        raise ValueError(f"output must end in .md or .html; got {path!r}")
    plot = plot or stem + ".png"
    kind = plot_format(plot)
    data = render_plot(a, kind)
    atomic_write(plot, data)
    if ext.lower() == ".md":
        text = report_markdown(a, os.path.relpath(plot, os.path.dirname(path) or "."), steps_spec)
    else:
        text = report_html(a, data, steps_spec, kind)
    atomic_write(path, text)
    return [path, plot]
