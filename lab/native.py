"""Access to the cffi extension lab._native, with errors that say what to do."""

from __future__ import annotations

import errno
import os
from typing import Any


class NativeError(RuntimeError):
    """A native call failed; the message names the call and the errno."""


def load() -> tuple[Any, Any]:
    """Return (ffi, lib) of lab._native, or raise NativeError telling how to build it."""
    try:
        from lab import _native
    except ImportError as e:
        raise NativeError(
            f"the native extension lab._native is not built ({e}); "
            "run `make setup` in the lab's checkout") from None
    return _native.ffi, _native.lib


def enum_values(ctype: str, prefix: str) -> dict[str, int]:
    """A C enum of the API headers as {name: value}, in value order: each
    enumerator that starts with prefix, by the rest of its name in lower
    case (``enum_values("enum upcall_event", "UPCALL_EVENT_")`` ->
    {"block": 0, "unblock": 1}); the count that closes an enum (an
    ``NR_`` name: UPCALL_NR_EVENTS, ACT_T4_NR_KINDS) is not a value."""
    ffi, _ = load()
    named = {name[len(prefix):].lower(): value
             for name, value in ffi.typeof(ctype).relements.items()
             if name.startswith(prefix) and "NR_" not in name[len(prefix):]}
    return dict(sorted(named.items(), key=lambda item: item[1]))


def struct_fields(ctype: str) -> tuple[str, ...]:
    """The field names of a C struct of the API headers, in its order."""
    ffi, _ = load()
    return tuple(name for name, _ in ffi.typeof(ctype).fields)


def check(rc: int, what: str) -> int:
    """Turn a negative-errno return into NativeError("what: strerror (ENAME)")."""
    if rc < 0:
        name = errno.errorcode.get(-rc, str(-rc))
        raise NativeError(f"{what}: {os.strerror(-rc)} ({name})")
    return rc


def double_ptr(ffi: Any, array: Any) -> Any:
    """A ``double *`` onto a contiguous float64 NumPy array (no copy)."""
    if array.dtype.kind != "f" or array.dtype.itemsize != 8 or not array.flags.c_contiguous:
        raise TypeError("need a C-contiguous float64 array")
    return ffi.cast("double *", ffi.from_buffer(array))


def standalone_handshake() -> Any:
    """A ``struct lab_handshake *`` for a worker called without the runner
    (tests, notebooks): no pipes, the window is still stamped."""
    ffi, _ = load()
    return ffi.new("struct lab_handshake *", {"ready_fd": -1, "go_fd": -1})
