"""``lab tune`` / ``lab tune --reset``: make this machine quieter for
measurement, and put back exactly what was there (pyperf's ``system tune``
and ``system reset``, for this lab's concerns).

The concerns, each one line in ``lab doctor`` (area ``tuning``) and a key
``tuning.<concern>`` in every manifest's environment fingerprint:

haltpoll
    Guest halt polling (Documentation/virt/guest-halt-polling.rst).  With
    guest_halt_poll_ns = 0 an idle vCPU halts at once, so every cross-CPU
    wake-up pays a VM exit and an IPI: on the Firecracker VM the lab was
    built on, ~10x a same-CPU one.  ``lab tune`` sets the kernel's own
    default window (200 us: longer than any of the lab's handoff gaps, short
    enough that an idle vCPU still halts) and guest_halt_poll_allow_shrink =
    N, so the per-CPU window, once grown to it, stays there between runs
    instead of shrinking back during the runner's pauses and being regrown
    (with misses) in each run's warm-up.  grow, grow_start and shrink keep
    their values: with shrinking off they only shape the first growth.
    The cost the document warns of: a polling vCPU burns host CPU.
cpu_dma_latency
    A PM QoS CPU latency request of 0 us on /dev/cpu_dma_latency, so no CPU
    enters an idle state slower to leave than that (C-states; on haltpoll,
    the halt itself).  The request lasts while a process keeps the device
    open with the value written: ``lab tune`` starts a small holder
    process (``lab-dma-latency``, in its own session) and ``--reset``
    ends it.
irq_affinity
    Device interrupts off the measured CPUs (``--cpus``, default the
    suites' default ``cpu``): every /proc/irq/N/smp_affinity_list and
    /proc/irq/default_smp_affinity (for IRQs set up later) onto the others.
    Some IRQs refuse to move (EIO: per-CPU or kernel-managed ones): they are
    recorded as refused and left where they are.
cpufreq
    The performance governor on every CPU with cpufreq; a VM usually has
    none, and then there is nothing to do.

Every change is saved (file, old contents, new contents) in the state
file, /run/upcall-lab/tune.json (root's, written atomically), *before* it
is made; ``--reset`` writes the old contents back and ends the hold.  A
stop (Ctrl-C, SIGTERM, SIGHUP) during ``lab tune`` restores what was done
so far; ``--reset`` finishes whole.  State file (JSON)::

    {"format": "upcall-lab tune state", "version": 1,
     "tuned_at": "2026-12-03T15:00:00+00:00", "cpus": [0],
     "changes": [{"concern": "haltpoll", "path": "/sys/...", "old": "0\\n",
                  "new": "200000"}, ...],
     "refused": [{"concern": "irq_affinity", "path": "/proc/irq/9/...",
                  "error": "EIO: Input/output error"}],
     "hold": {"pid": 1234, "start_time": 5678, "latency_us": 0} | null}
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.cpulist import format_cpulist, parse_cpulist
from lab.probes.tracefs import STATE_DIR

STATE_FILE = os.path.join(STATE_DIR, "tune.json")
STATE_FORMAT = "upcall-lab tune state"
STATE_VERSION = 1

HALTPOLL = "/sys/module/haltpoll/parameters"
# the kernel's default window (guest-halt-polling.rst) and no shrinking:
# see the module docstring for why
HALTPOLL_TARGET = {"guest_halt_poll_ns": "200000", "guest_halt_poll_allow_shrink": "N"}
DMA_LATENCY = "/dev/cpu_dma_latency"
LATENCY_US = 0
# the kernel's value when nobody asks (PM_QOS_CPU_LATENCY_DEFAULT_VALUE)
LATENCY_DEFAULT_US = 2_000_000_000
HOLDER_COMM = "lab-dma-latency"   # at most 15 bytes: the kernel cuts a comm there
IRQ_DIR = "/proc/irq"
IRQ_DEFAULT = os.path.join(IRQ_DIR, "default_smp_affinity")
CPU_DIR = "/sys/devices/system/cpu"
GOVERNOR = "performance"

CONCERNS = ("haltpoll", "cpu_dma_latency", "irq_affinity", "cpufreq")
# the only files a state file may name: what lab tune writes, nothing else
WRITABLE = (HALTPOLL + "/", IRQ_DIR + "/", CPU_DIR + "/")

RETRY = f"the saved state stays in {STATE_FILE}; fix that and run `lab tune --reset` again"


class TuneError(RuntimeError):
    """Bad input or a state file the lab cannot trust; the message says why."""


@dataclass
class Change:
    concern: str
    path: str
    old: str        # the file's contents as read, written back as they were
    new: str


@dataclass
class Plan:
    """What ``lab tune`` would do: the changes, the hold, and per concern a
    line saying what it does or why there is nothing to do."""
    cpus: list[int]
    changes: list[Change] = field(default_factory=list)
    hold_us: int | None = None
    notes: dict[str, str] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)     # concerns this machine lacks


# ---- reading the machine -------------------------------------------------------

def _raw(path: str) -> str | None:
    """A file's exact contents (restored byte for byte), or None."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return None


