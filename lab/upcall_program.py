"""The upcall program: lab/families/upcall_bpf.c, raw tracepoints that
tell a user-level scheduler that one of its threads blocked or woke (a
BPF ring buffer record or an mmap'ed flag), with the anatomy's stage
stamps.  Two families load it: ``upcall`` (the upcall's latency) and
``activations`` (its runtime hands a blocked activation's VP to a spare).

The runner compiles it once per suite run (lab.programs) and hands each
worker that needs it the programs' and maps' fds; a worker without a
runner compiles it itself (upcall_program).  Which runs need it, each
family says (lab.model.Variant.loads_program).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = os.path.join(HERE, "families", "upcall_bpf.c")
# the shared memory's layout, included by the program and by native/upcall.c
HEADER = os.path.join(os.path.dirname(HERE), "native", "upcall_abi.h")
RING_PAGES = 16                 # the ring's data area: 64 KiB


def _native():
    from lab import native
    return native.load()


BLOCK_FN = ("lab_upcall_block", "sched_switch")
WAKE_FN = ("lab_upcall_wake", "sched_waking")
# preemption upcalls: the involuntary switches out of registered threads
# and their switches back in (event "preempt", or preempt=True beside blocks)
PREEMPT_FN = ("lab_upcall_preempt", "sched_switch")
# the kernel's rseq aborts of registered threads, counted in their slots
# (rseq=True: the runtime's abort handler's count is held against it)
RSEQ_FIXUP_FN = ("lab_upcall_rseq_fixup", "rseq_ip_fixup")
# the anatomy: the stage stamps of the upcall in flight (anatomy = true)
ANATOMY_FNS = (("lab_upcall_a_switch", "sched_switch"), ("lab_upcall_a_waking", "sched_waking"),
               ("lab_upcall_a_ipi", "ipi_send_cpu"), ("lab_upcall_a_ipi_mask", "ipi_send_cpumask"),
               ("lab_upcall_a_irq_work", "irq_work_entry"))
FUNCTIONS = (BLOCK_FN, WAKE_FN, PREEMPT_FN, RSEQ_FIXUP_FN) + ANATOMY_FNS


def maps_of(bpf: Any) -> dict[str, int]:
    """The compiled program's maps' fds as struct upcall_maps holds them:
    its field <name>_fd is the program's map lab_upcall_<name>."""
    from lab.native import struct_fields
    return {field: bpf["lab_upcall_" + field.removesuffix("_fd")].map_fd
            for field in struct_fields("struct upcall_maps")}


def program_text(ring_pages: int = RING_PAGES) -> str:
    """lab/families/upcall_bpf.c with its ring size (pages, a power of 2)
    and native/upcall_abi.h's text in place of its #include: the text is
    all bcc compiles, so it changes whenever the shared header does.
    lab.probes.compile_program
    gives it the running kernel's field offsets (LAB_OFF_<struct>_<field>,
    lab.probes.btf)."""
    if ring_pages < 1 or ring_pages & (ring_pages - 1):
        raise ValueError(f"ring_pages must be a power of 2, got {ring_pages}")
    with open(PROGRAM) as f:
        source = f.read()
    include = f'#include "{os.path.basename(HEADER)}"\n'
    if source.count(include) != 1:
        raise ValueError(f"{PROGRAM} must include {os.path.basename(HEADER)} once")
    with open(HEADER) as f:
        header = f.read()
    return f"#define LAB_UPCALL_RING_PAGES {ring_pages}\n" + source.replace(include, header)


def load_functions(bpf: Any) -> dict[str, int]:
    """Load every function of the compiled program as a raw tracepoint
    program (bcc keeps them and closes them in cleanup()): name -> fd."""
    import bcc
    return {name: bpf.load_func(name.encode(), bcc.BPF.RAW_TRACEPOINT).fd
            for name, _ in FUNCTIONS}


class Program:
    """The upcall program as one run uses it: its functions' fds, its maps'
    fds, and (loaded in this process) the bcc module, whose tables the
    tests read: ``program["lab_upcall_vps"]``."""

    def __init__(self, progs: dict[str, int], maps: dict[str, int], bpf: Any = None):
        self.progs, self.maps, self.bpf = progs, maps, bpf
        self.attached: list[str] = []       # functions attached for this run

    def __getitem__(self, table: str) -> Any:
        if self.bpf is None:
            raise KeyError(f"{table}: the program was loaded by the runner; its tables are "
                           "reached through their fds (Program.maps)")
        return self.bpf[table]


