"""Part of family ``upcall``: page faults delivered to a user-level handler
by userfaultfd (issue 15, item 1; seeds 000 and 002).

The seeds put the page fault beside the blocking call as the event an
upcall reports ("every time a kernel thread blocks on I/O or suffers a
page fault, the kernel activates the user level thread scheduler").
Linux's one true user-level page-fault handling is userfaultfd: a fault
in a registered range becomes a message a handler thread reads from the
userfaultfd, and the faulting thread sleeps in the kernel until the
handler resolves it by ioctl (native/upcall_fault.c).  The other route,
a major fault on a file page seen as a block upcall, is the family's
``block_kind = "fault"``.

**The variants.**

- ``uffd_copy``: missing-page faults on an anonymous private mapping
  (UFFDIO_REGISTER_MODE_MISSING), resolved with UFFDIO_COPY of a page the
  handler filled.
- ``uffd_continue``: minor faults (UFFD_FEATURE_MINOR_SHMEM, Linux 5.14):
  a memfd mapped twice MAP_SHARED; the handler writes the page through its
  own, unregistered alias (so it is in the page cache), the faulting
  mapping is registered UFFDIO_REGISTER_MODE_MINOR and each fault is
  resolved with UFFDIO_CONTINUE, which only maps the page: the cheapest
  resolution there is (what QEMU's postcopy live migration uses).

One sample is one fault: the faulting thread (the suite's cpu) stamps
t_fault and reads a word of the page; the handler (``placement``:
``same_cpu`` on that cpu, ``cross_cpu`` on peer_cpu) waits in poll()
(``handler = "sleep"``) or spins on read() returning EAGAIN (``"poll"``),
stamps t_msg when the message (UFFD_EVENT_PAGEFAULT of that page) is
read, resolves, stamps t_resolved; the faulting thread stamps t_resumed
when its read returns and checks every word of the page (the pattern of
the run's ``seed`` and the sample's number), then unmaps the page again
(MADV_DONTNEED) for a later fault.  The userfaultfd is opened with
UFFD_USER_MODE_ONLY (5.11; without it on an older kernel).

**Series**: ``latency`` (headline, t_msg - t_fault: the upcall),
``resolve`` (t_resolved - t_msg: the ioctl), ``resume`` (t_resumed -
t_resolved: the faulting thread running again; 0 when it ran before the
handler's stamp -- same_cpu, the woken thread preempting the handler on
the ioctl's way out -- counted in ``clamped``), ``total`` (t_resumed -
t_fault).  **Counters** (struct upcall_fault_counts): ``faults`` (touches
that faulted: the thread's RUSAGE_THREAD fault count moved), ``messages``,
``resolved``, ``eexist`` (a page resolved twice), ``bad_data``,
``bad_msgs``, ``majflt`` / ``minflt`` (the faulting thread's; a
userfaultfd fault is a minor one), ``spun_reads`` (poll handler: reads
that said EAGAIN), ``user_mode_only``, ``features`` (what UFFDIO_API
granted).  Each run checks faults = messages = resolved = samples and
eexist = bad_data = bad_msgs = 0.
"""

from __future__ import annotations

import errno
import functools
from typing import Any

from lab.model import Measurement, Metric, Param, RunContext, Variant
from lab.native import enum_values, struct_fields


def _native():
    from lab import native
    return native.load()


# declared in native/upcall_fault.h
FAULT_VARIANTS = enum_values("enum upcall_fault_variant", "UPCALL_FAULT_")
HANDLERS = enum_values("enum upcall_fault_handler", "UPCALL_FAULT_")
SERIES = enum_values("enum upcall_fault_series", "UPCALL_FAULT_SERIES_")
COUNTS = tuple(name for name in struct_fields("struct upcall_fault_counts")
               if name != "faulting_tid")

_SERIES_HELP = {
    "latency": "userfaultfd: the handler's stamp on reading the fault's message minus the "
               "faulting thread's stamp before its touch: the page-fault upcall",
    "resolve": "... the handler's stamp after its UFFDIO_COPY / UFFDIO_CONTINUE minus its "
               "stamp on the message",
    "resume": "... the faulting thread's stamp after its touch returned minus the handler's "
              "after the ioctl (0 when it ran first: counted in clamped)",
    "total": "... the faulting thread's stamps around its touch: the fault as it saw it",
}
METRICS = tuple(Metric(name, "ns", _SERIES_HELP[name]) for name in SERIES)

PARAMS = (
    Param("handler", "sleep", "",
          "uffd variants: the handler sleeps in poll() on the userfaultfd, or polls it "
          "(read() spinning on EAGAIN)", choices=tuple(HANDLERS)),
    Param("seed", 1, "", "uffd variants: the pages' content (every word: a pattern of the "
          "seed and the sample's number, checked by the faulting thread)", low=0, high=2**31),
)

