"""Report section of the syncfirst family (seed 003: Linus's async() against
fibrils), every number computed from the stored run:

- the crossover: median latency per read and throughput against the
  page-cache hit ratio, one line per variant, one figure per depth (and per
  placement / direct / pool size where the suite swept them);
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

from analysis import plots
from analysis._counters import counter_summary, kernel_per_op, run_table, throughput_summary, with_params
from analysis._format import fmt_percent, fmt_ratio, fmt_value
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._results import Run
from analysis._stats import NOISY_SPREAD
from analysis._views import (
    cell_kinds,
    headline,
    median_ratio,
    per_run,
    plain_param,
    split_by_axes,
    swept_axes,
)
from analysis.sections import generic
from analysis.sections.registry import register

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
WENT_ASYNC = {
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


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    run = report.run
    generic.render(report, family, extra_blocks=findings_blocks(run, family), figures=False)
    crossover_figures(report, family)
    blocked_figure(report, family)
    socket_figure(report, family)


# -- data -----------------------------------------------------------------------------

def _is_file(frame: pd.DataFrame) -> pd.Series:
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
    data = data[_is_file(data)].copy()
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


def _group_axes(data: pd.DataFrame) -> list[str]:
    """The axes besides hit_ratio that take more than one value."""
    return swept_axes(data, GROUP_AXES)


def crossover_groups(data: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """crossover_data split into one frame per combination of the swept
    axes besides hit_ratio (depth, placement, direct, ...).  A variant that
    does not take an axis (sync has no depth, no placement) is in every
    group."""
    return split_by_axes(data, _group_axes(data))


def group_label(group: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in group.items())


def _went_async(variant: str, counters: dict[str, float], kernel: dict[str, float]):
    rule = WENT_ASYNC.get(variant)
    if rule is None:
        return math.nan, "no rule for this variant"
    source, what, note = rule
    if source == CONSTRUCTION:
        return float(what), note
    if source == COUNTER:
        value = counters.get(what, math.nan)
        return value, note if math.isfinite(value) else f"no {what} counter"
    values = [kernel.get(m, math.nan) for m in what]
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
    from analysis._views import family_summary
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


def _at(rows: pd.DataFrame, variant: str, hit: float):
    r = rows[(rows["variant"].astype(str) == variant) & np.isclose(rows[HIT], hit)]
    return None if r.empty else r.iloc[0]


def speedups(data: pd.DataFrame, hit: float) -> list[SpeedUp]:
    """Per crossover group: the variant (other than sync) with the highest
    median throughput at ``hit`` against sync's."""
    out = []
    for group, rows in crossover_groups(data):
        sync = _at(rows, SYNC, hit)
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
        sf = _at(rows, SYNCFIRST, hit)
        if sf is None:
            continue
        mine = runs[(runs["variant"].astype(str) == str(sf["variant"]))
                    & (runs["point"].astype(str) == str(sf["point"]))]
        eagain = float(mine["eagain"].sum()) if "eagain" in mine.columns else math.nan
        reads = float(mine["ops"].astype(float).sum())
        out.append(UpFront(hit, group, sf, _at(rows, SYNC, hit), _at(rows, POOL, hit), eagain,
                           reads))
    return out


def _ns(row) -> str:
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
    return text + (f", {group_label(group)}" if group else "")


def _hits(data: pd.DataFrame) -> list[float]:
    return sorted(set(data[HIT].astype(float)))


