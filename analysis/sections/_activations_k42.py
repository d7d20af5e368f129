"""The activations section's part on K42's soft and hard preemption (lab/families/
_activations_k42.py): analysis.sections.activations.render calls
``render`` after its own pages.  Private: registers no section."""

from __future__ import annotations

from analysis._pages import Report


def render(report: Report, family: str) -> None:
    """This part's pages; nothing when the run has none of its variants."""
