"""The experiment families.  Adding one: write native/<name>.c (declared in
native/<name>.h), lab/families/<name>.py building a ``FAMILY``, add its
name to ORDER below, a report section in analysis/sections/ (the generic section
renders any family until then) and a notebook (README: "Adding a family")."""

from __future__ import annotations

import importlib
import importlib.util

from lab.model import Family

# Report order.  A family is present once its module exists, so families
# can be developed side by side without touching this file.
ORDER = ("baseline", "syncfirst", "chains", "upcall", "activations", "msgport", "probe_cost")
FAMILY_NAMES = tuple(n for n in ORDER
                     if importlib.util.find_spec(f"lab.families.{n}") is not None)


def get(name: str) -> Family:
    if name not in FAMILY_NAMES:
        raise KeyError(name)
    return importlib.import_module(f"lab.families.{name}").FAMILY


def all_families() -> dict[str, Family]:
    return {name: get(name) for name in FAMILY_NAMES}
