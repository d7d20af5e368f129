"""The report's front page as data: for each seed claim, what this run
shows in one line, with its number and 95% interval, taken from the
family analysis functions the sections use (so the front page and the
section behind it never disagree), or, where the run lacks the data, which
suite entry would measure it.

Intervals are those of the sections: a ratio's is the two medians'
bootstrap CIs divided crosswise (analysis._views.median_ratio), a median's
is its hierarchical bootstrap CI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from analysis._format import fmt_ratio, fmt_ratio_interval, fmt_us, fmt_us_interval, fmt_value
from analysis._results import Run
from analysis._views import median_ratio
from analysis.families import activations, chains, msgport, syncfirst, upcall

TITLE = "What this machine shows: the seeds' claims"


@dataclass(frozen=True)
class Claim:
    family: str             # whose report section holds the detail
    claim: str              # the seed's claim, in a few words, and which seed
    line: str               # what this run shows, or which suite entry would measure it
    measured: bool          # False: ``line`` says what would measure it
    source: str | None = None   # the citation of a published figure the line quotes


def _ratio(ratio: float, low: float, high: float, of: str,
           faster: str = "faster", slower: str = "slower") -> str:
    """``0.93x sync's 1.21 us (95% interval 0.90x..0.97x, faster)``: a ratio
    of medians, ``of`` what, its interval and the verdict the interval gives."""
    told = faster if high < 1 else slower if low > 1 else "not told apart"
    return f"{fmt_ratio(ratio)} {of} (95% interval {fmt_ratio_interval(low, high)}, {told})"


def _against(row, ref, name: str) -> str:
    """_ratio of row's median over ref's (times in us)."""
    return _ratio(*median_ratio(row, ref), f"{name}'s {fmt_us(ref['median'])} us")


# -- seed 003: Linus's sync-first async() ------------------------------------------------------

SYNCFIRST_CLAIM = ("Linus's sync-first async() (seed 003): try the call, go asynchronous only "
                   "if it would block, where fibrils (pool) pay a context on every call")
SYNCFIRST_HITS = ((1.0, "100% page-cache hits"), (0.0, "0% hits"))
NO_SYNCFIRST_LINE = ("Not measured: this run has no syncfirst file reads at hit_ratio 1.0 and "
                     "0.0; [syncfirst] hit_ratio = [0.0, 1.0] (as in experiments/quick.toml) "
                     "measures them.")


def syncfirst_claim(run: Run) -> Claim:
    """syncfirst's median read latency against sync's, pool's (fibrils) and
    the fastest io_uring variant's, at 100% and 0% hits (the first group of
    the other swept axes: depth 1 where there is one)."""
    data = syncfirst.crossover_data(run) if syncfirst.FAMILY in run.families else None
    parts = []
    for hit, name in SYNCFIRST_HITS if data is not None and not data.empty else ():
        found = syncfirst.up_front(run, data, hit)
        if not found:
            continue
        u = next((x for x in found if x.group.get("depth", 1) == 1), found[0])
        text = f"{name}: syncfirst {fmt_us(u.syncfirst['median'])} us per read"
        against = [_against(u.syncfirst, ref, who) for ref, who in
                   ((u.sync, "sync"), (u.pool, "pool")) if ref is not None]
        rows = next(r for g, r in syncfirst.crossover_groups(data) if g == u.group)
        uring = rows[rows["variant"].astype(str).str.startswith("uring")
                     & rows[syncfirst.HIT].astype(float).eq(hit)]
        if len(uring):
            best = uring.loc[uring["median"].astype(float).idxmin()]
            against.append(_against(u.syncfirst, best, str(best["variant"])))
        parts.append(text + (": " + ", ".join(against) if against else ""))
    if not parts:
        return Claim(syncfirst.FAMILY, SYNCFIRST_CLAIM, NO_SYNCFIRST_LINE, False)
    missing = [name for hit, name in SYNCFIRST_HITS if not any(p.startswith(name) for p in parts)]
    line = "; ".join(parts) + "".join(f"; {name}: not in this run" for name in missing) + "."
    return Claim(syncfirst.FAMILY, SYNCFIRST_CLAIM, line, True)


# -- seed 003: syslet chains -------------------------------------------------------------------

CHAINS_CLAIM = (f"Syslet chains (seed 003): k = {chains.TARGET_K} dependent calls as one linked "
                "io_uring chain against k separate system calls")
NO_CHAINS_LINE = (f"Not measured: this run has no chains family with syscalls and a linked chain "
                  f"at the same k; [chains] k = {chains.TARGET_K} op = [\"nop\", \"read\"] (as in "
                  "experiments/quick.toml) measures it.")


def chains_claim(run: Run) -> Claim:
    """Per combination (op, ...): the fastest linked chain's median over
    syscalls' at the k nearest TARGET_K (chains.versus_reference)."""
    versus = chains.versus_reference(chains.chain_data(run)) \
        if chains.FAMILY in run.families else []
    parts = []
    for label in dict.fromkeys(v.combo for v in versus):
        linked = [v for v in versus if v.combo == label and v.variant in chains.LINKED]
        if not linked:
            continue
        best = min(linked, key=lambda v: v.row["median"])
        parts.append(f"{label}, k = {chains.k_label(best.k)}: {best.variant} "
                     f"{fmt_us(best.row['median'])} us, "
                     + _ratio(best.ratio, best.low, best.high,
                              f"syscalls' {fmt_us(best.reference['median'])} us"))
    if not parts:
        return Claim(chains.FAMILY, CHAINS_CLAIM, NO_CHAINS_LINE, False)
    return Claim(chains.FAMILY, CHAINS_CLAIM, "; ".join(parts) + ".", True)


