"""Suite files: the lab's user interface.

A suite is a TOML file::

    [suite]
    name = "quick"          # default: the file's stem; names the results folder
    description = "..."
    repetitions = 3         # each (variant, parameter point) this many times
    timeout = 30            # seconds a single run may take
    cpu = 0                 # where workers run
    peer_cpu = 1            # the other party of two-party runs, helper threads
    max_runs = 20000        # refuse a suite that would plan more runs

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
Input that only a mistake or a fuzzer writes is refused the same way: a
file that is not a regular one or is over 1 MiB, nesting too deep for the
TOML parser, a name that cannot name a folder, a sweep of more runs than
``max_runs`` (counted before anything is expanded).
"""

from __future__ import annotations

import itertools
import math
import os
import stat
import tomllib
from dataclasses import dataclass, field
from typing import Any

from lab import families
from lab.model import Family, Param, ParamError, Variant, quoted


class SuiteError(ValueError):
    """Bad suite input: one line, file and key first.  Whatever of the
    input the message repeats (a key, a file name) is escaped as repr
    escapes it, so a newline or an escape sequence never reaches the
    terminal raw."""

    def __init__(self, message: str):
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


# A suite is a page of TOML (the thorough ones are ~5 KiB): more is not a
# suite, and /dev/zero would be read until memory runs out.
MAX_SUITE_BYTES = 1 << 20
# The results folder is <YYYYmmdd-HHMMSS>-<name>[-NN] (lab.store): 19 bytes
# besides the name, and NAME_MAX is 255 bytes.
MAX_NAME_BYTES = 100


# The [suite] table; validated with the same rules as family parameters.
SUITE_SETTINGS = (
    Param("repetitions", 3, "runs", "runs of each (variant, point), interleaved", low=1, high=1000),
    Param("timeout", 60.0, "s", "wall-clock limit of one run; a run over it is killed and failed",
          low=1, high=86400),
    Param("cpu", 0, "CPU", "CPU the worker (and same_cpu peers) run on", low=0, high=4095),
    Param("peer_cpu", 1, "CPU", "CPU of the other party in two-party runs (cross_cpu, syncfirst "
          "recv_*) and of helper threads (uring_sqpoll's SQ thread, activations' VP 1)",
          low=0, high=4095),
    Param("probe_overhead", False, "",
          "also run every variant and point without probes, interleaved, to measure "
          "what the probes cost"),
    # Planning holds every run in memory and the manifest lists them all,
    # rewritten after each run: 10^6 runs took 5.6 GB to plan.
    Param("max_runs", 20000, "runs",
          "refuse a suite planning more runs than this (points x repetitions, x 2 with "
          "probe_overhead), counted before planning", low=1, high=100_000),
)
_SUITE_TEXT_KEYS = ("name", "description")


@dataclass(frozen=True)
class FamilySelection:
    family: Family
    variants: tuple[Variant, ...]
    values: dict[str, tuple[Any, ...]]      # parameter -> values to sweep

    def points(self, variant: Variant) -> list[dict[str, Any]]:
        """Cartesian product of the values of the parameters variant reads."""
        grids = self._grids(variant)
        return [dict(zip(variant.params, combo)) for combo in itertools.product(*grids)]

    def count_points(self, variant: Variant) -> int:
        """len(self.points(variant)), without building them."""
        return math.prod(len(grid) for grid in self._grids(variant))

    def _grids(self, variant: Variant) -> list[tuple[Any, ...]]:
        return [self.values.get(n, (self.family.param(n).default,)) for n in variant.params]


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

    def planned_runs(self) -> int:
        """At most how many runs lab.runner.plan makes of this suite (it
        makes fewer when tables share points or points are skipped),
        counted without expanding anything."""
        twins = 2 if self.settings["probe_overhead"] else 1
        points = sum(sel.count_points(v) for tables in self.families.values()
                     for sel in tables for v in sel.variants)
        return points * self.repetitions * twins


