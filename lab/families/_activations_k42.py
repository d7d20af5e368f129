"""Part of family ``activations``: K42's soft and hard preemption of a VP (issue 14, item 4).

A part of the family is a private module (not a family of its own:
lab.families skips names with a leading underscore) that lab/families/
activations.py joins to the family: its ``PARAMS`` follow the family's,
its ``VARIANTS`` follow the family's variants, and ``point_problem``
answers for its own variants (None for the others)."""

from __future__ import annotations

from typing import Any

from lab.model import Param, Variant

PARAMS: tuple[Param, ...] = ()
VARIANTS: tuple[Variant, ...] = ()


def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a point of one of this part's variants cannot run, or None."""
    return None
