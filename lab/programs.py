"""The BPF programs the runner compiles once per suite run and hands to
the workers that need them, by their fds.

Compiling one with bcc costs 0.5-1 s here, longer than most runs measure;
a suite run compiles each once, before the first run that needs it, and
every such worker gets its functions' and maps' fds (pass_fds; their
numbers in its spec) and attaches them for its own run only.  bcc patches
the maps' fds into the instructions when it compiles, so no compiled
program outlives the suite run: there is no cache across suite runs.  If
one cannot be loaded here, the workers compile it themselves (and fail
saying why).

Which program a run loads, its variant says (lab.model.Variant.
loads_program); each program's module gives ``load_for_suite(bpf stack)``
-> (functions' fds by name, maps' fds by name) and finds what was handed
over with ``handed(NAME)``.  A worker resets a handed program's maps
before its run: they hold what the last run left.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.model import Variant

# program name -> the module that compiles it (load_for_suite)
MODULES = {
    "upcall": "lab.upcall_program",                     # the upcall program
    "reply_port": "lab.families._msgport_upcall",       # the upcall reply port's
}
SPEC_KEY = "programs"           # the worker's spec: {name: {"progs": ..., "maps": ...}}

# Set in a worker the runner started with programs it loaded for the suite
# (lab.worker: spec["programs"]); empty: compile in this process.
_handed: dict[str, dict[str, dict[str, int]]] = {}


def use_shared(handed: dict[str, dict[str, dict[str, int]]] | None) -> None:
    global _handed
    _handed = dict(handed or {})


def handed(name: str) -> dict[str, dict[str, int]] | None:
    """{"progs": {function: fd}, "maps": {map: fd}} of program name as the
    runner handed it to this worker, or None."""
    return _handed.get(name)


def always(name: str):
    """Variant.loads_program of a variant whose every run loads program name."""
    if name not in MODULES:
        raise ValueError(f"unknown program {name!r}")

    def loads(p: dict[str, Any]) -> str:
        return name
    return loads


def loaded_by(variant: Variant, params: dict[str, Any]) -> str | None:
    """The program a run of variant at params loads, or None."""
    name = variant.loads_program(params) if variant.loads_program is not None else None
    if name is not None and name not in MODULES:
        raise ValueError(f"{variant.name}: loads an unknown program {name!r}")
    return name


class SuitePrograms:
    """The programs of one suite run, each loaded at the first run that
    needs it and closed with the suite run."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._loaded: dict[str, tuple[dict[str, int], dict[str, int], Any]] = {}
        self.problems: dict[str, str] = {}
        self.compile_s: dict[str, float] = {}

    def for_run(self, variant: Variant, params: dict[str, Any]
                ) -> tuple[tuple[int, ...], dict[str, Any]]:
        """(fds to pass, spec entries) for one run of variant at params."""
        name = loaded_by(variant, params)
        if name is None:
            return (), {}
        if name not in self._loaded and name not in self.problems:
            self._load(name)
        if name not in self._loaded:
            return (), {}
        progs, maps, _ = self._loaded[name]
        return (tuple(progs.values()) + tuple(maps.values()),
                {SPEC_KEY: {name: {"progs": dict(progs), "maps": dict(maps)}}})

    def bpf(self, name: str) -> Any:
        """The bcc module of a loaded program (the tests read its tables)."""
        return self._loaded[name][2]

    def _load(self, name: str) -> None:
        t0 = time.monotonic()
        stack = contextlib.ExitStack()
        try:
            module = importlib.import_module(MODULES[name])
            self._loaded[name] = module.load_for_suite(stack)
            self._stack.push(stack)
        except Exception as e:      # bcc's own errors are plain Exceptions
            # the workers then compile it themselves, and fail saying why
            stack.close()
            self.problems[name] = str(e)
        self.compile_s[name] = round(time.monotonic() - t0, 3)

    def close(self) -> None:
        self._loaded.clear()
        self._stack.close()
