"""Report section of the upcall family (seeds 000 and 002: the kernel telling
user-level scheduling code that a thread blocked or can run again, and
timer upcalls), every number computed from the stored run:

- upcall latency by mechanism: one row per mechanism variant and point
  (mechanism, event, block_kind, placement), median / p90 / p99 with the
  95% CI of the median and the spread of the repetitions (headline(): the
  user side, i.e. the runs without probes when the suite measured probe
  overhead), and each median over the same-CPU futex handoff of the
  baseline family in the same run (futex_pingpong's ``handoff`` series);
  one line instead when the run has no such handoff;
- figures: per block kind, the CDF of every mechanism (bpf variants: block
  and unblock upcalls as separate lines), one panel per placement, log x in
  us, and the medians with their p99 beneath;
- the kernel's cross-check for the mechanisms whose scheduler sleeps: the
  probes' wake-to-run median of the scheduler thread beside the upcall
  median of the same runs, and what is left before the wake-up;
- since_source of the bpf unblock upcalls (from the waker's stamp or the
  sleep's deadline, what the uring_cqe variants measure) beside the
  uring_cqe latencies of the same block kind and placement;
- timer lateness, one row per (interval_us, rt_priority, pm_qos), a column
  per timer variant and cyclictest (median / p99), with overruns, the timer
  slack of SCHED_OTHER threads and the drift of the multishot timeout; a
  line per point: our timer_nanosleep against cyclictest;
- the counters that prove the mechanics ran as built (ring records lost,
  bad or foreign, events folded into one flag update: all must be 0; lost
  upcalls, program misses, calls that did not block, the scheduler's
  slept fraction);
- what Anderson et al. measured for their upcalls in 1992 (quoted, never
  computed) beside this run's best same-CPU upcall;
- "what this run shows": the best mechanism on one CPU and across CPUs,
  how far from the futex handoff, whether the cross-CPU numbers carry the
  wake-up of a halted vCPU, and whether probes were attached to the runs
  the numbers come from.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis._counters import counter_summary, run_table, with_params
from analysis._format import fmt_count, fmt_ratio, fmt_times, fmt_us, fmt_us_interval
from analysis._kernel import kernel_view_status, kernel_view_table
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._results import Run, load_wakeups
from analysis._views import (
    cached_per_run,
    cell_kinds,
    environment_value,
    family_summary,
    headline,
    headline_samples,
    is_set,
    median_ratio,
    run_sources,
)
from analysis.sections import generic
from analysis.sections.registry import register

FAMILY = "upcall"
BASELINE, PINGPONG, HANDOFF = "baseline", "futex_pingpong", "handoff"
LATENCY, SINCE_SOURCE, LATENESS = "latency", "since_source", "lateness"
SAME, CROSS = "same_cpu", "cross_cpu"
PLACEMENTS = (SAME, CROSS)
EVENTS = ("block", "unblock")
BLOCK_KINDS = ("nanosleep", "futex", "pipe", "pread")
MECHANISMS = ("bpf_ringbuf", "bpf_ringbuf_adaptive", "bpf_flag", "bpf_flag_idle",
              "bpf_flag_sleep", "futex_hint", "uring_cqe_poll", "uring_cqe_wait",
              "uring_cqe_eventfd")
URING_CQE = ("uring_cqe_poll", "uring_cqe_wait", "uring_cqe_eventfd")
# the scheduler sleeps until the kernel wakes it: the probes' wake-to-run
# of the scheduler thread is part of these upcalls
SLEEPING = ("bpf_ringbuf", "bpf_ringbuf_adaptive", "bpf_flag_sleep", "futex_hint",
            "uring_cqe_wait", "uring_cqe_eventfd")
# the kernel starts these upcalls (a BPF program on the event), the rest
# are the runtime's own (futex_hint) or io_uring's
KERNEL_INITIATED = ("bpf_ringbuf", "bpf_ringbuf_adaptive", "bpf_flag", "bpf_flag_idle",
                    "bpf_flag_sleep")
# the anatomy's series (lab/families/upcall.py STAGES, in order): stage_<name>
STAGES = ("raise", "irq_work", "waking", "wake_ipi", "switch_in", "user")
STAGE_TEXT = {"raise": "event -> irq_work self-IPI raised",
              "irq_work": "self-IPI raised -> irq_work runs",
              "waking": "-> sched_waking of the scheduler",
              "wake_ipi": "-> IPI to the scheduler's CPU",
              "switch_in": "-> scheduler switched in",
              "user": "-> scheduler's user-space stamp"}
# the same code's futex handoff: the worker stamps, FUTEX_WAKEs the
# scheduler and FUTEX_WAITs (futex_hint with block_kind = futex)
HANDOFF_OF_OURS = ("futex_hint", "futex")
ANATOMY_COUNTERS = ("ipis_per_upcall", "self_ipis_per_upcall", "program_ns_per_run",
                    "program_runs_per_upcall", "program_ns_per_upcall", "anatomy_ns_per_upcall")
TIMERS = ("timer_nanosleep", "timer_timerfd", "timer_signal", "timer_signal_busy", "timer_uring",
          "timer_uring_multishot", "cyclictest")
OURS, CYCLICTEST = "timer_nanosleep", "cyclictest"
TIMER_AXES = ("interval_us", "rt_priority", "pm_qos")
MAIN_AXES = ("placement", "event", "block_kind")
# what makes a row of the latency table, besides MAIN_AXES (the ones a suite sweeps)
OTHER_AXES = ("block_us", "run_us", "spin_us", "pm_qos", "anatomy")
# counters that prove the mechanics (native/upcall.h): these must be 0 in every run
MUST_BE_ZERO = ("ring_lost", "ring_discarded", "ring_bad", "foreign", "missed_events")
# ... and these say how the upcalls went (0 where nothing went wrong)
MECHANICS = ("lost_upcalls", "program_misses", "not_blocked", "extra_events")
SLEPT = "slept_fraction"
TIMER_COUNTERS = ("overruns", "timer_slack_ns", "drift_per_period_ns", "clamped")
LATENCY_ROWS_PER_PAGE = 30     # one placement of the thorough suite on one page
NO_HANDOFF_LINE = ("This run has no baseline futex_pingpong handoff on one CPU to compare the "
                   "upcalls with: add [baseline] variants=[\"futex_pingpong\"] "
                   "placement=[\"same_cpu\",\"cross_cpu\"] to the suite.")

# Anderson, Bershad, Lazowska and Levy's figures for their upcalls: the
# paper's numbers, printed as a quote beside this run's, never measured here.
PAPER_SOURCE = ("T. E. Anderson, B. N. Bershad, E. D. Lazowska, H. M. Levy, \"Scheduler "
                "Activations: Effective Kernel Support for the User-Level Management of "
                "Parallelism\", SOSP 1991 / ACM TOCS 10(1), 1992, section 5 (upcall performance)")
PAPER_UPCALL_NS = 2.4e6             # signal-wait through the kernel via upcalls
PAPER_TOPAZ_SIGNAL_WAIT_NS = 441e3  # Topaz kernel threads' Signal-Wait (Table IV)
PAPER_QUOTE = ("On the CVAX Firefly, two user-level threads signalling and waiting through "
               "the kernel by way of upcalls took about 2.4 ms, about five times the 441 us "
               "Signal-Wait of Topaz kernel threads (Table IV). The authors attribute the "
               "difference to their prototype (written in Modula-2+, not tuned), not to the "
               "design.")


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    run = report.run
    # the generic CDF of every (variant, point) would hold 60 curves: the
    # section draws its own per block kind; the counters that matter are in
    # its own tables (`lab show` lists them all)
    generic.render(report, family, extra_blocks=section_blocks(run, family), figures=False,
                   counters=False)
    latency_figures(report, family)
    anatomy_figure(report, family)
    timer_figure(report, family)


# -- data: upcall latency ----------------------------------------------------------------------

def effective_event(variant: str, event) -> str:
    """The upcall an event-less mechanism makes: futex_hint tells of a
    block, a uring CQE of an unblock; the bpf variants say (``event``)."""
    if variant == "futex_hint":
        return "block"
    if variant in URING_CQE:
        return "unblock"
    return str(event)


def _plain(value):
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _others(data: pd.DataFrame) -> list[str]:
    """``run_us=100``: per row, the OTHER_AXES values that differ between
    rows of the same variant (bpf_flag_sleep with run_us 0 and 100), so
    that two rows never look alike; empty where nothing differs."""
    out = [""] * len(data)
    for _, index in data.groupby(data["variant"].astype(str), sort=False).indices.items():
        part = data.iloc[index]
        varying = [a for a in OTHER_AXES if a in part.columns
                   and part[a].dropna().astype(str).nunique() > 1]
        for i, (_, row) in zip(index, part.iterrows()):
            out[i] = " ".join(f"{a}={_plain(row[a])}" for a in varying if is_set(row[a]))
    return out


def _ordered(data: pd.DataFrame, by_placement: bool = True) -> pd.DataFrame:
    keys = pd.DataFrame({
        "p": data["placement"].map({p: i for i, p in enumerate(PLACEMENTS)}).fillna(9),
        "v": data["variant"].astype(str).map({v: i for i, v in enumerate(MECHANISMS)}).fillna(99),
        "e": data["event"].map({e: i for i, e in enumerate(EVENTS)}).fillna(9),
        "k": data["block_kind"].map({k: i for i, k in enumerate(BLOCK_KINDS)}).fillna(9),
        "o": data["other"]}, index=data.index)
    order = ["p", "v", "e", "k", "o"] if by_placement else ["v", "e", "k", "p", "o"]
    return data.loc[keys.sort_values(order, kind="stable").index].reset_index(drop=True)


def _with_mechanism_params(run: Run, family: str, rows: pd.DataFrame) -> pd.DataFrame:
    data = with_params(run, family, rows.reset_index(drop=True))
    for col in MAIN_AXES + OTHER_AXES:
        if col not in data.columns:
            data[col] = None
    data["variant"] = data["variant"].astype(str)
    data["point"] = data["point"].astype(str)
    data["placement"] = data["placement"].astype(object).astype(str)
    data["block_kind"] = data["block_kind"].astype(object).astype(str)
    data["event"] = [effective_event(v, e) for v, e in zip(data["variant"], data["event"])]
    data["other"] = _others(data)
    return data


def handoff_reference(run: Run, seed: int = 0) -> dict[str, Any]:
    """The baseline family's futex_pingpong ``handoff`` summary row (one-way
    handoff: the waker's stamp before FUTEX_WAKE to the wakee's after it
    runs; user side like every headline) per placement: {"same_cpu": row,
    "cross_cpu": row}, the placements the run has."""
    if BASELINE not in run.families:
        return {}
    s = family_summary(run, BASELINE, seed)
    s = s[(s["variant"].astype(str) == PINGPONG) & (s["metric"].astype(str) == HANDOFF)]
    if s.empty:
        return {}
    s = with_params(run, BASELINE, s.reset_index(drop=True))
    if "placement" not in s.columns:
        return {}
    return {str(r["placement"]): r for _, r in s.iterrows() if str(r["placement"]) in PLACEMENTS}


def latency_table(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per mechanism variant and point: the ``latency`` headline
    summary (median, p90, p99, ci_low / ci_high, rep_min / rep_max, noisy;
    ns, the user-side runs) with mechanism, event (futex_hint: block,
    uring_cqe: unblock), block_kind, placement, other (the OTHER_AXES that
    tell a variant's rows apart), ``vs_handoff`` (the median over the
    same-CPU futex handoff's; vs_handoff_low / _high: the 95% CIs divided
    crosswise; NaN without that handoff), whether the scheduler slept for
    its upcalls: ``slept_fraction`` (the worker's counter: upcalls it went to
    sleep for), ``woken_per_upcall`` (the kernel view: the scheduler
    thread's wake-ups per upcall, NaN without one) and ``sleeps`` (the
    kernel's figure >= 0.5 where there is one, else the counter's, else
    whether the mechanism is one of SLEEPING); rows by placement,
    mechanism, event, block kind."""
    return cached_per_run(run, "upcall", ("latency_table", family, seed),
                          lambda: _latency_table(run, family, seed))


