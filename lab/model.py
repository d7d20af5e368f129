"""What an experiment family is: parameters, variants, metrics.

A family module (lab/families/<name>.py) builds one :class:`Family`; the
suite loader validates suite files against it, ``lab list`` prints it, the
runner plans from it and the worker process calls a variant's ``run``.
Everything here is plain data and cheap to import: no NumPy, no native code.
"""

from __future__ import annotations

import math
import os
import reprlib
from dataclasses import dataclass, field
from typing import Any, Callable

# The CPUs this process may use, read at import: the worker narrows its own
# affinity to the suite's cpu only after importing the families, so this is
# what the runner's check_cpus saw too.
USABLE_CPUS = tuple(sorted(os.sched_getaffinity(0)))


def vp_cpus(vps: int, cpu: int, peer_cpu: int) -> list[int]:
    """VP i's CPU in the activations family and its parts: the suite's
    cpu, its peer_cpu, then the other CPUs this process may use, in order
    (here, not in the family, so that its parts need not import it)."""
    order = []
    for c in (cpu, peer_cpu) + USABLE_CPUS:
        if c not in order and (c in USABLE_CPUS or c == cpu):
            order.append(c)
    if vps > len(order):
        raise ValueError(f"vps={vps} needs {vps} CPUs, this process may use {len(order)} "
                         f"({','.join(map(str, order))}): lower vps")
    return order[:vps]


class ParamError(ValueError):
    """A parameter value that does not fit; the message says what fits."""


# Values as error messages quote them: repr (so a newline or an escape
# sequence stays escaped) cut short, so that a 400-digit number or a list
# nested a thousand deep is still one readable line.
_quote = reprlib.Repr()
_quote.maxstring = _quote.maxother = 60
_quote.maxlong = 40
_quote.maxlevel = 3
_quote.maxlist = _quote.maxdict = 6


def quoted(value: Any) -> str:
    return _quote.repr(value)


