"""upcall-lab: upcalls, scheduler activations, syscalls as messages and
syslets, rebuilt on today's Linux and measured."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("upcall-lab")
except _metadata.PackageNotFoundError:     # running from a bare checkout
    __version__ = "0.0.0+unknown"