def _latency_table(run: Run, family: str, seed: int) -> pd.DataFrame:
    head = headline(run, family, seed)
    head = head[head["variant"].astype(str).isin(MECHANISMS)
                & (head["metric"].astype(str) == LATENCY)]
    columns = ["variant", "point", "mechanism", "event", "block_kind", "placement", "other",
               "n", "reps", "unit", "median", "p90", "p99", "ci_low", "ci_high", "rep_min",
               "rep_max", "noisy", "vs_handoff", "vs_handoff_low", "vs_handoff_high",
               "slept_fraction", "woken_per_upcall", "sleeps"]
    if head.empty:
        return pd.DataFrame(columns=columns)
    data = _with_mechanism_params(run, family, head)
    data["mechanism"] = data["variant"]
    ref = handoff_reference(run, seed).get(SAME)
    ratios = [median_ratio(r, ref) if ref is not None else (math.nan,) * 3
              for _, r in data.iterrows()]
    data["vs_handoff"] = [r[0] for r in ratios]
    data["vs_handoff_low"] = [r[1] for r in ratios]
    data["vs_handoff_high"] = [r[2] for r in ratios]
    counters = counter_summary(run, family)
    slept = counters[counters["counter"] == SLEPT].set_index(["variant", "point"])["median"]
    woken = scheduler_wakeups(run, family).set_index(["variant", "point"])["wakeups_per_upcall"]
    key = list(zip(data["variant"], data["point"]))
    data["slept_fraction"] = [float(slept.get(k, math.nan)) for k in key]
    data["woken_per_upcall"] = [float(woken.get(k, math.nan)) for k in key]
    data["sleeps"] = [w >= 0.5 if math.isfinite(w) else f >= 0.5 if math.isfinite(f)
                      else v in SLEEPING for v, f, w in
                      zip(data["variant"], data["slept_fraction"], data["woken_per_upcall"])]
    return _ordered(data)[columns + [c for c in data.columns if c not in columns]]


def best_upcall(data: pd.DataFrame, placement: str, sleeping_only: bool = False):
    """The row with the lowest median at a placement (None if none);
    ``sleeping_only``: among the rows whose scheduler slept for its upcalls
    (latency_table's ``sleeps``), which leave their CPU to other work."""
    rows = data[data["placement"] == placement]
    if sleeping_only:
        rows = rows[rows["sleeps"].astype(bool)]
    if rows.empty:
        return None
    return rows.loc[rows["median"].astype(float).idxmin()]


def _same_row(a, b) -> bool:
    return (a["variant"], a["point"]) == (b["variant"], b["point"])


def row_label(row) -> str:
    """``bpf_ringbuf block nanosleep same_cpu`` (and its other parameters)."""
    parts = [str(row["variant"]), str(row["event"]), str(row["block_kind"]), str(row["placement"])]
    if row.get("other"):
        parts.append(str(row["other"]))
    return " ".join(parts)


# -- data: the kernel's cross-check ----------------------------------------------------------

_TID_KEY = re.compile(r"^tid=(\d+)\b")


def scheduler_tids(run: Run, run_ids) -> dict[int, int]:
    """Per run: the scheduler thread's id.  The scheduler is the thread that
    calls upcall_run(), the worker process's main thread, which exists before
    every other thread of the run (its tid is the process id, the others'
    are larger): the lowest thread id the probes saw in the run (their
    per-thread keys ``tid=N comm`` and the wake-up records).  Runs where the
    probes saw no thread are left out."""
    ids = [int(i) for i in run_ids]
    m = run.metrics
    m = m[m["run_id"].isin(ids)]
    found: dict[int, int] = {}
    keys = m["key"].astype(str)
    has_tid = keys.str.startswith("tid=")
    for run_id, key in zip(m.loc[has_tid, "run_id"], keys[has_tid]):
        hit = _TID_KEY.match(key)
        if hit:
            tid = int(hit.group(1))
            found[int(run_id)] = min(found.get(int(run_id), tid), tid)
    wakeups = load_wakeups(run, ids, missing="skip")
    if len(wakeups):
        lowest = wakeups.groupby("run_id")["tid"].min()
        for run_id, tid in lowest.items():
            found[int(run_id)] = min(found.get(int(run_id), int(tid)), int(tid))
    return found


SCHEDULER_WAKEUPS = "scheduler thread"
ALL_WAKEUPS = "all threads of the run"
RUN_PERCENTILES = "all threads, median of the runs' p50"


def scheduler_wakeups(run: Run, family: str = FAMILY,
                      variants=MECHANISMS) -> pd.DataFrame:
    """Per mechanism variant and point with a kernel view (the runs with
    probes): the upcall median of those runs (``upcall_median``, ns) beside
    the probes' wake-to-run median (``wake_median``: sched_waking of the
    thread to it running) of the scheduler thread's wake-ups
    (scheduler_tids), or of every wake-up of the runs when that thread had
    none recorded (``wake_of`` says which; without records, the median of
    the runs' own p50), ``wake_n`` records, ``wakeups_per_upcall`` (of the
    scheduler thread: 1 when it slept for every upcall, 0 when it never
    did), and ``before_wake``: upcall_median - wake_median, the part of the
    upcall before the scheduler was woken (NaN where it slept for fewer than
    half of the upcalls: its wake-ups are then not the upcalls')."""
    return cached_per_run(run, "upcall", ("scheduler_wakeups", family, tuple(variants)),
                   lambda: _scheduler_wakeups(run, family, variants))


