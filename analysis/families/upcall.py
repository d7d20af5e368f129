"""The upcall family's analysis (seeds 000 and 002: the kernel telling
user-level scheduling code that a thread blocked or can run again, and
timer upcalls), every number computed from the stored run: the data the
report section (analysis.sections.upcall) lays out and the notebook
(notebooks/upcall.ipynb) reads.

- latency_table(): upcall latency by mechanism, one row per mechanism
  variant and point (mechanism, event, block_kind, placement), median /
  p90 / p99 with the 95% CI of the median and the spread of the
  repetitions (the user side: the runs without probes when the suite
  measured probe overhead), and each median over the same-CPU futex
  handoff of the baseline family in the same run (handoff_reference():
  futex_pingpong's ``handoff`` series);
- wake_check(): the kernel's cross-check for the mechanisms whose
  scheduler sleeps: the probes' wake-to-run median of the scheduler thread
  beside the upcall median of the same runs, and what is left before the
  wake-up;
- preemption_table() / preemption_lines(): preemption upcalls (event
  ``preempt``): who learns that a VP was preempted (a scheduler on the
  other CPU, or the preempted activation when it runs again), by ring,
  flag or rseq abort, how fast, beside the block upcall of the same
  mechanism and placement;
- anatomy_table(): where an upcall's microseconds go, stage by stage;
- since_source_table(): the bpf unblock upcalls measured from the waker's
  stamp or the sleep's deadline (what the uring_cqe variants measure)
  beside the uring_cqe latencies of the same block kind and placement;
- timer_rows() / timer_pivot(): timer lateness per (interval_us,
  rt_priority, pm_qos) and variant, beside cyclictest, with overruns, the
  timer slack of SCHED_OTHER threads and the drift of the multishot
  timeout; cyclictest_pairs(): our timer_nanosleep against cyclictest;
- must_be_zero() / mechanics_table(): the counters that prove the
  mechanics ran as built;
- paper_lines(): what Anderson et al. measured for their upcalls in 1992
  (quoted, never computed) beside this run's best same-CPU upcall;
- findings_lines(): "what this run shows": the best mechanism on one CPU
  and across CPUs, how far from the futex handoff, whether the cross-CPU
  numbers carry the wake-up of a halted vCPU, and whether probes were
  attached to the runs the numbers come from.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from analysis._counters import counter_summary, run_table, with_params
from analysis._format import fmt_fraction, fmt_ratio, fmt_ratio_interval, fmt_times, fmt_us, fmt_us_interval
from analysis._kernel import kernel_view_table
from analysis._results import Run, load_wakeups
from analysis._views import (
    cached_per_run,
    cell_kinds,
    family_summary,
    halted_vcpu_clause,
    headline,
    is_set,
    median_ratio,
    probes_behind,
    run_sources,
    user_samples,
)
from lab.families import upcall as fam

FAMILY = "upcall"
BASELINE, PINGPONG, HANDOFF = "baseline", "futex_pingpong", "handoff"
LATENCY, SINCE_SOURCE, LATENESS = "latency", "since_source", "lateness"
SINCE_RESUME = fam.SINCE_RESUME.name
SAME, CROSS = "same_cpu", "cross_cpu"
PLACEMENTS = (SAME, CROSS)
EVENTS = ("block", "unblock")
BLOCK_KINDS = ("nanosleep", "futex", "pipe", "pread")
MECHANISMS = ("bpf_ringbuf", "bpf_ringbuf_adaptive", "bpf_flag", "bpf_flag_idle",
              "bpf_flag_sleep", "futex_hint", "uring_cqe_poll", "uring_cqe_wait",
              "uring_cqe_eventfd")
URING_CQE = ("uring_cqe_poll", "uring_cqe_wait", "uring_cqe_eventfd")
# preemption upcalls (event "preempt"): the mechanisms built for them;
# rseq_abort tells of nothing else
PREEMPT = "preempt"
PREEMPT_MECHANISMS, PREEMPT_ONLY = fam.PREEMPT_MECHANISMS, fam.PREEMPT_ONLY
# how each run's preemptions went: medians per run
PREEMPT_COUNTERS = ("preemptions", "retries", "others", "missed_events", "rseq_aborts",
                    "rseq_fixups")
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
NO_HANDOFF_LINE = ("This run has no baseline futex_pingpong handoff on one CPU to compare the "
                   "upcalls with: add [baseline] variants=[\"futex_pingpong\"] "
                   "placement=[\"same_cpu\",\"cross_cpu\"] to the suite.")


# Anderson, Bershad, Lazowska and Levy's figures for their upcalls: the
# paper's numbers, printed as a quote beside this run's, never measured here.
PAPER_SOURCE = ("T. E. Anderson, B. N. Bershad, E. D. Lazowska, H. M. Levy, \"Scheduler "
                "Activations: Effective Kernel Support for the User-Level Management of "
                "Parallelism\", SOSP 1991 / ACM TOCS 10(1), 1992, section 5 (upcall performance)")
PAPER_UPCALL_NS = 2.4e6             # signal-wait through the kernel via upcalls
PAPER_QUOTE = ("On the CVAX Firefly, two user-level threads signalling and waiting through "
               "the kernel by way of upcalls took about 2.4 ms, about five times the 441 us "
               "Signal-Wait of Topaz kernel threads (Table IV). The authors attribute the "
               "difference to their prototype (written in Modula-2+, not tuned), not to the "
               "design.")


# -- upcall latency ----------------------------------------------------------------------------

def effective_event(variant: str, event: Any) -> str:
    """The upcall an event-less mechanism makes: futex_hint tells of a
    block, a uring CQE of an unblock; the bpf variants say (``event``)."""
    if variant == "futex_hint":
        return "block"
    if variant in URING_CQE:
        return "unblock"
    return str(event)


def _python_scalar(value: Any) -> Any:
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _other_axes_text(data: pd.DataFrame) -> list[str]:
    """``run_us=100``: per row, the OTHER_AXES values that differ between
    rows of the same variant (bpf_flag_sleep with run_us 0 and 100), so
    that two rows never look alike; empty where nothing differs."""
    out = [""] * len(data)
    for _, index in data.groupby(data["variant"].astype(str), sort=False).indices.items():
        part = data.iloc[index]
        varying = [a for a in OTHER_AXES if a in part.columns
                   and part[a].dropna().astype(str).nunique() > 1]
        for i, (_, row) in zip(index, part.iterrows()):
            out[i] = " ".join(f"{a}={_python_scalar(row[a])}" for a in varying if is_set(row[a]))
    return out


def in_table_order(data: pd.DataFrame, by_placement: bool = True) -> pd.DataFrame:
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
    data["other"] = _other_axes_text(data)
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
    preempt = preemption_points(run, family)             # preemption_table()'s
    head = head[[(str(v), str(p)) not in preempt for v, p in zip(head["variant"], head["point"])]]
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
    return in_table_order(data)[columns + [c for c in data.columns if c not in columns]]


# -- preemption upcalls ------------------------------------------------------------------------

PREEMPT_COLUMNS = ["variant", "point", "mechanism", "placement", "other", "n", "reps", "median",
                   "p90", "p99", "ci_low", "ci_high", "rep_min", "rep_max", "noisy",
                   "since_resume", "since_resume_ci_low", "since_resume_ci_high",
                   "block_median", "block_kind", "vs_block", "vs_block_low",
                   "vs_block_high"] + list(PREEMPT_COUNTERS)


def preemption_points(run: Run, family: str = FAMILY) -> set[tuple[str, str]]:
    """The (variant, point) pairs of preemption upcalls (event preempt)."""
    table = run_table(run, family)
    if table.empty or "event" not in table.columns:
        return set()
    hit = (table["event"].astype(object).astype(str) == PREEMPT) \
        | table["variant"].astype(str).isin(PREEMPT_ONLY)
    return set(zip(table.loc[hit, "variant"].astype(str), table.loc[hit, "point"].astype(str)))


def preemption_table(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per preemption-upcall point: the ``latency`` summary (the
    learner's stamp minus the program's preempt_ns; median, p90, p99,
    ci_low / ci_high, rep_min / rep_max, noisy, n, reps; ns), mechanism,
    placement (cross_cpu: a scheduler on the other CPU learns at once;
    same_cpu: the preempted worker learns when it runs again), other (the
    parameters that tell rows apart); ``since_resume`` (same_cpu: the
    median after the worker got its CPU back, with its 95% CI); the block
    upcall of the same mechanism and placement in this run (its median,
    its block_kind: the lowest median's where there are several, and
    ``vs_block``, the preemption median over it -- same_cpu: the
    since_resume median, from when the worker could react -- with the CIs
    divided crosswise; NaN and "" without one); the PREEMPT_COUNTERS'
    medians per run."""
    return cached_per_run(run, "upcall", ("preemption_table", family, seed),
                          lambda: _preemption_table(run, family, seed))


