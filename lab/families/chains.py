"""Family ``chains``: syslet chains (seed 003) as linked io_uring SQEs.

Ingo Molnar's syslets let user space hand the kernel a chain of atoms (a
system call each, linked by ``next``) that runs without returning to user
space between atoms; ``SYSLET_STOP_ON_NEGATIVE`` ends the chain at the first
failure, completions go to a ring, ``async_wait(min_events)`` waits for
enough of them.  Today's nearest thing is io_uring: SQEs linked with
``IOSQE_IO_LINK`` (a failure completes the rest with -ECANCELED) or
``IOSQE_IO_HARDLINK`` (the rest runs anyway), the CQ ring, and
``io_uring_enter``'s ``min_complete``.  A chain of k dependent atoms is
timed done as k system calls and four io_uring ways, doing the same work.
The C side is native/chains.c.

Failure semantics, where the seed leaves a choice: ``syscalls`` and
``uring_separate`` stop after the failing atom (the program sees the error
before it issues the next one: what a syslet with STOP_ON_NEGATIVE does);
``uring_link`` / ``uring_link_wait1`` get -ECANCELED for every later atom;
``uring_hardlink`` runs them.

Reading the numbers: ``kernel_entries_per_chain`` is what the variant
counts in user space, the probes' ``syscalls_per_op`` the kernel's count
(one operation is one chain).  Work between chains (evicting the page cache
for ``cached = false``, closing what a failed chain left open) is in the
probes' window but in no sample: ``untimed_syscalls_per_chain``.  With
probes attached, every io_uring request also fires the io_uring
tracepoints: compare variants on runs without probes (``probe_overhead``).
"""

from __future__ import annotations

from typing import Any

from lab.model import Family, Measurement, Metric, Param, RunContext, Variant
from lab.native import enum_values, struct_fields

CHAIN = Metric("chain", "ns", "one chain of k atoms: first atom's preparation to last result")

# native/chains.h: what an atom does (the op parameter's choices), how the
# io_uring variants submit (their names), what a run counts
_OP = enum_values("enum chains_op", "CHAINS_OP_")
_SUBMIT = enum_values("enum chains_submit", "CHAINS_")
OPS = tuple(_OP)
_COUNTS = struct_fields("struct chains_counts")

PARAMS = (
    Param("k", 8, "atoms", "atoms per chain (syslet atoms linked by next; linked SQEs)",
          low=1, high=64),
    Param("op", "nop", "",
          "each atom: nop = IORING_OP_NOP / getppid(); read = 4 KiB read of block i of a "
          "k-block file; open_read_close = openat, k-2 reads, close (io_uring: through a direct "
          "descriptor; k >= 3)",
          choices=OPS),
    Param("cached", True, "",
          "false: evict the file (POSIX_FADV_DONTNEED) before each chain, untimed but counted "
          "(untimed_syscalls_per_chain); op=nop ignores it"),
    Param("fail_at", 0, "atom",
          "0: none; i: atom i fails (read of a bad fd or empty fixed slot, openat of a missing "
          "file, close of a bad fd / empty slot), as SYSLET_STOP_ON_NEGATIVE tests",
          low=0, high=64),
    Param("taskrun", "normal", "",
          "io_uring ring: normal task work (runs on the way out of any enter) or defer "
          "(IORING_SETUP_DEFER_TASKRUN, 6.1: runs only while the task waits)",
          choices=("normal", "defer")),
    Param("samples", 2000, "chains", "chains measured per run", low=10, high=1_000_000,
          axis=False),
    Param("warmup", 200, "chains", "unrecorded chains before the measured window", low=0,
          high=100_000, axis=False),
)

_SYSCALL_PARAMS = ("k", "op", "cached", "fail_at", "samples", "warmup")
_URING_PARAMS = _SYSCALL_PARAMS + ("taskrun",)


def _native():
    from lab import native
    return native.load()


