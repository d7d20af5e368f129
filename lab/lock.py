"""One lab measurement per machine at a time.

Two lab runs at once perturb each other's numbers (a probed run on the other
CPU made an unprobed null system call 1.5-2x slower), and two runners on one
results folder overwrite each other's manifest.  So a ``lab run`` holds:

- the machine lock, an exclusive flock on ``/run/upcall-lab/measure.lock``,
  for as long as it measures.  A second ``lab run`` (or ``--resume``)
  refuses with the holder's pid and folder, or waits for it (``--wait``).
  The test suite holds the same lock for its whole session, so tests that
  read global kernel state (loaded BPF programs, the tracefs mount) cannot
  be disturbed by a lab run, and a lab run cannot be disturbed by them.
  A ``lab run`` started by the holder itself or by one of its descendants
  (the tests run the CLI) is *nested*: it runs under the holder's lock, and
  nested runs take a lock of their own (``nested-<holder pid>.lock``) so
  two of them still never measure at once.
- the folder lock, an exclusive flock on ``RUN_DIR/.lock``, so a folder is
  executed by one runner only, whatever happened to the machine lock.

flock, not a pid file: the kernel drops the lock when its holder dies, so a
crashed or SIGKILLed runner leaves nothing stale.  Who holds a lock comes
from /proc/locks (the kernel's word), its folder from a note the holder
writes beside the lock.

The folder /run/upcall-lab is root's: a lock under a folder another user
could write would let that user replace it.  Non-root runs use the machine
lock when root has made it (flock works on a read-only descriptor) and a
per-user lock otherwise; the runner also looks for other lab workers on the
machine before and after each run and flags runs that had company
(``alongside`` in the manifest), whatever the locks said.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
from dataclasses import dataclass

from lab.probes.tracefs import STATE_DIR

MACHINE_LOCK = "measure.lock"
HOLDER_NOTE = "measure.holder"      # pid, folder, command of the holder (JSON)
FOLDER_LOCK = ".lock"               # inside a results folder


class Busy(RuntimeError):
    """The machine or the folder is taken; the message names by whom."""


@dataclass
class Holder:
    pid: int
    what: str                   # its command line or folder, for the message

    def __str__(self) -> str:
        return f"pid {self.pid}" + (f" ({self.what})" if self.what else "")


def _lock_owner(fd: int) -> int | None:
    """The pid holding a flock on fd's file (other than through fd), from
    /proc/locks, or None."""
    st = os.fstat(fd)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; blocked
                # waiters show as "1: -> FLOCK ..." and do not hold it
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == ident:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None


def parent_of(pid: int) -> int | None:
    """pid's parent, from /proc/PID/stat (after the comm, which may hold
    spaces and parentheses), or None if pid is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _ancestors() -> set[int]:
    """This process and every process above it."""
    chain: set[int] = set()
    pid: int | None = os.getpid()
    while pid is not None and pid > 1 and pid not in chain:
        chain.add(pid)
        pid = parent_of(pid)
    return chain


def is_worker(pid: int) -> bool:
    """pid is a lab worker: ``python -m lab.worker`` on its own, or forked
    by a runner's zygote (lab.worker.serve), which is none itself: it
    measures nothing, and until it names itself it looks like its workers."""
    from lab.worker import WORKER_COMM, ZYGOTE_ARG
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
    except OSError:
        return False
    if b"lab.worker" not in args:
        return False
    return ZYGOTE_ARG.encode() not in args or comm == WORKER_COMM


def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return ""
    text = " ".join(a.decode(errors="replace") for a in args if a)
    # never a control character on the terminal
    return "".join(c if c.isprintable() else "?" for c in text)[:160]


def _private_folder(path: str, uid: int) -> bool:
    """path is a real folder (not a link) owned by uid and writable by it only."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o022


def _root_dir_ok(path: str) -> bool:
    return _private_folder(path, 0)


def _state_dir() -> str:
    """/run/upcall-lab, made by root if missing; refused if anyone but root
    could write it."""
    if os.geteuid() == 0:
        with contextlib.suppress(FileExistsError):
            os.mkdir(STATE_DIR, 0o755)
    if not _root_dir_ok(STATE_DIR):
        raise Busy(f"{STATE_DIR}: not a folder that only root can write: remove it "
                   f"(`rm -r {STATE_DIR}` as root) and run again")
    return STATE_DIR


def _user_dir() -> str:
    """A non-root user's own lock folder (when root has made no machine lock)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = os.path.join(base, f"upcall-lab-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    if not _private_folder(path, os.getuid()):
        raise Busy(f"{path}: not a folder only you can write: remove it and run again")
    return path


def _open_lock(path: str, writable: bool) -> int:
    """The lock file, made if we may; read-only otherwise (flock needs no
    write access, so a user can queue behind root's lock file)."""
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY), 0o644)
    except PermissionError:
        if not writable:
            raise
        fd = os.open(path, flags | os.O_RDONLY)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Busy(f"{path}: not a regular file: remove it and run again")
    return fd


def _note_path(lock_path: str) -> str:
    return lock_path + ".holder"


def _read_note(lock_path: str, pid: int) -> str:
    """What the holder wrote about itself, if the note is its own."""
    try:
        with open(_note_path(lock_path)) as f:
            note = json.load(f)
        if note.get("pid") == pid:
            return str(note.get("what", ""))
    except (OSError, ValueError, AttributeError):
        pass
    return command_of(pid)


