"""The msgport family's analysis (seed 001: DragonFly's system calls as
messages, sendsys / waitsys / flushsys and reply-port modes, live
messages; seed 004: K42's protected procedure calls), every number
computed from the stored run; the report lays it out in
analysis.sections.msgport, the notebook calls it directly:

- reply ports: one table per op, a row per mode (port_poll, port_wait,
  port_eventfd, port_deferred, port_sync) and batch: ns per message
  (median, 95% CI, p99; the user-side runs), system calls and SQEs per
  message from the kernel view (the runs with probes; "no kernel view"
  and why, when there is none) beside the workers' own count, and
  completions per submission; a line per op: the cheapest mode at batch
  1 and at the largest batch, and the polled port against plain system
  calls;
- flushsys(): port_deferred's counters that show the flushes (batches
  flagged IORING_SQ_TASKRUN, reaping enters per batch, replies already in
  the CQ ring when the submitting enter returned) and the kernel's count of
  deferred task-work runs (io_uring:io_uring_local_work_run) per batch,
  with a line on how many io_uring_get_events() calls a batch took against
  the 20-item cap per flush of Linux 6.13 and later;
- live messages: multishot timeout and poll against re-armed one-shot
  ones: lateness or latency (median, p99), completions per submission (the
  workers' count) and SQEs, CQEs, system calls and wake-ups per completion
  (kernel view); a line per kind and placement;
- PPC round trips (mode = sync): transport x peer (thread / process) x
  placement (same / cross CPU): median, p99, system calls and cross-CPU
  wake-ups per round trip, with ``perf bench sched pipe`` as the row right
  after ppc_pipe at the same peer and placement and ppc_pipe's median over
  perf's; the caveat that perf's cross_cpu rows are not pinned apart,
  computed once from their wake-ups (or medians);
- PPC one-way streams (mode = async): ns per call, calls per second (1e9
  / the median), the share of a round trip it costs, system calls per call
  (kernel) and calls per server drain;
- "what this run shows": the cheapest reply port per op and batch, MSG_RING
  against the other transports on one CPU and across two, our pipe round
  trip against perf bench's, and the cross/same ratio of the round trips
  (the halted vCPU's wake-up) beside the baseline family's futex ping-pong
  when that family is in the same run.

A run without PPC, without perf bench, without the baseline family or
without reply ports says so in one line where the missing part would be.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis._counters import counter_summary, kernel_per_op, with_params
from analysis._format import fmt_count, fmt_finite, fmt_rate, fmt_ratio, fmt_ratio_interval, fmt_us, fmt_value
from analysis._results import Run
from analysis._views import (
    cached_per_run,
    family_summary,
    halted_vcpu_clause,
    headline,
    is_set,
    median_ratio,
    plain_param,
    run_sources,
    user_side_note,
)
from lab.families import msgport as fam

FAMILY = "msgport"
# DragonFly's reply-port modes, the family's order
PORTS = tuple(f"port_{m}" for m in fam.MODES)
POLL, WAIT, DEFERRED, SYNC = "port_poll", "port_wait", "port_deferred", "port_sync"
OPS = tuple(fam.OPS)
LIVE = tuple(fam.LIVE)
# K42's PPC transports, the family's order; perf bench goes right after the pipe
TRANSPORTS = tuple(f"ppc_{t}" for t in fam.TRANSPORTS)
MSG_RING, PIPE, PERF = "ppc_msg_ring", "ppc_pipe", "ppc_perf_bench_pipe"
# K42's soft-interrupt entry: ppc_pipe's pipes, the server entered by SIGIO
SIGIO = "ppc_sigio"
PPC_ROWS = TRANSPORTS[:TRANSPORTS.index(PIPE) + 1] + (PERF,) \
    + TRANSPORTS[TRANSPORTS.index(PIPE) + 1:]
PEERS = ("thread", "process")
SAME, CROSS = "same_cpu", "cross_cpu"
PLACEMENTS = (SAME, CROSS)
NS_PER_MESSAGE, NS_PER_CALL = fam.NS_PER_MESSAGE.name, fam.NS_PER_CALL.name
LATENESS, LATENCY = fam.LATENESS.name, fam.LATENCY.name
# Linux 6.13+: one flush of deferred task work runs at most this many items
# when the caller does not wait for more (IO_LOCAL_TW_DEFAULT_MAX)
LOCAL_TW_MAX = 20
# the baseline family's futex ping-pong: the yardstick for cross / same CPU
BASELINE, PINGPONG, ROUND_TRIP, HANDOFF = "baseline", "futex_pingpong", "round_trip", "handoff"

# the workers' counters each table shows (medians over the user-side runs)
PORT_COUNTERS = ("completions_per_submission", "syscalls_per_message",
                 "reap_syscalls_per_message", "taskrun_flagged_per_batch",
                 "ready_at_submit_fraction")
LIVE_COUNTERS = ("completions_per_submission", "max_completions_per_submission",
                 "drift_per_completion_ns", "cancels")
PPC_COUNTERS = ("calls_per_drain", "calls_per_signal", "cpus_allowed", "missing_replies",
                "duplicate_replies")
# the kernel view, per operation (one message, one completion, one call)
PORT_KERNEL = {"kernel_syscalls_per_message": "syscalls_per_op",
               "kernel_sqes_per_message": "submits_per_op",
               "kernel_local_work_runs_per_message": "uring_local_work_runs"}
LIVE_KERNEL = {"kernel_sqes_per_completion": "submits_per_op",
               "kernel_cqes_per_completion": "completions_per_op",
               "kernel_syscalls_per_completion": "syscalls_per_op",
               "kernel_wakeups_per_completion": "wakeups_per_op"}
PPC_KERNEL = {"kernel_syscalls_per_call": "syscalls_per_op",
              "kernel_wakeups_per_call": "wakeups_per_op",
              "kernel_cross_cpu_wakeups_per_call": "wakeups_cross_cpu"}

NO_PORTS_LINE = ("This run has no reply-port variant (port_poll, port_wait, port_eventfd, "
                 "port_deferred, port_sync): add [[msgport]] variants = [\"port_poll\", "
                 "\"port_sync\"] batch = [1, 8, 64] to the suite.")
NO_DEFERRED_LINE = ("This run has no port_deferred point: no flushsys() to show (add it to the "
                    "reply-port table of the suite; op = \"pipe_read\" makes it flush).")
NO_LIVE_LINE = ("This run has no live-message variant (live_multishot_timeout, "
                "live_oneshot_timeout, live_multishot_poll, live_oneshot_poll).")
NO_PPC_LINE = ("This run has no PPC variant (ppc_msg_ring, ppc_futex, ppc_eventfd, ppc_pipe, "
               "ppc_unix_socket): add [[msgport]] variants = [\"ppc_msg_ring\", \"ppc_pipe\"] "
               "mode = \"sync\" placement = [\"same_cpu\", \"cross_cpu\"] to the suite.")
NO_PERF_LINE = ("This run has no ppc_perf_bench_pipe beside ppc_pipe at the same peer and "
                "placement: add ppc_perf_bench_pipe to the PPC table of the suite (it needs "
                "perf and taskset) to set our pipe round trip beside perf bench sched pipe.")
NO_ONE_WAY_LINE = ("This run has no one-way PPC stream (mode = \"async\"): no calls per second "
                   "to show.")
NO_BASELINE_LINE = ("This run has no baseline futex_pingpong on one CPU and across two to set "
                    "the cross/same ratio beside: add [baseline] variants = "
                    "[\"futex_pingpong\"] placement = [\"same_cpu\", \"cross_cpu\"] to the "
                    "suite.")


# -- helpers ---------------------------------------------------------------------------------

def _short(variant: str) -> str:
    """port_poll -> poll, ppc_msg_ring -> msg_ring (for sentences)."""
    for prefix in ("port_", "ppc_"):
        if variant.startswith(prefix):
            return variant[len(prefix):]
    return variant


def _cells(run: Run, family: str, variants, counters=(), kernel: dict | None = None,
           seed: int = 0) -> pd.DataFrame:
    """The headline summary (user-side runs) of ``variants``, one row per
    (variant, point), with the point's parameters, the medians over the
    user-side runs of ``counters`` and the kernel view's ``kernel`` (name:
    probe metric, per operation; NaN without a kernel view) and
    kernel_reps."""
    head = headline(run, family, seed)
    head = head[head["variant"].astype(str).isin(variants)]
    if head.empty:
        return pd.DataFrame()
    data = with_params(run, family, head.reset_index(drop=True))
    data["variant"] = data["variant"].astype(str)
    data["point"] = data["point"].astype(str)
    key = list(zip(data["variant"], data["point"]))
    summary = cached_per_run(run, "msgport", ("counters", family, seed),
                      lambda: counter_summary(run, family, seed=seed))
    for name in counters:
        med = summary[summary["counter"] == name].set_index(["variant", "point"])["median"]
        data[name] = [float(med.get(k, math.nan)) for k in key]
    kernel = kernel or {}
    kv = cached_per_run(run, "msgport", ("kernel", family, seed, tuple(kernel.items())),
                 lambda: kernel_per_op(run, family, kernel, seed)).set_index(["variant", "point"])
    for name in list(kernel) + ["kernel_reps"]:
        col = kv[name] if name in kv.columns else pd.Series(dtype=float)
        data[name] = [float(col.get(k, math.nan)) if k in col.index else math.nan for k in key]
    data["kernel_reps"] = data["kernel_reps"].fillna(0).astype(int)
    return data


def _order(data: pd.DataFrame, keys: dict[str, Any]) -> pd.DataFrame:
    """Rows sorted by ``keys`` (column: order tuple, or None for numeric)."""
    sort = pd.DataFrame(index=data.index)
    for col, order in keys.items():
        if order is None:
            sort[col] = pd.to_numeric(data[col], errors="coerce").fillna(-1)
        else:
            rank = {v: i for i, v in enumerate(order)}
            sort[col] = data[col].map(lambda v: rank.get(v, len(rank)))
    return data.loc[sort.sort_values(list(keys), kind="stable").index].reset_index(drop=True)


# -- data: reply ports (sendsys / waitsys / flushsys) -------------------------------------------

PORT_COLUMNS = ["variant", "point", "mode", "op", "batch", "n", "reps", "median", "p90", "p99",
                "ci_low", "ci_high", "rep_min", "rep_max", "noisy", *PORT_COUNTERS,
                *PORT_KERNEL, "kernel_local_work_runs_per_batch", "kernel_reps"]


def reply_port_table(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per reply-port variant and point: ``mode`` (the variant),
    ``op``, ``batch``; the ns_per_message summary of the user-side runs
    (n, reps, median, p90, p99, ci_low / ci_high, rep_min / rep_max,
    noisy); the workers' counters (PORT_COUNTERS, medians over the runs:
    completions_per_submission, their own syscalls_per_message, ...); the
    kernel view per message (kernel_syscalls_per_message,
    kernel_sqes_per_message, kernel_local_work_runs_per_message and, times
    the batch, kernel_local_work_runs_per_batch: NaN without a kernel
    view).  Rows by op, mode, batch."""
    return cached_per_run(run, "msgport", ("ports", family, seed),
                          lambda: _reply_port_table(run, family, seed))