# -- seeds 000, 002: block upcalls -------------------------------------------------------------

UPCALL_CLAIM = ("Block upcalls (seeds 000, 002): the kernel tells user-level scheduling code "
                "that a thread blocked, against the futex handoff between two threads")
NO_UPCALL_LINE = ("Not measured: this run has no block upcall; [[upcall]] variants = "
                  "[\"bpf_ringbuf\", \"futex_hint\"] placement = [\"same_cpu\", \"cross_cpu\"] "
                  "(as in experiments/quick.toml) measures it.")


def upcall_claim(run: Run) -> Claim:
    """Per placement: the best mechanism's median latency and its
    vs_handoff ratio (over the same-CPU futex handoff, latency_table)."""
    data = upcall.latency_table(run) if upcall.FAMILY in run.families else None
    if data is None or data.empty:
        return Claim(upcall.FAMILY, UPCALL_CLAIM, NO_UPCALL_LINE, False)
    ref = upcall.handoff_reference(run).get(upcall.SAME)
    parts = []
    for placement in upcall.PLACEMENTS:
        best = upcall.best_upcall(data, placement)
        if best is None:
            continue
        text = f"{placement}: {upcall.row_label(best)} {fmt_us(best['median'])} us"
        if ref is not None and math.isfinite(best["vs_handoff"]):
            text += ", " + _ratio(best["vs_handoff"], best["vs_handoff_low"],
                                  best["vs_handoff_high"],
                                  f"the same-CPU futex handoff's {fmt_us(ref['median'])} us")
        else:
            text += f" (95% CI {fmt_us_interval(best['ci_low'], best['ci_high'])})"
        parts.append(text)
    line = "; ".join(parts) + "." + ("" if ref is not None else " " + upcall.NO_HANDOFF_LINE)
    return Claim(upcall.FAMILY, UPCALL_CLAIM, line, ref is not None)


# -- seed 001: reply ports ---------------------------------------------------------------------

PORT_CLAIM = ("Reply ports (seed 001, DragonFly): system calls as messages to a port, "
              "against plain system calls (port_sync)")
NO_PORT_SYNC_LINE = ("Not measured: this run has reply ports but no port_sync beside them; add "
                     "\"port_sync\" to the [[msgport]] reply-port variants.")


def reply_port_claim(run: Run) -> Claim:
    """Per op, at the smallest and the largest batch: the cheapest port
    other than port_sync (msgport.cheapest_port) over port_sync."""
    table = msgport.reply_port_table(run) if msgport.FAMILY in run.families else None
    if table is None or table.empty:
        return Claim(msgport.FAMILY, PORT_CLAIM, "Not measured: " + msgport.NO_PORTS_LINE, False)
    ports = table[table["mode"] != msgport.SYNC]
    parts = []
    for op in [o for o in msgport.OPS if (table["op"] == o).any()]:
        batches = sorted(set(table.loc[table["op"] == op, "batch"]))
        for batch in dict.fromkeys((batches[0], batches[-1])):
            best = msgport.cheapest_port(ports, op, batch)
            sync = msgport._port(table, op, msgport.SYNC, batch)
            if best is None or sync is None:
                continue
            parts.append(f"op={op} batch {batch}: {best['best']['mode']} "
                         f"{fmt_value(best['best']['median'])} ns per message, "
                         + _ratio(*median_ratio(best["best"], sync),
                                  f"port_sync's {fmt_value(sync['median'])} ns",
                                  "cheaper", "dearer"))
    if not parts:
        return Claim(msgport.FAMILY, PORT_CLAIM, NO_PORT_SYNC_LINE, False)
    return Claim(msgport.FAMILY, PORT_CLAIM, "; ".join(parts) + ".", True)