_MISSING = {
    "uffd_copy": "UFFDIO_REGISTER_MODE_MISSING / UFFDIO_COPY on anonymous memory",
    "uffd_continue": "UFFD_FEATURE_MINOR_SHMEM, UFFDIO_REGISTER_MODE_MINOR and "
                     "UFFDIO_CONTINUE on a memfd (Linux 5.14, an architecture with "
                     "CONFIG_HAVE_ARCH_USERFAULTFD_MINOR)",
}


def unavailable(variant: str, rc: int) -> str | None:
    """What an upcall_fault_probe/run return says is missing, or None."""
    if rc == -errno.EOPNOTSUPP:
        return f"{variant}: this kernel's userfaultfd lacks {_MISSING[variant]}"
    if rc == -errno.ENOSYS:
        return f"{variant}: no userfaultfd system call (a kernel without CONFIG_USERFAULTFD)"
    if rc == -errno.EPERM:
        return (f"{variant}: userfaultfd refused (vm.unprivileged_userfaultfd=0 without "
                "CAP_SYS_PTRACE, or a seccomp / LSM policy): run as root")
    return None


@functools.lru_cache(maxsize=None)
def _probe(variant: str) -> int:
    return int(_native()[1].upcall_fault_probe(FAULT_VARIANTS[variant]))


def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a point of one of this part's variants cannot run, or None."""
    return unavailable(variant, _probe(variant))


def run_faults(variant: str, p: dict[str, Any], cpu: int, handler_cpu: int,
               handshake: Any = None, extra_features: int = 0):
    """Call upcall_fault_run: (series dict of SERIES names, counts dict).
    handshake None: no runner (tests, notebooks); extra_features: UFFDIO_API
    features asked for beyond the variant's (tests)."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    n = p["samples"]
    rows = np.zeros((len(SERIES), n))
    cfg = ffi.new("struct upcall_fault_config *", {
        "variant": FAULT_VARIANTS[variant], "handler": HANDLERS[p["handler"]], "cpu": cpu,
        "handler_cpu": handler_cpu, "seed": p["seed"], "warmup": p["warmup"],
        "nr_samples": n, "extra_features": extra_features})
    counts = ffi.new("struct upcall_fault_counts *")
    rc = lib.upcall_fault_run(handshake, cfg, double_ptr(ffi, rows), counts)
    missing = unavailable(variant, rc)
    if missing:
        raise ValueError(f"{missing} (UFFDIO_API granted features {counts.features:#x})")
    check(rc, f"upcall/{variant}")
    c = {k: int(getattr(counts, k)) for k in struct_fields("struct upcall_fault_counts")}
    return {name: rows[row] for name, row in SERIES.items()}, c


def expected_mechanics(p: dict[str, Any], c: dict[str, int]) -> str | None:
    """What must hold for a userfaultfd run to mean anything, else why not."""
    n = p["samples"]
    for name in ("faults", "messages", "resolved"):
        if c[name] != n:
            return f"{c[name]} {name} for {n} faults: one message and one resolution each"
    for name in ("eexist", "bad_data", "bad_msgs"):
        if c[name]:
            return f"{name} = {c[name]} (must be 0: every page resolved once, with its data)"
    return None


def _variant(variant: str):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.native import NativeError
        problem = point_problem(variant, p)
        if problem:
            raise ValueError(problem)
        handler_cpu = ctx.peer_cpu if p["placement"] == "cross_cpu" else ctx.cpu
        series, c = run_faults(variant, p, ctx.cpu, handler_cpu, ctx.handshake)
        wrong = expected_mechanics(p, c)
        if wrong:
            raise NativeError(f"userfaultfd faults did not run as built: {wrong}")
        counters = {k: float(c[k]) for k in COUNTS}
        counters["spun_reads_per_fault"] = c["spun_reads"] / p["samples"]
        return Measurement(series, ops=p["samples"], counters=counters)

    return run


_HELP = {
    "uffd_copy": "userfaultfd: missing-page faults on anonymous memory, the handler resolves "
                 "each with UFFDIO_COPY (seed 002's page-fault upcall, handled in user space)",
    "uffd_continue": "userfaultfd: minor faults on a memfd whose page cache the handler "
                     "filled through its own alias, resolved with UFFDIO_CONTINUE",
}
USES = ("placement", "handler", "seed", "samples", "warmup")

VARIANTS: tuple[Variant, ...] = tuple(
    Variant(name, _HELP[name], _variant(name), USES, METRICS) for name in FAULT_VARIANTS)