def _preemption_table(run: Run, family: str, seed: int) -> pd.DataFrame:
    points = preemption_points(run, family)
    if not points:
        return pd.DataFrame(columns=PREEMPT_COLUMNS)
    summary = family_summary(run, family, seed)
    key = pd.Series([(str(v), str(p)) in points for v, p in
                     zip(summary["variant"], summary["point"])], index=summary.index)
    mine = summary[key]
    head = mine[mine["metric"].astype(str) == LATENCY]
    if head.empty:
        return pd.DataFrame(columns=PREEMPT_COLUMNS)
    data = _with_mechanism_params(run, family, head)
    data["mechanism"] = data["variant"]
    since = mine[mine["metric"].astype(str) == SINCE_RESUME]
    resumed = since.set_index([since["variant"].astype(str), since["point"].astype(str)])
    keys = list(zip(data["variant"], data["point"]))
    for col, src in (("since_resume", "median"), ("since_resume_ci_low", "ci_low"),
                     ("since_resume_ci_high", "ci_high")):
        data[col] = [float(resumed.loc[k, src]) if k in resumed.index else math.nan
                     for k in keys]
    blocks = latency_table(run, family, seed)
    blocks = blocks[blocks["event"] == "block"]
    found = []
    for _, r in data.iterrows():
        same = blocks[(blocks["mechanism"] == r["mechanism"])
                      & (blocks["placement"] == r["placement"])]
        if same.empty:
            found.append((math.nan, "", math.nan, math.nan, math.nan))
            continue
        b = same.loc[same["median"].astype(float).idxmin()]
        # the preempted worker can react only once its CPU is back: from then
        mine = r if r["placement"] == CROSS else {
            "median": r["since_resume"], "ci_low": r["since_resume_ci_low"],
            "ci_high": r["since_resume_ci_high"]}
        ratio, low, high = median_ratio(mine, b)
        found.append((float(b["median"]), str(b["block_kind"]), float(ratio), float(low),
                      float(high)))
    for i, col in enumerate(("block_median", "block_kind", "vs_block", "vs_block_low",
                             "vs_block_high")):
        data[col] = [f[i] for f in found]
    counters = counter_summary(run, family)
    counters = counters[counters["counter"].isin(PREEMPT_COUNTERS)]
    wide = counters.set_index([counters["variant"].astype(str), counters["point"].astype(str),
                               counters["counter"].astype(str)])["median"]
    for name in PREEMPT_COUNTERS:
        data[name] = [float(wide.get((v, p, name), math.nan)) for v, p in keys]
    return in_table_order(data)[PREEMPT_COLUMNS]


