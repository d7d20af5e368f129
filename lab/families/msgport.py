"""Family ``msgport``: system calls as messages with reply ports (seed 001)
and protected procedure calls (seed 004), on io_uring and its neighbours.

DragonFly sends a system call as a message to a kernel port and gets the
reply on a reply port that queues it silently, queues it and wakes (or
upcalls) the owner, or queues it and leaves everything to a ``flushsys()``
that user code calls when it leaves a critical section; signals and timers
are messages that stay live.  K42 calls across threads and processes with
synchronous and asynchronous protected procedure calls.  io_uring is the
closest thing Linux has, and this family measures it in those terms.

Reply ports (``port_*``): one thread sends ``batch`` messages (SQEs) with
one ``io_uring_enter()`` (sendsys) and collects the replies:

- ``port_poll``: reads the CQ ring, never enters to reap (the silent queue);
- ``port_wait``: ``waitsys()``, an ``io_uring_enter(GETEVENTS)`` per batch,
  even when the replies are there already;
- ``port_eventfd``: sleeps in ``read()`` on an eventfd the ring signals;
- ``port_deferred``: ``IORING_SETUP_DEFER_TASKRUN | SINGLE_ISSUER |
  TASKRUN_FLAG``: completions that come from outside the caller wait as task
  work, the kernel sets ``IORING_SQ_TASKRUN``, and the caller flushes with
  ``io_uring_get_events()`` when it leaves its critical section: flushsys();
- ``port_sync``: the same work as plain system calls.

Ops: ``nop``; ``read`` (a cached 4 KiB block of a 1 MiB file in the run's
scratch directory); ``pipe_write`` (8 bytes to a 1 MiB pipe the same thread
drains with plain ``read()`` s between samples, before it is half full:
counted as ``untimed_syscalls``, in the probes' window but in no sample);
``pipe_read`` (1 byte from an empty pipe, which the caller itself fills
with one ``write()`` of ``batch`` bytes after submitting: the replies that
are not ready at submission, poll-armed and completed by task work; the
write is timed and counted as ``source_syscalls``).  nop, read and
pipe_write complete inline, during the submitting enter, so their replies
are in the CQ ring when it returns (``ready_at_submit_fraction``) and
deferred mode needs no flush for them.

Live messages (``live_*``): a multishot timeout (count completions per SQE,
Linux 6.4) against a one-shot timeout re-armed after each completion
(lateness: the gap between completions seen minus the interval); a
multishot poll (``IORING_POLL_ADD_MULTI``) on an eventfd that a source
thread signals once per interval, against a one-shot poll re-armed each
time (latency: the source's stamp before its ``write()`` to the CQE seen;
the receiver reads the eventfd after each event in both, as a program
would read what became readable).

PPC (``ppc_*``): a client and a server (thread or forked process, same CPU
or ``peer_cpu``).  ``mode = sync``: a round trip per call.  ``mode =
async``: ``batch`` requests sent with one kernel entry (MSG_RING SQEs in one
enter; one futex wake or eventfd write after filling a shared queue; one
``write()`` of batch words), the server drains what has arrived and replies
to all of it at once, the client takes the replies: ns per call is the
batch's time / batch (one-way throughput = 1e9 / it).  Every request
carries a sequence number, the server echoes it, the client checks each
gets exactly one reply.  A server process is forked after set-up; for
MSG_RING its ring is made by the parent before the fork (the kernel refuses
io_uring fds in SCM_RIGHTS since 6.7, so it cannot be handed over later),
the parent keeps only a dup of its fd as the MSG_RING target, and the
client's ring is MADV_DONTFORK (the child gets its fd, not its memory).
msg_ring's rings are not SINGLE_ISSUER.  ``ppc_msg_ring_defer``: both rings
are ``IORING_SETUP_DEFER_TASKRUN | SINGLE_ISSUER``, each bound to the task
that waits on it, so a MSG_RING to it is posted as task work its owner runs
when it enters to wait or flush; a server process's ring is made by the
parent ``IORING_SETUP_R_DISABLED`` and enabled by the child
(``IORING_REGISTER_ENABLE_RINGS`` makes the enabling task the submitter,
io_uring/register.c), so the parent still holds its fd.  The child's tgid
is handed to the handshake, so the probes count both sides.

``ppc_sigio``: K42's asynchronous PPC enters the receiver "at a special
entry point" by raising a soft interrupt.  The server never waits for a
request: it spins in its own loop (``server_spins``), and the request pipe's
read end is ``O_ASYNC`` with ``F_SETSIG SIGUSR2`` and ``F_SETOWN_EX
F_OWNER_TID`` the server thread, so every ``write()`` of requests makes the
kernel signal it (a SIGUSR2 already pending absorbs the next: writes
coalesce), and the handler drains the pipe and replies on the reply pipe,
where the client parks as ``ppc_pipe``'s does.  ``server_signals``: handler
entries (``server_drains``: those that served a request,
``server_empty_signals``: the others); ``calls_per_signal``: requests per
entry;
``server_outside_requests``: requests the handler missed, served at the end
(0).  native/msgport_ppc.c says when the kernel raises the signal.

``receiver`` (msg_ring, msg_ring_defer, eventfd): how the server waits for
a request: ``park`` sleeps (``io_uring_enter(GETEVENTS, min_complete 1)``,
a blocking eventfd ``read()``), ``spin`` polls (the CQ tail; a
DEFER_TASKRUN ring's task work runs only in an enter, so there it spins on
``io_uring_get_events()``; a non-blocking eventfd ``read()`` loop).  The
client always parks.

K42's accounting ("the time spent servicing that call should count towards
the run-time of the caller"): every PPC run reads the client thread's and
the server's CPU clocks (``CLOCK_THREAD_CPUTIME_ID``; a server process's
process clock, read by the client with ``clock_getcpuclockid``) at the
window's two ends: ``client_cpu_ns_per_call`` and ``server_cpu_ns_per_call``
(divided by ``window_requests``) and ``server_cpu_fraction``, the share of
the call's CPU time Linux charged to the server.

``ppc_perf_bench_pipe`` runs ``perf bench sched pipe -l loops`` (``-T``:
two threads, else two processes) under ``taskset -c`` with our CPUs, one
sample per invocation: its usecs/op is the wall time from before the fork
(or pthread_create) to after the waitpid (join), divided by loops, where
one op is a round trip: one side writes an int to the first pipe and reads
the second, the other reads the first and writes the second, as
``ppc_pipe`` with mode=sync (which times each round trip alone, 8 bytes).
perf 6.1 cannot pin its two tasks apart: for cross_cpu both CPUs are
allowed and the scheduler places them (mostly on one CPU: see the probes'
migrations and wake-to-run), so only the same_cpu rows compare like with
like.

Reply ports that run code (``port_upcall``, ``port_critical``,
``port_timeout_upcall``): lab/families/_msgport_upcall.py says how.

The C side is native/msgport_port.c, msgport_live.c and msgport_ppc.c;
native/msgport.h declares the modes, ops, kinds, transports and counters
once, and this module reads their names from cffi.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from lab.families import _msgport_upcall
from lab.model import Family, Measurement, Metric, Param, RunContext, Variant
from lab.native import enum_values, struct_fields

NS_PER_MESSAGE = Metric("ns_per_message", "ns",
                        "one batch, first SQE prepared to last reply reaped, / batch "
                        "(sync: batch system calls / batch)")
LATENESS = Metric("lateness", "ns",
                  "gap since the previous completion was seen minus the interval (gaps under "
                  "it count 0: counter clamped)")
LATENCY = Metric("latency", "ns", "source thread's stamp before its eventfd write() to the "
                 "poll CQE seen")
NS_PER_CALL = Metric("ns_per_call", "ns",
                     "mode sync: one round trip, request sent to its reply seen; mode async: "
                     "a batch of calls, first send to last reply, / batch; perf bench: its "
                     "usecs/op (a round trip) of one invocation")


def _native():
    from lab import native
    return native.load()


_MODE = enum_values("enum msgport_mode", "MSGPORT_")
_OP = enum_values("enum msgport_op", "MSGPORT_OP_")
_LIVE_KIND = enum_values("enum msgport_live_kind", "MSGPORT_")
_TRANSPORT = enum_values("enum msgport_transport", "MSGPORT_PPC_")
_RECEIVER = enum_values("enum msgport_receiver", "MSGPORT_RECEIVER_")
RECEIVERS = tuple(_RECEIVER)
_DEFER_SOURCE = enum_values("enum msgport_defer_source", "MSGPORT_DEFER_")
MODES = tuple(_MODE)                # port_<mode>
OPS = tuple(_OP)
LIVE = tuple(_LIVE_KIND)            # the live variants' names
TRANSPORTS = tuple(_TRANSPORT)      # ppc_<transport>
MAX_BATCH = int(_native()[1].MSGPORT_MAX_BATCH)
PERF = "perf"
TASKSET = "taskset"

PARAMS = (
    Param("op", "nop", "",
          "ports: what each message does: nop = IORING_OP_NOP / getppid(); read = 4 KiB read "
          "of a cached block; pipe_write = 8 bytes to a pipe with room (drained between "
          "samples, untimed); pipe_read = 1 byte from an empty pipe the caller fills with one "
          "write() after submitting (replies not ready at submission)",
          choices=OPS),
    Param("batch", 1, "msgs/enter",
          "messages per submission: ports: SQEs per io_uring_enter() (sync: system calls per "
          "sample); ppc with mode=async: requests sent with one kernel entry (mode=sync: 1)",
          low=1, high=MAX_BATCH),
    Param("count", 8, "CQEs/SQE",
          "live multishot: completions one SQE delivers (the timeout's count; the poll is "
          "removed after count events)", low=1, high=4096),
    Param("interval_us", 100, "us",
          "live: the timeout's interval; the poll source's signalling period", low=20,
          high=1_000_000),
    Param("placement", "same_cpu", "",
          "live poll: the source thread, ppc: the server, on the suite's cpu or on peer_cpu",
          choices=("same_cpu", "cross_cpu")),
    Param("mode", "sync", "",
          "ppc: sync = round trips, one call at a time; async = one-way streams of batch "
          "calls the server drains", choices=("sync", "async")),
    Param("peer", "thread", "",
          "ppc: the server is a thread of the worker or a forked process (perf bench: -T or "
          "not)", choices=("thread", "process")),
    Param("receiver", "park", "",
          "ppc_msg_ring, ppc_msg_ring_defer, ppc_eventfd: park = the server sleeps until a "
          "request is there (io_uring_enter GETEVENTS / blocking eventfd read), spin = it "
          "polls (the CQ ring; defer: io_uring_get_events; non-blocking eventfd reads)",
          choices=RECEIVERS),
    Param("loops", 5000, "round trips",
          "ppc_perf_bench_pipe: perf bench sched pipe -l, round trips per invocation",
          low=100, high=10_000_000, axis=False),
    Param("invocations", 5, "runs",
          "ppc_perf_bench_pipe: invocations in the measured window, one sample each (one "
          "more, unrecorded, before it)", low=1, high=1000, axis=False),
    Param("samples", 2000, "samples",
          "recorded samples per run: ports: batches; live: completions; ppc: calls (sync) or "
          "batches (async)", low=10, high=1_000_000, axis=False),
    Param("warmup", 200, "samples", "unrecorded samples before the measured window", low=0,
          high=100_000, axis=False),
)

_PORT_COUNTS = struct_fields("struct msgport_port_counts")
_LIVE_COUNTS = struct_fields("struct msgport_live_counts")
_PPC_COUNTS = struct_fields("struct msgport_ppc_counts")
# the transports whose server can spin (enum msgport_receiver)
SPIN_RECEIVERS = ("ppc_msg_ring", "ppc_msg_ring_defer", "ppc_eventfd")
# counts that are ids, not counts: for the probes and tests only
_PPC_IDS = ("server_tgid", "server_tid", "client_tid")
_DEFER_REPORT = struct_fields("struct msgport_defer_report")


def _peer_cpu(p: dict[str, Any], cpu: int, peer_cpu: int) -> int:
    return peer_cpu if p.get("placement") == "cross_cpu" else cpu


# ---- which points can run --------------------------------------------------------

def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a point cannot run (the runner skips it with this reason), or None."""
    if variant in _msgport_upcall.MODES:
        return _msgport_upcall.point_problem(variant, p)
    if variant.startswith("ppc_") and variant != "ppc_perf_bench_pipe" \
            and p.get("mode") == "sync" and p.get("batch", 1) != 1:
        return (f"mode=sync makes one call at a time: batch={p['batch']} applies to "
                "mode=async only; use batch=1 (or a separate [[msgport]] table for async)")
    if variant == "ppc_sigio" and p.get("receiver", "park") != "park":
        return (f"receiver={p['receiver']} does not apply to ppc_sigio: its server never "
                "waits (it runs its own loop and the kernel's signal enters it); use "
                "receiver=park")
    if variant.startswith("ppc_") and p.get("receiver", "park") != "park" \
            and variant not in SPIN_RECEIVERS:
        return (f"receiver={p['receiver']} applies to {', '.join(SPIN_RECEIVERS)} only: "
                f"{variant}'s server always sleeps in its read(); use receiver=park")
    if variant == "ppc_perf_bench_pipe":
        if shutil.which(PERF) is None:
            return "perf is not installed (Debian: apt-get install linux-perf)"
        if shutil.which(TASKSET) is None:
            return "taskset is not installed (Debian: util-linux)"
    return None


