"""Part of family ``msgport``: reply ports that run code (issue 15, item 3;
seed 001: DragonFly's upcall port).

DragonFly's reply port can, instead of queueing a reply silently or waking
its owner, run a function of the owner's: an upcall.  Linux has no such
port; this part builds one from a raw tracepoint program and a signal
(native/msgport_upcall.c).  The reply-port program (lab/families/
msgport_upcall_bpf.c, a raw tracepoint on ``io_uring:io_uring_complete``,
6.18's arguments ``ctx, req, cqe``) looks at every completion; for one of this run's (its
``user_data`` carries the run's 16-bit tag) it calls
``bpf_send_signal_thread(SIGUSR1)``, which signals ``current``: for these
replies the submitting thread -- inline completions run in its
``io_uring_enter()``, pipe_read's poll-armed reads as task work the pipe's
wake-up queues for it (a completion seen in another task counts in
``foreign_completions``, never signalled; it must be 0).  The thread's
SIGUSR1 handler (sigaction, SA_RESTART, restored on every way out) is the
port function: it reaps the CQ ring, checks and counts.  The program sends
one signal per handler run (a ``raised`` word it sets and the handler
clears before it reaps), so ``signals_sent`` = ``signals_handled``.  A
raw tracepoint program runs with preemption off, so bpf_send_signal_thread()
does not signal there: it queues an irq_work (one self-interrupt per signal,
IWI in /proc/interrupts; a VM exit on this Firecracker guest) whose handler
sends it; the thread takes it on the same way back to user space.

- ``port_upcall``: the thread submits and spins until the port function
  has reaped the batch: it never waits and never reaps itself.
- ``port_critical``: the thread marks itself inside a critical section (a
  word of the program's BPF_F_MMAPABLE array, mmap'ed) around its
  submission; while it is set the program sets ``pending`` instead of
  signalling (``deferred_replies``), and the thread, leaving, flushes
  (reaps) if pending is set (``flushed_replies``).  pipe_read's replies
  come after it left (the pipe's write() is outside): upcalls.  The
  handler counts ``critical_violations`` if it runs while the word is set.
- ``port_timeout_upcall``: passive (the program never signals): after
  submitting, the thread arms a one-shot POSIX timer (CLOCK_MONOTONIC,
  SIGEV_THREAD_ID to itself, SIGUSR1) for ``timeout_us``, works
  ``flush_after_us``, disarms it and flushes; a timer that fires first
  makes the handler the upcall (``timeouts_fired``, else
  ``flushed_in_time``).  flush_after_us > timeout_us: every batch is an
  upcall; its ns_per_message holds flush_after_us / batch of work.

Metrics as the other reply ports: ``ns_per_message`` (one batch, first SQE
prepared to last reply reaped, / batch); counters the ports' own plus
``replies_per_signal`` and the part's counts, declared once in
native/msgport_upcall.h (``MSGPORT_UPCALL_COUNTERS``).  The program is
compiled once per suite run by the runner (lab.programs, "reply_port"; in
the worker without one), attached by BPF_RAW_TRACEPOINT_OPEN for the run
and detached on every way out.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from typing import Any, Callable

from lab import programs
from lab.model import Measurement, Metric, Param, RunContext, Variant
from lab.native import enum_values, struct_fields


def _native():
    from lab import native
    return native.load()


_MODE = enum_values("enum msgport_upcall_mode", "MSGPORT_")
_OP = enum_values("enum msgport_op", "MSGPORT_OP_")
_PORT_COUNTS = struct_fields("struct msgport_port_counts")
MODES = {"port_upcall": "upcall", "port_critical": "critical",
         "port_timeout_upcall": "timeout_upcall"}
COUNTERS = struct_fields("struct msgport_upcall_counts")
HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "native", "msgport_upcall.h")
TRACEPOINT = "io_uring_complete"
FUNCTION = "lab_mp_complete"
MAP = "lab_mp_port"

PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "msgport_upcall_bpf.c")
MARKER = "/* SHARED_STRUCT */"

PARAMS = (
    Param("timeout_us", 50, "us",
          "port_timeout_upcall: the POSIX timer armed at submission; when it fires before the "
          "thread flushed, its SIGUSR1 handler is the upcall", low=1, high=1_000_000),
    Param("flush_after_us", 0, "us",
          "port_timeout_upcall: how long the thread works after submitting before it flushes "
          "(> timeout_us: every batch an upcall)", low=0, high=1_000_000),
)


def program_text() -> str:
    """The program (lab/families/msgport_upcall_bpf.c) with native/
    msgport_upcall.h's shared struct in place of its marker (the one
    declaration of the word the program and the thread share)."""
    with open(HEADER) as f:
        m = re.search(r"^struct msgport_upcall_shared \{.*?^\};", f.read(), re.S | re.M)
    if m is None:
        raise ValueError(f"{HEADER}: struct msgport_upcall_shared not found")
    with open(PROGRAM) as f:
        source = f.read()
    if source.count(MARKER) != 1:
        raise ValueError(f"{PROGRAM} must hold {MARKER} once")
    return f"#define LAB_SIGUSR1 {int(signal.SIGUSR1)}\n" + source.replace(MARKER, m.group(0))


def load_for_suite(stack: contextlib.ExitStack) -> tuple[dict[str, int], dict[str, int], Any]:
    """The program compiled and loaded (lab.programs: once per suite run,
    or per run without a runner), unloaded when stack closes: (its
    function's fd, its array's fd, bcc module)."""
    import bcc

    from lab import probes
    bpf = stack.enter_context(probes.bpf_program(program_text(), "the reply-port program"))
    return ({FUNCTION: bpf.load_func(FUNCTION.encode(), bcc.BPF.RAW_TRACEPOINT).fd},
            {MAP: bpf[MAP.encode()].map_fd}, bpf)


@contextlib.contextmanager
def port_program():
    """The reply-port program attached to io_uring_complete for one run
    (the runner's, handed over, or compiled here): yields its array's fd,
    which native/msgport_upcall.c clears before it uses it; detached (its
    link closed) and, if compiled here, unloaded on every way out."""
    from lab import probes, programs, signals
    from lab.native import NativeError, check
    _, lib = _native()
    with contextlib.ExitStack() as stack:
        loaded = programs.handed("reply_port")
        if loaded is None:
            try:
                progs, maps, _ = load_for_suite(stack)
            except probes.ProbeError as e:
                raise NativeError(f"reply-port program: {e}") from None
            loaded = {"progs": progs, "maps": maps}
        link = check(lib.upcall_attach(loaded["progs"][FUNCTION], TRACEPOINT.encode()),
                     f"reply-port program: attaching {FUNCTION} to {TRACEPOINT}")
        try:
            yield loaded["maps"][MAP]
        finally:
            with signals.held():        # closing the link detaches it
                os.close(link)


def run_upcall_port(variant: str, p: dict[str, Any], cpu: int, scratch_dir: str,
                    map_fd: int, handshake: Any = None):
    """Call msgport_upcall: (ns_per_message, port counts, part counts)."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    out = np.zeros(p["samples"])
    port = ffi.new("struct msgport_port_counts *")
    counts = ffi.new("struct msgport_upcall_counts *")
    cfg = ffi.new("struct msgport_upcall_config *", {
        "mode": _MODE[MODES[variant]], "op": _OP[p["op"]], "batch": p["batch"], "cpu": cpu,
        "map_fd": map_fd, "timeout_us": p.get("timeout_us", 0),
        "flush_after_us": p.get("flush_after_us", 0), "warmup": p["warmup"],
        "nr_samples": p["samples"]})
    directory = ffi.new("char[]", scratch_dir.encode())
    check(lib.msgport_upcall(handshake, cfg, directory, double_ptr(ffi, out), port, counts),
          f"msgport/{variant}")
    return (out, {k: int(getattr(port, k)) for k in _PORT_COUNTS},
            {k: int(getattr(counts, k)) for k in COUNTERS})


def sigusr1_disposition() -> tuple[int, int]:
    """SIGUSR1's sigaction now, (handler address, sa_flags): the tests'
    before-and-after check."""
    from lab.native import check
    ffi, lib = _native()
    handler, flags = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    check(lib.msgport_upcall_sigaction(handler, flags), "sigaction(SIGUSR1)")
    return int(handler[0]), int(flags[0])


def mechanics(variant: str, p: dict[str, Any], c: dict[str, int]) -> str | None:
    """What must hold for a run of the part, else why not."""
    n = p["samples"] * p["batch"]
    for k in ("foreign_completions", "send_errors", "stray_signals", "critical_violations",
              "empty_signals"):
        if c[k]:
            return f"{k} = {c[k]} (must be 0)"
    if c["completions_seen"] != n:
        return f"the program saw {c['completions_seen']} replies, {n} expected"
    if variant != "port_timeout_upcall" and c["signals_sent"] != c["signals_handled"]:
        return f"{c['signals_sent']} signals sent, {c['signals_handled']} handled"
    if variant == "port_critical" and c["deferred_replies"] != c["flushed_replies"]:
        return (f"{c['deferred_replies']} replies came inside the critical section, "
                f"{c['flushed_replies']} flushed")
    if variant == "port_timeout_upcall":
        if c["signals_sent"]:
            return f"the passive port was signalled {c['signals_sent']} times"
        if c["timeouts_fired"] + c["flushed_in_time"] != p["samples"]:
            return (f"{c['timeouts_fired']} upcalls + {c['flushed_in_time']} flushes for "
                    f"{p['samples']} batches")
        if c["timeouts_fired"] != c["signals_handled"]:
            return f"{c['timeouts_fired']} timeouts, {c['signals_handled']} handler runs"
    flushed = c["flushed_replies"] if variant == "port_critical" else 0
    if variant != "port_timeout_upcall" and c["handler_replies"] + flushed != n:
        return f"{c['handler_replies']} + {flushed} replies reaped, {n} expected"
    return None


def _variant(variant: str, ns_per_message: Metric, port_counters: Callable):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.native import NativeError
        with port_program() as map_fd:
            out, port, c = run_upcall_port(variant, p, ctx.cpu, ctx.scratch_dir, map_fd,
                                           ctx.handshake)
        messages = p["samples"] * p["batch"]
        if port["messages"] != messages or port["completions"] != messages:
            raise NativeError(f"reply port did not run as built: {port['completions']} "
                              f"replies to {port['messages']} messages, {messages} expected")
        problem = mechanics(variant, p, c)
        if problem:
            raise NativeError(f"msgport/{variant}: {problem}")
        counters = port_counters("upcall", port, p["samples"])
        counters.update({k: float(v) for k, v in c.items()})
        counters["replies_per_signal"] = c["handler_replies"] / max(1, c["signals_handled"])
        # 1: the runner compiled the program for the suite (lab.programs)
        counters["program_from_runner"] = float(programs.handed("reply_port") is not None)
        return Measurement({ns_per_message.name: out}, ops=messages, counters=counters)

    return run


def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a point of the part cannot run, or None."""
    if variant == "port_timeout_upcall" and p.get("timeout_us", 1) < 1:
        return "port_timeout_upcall needs timeout_us >= 1"
    return None


def variants(ns_per_message: Metric, port: tuple[str, ...],
             port_counters: Callable) -> tuple[Variant, ...]:
    """The part's variants, with the family's port metric, parameters and
    counters (lab.families.msgport: NS_PER_MESSAGE, PORT, port_counters)."""
    needs = ("io_uring", "bpf")

    def variant(name: str, what: str, params: tuple[str, ...]) -> Variant:
        return Variant(name, what, _variant(name, ns_per_message, port_counters), params,
                       (ns_per_message,), requires=needs,
                       loads_program=programs.always("reply_port"))

    return (
        variant("port_upcall", "upcall port: a raw tracepoint on io_uring_complete signals "
                "the submitter (bpf_send_signal_thread); its SIGUSR1 handler reaps the CQ "
                "ring", port),
        variant("port_critical", "upcall port with a critical section: inside it the "
                "program sets pending instead of signalling; leaving, the thread flushes",
                port),
        variant("port_timeout_upcall", "passive port that turns into an upcall: a POSIX "
                "timer (timeout_us) signals the thread unless it flushed after "
                "flush_after_us", ("timeout_us", "flush_after_us") + port),
    )