def preemption_lines(run: Run, family: str = FAMILY) -> list[str]:
    """What the preemption upcalls show, from the medians: who learns
    first, by which mechanism, and against the block upcall."""
    data = preemption_table(run, family)
    lines = []
    cross = data[data["placement"] == CROSS]
    if not cross.empty:
        best = cross.loc[cross["median"].astype(float).idxmin()]
        text = (f"Another VP learns that a VP was preempted fastest by {best['mechanism']}: "
                f"{fmt_us(best['median'])} us after the kernel's switch (median, 95% CI "
                f"{fmt_us_interval(best['ci_low'], best['ci_high'])})")
        rest = [f"{r['mechanism']} {fmt_us(r['median'])} us" for _, r in cross.iterrows()
                if r["mechanism"] != best["mechanism"]]
        if rest:
            text += "; " + ", ".join(rest)
        lines.append(text + ".")
    same = data[data["placement"] == SAME]
    if not same.empty and np.isfinite(same["since_resume"].astype(float)).any():
        best = same.loc[same["since_resume"].astype(float).idxmin()]
        lines.append(
            f"The preempted activation itself learns {fmt_us(best['since_resume'])} us after "
            f"it got its CPU back, by {best['mechanism']} (95% CI "
            f"{fmt_us_interval(best['since_resume_ci_low'], best['since_resume_ci_high'])}); "
            f"{fmt_us(best['median'])} us after the switch out, the time the competitor held "
            "the CPU included: on its own CPU the runtime can only react once the kernel "
            "gives the CPU back.")
    for _, r in data.iterrows():
        if math.isfinite(r["vs_block"]):
            what = ("a preemption upcall takes" if r["placement"] == CROSS else
                    "the preempted worker, once back on its CPU, learns in")
            lines.append(
                f"{r['mechanism']}, {r['placement']}: {what} {fmt_ratio(r['vs_block'])} the "
                f"block upcall's {fmt_us(r['block_median'])} us (block_kind={r['block_kind']}; "
                f"95% interval {fmt_ratio_interval(r['vs_block_low'], r['vs_block_high'])}).")
    return lines


