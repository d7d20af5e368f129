"""Report layout of the msgport family: analysis.families.msgport's tables
and lines as pages, and its figures: ns per message and system calls per
message against the batch (log x), one line per reply-port mode, one
panel per op; the PPC round-trip medians per transport, same vs cross
CPU (grouped bars, log y, p99 whiskers); the CDFs of the live messages.
The generic CDFs and counter tables are left out: the section draws its
own figures and shows the counters that matter in its tables."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pandas as pd

from analysis import plots
from analysis._format import (
    NOISY_MARK,
    fmt_count,
    fmt_finite,
    fmt_rate,
    fmt_ratio,
    fmt_ratio_interval,
    fmt_us,
    fmt_value,
)
from analysis._kernel import kernel_view_status
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._results import Run
from analysis._views import headline_samples, is_set
from analysis.families.msgport import (
    CROSS,
    FAMILY,
    LIVE,
    NO_DEFERRED_LINE,
    NO_LIVE_LINE,
    NO_ONE_WAY_LINE,
    NO_PORTS_LINE,
    NO_PPC_LINE,
    OPS,
    PEERS,
    PLACEMENTS,
    PORTS,
    PPC_ROWS,
    SAME,
    SYNC,
    accounting_line,
    findings_lines,
    flushsys_lines,
    flushsys_table,
    live_lines,
    live_table,
    msg_ring_verdict,
    one_way_lines,
    port_lines,
    ppc_accounting,
    ppc_lines,
    ppc_one_way,
    ppc_round_trips,
    probe_agreement_line,
    receiver_table,
    reply_port_table,
    soft_interrupt_lines,
    soft_interrupt_table,
)
from analysis.sections import _msgport_upcall, generic
from analysis.sections.registry import register

# the section's tables hold short cells: more rows fit a page than _pages' default
SECTION_ROWS_PER_PAGE = 30


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    run = report.run
    # the generic CDF of 113 (variant, point) cells would be unreadable and
    # the generic counter tables list every count: the section draws its own
    # figures and shows the counters that matter in its tables (`lab show`
    # lists them all)
    generic.render(report, family, extra_blocks=section_blocks(run, family), figures=False,
                   counters=False)
    port_figures(report, family)
    ppc_figure(report, family)
    live_figure(report, family)


def has_kernel_view(run: Run, family: str = FAMILY) -> bool:
    return kernel_view_status(run, family) is None


def _no_kernel(run: Run, family: str) -> str:
    return f"no kernel view: {kernel_view_status(run, family)}"


def _interval(low: float, high: float, scale: Callable[[float], str] = fmt_finite) -> str:
    return f"{scale(low)}..{scale(high)}"


# -- blocks ----------------------------------------------------------------------------------

def findings_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    blocks: list[Block] = [Heading("What this run shows", size=12, keep_with_next=0.8)]
    for line in findings_lines(run, family):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    return blocks


def _lines(lines: list[str]) -> list[Block]:
    out: list[Block] = []
    for line in lines:
        out += [Text(line, size=9.5, indent=0.15), Space(0.03)]
    return out


def reply_port_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    table = reply_port_table(run, family)
    heading = Heading("Reply ports: sendsys, waitsys and flushsys on io_uring", size=12,
                      keep_with_next=1.5)
    if table.empty:
        return [heading, Text(NO_PORTS_LINE, size=9.5)]
    kernel = has_kernel_view(run, family)
    header = ["mode", "batch", "n", "reps", "median [ns]", "95% CI [ns]", "p99 [ns]",
              "syscalls/msg", "counted", "SQEs/msg", "CQEs/SQE", ""]
    right = [False] + [True] * 4 + [False] + [True] * 5 + [False]
    notes = ["ns per message: one batch, first SQE prepared to last reply reaped, / batch "
             "(port_sync: batch system calls / batch); user-side runs, repetitions pooled; "
             "95% CI of the median by hierarchical bootstrap",
             "syscalls/msg, SQEs/msg: the kernel view (raw_syscalls:sys_enter, "
             "io_uring:io_uring_submit_req) of the run's threads in the measured window per "
             "message, median over the runs with probes (the handshake's two calls included); "
             "counted: the workers' own count of their system calls per message; CQEs/SQE: "
             "completions per submission (the workers' counters; port_sync makes system calls, "
             "no SQEs: '-')"]
    if not kernel:
        notes.insert(1, _no_kernel(run, family))
    blocks: list[Block] = [heading]
    if not kernel:
        blocks.append(Text(_no_kernel(run, family), color="#a63603", size=9.5))
    ops = [o for o in OPS if (table["op"] == o).any()]
    for i, op in enumerate(ops):
        part = table[table["op"] == op]
        rows = [[r["mode"], str(r["batch"]), str(r["n"]), str(r["reps"]), fmt_finite(r["median"]),
                 _interval(r["ci_low"], r["ci_high"]), fmt_finite(r["p99"]),
                 fmt_finite(r["kernel_syscalls_per_message"]), fmt_finite(r["syscalls_per_message"]),
                 fmt_finite(r["kernel_sqes_per_message"]),
                 "-" if r["mode"] == SYNC else fmt_value(r["completions_per_submission"]),
                 NOISY_MARK if r["noisy"] else ""] for _, r in part.iterrows()]
        blocks.append(Table(header, rows, right=right, highlight=part["noisy"].tolist(),
                            caption=f"Reply ports, op={op}: ns and system calls per message "
                                    "by mode and batch",
                            notes=notes if i == len(ops) - 1 else (),
                            max_rows=SECTION_ROWS_PER_PAGE))
    return blocks + _lines(port_lines(table))


def flushsys_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    if reply_port_table(run, family).empty:
        return []
    data = flushsys_table(run, family)
    heading = Heading("flushsys(): the deferred reply port", size=12, keep_with_next=1.5)
    if data.empty:
        return [heading, Text(NO_DEFERRED_LINE, size=9.5)]
    kernel = np.isfinite(data["kernel_local_work_runs_per_batch"].astype(float)).any()
    header = ["op", "batch", "median [ns]", "ready at submit", "TASKRUN flagged/batch",
              "reaping enters/batch", "kernel task-work runs/batch", "port_wait enters/batch"]
    rows = [[r["op"], str(r["batch"]), fmt_finite(r["median"]),
             f"{r['ready_at_submit_fraction']:.0%}"
             if math.isfinite(r["ready_at_submit_fraction"]) else "-",
             fmt_value(r["taskrun_flagged_per_batch"]), fmt_count(r["reaps_per_batch"]),
             fmt_finite(r["kernel_local_work_runs_per_batch"]), fmt_count(r["wait_reaps_per_batch"])]
            for _, r in data.iterrows()]
    notes = ["port_deferred: IORING_SETUP_DEFER_TASKRUN | SINGLE_ISSUER | TASKRUN_FLAG (Linux "
             "6.1): completions that come from outside the caller wait as task work, the "
             "kernel sets IORING_SQ_TASKRUN, and the caller flushes with io_uring_get_events() "
             "when it leaves its critical section (DragonFly's flushsys())",
             "ready at submit: batches whose replies were all in the CQ ring when the submitting "
             "enter returned; TASKRUN flagged/batch: batches that found IORING_SQ_TASKRUN set; "
             "reaping enters/batch: io_uring_get_events() flushes and GETEVENTS waits (the "
             "workers' reap_syscalls); medians over the user-side runs",
             "kernel task-work runs/batch: io_uring:io_uring_local_work_run per batch, median "
             "over the runs with probes" + ("" if kernel else f" ({_no_kernel(run, family)})"),
             "port_wait enters/batch: the same batches reaped by waitsys(), one "
             "io_uring_enter(GETEVENTS) with min_complete = batch"]
    blocks: list[Block] = [heading, Table(header, rows, right=[False] + [True] * 7,
                           caption="port_deferred: what the flushes cost, per op and batch",
                           notes=notes, max_rows=SECTION_ROWS_PER_PAGE)]
    return blocks + _lines(flushsys_lines(data))


def live_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = live_table(run, family)
    heading = Heading("Live messages: multishot against re-armed one-shot", size=12,
                      keep_with_next=1.5)
    if data.empty:
        return [heading, Text(NO_LIVE_LINE, size=9.5)]
    header = ["variant", "count", "interval [us]", "placement", "metric", "n", "reps",
              "median [us]", "95% CI [us]", "p99 [us]", "CQEs/submission", "SQEs/CQE",
              "syscalls/CQE", "wake-ups/CQE", ""]
    rows = [[r["variant"], str(r["count"]) if is_set(r["count"]) else "-",
             str(r["interval_us"]), r["placement"], r["metric"], str(r["n"]), str(r["reps"]),
             fmt_us(r["median"]), _interval(r["ci_low"], r["ci_high"], fmt_us), fmt_us(r["p99"]),
             fmt_value(r["completions_per_submission"]), fmt_finite(r["kernel_sqes_per_completion"]),
             fmt_finite(r["kernel_syscalls_per_completion"]),
             fmt_finite(r["kernel_wakeups_per_completion"]), NOISY_MARK if r["noisy"] else ""]
            for _, r in data.iterrows()]
    notes = ["lateness (timeouts): the gap since the previous completion was seen minus the "
             "interval; latency (polls): the source thread's stamp before its eventfd write() "
             "to the CQE seen; user-side runs, repetitions pooled",
             "CQEs/submission: the workers' count (a multishot SQE delivers count CQEs; "
             "IORING_TIMEOUT_MULTISHOT since Linux 6.4); SQEs, syscalls, wake-ups per CQE: the "
             "kernel view per completion, median over the runs with probes"
             + ("" if has_kernel_view(run, family) else f" ({_no_kernel(run, family)})")]
    drift = data[np.isfinite(data["drift_per_completion_ns"].astype(float))
                 & (data["shot"] == "multishot")]
    if len(drift):
        notes.append("drift of the multishot timeout's schedule per completion (the kernel "
                     "re-arms relative to the CQE it posts): " + ", ".join(
                         f"count={r['count']} {fmt_us(r['drift_per_completion_ns'])} us"
                         for _, r in drift.iterrows()))
    blocks: list[Block] = [heading, Table(header, rows, right=[False, True, True, False, False] + [True] * 9
                           + [False], highlight=data["noisy"].tolist(),
                           caption="Live messages: timer and poll events delivered by one "
                                   "multishot SQE or a one-shot SQE re-armed each time",
                           notes=notes, max_rows=SECTION_ROWS_PER_PAGE)]
    return blocks + _lines(live_lines(data))


def ppc_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    rt = ppc_round_trips(run, family)
    heading = Heading("PPC: round trips and one-way streams between threads and processes",
                      size=12, keep_with_next=1.5)
    if rt.empty:
        return [heading, Text(NO_PPC_LINE, size=9.5)]
    kernel = has_kernel_view(run, family)
    header = ["transport", "peer", "placement", "n", "reps", "median [us]", "95% CI [us]",
              "p99 [us]", "syscalls/RT", "x-CPU wake-ups/RT", "ours / perf", "interval", ""]
    rows = [[r["transport"], r["peer"], r["placement"], str(r["n"]), str(r["reps"]),
             fmt_us(r["median"]), _interval(r["ci_low"], r["ci_high"], fmt_us), fmt_us(r["p99"]),
             fmt_finite(r["kernel_syscalls_per_call"]), fmt_finite(r["kernel_cross_cpu_wakeups_per_call"]),
             fmt_ratio(r["ours_over_perf"]),
             fmt_ratio_interval(r["ours_over_perf_low"], r["ours_over_perf_high"])
             if math.isfinite(r["ours_over_perf"]) else "-",
             NOISY_MARK if r["noisy"] else ""] for _, r in rt.iterrows()]
    notes = ["a round trip: the client's request sent to its reply seen (mode = sync, one call "
             "at a time); ppc_perf_bench_pipe: perf bench sched pipe's usecs/op of one "
             "invocation (one sample per invocation), right after ppc_pipe at the same peer "
             "and placement",
             "ours / perf: on each perf bench row, the ppc_pipe median above it over perf's; "
             "interval: the two medians' 95% CIs divided crosswise",
             "syscalls/RT, x-CPU wake-ups/RT: the kernel view per round trip (both sides: the "
             "server's thread or process is followed), median over the runs with probes"
             + ("" if kernel else f" ({_no_kernel(run, family)})")]
    blocks: list[Block] = [heading]
    blocks.append(Table(header, rows, right=[False] * 3 + [True] * 7 + [True, False, False],
                        highlight=rt["noisy"].tolist(),
                        caption="PPC round trips (K42's synchronous PPC) by transport, peer and "
                                "placement", notes=notes, max_rows=SECTION_ROWS_PER_PAGE))
    blocks += _lines(ppc_lines(run, family))
    return blocks + one_way_blocks(run, family) + soft_interrupt_blocks(run, family)


def one_way_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = ppc_one_way(run, family)
    if data.empty:
        return [Text(NO_ONE_WAY_LINE, size=9.5)]
    header = ["transport", "peer", "placement", "batch", "n", "reps", "ns/call", "95% CI [ns]",
              "p99 [ns]", "calls/s", "of a round trip", "syscalls/call", "calls/drain", ""]
    rows = [[r["transport"], r["peer"], r["placement"], str(r["batch"]), str(r["n"]),
             str(r["reps"]), fmt_finite(r["median"]), _interval(r["ci_low"], r["ci_high"]),
             fmt_finite(r["p99"]), fmt_rate(r["calls_per_s"]), fmt_ratio(r["of_round_trip"]),
             fmt_finite(r["kernel_syscalls_per_call"]), fmt_value(r["calls_per_drain"]),
             NOISY_MARK if r["noisy"] else ""] for _, r in data.iterrows()]
    notes = ["mode = async (K42's asynchronous PPC): batch requests sent with one kernel entry, "
             "the server drains what has arrived and replies to all of it; ns/call: the batch's "
             "time, first send to last reply, / batch; calls/s = 1e9 / the median ns per call",
             "of a round trip: ns/call over the same transport's round trip at the same peer "
             "and placement; syscalls/call: the kernel view (both sides); calls/drain: "
             "requests the server found per drain (the workers' counters)"]
    blocks: list[Block] = [Space(0.05), Table(header, rows, right=[False] * 3 + [True] * 3 + [True, False]
                               + [True] * 5 + [False], highlight=data["noisy"].tolist(),
                               caption="PPC one-way streams: ns per call and calls per second",
                               notes=notes, max_rows=SECTION_ROWS_PER_PAGE)]
    return blocks + _lines(one_way_lines(data))


def soft_interrupt_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """K42's soft-interrupt entry (ppc_sigio) beside the parked pipe
    server; nothing when the run has no ppc_sigio point."""
    data = soft_interrupt_table(run, family)
    if data.empty:
        return []
    header = ["mode", "peer", "placement", "batch", "n", "reps", "sigio [ns/call]",
              "95% CI [ns]", "pipe, parked [ns/call]", "sigio / pipe", "interval",
              "calls/entry", ""]
    rows = [[r["mode"], r["peer"], r["placement"], str(r["batch"]), str(r["n"]), str(r["reps"]),
             fmt_finite(r["median"]), _interval(r["ci_low"], r["ci_high"]),
             fmt_finite(r["pipe_median"]), fmt_ratio(r["over_pipe"]),
             fmt_ratio_interval(r["over_pipe_low"], r["over_pipe_high"])
             if math.isfinite(r["over_pipe"]) else "-",
             fmt_value(r["calls_per_signal"]), NOISY_MARK if r["noisy"] else ""]
            for _, r in data.iterrows()]
    notes = ["ppc_sigio: the server never waits; it spins in its own loop, and each write() "
             "to its O_ASYNC request pipe makes the kernel send its thread SIGUSR2 "
             "(F_SETSIG, F_SETOWN_EX F_OWNER_TID); the handler, K42's special entry point, "
             "serves what the pipe holds and replies. ppc_pipe: the same pipes, the server "
             "parked in read()",
             "sigio / pipe: the medians' ratio, interval: the 95% CIs divided crosswise; "
             "calls/entry: requests served per handler entry (the workers' counters; a "
             "SIGUSR2 already pending absorbs the next write's)"]
    blocks: list[Block] = [Space(0.05), Table(
        header, rows, right=[False] * 3 + [True] * 9 + [False], highlight=data["noisy"].tolist(),
        caption="K42's asynchronous PPC entered by a soft interrupt (SIGIO) against a parked "
                "server", notes=notes, max_rows=SECTION_ROWS_PER_PAGE)]
    return blocks + _lines(soft_interrupt_lines(data))


def accounting_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """K42's accounting table, then the MSG_RING / eventfd receivers and
    the verdict on the public disagreement."""
    data = ppc_accounting(run, family)
    if data.empty:
        return [Text(accounting_line(data), size=9.5)]
    header = ["transport", "mode", "peer", "placement", "receiver", "batch", "ns/call",
              "client CPU [ns/call]", "server CPU [ns/call]", "server's share",
              "sched_switch: client / server", ""]

    def row(r) -> list[str]:
        probed = (f"{fmt_finite(r['probe_client_cpu_ns_per_call'])} / "
                  f"{fmt_finite(r['probe_server_cpu_ns_per_call'])}"
                  if pd.notna(r["probe_server_cpu_ns_per_call"]) else "-")
        return [r["transport"], r["mode"], r["peer"], r["placement"], r["receiver"],
                str(r["batch"]), fmt_finite(r["median"]), fmt_finite(r["client_cpu_ns_per_call"]),
                fmt_finite(r["server_cpu_ns_per_call"]), fmt_ratio(r["server_cpu_fraction"])[:-1],
                probed, NOISY_MARK if r["noisy"] else ""]

    right = [False] * 5 + [True] * 6 + [False]
    notes = ["ns/call: mode sync, a round trip; async, a batch's time / batch.  CPU per call: "
             "the CPU clocks of the client thread and of the server (its thread's "
             "CLOCK_THREAD_CPUTIME_ID) over the window, / the window's calls (medians over the "
             "runs); server's share: server / (client + server), what Linux charged to the "
             "server that K42 would charge to the caller",
             "sched_switch: the same charge from the probes, the window minus each thread's "
             "time off CPU (sched_switch out to in), / the window's calls, medians over the "
             "runs with probes ('-' without a kernel view): wall time on the CPU, so it also "
             "holds interrupts, a vCPU's steal time and the probes' own time, which a task's "
             "runtime (its clock) leaves out"]
    blocks: list[Block] = [Space(0.05), Table(header, [row(r) for _, r in data.iterrows()],
                                              right=right, highlight=data["noisy"].tolist(),
                                              caption="Time charged to the caller vs spent "
                                                      "for it", notes=notes,
                                              max_rows=SECTION_ROWS_PER_PAGE)]
    blocks += _lines([accounting_line(data)] + [x for x in [probe_agreement_line(data)] if x])
    rec = receiver_table(data)
    if not rec.empty:
        rows = [[r["transport"], r["mode"], r["peer"], r["placement"], r["receiver"],
                 str(r["batch"]), fmt_finite(r["median"]), _interval(r["ci_low"], r["ci_high"]),
                 NOISY_MARK if r["noisy"] else ""] for _, r in rec.iterrows()]
        blocks += [Space(0.05), Table(["transport", "mode", "peer", "placement", "receiver",
                                       "batch", "ns/call", "95% CI [ns]", ""], rows,
                                      right=[False] * 5 + [True] * 3 + [False],
                                      highlight=rec["noisy"].tolist(),
                                      caption="MSG_RING (plain and to a DEFER_TASKRUN ring) "
                                              "against eventfd, the server parked or spinning",
                                      max_rows=SECTION_ROWS_PER_PAGE)]
        blocks += _lines([msg_ring_verdict(data)])
    return blocks


def section_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """Everything the section adds after the generic tables, in order."""
    return (findings_blocks(run, family) + reply_port_blocks(run, family)
            + _msgport_upcall.blocks(run, family) + flushsys_blocks(run, family)
            + live_blocks(run, family) + ppc_blocks(run, family)
            + accounting_blocks(run, family))


# -- figures ---------------------------------------------------------------------------------

def mode_colors() -> dict[str, Any]:
    """One colour per reply-port mode and per PPC transport (they never share
    a figure)."""
    return {**dict(zip(PORTS, plots.palette(len(PORTS)))),
            **dict(zip(PPC_ROWS, plots.palette(len(PPC_ROWS))))}


MARKERS = dict(zip(PORTS, "osD^v"))
JITTER = 1.06           # x factor between neighbouring modes in port_batch_plot


def port_batch_plot(ax, rows: pd.DataFrame, value: str = "median", ylabel: str = "ns per message",
                    title: str | None = None, legend: bool = True) -> None:
    """One reply-port op: ``value`` against the batch (log x), one line per
    mode; for the median, the 95% CI as whiskers."""
    colors = mode_colors()
    values = []
    for i, mode in enumerate(PORTS):
        part = rows[rows["mode"] == mode].sort_values("batch")
        y = part[value].astype(float).to_numpy()
        if part.empty or not np.isfinite(y).any():
            continue
        # each mode a little apart along x: equal values (the system call
        # counts of poll and deferred) would hide each other
        x = part["batch"].astype(float).to_numpy() * JITTER ** (i - (len(PORTS) - 1) / 2)
        if value == "median":
            low, high = part["ci_low"].astype(float), part["ci_high"].astype(float)
            ax.errorbar(x, y, yerr=[np.maximum(y - low, 0), np.maximum(high - y, 0)],
                        color=colors[mode], marker=MARKERS[mode], markersize=4, linewidth=1.3,
                        capsize=3, elinewidth=0.8, label=mode)
            values += list(low) + list(high)
        else:
            ax.plot(x, y, color=colors[mode], marker=MARKERS[mode], markersize=4, linewidth=1.3,
                    label=mode)
        values += list(y)
    batches = sorted(set(rows["batch"].astype(int)))
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.minorticks_off()
    if len(batches) == 1:
        ax.set_xlim(batches[0] / 2, batches[0] * 2)
    ax.set_xlabel("batch: messages per io_uring_enter() (log scale)")
    finite = [v for v in values if np.isfinite(v) and v > 0]
    log = plots.spans_decades(finite)
    if log:
        ax.set_yscale("log")
        plots.plain_log_ticks(ax, "y")
    else:
        ax.set_ylim(0, max(finite) * 1.1 if finite else 1)
    ax.set_ylabel(ylabel + (" (log scale)" if log else ""))
    ax.grid(True, which="major", color="0.88", linewidth=0.6)
    if title:
        ax.set_title(title, parse_math=False)
    if legend:
        ax.legend(fontsize=7, frameon=False)


def port_figures(report: Report, family: str = FAMILY) -> None:
    run = report.run
    table = reply_port_table(run, family)
    if table.empty:
        return
    ops = [o for o in OPS if (table["op"] == o).any()]
    ncols = 1 if len(ops) == 1 else 2
    nrows = -(-len(ops) // ncols)
    with report.figure(f"{family}: reply ports, ns per message against the batch",
                       nrows=nrows, ncols=ncols,
                       caption="Median ns per message (user-side runs) against messages per "
                               "io_uring_enter() (port_sync: system calls per sample), one line "
                               "per reply-port mode, one panel per op; whiskers: 95% CI of the "
                               "median. The modes sit a little apart along x so that equal "
                               "values stay visible.") as (fig, axes):
        for ax, op in zip(axes, ops):
            port_batch_plot(ax, table[table["op"] == op], title=f"op={op}")
    kernel = np.isfinite(table["kernel_syscalls_per_message"].astype(float)).any()
    value = "kernel_syscalls_per_message" if kernel else "syscalls_per_message"
    source = ("the kernel view (raw_syscalls:sys_enter per message, runs with probes)" if kernel
              else "the workers' own count (" + _no_kernel(run, family) + ")")
    with report.figure(f"{family}: reply ports, system calls per message against the batch",
                       nrows=nrows, ncols=ncols,
                       caption=f"System calls per message from {source}, one line per mode, "
                               "one panel per op. sendsys() is one enter per batch; waitsys() "
                               "and the eventfd read add one per batch; the polled port adds "
                               "none; port_sync makes one per message; pipe_read adds the "
                               "caller's own write() per batch. The modes sit a little apart "
                               "along x so that equal values stay visible.") as (fig, axes):
        for ax, op in zip(axes, ops):
            port_batch_plot(ax, table[table["op"] == op], value=value,
                            ylabel="system calls per message", title=f"op={op}")


def ppc_bars_plot(ax, rows: pd.DataFrame, title: str | None = None,
                  legend: bool = True) -> None:
    """Round-trip medians [us] of one peer, grouped by transport, a bar per
    placement (log y), whiskers up to the p99."""
    transports = [t for t in PPC_ROWS if (rows["transport"] == t).any()]
    x = np.arange(len(transports))
    width = 0.38
    colors = {SAME: "#6baed6", CROSS: "#fd8d3c"}
    tops = []
    for j, placement in enumerate(PLACEMENTS):
        part = rows[rows["placement"] == placement].set_index("transport")
        med = np.array([float(part.loc[t, "median"]) / 1000 if t in part.index else np.nan
                        for t in transports])
        p99 = np.array([float(part.loc[t, "p99"]) / 1000 if t in part.index else np.nan
                        for t in transports])
        if not np.isfinite(med).any():
            continue
        pos = x + (j - 0.5) * width
        ax.bar(pos, med, width, color=colors[placement], edgecolor="0.35", linewidth=0.6,
               label=f"{placement}: median")
        ax.errorbar(pos, med, yerr=[np.zeros_like(med), np.maximum(p99 - med, 0)], fmt="none",
                    ecolor="black", elinewidth=0.9, capsize=3,
                    label="p99" if j == len(PLACEMENTS) - 1 else None)
        for xi, m in zip(pos, med):
            if np.isfinite(m):
                ax.annotate(fmt_value(m), (xi, m), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=6.5)
        tops += list(med) + list(p99)
    ax.set_yscale("log")
    finite = [v for v in tops if np.isfinite(v) and v > 0]
    if finite:
        ax.set_ylim(min(finite) / 2, max(finite) * 2.5)
    plots.plain_log_ticks(ax, "y")
    ax.set_xticks(x)
    ax.set_xticklabels([t.replace("ppc_", "").replace("perf_bench_pipe", "perf bench\npipe")
                        for t in transports], fontsize=8)
    ax.set_ylabel("round trip [us] (log scale)")
    ax.grid(True, which="major", axis="y", color="0.88", linewidth=0.6)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title, parse_math=False)
    if legend:
        ax.legend(fontsize=7, frameon=False, loc="upper left")


def ppc_figure(report: Report, family: str = FAMILY) -> None:
    rt = ppc_round_trips(report.run, family)
    if rt.empty:
        return
    peers = [p for p in PEERS if (rt["peer"] == p).any()]
    with report.figure(f"{family}: PPC round trips by transport, same vs cross CPU",
                       ncols=len(peers),
                       caption="Bars: median round trip (user-side runs), on the worker's CPU "
                               "(blue) and with the server on the other CPU (orange); whiskers "
                               "up to the p99; log y. perf bench's cross_cpu bar is not pinned "
                               "apart (perf 6.1 cannot): the kernel placed its two tasks.") \
            as (fig, axes):
        for i, (ax, peer) in enumerate(zip(axes, peers)):
            ppc_bars_plot(ax, rt[rt["peer"] == peer], title=f"server: a {peer}",
                          legend=i == 0)


def live_curves(run: Run, rows: pd.DataFrame, family: str = FAMILY) -> list[tuple]:
    """plots.cdf_curves input: each live row's user-side samples in us."""
    samples = headline_samples(run, family)
    colors = dict(zip(LIVE, plots.palette(len(LIVE))))
    curves = []
    for _, r in rows.iterrows():
        values = samples.loc[(samples["variant"].astype(str) == r["variant"])
                             & (samples["point"].astype(str) == r["point"]), "value"]
        label = r["variant"] + (f" count={r['count']}" if is_set(r["count"]) else "")
        style = "-" if r["shot"] == "multishot" else "--"
        if r["shot"] == "multishot" and is_set(r["count"]):
            counts = sorted(set(rows.loc[rows["shot"] == "multishot", "count"]))
            style = ("-", ":", "-.")[counts.index(r["count"]) % 3]
        curves.append((label, values.to_numpy(dtype=float) / 1000,
                       {"color": colors[r["variant"]], "linestyle": style}))
    return curves