def _write_note(lock_path: str, what: str) -> None:
    from lab import store
    with contextlib.suppress(OSError):
        store.atomic_write(_note_path(lock_path),
                           json.dumps({"pid": os.getpid(), "what": what}).encode())


class _Lock:
    """An exclusive flock, taken now or refused (or waited for)."""

    def __init__(self, path: str, writable: bool):
        self.path = path
        self.fd = _open_lock(path, writable)

    def holder(self) -> Holder | None:
        pid = _lock_owner(self.fd)
        return Holder(pid, _read_note(self.path, pid)) if pid else None

    def take(self, wait: bool, on_wait) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = self.holder()
        if not wait:
            raise Busy(str(holder) if holder else "another process")
        on_wait(holder)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if _lock_owner(self.fd) == os.getpid():
                os.unlink(_note_path(self.path))
        os.close(self.fd)


@dataclass
class Slot:
    """What a measurement holds; ``describe`` goes into the manifest."""

    describe: str
    locks: list

    made: str | None = None     # the nested lock file we made for our descendants

    def note(self, what: str) -> None:
        """Say which folder this measurement writes (for whoever is refused)."""
        for lock in self.locks:
            _write_note(lock.path, what)

    def release(self) -> None:
        for lock in reversed(self.locks):
            lock.close()
        self.locks = []
        if self.made:
            with contextlib.suppress(OSError):
                os.unlink(self.made)
            self.made = None


def _nested_path(lock_path: str, holder: int) -> str:
    return os.path.join(os.path.dirname(lock_path), f"nested-{holder}.lock")


def machine(what: str, wait: bool = False, on_wait=lambda holder: None) -> Slot:
    """Take this machine for one measurement, or raise Busy naming who has it.

    what: how the holder describes itself to a refused run (its folder).
    wait: block until the holder is done instead (on_wait(holder) is called
    first, to say so)."""
    locks = []
    try:
        if os.geteuid() == 0:
            path = os.path.join(_state_dir(), MACHINE_LOCK)
            scope = "machine"
        elif os.path.exists(os.path.join(STATE_DIR, MACHINE_LOCK)) and _root_dir_ok(STATE_DIR):
            path = os.path.join(STATE_DIR, MACHINE_LOCK)
            scope = "machine"
        else:
            path = os.path.join(_user_dir(), MACHINE_LOCK)
            scope = "user"
        top = _Lock(path, writable=(scope == "user" or os.geteuid() == 0))
        locks.append(top)
        owner = _lock_owner(top.fd)
        if owner is not None and owner in _ancestors():
            # run by the holder itself (the test suite): share its lock,
            # but never with a sibling
            nested = _Lock(_nested_path(path, owner), writable=True)
            locks.append(nested)
            _take(nested, wait, on_wait)
            describe = f"nested in the lock of pid {owner} ({_read_note(path, owner)})"
        else:
            _take(top, wait, on_wait)
            describe = (f"{path} (one lab run per machine)" if scope == "machine" else
                        f"{path}: this user only (no root lab run has made "
                        f"{os.path.join(STATE_DIR, MACHINE_LOCK)} since boot)")
        slot = Slot(describe, locks)
        if len(locks) == 1:
            # made now, by the holder, so that descendants who may not
            # create files here (the tests' non-root runs) can flock it
            with contextlib.suppress(OSError):
                os.close(_open_lock(_nested_path(path, os.getpid()), writable=True))
                slot.made = _nested_path(path, os.getpid())
        slot.note(what)
        return slot
    except BaseException:
        for lock in reversed(locks):
            lock.close()
        raise


def _take(lock: _Lock, wait: bool, on_wait) -> None:
    try:
        lock.take(wait, on_wait)
    except Busy as e:
        raise Busy(f"another lab measurement holds this machine: {e}; wait for it to end, "
                   "or run again with --wait") from None


def folder(run_dir: str) -> _Lock:
    """Take a results folder for this runner, or raise Busy naming the
    runner that has it."""
    path = os.path.join(run_dir, FOLDER_LOCK)
    try:
        lock = _Lock(path, writable=True)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise Busy(f"{run_dir}: not writable: {e.strerror}") from None
        raise
    try:
        lock.take(wait=False, on_wait=None)
    except Busy as e:
        lock.close()
        raise Busy(f"{run_dir} is being run by {e}") from None
    _write_note(path, run_dir)
    return lock


def other_measurements() -> list[str]:
    """Lab workers on this machine that are not this process or above it
    (the runner's own worker is gone when it looks): what a run had for
    company."""
    found = []
    mine = _ancestors()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        # workers only: a runner that waits for the lock measures nothing,
        # nor does a runner's zygote (which forks the workers)
        if is_worker(int(entry)):
            found.append(f"pid {entry}: {command_of(int(entry))}")
    return found


def wait_message(holder: Holder | None) -> str:
    return (f"waiting for {holder or 'another lab measurement'} to finish "
            f"(Ctrl-C to stop waiting)")


def folder_holder(run_dir: str) -> Holder | None:
    """Who holds a results folder's lock (a runner executing it), without
    taking it: None when nobody does or the folder has no lock file."""
    path = os.path.join(run_dir, FOLDER_LOCK)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        pid = _lock_owner(fd)
        return Holder(pid, _read_note(path, pid)) if pid else None
    finally:
        os.close(fd)
