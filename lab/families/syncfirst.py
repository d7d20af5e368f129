"""Family ``syncfirst``: Linus's async() against fibrils (seed 003).

Linus's claim: almost every "asynchronous" system call completes without
blocking, so the best design costs nothing up front and goes asynchronous
only when the call would block (his ``async()``); fibrils pay for a
context on every call.  Two workloads put the claim to this kernel, each
call timed from the caller's stamp just before it issues the call to its
stamp on seeing the completion (native/syncfirst.c).

**File reads** (``sync`` ... ``uring_sqpoll``): 4 KiB reads of a file at
random offsets.  Each run creates the file in its scratch directory
(non-zero data, every block stamped with its number and checked on every
read, fsync'ed), sets ``POSIX_FADV_RANDOM`` (no readahead: a read brings in
its own page only), evicts the whole file (fdatasync, then
``POSIX_FADV_DONTNEED`` until mincore() shows nothing resident), reads
``round(hit_ratio * samples)`` randomly chosen blocks of the measured set
back in, warms up on a disjoint set of blocks (cached in the same ratio),
and then checks with mincore() that exactly the chosen measured blocks are
resident when the window opens (counter ``resident_fraction``).  Both steps
are verified, never assumed: an eviction that leaves pages resident after
its passes, or a measured set that is not as planned after its repair
passes (a reclaimer such as DAMON may take a page between the read-back
and the window), fails the run before its window with a one-line reason
naming what missed (``file_read_problem``).  The window visits every
measured block once, in a seeded random order that is the same for every
variant, so a miss never becomes a later hit.

- ``sync``: pread().  ``pool``: every read to a pool thread (our own futex
  queue; the caller keeps ``depth`` reads in flight and futex-waits only
  when it must): fibrils.  ``syncfirst``: preadv2(RWF_NOWAIT) in the
  caller, to the pool on EAGAIN: Linus's async().  ``syncfirst_uring``:
  the same, to io_uring on EAGAIN.  ``uring``: io_uring's default path
  (the kernel's own inline IOCB_NOWAIT attempt, then its async buffered
  read: no thread).  ``uring_async``: IOSQE_ASYNC, every read to an io-wq
  worker.  ``uring_sqpoll``: an SQ thread issues every read.
- RWF_NOWAIT on a miss starts the read I/O (filemap_get_pages() kicks
  page_cache_sync_ra()) and looks the page up again: EAGAIN if the read is
  still in flight, so the pool thread or io_uring that takes over finds it
  under way; the data if it has already finished (a fast device, or the
  caller's CPU held up while another took the completion interrupt).  So
  a miss is not always an EAGAIN: ``cold_inline`` counts the attempts on
  blocks that were not resident when the window opened and still
  completed inline, ``hot_eagain`` the refusals of blocks that were
  resident then (the page left the cache before its call).
- ``direct = true`` reads with O_DIRECT: the page cache is bypassed and
  ``hit_ratio`` does not apply (nothing is read back in).  RWF_NOWAIT then
  only refuses to wait for locks, not for the device, so ``syncfirst``
  rarely sees EAGAIN and behaves like ``sync``.
- Counters: ``eagain`` (sync-first attempts that would have blocked),
  ``inline_done`` / ``offloaded`` (calls finished by the caller's own
  attempt / handed to a pool thread or io_uring), ``pool_wakes`` (futex
  wakes of an idle pool thread), ``caller_sleeps`` (waits for a
  completion), ``sqpoll_wakeups``, ``cold_inline`` and ``hot_eagain``
  (sync-first variants), the page-cache state above, ``evict_passes`` and
  ``warm_passes`` (mincore checks before the window).  The probes add
  io_uring punts, task-work runs, switches and system calls per read.

**Socket receives** (``recv_*``): the same question where "would block"
means "no data yet".  One message of ``msg_bytes`` at a time on an AF_UNIX
SOCK_SEQPACKET pair (message boundaries kept: one call is one message).
A producer thread on the suite's peer_cpu sends each message either
before the consumer calls (with probability ``ready_probability``, a
seeded schedule shared by all variants) or ``send_delay_us`` after it
called.  Producer and consumer coordinate by spinning on shared counters
(never in a sample), so the only wake-ups in a sample are the mechanism's
own.  ``recv_sync``: blocking recv().  ``recv_pool``: every recv() to a
pool thread on the consumer's CPU.  ``recv_syncfirst``: recv(MSG_DONTWAIT)
first, to the pool on EAGAIN.  ``recv_uring``: IORING_OP_RECV (inline
attempt, then poll-armed; the probes count the arms).  Depth is always
one.  Series: ``latency`` and ``after_data``, the time from the later of
the call and the producer's send to the completion seen: for a not-ready
message, what waking the consumer costs (a cross-CPU wake-up of a halted
vCPU on a VM).  Counters: ``ready_ops`` (messages sent before their call),
``sent_after_call`` (must equal samples - ready_ops) and ``eagain``.
"""