def best_upcall(data: pd.DataFrame, placement: str,
                sleeping_only: bool = False) -> pd.Series | None:
    """The row with the lowest median at a placement (None if none);
    ``sleeping_only``: among the rows whose scheduler slept for its upcalls
    (latency_table's ``sleeps``), which leave their CPU to other work."""
    rows = data[data["placement"] == placement]
    if sleeping_only:
        rows = rows[rows["sleeps"].astype(bool)]
    if rows.empty:
        return None
    return rows.loc[rows["median"].astype(float).idxmin()]


def _same_cell(a: pd.Series, b: pd.Series) -> bool:
    return (a["variant"], a["point"]) == (b["variant"], b["point"])


def row_label(row: pd.Series) -> str:
    """``bpf_ringbuf block nanosleep same_cpu`` (and its other parameters)."""
    parts = [str(row["variant"]), str(row["event"]), str(row["block_kind"]), str(row["placement"])]
    if row.get("other"):
        parts.append(str(row["other"]))
    return " ".join(parts)


def block_kinds(data: pd.DataFrame) -> list[str]:
    """The block kinds of the run, the one most mechanisms have first."""
    counts = data.groupby("block_kind")["variant"].nunique()
    order = {k: i for i, k in enumerate(BLOCK_KINDS)}
    return sorted(counts.index, key=lambda k: (-counts[k], order.get(k, 9)))


# -- the kernel's cross-check ------------------------------------------------------------------

_TID_KEY = re.compile(r"^tid=(\d+)\b")


def scheduler_tids(run: Run, run_ids: Iterable[int]) -> dict[int, int]:
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
                      variants: Iterable[str] = MECHANISMS) -> pd.DataFrame:
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


def _scheduler_wakeups(run: Run, family: str, variants: Iterable[str]) -> pd.DataFrame:
    columns = ["variant", "point", "mechanism", "event", "block_kind", "placement", "other",
               "kernel_reps", "upcall_median", "wake_median", "wake_n", "wakeups_per_upcall",
               "before_wake", "wake_of"]
    src = run_sources(run)
    src = src[(src["family"].astype(str) == family) & src["kernel_side"]
              & src["variant"].astype(str).isin(variants)]
    # preemption upcalls: their learner is not always the scheduler thread
    preempt = preemption_points(run, family)
    src = src[[(str(v), str(p)) not in preempt for v, p in zip(src["variant"], src["point"])]]
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
    return in_table_order(data)[columns]