def online_cpus() -> list[int]:
    return parse_cpulist(_raw(f"{CPU_DIR}/online")) or list(range(os.cpu_count() or 1))


def parse_cpus(text: str) -> list[int]:
    """--cpus: a CPU list ("0", "0,2", "0-1") of online CPUs that leaves one
    for the interrupts, or TuneError."""
    parts = text.split(",")
    if not text or not all(p.strip().isdigit() or (p.count("-") == 1 and all(
            x.strip().isdigit() for x in p.split("-"))) for p in parts):
        raise TuneError(f"--cpus {text!r}: not a CPU list; give e.g. --cpus 0 or --cpus 0,2-3")
    cpus = parse_cpulist(text)
    online = online_cpus()
    missing = [c for c in cpus if c not in online]
    if missing:
        raise TuneError(f"--cpus {text}: CPU {format_cpulist(missing)} is not online "
                        f"(online: {format_cpulist(online)})")
    if not set(online) - set(cpus):
        raise TuneError(f"--cpus {text}: every online CPU ({format_cpulist(online)}) would be "
                        "measured, leaving none for the interrupts; measure fewer, e.g. --cpus 0")
    return cpus


def default_cpus() -> list[int]:
    from lab.suite import suite_setting
    return [int(suite_setting("cpu").default)]


def _irq_files() -> list[str]:
    try:
        names = sorted((n for n in os.listdir(IRQ_DIR) if n.isdigit()), key=int)
    except OSError:
        return []
    return [os.path.join(IRQ_DIR, n, "smp_affinity_list") for n in names
            if os.path.exists(os.path.join(IRQ_DIR, n, "smp_affinity_list"))]


def _mask(cpus: list[int]) -> str:
    return format(sum(1 << c for c in cpus), "x")


def _governor_files() -> list[str]:
    return [p for p in (f"{CPU_DIR}/cpu{c}/cpufreq/scaling_governor" for c in online_cpus())
            if os.path.exists(p)]


def plan(cpus: list[int]) -> Plan:
    """What lab tune would change here, read now (needs no root)."""
    result = Plan(cpus)

    def change(concern: str, path: str, new: str) -> None:
        old = _raw(path)
        if old is not None and old.strip() != new:
            result.changes.append(Change(concern, path, old, new))

    if os.path.isdir(HALTPOLL):
        for name, value in HALTPOLL_TARGET.items():
            change("haltpoll", os.path.join(HALTPOLL, name), value)
        result.notes["haltpoll"] = (f"guest halt polling: a {HALTPOLL_TARGET['guest_halt_poll_ns']}"
                                    " ns window that does not shrink back")
    else:
        result.notes["haltpoll"] = f"no {HALTPOLL} (not a haltpoll guest): nothing to do"
        result.absent.add("haltpoll")

    if os.path.exists(DMA_LATENCY):
        result.hold_us = LATENCY_US
        result.notes["cpu_dma_latency"] = (f"hold {DMA_LATENCY} at {LATENCY_US} us (a holder "
                                           f"process, {HOLDER_COMM}, until --reset)")
    else:
        result.notes["cpu_dma_latency"] = f"no {DMA_LATENCY}: nothing to do"
        result.absent.add("cpu_dma_latency")

    others = [c for c in online_cpus() if c not in cpus]
    irqs = _irq_files()
    for path in irqs:
        change("irq_affinity", path, format_cpulist(others))
    default = _raw(IRQ_DEFAULT)
    if default is not None and int(default.strip().replace(",", "") or "0", 16) != int(_mask(others), 16):
        result.changes.append(Change("irq_affinity", IRQ_DEFAULT, default, _mask(others)))
    result.notes["irq_affinity"] = (f"{len(irqs)} IRQs and the default for new ones off CPU "
                                    f"{format_cpulist(cpus)}, onto {format_cpulist(others)}")

    governors = _governor_files()
    for path in governors:
        change("cpufreq", path, GOVERNOR)
    result.notes["cpufreq"] = (f"the {GOVERNOR} governor on {len(governors)} CPUs" if governors
                               else "no cpufreq on this machine (usual in a VM): nothing to do")
    if not governors:
        result.absent.add("cpufreq")
    return result