def load_for_suite(stack: contextlib.ExitStack) -> tuple[dict[str, int], dict[str, int], Any]:
    """The program compiled and loaded for a suite run (lab.programs),
    unloaded when stack closes: (functions' fds, maps' fds, bcc module)."""
    from lab import probes
    bpf = stack.enter_context(probes.bpf_program(program_text(), "the upcall program"))
    return load_functions(bpf), maps_of(bpf), bpf


@contextlib.contextmanager
def upcall_program(event: str | None = "block", ring_pages: int = RING_PAGES,
                   anatomy: bool = False, preempt: bool = False, rseq: bool = False):
    """The upcall program attached for one run: its block function on
    sched_switch, for unblock upcalls its waking function too (the waking
    of a thread counts only after a block it saw), for preemption upcalls
    (``event = "preempt"``: alone; ``preempt``: beside the others) its
    preemption function, with ``rseq`` its rseq_ip_fixup counter, and with
    ``anatomy`` the stage programs.  Yields
    (Program, cffi ``struct upcall_maps *``).
    The program the runner loaded for the suite when it handed one over
    (its maps reset first), else compiled here; detached (and, if
    compiled here, unloaded) on every way out."""
    from lab import probes, programs, signals
    from lab.native import NativeError, check
    ffi, lib = _native()
    # event None: the anatomy alone (mechanisms without a program)
    wanted = ([BLOCK_FN] if event in ("block", "unblock") else []) + \
        ([WAKE_FN] if event == "unblock" else []) + \
        ([PREEMPT_FN] if preempt or event == "preempt" else []) + \
        ([RSEQ_FIXUP_FN] if rseq else []) + \
        (list(ANATOMY_FNS) if anatomy else [])
    with contextlib.ExitStack() as stack:
        shared = programs.handed("upcall")
        if shared is not None and ring_pages == RING_PAGES:
            program = Program(shared["progs"], shared["maps"])
        else:
            try:
                bpf = stack.enter_context(probes.bpf_program(program_text(ring_pages),
                                                             "the upcall program"))
                program = Program(load_functions(bpf), maps_of(bpf), bpf)
            except probes.ProbeError as e:
                raise NativeError(f"upcall program: {e}") from None
        maps = ffi.new("struct upcall_maps *", program.maps)
        # a program shared by the suite's runs holds what the last run left
        check(lib.upcall_reset_maps(maps), "upcall program: resetting its maps")
        links: list[int] = []
        try:
            for name, tracepoint in wanted:
                links.append(check(lib.upcall_attach(program.progs[name], tracepoint.encode()),
                                   f"upcall program: attaching {name} to {tracepoint}"))
                program.attached.append(name)
            yield program, maps
        finally:
            with signals.held():        # closing a link detaches it
                for fd in links:
                    os.close(fd)


@contextlib.contextmanager
def bpf_stats():
    """The kernel's run-time accounting of BPF programs, on while the
    context lives (BPF_ENABLE_STATS: off again when its fd closes)."""
    from lab.native import check
    _, lib = _native()
    fd = check(lib.upcall_enable_stats(), "BPF_ENABLE_STATS")
    try:
        yield
    finally:
        os.close(fd)


def program_stats(program: Program, names: list[str]) -> tuple[int, int]:
    """(run_time_ns, run_cnt) summed over the named functions."""
    from lab.native import check
    ffi, lib = _native()
    total_ns = total_runs = 0
    for name in names:
        ns, runs = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        check(lib.upcall_program_stats(program.progs[name], ns, runs), "bpf_prog_info")
        total_ns += int(ns[0])
        total_runs += int(runs[0])
    return total_ns, total_runs


def program_misses(program: Program) -> int:
    """Times the kernel skipped the run's attached functions instead of
    running them (bpf_prog_info.recursion_misses): a raw tracepoint program
    is not run when its tracepoint fires (in an interrupt) while the same
    program runs on that CPU."""
    from lab.native import check
    ffi, lib = _native()
    total = 0
    for name in program.attached:
        misses = ffi.new("uint64_t *")
        check(lib.upcall_program_misses(program.progs[name], misses), "bpf_prog_info")
        total += int(misses[0])
    return total