def _check(variant: str, p: dict[str, Any]) -> None:
    problem = point_problem(variant, p)
    if problem:
        raise ValueError(problem)


# ---- reply ports -------------------------------------------------------------------

def run_port(mode: str, p: dict[str, Any], cpu: int, scratch_dir: str, handshake: Any = None):
    """Call msgport_port: (ns_per_message, counts dict).  handshake None:
    no runner (tests, notebooks)."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    out = np.zeros(p["samples"])
    counts = ffi.new("struct msgport_port_counts *")
    directory = ffi.new("char[]", scratch_dir.encode())
    check(lib.msgport_port(handshake, _MODE[mode], _OP[p["op"]], p["batch"],
                           directory, cpu, p["warmup"], p["samples"], double_ptr(ffi, out),
                           counts), f"msgport/port_{mode}")
    return out, {k: int(getattr(counts, k)) for k in _PORT_COUNTS}


def port_counters(mode: str, c: dict[str, int], batches: int) -> dict[str, float]:
    """The manifest's counters for a reply-port run: the window's totals and
    per-message rates; syscalls_per_message is the user-space count the
    probes' syscalls_per_op checks (plus the handshake's two)."""
    msgs = c["messages"]
    syscalls = c["submissions"] + c["reap_syscalls"] + c["source_syscalls"] + \
        c["untimed_syscalls"]
    counters = {k: float(c[k]) for k in ("submissions", "reap_syscalls", "source_syscalls",
                                         "untimed_syscalls", "taskrun_flagged",
                                         "bad_completions")}
    counters.update({
        "completions_per_submission": c["completions"] / max(1, c["submissions"]),
        "syscalls_per_message": syscalls / msgs,
        "reap_syscalls_per_message": c["reap_syscalls"] / msgs,
        "taskrun_flagged_per_batch": c["taskrun_flagged"] / batches,
        "ready_at_submit_fraction": (c["ready_at_submit"] / batches) if mode != "sync" else 0.0,
    })
    return counters


def _port_variant(mode: str):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.native import NativeError
        out, c = run_port(mode, p, ctx.cpu, ctx.scratch_dir, ctx.handshake)
        messages = p["samples"] * p["batch"]
        if c["messages"] != messages or c["completions"] != messages:
            raise NativeError(f"reply port did not run as built: {c['completions']} replies "
                              f"to {c['messages']} messages, {messages} expected")
        if mode == "poll" and c["reap_syscalls"]:
            raise NativeError(f"poll mode entered the kernel {c['reap_syscalls']} times to reap")
        # one operation is one message: syscalls_per_op is syscalls per message
        return Measurement({NS_PER_MESSAGE.name: out}, ops=messages,
                           counters=port_counters(mode, c, p["samples"]))

    return run


def defer_check(source: str, defer: bool, hold_us: int = 5000) -> dict[str, int]:
    """msgport_defer_check: does a completion that becomes ready while the
    caller stays out of io_uring reach the CQ before the flush?  source
    "pipe" (another thread writes the pipe a read waits on) or "timeout"."""
    from lab.native import check
    ffi, lib = _native()
    report = ffi.new("struct msgport_defer_report *")
    check(lib.msgport_defer_check(_DEFER_SOURCE[source], int(defer), hold_us, report),
          "msgport_defer_check")
    return {k: int(getattr(report, k)) for k in _DEFER_REPORT}


# ---- live messages -----------------------------------------------------------------

def run_live(kind: str, p: dict[str, Any], cpu: int, peer_cpu: int, handshake: Any = None):
    """Call msgport_live: (samples, counts dict)."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    out = np.zeros(p["samples"])
    counts = ffi.new("struct msgport_live_counts *")
    check(lib.msgport_live(handshake, _LIVE_KIND[kind], p.get("count", 1),
                           p["interval_us"] * 1000, cpu, _peer_cpu(p, cpu, peer_cpu),
                           p["warmup"], p["samples"], double_ptr(ffi, out), counts),
          f"msgport/{kind}")
    return out, {k: int(getattr(counts, k)) for k in _LIVE_COUNTS}