def _scheduler_wakeups(run: Run, family: str, variants) -> pd.DataFrame:
    columns = ["variant", "point", "mechanism", "event", "block_kind", "placement", "other",
               "kernel_reps", "upcall_median", "wake_median", "wake_n", "wakeups_per_upcall",
               "before_wake", "wake_of"]
    src = run_sources(run)
    src = src[(src["family"].astype(str) == family) & src["kernel_side"]
              & src["variant"].astype(str).isin(variants)]
    if src.empty:
        return pd.DataFrame(columns=columns)
    tids = scheduler_tids(run, src["run_id"])
    fallback = kernel_view_table(run, family).set_index(["variant", "point"])
    ops = run.runs.set_index("run_id")["ops"]
    samples = run.samples[run.samples["run_id"].isin(src["run_id"])
                          & (run.samples["metric"].astype(str) == LATENCY)]
    rows = []
    for (variant, point), part in src.groupby(["variant", "point"], observed=True, sort=False):
        ids = part["run_id"].astype(int).tolist()
        lat = samples.loc[samples["run_id"].isin(ids), "value"].to_numpy(dtype=float)
        wake = load_wakeups(run, ids, missing="skip")
        mine = wake[[tids.get(int(r)) == int(t) for r, t in zip(wake["run_id"], wake["tid"])]] \
            if len(wake) else wake
        n_ops = float(ops.loc[ids].astype(float).sum())
        # no record at all: nothing to say how often the scheduler slept
        per_upcall = len(mine) / n_ops if n_ops and len(wake) and tids else math.nan
        if len(mine):
            values, what = mine["waking_to_run_ns"].to_numpy(dtype=float), SCHEDULER_WAKEUPS
        elif len(wake):
            values, what = wake["waking_to_run_ns"].to_numpy(dtype=float), ALL_WAKEUPS
        else:
            values, what = np.array([]), None
        if values.size:
            wake_median, n = float(np.median(values)), int(values.size)
        else:
            key = (str(variant), str(point))
            wake_median = float(fallback.loc[key, "wake_to_run_p50_ns"]) \
                if key in fallback.index else math.nan
            n, what = 0, (RUN_PERCENTILES if math.isfinite(wake_median) else None)
        upcall = float(np.median(lat)) if lat.size else math.nan
        slept = not math.isfinite(per_upcall) or per_upcall >= 0.5
        rows.append({"variant": str(variant), "point": str(point), "kernel_reps": len(ids),
                     "upcall_median": upcall, "wake_median": wake_median, "wake_n": n,
                     "wakeups_per_upcall": per_upcall,
                     "before_wake": upcall - wake_median if slept else math.nan,
                     "wake_of": what})
    if not rows:
        return pd.DataFrame(columns=columns)
    data = _with_mechanism_params(run, family, pd.DataFrame(rows))
    data["mechanism"] = data["variant"]
    return _ordered(data)[columns]


def wake_check(run: Run, family: str = FAMILY) -> pd.DataFrame:
    """scheduler_wakeups() of the mechanisms whose scheduler sleeps until
    the kernel wakes it (SLEEPING): the cross-check of their upcalls."""
    data = scheduler_wakeups(run, family)
    return data[data["variant"].isin(SLEEPING)].reset_index(drop=True)


# -- data: since_source ------------------------------------------------------------------------

