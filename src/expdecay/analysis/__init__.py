"""Precision analysis: where a low-precision schedule goes wrong, by how much, and why.

One subpackage, one capability:

* :mod:`.sweep`: step sets, sweeps of an implementation against both orders,
  error statistics, the quantisation of the inputs;
* :mod:`.misfloor`: exact enumeration of the steps a staircase floors wrongly;
* :mod:`.search`: a directed (Hypothesis) search for the worst inputs, and its
  findings written as a conformance vector file;
* :mod:`.plot`: matplotlib figures;
* :mod:`.report`: :func:`analyze` (all of the above in one call), the text
  summary and the Markdown/HTML report.

The command line (``expdecay analyze``, ``expdecay report``) is
:mod:`expdecay.cli.analyze`.
"""

from __future__ import annotations

from .misfloor import misfloors
from .report import Analysis, analyze, write_report
from .sweep import Schedule, StepSet, parse_steps

__all__ = [
    "Analysis",
    "Schedule",
    "StepSet",
    "analyze",
    "parse_steps",
    "misfloors",
    "write_report",
]