def _reply_port_table(run: Run, family: str, seed: int) -> pd.DataFrame:
    data = _cells(run, family, PORTS, PORT_COUNTERS, PORT_KERNEL, seed)
    if data.empty:
        return pd.DataFrame(columns=PORT_COLUMNS)
    data["mode"] = data["variant"]
    data["op"] = data["op"].astype(str)
    data["batch"] = [int(plain_param(b)) for b in data["batch"]]
    data["kernel_local_work_runs_per_batch"] = \
        data["kernel_local_work_runs_per_message"] * data["batch"]
    data = _order(data, {"op": OPS, "mode": PORTS, "batch": None})
    return data[PORT_COLUMNS]


def _port(table: pd.DataFrame, op: str, mode: str, batch: int):
    hit = table[(table["op"] == op) & (table["mode"] == mode) & (table["batch"] == batch)]
    return None if hit.empty else hit.iloc[0]


def cheapest_port(table: pd.DataFrame, op: str, batch: int) -> dict | None:
    """The mode with the lowest median ns per message for ``op`` at
    ``batch``: {best, runner_up (row or None), ratio (runner-up / best),
    low, high (the CIs divided crosswise), told_apart (low > 1)}."""
    rows = table[(table["op"] == op) & (table["batch"] == batch)]
    rows = rows[np.isfinite(rows["median"].astype(float))]
    if rows.empty:
        return None
    rows = rows.sort_values("median", kind="stable")
    best = rows.iloc[0]
    if len(rows) == 1:
        return {"best": best, "runner_up": None, "ratio": math.nan, "low": math.nan,
                "high": math.nan, "told_apart": True}
    second = rows.iloc[1]
    ratio, low, high = median_ratio(second, best)
    return {"best": best, "runner_up": second, "ratio": ratio, "low": low, "high": high,
            "told_apart": bool(low > 1)}


def _cheapest_text(c: dict) -> str:
    b = c["best"]
    text = f"{b['mode']}, {fmt_finite(b['median'])} ns per message"
    r = c["runner_up"]
    if r is None:
        return text + " (the only mode measured)"
    if c["told_apart"]:
        return text + f" (next: {r['mode']}, {fmt_ratio(c['ratio'])} it)"
    return (text + f" (not told apart from {r['mode']}, {fmt_ratio(c['ratio'])} it, 95% "
            f"interval {fmt_ratio_interval(c['low'], c['high'])})")


def poll_against_sync(table: pd.DataFrame, op: str) -> list[dict]:
    """Per batch where both ran: port_poll's median over port_sync's, with
    the CIs divided crosswise: {batch, ratio, low, high}."""
    out = []
    for batch in sorted(set(table.loc[table["op"] == op, "batch"])):
        poll, sync = _port(table, op, POLL, batch), _port(table, op, SYNC, batch)
        if poll is None or sync is None:
            continue
        ratio, low, high = median_ratio(poll, sync)
        out.append({"batch": batch, "ratio": ratio, "low": low, "high": high})
    return out