def wake_check(run: Run, family: str = FAMILY) -> pd.DataFrame:
    """scheduler_wakeups() of the mechanisms whose scheduler sleeps until
    the kernel wakes it (SLEEPING): the cross-check of their upcalls."""
    data = scheduler_wakeups(run, family)
    return data[data["variant"].isin(SLEEPING)].reset_index(drop=True)


# -- since_source ------------------------------------------------------------------------------

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
    return in_table_order(data)[["variant", "point", "mechanism", "block_kind", "placement", "other",
                           "latency", "since_source", "since_source_p99", *URING_CQE]]


def _match_median(rows: pd.DataFrame, row: pd.Series) -> float:
    keep = (rows["block_kind"] == row["block_kind"]) & (rows["placement"] == row["placement"])
    if "block_us" in rows.columns and is_set(row.get("block_us")):
        keep &= rows["block_us"].astype(str) == str(_python_scalar(row["block_us"]))
    hit = rows[keep]
    return float(hit["median"].iloc[0]) if len(hit) else math.nan


# -- timers ------------------------------------------------------------------------------------

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
        data[col] = [_python_scalar(v) if is_set(v) else None for v in data[col]]
    counters = counter_summary(run, family)
    counters = counters[counters["counter"].isin(TIMER_COUNTERS)]
    wide = counters.pivot_table(index=["variant", "point"], columns="counter", values="median",
                                observed=True, aggfunc="first")
    for name in TIMER_COUNTERS:
        col = wide[name] if name in wide.columns else pd.Series(dtype=float)
        data[name] = [col.get((v, p), math.nan) for v, p in zip(data["variant"], data["point"])]
    return data


def timer_point(row: pd.Series) -> tuple:
    return tuple(row[a] for a in TIMER_AXES)


def timer_point_text(point: tuple) -> str:
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
        index.append(tuple(_python_scalar(v) for v in point))
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


def timer_lines(rows: pd.DataFrame) -> list[str]:
    pairs = cyclictest_pairs(rows)
    if not pairs:
        if len(rows):
            return ["No point has both timer_nanosleep and cyclictest: add both to a timer "
                    "table of the suite to compare ours with the standard tool."]
        return []
    out = []
    for p in pairs:
        out.append(f"{timer_point_text(p.point)}: our timer_nanosleep median {fmt_us(p.ours['median'])} "
                   f"us vs cyclictest {fmt_us(p.cyclictest['median'])} us ({fmt_ratio(p.ratio)}, "
                   f"95% interval {fmt_ratio_interval(p.low, p.high)}); p99 "
                   f"{fmt_us(p.ours['p99'])} vs {fmt_us(p.cyclictest['p99'])} us.")
    return out


# -- the mechanics' counters -------------------------------------------------------------------

def must_be_zero(run: Run, family: str = FAMILY) -> dict[str, tuple[float, int, int]]:
    """Per MUST_BE_ZERO counter some run reports: (total over every ok run
    of the mechanism variants, with probes or without; runs reporting it;
    runs where it is not 0)."""
    table = run_table(run, family)
    table = table[table["variant"].astype(str).isin(MECHANISMS)]
    if "event" in table.columns:
        # a preemption run's folded preemptions are a count, not a fault:
        # preemption_table() shows them
        table = table[table["event"].astype(object).astype(str) != PREEMPT]
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
    preempt = preemption_points(run, family)
    s = s[[(str(v), str(p)) not in preempt for v, p in zip(s["variant"], s["point"])]]
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
    return in_table_order(data)[["variant", "point", "event", "block_kind", "placement", "other"]
                          + names]


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
    return in_table_order(data.merge(lat[[k for k in keep if k in lat.columns]],
                               on=["variant", "point"], how="inner"))