def _probe_note(run: Run, family: str) -> str:
    kinds = set(cell_kinds(run, family).values())
    if kinds == {"paired"}:
        return ("User-side numbers here come from the runs without probes (each had a twin "
                "with probes, which gives the kernel view).")
    if "probed" in kinds:
        which = "every run" if kinds == {"probed"} else "some of the runs"
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
        found = up_front(run, data, 1.0, family)
        if not found:
            lines.append("No syncfirst run at hit_ratio 1.0 finished ok: no comparison.")
        for u in found:
            eagain = (f"EAGAIN on {u.eagain:.0f} of syncfirst's {u.reads:.0f} reads (counter)"
                      if math.isfinite(u.eagain) else "no EAGAIN counter")
            text = (f"This machine, {_where(u.group, 1.0)}: {eagain}; syncfirst's median latency "
                    f"{_ns(u.syncfirst)}")
            parts = []
            if u.sync is not None and u.group.get("depth", 1) == 1:
                r, lo, hi = median_ratio(u.syncfirst, u.sync)
                diff = u.syncfirst["median"] - u.sync["median"]
                verdict = ("costs more than sync up front" if lo > 1 else
                           "is faster than sync" if hi < 1 else
                           "is not distinguishable from sync")
                parts.append(f"against sync's {_ns(u.sync)}: {fmt_ratio(r)} (95% interval "
                             f"{fmt_ratio(lo)}..{fmt_ratio(hi)}), {fmt_value(diff)} ns per read: "
                             f"sync-first {verdict}")
            elif u.sync is None:
                parts.append("sync has no run at this point")
            if u.pool is not None:
                r, lo, hi = median_ratio(u.syncfirst, u.pool)
                parts.append(f"against pool's (a context per call) {_ns(u.pool)}: "
                             f"{fmt_ratio(r)} (95% interval {fmt_ratio(lo)}..{fmt_ratio(hi)})")
            lines.append(text + "; " + "; ".join(parts) + "." if parts else text + ".")
    note = _probe_note(run, family)
    if note:
        lines.append(note)
    return lines


# -- text blocks ------------------------------------------------------------------------------