def poll_verdict(vs: list[dict]) -> str:
    """Where the polled port is cheaper than plain system calls, dearer, or
    not told apart (95% intervals), by batch."""
    groups = {"cheaper at": [v["batch"] for v in vs if v["high"] < 1],
              "dearer at": [v["batch"] for v in vs if v["low"] > 1],
              "not told apart at": [v["batch"] for v in vs if v["low"] <= 1 <= v["high"]]}
    if len(groups["cheaper at"]) == len(vs):
        return "the polled port is cheaper than plain system calls at every batch measured"
    if len(groups["dearer at"]) == len(vs):
        return "plain system calls are cheaper at every batch measured"
    return "the polled port is " + ", ".join(
        f"{what} batch {', '.join(str(b) for b in batches)}"
        for what, batches in groups.items() if batches)


def port_lines(table: pd.DataFrame) -> list[str]:
    """Per op: the cheapest mode at batch 1 (or the smallest batch) and at
    the largest batch, and the polled port against plain system calls."""
    if table.empty:
        return [NO_PORTS_LINE]
    lines = []
    for op in [o for o in OPS if (table["op"] == o).any()]:
        batches = sorted(set(table.loc[table["op"] == op, "batch"]))
        first, last = batches[0], batches[-1]
        parts = []
        for batch in dict.fromkeys((first, last)):
            c = cheapest_port(table, op, batch)
            if c is not None:
                parts.append(f"at batch {batch} {_cheapest_text(c)}")
        text = f"op={op}: the cheapest reply port " + "; ".join(parts)
        vs = poll_against_sync(table, op)
        if vs:
            text += ("; port_poll over port_sync: " + ", ".join(
                f"{fmt_ratio(v['ratio'])} at batch {v['batch']}" for v in vs))
            text += ": " + poll_verdict(vs)
        lines.append(text + ".")
    return lines


# -- data: flushsys() ----------------------------------------------------------------------------

FLUSH_COLUMNS = ["op", "batch", "median", "ready_at_submit_fraction",
                 "taskrun_flagged_per_batch", "reaps_per_batch", "kernel_local_work_runs_per_batch",
                 "kernel_syscalls_per_message", "wait_reaps_per_batch", "cap_flushes"]