def since_source_table(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """The bpf unblock upcalls that have a ``since_source`` series: per row
    the latency median (from the kernel's time of the wake-up) and the
    since_source median and p99 (from the waker's stamp or the sleep's
    deadline, ns), beside each uring_cqe variant's latency median at the same
    block kind, placement and block_us (columns named after the variants;
    NaN where the run has none): the same measure, by another mechanism."""
    s = family_summary(run, family, seed)
    since = s[s["metric"].astype(str) == SINCE_SOURCE]
    if since.empty:
        return pd.DataFrame(columns=["variant", "point", "mechanism", "block_kind", "placement",
                                     "other", "latency", "since_source", "since_source_p99",
                                     *URING_CQE])
    data = _with_mechanism_params(run, family, since)
    table = latency_table(run, family, seed)
    lat = table.set_index(["variant", "point"])["median"]
    data["mechanism"] = data["variant"]
    data["since_source"] = data["median"]
    data["since_source_p99"] = data["p99"]
    data["latency"] = [lat.get((v, p), math.nan) for v, p in zip(data["variant"], data["point"])]
    uring = table[table["variant"].isin(URING_CQE)]
    for name in URING_CQE:
        mine = uring[uring["variant"] == name]
        data[name] = [_match_median(mine, r) for _, r in data.iterrows()]
    return _ordered(data)[["variant", "point", "mechanism", "block_kind", "placement", "other",
                           "latency", "since_source", "since_source_p99", *URING_CQE]]


def _match_median(rows: pd.DataFrame, row) -> float:
    keep = (rows["block_kind"] == row["block_kind"]) & (rows["placement"] == row["placement"])
    if "block_us" in rows.columns and is_set(row.get("block_us")):
        keep &= rows["block_us"].astype(str) == str(_plain(row["block_us"]))
    hit = rows[keep]
    return float(hit["median"].iloc[0]) if len(hit) else math.nan


# -- data: timers -------------------------------------------------------------------------------

def timer_rows(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per timer variant (and cyclictest) and point: the lateness
    summary (ns, user side) with interval_us, rt_priority, pm_qos and the
    medians over the runs of the counters in TIMER_COUNTERS (NaN where a
    variant does not report one)."""
    head = headline(run, family, seed)
    head = head[head["variant"].astype(str).isin(TIMERS)
                & (head["metric"].astype(str) == LATENESS)]
    if head.empty:
        return pd.DataFrame(columns=["variant", "point", *TIMER_AXES, "median", "p99",
                                     *TIMER_COUNTERS])
    data = with_params(run, family, head.reset_index(drop=True))
    data["variant"] = data["variant"].astype(str)
    data["point"] = data["point"].astype(str)
    for col in TIMER_AXES:
        data[col] = [_plain(v) if is_set(v) else None for v in data[col]]
    counters = counter_summary(run, family)
    counters = counters[counters["counter"].isin(TIMER_COUNTERS)]
    wide = counters.pivot_table(index=["variant", "point"], columns="counter", values="median",
                                observed=True, aggfunc="first")
    for name in TIMER_COUNTERS:
        col = wide[name] if name in wide.columns else pd.Series(dtype=float)
        data[name] = [col.get((v, p), math.nan) for v, p in zip(data["variant"], data["point"])]
    return data


def timer_point(row) -> tuple:
    return tuple(row[a] for a in TIMER_AXES)


def point_text(point: tuple) -> str:
    return " ".join(f"{a}={v}" for a, v in zip(TIMER_AXES, point))


def timer_pivot(rows: pd.DataFrame) -> pd.DataFrame:
    """Timer lateness as a pivot: one row per (interval_us, rt_priority,
    pm_qos) (the index), columns (variant, "median" / "p99") in ns, the
    variants in the family's order, then the point's counters, (name, ""):
    overruns (summed over its variants), timer_slack_ns (our threads',
    SCHED_OTHER points only: FIFO threads have none) and
    drift_per_period_ns (timer_uring_multishot)."""
    if rows.empty:
        return pd.DataFrame()
    variants = [v for v in TIMERS if v in set(rows["variant"])]
    index, out = [], []
    for point, part in rows.groupby(list(TIMER_AXES), sort=False, dropna=False):
        by = part.set_index("variant")
        row: dict = {}
        for v in variants:
            row[(v, "median")] = float(by.loc[v, "median"]) if v in by.index else math.nan
            row[(v, "p99")] = float(by.loc[v, "p99"]) if v in by.index else math.nan
        overruns = part["overruns"].astype(float)
        row[("overruns", "")] = float(overruns.sum()) if overruns.notna().any() else math.nan
        slack = part.loc[part["variant"] != CYCLICTEST, "timer_slack_ns"].astype(float).dropna()
        row[("timer_slack_ns", "")] = float(slack.median()) \
            if len(slack) and not point[1] else math.nan
        drift = part.loc[part["variant"] == "timer_uring_multishot", "drift_per_period_ns"]
        row[("drift_per_period_ns", "")] = float(drift.iloc[0]) if len(drift) else math.nan
        index.append(tuple(_plain(v) for v in point))
        out.append(row)
    frame = pd.DataFrame(out, index=pd.MultiIndex.from_tuples(index, names=list(TIMER_AXES)))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


@dataclass(frozen=True)
class TimerPair:
    """timer_nanosleep against cyclictest at one point."""
    point: tuple                 # (interval_us, rt_priority, pm_qos)
    ours: Any                    # timer_rows row
    cyclictest: Any
    ratio: float                 # our median / cyclictest's
    low: float                   # 95% CIs divided crosswise
    high: float


def cyclictest_pairs(rows: pd.DataFrame) -> list[TimerPair]:
    """Every point where both timer_nanosleep and cyclictest ran."""
    out = []
    for point, part in rows.groupby(list(TIMER_AXES), sort=True, dropna=False):
        ours = part[part["variant"] == OURS]
        theirs = part[part["variant"] == CYCLICTEST]
        if ours.empty or theirs.empty:
            continue
        a, b = ours.iloc[0], theirs.iloc[0]
        out.append(TimerPair(tuple(point), a, b, *median_ratio(a, b)))
    return out


# -- data: the mechanics' counters -------------------------------------------------------------

def must_be_zero(run: Run, family: str = FAMILY) -> dict[str, tuple[float, int, int]]:
    """Per MUST_BE_ZERO counter some run reports: (total over every ok run
    of the mechanism variants, with probes or without; runs reporting it;
    runs where it is not 0)."""
    table = run_table(run, family)
    table = table[table["variant"].astype(str).isin(MECHANISMS)]
    out = {}
    for name in MUST_BE_ZERO:
        if name not in table.columns:
            continue
        values = table[name].astype(float).dropna()
        if values.empty:
            continue
        out[name] = (float(values.sum()), int(values.size), int((values != 0).sum()))
    return out


def mechanics_table(run: Run, family: str = FAMILY) -> pd.DataFrame:
    """The counters that say how the upcalls went, medians over the user-side
    runs, one row per mechanism variant and point where one of MECHANICS is
    not 0, or the scheduler may spin or sleep (bpf_flag_sleep: its
    slept_fraction); columns: the counters some row reports."""
    s = counter_summary(run, family)
    s = s[s["variant"].astype(str).isin(MECHANISMS) & s["counter"].isin(MECHANICS + (SLEPT,))]
    if s.empty:
        return pd.DataFrame()
    wide = s.pivot_table(index=["variant", "point"], columns="counter", values="median",
                         observed=True, aggfunc="first").reset_index()
    wide["variant"] = wide["variant"].astype(str)
    wide["point"] = wide["point"].astype(str)
    names = [c for c in MECHANICS if c in wide.columns and (wide[c].fillna(0) != 0).any()]
    if SLEPT in wide.columns:
        names.append(SLEPT)
    keep = (wide[[c for c in names if c != SLEPT]].fillna(0) != 0).any(axis=1) \
        if len(names) > (SLEPT in names) else pd.Series(False, index=wide.index)
    keep |= wide["variant"] == "bpf_flag_sleep"
    wide = wide[keep]
    if wide.empty:
        return pd.DataFrame()
    data = _with_mechanism_params(run, family, wide[["variant", "point"] + names])
    if SLEPT in data.columns:
        data.loc[data["variant"] != "bpf_flag_sleep", SLEPT] = math.nan
    return _ordered(data)[["variant", "point", "event", "block_kind", "placement", "other"]
                          + names]


# -- text ---------------------------------------------------------------------------------------

def _fraction(x: float) -> str:
    return f"{float(x):.3f}" if x is not None and math.isfinite(float(x)) else "-"


def probe_text(run: Run, family: str = FAMILY) -> str:
    """Which runs the upcall and timer numbers come from."""
    kinds = {k: v for k, v in cell_kinds(run, family).items()}
    values = set(kinds.values())
    if values == {"paired"}:
        return ("The latencies come from the runs without probes (probe_overhead: each had a "
                "twin with probes attached, which gives the kernel view).")
    if values and values <= {"probed"}:
        return ("Probes were attached to every run these latencies come from (no run without "
                "probes): the probes' own programs run at every context switch and wake-up, "
                "as the bpf upcall program does; probe_overhead = true in [suite] gives "
                "undisturbed numbers.")
    if "probed" in values:
        probed = sum(1 for v in kinds.values() if v == "probed")
        return (f"Probes were attached to the runs of {probed} of the {len(kinds)} variant "
                "points (those without a twin without probes); the others come from runs "
                "without probes.")
    return "The runs had no probes attached (no kernel view)."


def handoff_lines(run: Run, seed: int = 0) -> list[str]:
    """The yardstick: the same-CPU futex handoff, the cross-CPU one as context."""
    refs = handoff_reference(run, seed)
    same, cross = refs.get(SAME), refs.get(CROSS)
    if same is None:
        return [NO_HANDOFF_LINE]
    text = (f"Yardstick: the baseline family's futex_pingpong one-way handoff (waker's stamp "
            f"before FUTEX_WAKE to the wakee's after it runs) in this run: "
            f"{fmt_us(same['median'])} us on one CPU (median, 95% CI "
            f"{fmt_us_interval(same['ci_low'], same['ci_high'])} us)")
    if cross is not None:
        r = cross["median"] / same["median"]
        text += (f"; across CPUs {fmt_us(cross['median'])} us, {fmt_ratio(r)} the same-CPU one "
                 "(context only: the ratios below use the same-CPU handoff)")
    return [text + "."]


def crosscheck_lines(check: pd.DataFrame) -> list[str]:
    if check.empty:
        return []
    lines = []
    sched = check[check["wake_of"] == SCHEDULER_WAKEUPS]
    few = sched[sched["wakeups_per_upcall"].astype(float) < 0.5]
    if len(few):
        lines.append("The scheduler slept for fewer than half of the upcalls at "
                     + ", ".join(f"{row_label(r)} ({_fraction(r['wakeups_per_upcall'])} "
                                 "wake-ups per upcall)" for _, r in few.iterrows())
                     + ": it mostly found the event without being woken there, and the "
                       "wake-to-run describes the rare sleeps only.")
    if "slept_fraction" in few.columns:
        claims = few[few["slept_fraction"].astype(float) >= 0.5]
        if len(claims):
            lines.append("There the workers' own slept counter says otherwise ("
                         + ", ".join(f"{row_label(r)}: slept_fraction "
                                     f"{_fraction(r['slept_fraction'])}"
                                     for _, r in claims.iterrows())
                         + "): it counts the waits the scheduler entered, and a wait whose "
                           "event already came (a FUTEX_WAIT on a word that changed) returns "
                           "without sleeping. The kernel's count is the one to trust.")
    before = sched[np.isfinite(sched["before_wake"].astype(float))]
    parts = []
    for variant in SLEEPING:
        mine = before[before["variant"] == variant]
        if mine.empty:
            continue
        where = [f"{fmt_us(float(g['before_wake'].median()))} us {placement}"
                 for placement, g in mine.groupby("placement", sort=False)]
        parts.append(f"{variant} {', '.join(where)}")
    if parts:
        text = ("Time from the event to the kernel waking the scheduler (upcall median minus "
                "the scheduler's wake-to-run median, median over the mechanism's points where "
                "it slept): " + "; ".join(parts) + ".")
        if (before["variant"] == "bpf_ringbuf").any():
            text += (" For bpf_ringbuf the program does not wake the scheduler itself: "
                     "bpf_ringbuf_commit() with BPF_RB_FORCE_WAKEUP queues an irq_work, which "
                     "runs the wake-up after the tracepoint has returned.")
        lines.append(text)
    return lines


# -- the anatomy: where an upcall's microseconds go --------------------------------------------

def anatomy_table(run: Run, family: str = FAMILY) -> pd.DataFrame:
    """One row per mechanism point whose runs stamped the kernel stages
    (anatomy = true): per stage (STAGES) its median over the pooled
    user-side samples (``<stage>``, ns), the lowest and highest median of
    a repetition (``<stage>_rep_min`` / ``_rep_max``) and the fraction of
    samples in which the stage's stamp was present (``<stage>_seen``); the
    latency median of the same samples; ``dominant``, the stage with the
    largest median; the ANATOMY_COUNTERS' medians over the runs; and the
    latency table's columns (mechanism, event, block_kind, placement,
    other, sleeps)."""
    return cached_per_run(run, "upcall", ("anatomy_table", family),
                          lambda: _anatomy_table(run, family))


def _anatomy_table(run: Run, family: str) -> pd.DataFrame:
    from analysis._views import user_samples
    lat = latency_table(run, family)
    s = user_samples(run)
    s = s[(s["family"] == family) & s["variant"].astype(str).isin(MECHANISMS)]
    names = [f"stage_{st}" for st in STAGES]
    s = s[s["metric"].astype(str).isin(names + [LATENCY])]
    if s.empty or not s["metric"].astype(str).isin(names).any():
        return pd.DataFrame()
    counters = counter_summary(run, family)
    counters = counters[counters["counter"].isin(ANATOMY_COUNTERS + tuple(
        f"{n}_seen" for n in names))].set_index(["variant", "point", "counter"])["median"]
    rows = []
    for (variant, point), g in s.groupby([s["variant"].astype(str), s["point"].astype(str)],
                                         sort=False):
        metric = g["metric"].astype(str)
        if not metric.isin(names).any():
            continue
        row: dict[str, Any] = {"variant": variant, "point": point}
        for st, name in zip(STAGES, names):
            part = g[metric == name]
            row[st] = float(part["value"].median())
            reps = part.groupby("repetition")["value"].median()
            row[f"{st}_rep_min"], row[f"{st}_rep_max"] = float(reps.min()), float(reps.max())
            row[f"{st}_seen"] = float(counters.get((variant, point, f"{name}_seen"), math.nan))
        row["latency_median"] = float(g.loc[metric == LATENCY, "value"].median())
        row["dominant"] = max(STAGES, key=lambda st: row[st])
        for c in ANATOMY_COUNTERS:
            row[c] = float(counters.get((variant, point, c), math.nan))
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    data = pd.DataFrame(rows)
    keep = ["variant", "point", "mechanism", "event", "block_kind", "placement", "other",
            "sleeps", "pm_qos"]
    return _ordered(data.merge(lat[[k for k in keep if k in lat.columns]],
                               on=["variant", "point"], how="inner"))


def best_sleeping_kernel_upcall(anatomy: pd.DataFrame, placement: str = SAME):
    """The anatomy row of the fastest kernel-initiated upcall whose
    scheduler slept for it, at a placement (None if none)."""
    rows = anatomy[(anatomy["placement"] == placement)
                   & anatomy["variant"].isin(KERNEL_INITIATED) & anatomy["sleeps"].astype(bool)]
    if rows.empty:
        return None
    return rows.loc[rows["latency_median"].astype(float).idxmin()]


def our_handoff(anatomy: pd.DataFrame, placement: str = SAME, like=None):
    """The futex handoff measured by the same code (HANDOFF_OF_OURS), at a
    placement, preferring the row whose other parameters match ``like``'s."""
    rows = anatomy[(anatomy["variant"] == HANDOFF_OF_OURS[0])
                   & (anatomy["block_kind"] == HANDOFF_OF_OURS[1])
                   & (anatomy["placement"] == placement)]
    if rows.empty:
        return None
    if like is not None:
        # the same idle setting as the upcall it is compared with
        for column in ("other", "pm_qos"):
            if column in rows.columns:
                same = rows[rows[column].astype(str) == str(like[column])]
                if len(same):
                    rows = same
                    break
    return rows.loc[rows["latency_median"].astype(float).idxmin()]


def anatomy_lines(run: Run, family: str = FAMILY) -> list[str]:
    """The stage that dominates each mechanism (from the medians), and the
    best sleeping kernel-initiated upcall against the futex handoff, stage
    by stage."""
    data = anatomy_table(run, family)
    if data.empty:
        return []
    lines = []
    for placement in PLACEMENTS:
        rows = data[data["placement"] == placement]
        if rows.empty:
            continue
        by_stage: dict[str, list[str]] = {}
        for _, r in rows.iterrows():
            by_stage.setdefault(r["dominant"], []).append(
                f"{row_label(r)} ({fmt_us(r[r['dominant']])} of {fmt_us(r['latency_median'])} us)")
        parts = [f"{st} ({STAGE_TEXT[st]}) in {'; '.join(labels)}"
                 for st, labels in by_stage.items()]
        lines.append(f"Dominant stage, {placement} (largest median stage of each point): "
                     + ". ".join(parts) + ".")
    costs = data[data["variant"].isin(KERNEL_INITIATED)
                 & np.isfinite(data["program_ns_per_upcall"].astype(float))]
    if len(costs):
        parts = [f"{v} {fmt_us(float(g['program_ns_per_upcall'].median()))} us "
                 f"({_fraction(float(g['self_ipis_per_upcall'].median()))} self-IPIs)"
                 for v, g in costs.groupby("variant", sort=False)]
        lines.append("What the upcall costs the CPUs that run the program (the blocking "
                     "thread's switch among them): its run time per upcall, BPF stats, median "
                     "over the mechanism's points, and the self-IPIs the event's CPU sends per "
                     "upcall: " + "; ".join(parts) + ".")
    refs = handoff_reference(run)
    best = best_sleeping_kernel_upcall(data)
    if best is not None:
        text = (f"Best sleeping kernel-initiated upcall on the worker's CPU: {row_label(best)}, "
                f"median {fmt_us(best['latency_median'])} us")
        if SAME in refs:
            text += (f", {fmt_ratio(best['latency_median'] / refs[SAME]['median'])} the "
                     f"baseline same-CPU futex handoff's {fmt_us(refs[SAME]['median'])} us")
        ours = our_handoff(data, SAME, best)
        if ours is not None:
            diff = {st: best[st] - ours[st] for st in STAGES}
            worst = max(STAGES, key=lambda st: diff[st])
            text += (f". Against the futex handoff measured by the same code ({row_label(ours)}, "
                     f"{fmt_us(ours['latency_median'])} us), stage by stage (median us, upcall "
                     "vs handoff): " + ", ".join(f"{st} {fmt_us(best[st])} vs {fmt_us(ours[st])}"
                                                for st in STAGES)
                     + f"; what stands in the way is {worst} ({STAGE_TEXT[worst]}), "
                       f"{fmt_us(diff[worst])} us more")
        lines.append(text + ".")
    return lines


def _stage_cell(r, stage: str) -> str:
    """median (lowest..highest repetition's), or '-' for a stage that never happened."""
    if r[f"{stage}_seen"] == 0:
        return "-"
    return (f"{fmt_us(r[stage])} ({fmt_us(r[f'{stage}_rep_min'])}.."
            f"{fmt_us(r[f'{stage}_rep_max'])})")


def anatomy_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = anatomy_table(run, family)
    if data.empty:
        return []
    header = ["mechanism", "event", "block_kind", "placement", "other", "latency [us]"] + \
        [f"{st} [us]" for st in STAGES] + ["IPIs", "self-IPIs", "prog ns/run", "prog ns/upcall"]
    rows = []
    for _, r in data.iterrows():
        rows.append([r["mechanism"], r["event"], r["block_kind"], r["placement"],
                     r["other"] or "-", fmt_us(r["latency_median"])]
                    + [_stage_cell(r, st) for st in STAGES]
                    + [_fraction(r["ipis_per_upcall"]), _fraction(r["self_ipis_per_upcall"]),
                       fmt_count(r["program_ns_per_run"]), fmt_count(r["program_ns_per_upcall"])])
    notes = ["each stage: the median of its samples, in brackets the lowest and highest "
             "repetition's median; '-': the stage never happened (a polling scheduler is never "
             "woken); a sample's stages sum to its latency, their medians need not",
             "stages: " + "; ".join(f"{st}: {STAGE_TEXT[st]}" for st in STAGES),
             "IPIs / self-IPIs: sent by the event's CPU per upcall (the irq_work of a BPF "
             "wake-up is a self-IPI); prog ns/run: the upcall program's run time per run "
             "(bpf_prog_info with BPF stats on, every sched_switch / sched_waking of the "
             "machine), prog ns/upcall: its run time per upcall, what the blocking side pays"]
    blocks: list[Block] = [Heading("Anatomy of an upcall: where the microseconds go", size=12,
                                   keep_with_next=1.2),
                           Table(header, rows, right=[False] * 5 + [True] * 11,
                                 caption="The kernel's stages of each upcall (runs with "
                                         "anatomy = true), from raw tracepoints",
                                 notes=notes, max_rows=LATENCY_ROWS_PER_PAGE)]
    blocks += [Text(line, size=9.5, indent=0.15) for line in anatomy_lines(run, family)]
    return blocks


def anatomy_figure(report: Report, family: str = FAMILY) -> None:
    """A stacked bar of the stage medians per mechanism point, one panel
    per placement, the latency median as a tick."""
    run = report.run
    data = anatomy_table(run, family)
    if data.empty:
        return
    placements = [p for p in PLACEMENTS if (data["placement"] == p).any()]
    colors = dict(zip(STAGES, plots.palette(len(STAGES))))
    with report.figure(f"{family}: anatomy of an upcall", nrows=len(placements),
                       caption="Median of each kernel stage per mechanism and point (stacked "
                               "bars, us; runs with anatomy = true, user-side samples pooled), "
                               "from the event (sched_switch / sched_waking of the worker, or "
                               "the user stamp for futex_hint and uring) to the scheduler's "
                               "own stamp; black tick: the latency median of the same samples "
                               "(medians of stages need not add up to it).") as (fig, axes):
        for ax, placement in zip(axes, placements):
            rows = data[data["placement"] == placement].iloc[::-1]
            y = np.arange(len(rows))
            left = np.zeros(len(rows))
            for st in STAGES:
                width = rows[st].astype(float).to_numpy() / 1000
                ax.barh(y, width, left=left, color=colors[st], label=st, height=0.7)
                left += width
            ax.plot(rows["latency_median"].astype(float).to_numpy() / 1000, y, "|",
                    color="black", markersize=12, label="latency median")
            ax.set_yticks(y, [row_label(r).replace(f" {placement}", "")
                              for _, r in rows.iterrows()], fontsize=6.5)
            ax.set_xlabel("us")
            ax.set_title(_placement_title(placement), fontsize=9)
            plots.legend_right(ax, fontsize=7)


def latency_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """The latency table, one per placement, and the yardstick under it."""
    data = latency_table(run, family)
    if data.empty:
        return []
    has_ratio = np.isfinite(data["vs_handoff"].astype(float)).any()
    has_woken = np.isfinite(data["woken_per_upcall"].astype(float)).any()
    header = ["mechanism", "event", "block_kind", "placement", "other", "n", "reps",
              "median [us]", "p90 [us]", "p99 [us]", "95% CI [us]", "rep spread [us]"]
    if has_ratio:
        header += ["/ handoff", "interval"]
    if has_woken:
        header.append("woken/upcall")
    header.append("")
    right = [False] * 5 + [True] * 5 + [False, False] + ([True, False] if has_ratio else []) \
        + ([True] if has_woken else []) + [False]
    notes = ["latency: the scheduler's stamp on learning of the event minus the kernel's time "
             "of it (bpf: bpf_ktime_get_ns() in the program at sched_switch / sched_waking; "
             "futex_hint: the worker's stamp before its FUTEX_WAKE; uring_cqe: the waker's "
             "stamp before its wake-up call, or the timeout's deadline). "
             + probe_text(run, family),
             "95% CI: of the median, hierarchical bootstrap over repetitions and samples; "
             "rep spread: min..max of the per-repetition medians; noisy: those spread more "
             "than 10% of the median"]
    if has_ratio:
        notes.append("/ handoff: the median over the same-CPU futex handoff's median "
                     "(baseline futex_pingpong, handoff series, same run); interval: the two "
                     "medians' 95% CIs divided crosswise")
    if has_woken:
        notes.append("woken/upcall: wake-ups of the scheduler thread per upcall in the runs "
                     "with probes (kernel view): 1 where it slept for every upcall, 0 where "
                     "it found them polling; '-': no kernel view")
    blocks: list[Block] = [Heading("Upcall latency by mechanism", size=12, keep_with_next=1.2)]
    placements = [p for p in PLACEMENTS if (data["placement"] == p).any()]
    placements += [p for p in dict.fromkeys(data["placement"]) if p not in placements]
    for i, placement in enumerate(placements):
        part = data[data["placement"] == placement]
        rows = [_latency_row(r, has_ratio, has_woken) for _, r in part.iterrows()]
        blocks.append(Table(header, rows, right=right, highlight=part["noisy"].tolist(),
                            caption=f"Upcall latency, {_placement_title(placement)}",
                            notes=notes if i == len(placements) - 1 else (),
                            max_rows=LATENCY_ROWS_PER_PAGE))
    blocks += [Text(line, size=9.5) for line in handoff_lines(run)]
    return blocks


def _latency_row(r, has_ratio: bool, has_woken: bool) -> list[str]:
    row = [r["mechanism"], r["event"], r["block_kind"], r["placement"], r["other"] or "-",
           str(r["n"]), str(r["reps"]), fmt_us(r["median"]), fmt_us(r["p90"]), fmt_us(r["p99"]),
           fmt_us_interval(r["ci_low"], r["ci_high"]), fmt_us_interval(r["rep_min"], r["rep_max"])]
    if has_ratio:
        row += [fmt_ratio(r["vs_handoff"]),
                f"{fmt_ratio(r['vs_handoff_low'])}..{fmt_ratio(r['vs_handoff_high'])}"]
    if has_woken:
        row.append(_fraction(r["woken_per_upcall"]))
    row.append("noisy" if r["noisy"] else "")
    return row


def crosscheck_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    if latency_table(run, family).empty:
        return []
    reason = kernel_view_status(run, family)
    heading = Heading("Kernel cross-check: the scheduler's wake-to-run", size=12,
                      keep_with_next=1.2)
    if reason is not None:
        return [heading, Text(f"no kernel view: {reason}", color="#a63603")]
    check = wake_check(run, family)
    if not check.empty:
        slept = latency_table(run, family).set_index(["variant", "point"])["slept_fraction"]
        check = check.assign(slept_fraction=[slept.get((v, p), math.nan)
                                             for v, p in zip(check["variant"], check["point"])])
    if check.empty:
        return [heading, Text("No run of a sleeping mechanism (" + ", ".join(SLEEPING)
                              + ") had probes attached.", size=9.5)]
    rows = [[r["mechanism"], r["event"], r["block_kind"], r["placement"], r["other"] or "-",
             str(r["kernel_reps"]), fmt_us(r["upcall_median"]), fmt_us(r["wake_median"]),
             fmt_us(r["before_wake"]), str(r["wake_n"]) if r["wake_n"] else "-",
             _fraction(r["wakeups_per_upcall"]), r["wake_of"] or "-"]
            for _, r in check.iterrows()]
    header = ["mechanism", "event", "block_kind", "placement", "other", "reps",
              "upcall median [us]", "wake-to-run median [us]", "before wake [us]", "wake-ups",
              "per upcall", "wake-ups of"]
    right = [False] * 5 + [True] * 6 + [False]
    notes = ["upcall median: of the runs with probes attached (the same runs as the "
             "wake-ups); wake-to-run: sched_waking of the thread to it running "
             "(sched:sched_switch), median of the pooled wake-up records",
             f"wake-ups of: '{SCHEDULER_WAKEUPS}' = the worker process's main thread, which "
             "calls upcall_run() and is the scheduler (the lowest thread id the probes saw in "
             f"the run); '{ALL_WAKEUPS}' where that thread had no wake-up recorded",
             "before wake: upcall median minus wake-to-run median, the time from the event to "
             "the kernel waking the scheduler (and its return to user space)"]
    blocks: list[Block] = [heading]
    placements = list(dict.fromkeys(check["placement"]))
    for i, placement in enumerate(placements):
        index = [j for j, p in enumerate(check["placement"]) if p == placement]
        blocks.append(Table(header, [rows[j] for j in index], right=right,
                            caption="Upcall latency against the kernel's wake-to-run of the "
                                    f"scheduler thread, {_placement_title(placement)}",
                            notes=notes if i == len(placements) - 1 else (),
                            max_rows=LATENCY_ROWS_PER_PAGE))
    return blocks + [Text(line, size=9.5, indent=0.15) for line in crosscheck_lines(check)]


def since_source_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = since_source_table(run, family)
    if data.empty:
        return []
    urings = [u for u in URING_CQE if np.isfinite(data[u].astype(float)).any()]
    header = ["mechanism", "block_kind", "placement", "other", "latency median [us]",
              "since_source median [us]", "since_source p99 [us]"] \
        + [f"{u} [us]" for u in urings]
    rows = [[r["mechanism"], r["block_kind"], r["placement"], r["other"] or "-",
             fmt_us(r["latency"]), fmt_us(r["since_source"]), fmt_us(r["since_source_p99"])]
            + [fmt_us(r[u]) for u in urings] for _, r in data.iterrows()]
    notes = ["since_source: the scheduler's stamp minus the source's own time (the waker's "
             "stamp before its call; a nanosleep's deadline, so a SCHED_OTHER sleep's timer "
             "slack is in it), the measure of the uring_cqe variants' latency",
             "uring_cqe columns: those variants' latency medians at the same block_kind, "
             "placement and block_us ('-': not in this run)"]
    return [Heading("since_source: unblock upcalls measured from the source", size=12,
                    keep_with_next=1.2),
            Table(header, rows, right=[False] * 4 + [True] * (3 + len(urings)),
                  caption="bpf unblock upcalls of futex, pipe and nanosleep blocks, medians",
                  notes=notes)]


def timer_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    rows = timer_rows(run, family)
    if rows.empty:
        return []
    pivot = timer_pivot(rows)
    variants = [v for v in TIMERS if (v, "median") in pivot.columns]
    extra = [c for c in ("overruns", "timer_slack_ns", "drift_per_period_ns")
             if np.isfinite(pivot[(c, "")].astype(float)).any()]
    names = {"overruns": "overruns", "timer_slack_ns": "slack [us]",
             "drift_per_period_ns": "drift/period [us]"}
    header = list(TIMER_AXES) + [v.replace("timer_", "") for v in variants] \
        + [names[c] for c in extra]
    table_rows = []
    for point, r in pivot.iterrows():
        row = [str(v) for v in point]
        row += [f"{fmt_us(r[(v, 'median')])} / {fmt_us(r[(v, 'p99')])}"
                if math.isfinite(r[(v, "median")]) else "-" for v in variants]
        row += [fmt_count(r[(c, "")]) if c == "overruns" else fmt_us(r[(c, "")]) for c in extra]
        table_rows.append(row)
    notes = ["each variant's cell: median / p99 lateness [us] (when user code ran on the "
             "expiry minus the expiry asked for), user side; timer_ left out of the names",
             "overruns: expiries that passed unseen, summed over the point's variants (median "
             "over the runs each); slack: our threads' timer slack at SCHED_OTHER points "
             "(clock_nanosleep honours it, timerfd, POSIX timers and io_uring timeouts do "
             "not); drift/period: timer_uring_multishot's schedule sliding per period (the "
             "kernel re-arms relative to the CQE it posts)"]
    blocks: list[Block] = [Heading("Timer upcalls: lateness beside cyclictest", size=12,
                                   keep_with_next=1.2),
                           Table(header, table_rows,
                                 right=[True] * len(TIMER_AXES) + [True] * (len(variants)
                                                                            + len(extra)),
                                 caption="Lateness of a periodic timer per point: median / p99 "
                                         "[us] per variant", notes=notes)]
    for line in timer_lines(rows):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.03)]
    return blocks


