"""tracefs: bcc attaches tracepoints by the ids tracefs lists.  Mounted only
when the lab needs it and not already there; unmounted again on the way
out, so the machine is left as it was."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os

TRACEFS = "/sys/kernel/tracing"


def mount_point() -> str | None:
    """Where tracefs is mounted, or None."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "tracefs":
                    return fields[1]
    except OSError:
        pass
    return None


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@contextlib.contextmanager
def mounted():
    """Yield tracefs's mount point, mounting it for the duration if needed."""
    where = mount_point()
    if where is not None:
        yield where
        return
    libc = _libc()
    if libc.mount(b"nodev", TRACEFS.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tracefs on {TRACEFS}: {os.strerror(err)}")
    try:
        yield TRACEFS
    finally:
        if libc.umount2(TRACEFS.encode(), 0) != 0:
            # busy: detach lazily rather than leave it behind
            libc.umount2(TRACEFS.encode(), 2)  # MNT_DETACH