def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a combination cannot run (one line naming the keys), or None.
    The runner skips such points of a sweep with this reason."""
    if p["op"] == "open_read_close" and p["k"] < 3:
        return (f"op=open_read_close needs k >= 3 (openat, at least one read, close), "
                f"got k={p['k']}: raise k or use op=nop or op=read")
    if p["fail_at"] > p["k"]:
        return (f"fail_at={p['fail_at']} is past the end of a chain of k={p['k']} "
                f"atoms: use fail_at=0 (no failure) or 1..{p['k']}")
    return None


def check_params(p: dict[str, Any]) -> None:
    """Combinations that cannot run: ValueError, one line naming the keys."""
    problem = point_problem("", p)
    if problem:
        raise ValueError(problem)


def run_chain(variant: str, p: dict[str, Any], cpu: int, scratch_dir: str,
              handshake: Any = None) -> tuple[Any, list[int], dict[str, int]]:
    """Call the C worker: (samples, the last chain's per-atom results,
    counts).  handshake None: no runner (tests, notebooks)."""
    import errno

    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    check_params(p)
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    k = p["k"]
    samples = np.zeros(p["samples"], dtype=np.float64)
    results = ffi.new("int32_t[]", k)
    counts = ffi.new("struct chains_counts *")
    directory = ffi.new("char[]", scratch_dir.encode())
    spec = ffi.new("struct chains_spec *", {
        "op": _OP[p["op"]], "k": k, "cached": int(p["cached"]),
        "fail_at": p["fail_at"], "defer_taskrun": int(p.get("taskrun") == "defer"),
        "cpu": cpu, "dir": directory})
    if variant == "syscalls":
        rc = lib.chains_syscalls(handshake, spec, p["warmup"], p["samples"],
                                 double_ptr(ffi, samples), results, counts)
    else:
        rc = lib.chains_uring(handshake, _SUBMIT[variant], spec, p["warmup"], p["samples"],
                              double_ptr(ffi, samples), results, counts)
    if rc == -errno.EOPNOTSUPP and not p["cached"]:     # the eviction check
        raise ValueError(f"cached=false: {scratch_dir}'s file system keeps the file's pages "
                         "after POSIX_FADV_DONTNEED (tmpfs?): run on a disk file system or "
                         "use cached=true")
    check(rc, f"chains/{variant}")
    return samples, list(results), {name: int(getattr(counts, name)) for name in _COUNTS}


def expected_mechanics(variant: str, p: dict[str, Any], c: dict[str, int]) -> str | None:
    """What must hold for every chain of a run, else why it does not: the
    lab's numbers are only worth something if the chains did what they say."""
    k, fail_at, n = p["k"], p["fail_at"], c["chains"]
    if c["blocks_corrupt"]:
        return f"{c['blocks_corrupt']} blocks read with the wrong content"
    if fail_at == 0:
        if c["ok"] != n * k:
            return (f"{n * k - c['ok']} of {n * k} atoms did not succeed without an injected "
                    f"failure (failed {c['failed']}, canceled {c['canceled']}, "
                    f"not run {c['not_run']})")
        return None
    tail = k - fail_at
    if variant in ("syscalls", "uring_separate"):
        want = {"not_run": n * tail, "canceled": 0, "completions": n * fail_at}
    elif variant == "uring_hardlink":
        want = {"not_run": 0, "canceled": 0, "completions": n * k}
    else:
        want = {"not_run": 0, "canceled": n * tail, "completions": n * k}
    # not checked: ok, since a hardlinked tail may fail too (reads after a
    # failed openat find an empty slot)
    for name, value in want.items():
        if c[name] != value:
            return f"{name}: {c[name]} atoms, expected {value} ({n} chains, fail_at={fail_at})"
    if c["failed"] < n:
        return f"only {c['failed']} failed atoms in {n} chains with fail_at={fail_at}"
    return None


def _variant_run(variant: str):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.native import NativeError
        samples, _, c = run_chain(variant, p, ctx.cpu, ctx.scratch_dir, ctx.handshake)
        wrong = expected_mechanics(variant, p, c)
        if wrong:
            raise NativeError(f"chains did not run as built: {wrong}")
        n = c["chains"]
        counters = {f"{name}_per_chain": c[name] / n for name in
                    ("completions", "ok", "failed", "canceled", "not_run", "kernel_entries",
                     "untimed_syscalls")}
        counters["blocks_verified"] = float(c["blocks_verified"])
        counters["blocks_corrupt"] = float(c["blocks_corrupt"])
        # one operation is one chain: the probes' syscalls_per_op is the
        # user/kernel transitions a chain costs
        return Measurement({CHAIN.name: samples}, ops=n, counters=counters)

    return run


FAMILY = Family(
    name="chains",
    summary="syslet chains: k dependent operations as k syscalls, k io_uring enters, or one "
            "linked SQE chain",
    seeds="003 (syslets: atoms chained by next, SYSLET_STOP_ON_NEGATIVE, completion ring, "
          "async_wait(min_events))",
    params=PARAMS,
    reference="syscalls",
    check_point=point_problem,
    variants=(
        Variant("syscalls", "k system calls in a row; stops after a failing one "
                "(STOP_ON_NEGATIVE done in user space)",
                _variant_run("syscalls"), _SYSCALL_PARAMS, (CHAIN,)),
        Variant("uring_separate", "k io_uring submissions, one io_uring_enter() each "
                "(submit one, wait for it); stops after a failing one",
                _variant_run("uring_separate"), _URING_PARAMS, (CHAIN,), requires=("io_uring",)),
        Variant("uring_link", "k SQEs linked with IOSQE_IO_LINK, one io_uring_enter() submits "
                "them and waits for k completions (async_wait(min_events)); after a failure "
                "the rest complete with -ECANCELED",
                _variant_run("uring_link"), _URING_PARAMS, (CHAIN,), requires=("io_uring",)),
        Variant("uring_hardlink", "the same with IOSQE_IO_HARDLINK: a failure does not "
                "break the chain",
                _variant_run("uring_hardlink"), _URING_PARAMS, (CHAIN,), requires=("io_uring",)),
        Variant("uring_link_wait1", "linked, submitted without waiting, completions reaped "
                "one io_uring_wait_cqe() at a time (an enter for each one not yet posted)",
                _variant_run("uring_link_wait1"), _URING_PARAMS, (CHAIN,),
                requires=("io_uring",)),
    ),
)