def timer_lines(rows: pd.DataFrame) -> list[str]:
    pairs = cyclictest_pairs(rows)
    if not pairs:
        if len(rows):
            return ["No point has both timer_nanosleep and cyclictest: add both to a timer "
                    "table of the suite to compare ours with the standard tool."]
        return []
    out = []
    for p in pairs:
        out.append(f"{point_text(p.point)}: our timer_nanosleep median {fmt_us(p.ours['median'])} "
                   f"us vs cyclictest {fmt_us(p.cyclictest['median'])} us ({fmt_ratio(p.ratio)}, "
                   f"95% interval {fmt_ratio(p.low)}..{fmt_ratio(p.high)}); p99 "
                   f"{fmt_us(p.ours['p99'])} vs {fmt_us(p.cyclictest['p99'])} us.")
    return out


def mechanics_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    zero = must_be_zero(run, family)
    blocks: list[Block] = []
    if zero:
        bad = {k: v for k, v in zero.items() if v[0] != 0}
        runs = max(v[1] for v in zero.values())
        if not bad:
            text = (f"{', '.join(zero)}: 0 in every one of the {runs} runs of the upcall "
                    "mechanisms (with probes and without): every ring record was consumed "
                    "once, in order, from the registered thread, and no flag update folded "
                    "two events.")
            blocks.append(Text(text, size=9.5))
        else:
            text = "; ".join(f"{k} = {fmt_count(v[0])} over {v[2]} of {v[1]} runs"
                             for k, v in bad.items())
            blocks.append(Text(f"Must be 0 but is not: {text}: those runs did not run as "
                               "built.", size=9.5, color="#a63603"))
    table = mechanics_table(run, family)
    if not table.empty:
        names = [c for c in table.columns if c in MECHANICS + (SLEPT,)]
        header = ["variant", "event", "block_kind", "placement", "other"] + names
        rows = [[r["variant"], r["event"], r["block_kind"], r["placement"], r["other"] or "-"]
                + [("-" if not math.isfinite(float(r[c])) else
                    f"{float(r[c]):.3f}" if c == SLEPT else fmt_count(float(r[c])))
                   for c in names] for _, r in table.iterrows()]
        blocks.append(Table(header, rows, right=[False] * 5 + [True] * len(names),
                            caption="How the upcalls went: the rows where something was not "
                                    "0, and the spin-then-sleep scheduler",
                            notes=["medians over the user-side runs; lost_upcalls: unblock "
                                   "events the program never ran for (the kernel skipped a "
                                   "nested tracing program); program_misses: the kernel's "
                                   "recursion misses of the upcall program; not_blocked: calls "
                                   "that returned without blocking (no upcall, repeated); "
                                   "extra_events: a second block within one upcall (a pread); "
                                   "slept_fraction: upcalls bpf_flag_sleep's scheduler slept "
                                   "for, not found by polling", "every row not listed: all of "
                                   "these 0"]))
    elif zero:
        blocks.append(Text(", ".join(MECHANICS) + ": 0 in every row.", size=9.5))
    if blocks:
        blocks.insert(0, Heading("Counters that prove the mechanics", size=12,
                                 keep_with_next=1.0))
    return blocks


