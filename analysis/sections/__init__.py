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

from typing import Callable

from analysis.sections import generic

Section = Callable[..., None]
SECTIONS: dict[str, Section] = {}


def register(family: str) -> Callable[[Section], Section]:
    """Decorator: ``@register("baseline")`` makes a function that family's section."""
    def wrap(fn: Section) -> Section:
        SECTIONS[family] = fn
        return fn
    return wrap


def section_for(family: str) -> Section:
    return SECTIONS.get(family, generic.render)


# the built-in sections register themselves on import
from analysis.sections import baseline, chains, syncfirst  # noqa: E402,F401
from analysis.sections import upcall  # noqa: E402,F401
from analysis.sections import activations  # noqa: E402,F401
from analysis.sections import msgport  # noqa: E402,F401
