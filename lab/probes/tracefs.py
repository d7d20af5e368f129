"""tracefs: bcc attaches tracepoints by the ids tracefs lists.  Mounted only
when the lab needs it and it is not there, and unmounted again by the last
lab session using it, so the machine is left as it was.

Several lab runs may overlap (two suites, a test beside a suite): each holds
a shared flock on /run/upcall-lab/tracefs.users while it uses tracefs.
Entering and leaving happen under a second, briefly held lock (tracefs.lock),
so the mount decision and the "am I the last user?" test cannot race; the
session that leaves last (it can take the users lock exclusively) unmounts,
and only if a lab session mounted it (the marker file names the mount's id,
so a tracefs somebody else mounted since is never taken down).

A user that dies without leaving (a worker killed mid-run) drops its shared
lock with its life; ``tidy()`` then unmounts what it left, and the runner
calls it after every run.  A tracefs still busy (an admin reading
trace_pipe in it) is never detached from under its reader: it stays
mounted, marked, for a later lab session to take down.
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


def _mounts() -> list[tuple[str, str]]:
    """(mount id, mount point) of every tracefs mount, from mountinfo."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                # "36 25 0:12 / /sys/kernel/tracing rw,... - tracefs nodev rw"
                if "-" in fields and fields[fields.index("-") + 1:][:1] == ["tracefs"]:
                    found.append((fields[0], fields[4]))
    except OSError:
        pass
    return found


def mount_point() -> str | None:
    """Where tracefs is mounted, or None."""
    mounts = _mounts()
    return mounts[0][1] if mounts else None


def _mount_id() -> str | None:
    """The id of the tracefs mounted at TRACEFS, or None."""
    return next((i for i, where in _mounts() if where == TRACEFS), None)


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount() -> None:
    if _libc().mount(b"nodev", TRACEFS.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tracefs on {TRACEFS}: {os.strerror(err)}")
    with open(MOUNTED_BY_LAB, "w") as f:
        f.write(f"{_mount_id()}\n")


def _marked_mount() -> str | None:
    """The mount id the lab's marker names, or None (no marker)."""
    try:
        with open(MOUNTED_BY_LAB) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _unmount_if_last(users: int) -> None:
    """Called with the entry lock held and our shared users lock dropped."""
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return                      # another session still uses it
    try:
        marked = _marked_mount()
        if marked is None:
            return
        if marked == _mount_id():
            if _libc().umount2(TRACEFS.encode(), 0) != 0:
                # busy: somebody has a file open in it; a lazy detach
                # would pull it from under their feet.  Stay marked.
                return
        # unmounted, or another tracefs since (not ours): forget the marker
        with contextlib.suppress(FileNotFoundError):
            os.unlink(MOUNTED_BY_LAB)
    finally:
        fcntl.flock(users, fcntl.LOCK_UN)


def tidy() -> None:
    """Unmount a tracefs the lab mounted and no lab process uses any more
    (its users died without leaving).  Never raises: cleanup."""
    if os.geteuid() != 0 or _marked_mount() is None:
        return
    try:
        lock = os.open(LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        users = os.open(USERS, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with _held(lock):
            _unmount_if_last(users)
    except OSError:
        pass
    finally:
        os.close(users)
        os.close(lock)


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