def _pivot_blocked(table: pd.DataFrame, value: str, fmt, axes: list[str] | None = None,
                   hits: list[float] | None = None) -> tuple[list[str], list[list[str]]]:
    if axes is None:
        axes = [a for a in _group_axes(table) if a in table.columns]
    if hits is None:
        hits = sorted(set(table[HIT].astype(float)))
    header = ["variant"] + axes + [f"hit {h:g}" for h in hits]
    rows = []
    for keys, part in table.groupby(["variant"] + axes, observed=True, sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        by_hit = dict(zip(part[HIT].astype(float), part[value]))
        rows.append([str(keys[0])] + ["-" if pd.isna(k) else str(plain_param(k)) for k in keys[1:]]
                    + [fmt(by_hit[h]) if h in by_hit else "" for h in hits])
    return header, rows


def _frac(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}"


def blocked_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    table = blocked_fraction(run, family)
    files = table[_is_file(table)] if len(table) else table
    if files.empty:
        return []
    files = files.copy()
    files[HIT] = files[HIT].astype(float)
    blocks: list[Block] = [Heading("How often a read went asynchronous", size=12,
                                   keep_with_next=1.5)]
    header, rows = _pivot_blocked(files, "went_async", _frac)
    not_res = files.groupby(HIT)["not_resident"].median()
    hits = sorted(set(files[HIT]))
    rows.append(["not resident at start"] + [""] * (len(header) - 1 - len(hits))
                + [_frac(not_res.get(h, math.nan)) for h in hits])
    inline = files[np.isfinite(files["miss_inline_per_op"].astype(float))]
    inline = inline[inline["variant"].astype(str).isin(
        [v for v, rule in WENT_ASYNC.items() if rule[1] == "eagain"])]
    if len(inline):
        # the same columns as the table above
        axes = [a for a in _group_axes(files) if a in files.columns]
        rows += _pivot_blocked(
            inline.assign(variant=inline["variant"].astype(str) + ": misses done inline"),
            "miss_inline_per_op", _frac, axes=axes, hits=hits)[1]
    sources = dict.fromkeys(f"{v}: {s}" for v, s in zip(files["variant"].astype(str),
                                                         files["source"]))
    blocks.append(Table(header, rows, right=[False] + [True] * (len(header) - 1),
                        caption="Fraction of reads that went asynchronous (handed to a thread, "
                                "io_uring's worker or task work), by page-cache hit ratio; "
                                "median over the runs",
                        notes=["how each variant's fraction is measured: " + "; ".join(sources),
                               "not resident at start: the fraction of the measured blocks "
                               "that were not in the page cache when the window opened "
                               "(counter resident_fraction, median over all file-read runs)",
                               "misses done inline (sync-first variants): reads of those "
                               "blocks that RWF_NOWAIT did not refuse (counter cold_inline / "
                               "reads): it starts the read and says EAGAIN only if the read is "
                               "still in flight when it looks again (mm/filemap.c "
                               "filemap_get_pages()); a miss whose read has finished by then "
                               "returns the data. EAGAIN + misses done inline = not resident"]))
    uring = files[files["variant"].astype(str).str.startswith("uring")]
    if len(uring) and np.isfinite(uring["task_work_per_op"].astype(float)).any():
        def cell(r) -> str:
            return "/".join(_frac(r[c]) for c in ("punts_per_op", "poll_armed_per_op",
                                                  "task_work_per_op"))
        uring = uring.assign(detail=[cell(r) for _, r in uring.iterrows()])
        header, rows = _pivot_blocked(uring, "detail", str)
        blocks.append(Table(header, rows, right=[False] + [True] * (len(header) - 1),
                            caption="io_uring variants, kernel view: io-wq punts / poll arms / "
                                    "task-work runs, each per read",
                            notes=["from the io_uring tracepoints (io_uring_queue_async_work, "
                                   "io_uring_poll_arm, io_uring_task_work_run) in each run's "
                                   "measured window, divided by its reads; median over the runs "
                                   "with probes. One task-work run may complete several reads "
                                   "(depth > 1), so there it undercounts; uring_sqpoll's SQ "
                                   "thread runs task work on every pass of its loop."]))
    return blocks


def resident_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    check = resident_check(run, family)
    if check.empty:
        return []
    rows = []
    for target, part in check.groupby(check["target"].round(4), sort=True):
        a = part["achieved"].astype(float)
        rows.append([f"{target:g}", str(len(part)), _frac(a.median()),
                     f"{_frac(a.min())}..{_frac(a.max())}", str(int(part["off_target"].sum()))])
    blocks: list[Block] = [Heading("Page-cache state check", size=12, keep_with_next=1.2),
                           Table(["target resident fraction", "runs", "achieved (median)",
                                  "min..max", "off target"], rows,
                                 right=[True] * 5,
                                 caption="Resident fraction of the measured blocks when the "
                                         "window opened (mincore), against the run's target",
                                 notes=["every ok file-read run, with probes or without; "
                                        "off target: further than 0.05 from the target "
                                        "(counter resident_off_target)"])]
    off = check[check["off_target"]]
    if off.empty:
        blocks.append(Text(f"Every one of the {len(check)} file-read runs started within 0.05 "
                           "of its target resident fraction.", size=9.5))
    else:
        blocks.append(Text(f"{len(off)} of {len(check)} runs missed their target: their "
                           "hit ratio is not what the point says:", size=9.5, color="#a63603"))
        for r in off.itertuples(index=False):
            blocks.append(Text(f"run {r.run_id} {r.variant} {r.point} repetition {r.repetition}: "
                               f"target {r.target:g}, achieved {r.achieved:.3f}", size=9,
                               indent=0.2, color="#a63603"))
    return blocks


def socket_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = socket_data(run, family)
    if data.empty:
        return []
    blocked = blocked_fraction(run, family).set_index(["variant", "point"])
    rows = []
    lat = data[data["metric"].astype(str) == "latency"]
    after = data[data["metric"].astype(str) == "after_data"].set_index(["variant", "point"])
    for _, r in lat.iterrows():
        key = (str(r["variant"]), str(r["point"]))
        a = after.loc[key] if key in after.index else None
        b = blocked.loc[key] if key in blocked.index else None
        rows.append([str(r["variant"]), f"{r[READY]:g}", fmt_value(r["median"]),
                     f"{fmt_value(r['ci_low'])}..{fmt_value(r['ci_high'])}",
                     "-" if a is None else fmt_value(a["median"]),
                     "-" if a is None else f"{fmt_value(a['ci_low'])}..{fmt_value(a['ci_high'])}",
                     "-" if b is None else _frac(b["not_ready"]),
                     "-" if b is None else _frac(b["went_async"])])
    return [Heading("Socket receives: is the data there when the consumer asks?", size=12,
                    keep_with_next=1.2),
            Table(["variant", "ready_probability", "latency median [ns]", "95% CI",
                   "after_data median [ns]", "95% CI", "not ready", "went async"], rows,
                  right=[False, True, True, False, True, False, True, True],
                  caption="One message per call on an AF_UNIX SOCK_SEQPACKET pair; the "
                          "producer sends before the call with probability ready_probability",
                  notes=["after_data: from the later of the call and the producer's send to the "
                         "completion seen (for a message not ready: what delivering it costs)",
                         "not ready: messages sent after their call / receives (counter "
                         "sent_after_call); went async: "
                         + "; ".join(dict.fromkeys(f"{v}: {WENT_ASYNC[v][2]}" for v in
                                                   lat["variant"].astype(str)
                                                   if v in WENT_ASYNC))])]


def findings_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    if headline(run, family).empty:
        return []
    blocks: list[Block] = [Heading("What this run shows: the seed's claims", size=12,
                                   keep_with_next=0.8)]
    for line in claim_lines(run, family):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    blocks += blocked_blocks(run, family)
    blocks += resident_blocks(run, family)
    blocks += socket_blocks(run, family)
    return blocks


# -- figures -----------------------------------------------------------------------------

def variant_colors(run: Run, family: str = FAMILY) -> dict[str, Any]:
    """One colour per variant, the same in every figure; a receive variant
    takes its file-read namesake's (recv_pool is pool's colour)."""
    names = list(run.families[family]["variants"])
    own = [n for n in names if not (n.startswith("recv_") and n[5:] in names)]
    colors = dict(zip(own, plots.palette(len(own))))
    for n in names:
        colors.setdefault(n, colors.get(n[5:]))
    return colors


def _dodge(i: int, n: int, span: float) -> float:
    """Sideways shift of line i of n, so that equal values do not hide each other."""
    return (i - (n - 1) / 2) * span / max(n, 1)


def _errorbar(ax, x, y, low, high, **kw):
    y = np.asarray(y, dtype=float)
    low = np.where(np.isfinite(low), low, y)
    high = np.where(np.isfinite(high), high, y)
    ax.errorbar(x, y, yerr=[np.maximum(y - low, 0), np.maximum(high - y, 0)], capsize=3,
                elinewidth=0.9, markersize=4, linewidth=1.3, **kw)


def _x_range(x) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.max() - x.min()) if x.size > 1 and x.max() > x.min() else 1.0