# ---- the state file ------------------------------------------------------------

def _trusted_state_dir() -> str:
    from lab import lock
    try:
        return lock._state_dir()
    except lock.Busy as e:
        raise TuneError(str(e)) from None


def read_state() -> dict | None:
    """The saved tuning, or None; TuneError when the file is not one only
    root could have written, or not lab tune's."""
    from lab import lock
    if not os.path.lexists(STATE_FILE):
        return None
    fix = f"check what it names, then remove it as root (rm {STATE_FILE})"
    if not lock._root_dir_ok(STATE_DIR):
        raise TuneError(f"{STATE_DIR}: not a folder only root can write; {STATE_FILE} is not "
                        f"trusted: {fix}")
    try:
        fd = os.open(STATE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise TuneError(f"{STATE_FILE}: {e.strerror}: {fix}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise TuneError(f"{STATE_FILE}: not a regular file that only root can write: "
                            f"not trusted: {fix}")
        data = f.read(1 << 20)
    try:
        state = json.loads(data)
        _check_state(state)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise TuneError(f"{STATE_FILE}: not a state file lab tune wrote ({e}): {fix}") from None
    return state


def _check_state(state: dict) -> None:
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise ValueError(f"format {state.get('format')!r} version {state.get('version')!r}, "
                         f"expected {STATE_FORMAT!r} {STATE_VERSION}")
    for c in state["changes"]:
        Change(**c)
        path = c["path"]
        if (not isinstance(path, str) or os.path.normpath(path) != path
                or not path.startswith(WRITABLE)):
            raise ValueError(f"it names {path!r}, not a file lab tune writes")
    hold = state["hold"]
    if hold is not None and not all(isinstance(hold[k], int) for k in ("pid", "start_time")):
        raise ValueError("its hold has no pid and start time")


def _save(state: dict) -> None:
    from lab import store
    _trusted_state_dir()
    with store.atomic_output(STATE_FILE) as tmp, open(tmp, "wb") as f:
        os.fchmod(f.fileno(), 0o644)        # read_state refuses anything others can write
        f.write(json.dumps(state, indent=1).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())


def _write(path: str, text: str) -> None:
    """Write a /proc or /sys file in one write(2), never creating it."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


def _why(e: OSError) -> str:
    name = errno.errorcode.get(e.errno or 0, "error")
    return f"{name}: {e.strerror or e}"


# ---- the latency hold ----------------------------------------------------------

def _start_time(pid: int) -> int | None:
    """pid's start time (clock ticks since boot, /proc/PID/stat field 22):
    with the pid, what names one process across pid reuse.  None when pid
    is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def hold_alive(hold: dict | None) -> bool:
    return hold is not None and _start_time(hold["pid"]) == hold["start_time"]


def _start_hold(latency_us: int) -> dict:
    """Start the holder, detached in its own session; return its record
    once it holds the request, or raise OSError saying why it could not."""
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "lab.tune", "--hold", str(latency_us),
                                 str(write_end)], pass_fds=(write_end,), start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd="/")
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        answer = ready.read().decode(errors="replace")     # EOF once it holds, or died
    if answer != "ok":
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
        raise OSError(errno.EIO, answer or f"the holder exited with status {proc.poll()}")
    start = _start_time(proc.pid)
    if start is None:
        raise OSError(errno.ESRCH, "the holder ended as soon as it started")
    return {"pid": proc.pid, "start_time": start, "latency_us": latency_us}


