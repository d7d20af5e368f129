"""The experiment families: every module of this package that builds a
``FAMILY`` is one, found by its presence (README: "Adding a family"), so a
new family edits no list here or anywhere else."""

from __future__ import annotations

import importlib
import pkgutil

from lab.model import Family

# The built-in families' report order; a family not named here follows
# them in alphabetical order.
ORDER = ("baseline", "syncfirst", "chains", "upcall", "activations", "msgport", "probe_cost")


def _family_modules() -> tuple[str, ...]:
    # modules only: upcall_bpf.c and the like are not Python, and a
    # package or a private module (leading underscore) is not a family
    found = {m.name for m in pkgutil.iter_modules(__path__)
             if not m.ispkg and not m.name.startswith("_")}
    return (tuple(n for n in ORDER if n in found)
            + tuple(sorted(found.difference(ORDER))))


FAMILY_NAMES = _family_modules()


def get(name: str) -> Family:
    if name not in FAMILY_NAMES:
        raise KeyError(name)
    return importlib.import_module(f"lab.families.{name}").FAMILY


def all_families() -> dict[str, Family]:
    return {name: get(name) for name in FAMILY_NAMES}