@dataclass(frozen=True)
class Param:
    """A knob of a family, as a suite file sets it and ``lab list`` shows it."""

    name: str
    default: Any
    unit: str
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    # True for the axes of an experiment (placement, batch, hit ratio...);
    # False for how much is measured (samples, warmup): reports label points
    # by their axis parameters only.
    axis: bool = True

    @property
    def kind(self) -> type:
        return type(self.default)

    def describe_range(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.kind is bool:
            return "true | false"
        low = "" if self.low is None else _fmt(self.low)
        high = "" if self.high is None else _fmt(self.high)
        return f"{low}..{high}"

    def check(self, value: Any) -> Any:
        """Return value converted to this parameter's type, or raise ParamError."""
        kind = self.kind
        # bool is an int subclass in Python, TOML keeps them apart: so do we
        if kind is bool:
            if not isinstance(value, bool):
                raise ParamError(f"expected true or false, got {quoted(value)}")
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(f"expected an integer, got {quoted(value)}")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParamError(f"expected a number, got {quoted(value)}")
            try:
                number = float(value)
            except OverflowError:       # an integer past 1.8e308: TOML allows any length
                number = math.inf
            if not math.isfinite(number):
                raise ParamError(f"expected a finite number, got {quoted(value)}")
            value = number
        elif kind is str:
            if not isinstance(value, str):
                raise ParamError(f"expected a string, got {quoted(value)}")
            if self.choices and value not in self.choices:
                raise ParamError(
                    f"{quoted(value)} is not one of {', '.join(self.choices)}")
            return value
        if (self.low is not None and value < self.low) or (
                self.high is not None and value > self.high):
            raise ParamError(
                f"{quoted(value)} is out of range {self.describe_range()}")
        return value


@dataclass(frozen=True)
class Metric:
    """One series of samples a variant records (the first is its headline)."""

    name: str
    unit: str
    help: str


@dataclass(frozen=True)
class RunContext:
    """What the worker process hands a variant's ``run``."""

    cpu: int
    peer_cpu: int
    handshake: Any          # cffi ``struct lab_handshake *``
    scratch_dir: str        # private to this run, removed afterwards


@dataclass
class Measurement:
    """What a variant's ``run`` returns: sample arrays, named by metric, and
    how many operations the measured window held (the probes' counts are
    divided by it: switches per operation, system calls per operation)."""

    series: dict[str, Any]              # metric name -> 1-D NumPy array
    ops: int                            # operations in the measured window
    counters: dict[str, float] = field(default_factory=dict)


# How a run uses suite.peer_cpu (Variant.peer_cpu_use); lab.runner.check_cpus
# checks that CPU for every planned run that uses it.
PEER_PARTY = "party"        # the other party runs there: a usable CPU other than cpu
PEER_HELPER = "helper"      # a helper thread is pinned there when two CPUs are usable
                            # (usable then; it may equal cpu, and the helper goes elsewhere)


@dataclass(frozen=True)
class Variant:
    name: str
    help: str
    run: Callable[[dict[str, Any], RunContext], Measurement]
    params: tuple[str, ...]             # the family parameters it reads
    metrics: tuple[Metric, ...]
    requires: tuple[str, ...] = ()      # capabilities (lab.environment)
    # The points whose runs pin a helper on suite.peer_cpu (SQPOLL's SQ
    # thread, the activations runtime's second VP), beyond the two-party
    # convention of peer_cpu_use; None: no helper.
    peer_helper: Callable[[dict[str, Any]], bool] | None = None
    # The probes its probed runs attach (lab.probes.CONCERN_NAMES), to
    # measure one probe alone (family probe_cost); None: all of the run's.
    probes: tuple[str, ...] | None = None
    # The BPF program a run at a point loads, by its name in lab.programs
    # (the runner compiles it once for every such run), or None; None: never.
    loads_program: Callable[[dict[str, Any]], str | None] | None = None

    @property
    def headline(self) -> Metric:
        return self.metrics[0]

    def requirements(self, point: dict[str, Any]) -> tuple[str, ...]:
        """Capabilities one parameter point needs: a ``placement`` of
        ``cross_cpu`` (the lab's convention for two-party variants) needs a
        second CPU."""
        if point.get("placement") == "cross_cpu":
            return self.requires + ("two_cpus",)
        return self.requires

    def peer_cpu_use(self, point: dict[str, Any]) -> str | None:
        """How a run at point uses suite.peer_cpu: PEER_PARTY for the other
        party of a two-party run (the lab's convention: a ``placement`` of
        ``cross_cpu``, or a variant that needs ``two_cpus``, whose second
        CPU is peer_cpu), PEER_HELPER for a helper pinned there, or None."""
        if "two_cpus" in self.requirements(point):
            return PEER_PARTY
        if self.peer_helper is not None and self.peer_helper(point):
            return PEER_HELPER
        return None


@dataclass(frozen=True)
class Family:
    name: str
    summary: str
    seeds: str                          # which seed ideas it measures
    params: tuple[Param, ...]
    variants: tuple[Variant, ...]
    reference: str                      # variant the report's ratios use
    # Why a point of a sweep cannot run (k=2 for a 3-atom chain, more
    # samples than the file has blocks), or None: such points are skipped
    # with that reason instead of failing in a worker.
    check_point: Callable[[str, dict[str, Any]], str | None] | None = None

    def point_problem(self, variant: str, point: dict[str, Any]) -> str | None:
        return self.check_point(variant, point) if self.check_point else None

    def __post_init__(self) -> None:
        names = {p.name for p in self.params}
        for v in self.variants:
            unknown = set(v.params) - names
            if unknown:
                raise TypeError(f"{self.name}/{v.name}: undeclared params {sorted(unknown)}")
        if self.reference not in {v.name for v in self.variants}:
            raise TypeError(f"{self.name}: reference {self.reference!r} is not a variant")

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def describe(self) -> dict[str, Any]:
        """The family as stored in a results manifest (analysis reads this,
        never the live module)."""
        return {
            "summary": self.summary,
            "seeds": self.seeds,
            "reference": self.reference,
            "params": {p.name: {"unit": p.unit, "help": p.help, "axis": p.axis}
                       for p in self.params},
            "variants": {
                v.name: {
                    "help": v.help,
                    "metrics": {m.name: {"unit": m.unit, "help": m.help}
                                for m in v.metrics},
                    "headline": v.headline.name,
                    **({"probes": list(v.probes)} if v.probes is not None else {}),
                }
                for v in self.variants
            },
        }


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)
