"""The family -> report section registry: a section module registers its
render function here with ``@register("family")`` when it is imported
(analysis/sections/__init__.py imports the built-in ones)."""

from __future__ import annotations

from typing import Callable

Section = Callable[..., None]
SECTIONS: dict[str, Section] = {}


def register(family: str) -> Callable[[Section], Section]:
    """Decorator: ``@register("baseline")`` makes a function that family's section."""
    def wrap(fn: Section) -> Section:
        SECTIONS[family] = fn
        return fn
    return wrap
