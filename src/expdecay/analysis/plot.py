"""Plots of a precision analysis (matplotlib, headless).

A plot is rendered in memory (:func:`render_plot`) and written with
:func:`expdecay.fileio.atomic_write`, so a plot file is never seen half
written, and a report can embed exactly the bytes it wrote.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from ..fileio import atomic_write
from ..resources import require

__all__ = ["plot_analysis", "render_plot", "plot_format"]

#: Plot formats: file extension -> MIME type.
PLOT_FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def plot_format(path: str) -> str:
    """``"png"`` or ``"svg"`` from the extension of ``path``; ``ValueError`` otherwise."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise ValueError(f"plot must be a .png or .svg file; got {path!r}")
    return ext


def plot_analysis(analysis: Any, path: str, *, max_marks: int = 400) -> str:
    """Draw the ulp error against the step, with the bound, ``2**P`` and the
    misfloors marked, to ``path`` (``.png`` or ``.svg``), replacing it
    atomically; returns ``path``.

    ``analysis`` is an :class:`expdecay.analysis.Analysis`.
    """
    data = render_plot(analysis, plot_format(path), max_marks=max_marks)
    atomic_write(path, data)
    return path


def render_plot(analysis: Any, image_format: str = "png", *, max_marks: int = 400) -> bytes:
    """The plot of :func:`plot_analysis` as the bytes of an ``image_format``
    file (``"png"`` or ``"svg"``)."""
    if image_format not in PLOT_FORMATS:
        raise ValueError(f"plot format must be 'png' or 'svg'; got {image_format!r}")
    matplotlib = require("matplotlib", "plot", "plotting")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sw = analysis.sweep
    env = sw.envelope
    sch = analysis.schedule
    fmt = sch.format
    centres = (env.edges[:-1] + env.edges[1:]) / 2
    seen = np.isfinite(env.err_min)
    fig, ax = plt.subplots(figsize=(13, 5.2), dpi=100)
    x = centres[seen]
    ax.fill_between(x, env.err_min[seen], env.err_max[seen], step="mid", color="tab:blue",
                    alpha=0.35, linewidth=0, label="ulp error vs exact (range per bin)")
    ax.plot(x, env.err_max[seen], color="tab:blue", linewidth=0.7, drawstyle="steps-mid")
    ax.plot(x, env.err_min[seen], color="tab:blue", linewidth=0.7, drawstyle="steps-mid")
    ax.plot(x, env.arith_max[seen], color="tab:green", linewidth=0.8, drawstyle="steps-mid",
            label="arithmetic only (vs exact on rounded I, r)")
    ax.plot(x, env.arith_min[seen], color="tab:green", linewidth=0.8, drawstyle="steps-mid")
    bseen = seen & np.isfinite(env.bound_max) & (env.bound_max > -np.inf)
    if bseen.any():
        ax.plot(centres[bseen], env.bound_max[bseen], color="tab:red", linewidth=1,
                label="error bound (pow within 1 ulp)")
        ax.plot(centres[bseen], -env.bound_max[bseen], color="tab:red", linewidth=1)
    lo, hi = env.edges[0], env.edges[-1]
    big = 1 << fmt.precision
    if lo <= big <= hi:
        ax.axvline(big, color="black", linestyle="--", linewidth=1,
                   label=f"2**{fmt.precision}: steps stop being exact in {fmt.name}")
    mf = analysis.misfloor
    if mf is not None and mf.count:
        every = max(1, len(mf.runs) // max_marks)
        marks = mf.runs[::every, 0].astype(np.float64)
        from matplotlib.transforms import blended_transform_factory

        bottom = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(marks, np.full(marks.size, 0.02), "|", color="tab:orange", markersize=9,
                alpha=0.7, transform=bottom,
                label=f"misfloors ({mf.count:,} steps"
                + (f"; every {every}th run marked)" if every > 1 else ")"))
    ax.set_yscale("symlog", linthresh=1)
    if sw.steps.log and lo >= 0:
        ax.set_xscale("symlog", linthresh=max(1.0, lo + 1))
    ax.set_xlabel("step")
    ax.set_ylabel(f"{fmt.name} ulps (implementation - exact)")
    kind = "staircase" if sch.staircase else "continuous"
    ax.set_title(
        f"{sw.implementation}: {sch.initial_learning_rate} * {sch.decay_rate} ** "
        f"({'floor' if sch.staircase else ''}(step / {sch.decay_steps})), {fmt.name}, {kind}",
        fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=image_format)
    finally:
        plt.close(fig)
    return buf.getvalue()