def _stop_hold(hold: dict, say) -> None:
    """End the holder (the kernel drops its request with its last fd)."""
    if not hold_alive(hold):
        say(f"  the latency hold (pid {hold['pid']}) had already ended")
        return
    os.kill(hold["pid"], signal.SIGTERM)
    for _ in range(200):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(hold["pid"], os.WNOHANG)      # ours when tuned from this process
        if not hold_alive(hold):
            return
        time.sleep(0.01)
    say(f"  the latency holder (pid {hold['pid']}) did not end on SIGTERM: killed")
    os.kill(hold["pid"], signal.SIGKILL)


def _hold_main(latency_us: int, ready_fd: int) -> int:
    """The holder: open the device, write the value, say so, then wait for
    SIGTERM with the fd open."""
    from lab.worker import _set_comm
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # started inside signals.held(): the blocked mask came through exec
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    _set_comm(HOLDER_COMM)
    try:
        fd = os.open(DMA_LATENCY, os.O_RDWR | os.O_CLOEXEC)
        os.write(fd, struct.pack("i", latency_us))
    except OSError as e:
        os.write(ready_fd, f"{DMA_LATENCY}: {_why(e)}".encode())
        return 1
    os.write(ready_fd, b"ok")
    os.close(ready_fd)
    while True:
        signal.pause()


def current_latency_us() -> int | None:
    """The CPU latency limit in force (the kernel's aggregate of every
    request), or None when it cannot be read (root only)."""
    try:
        # opening adds a request at the default value, dropped at close
        with open(DMA_LATENCY, "rb") as f:
            return struct.unpack("i", f.read(4))[0]
    except (OSError, struct.error):
        return None


# ---- tune and reset ------------------------------------------------------------

def tune(work: Plan, say) -> dict:
    """Apply the plan, saving each change before making it; returns the
    state.  A stop in between restores what was done and re-raises."""
    from lab import signals
    from lab.store import now_iso
    state: dict[str, Any] = {"format": STATE_FORMAT, "version": STATE_VERSION,
                             "tuned_at": now_iso(), "cpus": work.cpus, "changes": [],
                             "refused": [], "hold": None}
    try:
        with signals.held():
            _save(state)
        for change in work.changes:
            with signals.held():
                state["changes"].append(asdict(change))
                _save(state)
                try:
                    _write(change.path, change.new)
                except OSError as e:
                    state["changes"].pop()
                    state["refused"].append({"concern": change.concern, "path": change.path,
                                             "error": _why(e)})
                    _save(state)
                    say(f"  skipped {change.path}: {_why(e)} (the kernel keeps it as it is)")
        if work.hold_us is not None:
            with signals.held():
                try:
                    state["hold"] = _start_hold(work.hold_us)
                except OSError as e:
                    state["refused"].append({"concern": "cpu_dma_latency", "path": DMA_LATENCY,
                                             "error": e.strerror or str(e)})
                    say(f"  no latency hold: {e.strerror or e}")
                _save(state)
    except KeyboardInterrupt:
        say("lab tune: stopped: putting back what was changed")
        with signals.held(raise_after=False):
            failed = reset(state, say)
        if failed:
            say(f"lab: error: tune: could not put back {'; '.join(failed)}; {RETRY}")
        raise
    return state


