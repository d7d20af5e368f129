"""How ``lab run`` stops: Ctrl-C, SIGTERM and SIGHUP all stop it cleanly.

The first of them raises KeyboardInterrupt where the runner is (waiting for
a worker, mostly); the runner then kills the worker's process group, marks
the run and the suite interrupted, writes the manifest with the resume hint,
detaches the probes and unmounts what it mounted.  Any further signal only
says that cleanup is under way: a second Ctrl-C must not cut the cleanup
short (it used to leave manifests saying "running" and `.scratch/` behind).

SIGHUP means the terminal is gone (ssh dropped, window closed): writing to
it would fail with EIO and turn the cleanup into a traceback, so the
descriptors that were a terminal are pointed at /dev/null first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WHY = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM",
       signal.SIGHUP: "SIGHUP (the terminal went away)"}

stopped_by: str | None = None       # what stopped this process, once something did
_terminals: tuple[int, ...] = ()
_holding = 0                        # held() depth
_pending = False                    # a stop arrived while held
_installed = False


def install() -> None:
    """Handle SIGINT, SIGTERM and SIGHUP as described above."""
    global _terminals, stopped_by, _installed
    stopped_by = None
    _installed = True
    _terminals = tuple(fd for fd in (0, 1, 2) if _isatty(fd))
    for sig in STOPPING:
        signal.signal(sig, _on_signal)


def ignore_late() -> None:
    """The work is done and its exit status decided: from now on a stopping
    signal is ignored.  Interpreter shutdown puts Python's handlers back to
    the default, so a second Ctrl-C arriving there (the cleanup after the
    first one takes well under 0.1 s) would kill the process with SIGINT
    instead of letting it exit with its status."""
    if _installed:
        for sig in STOPPING:
            signal.signal(sig, signal.SIG_IGN)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _on_signal(signum, frame) -> None:
    global stopped_by, _pending
    if signum == signal.SIGHUP:
        _drop_terminal()
    if stopped_by is None:
        stopped_by = WHY.get(signum, signal.Signals(signum).name)
        if _holding:
            _pending = True         # raised when the held step is done
            return
        raise KeyboardInterrupt
    say(f"lab: {WHY.get(signum, signum)} again: still cleaning up after {stopped_by}, "
        "one moment")


def _drop_terminal() -> None:
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDWR)
        for fd in _terminals:
            os.dup2(null, fd)
        os.close(null)


def say(line: str) -> None:
    """A line on stderr that never raises (the terminal may be gone)."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def held(raise_after: bool = True):
    """Hold off the stopping signals while a step must finish whole (a
    detach, a folder and its manifest): the first one takes effect after
    it.  A flag, not only a signal mask: Python runs its handlers in the
    main thread whichever thread the kernel chose (tqdm and the probes have
    threads of their own that do not block anything).  raise_after=False
    leaves the stop to whoever looks at ``stopped_by`` next (the runner,
    before each run)."""
    global _holding, _pending
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOPPING))
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if not _holding and _pending:
            _pending = False
            if raise_after:
                raise KeyboardInterrupt