def best_sleeping_kernel_upcall(anatomy: pd.DataFrame, placement: str = SAME) -> pd.Series | None:
    """The anatomy row of the fastest kernel-initiated upcall whose
    scheduler slept for it, at a placement (None if none)."""
    rows = anatomy[(anatomy["placement"] == placement)
                   & anatomy["variant"].isin(KERNEL_INITIATED) & anatomy["sleeps"].astype(bool)]
    if rows.empty:
        return None
    return rows.loc[rows["latency_median"].astype(float).idxmin()]


def our_handoff(anatomy: pd.DataFrame, placement: str = SAME,
                like: pd.Series | None = None) -> pd.Series | None:
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
                 f"({fmt_fraction(float(g['self_ipis_per_upcall'].median()))} self-IPIs)"
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


# -- text --------------------------------------------------------------------------------------

def probe_text(run: Run, family: str = FAMILY) -> str:
    """Which runs the upcall and timer numbers come from."""
    kinds = cell_kinds(run, family)
    behind = probes_behind(run, family)
    if behind == "paired":
        return ("The latencies come from the runs without probes (probe_overhead: each had a "
                "twin with probes attached, which gives the kernel view).")
    if behind == "all":
        return ("Probes were attached to every run these latencies come from (no run without "
                "probes): the probes' own programs run at every context switch and wake-up, "
                "as the bpf upcall program does; probe_overhead = true in [suite] gives "
                "undisturbed numbers.")
    if behind == "some":
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
                     + ", ".join(f"{row_label(r)} ({fmt_fraction(r['wakeups_per_upcall'])} "
                                 "wake-ups per upcall)" for _, r in few.iterrows())
                     + ": it mostly found the event without being woken there, and the "
                       "wake-to-run describes the rare sleeps only.")
    if "slept_fraction" in few.columns:
        claims = few[few["slept_fraction"].astype(float) >= 0.5]
        if len(claims):
            lines.append("There the workers' own slept counter says otherwise ("
                         + ", ".join(f"{row_label(r)}: slept_fraction "
                                     f"{fmt_fraction(r['slept_fraction'])}"
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
    if sleeper is not None and not _same_cell(sleeper, best):
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
                     f"us (95% interval {fmt_ratio_interval(lo, hi)})")
        sleeper = best_upcall(data, placement, sleeping_only=True)
        if sleeper is not None and not _same_cell(sleeper, best):
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
                f"the ratios; {fmt_ratio_interval(float(ratios.min()), float(ratios.max()))}"
                f"), {fmt_us(float(np.median(extra)))} us more (median)")
        if same_ref is not None and cross_ref is not None:
            wake = cross_ref["median"] - same_ref["median"]
            carry = int((extra >= 0.5 * wake).sum())
            text += (f". The futex handoff gains {fmt_us(wake)} us across CPUs; {carry} of the "
                     f"{len(pairs)} points gain at least half that: "
                     + ("they carry the wake-up of the other CPU"
                        if carry > len(pairs) / 2 else
                        "most do not carry the other CPU's wake-up"))
        halted = halted_vcpu_clause(run.environment)
        if halted:
            text += f" ({halted})"
        lines.append(text + ".")
    lines += [line for line in anatomy_lines(run, family)
              if line.startswith("Best sleeping kernel-initiated")]
    lines.append(probe_text(run, family))
    return lines


__all__ = ["latency_table", "anatomy_table", "anatomy_lines", "best_sleeping_kernel_upcall",
           "our_handoff", "handoff_reference", "best_upcall", "wake_check", "scheduler_tids",
           "scheduler_wakeups", "since_source_table", "timer_rows", "timer_pivot",
           "cyclictest_pairs", "must_be_zero", "mechanics_table", "findings_lines", "paper_lines",
           "timer_lines", "handoff_lines", "crosscheck_lines", "probe_text", "block_kinds",
           "row_label", "in_table_order", "fmt_fraction", "preemption_table",
           "preemption_lines", "preemption_points", "NO_HANDOFF_LINE", "PAPER_QUOTE",
           "PAPER_SOURCE"]