# -- seed 004 (K42): protected procedure calls ---------------------------------------------------

PPC_CLAIM = ("K42's protected procedure calls (seed 004): a synchronous call to another "
             "address space and back, on one CPU and across two")


def ppc_claim(run: Run) -> Claim:
    """Per placement: the fastest transport's median round trip (over
    every peer) with its 95% CI (msgport.ppc_round_trips)."""
    rt = msgport.ppc_round_trips(run) if msgport.FAMILY in run.families else None
    if rt is None or rt.empty:
        return Claim(msgport.FAMILY, PPC_CLAIM, "Not measured: " + msgport.NO_PPC_LINE, False)
    rt = rt[rt["transport"].isin(msgport.TRANSPORTS)]
    parts = []
    for placement in msgport.PLACEMENTS:
        here = rt[rt["placement"] == placement]
        if here.empty:
            parts.append(f"{placement}: not in this run")
            continue
        best = here.loc[here["median"].astype(float).idxmin()]
        parts.append(f"{placement}: {best['transport']} ({best['peer']} peer) "
                     f"{fmt_us(best['median'])} us per round trip (95% CI "
                     f"{fmt_us_interval(best['ci_low'], best['ci_high'])})")
    return Claim(msgport.FAMILY, PPC_CLAIM, "the fastest round trip, " + "; ".join(parts) + ".",
                 True)


# -- seed 000: Table IV --------------------------------------------------------------------------

TABLE_IV_CLAIM = ("Scheduler activations' Table IV (seed 000): user-level threads against "
                  "kernel threads against processes, Null Fork and Signal-Wait")
T4_KERNEL = (("t4_pthreads", "kernel threads"), ("t4_processes", "processes"))


def table_iv_claim(run: Run) -> Claim:
    """Per op: kernel threads' and processes' ratio to fibers with its
    interval, beside the paper's ratio (activations.table_iv_data)."""
    data = activations.table_iv_data(run) if activations.FAMILY in run.families else None
    lines = activations.table_iv_lines(data) if data is not None else []
    if data is None or lines == [activations.NO_TABLE_IV_LINE]:
        return Claim(activations.FAMILY, TABLE_IV_CLAIM,
                     "Not measured: " + activations.NO_TABLE_IV_LINE, False)
    parts = []
    for op in activations.T4_OPS:
        rows = data[data["op"] == op].set_index("variant")
        fibers = rows.loc["t4_fibers"] if "t4_fibers" in rows.index else None
        if fibers is None or not math.isfinite(fibers["ours_us"]):
            parts.append(f"{activations.OP_NAMES[op]}: fibers (t4_fibers) not measured")
            continue
        cells = [f"fibers {fmt_value(fibers['ours_us'])} us"]
        for variant, name in T4_KERNEL:
            r = rows.loc[variant] if variant in rows.index else None
            if r is None or not math.isfinite(r["ours_ratio"]):
                cells.append(f"{name} not measured")
                continue
            cells.append(f"{name} {fmt_ratio(r['ours_ratio'])} fibers' (95% interval "
                         f"{fmt_ratio_interval(r['ours_ratio_low'], r['ours_ratio_high'])}; "
                         f"1992: {fmt_ratio(r['paper_ratio'])})")
        parts.append(f"{activations.OP_NAMES[op]}: " + ", ".join(cells))
    return Claim(activations.FAMILY, TABLE_IV_CLAIM, "; ".join(parts) + ".", True,
                 source=activations.PAPER_CITATION)


CLAIMS: tuple[Callable[[Run], Claim], ...] = (
    syncfirst_claim, chains_claim, upcall_claim, reply_port_claim, ppc_claim, table_iv_claim)


def claims(run: Run) -> list[Claim]:
    """Every seed claim of the front page, in its order."""
    return [claim(run) for claim in CLAIMS]


__all__ = ["Claim", "CLAIMS", "TITLE", "claims", "syncfirst_claim", "chains_claim",
           "upcall_claim", "reply_port_claim", "ppc_claim", "table_iv_claim"]