def reset(state: dict, say) -> list[str]:
    """Write every saved old value back and end the hold; returns the
    failures (each "path: why").  What could not be restored stays in the
    state file; with nothing left it is removed."""
    failed: list[str] = []
    remaining: list[dict] = []
    for change in reversed(state["changes"]):
        try:
            _write(change["path"], change["old"])
        except OSError as e:
            failed.append(f"{change['path']}: {_why(e)}")
            remaining.insert(0, change)
    if state["hold"] is not None:
        try:
            _stop_hold(state["hold"], say)
        except OSError as e:
            failed.append(f"holder pid {state['hold']['pid']}: {_why(e)}")
        else:
            state["hold"] = None
    if failed:
        _save({**state, "changes": remaining})
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(STATE_FILE)
    return failed


# ---- what doctor and the manifest say -----------------------------------------

def _status(key: str, value: str, status: str = "ok", note: str = "") -> dict[str, str]:
    """A fact of lab doctor's tuning area, as lab.environment.Fact's fields."""
    return {"key": key, "value": value, "status": status, "note": note}


def _latency_fact(state: dict | None, fix: str) -> dict[str, str]:
    limit = current_latency_us()
    if state and hold_alive(state["hold"]):
        return _status("tuning.cpu_dma_latency", f"held at {state['hold']['latency_us']} us",
                    note=f"by {HOLDER_COMM} (pid {state['hold']['pid']}) until "
                         "`lab tune --reset`")
    if limit is not None and limit < LATENCY_DEFAULT_US:
        return _status("tuning.cpu_dma_latency", f"held at {limit} us",
                    note="by a process other than lab tune")
    if limit is None:
        return _status("tuning.cpu_dma_latency", "unknown",
                    note=f"not root: the limit in force cannot be read from {DMA_LATENCY}")
    return _status("tuning.cpu_dma_latency", "untuned", status="warn",
                note=f"no CPU latency hold in force: {fix}")


def status() -> list[dict[str, str]]:
    """One fact per concern, for lab doctor's area "tuning": tuned, untuned
    (warn, with the fix) or nothing to tune.  Values hold no pids or times, so two runs'
    fingerprints differ only when the tuning did."""
    try:
        state = read_state()
        distrust = ""
    except TuneError as e:
        state, distrust = None, str(e)
    cpus = state["cpus"] if state else default_cpus()
    work = plan(cpus)
    fix = "`lab tune` (as root) sets it; `lab tune --dry-run` shows how"
    refused_paths = {r["path"] for r in (state or {}).get("refused", ())}
    facts = []
    for concern in CONCERNS:
        key = f"tuning.{concern}"
        if concern in work.absent:
            facts.append(_status(key, "nothing to tune", note=work.notes[concern]))
        elif concern == "cpu_dma_latency":
            facts.append(_latency_fact(state, fix))
        elif pending := [c for c in work.changes if c.concern == concern
                         and c.path not in refused_paths]:
            facts.append(_status(key, "untuned", status="warn",
                              note=f"{work.notes[concern]}: {len(pending)} setting(s) differ; "
                                   f"{fix}"))
        else:
            refused = [r for r in (state or {}).get("refused", ()) if r["concern"] == concern]
            facts.append(_status(key,
                              f"tuned, {len(refused)} refused" if refused else "tuned",
                              note=work.notes[concern] + (" (the kernel refused to move "
                                                          f"{len(refused)})" if refused else "")))
    facts.append(_status("tuning.cpus", format_cpulist(state["cpus"]) if state else "none",
                      note=("the CPUs lab tune measured for (IRQs kept off them)" if state else
                            distrust or "lab tune has not run since boot (or was reset)"),
                      status="warn" if distrust else "ok"))
    return facts


# ---- the command ---------------------------------------------------------------

def _print_plan(work: Plan) -> None:
    for concern in CONCERNS:
        print(f"{concern}: {work.notes[concern]}")
        changes = [c for c in work.changes if c.concern == concern]
        for c in changes:
            print(f"  {c.path}: {c.old.strip()} -> {c.new}")
        if concern == "cpu_dma_latency" and work.hold_us is not None:
            now = current_latency_us()
            print(f"  {DMA_LATENCY}: {'?' if now is None else now} us -> {work.hold_us} us")
        elif concern not in work.absent and not changes:
            print("  already as lab tune sets it")
    print(f"(measured CPUs: {format_cpulist(work.cpus)}; {len(work.changes)} file(s) to change)")