def load(path: str) -> Suite:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise SuiteError(f"{path}: cannot read suite: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SuiteError(f"{path}: not a regular file: a suite is a TOML file")
        with open(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_SUITE_BYTES + 1)
    except OSError as e:
        raise SuiteError(f"{path}: cannot read suite: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_SUITE_BYTES:
        raise SuiteError(f"{path}: larger than 1 MiB: not a suite (a suite is a page of TOML)")
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SuiteError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise SuiteError(f"{path}: not valid TOML for the lab: arrays or tables nested too "
                         "deeply") from None
    except ValueError as e:     # an integer of more digits than Python converts
        raise SuiteError(f"{path}: not valid TOML: {str(e).split(';')[0]}") from None
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
                raise SuiteError(f"{path}: suite.{key}: expected a string, got {quoted(value)}")
            continue
        setting = _suite_setting(key)
        if setting is None:
            allowed = ", ".join(_SUITE_TEXT_KEYS + tuple(s.name for s in SUITE_SETTINGS))
            raise SuiteError(f"{path}: suite.{_short(key)}: unknown setting; allowed: {allowed}")
        settings[key] = _check(path, f"suite.{key}", setting, value)
    for s in SUITE_SETTINGS:
        settings.setdefault(s.name, s.default)

    selections: dict[str, tuple[FamilySelection, ...]] = {}
    for fam_name, table in data.items():
        if fam_name == "suite":
            continue
        if fam_name not in known:
            raise SuiteError(f"{path}: [{_short(fam_name)}]: unknown family; "
                             f"known: {', '.join(known)}")
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
    given = "" if "name" in suite_table else " (the file's name: set suite.name)"
    # printable only: the name reaches the terminal and a folder name raw
    if not name or not name.isprintable() or any(c in name for c in "/\\") \
            or name.startswith("."):
        raise SuiteError(f"{path}: suite.name: {quoted(name)}{given} cannot name a results "
                         "folder (printable characters, no / or \\, not starting with .)")
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise SuiteError(f"{path}: suite.name: {size} bytes in UTF-8, at most {MAX_NAME_BYTES} "
                         f"for a results folder name ({quoted(name)}){given}")
    description = suite_table.get("description", "")
    if not all(c.isprintable() or c in "\n\t" for c in description):
        raise SuiteError(f"{path}: suite.description: a control character in "
                         f"{quoted(description)}; printable text, tabs and newlines only")
    suite = Suite(path=path, text=text, name=name, description=description,
                  settings=settings, families=selections)
    _check_size(suite)
    return suite


def _check_size(suite: Suite) -> None:
    limit = suite.settings["max_runs"]
    runs = suite.planned_runs()
    if runs <= limit:
        return
    how = "points x repetitions" + (" x 2 for probe_overhead"
                                    if suite.settings["probe_overhead"] else "")
    bound = suite_setting("max_runs").high
    assert bound is not None        # SUITE_SETTINGS gives max_runs one
    high = int(bound)
    fix = (f"raise [suite] max_runs (at most {high:,})" if runs <= high
           else f"split the suite (max_runs is at most {high:,})")
    raise SuiteError(f"{suite.path}: suite.max_runs: this suite plans {runs:,} runs ({how}), "
                     f"over the limit of {limit:,}: sweep fewer values or {fix}")


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
            raise SuiteError(f"{path}: {fam}.variants: unknown variant {quoted(v)}; "
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
            raise SuiteError(f"{path}: {fam}.{_short(key)}: unknown parameter; "
                             f"allowed: {allowed}") from None
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


def suite_setting(key: str) -> Param:
    """The [suite] setting named key (one that exists: a name in code)."""
    setting = _suite_setting(key)
    if setting is None:
        raise KeyError(key)
    return setting


def _short(key: str) -> str:
    """A key or table name as a message repeats it: cut short, one line
    (SuiteError escapes what is not printable)."""
    return key if len(key) <= 60 else key[:57] + "..."


def _check(path: str, key: str, param: Param, value: Any) -> Any:
    try:
        return param.check(value)
    except ParamError as e:
        unit = f" {param.unit}" if param.unit else ""
        raise SuiteError(f"{path}: {key}: {e} (allowed: {param.describe_range()}{unit})") from None