def _log_if_decades(ax, values, axis: str = "y") -> bool:
    log = plots.spans_decades([v for v in values if v is not None and np.isfinite(v) and v > 0])
    if log:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        plots.plain_log_ticks(ax, axis)
    return log


def crossover_plot(ax_latency, ax_throughput, rows: pd.DataFrame, colors: dict | None = None,
                   title: str | None = None):
    """Median latency per read (95% CI whiskers) and throughput (bootstrap
    interval over the runs) against the hit ratio, one line per variant."""
    colors = colors or {}
    lat_values, thr_values = [], []
    markers = "osD^v<>"
    groups = list(rows.groupby("variant", observed=True, sort=False))
    span = 0.04 * _x_range(rows[HIT])
    for i, (variant, part) in enumerate(groups):
        part = part.sort_values(HIT)
        x = part[HIT].astype(float) + _dodge(i, len(groups), span)
        label = str(variant)
        if "depth" in part.columns and part["depth"].isna().all() and \
                (rows["depth"].dropna().astype(float) != 1).any():
            label += " (one read at a time)"
        style = {"color": colors.get(str(variant)), "marker": markers[i % len(markers)],
                 "label": label}
        _errorbar(ax_latency, x, part["median"], part["ci_low"], part["ci_high"], **style)
        _errorbar(ax_throughput, x, part["throughput"], part["throughput_ci_low"],
                  part["throughput_ci_high"], **style)
        lat_values += list(part["ci_low"]) + list(part["ci_high"]) + list(part["median"])
        thr_values += list(part["throughput_ci_low"]) + list(part["throughput_ci_high"])
    unit = plots.unit_of(rows) or "ns"
    log = _log_if_decades(ax_latency, lat_values)
    ax_latency.set_ylabel(plots.axis_label("median latency per read", unit, log))
    log = _log_if_decades(ax_throughput, thr_values)
    ax_throughput.set_ylabel(plots.axis_label("throughput", "reads/s", log))
    for ax in (ax_latency, ax_throughput):
        ax.set_xlabel("page-cache hit ratio (fraction of the measured blocks cached)")
        ax.grid(True, which="major", color="0.88", linewidth=0.6)
        ax.set_xticks(sorted(set(rows[HIT].astype(float))))
    if title:
        ax_latency.set_title(f"{title}: latency", parse_math=False)
        ax_throughput.set_title(f"{title}: throughput", parse_math=False)
    plots.legend_right(ax_throughput)
    return ax_latency, ax_throughput