def live_groups(data: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows): timeouts, then polls per placement."""
    out = []
    for (kind, placement), part in data.groupby(["kind", "placement"], sort=False):
        metric = part["metric"].iloc[0]
        title = f"{kind}s: {metric}" + (f", source {placement}" if placement != "-" else "")
        out.append((title, part))
    return out


def live_figure(report: Report, family: str = FAMILY) -> None:
    data = live_table(report.run, family)
    if data.empty:
        return
    groups = live_groups(data)
    ncols = min(len(groups), 3)
    with report.figure(f"{family}: live messages, multishot and re-armed one-shot",
                       ncols=ncols, nrows=-(-len(groups) // ncols),
                       caption="Empirical CDF of every completion's lateness (timeouts) or "
                               "latency (polls), user-side runs, repetitions pooled, log x; "
                               "one-shot dashed. The x axis ends at the slowest curve's p99.9; "
                               "each legend entry gives n and the largest sample.") \
            as (fig, axes):
        for ax, (title, rows) in zip(axes, groups):
            plots.cdf_curves(ax, live_curves(report.run, rows, family),
                             xlabel=f"{rows['metric'].iloc[0]} [us]", log=True, title=title,
                             legend=False)
            plots.plain_log_ticks(ax, "x")
            plots.legend_below(ax, ncol=1, fontsize=7)


__all__ = ["port_batch_plot", "ppc_bars_plot", "live_curves", "live_groups", "mode_colors"]