def live_mechanics(kind: str, p: dict[str, Any], c: dict[str, int]) -> str | None:
    """What must hold for a live-message run, else why not."""
    n = p["samples"]
    if c["completions"] != n:
        return f"{c['completions']} completions, {n} expected"
    multi = "multishot" in kind
    count = p.get("count", 1) if multi else 1
    requests = -(-n // count)
    if c["submissions"] != requests:
        return f"{c['submissions']} submissions for {n} completions of {count} each"
    if c["max_per_submission"] != min(count, n):
        return f"at most {c['max_per_submission']} completions per submission, {count} expected"
    # a multishot timeout's last CQE ends it (no F_MORE); a multishot poll
    # keeps F_MORE until removed; one-shot requests never set it
    more = {"live_multishot_timeout": n - requests, "live_multishot_poll": n}.get(kind, 0)
    if c["completions_more"] != more:
        return f"{c['completions_more']} CQEs with IORING_CQE_F_MORE, {more} expected"
    return None


def _live_variant(kind: str):
    metric = LATENESS if kind.endswith("timeout") else LATENCY

    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.native import NativeError
        out, c = run_live(kind, p, ctx.cpu, ctx.peer_cpu, ctx.handshake)
        wrong = live_mechanics(kind, p, c)
        if wrong:
            raise NativeError(f"live messages did not run as built: {wrong}")
        n = p["samples"]
        # max_per_submission goes to the manifest under a name that says
        # what it counts, beside completions_per_submission
        counters = {k: float(c[k]) for k in _LIVE_COUNTS if k != "max_per_submission"}
        counters["completions_per_submission"] = c["completions"] / c["submissions"]
        counters["max_completions_per_submission"] = float(c["max_per_submission"])
        if kind.endswith("timeout"):
            counters["drift_per_completion_ns"] = c["drift_ns"] / n
        else:
            del counters["drift_ns"], counters["clamped"]
        return Measurement({metric.name: out}, ops=n, counters=counters)

    return run


# ---- protected procedure calls -----------------------------------------------------

def run_ppc(transport: str, p: dict[str, Any], cpu: int, peer_cpu: int,
            handshake: Any = None):
    """Call msgport_ppc: (ns_per_call, counts dict)."""
    import errno

    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    out = np.zeros(p["samples"])
    counts = ffi.new("struct msgport_ppc_counts *")
    rc = lib.msgport_ppc(handshake, _TRANSPORT[transport], int(p["mode"] == "async"),
                         int(p["peer"] == "process"), _RECEIVER[p.get("receiver", "park")],
                         cpu, _peer_cpu(p, cpu, peer_cpu),
                         p["batch"], p["warmup"], p["samples"], double_ptr(ffi, out), counts)
    c = {k: int(getattr(counts, k)) for k in _PPC_COUNTS}
    if rc == -errno.EIO:
        bad = {k: c[k] for k in ("requests", "replies", "duplicate_replies", "missing_replies",
                                 "unexpected_replies", "server_requests")}
        check(rc, f"msgport/ppc_{transport}: the replies do not add up {bad}")
    check(rc, f"msgport/ppc_{transport}")
    return out, c


def _ppc_variant(transport: str):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        import numpy as np
        _check(f"ppc_{transport}", p)
        out, c = run_ppc(transport, p, ctx.cpu, ctx.peer_cpu, ctx.handshake)
        counters = {k: float(c[k]) for k in _PPC_COUNTS if k not in _PPC_IDS}
        counters["calls_per_drain"] = c["server_requests"] / max(1, c["server_drains"])
        if transport == "sigio":
            counters["calls_per_signal"] = c["server_requests"] / max(1, c["server_signals"])
        counters["calls_per_second"] = 1e9 / float(np.mean(out))
        counters.update(ppc_accounting(c))
        # the tids, so the probes' per-thread off-CPU time can be matched
        counters["client_tid"] = float(c["client_tid"])
        counters["server_tid"] = float(c["server_tid"])
        # one operation is one call (a request and its reply)
        return Measurement({NS_PER_CALL.name: out}, ops=c["window_requests"],
                           counters=counters)

    return run


def ppc_accounting(c: dict[str, int]) -> dict[str, float]:
    """K42's accounting of a PPC run from its clocks: CPU time per call
    charged to each side, the wall time per call over the same window, and
    the server's share of the call's CPU time."""
    calls = max(1, c["window_requests"])
    client, server = c["client_cpu_ns"], c["server_cpu_ns"]
    return {"client_cpu_ns_per_call": client / calls,
            "server_cpu_ns_per_call": server / calls,
            "wall_ns_per_call": c["wall_ns"] / calls,
            "server_cpu_fraction": server / (client + server) if client + server else 0.0}


_PERF_USECS = re.compile(r"^\s*([0-9.]+)\s+usecs/op\s*$", re.M)


def perf_bench_args(p: dict[str, Any], cpu: int, peer_cpu: int) -> list[str]:
    """perf bench sched pipe on our CPUs.  perf 6.1 has only -l and -T: it
    cannot pin its two tasks apart, so cross_cpu allows both CPUs and the
    kernel places them (the probes' wake-ups by CPU show where they ran)."""
    cpus = str(cpu) if p["placement"] == "same_cpu" else f"{cpu},{peer_cpu}"
    args = [shutil.which(TASKSET) or TASKSET, "-c", cpus, shutil.which(PERF) or PERF, "bench",
            "sched", "pipe", "-l", str(p["loops"])]
    return args + (["-T"] if p["peer"] == "thread" else [])


def parse_perf_bench(text: str) -> float:
    """usecs/op from perf bench's default output."""
    m = _PERF_USECS.search(text)
    if not m:
        raise ValueError("perf bench sched pipe printed no usecs/op line")
    return float(m.group(1))


def run_perf_bench(p: dict[str, Any], cpu: int, peer_cpu: int, handshake: Any = None):
    """perf bench sched pipe: one warm-up invocation, then `invocations`
    in the measured window: (ns per round trip per invocation, counters)."""
    import numpy as np

    from lab.native import NativeError, check, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    args = perf_bench_args(p, cpu, peer_cpu)
    # generous: a cross-CPU round trip on a halting VM is ~100 us
    timeout = 30 + p["loops"] * 1e-3

    def once() -> float:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or \
                [f"status {proc.returncode}"]
            raise NativeError(f"perf bench sched pipe failed: {last[0]}")
        try:
            return parse_perf_bench(proc.stdout)
        except ValueError as e:
            raise NativeError(str(e)) from None

    once()      # page cache, perf's start-up: outside the window
    # perf's processes are children of this worker: the probes follow them
    check(lib.lab_handshake_ready(handshake, ffi.NULL, 0), "handshake")
    usecs = [once() for _ in range(p["invocations"])]
    check(lib.lab_handshake_done(handshake), "handshake")
    out = np.asarray(usecs, dtype=np.float64) * 1000.0
    return out, {"cpus_allowed": 1.0 if p["placement"] == "same_cpu" else 2.0,
                 "round_trips_in_window": float(p["loops"] * p["invocations"])}


def _perf_bench(p: dict[str, Any], ctx: RunContext) -> Measurement:
    _check("ppc_perf_bench_pipe", p)
    out, counters = run_perf_bench(p, ctx.cpu, ctx.peer_cpu, ctx.handshake)
    # the window holds whole perf processes (exec, start-up, exit): the
    # probes' per-op numbers divide by every round trip in it
    return Measurement({NS_PER_CALL.name: out}, ops=p["loops"] * p["invocations"],
                       counters=counters)


# ---- the family --------------------------------------------------------------------

SIZES = ("samples", "warmup")
PORT = ("op", "batch") + SIZES
LIVE_TIMEOUT = ("interval_us",) + SIZES
LIVE_POLL = ("interval_us", "placement") + SIZES
PPC = ("mode", "peer", "placement", "batch") + SIZES
PPC_SPIN = PPC + ("receiver",)
NEEDS_URING = ("io_uring",)

FAMILY = Family(
    name="msgport",
    summary="system calls as messages with reply ports (poll, wait, eventfd, deferred "
            "flush), live multishot messages, and protected procedure calls between threads "
            "and processes",
    seeds="001 (DragonFly: sendsys/waitsys/flushsys, reply-port modes, live messages), "
          "004 (K42: synchronous and asynchronous protected procedure calls)",
    params=PARAMS + _msgport_upcall.PARAMS,
    reference="port_sync",
    check_point=point_problem,
    variants=(
        Variant("port_poll", "reply port polled: batch SQEs per io_uring_enter(), the CQ ring "
                "read from user space, no system call to reap",
                _port_variant("poll"), PORT, (NS_PER_MESSAGE,), requires=NEEDS_URING),
        Variant("port_wait", "waitsys(): io_uring_enter(GETEVENTS) for the batch's replies, "
                "always (even when they are there)",
                _port_variant("wait"), PORT, (NS_PER_MESSAGE,), requires=NEEDS_URING),
        Variant("port_eventfd", "queue and wake: sleep in read() on an eventfd registered "
                "with the ring, then reap the CQ ring",
                _port_variant("eventfd"), PORT, (NS_PER_MESSAGE,), requires=NEEDS_URING),
        Variant("port_deferred", "DEFER_TASKRUN ring: outside completions wait as task work "
                "(IORING_SQ_TASKRUN set) until io_uring_get_events(): flushsys()",
                _port_variant("deferred"), PORT, (NS_PER_MESSAGE,), requires=NEEDS_URING),
        Variant("port_sync", "the same work as plain system calls (getppid, pread, write, "
                "read)", _port_variant("sync"), PORT, (NS_PER_MESSAGE,)),
        Variant("live_multishot_timeout", "one IORING_TIMEOUT_MULTISHOT SQE delivers count "
                "CQEs (F_MORE on all but the last; Linux 6.4)",
                _live_variant("live_multishot_timeout"), ("count",) + LIVE_TIMEOUT,
                (LATENESS,), requires=NEEDS_URING),
        Variant("live_oneshot_timeout", "a one-shot timeout re-armed after every completion "
                "(re-arm and wait in one enter)",
                _live_variant("live_oneshot_timeout"), LIVE_TIMEOUT, (LATENESS,),
                requires=NEEDS_URING),
        Variant("live_multishot_poll", "one IORING_POLL_ADD_MULTI SQE on an eventfd a source "
                "thread signals: a CQE per event, removed after count",
                _live_variant("live_multishot_poll"), ("count",) + LIVE_POLL, (LATENCY,),
                requires=NEEDS_URING),
        Variant("live_oneshot_poll", "a one-shot poll re-armed after every event",
                _live_variant("live_oneshot_poll"), LIVE_POLL, (LATENCY,),
                requires=NEEDS_URING),
        Variant("ppc_msg_ring", "IORING_OP_MSG_RING from the client's ring to the server's "
                "and back; each side sends and waits in one io_uring_enter()",
                _ppc_variant("msg_ring"), PPC_SPIN, (NS_PER_CALL,), requires=NEEDS_URING),
        Variant("ppc_msg_ring_defer", "IORING_OP_MSG_RING to DEFER_TASKRUN | SINGLE_ISSUER "
                "rings: the message waits as task work until its owner enters to wait (park) "
                "or calls io_uring_get_events (spin)",
                _ppc_variant("msg_ring_defer"), PPC_SPIN, (NS_PER_CALL,),
                requires=NEEDS_URING),
        Variant("ppc_futex", "shared-memory queues, FUTEX_WAKE / FUTEX_WAIT doorbells",
                _ppc_variant("futex"), PPC, (NS_PER_CALL,)),
        Variant("ppc_eventfd", "shared-memory queues, eventfd doorbells (write / read)",
                _ppc_variant("eventfd"), PPC_SPIN, (NS_PER_CALL,)),
        Variant("ppc_pipe", "two pipes, sequence numbers in-band (what perf bench sched pipe "
                "times, 8-byte messages)", _ppc_variant("pipe"), PPC, (NS_PER_CALL,)),
        Variant("ppc_unix_socket", "a SOCK_STREAM unix socketpair, sequence numbers in-band",
                _ppc_variant("unix_socket"), PPC, (NS_PER_CALL,)),
        Variant("ppc_sigio", "K42's soft interrupt: the server spins in its own loop, a "
                "request written to its O_ASYNC pipe makes the kernel send it SIGUSR2 "
                "(F_SETSIG, F_OWNER_TID), the handler serves and replies on a pipe",
                _ppc_variant("sigio"), PPC, (NS_PER_CALL,)),
        Variant("ppc_perf_bench_pipe", "perf bench sched pipe -l loops (-T for threads), "
                "taskset to the same CPUs; cross_cpu lets the kernel place its two tasks on "
                "either CPU (perf cannot pin them apart)",
                _perf_bench, ("peer", "placement", "loops", "invocations"), (NS_PER_CALL,)),
    ) + _msgport_upcall.variants(NS_PER_MESSAGE, PORT, port_counters),
)
