"""upcall-lab: upcalls, scheduler activations, syscalls as messages and
syslets, rebuilt on today's Linux and measured."""

from __future__ import annotations

from typing import Any

__version__: str        # read on first use (__getattr__)


def __getattr__(name: str) -> Any:
    # the version is read on first use: importlib.metadata costs ~30 ms,
    # paid otherwise by every worker process the runner starts
    if name != "__version__":
        raise AttributeError(f"module 'lab' has no attribute {name!r}")
    from importlib import metadata
    try:
        version = metadata.version("upcall-lab")
    except metadata.PackageNotFoundError:     # running from a bare checkout
        version = "0.0.0+unknown"
    globals()["__version__"] = version
    return version