from __future__ import annotations

import errno
import math
import os
from typing import Any

from lab.model import USABLE_CPUS, Family, Measurement, Metric, Param, RunContext, Variant
from lab.native import enum_values

BLOCK = 4096
BLOCKS_PER_MB = (1 << 20) // BLOCK
# The worker establishes the planned page-cache state exactly or fails, so
# an ok run's resident fraction is its target; the counter
# resident_off_target (further than this from the target) stays for the
# report and for results written before the check was exact.
RESIDENT_SLACK = 0.05

LATENCY = Metric("latency", "ns", "one call: the caller's stamp before issuing it to its stamp "
                 "on seeing the completion")
AFTER_DATA = Metric("after_data", "ns", "completion seen minus the later of the call and the "
                    "producer's send: what delivering data that was not ready costs")

PARAMS = (
    Param("hit_ratio", 0.9, "fraction",
          "file reads: fraction of the measured blocks in the page cache when the window "
          "opens (checked with mincore: counter resident_fraction); ignored with direct",
          low=0.0, high=1.0),
    Param("file_mb", 16, "MiB", "file reads: file size; must hold samples + warmup "
          "distinct 4 KiB blocks (256 per MiB)", low=1, high=4096),
    Param("depth", 1, "calls", "file reads: calls in flight (async variants; sync is always 1)",
          low=1, high=256),
    Param("pool_threads", 0, "threads",
          "threads of the pool (pool, syncfirst); 0: one per call in flight (= depth), "
          "a context per call as with fibrils", low=0, high=256),
    Param("direct", False, "", "file reads: O_DIRECT, the page cache bypassed (hit_ratio "
          "then does not apply: nothing is cached)"),
    Param("placement", "same_cpu", "",
          "file reads: pool threads and io-wq workers on the caller's cpu (fibril-like) "
          "or on peer_cpu", choices=("same_cpu", "cross_cpu")),
    Param("ready_probability", 0.5, "fraction",
          "receives: chance that a message is already sent when the consumer calls",
          low=0.0, high=1.0),
    Param("send_delay_us", 20, "us", "receives: how long after the call a not-ready "
          "message is sent", low=0, high=100_000),
    Param("msg_bytes", 64, "bytes", "receives: message size", low=8, high=65536),
    Param("samples", 2000, "calls", "measured calls per run (file reads: distinct blocks)",
          low=10, high=1_000_000, axis=False),
    Param("warmup", 200, "calls", "unrecorded calls before the window (file reads: on "
          "other blocks than the measured ones)", low=0, high=1_000_000, axis=False),
    Param("seed", 1, "", "seed of the block choice, their order and the ready schedule "
          "(the same for every variant)", low=0, high=2**32 - 1, axis=False),
)

# how a call is made (native/syncfirst.h), by the enumerator's name
# without SYNCFIRST_, in lower case
MODES = enum_values("enum syncfirst_mode", "SYNCFIRST_")


def _native():
    from lab import native
    return native.load()


def cached_target(hit_ratio: float, n: int) -> int:
    """Blocks read back in: round half up, as native/syncfirst.c does."""
    return math.floor(hit_ratio * n + 0.5)