def crossover_figures(report: Report, family: str = FAMILY) -> None:
    run = report.run
    data = crossover_data(run, family)
    if data.empty:
        return
    colors = variant_colors(run, family)
    for group, rows in crossover_groups(data):
        where = group_label(group)
        with report.figure(f"{family}: the crossover" + (f", {where}" if where else ""),
                           ncols=2,
                           caption="Left: median latency of one read (the caller's stamp before "
                                   "issuing it to its stamp on seeing the completion), whiskers "
                                   "the 95% CI of the median (hierarchical bootstrap). Right: "
                                   "reads per second over each run's measured window, median "
                                   "over the runs, whiskers a bootstrap interval over the runs "
                                   "(with three runs or fewer: their min..max). sync always has one read in "
                                   "flight. Variants are shifted slightly sideways so that their "
                                   "whiskers do not hide each other. Log scales where the values "
                                   "span more than a decade.") as (fig, axes):
            crossover_plot(axes[0], axes[1], rows, colors, title=where or None)


def blocked_plot(ax, rows: pd.DataFrame, colors: dict | None = None, title: str | None = None):
    """went_async against the hit ratio per variant, with 1 - resident."""
    colors = colors or {}
    markers = "osD^v<>"
    groups = list(rows.groupby("variant", observed=True, sort=False))
    span = 0.04 * _x_range(rows[HIT])
    for i, (variant, part) in enumerate(groups):
        part = part.sort_values(HIT)
        x = part[HIT].astype(float) + _dodge(i, len(groups), span)
        ax.plot(x, part["went_async"], marker=markers[i % len(markers)], markersize=4,
                linewidth=1.3, color=colors.get(str(variant)), label=str(variant))
    nr = rows.groupby(HIT)["not_resident"].median().dropna()
    if len(nr):
        ax.plot(nr.index, nr.to_numpy(), color="0.3", linestyle=":", linewidth=1.6,
                label="not resident at start")
    ax.set_xlabel("page-cache hit ratio")
    ax.set_ylabel("reads that went async [fraction]")
    ax.set_ylim(-0.05, 1.1)
    ax.grid(True, color="0.88", linewidth=0.6)
    if title:
        ax.set_title(title, parse_math=False)
    return ax


