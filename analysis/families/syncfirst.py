"""The syncfirst family's analysis (seed 003: Linus's async() against
fibrils), every number computed from the stored run; the report lays it
out in analysis.sections.syncfirst, the notebook calls it directly:

- the crossover: median latency per read and throughput against the
  page-cache hit ratio, per variant, per depth (and per placement /
  direct / pool size where the suite swept them);
- how often a read went asynchronous: EAGAIN per read for the sync-first
  variants (their own counter), io-wq punts, poll arms and task-work runs
  per read for io_uring (the kernel view), 0 for sync and 1 for the pool by
  construction (their counters confirm it), beside the fraction of blocks
  that were not resident when the window opened and, for sync-first, the
  misses that completed inline anyway (``cold_inline``: RWF_NOWAIT starts
  the read and says EAGAIN only if it is still in flight when the kernel
  looks again);
- the page-cache check: the resident fraction each run achieved against its
  target, and every run that missed it;
- socket receives: latency and after_data against the chance that data is
  ready;
- the seed's claims beside this machine's numbers: the syslets
  announcement's speed-ups over synchronous IO (quoted, never computed
  here), and Linus's "sync-first costs nothing up front".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis._counters import counter_summary, kernel_per_op, run_table, throughput_summary, with_params
from analysis._format import fmt_percent, fmt_ratio, fmt_ratio_interval, fmt_value
from analysis._results import Run
from analysis._stats import NOISY_SPREAD
from analysis._views import (
    family_summary,
    headline,
    median_ratio,
    per_run,
    probes_behind,
    split_by_axes,
    swept_axes,
)

FAMILY = "syncfirst"
SYNC, POOL, SYNCFIRST = "sync", "pool", "syncfirst"
HIT = "hit_ratio"
READY = "ready_probability"
# what else names one crossover figure, besides the hit ratio
GROUP_AXES = ("depth", "placement", "direct", "pool_threads", "file_mb")

# The syslets announcement's figures, as seed 003's discussion quotes them:
# the seed's claims, printed beside this run's measurement, never used as one.
SEED_SPEEDUP = {"cached": 0.192, "uncached": 0.339}
SEED_SOURCE = "the syslets announcement (Ingo Molnar, seed 003)"

# how "went async" is measured, per variant: (source, what, note)
COUNTER, KERNEL, CONSTRUCTION = "counter", "kernel view", "by construction"
URING_KERNEL = {"punts_per_op": "uring_punted", "poll_armed_per_op": "uring_poll_armed",
                "task_work_per_op": "uring_task_work_runs", "switches_per_op": "switches_per_op",
                "syscalls_per_op": "syscalls_per_op"}
# the measure is a counter's name, the kernel-view metrics summed, or the
# fraction itself
WENT_ASYNC: dict[str, tuple[str, str | tuple[str, ...] | float, str]] = {
    "sync": (COUNTER, "offloaded", "offloaded / reads (counter): pread() in the caller, "
                                   "never handed off"),
    "pool": (COUNTER, "offloaded", "offloaded / reads (counter): every read to a pool thread"),
    "syncfirst": (COUNTER, "eagain", "EAGAIN / reads (counter): RWF_NOWAIT refused, to the pool"),
    "syncfirst_uring": (COUNTER, "eagain", "EAGAIN / reads (counter): RWF_NOWAIT refused, "
                                           "to io_uring"),
    "uring": (KERNEL, ("task_work_per_op", "punts_per_op", "poll_armed_per_op"),
              "(task-work runs + io-wq punts + poll arms) / reads (kernel view): the inline "
              "IOCB_NOWAIT attempt failed; a lower bound at depth > 1, where one task-work run "
              "may complete several reads"),
    "uring_async": (KERNEL, ("punts_per_op",), "io-wq punts / reads (kernel view): "
                                               "IOSQE_ASYNC"),
    "uring_sqpoll": (CONSTRUCTION, 1.0, "1 by construction: the SQ thread issues every read "
                                        "(its task-work runs count its loop, not reads)"),
    "recv_sync": (COUNTER, "offloaded", "offloaded / receives (counter)"),
    "recv_pool": (COUNTER, "offloaded", "offloaded / receives (counter)"),
    "recv_syncfirst": (COUNTER, "eagain", "EAGAIN / receives (counter): MSG_DONTWAIT refused"),
    "recv_uring": (KERNEL, ("poll_armed_per_op", "punts_per_op"),
                   "(poll arms + io-wq punts) / receives (kernel view)"),
}


# -- data -----------------------------------------------------------------------------

def is_file_read(frame: pd.DataFrame) -> pd.Series:
    return frame[HIT].notna() if HIT in frame.columns else pd.Series(False, index=frame.index)


@per_run
def crossover_data(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per file-read (variant, point): its parameters (hit_ratio,
    depth, placement, direct, ...), the headline latency's summary (median,
    p90, p99, ci_low, ci_high, rep_min, rep_max, n, reps, noisy: as
    headline()), throughput [reads/s] over the measured window
    (throughput, throughput_ci_low / _high: bootstrap over the runs,
    throughput_min / _max), and the resident fraction the runs achieved
    (median of the counter).  Rows in the family's variant order, then by
    hit ratio."""
    head = headline(run, family, seed)
    data = with_params(run, family, head)
    data = data[is_file_read(data)].copy()
    thr = throughput_summary(run, family, seed).set_index(["variant", "point"])
    key = list(zip(data["variant"].astype(str), data["point"].astype(str)))
    for col, src in (("throughput", "median"), ("throughput_ci_low", "ci_low"),
                     ("throughput_ci_high", "ci_high"), ("throughput_min", "rep_min"),
                     ("throughput_max", "rep_max"), ("throughput_noisy", "noisy")):
        data[col] = [thr[src].get(k, math.nan) for k in key]
    counters = counter_summary(run, family)
    resident = counters[counters["counter"] == "resident_fraction"].set_index(["variant", "point"])
    data["resident_fraction"] = [resident["median"].get(k, math.nan) for k in key]
    data[HIT] = data[HIT].astype(float)
    return data.sort_values(["variant", HIT], kind="stable").reset_index(drop=True)