def _print_restore(state: dict) -> None:
    for c in state["changes"]:
        print(f"  {c['path']}: {c['new']} -> {c['old'].strip()}")
    if state["hold"]:
        alive = "" if hold_alive(state["hold"]) else " (already gone)"
        print(f"  end the latency hold, {HOLDER_COMM} pid {state['hold']['pid']}{alive}")


EXIT_BUSY = 75      # as lab run's: another measurement holds the machine


@contextlib.contextmanager
def _machine(error):
    """The machine lock for the time of the change (a tuning that changes
    under a measuring lab run perturbs it), or None when a run holds it."""
    from lab import lock
    try:
        slot = lock.machine("lab tune")
    except lock.Busy as e:
        error(f"tune: {e}")
        yield None
        return
    try:
        yield slot
    finally:
        slot.release()


def command(cpus_text: str | None, reset_: bool, dry_run: bool, say, error) -> int:
    """``lab tune``: 0 done, 1 not root or a failed reset, 2 bad input."""
    root = os.geteuid() == 0
    needs_root = ("needs root (it writes /proc and /sys and holds /dev/cpu_dma_latency); "
                  f"run it as root: sudo .venv/bin/lab tune{' --reset' if reset_ else ''}")
    try:
        state = read_state()
        if reset_:
            if cpus_text is not None:
                raise TuneError("--reset puts back what was saved: it takes no --cpus")
            if state is None:
                print(f"lab tune --reset: nothing to reset (no saved tuning in {STATE_FILE})")
                return 0
            print(f"lab tune --reset: {'would put' if dry_run or not root else 'putting'} back "
                  f"what lab tune changed at {state['tuned_at']}:")
            _print_restore(state)
            if dry_run:
                return 0
            if not root:
                error(f"tune --reset: {needs_root}")
                return 1
            from lab import signals
            with _machine(error) as slot:
                if slot is None:
                    return EXIT_BUSY
                with signals.held():
                    try:
                        failed = reset(state, say)
                    except OSError as e:    # restored, but the state could not be rewritten
                        failed = [f"{e.filename or STATE_FILE}: {_why(e)}"]
            if failed:
                error(f"tune --reset: could not restore {'; '.join(failed)}; {RETRY}")
                return 1
            print("restored: the machine is as it was before lab tune")
            return 0
        cpus = parse_cpus(cpus_text) if cpus_text is not None else default_cpus()
        if state is not None and not dry_run:
            raise TuneError(f"already tuned (at {state['tuned_at']}, state in {STATE_FILE}): "
                            "run `lab tune --reset` first to tune again")
    except TuneError as e:
        error(f"tune: {e}")
        return 2
    work = plan(cpus)
    if dry_run or not root:
        print("lab tune --dry-run: would change (nothing is changed):" if dry_run else
              "lab tune: would change:")
        _print_plan(work)
        if state is not None:
            print(f"(already tuned at {state['tuned_at']}: `lab tune --reset --dry-run` shows "
                  "what reset would put back)")
        if not root:
            error(f"tune: {needs_root}")
            return 1
        return 0
    _print_plan(work)
    with _machine(error) as slot:
        if slot is None:
            return EXIT_BUSY
        try:
            state = tune(work, say)
        except OSError as e:        # the state file could not be written (/run full...)
            error(f"tune: {e.filename or STATE_FILE}: {_why(e)}; what changed before is saved: "
                  "`lab tune --reset` puts it back")
            return 1
        except TuneError as e:      # /run/upcall-lab not root's: found before any change
            error(f"tune: {e}")
            return 2
    refused = f", {len(state['refused'])} refused (left as they were)" if state["refused"] else ""
    print(f"tuned: {len(state['changes'])} file(s) changed{refused}"
          f"{', latency hold pid ' + str(state['hold']['pid']) if state['hold'] else ''}; "
          f"saved in {STATE_FILE}; `lab tune --reset` puts them back")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hold"]:
        sys.exit(_hold_main(int(sys.argv[2]), int(sys.argv[3])))
    sys.exit("usage: python -m lab.tune --hold LATENCY_US READY_FD (lab tune starts it)")