def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a point cannot run (the runner skips it with this reason), or None."""
    if "file_mb" not in p:
        return None                 # the receive variants read no file
    blocks = p["file_mb"] * BLOCKS_PER_MB
    need = p["samples"] + p["warmup"]
    if need > blocks:
        return (f"samples ({p['samples']}) + warmup ({p['warmup']}) need {need} distinct 4 KiB "
                f"blocks but file_mb = {p['file_mb']} holds {blocks}: raise file_mb to at least "
                f"{-(-need // BLOCKS_PER_MB)} or lower samples / warmup")
    return None


def _check_file_fits(p: dict[str, Any]) -> int:
    problem = point_problem("", p)
    if problem:
        raise ValueError(problem)
    return p["file_mb"] * BLOCKS_PER_MB


def file_read_problem(rc: int, c: Any, blocks: int) -> str | None:
    """Why a file-read run must not be measured, from the worker's return
    code and counts (struct syncfirst_counts), or None.  -EBUSY is the
    worker's "the page cache is not as planned"; a resident count off its
    target after an ok return would be a worker bug: refused too."""
    n = int(c.measured_blocks)
    if rc == -errno.EBUSY and c.evict_left:
        return (f"eviction left {c.evict_left} of {blocks} blocks resident after "
                f"{c.evict_passes} POSIX_FADV_DONTNEED passes: the run would measure cached "
                "blocks as misses")
    if rc == -errno.EBUSY and c.warm_off:
        return (f"warm-up missed its target: {c.warm_off} of the {n} measured blocks not as "
                f"planned after {c.warm_passes} mincore checks ({c.resident_before} resident, "
                f"target {c.target_resident}): something else evicts or reads this file")
    if rc == 0 and c.resident_before != c.target_resident:
        return (f"the window opened with {c.resident_before} of the {n} measured blocks "
                f"resident, target {c.target_resident}")
    return None


def _counts(c: Any) -> dict[str, float]:
    return {name: float(getattr(c, name)) for name in (
        "eagain", "inline_done", "offloaded", "pool_wakes", "caller_sleeps")}


def _file_read(mode: int):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        import numpy as np

        from lab.native import check, double_ptr
        ffi, lib = _native()
        blocks = _check_file_fits(p)
        path = ffi.new("char[]", os.path.join(ctx.scratch_dir, "syncfirst.dat").encode())
        two_cpus = ctx.peer_cpu != ctx.cpu and ctx.peer_cpu in USABLE_CPUS
        cfg = ffi.new("struct syncfirst_file_config *", {
            "path": path, "file_blocks": blocks, "hit_ratio": p["hit_ratio"],
            "depth": p.get("depth", 1), "pool_threads": p.get("pool_threads", 0),
            "direct": int(p["direct"]), "cpu": ctx.cpu,
            "async_cpu": ctx.peer_cpu if p.get("placement") == "cross_cpu" else ctx.cpu,
            # The SQ thread spins (sq_thread_idle) between requests: on the
            # caller's CPU it would take turns with the caller and every
            # request would wait for a timeslice, so with two CPUs it gets
            # the other one (IORING_SETUP_SQ_AFF), as SQPOLL is meant to run.
            "sqpoll_cpu": ctx.peer_cpu if two_cpus else -1,
            "seed": p["seed"], "warmup": p["warmup"], "nr_samples": p["samples"]})
        out = np.zeros(p["samples"])
        c = ffi.new("struct syncfirst_counts *")
        rc = lib.syncfirst_file_read(ctx.handshake, mode, cfg, double_ptr(ffi, out), c)
        problem = file_read_problem(rc, c, blocks)
        if problem:
            raise ValueError(problem)
        check(rc, "syncfirst file read")
        n = p["samples"]
        target = 0.0 if p["direct"] else cached_target(p["hit_ratio"], n) / n
        resident = c.resident_before / n
        counters = _counts(c)
        counters.update({
            "eagain_fraction": c.eagain / n,
            "sqpoll_wakeups": float(c.sqpoll_wakeups),
            "resident_fraction": resident,
            "resident_target": target,
            "resident_off_target": float(abs(resident - target) > RESIDENT_SLACK),
            "resident_after_fraction": c.resident_after / n,
            "evict_passes": float(c.evict_passes),
            "warm_passes": float(c.warm_passes),
            "cold_inline": float(c.cold_inline),
            "hot_eagain": float(c.hot_eagain),
        })
        return Measurement({LATENCY.name: out}, ops=n, counters=counters)

    return run


def _recv(mode: int):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        import numpy as np

        from lab.native import check, double_ptr
        ffi, lib = _native()
        if ctx.peer_cpu == ctx.cpu:
            raise ValueError(f"receives need the producer on another CPU: set suite.peer_cpu "
                             f"to a CPU other than suite.cpu ({ctx.cpu})")
        cfg = ffi.new("struct syncfirst_recv_config *", {
            "ready_probability": p["ready_probability"], "msg_bytes": p["msg_bytes"],
            "send_delay_ns": p["send_delay_us"] * 1000, "cpu": ctx.cpu,
            "producer_cpu": ctx.peer_cpu, "seed": p["seed"], "warmup": p["warmup"],
            "nr_samples": p["samples"]})
        lat, after = np.zeros(p["samples"]), np.zeros(p["samples"])
        c = ffi.new("struct syncfirst_counts *")
        check(lib.syncfirst_recv(ctx.handshake, mode, cfg, double_ptr(ffi, lat),
                                 double_ptr(ffi, after), c), "syncfirst recv")
        counters = _counts(c)
        counters.update({"ready_ops": float(c.ready_ops),
                         "sent_after_call": float(c.sent_after_call)})
        return Measurement({LATENCY.name: lat, AFTER_DATA.name: after}, ops=p["samples"],
                           counters=counters)

    return run


SIZES = ("samples", "warmup", "seed")
FILE = ("hit_ratio", "file_mb", "direct") + SIZES
ASYNC = FILE + ("depth", "placement")
POOLED = ASYNC + ("pool_threads",)
RECV = ("ready_probability", "send_delay_us", "msg_bytes") + SIZES
NEEDS_URING = ("io_uring",)
RECV_NEEDS = ("two_cpus",)     # the producer: on peer_cpu, so check_cpus checks it


def _sq_thread_on_peer_cpu(p: dict[str, Any]) -> bool:
    """SQPOLL pins its SQ thread on peer_cpu at every point (sqpoll_cpu in
    _file_read), whatever the placement: check_cpus checks it."""
    return True


FAMILY = Family(
    name="syncfirst",
    summary="Linus's async() (try the call, go async only if it would block) against "
            "fibrils (a context per call): file reads by page-cache hit ratio, socket "
            "receives by data readiness",
    seeds="003 (Linus's async(), fibrils, syslets)",
    params=PARAMS,
    reference="sync",
    check_point=point_problem,
    variants=(
        Variant("sync", "pread() of a 4 KiB block", _file_read(MODES["sync"]), FILE, (LATENCY,)),
        Variant("pool", "every read to a pool thread through a futex queue: fibrils",
                _file_read(MODES["pool"]), POOLED, (LATENCY,)),
        Variant("syncfirst", "preadv2(RWF_NOWAIT) in the caller, to the pool on EAGAIN: "
                "Linus's async()", _file_read(MODES["nowait_pool"]), POOLED, (LATENCY,)),
        Variant("syncfirst_uring", "preadv2(RWF_NOWAIT) in the caller, to io_uring on EAGAIN",
                _file_read(MODES["nowait_uring"]), ASYNC, (LATENCY,), requires=NEEDS_URING),
        Variant("uring", "io_uring read, default path: the kernel's inline nonblocking "
                "attempt, then its async buffered read", _file_read(MODES["uring"]), ASYNC, (LATENCY,),
                requires=NEEDS_URING),
        Variant("uring_async", "io_uring read with IOSQE_ASYNC: every read to an io-wq "
                "worker, fibril-like", _file_read(MODES["uring_async"]), ASYNC, (LATENCY,),
                requires=NEEDS_URING),
        Variant("uring_sqpoll", "io_uring read with IORING_SETUP_SQPOLL: an SQ thread (on "
                "peer_cpu) issues every read", _file_read(MODES["uring_sqpoll"]), ASYNC, (LATENCY,),
                requires=NEEDS_URING, peer_helper=_sq_thread_on_peer_cpu),
        Variant("recv_sync", "blocking recv()", _recv(MODES["sync"]), RECV, (LATENCY, AFTER_DATA),
                requires=RECV_NEEDS),
        Variant("recv_pool", "every recv() to a pool thread on the consumer's CPU",
                _recv(MODES["pool"]), RECV, (LATENCY, AFTER_DATA), requires=RECV_NEEDS),
        Variant("recv_syncfirst", "recv(MSG_DONTWAIT) first, to the pool on EAGAIN",
                _recv(MODES["nowait_pool"]), RECV, (LATENCY, AFTER_DATA), requires=RECV_NEEDS),
        Variant("recv_uring", "IORING_OP_RECV: inline attempt, then poll-armed",
                _recv(MODES["uring"]), RECV, (LATENCY, AFTER_DATA), requires=RECV_NEEDS + NEEDS_URING),
    ),
)
