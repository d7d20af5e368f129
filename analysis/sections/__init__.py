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

import importlib
import pkgutil

from analysis.sections import generic
from analysis.sections.registry import SECTIONS, Section, register  # noqa: F401

# Every module of this package is a section and registers itself when
# imported, so a new family's section is found by its presence alone.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def section_for(family: str) -> Section:
    return SECTIONS.get(family, generic.render)