def paper_lines(run: Run, family: str = FAMILY) -> list[str]:
    """The 1992 paper's upcall figure (quoted) beside this run's best
    same-CPU upcall (computed)."""
    # the figures are the paper's; the sentence around them is ours, not
    # its wording, so no quotation marks
    lines = [f"{PAPER_SOURCE} reports: {PAPER_QUOTE} (The paper's figures, quoted; not "
             "measured here.)"]
    data = latency_table(run, family)
    best = best_upcall(data, SAME)
    if best is None:
        return lines + ["This run has no same-CPU upcall to set beside it."]
    text = (f"This run's best same-CPU upcall: {row_label(best)}, median "
            f"{fmt_us(best['median'])} us: ours is {fmt_times(PAPER_UPCALL_NS / best['median'])} "
            "times faster than the 1992 upcall")
    sleeper = best_upcall(data, SAME, sleeping_only=True)
    if sleeper is not None and not _same_row(sleeper, best):
        text += (f"; the best whose scheduler sleeps for it (as an activation's would), "
                 f"{row_label(sleeper)}, {fmt_us(sleeper['median'])} us: "
                 f"{fmt_times(PAPER_UPCALL_NS / sleeper['median'])} times faster")
    cpu = run.environment.get("cpu.model")
    lines.append(text + ". The hardware differs by some 30 years (a CVAX Firefly against "
                 + (f"this {cpu}" if cpu else "this machine")
                 + "), and their figure times two threads signalling and waiting through the "
                   "kernel where ours times one upcall: the ratio is context, not a "
                   "comparison of designs.")
    return lines


