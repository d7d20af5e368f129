"""tracefs: bcc attaches tracepoints by the ids tracefs lists.  Mounted only
when the lab needs it and it is not there, and unmounted again by the last
lab session using it, so the machine is left as it was.

Several lab runs may overlap (two suites, a test beside a suite): each holds
a shared flock on /run/upcall-lab/tracefs.users while it uses tracefs.
Entering and leaving happen under a second, briefly held lock (tracefs.lock),
so the mount decision and the "am I the last user?" test cannot race; the
session that leaves last (it can take the users lock exclusively) unmounts,
and only if a lab session mounted it (the marker file), never a tracefs
somebody else mounted.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os

TRACEFS = "/sys/kernel/tracing"
STATE_DIR = "/run/upcall-lab"
LOCK = os.path.join(STATE_DIR, "tracefs.lock")      # held while entering / leaving
USERS = os.path.join(STATE_DIR, "tracefs.users")    # held shared while using
MOUNTED_BY_LAB = os.path.join(STATE_DIR, "tracefs.mounted-by-lab")
MNT_DETACH = 2


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


def _mount() -> None:
    if _libc().mount(b"nodev", TRACEFS.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tracefs on {TRACEFS}: {os.strerror(err)}")
    with open(MOUNTED_BY_LAB, "w") as f:
        f.write(f"{os.getpid()}\n")


def _unmount_if_last(users: int) -> None:
    """Called with the entry lock held and our shared users lock dropped."""
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return                      # another session still uses it
    if os.path.exists(MOUNTED_BY_LAB) and mount_point() == TRACEFS:
        libc = _libc()
        if libc.umount2(TRACEFS.encode(), 0) != 0:
            libc.umount2(TRACEFS.encode(), MNT_DETACH)     # busy: detach lazily
    with contextlib.suppress(FileNotFoundError):
        os.unlink(MOUNTED_BY_LAB)


@contextlib.contextmanager
def mounted():
    """Yield tracefs's mount point, mounting it for the duration if needed."""
    os.makedirs(STATE_DIR, exist_ok=True)
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    users = os.open(USERS, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with _held(lock):
            where = mount_point()
            if where is None:
                _mount()
                where = TRACEFS
            fcntl.flock(users, fcntl.LOCK_SH)
        yield where
    finally:
        with _held(lock):
            fcntl.flock(users, fcntl.LOCK_UN)
            _unmount_if_last(users)
        os.close(users)
        os.close(lock)


@contextlib.contextmanager
def _held(fd: int):
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