def crossover_axes(data: pd.DataFrame) -> list[str]:
    """The axes besides hit_ratio that take more than one value."""
    return swept_axes(data, GROUP_AXES)


def crossover_groups(data: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """crossover_data split into one frame per combination of the swept
    axes besides hit_ratio (depth, placement, direct, ...).  A variant that
    does not take an axis (sync has no depth, no placement) is in every
    group."""
    return split_by_axes(data, crossover_axes(data))


def crossover_group_label(group: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in group.items())


def _went_async(variant: str, counters: dict[str, float],
                kernel: dict[str, float]) -> tuple[float, str]:
    rule = WENT_ASYNC.get(variant)
    if rule is None:
        return math.nan, "no rule for this variant"
    source, what, note = rule
    if isinstance(what, float):         # CONSTRUCTION
        return what, note
    if isinstance(what, str):           # COUNTER
        value = counters.get(what, math.nan)
        return value, note if math.isfinite(value) else f"no {what} counter"
    values = [kernel.get(m, math.nan) for m in what]      # KERNEL
    if not all(math.isfinite(v) for v in values):
        return math.nan, "no kernel view"
    return float(sum(values)), note


@per_run
def blocked_fraction(run: Run, family: str = FAMILY) -> pd.DataFrame:
    """One row per (variant, point): the fraction of calls that went
    asynchronous (``went_async``; how it is measured: ``source``), beside
    what the page cache or the producer made inevitable (``not_resident``:
    1 - the resident fraction at the window's start, for file reads;
    ``not_ready``: sent_after_call / receives, for socket receives),
    ``miss_inline_per_op`` (sync-first file reads: cold_inline / reads,
    misses whose read had finished when the kernel looked again, so they
    completed in the caller), and the measurements behind it:
    eagain_per_op, offloaded_per_op (counters,
    median over the user-side runs of counter / ops) and punts_per_op,
    poll_armed_per_op, task_work_per_op, switches_per_op, syscalls_per_op
    (kernel view, median over the runs with probes), with the cell's
    parameters."""
    per_op = counter_summary(run, family, per_op=True)
    plain = counter_summary(run, family)
    kernel = kernel_per_op(run, family, URING_KERNEL).set_index(["variant", "point"])
    cells = with_params(run, family, headline(run, family)[["variant", "point"]])
    rows = []
    for _, cell in cells.iterrows():
        v, p = str(cell["variant"]), str(cell["point"])
        mine = per_op[(per_op["variant"].astype(str) == v) & (per_op["point"].astype(str) == p)]
        counters = dict(zip(mine["counter"], mine["median"]))
        raw = plain[(plain["variant"].astype(str) == v) & (plain["point"].astype(str) == p)]
        raw = dict(zip(raw["counter"], raw["median"]))
        k = kernel.loc[(v, p)].to_dict() if (v, p) in kernel.index else {}
        went, source = _went_async(v, counters, k)
        row = cell.to_dict()
        row.update({"went_async": went, "source": source,
                    "eagain_per_op": counters.get("eagain", math.nan),
                    "offloaded_per_op": counters.get("offloaded", math.nan),
                    "miss_inline_per_op": counters.get("cold_inline", math.nan),
                    "not_resident": 1 - raw["resident_fraction"]
                    if "resident_fraction" in raw else math.nan,
                    "not_ready": counters.get("sent_after_call", math.nan),
                    "reps": int(mine["reps"].max()) if len(mine) else 0,
                    "kernel_reps": int(k.get("kernel_reps", 0) or 0)})
        for name in URING_KERNEL:
            row[name] = k.get(name, math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def resident_check(run: Run, family: str = FAMILY) -> pd.DataFrame:
    """One row per ok file-read run (every run, with probes or without):
    run_id, variant, point, repetition, hit_ratio, target and achieved
    resident fraction (counters resident_target, resident_fraction), and
    off_target (counter resident_off_target: further than the family's
    slack from the target)."""
    table = run_table(run, family)
    if "resident_fraction" not in table.columns:
        return pd.DataFrame(columns=["run_id", "variant", "point", "repetition", HIT, "target",
                                     "achieved", "off_target"])
    table = table[table["resident_fraction"].notna()]
    out = table[["run_id", "variant", "point", "repetition", HIT]].copy()
    out["target"] = table.get("resident_target", pd.Series(np.nan, index=table.index))
    out["achieved"] = table["resident_fraction"]
    flag = table.get("resident_off_target", pd.Series(np.nan, index=table.index))
    out["off_target"] = flag.fillna(0).astype(float) > 0
    return out.reset_index(drop=True)


def socket_data(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per socket-receive (variant, point, metric): latency and
    after_data summaries (as summarise()) with ready_probability."""
    s = family_summary(run, family, seed)
    data = with_params(run, family, s)
    if READY not in data.columns:
        return data.iloc[:0]
    data = data[data[READY].notna()].copy()
    data[READY] = data[READY].astype(float)
    return data.sort_values(["variant", "metric", READY], kind="stable").reset_index(drop=True)


# -- the seed's claims --------------------------------------------------------------------

@dataclass(frozen=True)
class SpeedUp:
    """The fastest variant's throughput against sync's at one hit ratio."""

    hit_ratio: float
    group: dict
    best: str
    best_throughput: float
    sync_throughput: float
    speedup: float          # best / sync - 1
    low: float              # from the two bootstrap intervals, taken crosswise
    high: float
    noisy: bool


@dataclass(frozen=True)
class UpFront:
    """Linus's claim at one hit ratio: syncfirst's median latency against
    sync's and pool's."""

    hit_ratio: float
    group: dict
    syncfirst: Any          # headline rows (pd.Series)
    sync: Any | None
    pool: Any | None
    eagain: float           # EAGAIN, summed over the syncfirst cell's user-side runs
    reads: float            # reads in those runs


def _row_at_hit(rows: pd.DataFrame, variant: str, hit: float):
    r = rows[(rows["variant"].astype(str) == variant) & np.isclose(rows[HIT], hit)]
    return None if r.empty else r.iloc[0]


def speedups(data: pd.DataFrame, hit: float) -> list[SpeedUp]:
    """Per crossover group: the variant (other than sync) with the highest
    median throughput at ``hit`` against sync's."""
    out = []
    for group, rows in crossover_groups(data):
        sync = _row_at_hit(rows, SYNC, hit)
        here = rows[(rows["variant"].astype(str) != SYNC) & np.isclose(rows[HIT], hit)]
        here = here[np.isfinite(here["throughput"].astype(float))]
        if sync is None or here.empty or not sync["throughput"] > 0:
            continue
        best = here.loc[here["throughput"].astype(float).idxmax()]
        ratio = best["throughput"] / sync["throughput"]
        low = best["throughput_ci_low"] / sync["throughput_ci_high"]
        high = best["throughput_ci_high"] / sync["throughput_ci_low"]
        out.append(SpeedUp(hit, group, str(best["variant"]), float(best["throughput"]),
                           float(sync["throughput"]), ratio - 1, low - 1, high - 1,
                           bool(best["throughput_noisy"] or sync["throughput_noisy"])))
    return out


def up_front(run: Run, data: pd.DataFrame, hit: float, family: str = FAMILY) -> list[UpFront]:
    runs = run_table(run, family)
    runs = runs[runs["user_side"]]
    out = []
    for group, rows in crossover_groups(data):
        sf = _row_at_hit(rows, SYNCFIRST, hit)
        if sf is None:
            continue
        mine = runs[(runs["variant"].astype(str) == str(sf["variant"]))
                    & (runs["point"].astype(str) == str(sf["point"]))]
        eagain = float(mine["eagain"].sum()) if "eagain" in mine.columns else math.nan
        reads = float(mine["ops"].astype(float).sum())
        out.append(UpFront(hit, group, sf, _row_at_hit(rows, SYNC, hit), _row_at_hit(rows, POOL, hit), eagain,
                           reads))
    return out


def _median_with_unit(row) -> str:
    return f"{fmt_value(row['median'])} {row['unit']}".rstrip()


def _rate(x: float) -> str:
    """1,310,000 reads/s: three significant digits, thousands separated."""
    if not math.isfinite(x):
        return "- reads/s"
    return f"{float(f'{x:.3g}'):,.0f} reads/s" if abs(x) >= 100 else f"{fmt_value(x)} reads/s"


def _hit(hit: float) -> str:
    """0.25, 1.0: as a suite writes a fraction."""
    return str(float(hit))


def _where(group: dict, hit: float) -> str:
    text = f"hit_ratio {_hit(hit)}"
    return text + (f", {crossover_group_label(group)}" if group else "")


def _hits(data: pd.DataFrame) -> list[float]:
    return sorted(set(data[HIT].astype(float)))


def _probe_note(run: Run, family: str) -> str:
    behind = probes_behind(run, family)
    if behind == "paired":
        return ("User-side numbers here come from the runs without probes (each had a twin "
                "with probes, which gives the kernel view).")
    if behind in ("all", "some"):
        which = "every run" if behind == "all" else "some of the runs"
        return (f"Probes were attached to {which} these numbers come from: io_uring's "
                "tracepoints fire per request and the scheduler's per switch, so variants that "
                "switch or submit more pay more (probe_overhead = true in [suite] measures it).")
    return ""


def claim_lines(run: Run, family: str = FAMILY) -> list[str]:
    """The seed's claims, each beside what this run measured (or why it
    cannot say)."""
    data = crossover_data(run, family)
    if data.empty:
        return ["No file-read run of this family finished ok: nothing to hold the seed's "
                "claims against."]
    hits = _hits(data)
    lines = [f"Seed claim, {SEED_SOURCE}: syslets ran {SEED_SPEEDUP['cached']:.1%} faster than "
             f"synchronous IO on cached data and {SEED_SPEEDUP['uncached']:.1%} faster on "
             "uncached data (the announcement's figures, quoted; not measured here)."]
    for name, hit in (("cached", 1.0), ("uncached", 0.0)):
        if not any(math.isclose(h, hit) for h in hits):
            lines.append(f"This run has no hit_ratio {_hit(hit)} point ({name} reads; it has "
                         f"{', '.join(_hit(h) for h in hits)}): no {name} comparison.")
            continue
        found = speedups(data, hit)
        if not found:
            lines.append(f"At hit_ratio {_hit(hit)} ({name}) this run lacks sync or any other "
                         "variant with a throughput: no comparison.")
            continue
        for s in found:
            verdict = ("faster than sync" if s.low > 0 else "slower than sync" if s.high < 0
                       else "not distinguishable from sync")
            lines.append(
                f"This machine, {_where(s.group, hit)} ({name}): the fastest variant by median, "
                f"{s.best}, "
                f"reads {_rate(s.best_throughput)} against sync's {_rate(s.sync_throughput)}"
                + (" (one read at a time)" if s.group.get("depth", 1) != 1 else "") +
                f", medians over the runs: {fmt_percent(s.speedup)} (interval "
                f"{fmt_percent(s.low)}..{fmt_percent(s.high)}), {verdict}; the seed's figure "
                f"for {name} IO is +{SEED_SPEEDUP[name]:.1%}."
                + (" Noisy: the runs' throughputs spread more than "
                   f"{NOISY_SPREAD:.0%}." if s.noisy else ""))
    lines.append("Seed claim, Linus: almost all asynchronous calls complete without blocking, "
                 "so sync-first (try the call, go asynchronous only if it would block) costs "
                 "nothing up front, while fibrils pay for a context on every call.")
    if not any(math.isclose(h, 1.0) for h in hits):
        lines.append("This run has no hit_ratio 1.0 point: the up-front cost of sync-first on "
                     "reads that do not block is not measured.")
    else:
        costs = up_front(run, data, 1.0, family)
        if not costs:
            lines.append("No syncfirst run at hit_ratio 1.0 finished ok: no comparison.")
        for u in costs:
            eagain = (f"EAGAIN on {u.eagain:.0f} of syncfirst's {u.reads:.0f} reads (counter)"
                      if math.isfinite(u.eagain) else "no EAGAIN counter")
            text = (f"This machine, {_where(u.group, 1.0)}: {eagain}; syncfirst's median latency "
                    f"{_median_with_unit(u.syncfirst)}")
            parts = []
            if u.sync is not None and u.group.get("depth", 1) == 1:
                r, lo, hi = median_ratio(u.syncfirst, u.sync)
                diff = u.syncfirst["median"] - u.sync["median"]
                verdict = ("costs more than sync up front" if lo > 1 else
                           "is faster than sync" if hi < 1 else
                           "is not distinguishable from sync")
                parts.append(f"against sync's {_median_with_unit(u.sync)}: {fmt_ratio(r)} (95% interval "
                             f"{fmt_ratio_interval(lo, hi)}), {fmt_value(diff)} ns per read: "
                             f"sync-first {verdict}")
            elif u.sync is None:
                parts.append("sync has no run at this point")
            if u.pool is not None:
                r, lo, hi = median_ratio(u.syncfirst, u.pool)
                parts.append(f"against pool's (a context per call) {_median_with_unit(u.pool)}: "
                             f"{fmt_ratio(r)} (95% interval {fmt_ratio_interval(lo, hi)})")
            lines.append(text + "; " + "; ".join(parts) + "." if parts else text + ".")
    note = _probe_note(run, family)
    if note:
        lines.append(note)
    return lines


__all__ = ["crossover_data", "crossover_groups", "crossover_axes", "crossover_group_label",
           "is_file_read", "blocked_fraction", "resident_check", "socket_data", "claim_lines",
           "speedups", "up_front"]
