"""The experiment families.  Adding one: write native/<name>.c (declared in
native/lab_native.h), lab/families/<name>.py building a ``FAMILY``, add its
name below, a report section in analysis/sections/ (the generic section
renders any family until then) and a notebook (README: "Adding a family")."""

from __future__ import annotations

import importlib

from lab.model import Family

FAMILY_NAMES = ("baseline",)


def get(name: str) -> Family:
    if name not in FAMILY_NAMES:
        raise KeyError(name)
    return importlib.import_module(f"lab.families.{name}").FAMILY


def all_families() -> dict[str, Family]:
    return {name: get(name) for name in FAMILY_NAMES}
