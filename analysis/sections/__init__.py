"""Per-family report sections.

A section is a function ``render(report, family)``: ``report`` is an
analysis._pages.Report (the Run as ``report.run``; ``report.flow(blocks)``
for text and tables, ``with report.figure(title, nrows, ncols) as (fig,
axes)`` for figures).  Any family without its own section gets
:func:`analysis.sections.generic.render`; a family-specific section
usually calls that too, adding its blocks (a computed "what this run shows",
a kernel-view table beside the user-side one) through ``extra_blocks``.
"""

from __future__ import annotations

# the built-in sections register themselves on import (a new family's
# section module is added to this list)
from analysis.sections import activations, baseline, chains, generic, msgport, syncfirst, upcall  # noqa: F401
from analysis.sections.registry import SECTIONS, Section, register  # noqa: F401


def section_for(family: str) -> Section:
    return SECTIONS.get(family, generic.render)
