"""Report section of the activations family (seeds 000, 002, 004: an M:N
fiber runtime whose virtual processors survive blocking calls, and the 1992
paper's Table IV), every number computed from the stored run except the
paper's, which are quoted from lab.families.activations
(PAPER_TABLE_IV_US, through its table_iv()):

- Table IV side by side: Null Fork and Signal-Wait for fibers (FastThreads
  on Topaz threads), fibers on activations (FastThreads on scheduler
  activations), pthreads (Topaz threads) and processes (Ultrix processes):
  the 1992 figure, today's median with its 95% CI, each column over the
  first one (1992 and today) and today's speed-up over 1992 per cell; a
  log-scale grouped bar chart;
- throughput (the workers' throughput_steps_per_s counter, median over the
  runs, min..max as error bars) against the blocking probability p, one
  line per variant, one panel per combination of the other swept axes
  (vps, spares, block_us, ...); the table beside it: steps/s and its ratio
  to ``none`` and ``pthreads`` at the same point, the VP idle fraction,
  handoffs per task, and the kernel view's context switches, system calls
  and wake-ups per task (the runs with probes);
- handoff latency (series ``handoff``: futex_hint, syncfirst, monitor,
  upcall): CDF per variant, one panel per p, log x in us, and a table of
  median / p90 / p99; task latency (``task_latency``) medians per variant
  and p, with Little's law (mean latency = concurrency / throughput) as a
  check on the counters;
- the mechanics: completions = tasks, no duplicate completion, never more
  than vps activations running fibers, dispatches while another fiber of
  the VP was in its call (``ran_while_blocked``: the point of handoff) and,
  for upcall, while the kernel had it blocked (``ran_while_kernel_blocked``),
  stale upcalls, syncfirst's EAGAIN fraction;
- "what this run shows": the best variant by throughput at p = 0.1 (or
  the p nearest to it) and every variant against ``none`` and ``pthreads``
  there, upcall's handoff against futex_hint's, the upcall family's
  bpf_ringbuf block upcall when the run has it (that wake-up is what the
  upcall handoff pays), and Table IV's headline against 1992.

A run without Table IV, without p = 0.1 or without some variant says so in
one line where the missing part would be.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis._counters import counter_summary, kernel_per_op, run_table, with_params
from analysis._format import (
    NOISY_MARK,
    fmt_count,
    fmt_rate,
    fmt_ratio,
    fmt_times,
    fmt_us,
    fmt_us_interval,
    fmt_value,
)
from analysis._kernel import kernel_view_status
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._results import Run
from analysis._views import (
    cell_kinds,
    family_summary,
    headline,
    is_set,
    median_ratio,
    per_run,
    plain_param,
    split_by_axes,
    swept_axes,
    user_samples,
)
from analysis.sections import generic
from analysis.sections.registry import register
from lab.families import activations as fam

FAMILY = "activations"
TASK_VARIANTS = ("none", "futex_hint", "syncfirst", "monitor", "upcall", "uring", "pthreads")
HANDOFF_VARIANTS = tuple(fam.HANDOFF_VARIANTS)
T4_VARIANTS = tuple(fam.TABLE_IV_COLUMNS)
T4_OPS = tuple(fam.T4_OPS)
OP_NAMES = {"null_fork": "Null Fork", "signal_wait": "Signal-Wait"}
NONE, PTHREADS, UPCALL, FUTEX_HINT = "none", "pthreads", "upcall", "futex_hint"
TASK_LATENCY, HANDOFF, NS_PER_OP = (fam.TASK_LATENCY.name, fam.HANDOFF.name,
                                    fam.NS_PER_OP.name)
P = "p"
TARGET_P = 0.1                  # the note reads p = 0.1
THROUGHPUT = "throughput_steps_per_s"
TASKS_PER_S = "throughput_tasks_per_s"
# counters the throughput table shows beside the throughput (medians over the runs)
PER_POINT = ("vp_idle_fraction", "handoffs_per_task", "cpu_busy_fraction", "eagain_fraction")
# the kernel view, per task (one operation is one task)
KERNEL = {"switches_per_task": "switches_per_op", "syscalls_per_task": "syscalls_per_op",
          "wakeups_per_task": "wakeups_per_op"}
# the upcall family's mechanism that wakes the upcall variant's spare
RINGBUF, UPCALL_FAMILY = "bpf_ringbuf", "upcall"
LITTLE_SLACK = 0.10             # mean latency within 10% of concurrency / throughput
TASK_ROWS_PER_PAGE = 30

NO_TABLE_IV_LINE = ("This run has no Table IV measurement: add [[activations]] variants = "
                    "[\"t4_fibers\", \"t4_activations\", \"t4_pthreads\", \"t4_processes\"] "
                    "op = [\"null_fork\", \"signal_wait\"] to the suite.")
NO_TASKS_LINE = ("This run has no task-workload variant (none, futex_hint, syncfirst, monitor, "
                 "upcall, uring, pthreads): no throughput, handoff or task latency to show.")
NO_RINGBUF_LINE = ("This run has no upcall-family bpf_ringbuf block upcall on one CPU to set "
                   "beside the upcall handoff: add [upcall] variants = [\"bpf_ringbuf\"] "
                   "event = \"block\" placement = \"same_cpu\" to the suite.")


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    run = report.run
    # the generic CDF of every (variant, point) would mix ns per Table IV
    # operation with task latencies over 36 curves, and the generic counter
    # tables list every count: the section draws its own figures and shows
    # the counters that matter in its tables (`lab show` lists them all)
    generic.render(report, family, extra_blocks=section_blocks(run, family), figures=False,
                   counters=False)
    table_iv_figure(report, family)
    throughput_figures(report, family)
    handoff_figures(report, family)


# -- helpers ------------------------------------------------------------------------------

def _frac(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _p(p: float) -> str:
    return f"{plain_param(p)}"


def _whose(name: str) -> str:
    """pthreads', upcall's."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


# the family's axes besides p and op, for labelling rows of a frame without the Run
AXES = tuple(p.name for p in fam.PARAMS if p.axis and p.name not in (P, "op"))


def _at(row, data: pd.DataFrame) -> str:
    """``p=0.1``, or ``vps=1 p=0.1`` where data sweeps other axes too."""
    parts = [f"{a}={plain_param(row[a])}" for a in swept_axes(data, AXES) if is_set(row.get(a))]
    return " ".join(parts + [f"p={_p(row[P])}"])


def group_axes(run: Run, family: str = FAMILY) -> list[str]:
    """The family's axis parameters besides p and op: what else names a
    point of the task workload (vps, spares, concurrency, block_us, ...)."""
    params = run.families.get(family, {}).get("params", {})
    return [name for name, d in params.items() if d.get("axis", True) and name not in (P, "op")]


def groups(data: pd.DataFrame, axes) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """data split into one frame per combination of the swept ``axes``
    (besides p); a variant that does not read an axis (none has no spares)
    is in every group."""
    return split_by_axes(data, swept_axes(data, axes))


def group_label(group: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in group.items())


def nearest_p(ps, target: float = TARGET_P) -> float | None:
    """The p closest to ``target`` (the lower one on a tie), None if none."""
    ps = sorted({float(p) for p in ps if is_set(p)})
    if not ps:
        return None
    return min(ps, key=lambda p: (abs(p - target), p))


def _compatible(row, ref, axes) -> bool:
    """Whether ``ref`` is at row's point: the same p, and every axis both
    read has the same value."""
    if not math.isclose(float(row[P]), float(ref[P])):
        return False
    for a in axes:
        if a in row.index and a in ref.index and is_set(row[a]) and is_set(ref[a]) \
                and plain_param(row[a]) != plain_param(ref[a]):
            return False
    return True