def sleeping_pairs(data: pd.DataFrame) -> list[tuple[Any, Any]]:
    """(same-CPU row, cross-CPU row) of every latency_table point measured
    both ways whose scheduler slept for its upcalls on both sides: the
    cross-CPU one is woken from the other CPU."""
    rows = data[data["sleeps"].astype(bool)]
    out = []
    for _, part in rows.groupby(["variant", "event", "block_kind", "other"], sort=False):
        same, cross = part[part["placement"] == SAME], part[part["placement"] == CROSS]
        if len(same) and len(cross):
            out.append((same.iloc[0], cross.iloc[0]))
    return out


def findings_lines(run: Run, family: str = FAMILY) -> list[str]:
    """"What this run shows", from the medians."""
    data = latency_table(run, family)
    lines = []
    refs = handoff_reference(run)
    same_ref, cross_ref = refs.get(SAME), refs.get(CROSS)
    for placement, where in ((SAME, "on the worker's CPU (same_cpu)"),
                             (CROSS, "on the other CPU (cross_cpu)")):
        best = best_upcall(data, placement)
        if best is None:
            continue
        text = (f"Best upcall {where}: {row_label(best)}, median {fmt_us(best['median'])} us "
                f"(95% CI {fmt_us_interval(best['ci_low'], best['ci_high'])})")
        if same_ref is not None:
            r, lo, hi = median_ratio(best, same_ref)
            text += (f", {fmt_ratio(r)} the same-CPU futex handoff's {fmt_us(same_ref['median'])} "
                     f"us (95% interval {fmt_ratio(lo)}..{fmt_ratio(hi)})")
        sleeper = best_upcall(data, placement, sleeping_only=True)
        if sleeper is not None and not _same_row(sleeper, best):
            text += (f"; the best whose scheduler slept for its upcalls (leaving the CPU to "
                     f"other work): {row_label(sleeper)}, {fmt_us(sleeper['median'])} us")
            if same_ref is not None:
                text += f" ({fmt_ratio(sleeper['median'] / same_ref['median'])} the handoff)"
        lines.append(text + ".")
    if same_ref is None and not data.empty:
        lines.append(NO_HANDOFF_LINE)
    pairs = sleeping_pairs(data)
    if pairs:
        extra = np.array([c["median"] - s["median"] for s, c in pairs], dtype=float)
        ratios = np.array([c["median"] / s["median"] for s, c in pairs], dtype=float)
        text = (f"Across CPUs, the upcalls whose scheduler sleeps ({len(pairs)} points measured "
                f"both ways, the scheduler asleep on both sides) take "
                f"{fmt_ratio(float(np.median(ratios)))} their same-CPU median (median of "
                f"the ratios; {fmt_ratio(float(ratios.min()))}..{fmt_ratio(float(ratios.max()))}"
                f"), {fmt_us(float(np.median(extra)))} us more (median)")
        if same_ref is not None and cross_ref is not None:
            wake = cross_ref["median"] - same_ref["median"]
            carry = int((extra >= 0.5 * wake).sum())
            text += (f". The futex handoff gains {fmt_us(wake)} us across CPUs; {carry} of the "
                     f"{len(pairs)} points gain at least half that: "
                     + ("they carry the wake-up of the other CPU"
                        if carry > len(pairs) / 2 else
                        "most do not carry the other CPU's wake-up"))
        _, driver = environment_value(run.environment, "power.cpuidle_driver",
                                      contains=("cpuidle", "driver"))
        _, poll = environment_value(run.environment, "power.haltpoll_guest_poll_ns",
                                    contains=("guest", "poll"))
        if driver == "haltpoll":
            text += (" (cpuidle driver haltpoll" + (", guest halt polling off" if poll == 0
                                                    else "")
                     + ": an idle vCPU halts, and waking it costs a VM exit and entry)")
        lines.append(text + ".")
    lines += [line for line in anatomy_lines(run, family)
              if line.startswith("Best sleeping kernel-initiated")]
    lines.append(probe_text(run, family))
    return lines


