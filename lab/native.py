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


# A family's C header is the one declaration of its enums and counter
# structs; Python reads them through cffi with these two.

def enum_values(ctype: str, prefix: str) -> dict[str, int]:
    """A C enum as {name: value} in value order.  The name is the
    enumerator without prefix, lower-cased (ACT_FUTEX_HINT with prefix
    "ACT_": "futex_hint"); a count enumerator (one containing "NR_", like
    ACT_NR_VARIANTS) is not a value."""
    names = load()[0].typeof(ctype).elements
    return {names[v].removeprefix(prefix).lower(): v for v in sorted(names)
            if "NR_" not in names[v]}


def struct_fields(ctype: str) -> tuple[str, ...]:
    """A C struct's field names, in declaration order."""
    return tuple(name for name, _ in load()[0].typeof(ctype).fields)