def _variant_order(frame: pd.DataFrame, axes) -> pd.DataFrame:
    order = {v: i for i, v in enumerate(TASK_VARIANTS)}
    keys = pd.DataFrame({"v": frame["variant"].map(order).fillna(99)}, index=frame.index)
    for a in axes:
        if a in frame.columns:
            keys[a] = pd.to_numeric(frame[a], errors="coerce").fillna(-1) \
                if frame[a].dtype != object else frame[a].astype(str)
    keys["p"] = frame[P].astype(float)
    return frame.loc[keys.sort_values(list(keys.columns), kind="stable").index] \
        .reset_index(drop=True)


def _median_of(counters: pd.DataFrame, name: str) -> pd.Series:
    return counters[counters["counter"] == name].set_index(["variant", "point"])["median"]


# -- data: Table IV -----------------------------------------------------------------------

T4_COLUMNS = ["op", "column", "variant", "paper_us", "ours_us", "ours_ci_low_us",
              "ours_ci_high_us", "n", "reps", "noisy", "paper_ratio", "ours_ratio",
              "ours_ratio_low", "ours_ratio_high", "speedup", "speedup_low", "speedup_high"]


def table_iv_data(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """Table IV with today's numbers beside the paper's: the family's
    table_iv() rows (op, column, variant, paper_us, ours_us, paper_ratio,
    ours_ratio: each column over the first, fibers, one) from the headline
    medians of ns_per_op (the user-side runs), with ours_ci_low_us /
    ours_ci_high_us (95% CI of the median), n, reps, noisy, the ratio's
    interval (ours_ratio_low / _high: the CIs divided crosswise) and
    today's speed-up over 1992 (speedup = paper_us / ours_us, its interval
    from the CI).  NaN where a cell was not measured; empty when no Table
    IV variant ran."""
    head = headline(run, family, seed)
    head = head[head["variant"].astype(str).isin(T4_VARIANTS)
                & (head["metric"].astype(str) == NS_PER_OP)]
    if head.empty:
        return pd.DataFrame(columns=T4_COLUMNS)
    data = with_params(run, family, head.reset_index(drop=True))
    cells = {(str(r["variant"]), str(r["op"])): r for _, r in data.iterrows()}
    rows = fam.table_iv({k: float(r["median"]) for k, r in cells.items()})
    out = []
    for r in rows:
        mine = cells.get((r["variant"], r["op"]))
        base = cells.get((T4_VARIANTS[0], r["op"]))
        row = dict(r)
        row["ours_us"] = math.nan if r["ours_us"] is None else float(r["ours_us"])
        row["ours_ratio"] = math.nan if r["ours_ratio"] is None else float(r["ours_ratio"])
        if mine is None:
            row.update({"ours_ci_low_us": math.nan, "ours_ci_high_us": math.nan, "n": 0,
                        "reps": 0, "noisy": False, "ours_ratio_low": math.nan,
                        "ours_ratio_high": math.nan, "speedup": math.nan,
                        "speedup_low": math.nan, "speedup_high": math.nan})
            out.append(row)
            continue
        row.update({"ours_ci_low_us": float(mine["ci_low"]) / 1000,
                    "ours_ci_high_us": float(mine["ci_high"]) / 1000,
                    "n": int(mine["n"]), "reps": int(mine["reps"]), "noisy": bool(mine["noisy"])})
        if base is not None and r["variant"] != T4_VARIANTS[0]:
            _, low, high = median_ratio(mine, base)
        else:
            low = high = math.nan
        row["ours_ratio_low"], row["ours_ratio_high"] = low, high
        paper, ours = float(r["paper_us"]), row["ours_us"]
        row["speedup"] = paper / ours if ours > 0 else math.nan
        row["speedup_low"] = paper / row["ours_ci_high_us"] if row["ours_ci_high_us"] > 0 \
            else math.nan
        row["speedup_high"] = paper / row["ours_ci_low_us"] if row["ours_ci_low_us"] > 0 \
            else math.inf
        out.append(row)
    return pd.DataFrame(out, columns=T4_COLUMNS)


def _t4(data: pd.DataFrame, op: str, variant: str):
    hit = data[(data["op"] == op) & (data["variant"] == variant)]
    return None if hit.empty else hit.iloc[0]


def table_iv_lines(data: pd.DataFrame) -> list[str]:
    """Table IV's headline: fibers, pthreads and processes today against 1992."""
    if data.empty or not np.isfinite(data["ours_us"].astype(float)).any():
        return [NO_TABLE_IV_LINE]
    lines = []
    for op in T4_OPS:
        fibers = _t4(data, op, "t4_fibers")
        parts = []
        for variant in T4_VARIANTS:
            r = _t4(data, op, variant)
            if r is None or not math.isfinite(r["ours_us"]):
                parts.append(f"{fam.TABLE_IV_COLUMNS[variant]} ({variant}) not measured")
                continue
            text = f"{variant} {fmt_value(r['ours_us'])} us"
            if variant != "t4_fibers" and math.isfinite(r["ours_ratio"]):
                text += (f" ({fmt_times(r['ours_ratio'])}x fibers; 1992: "
                         f"{fmt_times(r['paper_ratio'])}x)")
            text += f", {fmt_times(r['speedup'])}x faster than 1992's {r['paper_us']:g} us"
            parts.append(text)
        line = f"{OP_NAMES[op]} today: " + "; ".join(parts) + "."
        acts = _t4(data, op, "t4_activations")
        if fibers is not None and acts is not None and math.isfinite(acts["ours_ratio"]) \
                and math.isfinite(fibers["ours_us"]):
            lo, hi = acts["ours_ratio_low"], acts["ours_ratio_high"]
            verdict = ("slower than" if lo > 1 else "faster than" if hi < 1
                       else "not distinguishable from")
            line += (f" Fibers on activations against plain fibers: "
                     f"{fmt_ratio(acts['ours_ratio'])} (95% interval {fmt_ratio(lo)}.."
                     f"{fmt_ratio(hi)}), {verdict} them; the paper's {acts['paper_us']:g} vs "
                     f"{fibers['paper_us']:g} us ({fmt_ratio(acts['paper_ratio'])}); here "
                     "the fibers' fast path touches no activation state, so no difference is "
                     "built in.")
        lines.append(line)
    return lines


# -- data: the task workload -----------------------------------------------------------------

@per_run
def task_data(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per task-workload (variant, point): its parameters (p,
    vps, spares, concurrency, block_us, ...); the task_latency summary of
    the user-side runs as latency_median, latency_p90, latency_p99,
    latency_ci_low / _high, latency_noisy, n, reps, and latency_mean (ns);
    throughput [steps/s] (the workers' throughput_steps_per_s counter,
    median over the user-side runs; throughput_ci_low / _high: bootstrap
    over the runs; throughput_min / _max: the lowest and highest run;
    throughput_reps, throughput_noisy), ``vs_none`` and ``vs_pthreads`` (the
    throughput median over theirs at the same point, NaN without them) with
    their intervals (_low / _high: bootstrap intervals divided crosswise);
    the medians of vp_idle_fraction, handoffs_per_task, cpu_busy_fraction,
    eagain_fraction (NaN where a variant has none); tasks_per_s and
    ``little_ns`` = concurrency / tasks_per_s (Little's law: the mean task
    latency it implies); switches_per_task, syscalls_per_task,
    wakeups_per_task (the kernel view: median over the runs with probes;
    NaN without) and kernel_reps.  Rows in the family's variant order, then
    by the other axes, then p."""
    head = headline(run, family, seed)
    head = head[head["variant"].astype(str).isin(TASK_VARIANTS)
                & (head["metric"].astype(str) == TASK_LATENCY)]
    axes = group_axes(run, family)
    if head.empty:
        return pd.DataFrame(columns=["variant", "point", P, *axes, "throughput"])
    data = with_params(run, family, head.reset_index(drop=True))
    data = data.rename(columns={"median": "latency_median", "p90": "latency_p90",
                                "p99": "latency_p99", "ci_low": "latency_ci_low",
                                "ci_high": "latency_ci_high", "rep_min": "latency_rep_min",
                                "rep_max": "latency_rep_max", "noisy": "latency_noisy"})
    data["variant"] = data["variant"].astype(str)
    data["point"] = data["point"].astype(str)
    data[P] = data[P].astype(float)
    key = list(zip(data["variant"], data["point"]))
    counters = counter_summary(run, family, seed=seed)
    thr = counters[counters["counter"] == THROUGHPUT].set_index(["variant", "point"])
    for col, src in (("throughput", "median"), ("throughput_ci_low", "ci_low"),
                     ("throughput_ci_high", "ci_high"), ("throughput_min", "rep_min"),
                     ("throughput_max", "rep_max"), ("throughput_reps", "reps"),
                     ("throughput_noisy", "noisy")):
        column = thr[src] if len(thr) else pd.Series(dtype=float)
        data[col] = [column.get(k, math.nan) for k in key]
    data["throughput_noisy"] = data["throughput_noisy"].fillna(False).astype(bool)
    for name in PER_POINT + (TASKS_PER_S,):
        med = _median_of(counters, name)
        data[name.replace("throughput_", "")] = [float(med.get(k, math.nan)) for k in key]
    conc = pd.to_numeric(data["concurrency"], errors="coerce").astype(float) \
        if "concurrency" in data.columns else pd.Series(math.nan, index=data.index)
    with np.errstate(divide="ignore", invalid="ignore"):
        data["little_ns"] = conc.to_numpy() / data["tasks_per_s"].to_numpy(dtype=float) * 1e9
    samples = user_samples(run)
    samples = samples[(samples["family"] == family) & (samples["metric"] == TASK_LATENCY)]
    means = samples.groupby([samples["variant"].astype(str), samples["point"].astype(str)])[
        "value"].mean() if len(samples) else pd.Series(dtype=float)
    data["latency_mean"] = [float(means.get(k, math.nan)) for k in key]
    kernel = kernel_per_op(run, family, KERNEL, seed).set_index(["variant", "point"])
    for name in list(KERNEL) + ["kernel_reps"]:
        column = kernel[name] if name in kernel.columns else pd.Series(dtype=float)
        data[name] = [float(column.get(k, math.nan)) if k in column.index else
                      (0.0 if name == "kernel_reps" else math.nan) for k in key]
    data["kernel_reps"] = data["kernel_reps"].fillna(0).astype(int)
    for ref in (NONE, PTHREADS):
        refs = data[data["variant"] == ref]
        ratios = []
        for _, row in data.iterrows():
            match = [r for _, r in refs.iterrows() if _compatible(row, r, axes)]
            if not match or not match[0]["throughput"] > 0:
                ratios.append((math.nan, math.nan, math.nan))
                continue
            m = match[0]
            ratios.append(median_ratio(
                {"median": row["throughput"], "ci_low": row["throughput_ci_low"],
                 "ci_high": row["throughput_ci_high"]},
                {"median": m["throughput"], "ci_low": m["throughput_ci_low"],
                 "ci_high": m["throughput_ci_high"]}))
        data[f"vs_{ref}"] = [r[0] for r in ratios]
        data[f"vs_{ref}_low"] = [r[1] for r in ratios]
        data[f"vs_{ref}_high"] = [r[2] for r in ratios]
    return _variant_order(data, axes)


def best_at(rows: pd.DataFrame, p: float):
    """The row with the highest median throughput at p (None if none)."""
    here = rows[np.isclose(rows[P].astype(float), p)
                & np.isfinite(rows["throughput"].astype(float))]
    if here.empty:
        return None
    return here.loc[here["throughput"].astype(float).idxmax()]


def throughput_pivot(rows: pd.DataFrame, value: str = "throughput") -> pd.DataFrame:
    """One group's ``value`` per variant (rows) and p (columns)."""
    if rows.empty:
        return pd.DataFrame()
    pivot = rows.pivot_table(index="variant", columns=P, values=value, aggfunc="first",
                             sort=False)
    order = [v for v in TASK_VARIANTS if v in pivot.index]
    return pivot.loc[order, sorted(pivot.columns)]


def handoff_data(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per (variant, point) with a ``handoff`` series (futex_hint,
    syncfirst, monitor, upcall: present where a handoff happened): the
    summary of the user-side runs (n, reps, median, p90, p99, ci_low,
    ci_high, rep_min, rep_max, noisy; ns), its parameters (p, spares, ...)
    and handoffs_per_task (counter, median over the runs)."""
    s = family_summary(run, family, seed)
    s = s[s["variant"].astype(str).isin(HANDOFF_VARIANTS) & (s["metric"].astype(str) == HANDOFF)]
    axes = group_axes(run, family)
    if s.empty:
        return pd.DataFrame(columns=["variant", "point", P, *axes, "n", "reps", "median", "p90",
                                     "p99", "ci_low", "ci_high", "noisy", "handoffs_per_task"])
    data = with_params(run, family, s.reset_index(drop=True))
    data["variant"] = data["variant"].astype(str)
    data["point"] = data["point"].astype(str)
    data[P] = data[P].astype(float)
    per_task = _median_of(counter_summary(run, family, seed=seed), "handoffs_per_task")
    data["handoffs_per_task"] = [float(per_task.get(k, math.nan))
                                 for k in zip(data["variant"], data["point"])]
    return _variant_order(data, axes)


def handoff_pairs(data: pd.DataFrame, axes) -> list[dict[str, Any]]:
    """upcall's handoff against futex_hint's at every point where both
    handed off: {group, p, upcall, futex_hint (rows), ratio, low, high}."""
    out = []
    ups = data[data["variant"] == UPCALL]
    hints = data[data["variant"] == FUTEX_HINT]
    for _, u in ups.iterrows():
        match = [h for _, h in hints.iterrows() if _compatible(u, h, axes)]
        if not match:
            continue
        h = match[0]
        ratio, low, high = median_ratio(u, h)
        group = {a: plain_param(u[a]) for a in swept_axes(data, axes) if is_set(u.get(a))}
        out.append({"group": group, "p": float(u[P]), "upcall": u, "futex_hint": h,
                    "ratio": ratio, "low": low, "high": high})
    return out


SHARE_EDGES_NS = (10_000.0, 50_000.0)


def handoff_shares(run: Run, rows: pd.DataFrame, family: str = FAMILY,
                   edges=SHARE_EDGES_NS) -> pd.DataFrame:
    """Per handoff_data row: the share of its handoffs (user-side samples)
    below edges[0], between the edges and above edges[1] (``below``,
    ``between``, ``above``): where a distribution has several modes, its
    median alone hides them."""
    samples = user_samples(run)
    samples = samples[(samples["family"] == family) & (samples["metric"] == HANDOFF)]
    out = []
    for _, r in rows.iterrows():
        v = samples.loc[(samples["variant"].astype(str) == r["variant"])
                        & (samples["point"].astype(str) == r["point"]), "value"].to_numpy(float)
        n = max(v.size, 1)
        out.append({"variant": r["variant"], "point": r["point"], P: r[P], "n": int(v.size),
                    "below": float((v < edges[0]).sum()) / n,
                    "between": float(((v >= edges[0]) & (v <= edges[1])).sum()) / n,
                    "above": float((v > edges[1]).sum()) / n})
    return pd.DataFrame(out, columns=["variant", "point", P, "n", "below", "between", "above"])


def handoff_share_lines(run: Run, data: pd.DataFrame, family: str = FAMILY) -> list[str]:
    """Per group, at p = 0.1 (or the nearest p): each variant's share of
    handoffs below 10 us, 10..50 us and above 50 us."""
    lines = []
    for group, rows in groups(data, group_axes(run, family)):
        p = nearest_p(rows[P])
        if p is None:
            continue
        shares = handoff_shares(run, rows[np.isclose(rows[P].astype(float), p)], family)
        if shares.empty:
            continue
        lo, hi = (f"{e / 1000:g}" for e in SHARE_EDGES_NS)
        where = f", {group_label(group)}" if group else ""
        lines.append(f"Where the handoffs fall at p = {_p(p)}{where} (below {lo} us / {lo}.."
                     f"{hi} us / above {hi} us): " + "; ".join(
                         f"{r['variant']} {r['below']:.0%} / {r['between']:.0%} / "
                         f"{r['above']:.0%}" for _, r in shares.iterrows())
                     + ". Where a variant's handoffs split between the bands, its median "
                       "alone describes none of them.")
    return lines


def ringbuf_reference(run: Run, seed: int = 0) -> pd.DataFrame:
    """The upcall family's bpf_ringbuf block upcalls on one CPU in the same
    run (headline latency summary with block_kind and the point), or an
    empty frame: the mechanism whose wake-up the upcall handoff waits on."""
    if UPCALL_FAMILY not in run.families:
        return pd.DataFrame()
    head = headline(run, UPCALL_FAMILY, seed)
    head = head[head["variant"].astype(str) == RINGBUF]
    if head.empty:
        return pd.DataFrame()
    data = with_params(run, UPCALL_FAMILY, head.reset_index(drop=True))
    for col in ("event", "placement"):
        if col not in data.columns:
            return pd.DataFrame()
    data = data[(data["event"].astype(str) == "block")
                & (data["placement"].astype(str) == "same_cpu")]
    return data.reset_index(drop=True)


# -- data: the mechanics ---------------------------------------------------------------------

MECHANICS_COLUMNS = ["variant", "point", P, "runs", "completions_ok", "duplicates",
                     "max_running", "vps", "ran_while_blocked", "ran_while_kernel_blocked",
                     "stale_upcalls", "eagain_fraction", "blocking_calls", "blocking_fraction"]


def mechanics_data(run: Run, family: str = FAMILY) -> pd.DataFrame:
    """One row per task-workload (variant, point): ``runs`` (every ok run,
    with probes and without), ``completions_ok`` (runs whose completions
    equal their tasks), ``duplicates`` (duplicate_completions summed),
    ``max_running`` (the most activations running fibers at once, highest
    run; NaN for pthreads: no VPs) against ``vps``; medians over the
    user-side runs of ran_while_blocked, ran_while_kernel_blocked,
    stale_upcalls, eagain_fraction, blocking_calls and blocking_fraction
    (calls drawn to block / calls; NaN where a
    variant does not report one); plus the point's parameters."""
    table = run_table(run, family)
    table = table[table["variant"].astype(str).isin(TASK_VARIANTS)]
    axes = group_axes(run, family)
    if table.empty:
        return pd.DataFrame(columns=MECHANICS_COLUMNS + axes)
    rows = []
    for (variant, point), part in table.groupby(["variant", "point"], observed=True, sort=False):
        user = part[part["user_side"]]

        def col(name, frame=part):
            return frame[name].astype(float) if name in frame.columns \
                else pd.Series(math.nan, index=frame.index)

        def median(name):
            values = col(name, user).dropna()
            return float(values.median()) if len(values) else math.nan

        tasks = col("tasks")
        completions = col("completions")
        running = col("max_running_activations").dropna()
        first = part.iloc[0]
        row = {"variant": str(variant), "point": str(point), P: float(first[P]),
               "runs": int(len(part)),
               "completions_ok": int((completions.to_numpy() == tasks.to_numpy()).sum()),
               "duplicates": float(col("duplicate_completions").fillna(0).sum()),
               "max_running": float(running.max()) if len(running) else math.nan,
               "vps": float(first["vps"]) if is_set(first.get("vps")) else math.nan}
        for name in ("ran_while_blocked", "ran_while_kernel_blocked", "stale_upcalls",
                     "eagain_fraction", "blocking_calls", "blocking_fraction"):
            row[name] = median(name)
        for a in axes:
            row[a] = first[a] if a in part.columns else None
        rows.append(row)
    return _variant_order(pd.DataFrame(rows), axes)


def mechanics_lines(data: pd.DataFrame, run: Run | None = None,
                    family: str = FAMILY) -> list[str]:
    """What the mechanics counters say, in sentences."""
    if data.empty:
        return []
    lines = []
    runs = int(data["runs"].sum())
    bad_completion = data[data["completions_ok"] != data["runs"]]
    dup = data[data["duplicates"] != 0]
    vp = data[np.isfinite(data["max_running"].astype(float))]
    over = vp[vp["max_running"].astype(float) > vp["vps"].astype(float)]
    if bad_completion.empty and dup.empty and over.empty:
        lines.append(f"Every one of the {runs} ok runs of the task workload completed exactly "
                     "its tasks, none twice, and never had more activations running fibers "
                     "than VPs.")
    else:
        for _, r in bad_completion.iterrows():
            lines.append(f"{r['variant']} {r['point']}: completions differ from tasks in "
                         f"{r['runs'] - r['completions_ok']} of {r['runs']} runs.")
        for _, r in dup.iterrows():
            lines.append(f"{r['variant']} {r['point']}: {fmt_count(r['duplicates'])} "
                         "duplicate completions.")
        for _, r in over.iterrows():
            lines.append(f"{r['variant']} {r['point']}: {fmt_count(r['max_running'])} "
                         f"activations ran fibers at once on {fmt_count(r['vps'])} VPs.")
    if run is not None:
        failed = run.not_ok()
        failed = failed[(failed["family"].astype(str) == family)
                        & failed["variant"].astype(str).isin(TASK_VARIANTS)]
        if len(failed):
            lines.append(f"{len(failed)} run(s) of the task workload gave no samples (a run "
                         "whose mechanics break fails with the reason; listed at the end).")
    parts = []
    none = data[data["variant"] == NONE]
    if len(none):
        if (none["ran_while_blocked"].fillna(0) == 0).all():
            parts.append("none: ran_while_blocked 0 at every point, as built (a blocked call "
                         "holds its VP)")
        else:
            parts.append("none: ran_while_blocked NOT 0: a VP ran a fiber while another of "
                         "its fibers was in its call, without a handoff")
    handing = data[data["variant"].isin(HANDOFF_VARIANTS + ("uring",))
                   & (data[P].astype(float) > 0)]
    if len(handing):
        missing = handing[~(handing["ran_while_blocked"].astype(float) > 0)]
        if missing.empty:
            parts.append("ran_while_blocked > 0 for " + ", ".join(dict.fromkeys(
                handing["variant"])) + " at every p > 0: their VPs ran other fibers while "
                "one was in a call, the point of handoff")
        else:
            parts.append("ran_while_blocked is 0 where a handoff was due: " + ", ".join(
                f"{r['variant']} {_at(r, data)}" for _, r in missing.iterrows()))
    if parts:
        lines.append("; ".join(parts) + ".")
    ups = data[(data["variant"] == UPCALL) & (data[P].astype(float) > 0)]
    if len(ups):
        share = ups["ran_while_kernel_blocked"].astype(float) / \
            ups["ran_while_blocked"].astype(float)
        stale = ups["stale_upcalls"].astype(float)
        lines.append("upcall: ran_while_kernel_blocked / ran_while_blocked "
                     + ", ".join(f"{_frac(s)} at {_at(r, data)}"
                                 for s, (_, r) in zip(share, ups.iterrows()))
                     + " (the kernel's own block_seq showed the other activation blocked "
                       "in its call); stale upcalls (a record whose call had already "
                       "returned), median per run: " + ", ".join(
                           f"{fmt_count(s)} at {_at(r, data)}"
                           for s, (_, r) in zip(stale, ups.iterrows()))
                     + ".")
    sf = data[(data["variant"] == "syncfirst") & np.isfinite(data["eagain_fraction"].astype(float))]
    if len(sf):
        lines.append("syncfirst: EAGAIN on " + ", ".join(
            f"{fmt_value(r['eagain_fraction'])} of the calls at {_at(r, data)}"
            + (f" (drawn to block: {fmt_value(r['blocking_fraction'])})"
               if math.isfinite(r["blocking_fraction"]) and r[P] > 0 else "")
            for _, r in sf.iterrows())
            + ": preadv2(RWF_NOWAIT) refused the calls that would block, and only those went "
              "to a handoff.")
    return lines


# -- "what this run shows" -----------------------------------------------------------------

def _probe_note(run: Run, family: str) -> str:
    kinds = set(cell_kinds(run, family).values())
    if kinds == {"paired"}:
        return ("User-side numbers (throughput, latencies, Table IV) come from the runs without "
                "probes; switches, system calls and wake-ups per task from their twins with "
                "probes attached.")
    if "probed" in kinds:
        which = "every run" if kinds == {"probed"} else "some of the runs"
        return (f"Probes were attached to {which} these numbers come from: the probes run at "
                "every context switch, system call and wake-up, so variants that switch more "
                "pay more (probe_overhead = true in [suite] gives undisturbed numbers).")
    return "The runs had no probes attached (no kernel view)."


def throughput_lines(data: pd.DataFrame, axes) -> list[str]:
    """The best variant by throughput at p = 0.1 (or the nearest p) and every
    variant against none and pthreads there, per group."""
    if data.empty:
        return [NO_TASKS_LINE]
    lines = []
    for group, rows in groups(data, axes):
        where = f", {group_label(group)}" if group else ""
        p = nearest_p(rows[P])
        best = best_at(rows, p) if p is not None else None
        if best is None:
            lines.append(f"No throughput counter in this run{where}.")
            continue
        note = "" if math.isclose(p, TARGET_P) else \
            f" (this run has no p = {TARGET_P:g} point; {_p(p)} is the nearest)"
        here = rows[np.isclose(rows[P].astype(float), p)]
        reps = int(best["throughput_reps"]) if math.isfinite(best["throughput_reps"]) else 0
        text = (f"At p = {_p(p)}{where}{note}, the most steps per second: {best['variant']}, "
                f"{fmt_rate(best['throughput'])} steps/s (" + (f"median over {reps} runs)"
                                                           if reps != 1 else "one run)"))
        parts = [f"{r['variant']} {fmt_ratio(r['vs_none'])} / {fmt_ratio(r['vs_pthreads'])}"
                 for _, r in here.iterrows() if r["variant"] not in (NONE, PTHREADS)]
        refs = {r["variant"]: r for _, r in here.iterrows() if r["variant"] in (NONE, PTHREADS)}
        if NONE in refs and PTHREADS in refs:
            parts.append(f"none {fmt_ratio(refs[NONE]['vs_pthreads'])} pthreads")
        if parts:
            text += (". Each variant's steps/s over none's / over pthreads' there: "
                     + "; ".join(parts))
        missing = [ref for ref in (NONE, PTHREADS) if not (here["variant"] == ref).any()]
        if missing:
            text += f" (no {' or '.join(missing)} run at this point)"
        runner = here[here["variant"] != best["variant"]]
        runner = runner[np.isfinite(runner["throughput"].astype(float))]
        if len(runner):
            second = runner.loc[runner["throughput"].astype(float).idxmax()]
            ratio, low, high = median_ratio(
                {"median": second["throughput"], "ci_low": second["throughput_ci_low"],
                 "ci_high": second["throughput_ci_high"]},
                {"median": best["throughput"], "ci_low": best["throughput_ci_low"],
                 "ci_high": best["throughput_ci_high"]})
            text += f". The runner-up, {second['variant']}, has {fmt_ratio(ratio)} of " \
                f"{_whose(best['variant'])}"
            if min(reps, int(second["throughput_reps"] or 0)) < 2:
                text += (": one run each, no interval to tell them apart (more repetitions "
                         "would)")
            else:
                text += (f" (interval {fmt_ratio(low)}..{fmt_ratio(high)}): "
                         + ("the lead is clear" if high < 1 else
                            "within the spread of the runs, the two are not told apart"))
        lines.append(text + ".")
    return lines


def handoff_lines(run: Run, handoffs: pd.DataFrame, axes, seed: int = 0) -> list[str]:
    """upcall's handoff against futex_hint's at p = 0.1 (or the nearest p
    where both handed off), and the upcall family's bpf_ringbuf block upcall
    beside it when the run has one."""
    lines = []
    pairs = handoff_pairs(handoffs, axes) if len(handoffs) else []
    chosen = None
    if not pairs:
        have = set(handoffs["variant"]) if len(handoffs) else set()
        lack = [v for v in (UPCALL, FUTEX_HINT) if v not in have]
        lines.append("No point where both upcall and futex_hint handed off"
                     + (f" (no {' or '.join(lack)} handoff in this run)" if lack else "")
                     + ": their handoffs cannot be compared.")
    else:
        by_group: dict[str, list] = {}
        for pair in pairs:
            by_group.setdefault(group_label(pair["group"]), []).append(pair)
        for where, mine in by_group.items():
            p = nearest_p([x["p"] for x in mine])
            pair = next(x for x in mine if math.isclose(x["p"], p))
            chosen = chosen or pair
            u, h = pair["upcall"], pair["futex_hint"]
            verdict = ("slower than" if pair["low"] > 1 else "faster than" if pair["high"] < 1
                       else "not distinguishable from")
            text = (f"Handoff at p = {_p(p)}" + (f", {where}" if where else "")
                    + f": upcall {fmt_us(u['median'])} us (median, 95% CI "
                    f"{fmt_us_interval(u['ci_low'], u['ci_high'])}) against futex_hint "
                    f"{fmt_us(h['median'])} us ({fmt_us_interval(h['ci_low'], h['ci_high'])}): "
                    f"{fmt_ratio(pair['ratio'])} (95% interval {fmt_ratio(pair['low'])}.."
                    f"{fmt_ratio(pair['high'])}), {fmt_us(u['median'] - h['median'])} us more; "
                    f"upcall's handoff is {verdict} futex_hint's")
            others = [x for x in mine if x is not pair]
            if others:
                text += (" (at the other p: " + ", ".join(
                    f"{fmt_ratio(x['ratio'])} at p={_p(x['p'])}" for x in others) + ")")
            lines.append(text + ". futex_hint wakes its spare before every call that may "
                         "block, so its handoff starts early and is paid on every call; "
                         "upcall's starts at the kernel's block.")
    ring = ringbuf_reference(run, seed)
    if ring.empty:
        lines.append(NO_RINGBUF_LINE)
    else:
        parts = [f"{fmt_us(r['median'])} us (block_kind={r.get('block_kind', '-')}, 95% CI "
                 f"{fmt_us_interval(r['ci_low'], r['ci_high'])})" for _, r in ring.iterrows()]
        text = ("The upcall family in this run: bpf_ringbuf's block upcall on one CPU, the "
                "ring wake-up the upcall variant's spare sleeps on, median " + ", ".join(parts))
        if chosen is not None:
            u = chosen["upcall"]
            ref = ring.iloc[0]
            text += (f"; upcall's handoff ({fmt_us(u['median'])} us at p = {_p(chosen['p'])}) is "
                     f"{fmt_ratio(u['median'] / ref['median'])} that: beyond the ring's "
                     "wake-up it pays the spare's take of the VP and the wake-up of the next "
                     "ring spare")
        lines.append(text + ".")
    return lines


def little_lines(data: pd.DataFrame) -> list[str]:
    """Little's law against the counters: mean task latency against
    concurrency / throughput."""
    ok = data[np.isfinite(data["latency_mean"].astype(float))
              & np.isfinite(data["little_ns"].astype(float))] if len(data) else data
    if ok.empty:
        return []
    dev = ok["latency_mean"].astype(float) / ok["little_ns"].astype(float) - 1
    worst = ok.loc[dev.abs().idxmax()]
    within = int((dev.abs() <= LITTLE_SLACK).sum())
    text = (f"Little's law (mean task latency = concurrency / tasks per second): the mean "
            f"latency is within {LITTLE_SLACK:.0%} of it at {within} of {len(ok)} points "
            f"(largest gap {dev.abs().max():.1%}, {worst['variant']} {_at(worst, ok)})"
            + (": the throughput counters and the latency samples agree." if within == len(ok)
               else ": where it is further, a short run's window edges (tasks in flight "
                    "when it opens and closes) can account for it; more tasks per run tell."))
    skew = ok[ok["latency_median"].astype(float) < 0.5 * ok["latency_mean"].astype(float)]
    if len(skew):
        text += (" The median is below half the mean at " + ", ".join(
            f"{r['variant']} {_at(r, ok)}" for _, r in skew.iterrows())
            + ": there most tasks run to completion back to back while a few wait long "
              "(the kernel's time slices, or a spare taking the VP), so a low median is not "
              "a high throughput.")
    return [text]


def findings_lines(run: Run, family: str = FAMILY, seed: int = 0) -> list[str]:
    """"What this run shows", from the medians."""
    axes = group_axes(run, family)
    data = task_data(run, family, seed)
    lines = throughput_lines(data, axes)
    if not data.empty:
        lines += handoff_lines(run, handoff_data(run, family, seed), axes, seed)
    lines += table_iv_lines(table_iv_data(run, family, seed))
    lines.append(_probe_note(run, family))
    return lines


# -- blocks ----------------------------------------------------------------------------------

def findings_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    blocks: list[Block] = [Heading("What this run shows", size=12, keep_with_next=0.8)]
    for line in findings_lines(run, family):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    return blocks


def table_iv_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = table_iv_data(run, family)
    heading = Heading("Table IV: thread operations in 1992 and today", size=12,
                      keep_with_next=1.5)
    if data.empty:
        return [heading, Text(NO_TABLE_IV_LINE, size=9.5)]
    rows, noisy = [], []
    for _, r in data.iterrows():
        first = r["variant"] == T4_VARIANTS[0]
        measured = math.isfinite(r["ours_us"])
        rows.append([OP_NAMES[r["op"]], f"{r['column']} ({r['variant']})", f"{r['paper_us']:g}",
                     fmt_value(r["ours_us"]) if measured else "not measured",
                     f"{fmt_value(r['ours_ci_low_us'])}..{fmt_value(r['ours_ci_high_us'])}"
                     if measured else "-",
                     str(r["reps"]) if measured else "-",
                     f"{r['paper_ratio']:.3g}x",
                     fmt_ratio(r["ours_ratio"]),
                     "-" if first or not measured else
                     f"{fmt_ratio(r['ours_ratio_low'])}..{fmt_ratio(r['ours_ratio_high'])}",
                     fmt_ratio(r["speedup"]),
                     f"{fmt_ratio(r['speedup_low'])}..{fmt_ratio(r['speedup_high'])}"
                     if measured else "-",
                     NOISY_MARK if r["noisy"] else ""])
        noisy.append(bool(r["noisy"]))
    header = ["operation", "column (our variant)", "1992 [us]", "today [us]", "95% CI [us]",
              "reps", "1992 / fibers", "today / fibers", "interval", "1992 / today",
              "interval", ""]
    notes = [f"1992: {fam.PAPER_CITATION}; quoted, never measured here",
             "today: median of ns_per_op over every sample of the user-side runs (fibers: the "
             "mean of ops_per_sample operations per sample; threads and processes one at a "
             "time), 95% CI of the median by hierarchical bootstrap; / fibers: each column "
             "over the first column of its operation; 1992 / today: how many times faster "
             "today's operation is (intervals: the CIs divided crosswise)",
             "Null Fork: create a thread of that kind with a null body, run it, join; "
             "Signal-Wait: signal a waiter, then wait (half a round trip), on one CPU; "
             "processes: fork + _exit + waitpid of this Python process, futex in shared "
             f"memory. {NOISY_MARK}: the repetitions' medians spread more than 10%"]
    return [heading, Table(header, rows, right=[False, False] + [True] * 4 + [True, True, False,
                                                                            True, False, False],
                           highlight=noisy, caption="Null Fork and Signal-Wait: the paper's "
                           "Table IV beside this machine", notes=notes)]


def throughput_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = task_data(run, family)
    heading = Heading("Throughput against the blocking probability p", size=12,
                      keep_with_next=1.5)
    if data.empty:
        return [heading, Text(NO_TASKS_LINE, size=9.5)]
    axes = group_axes(run, family)
    swept = swept_axes(data, axes)
    kernel = np.isfinite(data["switches_per_task"].astype(float)).any()
    header = ["variant"] + swept + ["p", "reps", "steps/s", "min..max", "/ none", "/ pthreads",
                                    "VP idle", "handoffs/task"]
    right = [False] * (1 + len(swept)) + [True] * 8
    right[len(swept) + 4] = False
    if kernel:
        header += ["switches/task", "syscalls/task", "wake-ups/task"]
        right += [True] * 3
    header.append("")
    right.append(False)
    rows = []
    for _, r in data.iterrows():
        row = [r["variant"]] + [str(plain_param(r[a])) if is_set(r[a]) else "-" for a in swept]
        row += [_p(r[P]), fmt_count(r["throughput_reps"]), fmt_rate(r["throughput"]),
                f"{fmt_rate(r['throughput_min'])}..{fmt_rate(r['throughput_max'])}",
                fmt_ratio(r["vs_none"]), fmt_ratio(r["vs_pthreads"]),
                _frac(r["vp_idle_fraction"]), fmt_value(r["handoffs_per_task"])]
        if kernel:
            row += [fmt_value(r[k]) for k in KERNEL]
        row.append(NOISY_MARK if r["throughput_noisy"] else "")
        rows.append(row)
    notes = ["steps/s: the workers' throughput_steps_per_s (tasks x steps over the measured "
             "window), median over the user-side runs; min..max: the lowest and highest run; "
             f"{NOISY_MARK}: they spread more than 10% of the median",
             "/ none, / pthreads: the median over theirs at the same point; VP idle: the share "
             "of VP time no activation ran fiber code (blocked calls, handoffs, empty queues; "
             "pthreads has no VPs); handoffs/task: VPs handed to a spare per task"]
    reason = kernel_view_status(run, family)
    if kernel:
        notes.append("switches, syscalls, wake-ups per task: the kernel view "
                     "(sched:sched_switch, raw_syscalls:sys_enter, sched:sched_waking) of "
                     "the run's threads in the measured window, median over the runs with "
                     "probes; every step makes 2 calls (the timerfd's ioctl or timer arm, "
                     "then the read)")
    else:
        notes.append(f"no kernel view: {reason or 'no run with probes'}")
    return [heading, Table(header, rows, right=right, highlight=data["throughput_noisy"].tolist(),
                           caption="Task workload: steps per second and what each variant did "
                                   "per task", notes=notes, max_rows=TASK_ROWS_PER_PAGE,
                           size=8)]


def handoff_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = handoff_data(run, family)
    heading = Heading("Handoff latency", size=12, keep_with_next=1.2)
    if data.empty:
        if task_data(run, family).empty:
            return []
        return [heading, Text("No handoff was recorded in this run (futex_hint, syncfirst, "
                              "monitor and upcall record one where a VP changed hands).",
                              size=9.5)]
    axes = group_axes(run, family)
    swept = swept_axes(data, axes)
    header = ["variant"] + swept + ["p", "n", "reps", "median [us]", "p90 [us]", "p99 [us]",
                                    "95% CI [us]", "rep spread [us]", "handoffs/task", ""]
    rows = [[r["variant"]] + [str(plain_param(r[a])) if is_set(r[a]) else "-" for a in swept]
            + [_p(r[P]), str(r["n"]), str(r["reps"]), fmt_us(r["median"]), fmt_us(r["p90"]),
               fmt_us(r["p99"]), fmt_us_interval(r["ci_low"], r["ci_high"]),
               fmt_us_interval(r["rep_min"], r["rep_max"]), fmt_value(r["handoffs_per_task"]),
               NOISY_MARK if r["noisy"] else ""] for _, r in data.iterrows()]
    right = [False] * (1 + len(swept)) + [True] * 6 + [False, False, True, False]
    notes = ["handoff: from the block to the spare running a fiber on the VP (or being ready "
             "to, with nothing runnable): upcall from the kernel's time of the block (the BPF "
             "program's bpf_ktime_get_ns()), futex_hint and syncfirst from the wrapper's stamp "
             "before its FUTEX_WAKE, monitor from the call's start (its period is in it)",
             "user-side runs, repetitions pooled; 95% CI: of the median, hierarchical "
             f"bootstrap; {NOISY_MARK}: the repetitions' medians spread more than 10%"]
    return [heading, Table(header, rows, right=right, highlight=data["noisy"].tolist(),
                           caption="Handoff latency per variant and point", notes=notes,
                           max_rows=TASK_ROWS_PER_PAGE)] + \
        [Text(line, size=9.5, indent=0.15) for line in handoff_share_lines(run, data, family)]


def task_latency_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = task_data(run, family)
    if data.empty:
        return []
    axes = group_axes(run, family)
    blocks: list[Block] = [Heading("Task latency", size=12, keep_with_next=1.2)]
    for group, rows in groups(data, axes):
        med = throughput_pivot(rows, "latency_median")
        mean = throughput_pivot(rows, "latency_mean")
        ps = list(med.columns)
        table_rows = []
        for variant in med.index:
            table_rows.append([variant] + [
                f"{fmt_us(med.loc[variant, p])} ({fmt_us(mean.loc[variant, p])})"
                if math.isfinite(med.loc[variant, p]) else "-" for p in ps])
        where = f", {group_label(group)}" if group else ""
        blocks.append(Table(["variant"] + [f"p={_p(p)}" for p in ps], table_rows,
                            right=[False] + [True] * len(ps),
                            caption=f"Task latency per variant and p{where}: median (mean) [us]",
                            notes=["task_latency: one task from its release (its fiber's "
                                   "previous task done) to its last call's return, waits for "
                                   "a VP included; user-side runs, repetitions pooled"]))
    blocks += [Text(line, size=9.5, indent=0.15) for line in little_lines(data)]
    return blocks


def mechanics_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = mechanics_data(run, family)
    if data.empty:
        return []
    axes = group_axes(run, family)
    swept = swept_axes(data, axes)
    header = ["variant"] + swept + ["p", "runs", "completions = tasks", "duplicates",
                                    "max running / vps", "ran_while_blocked",
                                    "ran_while_kernel_blocked", "stale_upcalls",
                                    "eagain_fraction"]
    rows = []
    for _, r in data.iterrows():
        v = r["variant"]
        rows.append([v] + [str(plain_param(r[a])) if is_set(r[a]) else "-" for a in swept]
                    + [_p(r[P]), str(r["runs"]), f"{r['completions_ok']}/{r['runs']}",
                       fmt_count(r["duplicates"]),
                       f"{fmt_count(r['max_running'])} / {fmt_count(r['vps'])}"
                       if math.isfinite(r["max_running"]) else "- (no VPs)",
                       "-" if v == PTHREADS else fmt_count(r["ran_while_blocked"]),
                       fmt_count(r["ran_while_kernel_blocked"]) if v == UPCALL else "-",
                       fmt_count(r["stale_upcalls"]) if v == UPCALL else "-",
                       fmt_value(r["eagain_fraction"])])
    right = [False] * (1 + len(swept)) + [True] * 9
    notes = ["runs, completions = tasks, duplicates, max running: every ok run (with probes "
             "and without); the other columns: medians over the user-side runs",
             "ran_while_blocked: dispatches on a VP while another of its fibers was inside "
             "its call (uring: waiting for its CQE); ran_while_kernel_blocked (upcall): the "
             "same, when the kernel's block_seq showed that activation blocked; "
             "stale_upcalls: ring records whose call had returned when read; eagain_fraction "
             "(syncfirst): calls refused by RWF_NOWAIT"]
    return [Heading("Mechanics: did the runtime run as built?", size=12, keep_with_next=1.2)] \
        + [b for line in mechanics_lines(data, run, family)
           for b in (Text(line, size=9.5, indent=0.15), Space(0.04))] \
        + [Space(0.08), Table(header, rows, right=right, caption="The runtime's own counts per "
                              "variant and point", notes=notes, max_rows=TASK_ROWS_PER_PAGE)]


def section_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """Everything the section adds after the generic tables, in order."""
    return (findings_blocks(run, family) + table_iv_blocks(run, family)
            + throughput_blocks(run, family) + handoff_blocks(run, family)
            + task_latency_blocks(run, family) + mechanics_blocks(run, family))


# -- figures ---------------------------------------------------------------------------------

def variant_colors() -> dict[str, Any]:
    """One colour per task variant, the same in every figure."""
    return dict(zip(TASK_VARIANTS, plots.palette(len(TASK_VARIANTS))))


MARKERS = dict(zip(TASK_VARIANTS, "osD^v<>"))


def table_iv_plot(axes, data: pd.DataFrame) -> None:
    """One panel per operation: the paper's figure and today's median (95%
    CI whiskers) per column, log y in us."""
    for ax, op in zip(axes, T4_OPS):
        part = data[data["op"] == op].reset_index(drop=True)
        if part.empty:
            ax.set_axis_off()
            continue
        x = np.arange(len(part))
        width = 0.38
        paper = part["paper_us"].astype(float).to_numpy()
        ours = part["ours_us"].astype(float).to_numpy()
        low = part["ours_ci_low_us"].astype(float).to_numpy()
        high = part["ours_ci_high_us"].astype(float).to_numpy()
        ax.bar(x - width / 2, paper, width, color="0.72", edgecolor="0.4", linewidth=0.6,
               label="1992, CVAX Firefly (quoted)")
        shown = np.isfinite(ours)
        ax.bar(x[shown] + width / 2, ours[shown], width, color="#6baed6", edgecolor="#2171b5",
               linewidth=0.6, label="today: median, 95% CI")
        ax.errorbar(x[shown] + width / 2, ours[shown],
                    yerr=[np.maximum(ours[shown] - low[shown], 0),
                          np.maximum(high[shown] - ours[shown], 0)],
                    fmt="none", ecolor="black", elinewidth=1.0, capsize=3)
        ax.set_yscale("log")
        for xi, v in zip(x, paper):
            ax.annotate(f"{v:g}", (xi - width / 2, v), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)
        for xi, v, top, ok in zip(x, ours, high, shown):
            at = (max(v, top) if np.isfinite(top) else v) if ok else paper.min()
            ax.annotate(fmt_value(v) if ok else "not\nmeasured", (xi + width / 2, at),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7)
        values = np.concatenate([paper, ours[shown], low[shown & np.isfinite(low)]])
        values = values[values > 0]
        ax.set_ylim(values.min() / 3, values.max() * 6)
        ax.set_xticks(x)
        ax.set_xticklabels([f"{c.replace(' on ', ' on' + chr(10))}\n({v})"
                            for c, v in zip(part["column"], part["variant"])], fontsize=7)
        ax.set_ylabel("us per operation (log scale)")
        ax.set_title(OP_NAMES.get(op, op), parse_math=False)
        ax.grid(True, which="major", axis="y", color="0.88", linewidth=0.6)
        ax.set_axisbelow(True)
        plots.plain_log_ticks(ax, "y")
    axes[0].legend(loc="upper left", fontsize=8, frameon=False)


def table_iv_figure(report: Report, family: str = FAMILY) -> None:
    data = table_iv_data(report.run, family)
    if data.empty:
        return
    with report.figure(f"{family}: Table IV, 1992 and today", ncols=2,
                       caption="Grey: the paper's Table IV (Anderson et al. 1992, CVAX Firefly; "
                               "quoted). Blue: this run's median per operation (user-side "
                               "runs), whiskers the 95% CI of the median. Log y: the values "
                               "span several decades.") as (fig, axes):
        table_iv_plot(axes, data)


def _symlog_p(ax, ps) -> None:
    ps = sorted({float(p) for p in ps})
    positive = [p for p in ps if p > 0]
    if ps and ps[0] == 0 and positive:
        ax.set_xscale("symlog", linthresh=positive[0], linscale=0.6)
        scale = " (symlog scale)"
    elif positive and positive[-1] / positive[0] > 10:
        ax.set_xscale("log")
        scale = " (log scale)"
    else:
        scale = ""
    ax.set_xticks(ps)
    ax.set_xticklabels([_p(p) for p in ps])
    ax.minorticks_off()
    ax.set_xlabel("p: probability that a step's call blocks" + scale)


def throughput_plot(ax, rows: pd.DataFrame, colors: dict | None = None,
                    title: str | None = None) -> None:
    """Median steps/s against p, one line per variant, whiskers the lowest
    and highest run."""
    colors = colors or variant_colors()
    values = []
    for variant, part in rows.groupby("variant", sort=False):
        part = part.sort_values(P)
        y = part["throughput"].astype(float).to_numpy()
        low = np.where(np.isfinite(part["throughput_min"].astype(float)),
                       part["throughput_min"].astype(float), y)
        high = np.where(np.isfinite(part["throughput_max"].astype(float)),
                        part["throughput_max"].astype(float), y)
        ax.errorbar(part[P].astype(float), y, yerr=[np.maximum(y - low, 0),
                                                    np.maximum(high - y, 0)],
                    color=colors.get(variant), marker=MARKERS.get(variant, "o"), markersize=4,
                    linewidth=1.3, capsize=3, elinewidth=0.9, label=variant)
        values += list(low) + list(high)
    _symlog_p(ax, rows[P])
    finite = [v for v in values if np.isfinite(v) and v > 0]
    log = plots.spans_decades(finite)
    if log:
        ax.set_yscale("log")
        plots.plain_log_ticks(ax, "y")
    else:
        ax.set_ylim(0, max(finite) * 1.08 if finite else 1)
        from matplotlib.ticker import FuncFormatter
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylabel(plots.axis_label("steps/s, median over the runs", "", log))
    ax.grid(True, which="major", color="0.88", linewidth=0.6)
    if title:
        ax.set_title(title, parse_math=False)


def vp_idle_plot(ax, rows: pd.DataFrame, colors: dict | None = None,
                 title: str | None = None) -> None:
    """The VP idle fraction (median over the runs) against p, one line per
    variant that has VPs."""
    colors = colors or variant_colors()
    for variant, part in rows.groupby("variant", sort=False):
        part = part.sort_values(P)
        if not np.isfinite(part["vp_idle_fraction"].astype(float)).any():
            continue
        ax.plot(part[P].astype(float), part["vp_idle_fraction"].astype(float),
                color=colors.get(variant), marker=MARKERS.get(variant, "o"), markersize=4,
                linewidth=1.3, label=variant)
    _symlog_p(ax, rows[P])
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("VP idle fraction, median over the runs")
    ax.grid(True, which="major", color="0.88", linewidth=0.6)
    if title:
        ax.set_title(title, parse_math=False)


def throughput_figures(report: Report, family: str = FAMILY) -> None:
    run = report.run
    data = task_data(run, family)
    if data.empty:
        return
    parts = groups(data, group_axes(run, family))
    colors = variant_colors()
    per_page = 2
    for start in range(0, len(parts), per_page):
        chunk = parts[start:start + per_page]
        more = f" ({start // per_page + 1}/{-(-len(parts) // per_page)})" \
            if len(parts) > per_page else ""
        with report.figure(f"{family}: throughput against the blocking probability p{more}",
                           nrows=len(chunk), ncols=2,
                           caption="Left: steps per second over each run's measured window "
                                   "(the workers' throughput_steps_per_s), median over the "
                                   "user-side runs; whiskers: the lowest and highest run. "
                                   "Right: the share of VP time no activation ran fiber code "
                                   "(pthreads has no VPs). One row per combination of the "
                                   "other swept parameters; x on a symlog scale (linear below "
                                   "the smallest p > 0) so that p = 0 shows.") as (fig, axes):
            for i, (group, rows) in enumerate(chunk):
                label = group_label(group)
                throughput_plot(axes[2 * i], rows, colors,
                                title=f"throughput, {label}" if label else "throughput")
                vp_idle_plot(axes[2 * i + 1], rows, colors,
                             title=f"VP idle, {label}" if label else "VP idle")
            # the right panel has no pthreads line: the left one's legend serves both
            handles, labels = axes[0].get_legend_handles_labels()
            axes[1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                           fontsize=8, frameon=False, borderaxespad=0.0)


def handoff_curves(run: Run, rows: pd.DataFrame, family: str = FAMILY,
                   colors: dict | None = None) -> list[tuple[str, np.ndarray, dict]]:
    """plots.cdf_curves input: the user-side handoff samples [us] of each
    row (one per variant at one p)."""
    colors = colors or variant_colors()
    samples = user_samples(run)
    samples = samples[(samples["family"] == family) & (samples["metric"] == HANDOFF)]
    curves = []
    for _, r in rows.iterrows():
        values = samples.loc[(samples["variant"].astype(str) == r["variant"])
                             & (samples["point"].astype(str) == r["point"]), "value"]
        curves.append((r["variant"], values.to_numpy(dtype=float) / 1000,
                       {"color": colors.get(r["variant"])}))
    return curves


def handoff_cdf_plot(ax, run: Run, rows: pd.DataFrame, family: str = FAMILY,
                     title: str | None = None, ringbuf_ns: float | None = None) -> None:
    """The CDF of each row's handoffs [us], log x; ``ringbuf_ns``: the
    upcall family's bpf_ringbuf block upcall median, drawn as a line."""
    plots.cdf_curves(ax, handoff_curves(run, rows, family), xlabel="handoff [us]", log=True,
                     title=title, legend=False)
    if ringbuf_ns is not None and math.isfinite(ringbuf_ns):
        ax.axvline(ringbuf_ns / 1000, color="0.35", linestyle=":", linewidth=1.1, zorder=0,
                   label=f"bpf_ringbuf block upcall\n(upcall family), {fmt_us(ringbuf_ns)} us")
    plots.plain_log_ticks(ax, "x")
    plots.legend_right(ax, fontsize=7)


def handoff_figures(report: Report, family: str = FAMILY) -> None:
    run = report.run
    data = handoff_data(run, family)
    if data.empty:
        return
    ring = ringbuf_reference(run)
    ringbuf_ns = float(ring["median"].iloc[0]) if len(ring) else None
    for group, rows in groups(data, group_axes(run, family)):
        ps = sorted(set(rows[P].astype(float)))
        ncols = 1 if len(ps) == 1 else 2
        nrows = -(-len(ps) // ncols)
        where = f", {group_label(group)}" if group else ""
        with report.figure(f"{family}: handoff latency{where}", nrows=nrows, ncols=ncols,
                           caption="Empirical CDF of every handoff (the user-side runs, "
                                   "repetitions pooled), log x, one panel per p. upcall: from "
                                   "the kernel's block; futex_hint, syncfirst: from the "
                                   "wrapper's stamp before its wake; monitor: from the call's "
                                   "start. The x axis ends at the slowest curve's p99.9; each "
                                   "legend entry gives n and the largest sample. Dotted, where "
                                   "the run has it: the upcall family's bpf_ringbuf block "
                                   "upcall on one CPU (median), the wake-up the upcall "
                                   "variant's spare waits for.") as (fig, axes):
            for ax, p in zip(axes, ps):
                handoff_cdf_plot(ax, run, rows[np.isclose(rows[P].astype(float), p)], family,
                                 title=f"p = {_p(p)}", ringbuf_ns=ringbuf_ns)


__all__ = ["table_iv_data", "table_iv_lines", "task_data", "handoff_data", "handoff_pairs",
           "ringbuf_reference", "mechanics_data", "mechanics_lines", "findings_lines",
           "throughput_lines", "handoff_lines", "little_lines", "groups", "group_axes",
           "nearest_p", "throughput_pivot", "table_iv_plot", "throughput_plot",
           "handoff_curves", "handoff_cdf_plot", "handoff_shares", "handoff_share_lines",
           "vp_idle_plot",
           "variant_colors", "NO_TABLE_IV_LINE",
           "NO_TASKS_LINE", "NO_RINGBUF_LINE"]