def findings_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    lines = findings_lines(run, family) if not latency_table(run, family).empty else []
    if not lines:
        return []
    blocks: list[Block] = [Heading("What this run shows", size=12, keep_with_next=0.8)]
    for line in lines:
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    return blocks


def paper_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    blocks: list[Block] = [Heading("What the scheduler activations paper measured", size=12,
                                   keep_with_next=0.8)]
    for line in paper_lines(run, family):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    return blocks


def section_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """Everything the section adds after the generic tables, in order."""
    return (findings_blocks(run, family) + latency_blocks(run, family)
            + anatomy_blocks(run, family) + crosscheck_blocks(run, family)
            + since_source_blocks(run, family)
            + timer_blocks(run, family) + mechanics_blocks(run, family)
            + (paper_blocks(run, family) if not latency_table(run, family).empty else []))


# -- figures ------------------------------------------------------------------------------------

def variant_colors() -> dict[str, Any]:
    """One colour per mechanism, the same in every figure, and one per timer
    variant (they never share a figure with the mechanisms)."""
    return {**dict(zip(MECHANISMS, plots.palette(len(MECHANISMS)))),
            **dict(zip(TIMERS, plots.palette(len(TIMERS))))}


def _line_style(event: str, other_index: int) -> str:
    if other_index:
        return ":" if event == "block" else "-."
    return "-" if event == "block" else "--"


def cdf_lines(run: Run, data: pd.DataFrame, family: str = FAMILY) -> list[tuple[str, np.ndarray,
                                                                                  dict]]:
    """plots.cdf_curves input for the rows of ``data`` (one placement): each
    row's user-side latency samples in us, labelled ``variant event``."""
    samples = headline_samples(run, family)
    samples = samples[samples["metric"].astype(str) == LATENCY]
    colors = variant_colors()
    others: dict[str, list[str]] = {}
    curves = []
    for _, r in data.iterrows():
        values = samples.loc[(samples["variant"].astype(str) == r["variant"])
                             & (samples["point"].astype(str) == r["point"]), "value"]
        seen = others.setdefault(r["variant"], [])
        if r["other"] not in seen:
            seen.append(r["other"])
        label = f"{r['variant']} {r['event']}" + (f" {r['other']}" if r["other"] else "")
        curves.append((label, values.to_numpy(dtype=float) / 1000,
                       {"color": colors.get(r["variant"]),
                        "linestyle": _line_style(r["event"], seen.index(r["other"]))}))
    return curves


def block_kinds(data: pd.DataFrame) -> list[str]:
    """The block kinds of the run, the one most mechanisms have first."""
    counts = data.groupby("block_kind")["variant"].nunique()
    order = {k: i for i, k in enumerate(BLOCK_KINDS)}
    return sorted(counts.index, key=lambda k: (-counts[k], order.get(k, 9)))


def bars_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """rows as plots.bars wants them: in us, labelled ``variant event``."""
    out = rows.copy()
    for col in ("median", "ci_low", "ci_high", "p99"):
        out[col] = out[col].astype(float) / 1000
    out["unit"] = "us"
    out["point"] = [f"{e} {k}" + (f" {o}" if o else "")
                    for e, k, o in zip(out["event"], out["block_kind"], out["other"])]
    return out


def _placement_title(placement: str) -> str:
    return f"{placement}: scheduler on " + ("the worker's CPU" if placement == SAME
                                           else "the other CPU")


def latency_figures(report: Report, family: str = FAMILY) -> None:
    """Per block kind: the CDF of every mechanism's upcall latency, one panel
    per placement; then the medians with their p99, every point, one panel
    per placement."""
    run = report.run
    data = latency_table(run, family)
    if data.empty:
        return
    placements = [p for p in PLACEMENTS if (data["placement"] == p).any()]
    for kind in block_kinds(data):
        part = _ordered(data[data["block_kind"] == kind], by_placement=False)
        with report.figure(f"{family}: upcall latency, block_kind={kind}",
                           nrows=len(placements),
                           caption="Empirical CDF of every upcall's latency (the user-side "
                                   "runs, repetitions pooled), log x. One colour per "
                                   "mechanism; solid: block upcalls, dashed: unblock upcalls "
                                   "(futex_hint tells of a block, uring_cqe of an unblock); "
                                   "dotted / dash-dotted: the same with other parameters. The x "
                                   "axis ends at the slowest curve's p99.9; each legend entry "
                                   "gives n and the largest sample.") as (fig, axes):
            for ax, placement in zip(axes, placements):
                rows = part[part["placement"] == placement]
                if rows.empty:
                    continue
                plots.cdf_curves(ax, cdf_lines(run, rows, family), xlabel="upcall latency [us]",
                                 log=True, title=_placement_title(placement), legend=False)
                plots.plain_log_ticks(ax, "x")
                plots.legend_right(ax, fontsize=7)
    with report.figure(f"{family}: upcall latency medians", ncols=len(placements),
                       caption="Median of every mechanism and point (bars), 95% CI of the "
                               "median (whiskers) and p99 (diamonds), user-side runs, log x; "
                               "rows by mechanism, event, block kind. Grey lines: the baseline "
                               "family's futex_pingpong one-way handoff in the same run, on one "
                               "CPU (dotted) and across CPUs (dash-dotted), where the run has "
                               "it.") as (fig, axes):
        refs = handoff_reference(run)
        for j, (ax, placement) in enumerate(zip(axes, placements)):
            rows = _ordered(data[data["placement"] == placement], by_placement=False)
            for where, style in ((SAME, ":"), (CROSS, "-.")):
                if where in refs:
                    ax.axvline(refs[where]["median"] / 1000, color="0.35", linewidth=1.0,
                               linestyle=style, zorder=0,
                               label=f"futex handoff, {where} ({fmt_us(refs[where]['median'])} us)")
            plots.bars(ax, bars_frame(rows), log=True, title=placement,
                       legend=j == 0)
            plots.plain_log_ticks(ax, "x")


def timer_figure(report: Report, family: str = FAMILY) -> None:
    """The CDF of each timer variant's lateness, one panel per point."""
    run = report.run
    rows = timer_rows(run, family)
    if rows.empty:
        return
    samples = headline_samples(run, family)
    samples = samples[samples["metric"].astype(str) == LATENESS]
    colors = variant_colors()
    points = list(dict.fromkeys(timer_point(r) for _, r in rows.iterrows()))
    ncols = min(len(points), 3)
    nrows = -(-len(points) // ncols)
    with report.figure(f"{family}: timer lateness", nrows=nrows, ncols=ncols,
                       caption="Empirical CDF of each timer variant's lateness (when user code "
                               "ran on the expiry minus the expiry asked for), user-side runs, "
                               "repetitions pooled, log x; cyclictest dashed. The x axis ends "
                               "at the slowest curve's p99.9.") as (fig, axes):
        for j, point in enumerate(points):
            mine = rows[[timer_point(r) == point for _, r in rows.iterrows()]]
            curves = []
            for _, r in mine.iterrows():
                values = samples.loc[(samples["variant"].astype(str) == r["variant"])
                                     & (samples["point"].astype(str) == r["point"]), "value"]
                curves.append((r["variant"], values.to_numpy(dtype=float) / 1000,
                               {"color": colors.get(r["variant"]),
                                "linestyle": "--" if r["variant"] == CYCLICTEST else "-"}))
            plots.cdf_curves(axes[j], curves, xlabel="lateness [us]", log=True,
                             title=point_text(point), legend=False)
            plots.plain_log_ticks(axes[j], "x")
            plots.legend_below(axes[j], ncol=1, fontsize=7)


__all__ = ["latency_table", "anatomy_table", "anatomy_lines", "best_sleeping_kernel_upcall",
           "our_handoff", "handoff_reference", "best_upcall", "wake_check", "scheduler_tids",
           "since_source_table", "timer_rows", "timer_pivot", "cyclictest_pairs",
           "must_be_zero", "mechanics_table", "findings_lines", "paper_lines", "timer_lines",
           "handoff_lines", "cdf_lines", "block_kinds", "row_label", "NO_HANDOFF_LINE",
           "PAPER_QUOTE", "PAPER_SOURCE"]
