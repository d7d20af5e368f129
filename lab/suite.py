"""Suite files: the lab's user interface.

A suite is a TOML file::

    [suite]
    name = "quick"          # default: the file's stem
    description = "..."
    repetitions = 3         # each (variant, parameter point) this many times
    timeout = 30            # seconds a single run may take
    cpu = 0                 # where workers run
    peer_cpu = 1            # the other party of cross_cpu variants

    [baseline]              # one table per family
    variants = ["null_syscall", "futex_pingpong"]   # default: all
    samples = 2000          # a value, or a list of values to sweep
    placement = ["same_cpu", "cross_cpu"]

A table sweeps the Cartesian product of its lists.  To sweep different
products for one family (NOP chains for every k, reads only for a few),
repeat the table as an array of tables, ``[[chains]]``: each is its own
product, and a point two tables share runs once.

Validation happens before anything runs or is written; the first problem
raises SuiteError whose message names the file, the key and what is allowed.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from lab import families
from lab.model import Family, Param, ParamError, Variant


class SuiteError(ValueError):
    """Bad suite input: one line, file and key first."""


# The [suite] table; validated with the same rules as family parameters.
SUITE_SETTINGS = (
    Param("repetitions", 3, "runs", "runs of each (variant, point), interleaved", low=1, high=1000),
    Param("timeout", 60.0, "s", "wall-clock limit of one run; a run over it is killed and failed",
          low=1, high=86400),
    Param("cpu", 0, "CPU", "CPU the worker (and same_cpu peers) run on", low=0, high=4095),
    Param("peer_cpu", 1, "CPU", "CPU of the other party in cross_cpu variants", low=0, high=4095),
    Param("probe_overhead", False, "",
          "also run every variant and point without probes, interleaved, to measure "
          "what the probes cost"),
)
_SUITE_TEXT_KEYS = ("name", "description")


@dataclass(frozen=True)
class FamilySelection:
    family: Family
    variants: tuple[Variant, ...]
    values: dict[str, tuple[Any, ...]]      # parameter -> values to sweep

    def points(self, variant: Variant) -> list[dict[str, Any]]:
        """Cartesian product of the values of the parameters variant reads."""
        names = variant.params
        grids = [self.values.get(n, (self.family.param(n).default,)) for n in names]
        return [dict(zip(names, combo)) for combo in itertools.product(*grids)]


@dataclass(frozen=True)
class Suite:
    path: str
    text: str
    name: str
    description: str
    settings: dict[str, Any]
    # each family's tables (one, or several from a [[family]] array)
    families: dict[str, tuple[FamilySelection, ...]] = field(default_factory=dict)

    @property
    def repetitions(self) -> int:
        return self.settings["repetitions"]


def load(path: str) -> Suite:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SuiteError(f"{path}: cannot read suite: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SuiteError(f"{path}: not valid TOML: {e}") from None
    return parse(data, path, text)


def parse(data: dict[str, Any], path: str, text: str = "") -> Suite:
    known = families.FAMILY_NAMES
    suite_table = data.get("suite", {})
    if not isinstance(suite_table, dict):
        raise SuiteError(f"{path}: suite: expected a table [suite]")
    settings = {}
    for key, value in suite_table.items():
        if key in _SUITE_TEXT_KEYS:
            if not isinstance(value, str):
                raise SuiteError(f"{path}: suite.{key}: expected a string, got {value!r}")
            continue
        setting = _suite_setting(key)
        if setting is None:
            allowed = ", ".join(_SUITE_TEXT_KEYS + tuple(s.name for s in SUITE_SETTINGS))
            raise SuiteError(f"{path}: suite.{key}: unknown setting; allowed: {allowed}")
        settings[key] = _check(path, f"suite.{key}", setting, value)
    for s in SUITE_SETTINGS:
        settings.setdefault(s.name, s.default)

    selections = {}
    for fam_name, table in data.items():
        if fam_name == "suite":
            continue
        if fam_name not in known:
            raise SuiteError(f"{path}: [{fam_name}]: unknown family; known: {', '.join(known)}")
        family = families.get(fam_name)
        if isinstance(table, dict):
            selections[fam_name] = (_parse_family(path, family, table, fam_name),)
        elif isinstance(table, list) and table and all(isinstance(t, dict) for t in table):
            selections[fam_name] = tuple(_parse_family(path, family, t, f"{fam_name}[{i}]")
                                         for i, t in enumerate(table))
        else:
            raise SuiteError(f"{path}: {fam_name}: expected a table [{fam_name}] or tables "
                             f"[[{fam_name}]]")
    if not selections:
        raise SuiteError(f"{path}: no family tables; add one of: "
                         + ", ".join(f"[{n}]" for n in known))

    stem = os.path.splitext(os.path.basename(path))[0]
    name = suite_table.get("name", stem)
    if not name or any(c in name for c in "/\\\0") or name.startswith("."):
        raise SuiteError(f"{path}: suite.name: {name!r} cannot name a results folder")
    return Suite(path=path, text=text, name=name,
                 description=suite_table.get("description", ""),
                 settings=settings, families=selections)


def _parse_family(path: str, family: Family, table: dict[str, Any], fam: str) -> FamilySelection:
    """One table of a family; fam names it in messages (chains, chains[1])."""
    variant_names = [v.name for v in family.variants]
    chosen = table.get("variants", variant_names)
    if isinstance(chosen, str):
        chosen = [chosen]
    if not isinstance(chosen, list) or not chosen:
        raise SuiteError(f"{path}: {fam}.variants: expected a non-empty list of names; "
                         f"allowed: {', '.join(variant_names)}")
    for v in chosen:
        if v not in variant_names:
            raise SuiteError(f"{path}: {fam}.variants: unknown variant {v!r}; "
                             f"allowed: {', '.join(variant_names)}")
    if len(set(chosen)) != len(chosen):
        raise SuiteError(f"{path}: {fam}.variants: a variant is listed twice")

    values = {}
    for key, raw in table.items():
        if key == "variants":
            continue
        try:
            param = family.param(key)
        except KeyError:
            allowed = ", ".join(["variants"] + [p.name for p in family.params])
            raise SuiteError(f"{path}: {fam}.{key}: unknown parameter; allowed: {allowed}") from None
        seq = raw if isinstance(raw, list) else [raw]
        if not seq:
            raise SuiteError(f"{path}: {fam}.{key}: empty list; give at least one value "
                             f"({param.describe_range()})")
        checked = tuple(_check(path, f"{fam}.{key}", param, v) for v in seq)
        if len(set(checked)) != len(checked):
            raise SuiteError(f"{path}: {fam}.{key}: a value is listed twice")
        values[key] = checked
    return FamilySelection(family, tuple(family.variant(v) for v in chosen), values)


def _suite_setting(key: str) -> Param | None:
    return next((s for s in SUITE_SETTINGS if s.name == key), None)


def _check(path: str, key: str, param: Param, value: Any) -> Any:
    try:
        return param.check(value)
    except ParamError as e:
        unit = f" {param.unit}" if param.unit else ""
        raise SuiteError(f"{path}: {key}: {e} (allowed: {param.describe_range()}{unit})") from None