def flushsys_table(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """port_deferred per op and batch: its ns per message median, the share
    of batches whose replies were all in the CQ ring when the submitting
    enter returned (ready_at_submit_fraction), batches flagged
    IORING_SQ_TASKRUN (taskrun_flagged_per_batch), reaping enters per batch
    (reaps_per_batch: io_uring_get_events() flushes and GETEVENTS waits, the
    workers' reap_syscalls), the kernel's runs of deferred task work per
    batch (io_uring:io_uring_local_work_run; NaN without a kernel view),
    port_wait's reaping enters at the same point (wait_reaps_per_batch), and
    ``cap_flushes``: ceil(batch / 20), the flushes a batch of late replies
    needs under Linux 6.13's 20-item cap per flush."""
    table = reply_port_table(run, family, seed)
    rows = table[table["mode"] == DEFERRED].copy()
    if rows.empty:
        return pd.DataFrame(columns=FLUSH_COLUMNS)
    rows["reaps_per_batch"] = rows["reap_syscalls_per_message"] * rows["batch"]
    waits = []
    for _, r in rows.iterrows():
        w = _port(table, r["op"], WAIT, r["batch"])
        waits.append(float(w["reap_syscalls_per_message"]) * r["batch"] if w is not None
                     else math.nan)
    rows["wait_reaps_per_batch"] = waits
    rows["cap_flushes"] = [math.ceil(b / LOCAL_TW_MAX) for b in rows["batch"]]
    return rows[FLUSH_COLUMNS].reset_index(drop=True)


def flushsys_lines(data: pd.DataFrame) -> list[str]:
    """What the deferred port's counters say: which ops it had to flush for,
    and how many io_uring_get_events() calls a batch took."""
    if data.empty:
        return [NO_DEFERRED_LINE]
    lines = []
    inline = []
    for op in [o for o in OPS if (data["op"] == o).any()]:
        rows = data[data["op"] == op].sort_values("batch")
        flagged = rows["taskrun_flagged_per_batch"].astype(float)
        if not (flagged.fillna(0) > 0).any():
            ready = rows["ready_at_submit_fraction"].astype(float)
            inline.append((op, float(ready.min()) if ready.notna().any() else math.nan))
            continue
        parts = []
        for _, r in rows.iterrows():
            text = f"{fmt_count(r['reaps_per_batch'])} at batch {r['batch']}"
            runs = r["kernel_local_work_runs_per_batch"]
            if math.isfinite(runs):
                text += f" (kernel: {fmt_value(runs)} task-work runs)"
            parts.append(text)
        text = (f"op={op}: IORING_SQ_TASKRUN was set in {float(flagged.min()):.0%} of the "
                f"batches (lowest over the batch sizes), so the port flushed: reaping enters "
                f"per batch (io_uring_get_events() and GETEVENTS waits) " + ", ".join(parts))
        waits = rows["wait_reaps_per_batch"].astype(float)
        if waits.notna().any():
            text += ("; port_wait reaped the same batches with " + ", ".join(
                f"{fmt_count(w)}" for w in waits) + " enter(s) each")
        big = rows[rows["batch"] > LOCAL_TW_MAX]
        for _, r in big.iterrows():
            measured = r["reaps_per_batch"]
            text += (f". At batch {r['batch']}, {fmt_count(measured)} per batch where Linux 6.13's "
                     f"cap of {LOCAL_TW_MAX} task-work items per flush (IO_LOCAL_TW_DEFAULT_MAX, "
                     f"when the caller is not waiting for more) gives ceil({r['batch']}/"
                     f"{LOCAL_TW_MAX}) = {r['cap_flushes']}"
                     + (": the cap accounts for them" if math.isclose(measured, r["cap_flushes"])
                        else ": the cap alone does not account for them"))
        lines.append(text + ".")
    if inline:
        lines.append(", ".join(f"op={op}" for op, _ in inline)
                     + ": never flagged IORING_SQ_TASKRUN; the replies were in the CQ ring when "
                       "the submitting enter returned in "
                     + ", ".join(f"{v:.0%}" if math.isfinite(v) else "-" for _, v in inline)
                     + " of the batches (lowest over the batch sizes): they complete inline, so "
                       "the deferred port needs no flushsys() for them.")
    return lines


# -- data: live messages -------------------------------------------------------------------------

LIVE_COLUMNS = ["variant", "point", "kind", "shot", "count", "interval_us", "placement",
                "metric", "n", "reps", "median", "p90", "p99", "ci_low", "ci_high", "rep_min",
                "rep_max", "noisy", *LIVE_COUNTERS, *LIVE_KERNEL, "kernel_reps"]


def live_table(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per live-message variant and point: ``kind`` (timeout or
    poll), ``shot`` (multishot or oneshot), count, interval_us, placement
    (poll; "-" for timeouts), the headline (lateness or latency) summary,
    the workers' counters (LIVE_COUNTERS: completions per submission, ...)
    and the kernel view per completion (SQEs, CQEs, system calls,
    wake-ups)."""
    return cached_per_run(run, "msgport", ("live", family, seed), lambda: _live_table(run, family, seed))


def _live_table(run: Run, family: str, seed: int) -> pd.DataFrame:
    data = _cells(run, family, LIVE, LIVE_COUNTERS, LIVE_KERNEL, seed)
    if data.empty:
        return pd.DataFrame(columns=LIVE_COLUMNS)
    data["kind"] = ["timeout" if v.endswith("timeout") else "poll" for v in data["variant"]]
    data["shot"] = ["multishot" if "multishot" in v else "oneshot" for v in data["variant"]]
    # a one-shot request has no count (the family reads it for multishot only)
    data["count"] = pd.array([plain_param(v) if is_set(v) and shot == "multishot" else None
                              for v, shot in zip(data["count"], data["shot"])], dtype="Int64")
    data["interval_us"] = pd.array([plain_param(v) if is_set(v) else None
                                    for v in data["interval_us"]], dtype="Int64")
    data["placement"] = [str(p) if k == "poll" and is_set(p) else "-"
                         for p, k in zip(data["placement"], data["kind"])]
    data["metric"] = data["metric"].astype(str)
    data = _order(data, {"kind": ("timeout", "poll"), "placement": PLACEMENTS + ("-",),
                         "shot": ("multishot", "oneshot"), "count": None})
    return data[LIVE_COLUMNS]


def live_pairs(data: pd.DataFrame) -> list[dict]:
    """Every multishot row against the one-shot row of the same kind,
    interval and placement: {multishot, oneshot, ratio, low, high}."""
    out = []
    for _, m in data[data["shot"] == "multishot"].iterrows():
        one = data[(data["shot"] == "oneshot") & (data["kind"] == m["kind"])
                   & (data["placement"] == m["placement"])
                   & (data["interval_us"].astype(str) == str(m["interval_us"]))]
        if one.empty:
            continue
        o = one.iloc[0]
        out.append({"multishot": m, "oneshot": o, **dict(zip(("ratio", "low", "high"),
                                                             median_ratio(m, o)))})
    return out


def live_lines(data: pd.DataFrame) -> list[str]:
    if data.empty:
        return [NO_LIVE_LINE]
    lines = []
    pairs = live_pairs(data)
    for p in pairs:
        m, o = p["multishot"], p["oneshot"]
        where = f"{m['kind']} every {m['interval_us']} us" + \
            (f", source {m['placement']}" if m["placement"] != "-" else "")
        verdict = ("later than" if p["low"] > 1 else "earlier than" if p["high"] < 1
                   else "not told apart from")
        text = (f"{where}: multishot count={m['count']} {m['metric']} median {fmt_us(m['median'])} "
                f"us (p99 {fmt_us(m['p99'])}) against the re-armed one-shot's {fmt_us(o['median'])} "
                f"us (p99 {fmt_us(o['p99'])}): {fmt_ratio(p['ratio'])} (95% interval "
                f"{fmt_ratio_interval(p['low'], p['high'])}), {verdict} it; "
                f"{fmt_value(m['completions_per_submission'])} completions per submission "
                f"against {fmt_value(o['completions_per_submission'])}")
        if math.isfinite(m["kernel_sqes_per_completion"]):
            text += (f"; the kernel saw {fmt_finite(m['kernel_sqes_per_completion'])} SQEs per "
                     f"completion against {fmt_finite(o['kernel_sqes_per_completion'])}, and "
                     f"{fmt_finite(m['kernel_syscalls_per_completion'])} system calls against "
                     f"{fmt_finite(o['kernel_syscalls_per_completion'])}")
        lines.append(text + ".")
    if not pairs:
        lines.append("No multishot point has its one-shot twin (same kind, interval and "
                     "placement) in this run: they cannot be compared.")
    poll = data[(data["kind"] == "poll") & (data["shot"] == "multishot")]
    odd = poll[poll["kernel_sqes_per_completion"].astype(float)
               > 1.5 / poll["count"].astype(float)]
    if len(odd):
        lines.append("A multishot poll costs two SQEs per count completions, not one: the "
                     "POLL_ADD and the POLL_REMOVE that ends it after count events (the "
                     "removal and the poll's last CQE are the extra CQEs).")
    return lines


# -- data: PPC -------------------------------------------------------------------------------

PPC_COLUMNS = ["variant", "point", "transport", "mode", "peer", "placement", "batch", "n",
               "reps", "median", "p90", "p99", "ci_low", "ci_high", "rep_min", "rep_max",
               "noisy", *PPC_COUNTERS, *PPC_KERNEL, "kernel_reps"]


def ppc_table(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per PPC variant and point (perf bench included: mode sync,
    batch 1): transport (the variant), mode, peer, placement, batch, the
    ns_per_call summary of the user-side runs, the workers' counters
    (PPC_COUNTERS) and the kernel view per call (system calls, wake-ups,
    cross-CPU wake-ups).  Rows by mode, peer, placement, transport
    (PPC_ROWS: perf bench right after the pipe), batch.  The server waits
    parked (receiver = park, K42's PPC and every transport's default): the
    points where it spins are the receivers' table's (ppc_accounting,
    receiver_table), so each (mode, peer, placement, transport, batch) has
    one row here."""
    return cached_per_run(run, "msgport", ("ppc", family, seed), lambda: _ppc_table(run, family, seed))


def _ppc_table(run: Run, family: str, seed: int) -> pd.DataFrame:
    data = _cells(run, family, PPC_ROWS, PPC_COUNTERS, PPC_KERNEL, seed)
    if not data.empty and "receiver" in data.columns:
        data = data[[not is_set(r) or str(r) == "park" for r in data["receiver"]]]
        data = data.reset_index(drop=True)
    if data.empty:
        return pd.DataFrame(columns=PPC_COLUMNS)
    data["transport"] = data["variant"]
    perf = data["variant"] == PERF
    data["mode"] = ["sync" if p or not is_set(m) else str(m)
                    for m, p in zip(data["mode"], perf)]
    data["batch"] = [1 if p or not is_set(b) else int(plain_param(b))
                     for b, p in zip(data["batch"], perf)]
    data["peer"] = data["peer"].astype(str)
    data["placement"] = data["placement"].astype(str)
    data = _order(data, {"mode": ("sync", "async"), "peer": PEERS, "placement": PLACEMENTS,
                         "transport": PPC_ROWS, "batch": None})
    return data[PPC_COLUMNS]


def ppc_round_trips(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """ppc_table's mode = sync rows (a round trip per call), perf bench
    right after ppc_pipe at the same peer and placement, with
    ``ours_over_perf`` on each perf bench row: the ppc_pipe median over
    perf's (ours_over_perf_low / _high: the CIs divided crosswise; NaN
    where no ppc_pipe row matches)."""
    table = ppc_table(run, family, seed)
    rows = table[table["mode"] == "sync"].reset_index(drop=True)
    ratios = []
    for _, r in rows.iterrows():
        pipe = rows[(rows["transport"] == PIPE) & (rows["peer"] == r["peer"])
                    & (rows["placement"] == r["placement"])]
        if r["transport"] != PERF or pipe.empty:
            ratios.append((math.nan,) * 3)
            continue
        ratios.append(median_ratio(pipe.iloc[0], r))
    rows["ours_over_perf"] = [x[0] for x in ratios]
    rows["ours_over_perf_low"] = [x[1] for x in ratios]
    rows["ours_over_perf_high"] = [x[2] for x in ratios]
    return rows


def perf_pairs(rt: pd.DataFrame) -> list[dict]:
    """{peer, placement, pipe, perf (rows), ratio, low, high} for every perf
    bench row with a ppc_pipe row at its peer and placement."""
    out = []
    for _, r in rt[(rt["transport"] == PERF) & np.isfinite(rt["ours_over_perf"])].iterrows():
        pipe = rt[(rt["transport"] == PIPE) & (rt["peer"] == r["peer"])
                  & (rt["placement"] == r["placement"])].iloc[0]
        out.append({"peer": r["peer"], "placement": r["placement"], "pipe": pipe, "perf": r,
                    "ratio": r["ours_over_perf"], "low": r["ours_over_perf_low"],
                    "high": r["ours_over_perf_high"]})
    return out


def ppc_one_way(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """ppc_table's mode = async rows (one-way streams of batch calls): ns per
    call summary, ``calls_per_s`` = 1e9 / the median ns per call, and
    ``of_round_trip``: the median over the same transport's sync round
    trip at the same peer and placement (NaN where the run has none)."""
    table = ppc_table(run, family, seed)
    rows = table[table["mode"] == "async"].reset_index(drop=True)
    sync = table[table["mode"] == "sync"]
    rows["calls_per_s"] = 1e9 / rows["median"].astype(float)
    share = []
    for _, r in rows.iterrows():
        rt = sync[(sync["transport"] == r["transport"]) & (sync["peer"] == r["peer"])
                  & (sync["placement"] == r["placement"])]
        share.append(float(r["median"]) / float(rt["median"].iloc[0]) if len(rt) else math.nan)
    rows["of_round_trip"] = share
    return rows


SOFT_INTERRUPT_COLUMNS = ["mode", "peer", "placement", "batch", "n", "reps", "median",
                          "ci_low", "ci_high", "pipe_median", "over_pipe", "over_pipe_low",
                          "over_pipe_high", "calls_per_signal", "noisy"]


def soft_interrupt_table(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """K42's asynchronous PPC entered by a soft interrupt (ppc_sigio)
    against the same two pipes with a server parked in read() (ppc_pipe),
    per mode, peer, placement and batch: ns per call of each,
    ``over_pipe`` = sigio's median / pipe's with the CIs divided
    crosswise (NaN where the run has no pipe row there), and
    ``calls_per_signal``: requests the handler served per entry."""
    table = ppc_table(run, family, seed)
    keys = ["mode", "peer", "placement", "batch"]
    sigio, pipe = table[table["transport"] == SIGIO], table[table["transport"] == PIPE]
    rows = []
    for _, r in sigio.iterrows():
        other = pipe[(pipe[keys] == r[keys]).all(axis=1)]
        ratio = median_ratio(r, other.iloc[0]) if len(other) else (math.nan,) * 3
        rows.append({**{k: r[k] for k in keys}, "n": r["n"], "reps": r["reps"],
                     "median": r["median"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                     "pipe_median": float(other["median"].iloc[0]) if len(other) else math.nan,
                     "over_pipe": ratio[0], "over_pipe_low": ratio[1], "over_pipe_high": ratio[2],
                     "calls_per_signal": r["calls_per_signal"], "noisy": r["noisy"]})
    return pd.DataFrame(rows, columns=SOFT_INTERRUPT_COLUMNS)


def soft_interrupt_lines(data: pd.DataFrame) -> list[str]:
    """What the soft-interrupt table says, per placement: sigio's cost over
    the parked pipe server's (range over its points) and how many calls one
    entry served."""
    lines = []
    for placement, part in data.groupby("placement", sort=False):
        ratios = part["over_pipe"].astype(float).dropna()
        per = part["calls_per_signal"].astype(float).dropna()
        text = f"{placement}: entered by its signal, the server"
        if len(ratios):
            text += (f" costs {fmt_ratio(float(ratios.min()))}.."
                     f"{fmt_ratio(float(ratios.max()))} what the same pipes cost with a server "
                     f"parked in read() ({len(ratios)} points)")
        else:
            text += " has no ppc_pipe point to compare with"
        if len(per):
            text += (f"; one entry served {fmt_value(float(per.min()))}.."
                     f"{fmt_value(float(per.max()))} calls")
        if placement == CROSS:
            # signal_wake_up() kicks a thread running on another CPU (an
            # IPI); a parked server's CPU may have halted and must wake
            text += (". Its CPU never idles (the server runs its own loop), so a request's "
                     "signal kicks a running thread with an IPI, where the parked server's "
                     "vCPU may have halted and must be woken")
        lines.append(text + ".")
    same = data[(data["placement"] == SAME) & (data["mode"] == "sync")]
    per_same = same["calls_per_signal"].astype(float).dropna()
    if len(per_same) and float(per_same.min()) > 2:
        # a round trip is one call at a time: more than one call per entry
        # means the handler found the next request before it returned
        lines.append("Round trips on one CPU: one entry served many calls, one at a time, so "
                     "the handler found each next request before it returned. Its reply wakes "
                     "the client, which (on the same CPU) runs and writes the next request "
                     "before the handler reads again; the signal that write raised stays "
                     "pending while the handler runs and enters it once more at the end, to "
                     "an empty pipe (server_empty_signals).")
    return lines


def cross_same(rt: pd.DataFrame, transports=TRANSPORTS) -> pd.DataFrame:
    """Per transport and peer measured on both placements: same and cross
    medians and cross / same (the other CPU's wake-up in every round trip)."""
    rows = []
    for (transport, peer), part in rt[rt["transport"].isin(transports)].groupby(
            ["transport", "peer"], sort=False):
        same, cross = part[part["placement"] == SAME], part[part["placement"] == CROSS]
        if same.empty or cross.empty:
            continue
        s, c = float(same["median"].iloc[0]), float(cross["median"].iloc[0])
        rows.append({"transport": transport, "peer": peer, "same": s, "cross": c,
                     "ratio": c / s, "extra": c - s})
    return pd.DataFrame(rows, columns=["transport", "peer", "same", "cross", "ratio", "extra"])


def perf_caveat_line(run: Run, rt: pd.DataFrame, family: str = FAMILY) -> str | None:
    """Said once: perf bench's cross_cpu rows are not pinned apart, with the
    evidence the run holds (cross-CPU wake-ups per round trip from the
    kernel view, else the cross / same ratio of the medians); None when the
    run has no perf bench cross_cpu row."""
    perf = rt[(rt["transport"] == PERF) & (rt["placement"] == CROSS)]
    if perf.empty:
        return None
    allowed = perf["cpus_allowed"].astype(float).dropna()
    text = ("perf bench sched pipe's cross_cpu rows are not pinned apart: perf 6.1 cannot pin "
            "its two tasks to different CPUs, so taskset allows both CPUs"
            + (f" (cpus_allowed = {fmt_count(float(allowed.max()))})" if len(allowed) else "")
            + " and the kernel places the two tasks")
    pipe = rt[(rt["transport"] == PIPE) & (rt["placement"] == CROSS)]
    wake = perf["kernel_cross_cpu_wakeups_per_call"].astype(float)
    if wake.notna().any():
        text += (": it woke across CPUs " + ", ".join(
            f"{fmt_finite(w)} times per round trip ({p})" for w, p in zip(wake, perf["peer"])
            if math.isfinite(w)))
        ours = pipe["kernel_cross_cpu_wakeups_per_call"].astype(float)
        if ours.notna().any():
            text += f", where ppc_pipe across CPUs woke across {fmt_finite(float(ours.median()))} times"
    ratios = cross_same(rt, (PERF, PIPE))
    if len(ratios):
        text += ("; cross / same medians: " + ", ".join(
            f"{r['transport']} {r['peer']} {fmt_ratio(r['ratio'])}"
            for _, r in ratios.iterrows()))
    return text + ". Only the same_cpu rows compare like with like."


def futex_yardstick(run: Run, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The baseline family's futex_pingpong in the same run, per placement:
    {"same_cpu": {"round_trip": row, "handoff": row}, ...} (headline
    summary rows, user side), the placements and metrics it has."""
    if BASELINE not in run.families:
        return {}
    s = family_summary(run, BASELINE, seed)
    s = s[s["variant"].astype(str) == PINGPONG]
    if s.empty:
        return {}
    s = with_params(run, BASELINE, s.reset_index(drop=True))
    if "placement" not in s.columns:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for _, r in s.iterrows():
        placement = str(r["placement"])
        if placement in PLACEMENTS:
            out.setdefault(placement, {})[str(r["metric"])] = r
    return out


# -- text ------------------------------------------------------------------------------------

def ppc_lines(run: Run, family: str = FAMILY) -> list[str]:
    """Under the round-trip table: MSG_RING against the others, the pipe
    against perf bench (and the caveat, once), cross / same."""
    rt = ppc_round_trips(run, family)
    if rt.empty:
        return [NO_PPC_LINE]
    lines = msg_ring_lines(rt) + perf_lines(rt)
    caveat = perf_caveat_line(run, rt, family)
    if caveat:
        lines.append(caveat)
    return lines


def msg_ring_lines(rt: pd.DataFrame) -> list[str]:
    """Per peer and placement: the fastest round trip, and MSG_RING's
    median over each other transport's."""
    lines = []
    for (peer, placement), part in rt[rt["transport"].isin(TRANSPORTS)].groupby(
            ["peer", "placement"], sort=False):
        best = part.loc[part["median"].astype(float).idxmin()]
        text = (f"{placement}, {peer} peer: the fastest round trip is {best['transport']}, "
                f"{fmt_us(best['median'])} us")
        ring = part[part["transport"] == MSG_RING]
        others = part[part["transport"] != MSG_RING]
        if len(ring) and len(others):
            m = ring.iloc[0]
            text += ("; ppc_msg_ring's is" if best["transport"] == MSG_RING else
                     f"; ppc_msg_ring {fmt_us(m['median'])} us is") + " " + ", ".join(
                f"{fmt_ratio(m['median'] / o['median'])} {_short(o['transport'])}"
                for _, o in others.iterrows())
            text += (f"; it enters the kernel {fmt_finite(m['kernel_syscalls_per_call'])} times per "
                     "round trip" if math.isfinite(m["kernel_syscalls_per_call"]) else "")
        lines.append(text + ".")
    return lines


def perf_lines(rt: pd.DataFrame) -> list[str]:
    pairs = perf_pairs(rt)
    if not pairs:
        return [NO_PERF_LINE]
    lines = []
    for p in pairs:
        verdict = ("slower than" if p["low"] > 1 else "faster than" if p["high"] < 1
                   else "not told apart from")
        text = (f"ppc_pipe against perf bench sched pipe, {p['placement']}, {p['peer']} peer: "
                f"{fmt_us(p['pipe']['median'])} us against {fmt_us(p['perf']['median'])} us per round "
                f"trip, {fmt_ratio(p['ratio'])} (95% interval "
                f"{fmt_ratio_interval(p['low'], p['high'])}), {verdict} perf's")
        if p["placement"] == CROSS:
            text += " (perf's two tasks not pinned apart: see the caveat below)"
        lines.append(text + ".")
    lines.append("perf bench's usecs/op is one invocation's wall time from before its fork (or "
                 "pthread_create) to after the join, over its loops: start-up and exit are in "
                 "it; ppc_pipe times each round trip alone.")
    return lines


def one_way_lines(data: pd.DataFrame) -> list[str]:
    if data.empty:
        return [NO_ONE_WAY_LINE]
    lines = []
    for (peer, placement), part in data.groupby(["peer", "placement"], sort=False):
        best = part.loc[part["calls_per_s"].astype(float).idxmax()]
        share = best["of_round_trip"]
        lines.append(f"One-way, {placement}, {peer} peer, batch {best['batch']}: the most calls "
                     f"per second: {best['transport']}, {fmt_rate(best['calls_per_s'])} calls/s "
                     f"({fmt_finite(best['median'])} ns per call"
                     + (f", {fmt_ratio(share)} its round trip" if math.isfinite(share) else "")
                     + ").")
    return lines


def cross_same_lines(run: Run, rt: pd.DataFrame) -> list[str]:
    """The cross / same ratio of our round trips beside the baseline
    family's futex ping-pong (the halted vCPU's wake-up)."""
    ratios = cross_same(rt)
    yard = futex_yardstick(run)
    same, cross = (yard.get(p, {}).get(ROUND_TRIP) for p in PLACEMENTS)
    if ratios.empty:
        text = ("No PPC transport ran both on one CPU and across two: no cross/same ratio to "
                "show")
        if same is not None and cross is not None:
            text += (f" (the baseline family's futex_pingpong round trip: {fmt_us(same['median'])} "
                     f"us on one CPU, {fmt_us(cross['median'])} us across, "
                     f"{fmt_ratio(cross['median'] / same['median'])})")
        return [text + "."]
    r = ratios["ratio"].astype(float)
    text = (f"Across CPUs, the PPC round trips take {fmt_ratio(float(r.median()))} their same-CPU "
            f"median (median over {len(ratios)} transport and peer pairs; "
            f"{fmt_ratio_interval(float(r.min()), float(r.max()))}), "
            f"{fmt_us(float(ratios['extra'].median()))} us more per round trip")
    crossing = rt[(rt["placement"] == CROSS) & rt["transport"].isin(TRANSPORTS)]
    woke = crossing["kernel_cross_cpu_wakeups_per_call"].astype(float).dropna()
    if len(woke):
        text += (f"; the kernel counted {fmt_finite(float(woke.median()))} wake-ups across CPUs per "
                 "cross_cpu round trip (median over those rows)")
    halted = halted_vcpu_clause(run.environment)
    if halted:
        text += ". " + halted[0].upper() + halted[1:]
    lines = [text + "."]
    if same is None or cross is None:
        lines.append(NO_BASELINE_LINE)
        return lines
    base = cross["median"] / same["median"]
    text = (f"The baseline family's futex_pingpong in this run: {fmt_us(same['median'])} us per round "
            f"trip on one CPU, {fmt_us(cross['median'])} us across ({fmt_ratio(base)})")
    hand_same, hand_cross = (yard.get(p, {}).get(HANDOFF) for p in PLACEMENTS)
    if hand_same is not None and hand_cross is not None:
        text += (f"; its one-way handoff {fmt_us(hand_same['median'])} / "
                 f"{fmt_us(hand_cross['median'])} us")
    futex = ratios[(ratios["transport"] == "ppc_futex") & (ratios["peer"] == "thread")]
    if len(futex):
        f = futex.iloc[0]
        text += (f"; ppc_futex between threads, the same mechanism: {fmt_us(f['same'])} / "
                 f"{fmt_us(f['cross'])} us ({fmt_ratio(f['ratio'])})")
    closeness = float(r.median()) / base
    text += (f". Our median cross/same ratio is {fmt_ratio(closeness)} the baseline's: "
             + ("the same halted-vCPU wake-up" if 0.5 <= closeness <= 2 else
                "not the same cost: look at the kernel view's wake-ups"))
    lines.append(text + ".")
    return lines


def findings_lines(run: Run, family: str = FAMILY) -> list[str]:
    """"What this run shows", from the medians."""
    lines = []
    ports = reply_port_table(run, family)
    if ports.empty:
        lines.append(NO_PORTS_LINE)
    else:
        parts = []
        for op in [o for o in OPS if (ports["op"] == o).any()]:
            cells = []
            for batch in sorted(set(ports.loc[ports["op"] == op, "batch"])):
                c = cheapest_port(ports, op, batch)
                if c is None:
                    continue
                mark = "" if c["told_apart"] else \
                    f" ~ {_short(c['runner_up']['mode'])}"
                cells.append(f"batch {batch}: {_short(c['best']['mode'])}{mark} "
                             f"({fmt_finite(c['best']['median'])} ns)")
            parts.append(f"{op}: " + ", ".join(cells))
        lines.append("Cheapest reply port per message, by op and batch (\"a ~ b\": b not told "
                     "apart, 95% intervals): " + "; ".join(parts) + ".")
    rt = ppc_round_trips(run, family)
    if rt.empty:
        lines.append(NO_PPC_LINE)
    else:
        lines += msg_ring_findings(rt)
        pairs = perf_pairs(rt)
        if not pairs:
            lines.append(NO_PERF_LINE)
        else:
            same = [p for p in pairs if p["placement"] == SAME]
            shown = same or pairs
            lines.append("Our pipe round trip against perf bench sched pipe: " + "; ".join(
                f"{p['placement']} {p['peer']}: {fmt_us(p['pipe']['median'])} vs "
                f"{fmt_us(p['perf']['median'])} us ({fmt_ratio(p['ratio'])})" for p in shown)
                + ("" if same else " (cross_cpu only: perf's two tasks are not pinned apart)")
                + ".")
        lines += cross_same_lines(run, rt)
    _, note = user_side_note(run, family)
    if note:
        lines.append(note)
    return lines


def msg_ring_findings(rt: pd.DataFrame) -> list[str]:
    """MSG_RING against the other transports, one line per placement."""
    lines = []
    for placement in PLACEMENTS:
        here = rt[(rt["placement"] == placement) & rt["transport"].isin(TRANSPORTS)]
        ring = here[here["transport"] == MSG_RING]
        if ring.empty or len(here) == len(ring):
            continue
        parts = []
        for _, m in ring.iterrows():
            others = here[(here["peer"] == m["peer"]) & (here["transport"] != MSG_RING)]
            if others.empty:
                continue
            rank = int((others["median"].astype(float) < float(m["median"])).sum()) + 1
            parts.append(f"{m['peer']}: {fmt_us(m['median'])} us, {_ordinal(rank)} of "
                         f"{len(others) + 1} (" + ", ".join(
                             f"{fmt_ratio(m['median'] / o['median'])} {_short(o['transport'])}"
                             for _, o in others.iterrows()) + ")")
        if parts:
            lines.append(f"MSG_RING round trip {placement}: " + "; ".join(parts) + ".")
    return lines


def _ordinal(n: int) -> str:
    return {1: "fastest", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


# -- data: K42's accounting and the MSG_RING / eventfd receivers -----------------------------

ACCOUNTING = ("client_cpu_ns_per_call", "server_cpu_ns_per_call", "server_cpu_fraction")
RECEIVER_ROWS = ("ppc_msg_ring", "ppc_msg_ring_defer", "ppc_eventfd")
# the same charge from the probes: window - the thread's time off CPU
# (sched_switch out to in), per call, in the runs with the kernel view
PROBE_ACCOUNTING = ("probe_client_cpu_ns_per_call", "probe_server_cpu_ns_per_call",
                    "probe_client_over_clock", "probe_server_over_clock")
ACCOUNTING_COLUMNS = ["transport", "mode", "peer", "placement", "receiver", "batch", "median",
                      "ci_low", "ci_high", "noisy", *ACCOUNTING, *PROBE_ACCOUNTING]
NO_ACCOUNTING_LINE = ("This run has no PPC run with the CPU clocks (client_cpu_ns_per_call): "
                      "re-run the PPC variants with this lab version")


def ppc_accounting(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """Per PPC transport and point (perf bench aside): the call's median
    (round trip or async ns/call) and the CPU time per call Linux charged
    the client and the server (medians over the runs of the workers'
    clock counters), and the server's share of it."""
    data = _cells(run, family, TRANSPORTS, ACCOUNTING, {}, seed)
    if data.empty or data["client_cpu_ns_per_call"].isna().all():
        return pd.DataFrame(columns=ACCOUNTING_COLUMNS)
    data = data[data["client_cpu_ns_per_call"].notna()].copy()
    data["transport"] = data["variant"]
    data["receiver"] = [str(r) if is_set(r) else "park" for r in
                        (data["receiver"] if "receiver" in data else ["park"] * len(data))]
    data["batch"] = [int(plain_param(b)) if is_set(b) else 1 for b in data["batch"]]
    for col in ("mode", "peer", "placement"):
        data[col] = data[col].astype(str)
    probed = cached_per_run(run, "msgport", ("probe_accounting", family),
                            lambda: probe_cpu_per_call(run, family))
    key = list(zip(data["variant"], data["point"]))
    for name in PROBE_ACCOUNTING:
        col = probed[name] if len(probed) else pd.Series(dtype=float)
        data[name] = [float(col.get(k, math.nan)) for k in key]
    data = _order(data, {"mode": ("sync", "async"), "peer": PEERS, "placement": PLACEMENTS,
                         "transport": TRANSPORTS, "receiver": tuple(fam.RECEIVERS),
                         "batch": None})
    return data[ACCOUNTING_COLUMNS]


def probe_cpu_per_call(run: Run, family: str = FAMILY) -> pd.DataFrame:
    """Per PPC (variant, point) with a kernel view: the CPU time per call
    of the client and the server thread as sched_switch saw it, the window
    minus the thread's off-CPU time (the switches probe's per-thread
    offcpu_ns; a thread with no row never left the CPU), / the window's
    calls, and its ratio to the same run's clock (``probe_*_over_clock``);
    medians over the runs with probes.  Indexed by (variant, point).
    The workers' clocks count the thread's runtime (sum_exec_runtime),
    read at the window's ends; sched_switch's stamps count wall time on the
    CPU, so the probes' charge also holds what the kernel leaves out of a
    task's runtime (interrupts with IRQ time accounting, a vCPU's steal
    time) and the probes' own time, and misses the parts of a wait that
    straddle the window's ends."""
    src = run_sources(run)
    src = src[(src["family"].astype(str) == family) & src["kernel_side"]
              & src["variant"].astype(str).isin(TRANSPORTS)]
    if src.empty:
        return pd.DataFrame(columns=list(PROBE_ACCOUNTING))
    ids = set(src["run_id"].astype(int))
    c = run.counters[run.counters["run_id"].isin(ids)]
    tids = {(int(r), str(n)): int(v) for r, n, v in
            zip(c["run_id"], c["counter"].astype(str), c["value"])
            if str(n) in ("client_tid", "server_tid")}
    clocks = {(int(r), str(n)): float(v) for r, n, v in
              zip(c["run_id"], c["counter"].astype(str), c["value"])
              if str(n) in ("client_cpu_ns_per_call", "server_cpu_ns_per_call")}
    m = run.metrics[run.metrics["run_id"].isin(ids)
                    & (run.metrics["probe"].astype(str) == "switches")
                    & (run.metrics["metric"].astype(str) == "offcpu_ns")]
    off: dict[tuple[int, int], float] = {}
    for r, key, v in zip(m["run_id"], m["key"].astype(str), m["value"]):
        if key.startswith("tid="):
            off[(int(r), int(key[4:].split()[0]))] = float(v)
    runs = run.runs.set_index("run_id")
    rows = []
    for r, variant, point in zip(src["run_id"].astype(int), src["variant"].astype(str),
                                 src["point"].astype(str)):
        window, calls = runs.at[r, "window_ns"], runs.at[r, "ops"]
        if pd.isna(window) or pd.isna(calls) or not calls:
            continue
        row = {"variant": variant, "point": point}
        for side in ("client", "server"):
            tid = tids.get((r, f"{side}_tid"))
            probed = ((float(window) - off.get((r, tid), 0.0)) / float(calls)
                      if tid is not None else math.nan)
            clock = clocks.get((r, f"{side}_cpu_ns_per_call"), math.nan)
            row[f"probe_{side}_cpu_ns_per_call"] = probed
            row[f"probe_{side}_over_clock"] = probed / clock if clock > 0 else math.nan
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=list(PROBE_ACCOUNTING))
    return pd.DataFrame(rows).groupby(["variant", "point"])[list(PROBE_ACCOUNTING)].median()


def accounting_line(table: pd.DataFrame) -> str:
    """Which transport Linux charges the caller least and most for a call
    (the caller's share: 1 - server_cpu_fraction, median over its points)."""
    if table.empty:
        return NO_ACCOUNTING_LINE
    share = (1 - table.groupby("transport", sort=False)["server_cpu_fraction"].median())
    least, most = share.idxmin(), share.idxmax()
    return (f"K42 would charge every call to the caller; Linux charged the caller least with "
            f"{least} ({fmt_ratio(float(share[least]))[:-1]} of the call's CPU time, median over "
            f"its {int((table['transport'] == least).sum())} points) and most with {most} "
            f"({fmt_ratio(float(share[most]))[:-1]}); the rest went to the server.")


def probe_agreement_line(table: pd.DataFrame) -> str | None:
    """How the sched_switch charge compares with the clocks' in the same
    runs (probes over clocks per side, median and range over the points),
    or None without a kernel view."""
    parts = []
    for side in ("client", "server"):
        ratio = table[f"probe_{side}_over_clock"].dropna()
        if ratio.empty:
            continue
        low, high = fmt_ratio(float(ratio.min())), fmt_ratio(float(ratio.max()))
        spread = f"{low}..{high} over" if low != high else "at all"
        parts.append(f"the {side}'s {fmt_ratio(float(ratio.median()))} of its clock "
                     f"({spread} {len(ratio)} points)")
    if not parts:
        return None
    return ("Charged by sched_switch (wall time on the CPU: with interrupts, steal and the "
            "probes' own time) against the CPU clocks of the same runs: "
            + "; ".join(parts) + ".")


def receiver_table(table: pd.DataFrame) -> pd.DataFrame:
    """ppc_accounting's msg_ring, msg_ring_defer and eventfd rows."""
    return table[table["transport"].isin(RECEIVER_ROWS)].reset_index(drop=True)


def _faster(rows: pd.DataFrame, fast: str, slow: str, receiver: str = "park") -> list[float]:
    """Per (mode, peer, placement) where both ran parked: slow / fast when
    fast's CI lies wholly below slow's, else NaN; [] where none pair."""
    out = []
    keep = rows[rows["receiver"] == receiver]
    for _, g in keep.groupby(["mode", "peer", "placement", "batch"]):
        a, b = g[g["transport"] == fast], g[g["transport"] == slow]
        if len(a) and len(b):
            a, b = a.iloc[0], b.iloc[0]
            out.append(float(b["median"]) / float(a["median"])
                       if float(a["ci_high"]) < float(b["ci_low"]) else math.nan)
    return out


def msg_ring_verdict(table: pd.DataFrame) -> str:
    """Claim A (eventfd wake-ups beat MSG_RING) against claim B (MSG_RING
    to a parked DEFER_TASKRUN ring beats eventfd), from the parked points
    where both sides ran: a claim holds where its winner's 95% CI lies
    wholly below the loser's, and this run supports it when it holds at
    most such points."""
    rows = receiver_table(table)
    a = _faster(rows, "ppc_eventfd", "ppc_msg_ring")
    b = _faster(rows, "ppc_msg_ring_defer", "ppc_eventfd")
    if not a and not b:
        return ("No MSG_RING verdict: the run needs ppc_eventfd beside ppc_msg_ring and "
                "ppc_msg_ring_defer at the same points, receiver = \"park\"")

    def held(x: list[float]) -> tuple[bool, str]:
        won = [v for v in x if not math.isnan(v)]
        text = (f"{len(won)} of {len(x)} points" +
                (f", median {fmt_ratio(float(np.median(won)))}" if won else ""))
        return bool(x) and len(won) * 2 > len(x), text

    ha, ta = held(a)
    hb, tb = held(b)
    which = {(True, False): "claim A (eventfd faster than MSG_RING)",
             (False, True): "claim B (MSG_RING to a parked DEFER_TASKRUN ring faster than "
                            "eventfd)",
             (True, True): "both claims (eventfd beats plain MSG_RING; MSG_RING to a "
                           "DEFER_TASKRUN ring beats eventfd)",
             (False, False): "neither claim"}[(ha, hb)]
    return (f"This run supports {which}: eventfd faster than ppc_msg_ring at {ta}; "
            f"ppc_msg_ring_defer faster than eventfd at {tb} (receiver park, a point counts "
            f"when the 95% CIs do not overlap).")


__all__ = ["ppc_accounting", "accounting_line", "probe_cpu_per_call", "probe_agreement_line",
           "receiver_table", "msg_ring_verdict",
           "NO_ACCOUNTING_LINE", "reply_port_table", "cheapest_port", "poll_against_sync", "port_lines",
           "flushsys_table", "flushsys_lines", "live_table", "live_pairs", "live_lines",
           "ppc_table", "ppc_round_trips", "perf_pairs", "perf_caveat_line", "ppc_one_way",
           "cross_same", "futex_yardstick", "ppc_lines", "msg_ring_lines", "perf_lines",
           "one_way_lines", "cross_same_lines", "findings_lines", "NO_PORTS_LINE",
           "NO_DEFERRED_LINE", "NO_LIVE_LINE", "NO_PPC_LINE", "NO_PERF_LINE",
           "NO_ONE_WAY_LINE", "NO_BASELINE_LINE"]