def blocked_figure(report: Report, family: str = FAMILY) -> None:
    run = report.run
    table = blocked_fraction(run, family)
    if table.empty:
        return
    files = table[_is_file(table)].copy()
    if files.empty:
        return
    files[HIT] = files[HIT].astype(float)
    colors = variant_colors(run, family)
    groups = crossover_groups(files)
    show_switches = np.isfinite(files["switches_per_op"].astype(float)).any()
    with report.figure(f"{family}: reads that went asynchronous"
                       + (", and context switches per read" if show_switches else ""),
                       nrows=2 if show_switches else 1, ncols=len(groups),
                       caption="Top: fraction of reads handed off (how each variant's is "
                               "measured: the table 'How often a read went asynchronous'); "
                               "dotted: the fraction of blocks not in the page cache when the "
                               "window opened. Bottom: context switches of the run's threads "
                               "per read (sched_switch, kernel view), median over the runs "
                               "with probes. Variants are shifted slightly sideways so that "
                               "equal values do not hide each other.") as (fig, axes):
        for j, (group, rows) in enumerate(groups):
            where = group_label(group) or None
            blocked_plot(axes[j], rows, colors, title=where)
            if show_switches:
                ax = axes[len(groups) + j]
                lines = list(rows.groupby("variant", observed=True, sort=False))
                span = 0.04 * _x_range(rows[HIT])
                for i, (variant, part) in enumerate(lines):
                    part = part.sort_values(HIT)
                    ax.plot(part[HIT].astype(float) + _dodge(i, len(lines), span),
                            part["switches_per_op"], marker="osD^v<>"[i % 7],
                            markersize=4, linewidth=1.3, color=colors.get(str(variant)),
                            label=str(variant))
                ax.set_xlabel("page-cache hit ratio")
                ax.set_ylabel("context switches per read")
                ax.grid(True, color="0.88", linewidth=0.6)
        plots.legend_right(axes[len(groups) - 1])


def socket_figure(report: Report, family: str = FAMILY) -> None:
    data = socket_data(report.run, family)
    if data.empty:
        return
    colors = variant_colors(report.run, family)
    metrics = [m for m in ("latency", "after_data") if (data["metric"].astype(str) == m).any()]
    with report.figure(f"{family}: socket receives against data readiness", ncols=len(metrics),
                       caption="Median per receive, whiskers the 95% CI of the median. latency: "
                               "the consumer's call to the completion seen; after_data: from the "
                               "later of the call and the producer's send. Log y where the "
                               "values span more than a decade.") as (fig, axes):
        for ax, metric in zip(axes, metrics):
            part = data[data["metric"].astype(str) == metric]
            values = []
            for i, (variant, rows) in enumerate(part.groupby("variant", observed=True,
                                                             sort=False)):
                rows = rows.sort_values(READY)
                _errorbar(ax, rows[READY], rows["median"], rows["ci_low"], rows["ci_high"],
                          color=colors.get(str(variant)), marker="osD^"[i % 4],
                          label=str(variant))
                values += list(rows["ci_low"]) + list(rows["ci_high"])
            log = _log_if_decades(ax, values)
            ax.set_xlabel("ready_probability (chance the message is sent before the call)")
            ax.set_ylabel(plots.axis_label(f"median {metric}", plots.unit_of(part) or "ns", log))
            ax.set_xticks(sorted(set(part[READY])))
            ax.grid(True, color="0.88", linewidth=0.6)
            ax.set_title(metric, parse_math=False)
        plots.legend_right(axes[len(metrics) - 1])


__all__ = ["crossover_data", "crossover_groups", "crossover_plot", "blocked_fraction",
           "blocked_plot", "resident_check", "socket_data", "claim_lines", "speedups",
           "up_front"]
