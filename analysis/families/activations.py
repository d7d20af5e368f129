"""The activations family's analysis (seeds 000, 002, 004: an M:N fiber
runtime whose virtual processors survive blocking calls, and the 1992
paper's Table IV), every number computed from the stored run except the
paper's, which are quoted here (PAPER_TABLE_IV_US, with PAPER_CITATION):
the data the report section (analysis.sections.activations) lays out and
the notebook (notebooks/activations.ipynb) reads.

- table_iv_data(): Null Fork and Signal-Wait for fibers (FastThreads on
  Topaz threads), fibers on activations (FastThreads on scheduler
  activations), pthreads (Topaz threads) and processes (Ultrix processes):
  the 1992 figure, today's median with its 95% CI, each column over the
  first one (1992 and today) and today's speed-up over 1992 per cell;
  table_iv_from_run() / format_table_iv(): the same medians as plain rows
  and text;
- task_data(): throughput (the workers' throughput_steps_per_s counter,
  median over the runs) against the blocking probability p per variant
  and point, its ratio to ``none`` and ``pthreads`` at the same point, the
  VP idle fraction, handoffs per task, the kernel view's context switches,
  system calls and wake-ups per task (the runs with probes), and the task
  latency with Little's law (mean latency = concurrency / throughput) as a
  check on the counters;
- handoff_data(): handoff latency (series ``handoff``: futex_hint,
  syncfirst, monitor, upcall) per variant and point; handoff_pairs():
  upcall's against futex_hint's; ringbuf_reference(): the upcall family's
  bpf_ringbuf block upcall when the run has it (that wake-up is what the
  upcall handoff pays);
- mechanics_data(): completions = tasks, no duplicate completion, never
  more than vps activations running fibers, dispatches while another fiber
  of the VP was in its call (``ran_while_blocked``: the point of handoff)
  and, for upcall, while the kernel had it blocked
  (``ran_while_kernel_blocked``), stale upcalls, syncfirst's EAGAIN
  fraction;
- findings_lines(): "what this run shows": the best variant by throughput
  at p = 0.1 (or the p nearest to it) and every variant against ``none``
  and ``pthreads`` there, upcall's handoff against futex_hint's, and
  Table IV's headline against 1992.

A run without Table IV, without p = 0.1 or without some variant says so in
one line where the missing part would be.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from analysis._counters import counter_summary, kernel_per_op, run_table, with_params
from analysis._format import (
    fmt_count,
    fmt_fraction,
    fmt_rate,
    fmt_ratio,
    fmt_ratio_interval,
    fmt_times,
    fmt_us,
    fmt_us_interval,
    fmt_value,
)
from analysis._results import Run, load_run
from analysis._views import (
    family_summary,
    headline,
    is_set,
    median_ratio,
    per_run,
    plain_param,
    probes_behind,
    split_by_axes,
    swept_axes,
    user_samples,
)
from analysis.families.upcall import FAMILY as UPCALL_FAMILY
from lab.families import activations as fam

FAMILY = "activations"
TASK_VARIANTS = tuple(fam.VARIANTS)       # the task variants, in enum activations_variant order
HANDOFF_VARIANTS = tuple(fam.HANDOFF_VARIANTS)
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
RINGBUF = "bpf_ringbuf"
LITTLE_SLACK = 0.10             # mean latency within 10% of concurrency / throughput
NO_TABLE_IV_LINE = ("This run has no Table IV measurement: add [[activations]] variants = "
                    "[\"t4_fibers\", \"t4_activations\", \"t4_pthreads\", \"t4_processes\"] "
                    "op = [\"null_fork\", \"signal_wait\"] to the suite.")
NO_TASKS_LINE = ("This run has no task-workload variant (none, futex_hint, syncfirst, monitor, "
                 "upcall, uring, pthreads): no throughput, handoff or task latency to show.")
NO_RINGBUF_LINE = ("This run has no upcall-family bpf_ringbuf block upcall on one CPU to set "
                   "beside the upcall handoff: add [upcall] variants = [\"bpf_ringbuf\"] "
                   "event = \"block\" placement = \"same_cpu\" to the suite.")


# -- helpers ------------------------------------------------------------------------------

def p_text(p: float) -> str:
    """A blocking probability as the suite wrote it: 0.1, 0."""
    return f"{plain_param(p)}"


def _whose(name: str) -> str:
    """pthreads', upcall's."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def point_label(row: pd.Series, data: pd.DataFrame, axes: Iterable[str] = ()) -> str:
    """``p=0.1``, or ``vps=1 p=0.1`` where data sweeps other ``axes`` too
    (group_axes())."""
    parts = [f"{a}={plain_param(row[a])}" for a in swept_axes(data, axes) if is_set(row.get(a))]
    return " ".join(parts + [f"p={p_text(row[P])}"])


def group_axes(run: Run, family: str = FAMILY) -> list[str]:
    """The family's axis parameters besides p and op: what else names a
    point of the task workload (vps, spares, concurrency, block_us, ...)."""
    params = run.families.get(family, {}).get("params", {})
    return [name for name, d in params.items() if d.get("axis", True) and name not in (P, "op")]


def groups(data: pd.DataFrame, axes: Iterable[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """data split into one frame per combination of the swept ``axes``
    (besides p); a variant that does not read an axis (none has no spares)
    is in every group."""
    return split_by_axes(data, swept_axes(data, axes))


def axis_values_text(group: dict[str, Any]) -> str:
    """``vps=2 spares=1``: a groups() combination."""
    return " ".join(f"{k}={v}" for k, v in group.items())


def nearest_p(ps: Iterable[Any], target: float = TARGET_P) -> float | None:
    """The p closest to ``target`` (the lower one on a tie), None if none."""
    ps = sorted({float(p) for p in ps if is_set(p)})
    if not ps:
        return None
    return min(ps, key=lambda p: (abs(p - target), p))


def _at_same_point(row: pd.Series, ref: pd.Series, axes: Iterable[str]) -> bool:
    """Whether ``ref`` is at row's point: the same p, and every axis both
    read has the same value."""
    if not math.isclose(float(row[P]), float(ref[P])):
        return False
    for a in axes:
        if a in row.index and a in ref.index and is_set(row[a]) and is_set(ref[a]) \
                and plain_param(row[a]) != plain_param(ref[a]):
            return False
    return True


def _variant_order(frame: pd.DataFrame, axes: Iterable[str]) -> pd.DataFrame:
    order = {v: i for i, v in enumerate(TASK_VARIANTS)}
    keys = pd.DataFrame({"v": frame["variant"].map(order).fillna(99)}, index=frame.index)
    for a in axes:
        if a in frame.columns:
            keys[a] = pd.to_numeric(frame[a], errors="coerce").fillna(-1) \
                if frame[a].dtype != object else frame[a].astype(str)
    keys["p"] = frame[P].astype(float)
    return frame.loc[keys.sort_values(list(keys.columns), kind="stable").index] \
        .reset_index(drop=True)


def _counter_medians(counters: pd.DataFrame, name: str) -> pd.Series:
    return counters[counters["counter"] == name].set_index(["variant", "point"])["median"]


# -- data: Table IV -----------------------------------------------------------------------

# Anderson, Bershad, Lazowska, Levy: "Scheduler Activations: Effective
# Kernel Support for the User-Level Management of Parallelism", ACM TOCS
# 10(1), 1992, Table IV: thread operation latencies (usec), CVAX Firefly.
# The paper's figures, quoted: they never enter the measured data.
PAPER_CITATION = ("T. E. Anderson, B. N. Bershad, E. D. Lazowska, H. M. Levy, \"Scheduler "
                  "Activations: Effective Kernel Support for the User-Level Management of "
                  "Parallelism\", ACM TOCS 10(1):53-79, 1992, Table IV (usec, CVAX Firefly)")
PAPER_COLUMNS = ("FastThreads on Topaz threads", "FastThreads on Scheduler Activations",
                 "Topaz threads", "Ultrix processes")
PAPER_TABLE_IV_US = {
    "null_fork": {"FastThreads on Topaz threads": 34, "FastThreads on Scheduler Activations": 37,
                  "Topaz threads": 948, "Ultrix processes": 11300},
    "signal_wait": {"FastThreads on Topaz threads": 37,
                    "FastThreads on Scheduler Activations": 42,
                    "Topaz threads": 441, "Ultrix processes": 1840},
}
# our variant -> the paper's column it stands beside
TABLE_IV_COLUMNS = {"t4_fibers": "FastThreads on Topaz threads",
                    "t4_activations": "FastThreads on Scheduler Activations",
                    "t4_pthreads": "Topaz threads", "t4_processes": "Ultrix processes"}
T4_VARIANTS = tuple(TABLE_IV_COLUMNS)


def table_iv(measured_ns: dict[tuple[str, str], float]) -> list[dict[str, Any]]:
    """Table IV with today's numbers beside the paper's.

    measured_ns maps (variant, op) -> a median in ns per operation
    (table_iv_medians()); rows are (op, column) with the paper's usec,
    ours in usec, and each column's ratio to the first (user-level
    threads) column, in 1992 and here.  Missing measurements are None."""
    rows = []
    for op in T4_OPS:
        base_ours = measured_ns.get(("t4_fibers", op))
        base_paper = PAPER_TABLE_IV_US[op][PAPER_COLUMNS[0]]
        for variant, column in TABLE_IV_COLUMNS.items():
            ours = measured_ns.get((variant, op))
            paper = PAPER_TABLE_IV_US[op][column]
            rows.append({
                "op": op, "column": column, "variant": variant,
                "paper_us": paper, "ours_us": None if ours is None else ours / 1000.0,
                "paper_ratio": paper / base_paper,
                "ours_ratio": (None if ours is None or not base_ours else ours / base_ours),
            })
    return rows


def format_table_iv(rows: list[dict[str, Any]]) -> str:
    """The rows of table_iv() as a text table (the paper's beside ours)."""
    def num(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    lines = [f"{'operation':<12} {'column (ours)':<56} {'1992 us':>8} {'today us':>9} "
             f"{'1992 x':>7} {'today x':>8}"]
    for r in rows:
        lines.append(f"{r['op']:<12} {r['column'] + ' (' + r['variant'] + ')':<56} "
                     f"{r['paper_us']:>8} {num(r['ours_us'], '9.3f')} "
                     f"{r['paper_ratio']:>7.1f} {num(r['ours_ratio'], '8.1f')}")
    lines.append(f"1992: {PAPER_CITATION}; x: ratio to the first column of the same row group")
    return "\n".join(lines)


def table_iv_from_run(run: Run | str, family: str = FAMILY, seed: int = 0) -> list[dict[str, Any]]:
    """table_iv() of a run (a Run or a results folder): the medians of
    table_iv_data(), from the same runs as every other number of analysis
    (the ok runs; the unprobed twins where the suite ran both)."""
    if isinstance(run, str):
        run = load_run(run)
    return table_iv(table_iv_medians(run, family, seed))


def _table_iv_cells(run: Run, family: str, seed: int) -> dict[tuple[str, str], Any]:
    """(variant, op) -> the ns_per_op headline summary row of each Table IV
    cell the run measured."""
    head = headline(run, family, seed)
    head = head[head["variant"].astype(str).isin(T4_VARIANTS)
                & (head["metric"].astype(str) == NS_PER_OP)]
    if head.empty:
        return {}
    data = with_params(run, family, head.reset_index(drop=True))
    return {(str(r["variant"]), str(r["op"])): r for _, r in data.iterrows()}


def table_iv_medians(run: Run, family: str = FAMILY, seed: int = 0) -> dict[tuple[str, str], float]:
    """(variant, op) -> the median ns per operation over every sample of the
    user-side runs: table_iv()'s input."""
    return {k: float(r["median"]) for k, r in _table_iv_cells(run, family, seed).items()}


T4_COLUMNS = ["op", "column", "variant", "paper_us", "ours_us", "ours_ci_low_us",
              "ours_ci_high_us", "n", "reps", "noisy", "paper_ratio", "ours_ratio",
              "ours_ratio_low", "ours_ratio_high", "speedup", "speedup_low", "speedup_high"]


def table_iv_data(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """Table IV with today's numbers beside the paper's: the
    table_iv() rows (op, column, variant, paper_us, ours_us, paper_ratio,
    ours_ratio: each column over the first, fibers, one) from the headline
    medians of ns_per_op (the user-side runs), with ours_ci_low_us /
    ours_ci_high_us (95% CI of the median), n, reps, noisy, the ratio's
    interval (ours_ratio_low / _high: the CIs divided crosswise) and
    today's speed-up over 1992 (speedup = paper_us / ours_us, its interval
    from the CI).  NaN where a cell was not measured; empty when no Table
    IV variant ran."""
    cells = _table_iv_cells(run, family, seed)
    if not cells:
        return pd.DataFrame(columns=T4_COLUMNS)
    rows = table_iv({k: float(r["median"]) for k, r in cells.items()})
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


def _table_iv_row(data: pd.DataFrame, op: str, variant: str) -> pd.Series | None:
    hit = data[(data["op"] == op) & (data["variant"] == variant)]
    return None if hit.empty else hit.iloc[0]


def table_iv_lines(data: pd.DataFrame) -> list[str]:
    """Table IV's headline: fibers, pthreads and processes today against 1992."""
    if data.empty or not np.isfinite(data["ours_us"].astype(float)).any():
        return [NO_TABLE_IV_LINE]
    lines = []
    for op in T4_OPS:
        fibers = _table_iv_row(data, op, "t4_fibers")
        parts = []
        for variant in T4_VARIANTS:
            r = _table_iv_row(data, op, variant)
            if r is None or not math.isfinite(r["ours_us"]):
                parts.append(f"{TABLE_IV_COLUMNS[variant]} ({variant}) not measured")
                continue
            text = f"{variant} {fmt_value(r['ours_us'])} us"
            if variant != "t4_fibers" and math.isfinite(r["ours_ratio"]):
                text += (f" ({fmt_times(r['ours_ratio'])}x fibers; 1992: "
                         f"{fmt_times(r['paper_ratio'])}x)")
            text += f", {fmt_times(r['speedup'])}x faster than 1992's {r['paper_us']:g} us"
            parts.append(text)
        line = f"{OP_NAMES[op]} today: " + "; ".join(parts) + "."
        acts = _table_iv_row(data, op, "t4_activations")
        if fibers is not None and acts is not None and math.isfinite(acts["ours_ratio"]) \
                and math.isfinite(fibers["ours_us"]):
            lo, hi = acts["ours_ratio_low"], acts["ours_ratio_high"]
            verdict = ("slower than" if lo > 1 else "faster than" if hi < 1
                       else "not distinguishable from")
            line += (f" Fibers on activations against plain fibers: "
                     f"{fmt_ratio(acts['ours_ratio'])} (95% interval "
                     f"{fmt_ratio_interval(lo, hi)}), {verdict} them; the paper's {acts['paper_us']:g} vs "
                     f"{fibers['paper_us']:g} us ({fmt_ratio(acts['paper_ratio'])}); here "
                     "the fibers' fast path touches no activation state, so no difference is "
                     "built in.")
        lines.append(line)
    return lines


# -- data: the task workload --------------------------------------------------------------

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
        med = _counter_medians(counters, name)
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
            match = [r for _, r in refs.iterrows() if _at_same_point(row, r, axes)]
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


def best_throughput_at(rows: pd.DataFrame, p: float) -> pd.Series | None:
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
    per_task = _counter_medians(counter_summary(run, family, seed=seed), "handoffs_per_task")
    data["handoffs_per_task"] = [float(per_task.get(k, math.nan))
                                 for k in zip(data["variant"], data["point"])]
    return _variant_order(data, axes)


def handoff_pairs(data: pd.DataFrame, axes: Iterable[str]) -> list[dict[str, Any]]:
    """upcall's handoff against futex_hint's at every point where both
    handed off: {group, p, upcall, futex_hint (rows), ratio, low, high}."""
    out = []
    ups = data[data["variant"] == UPCALL]
    hints = data[data["variant"] == FUTEX_HINT]
    for _, u in ups.iterrows():
        match = [h for _, h in hints.iterrows() if _at_same_point(u, h, axes)]
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
                   edges: tuple[float, float] = SHARE_EDGES_NS) -> pd.DataFrame:
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
        where = f", {axis_values_text(group)}" if group else ""
        lines.append(f"Where the handoffs fall at p = {p_text(p)}{where} (below {lo} us / {lo}.."
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


# -- data: the mechanics ------------------------------------------------------------------

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

        def col(name: str, frame: pd.DataFrame = part) -> pd.Series:
            return frame[name].astype(float) if name in frame.columns \
                else pd.Series(math.nan, index=frame.index)

        def median(name: str) -> float:
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
    """What the mechanics counters say, in sentences (a point named by the
    run's group_axes(); by p alone without ``run``)."""
    if data.empty:
        return []
    axes = group_axes(run, family) if run is not None else []
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
                f"{r['variant']} {point_label(r, data, axes)}" for _, r in missing.iterrows()))
    if parts:
        lines.append("; ".join(parts) + ".")
    ups = data[(data["variant"] == UPCALL) & (data[P].astype(float) > 0)]
    if len(ups):
        share = ups["ran_while_kernel_blocked"].astype(float) / \
            ups["ran_while_blocked"].astype(float)
        stale = ups["stale_upcalls"].astype(float)
        lines.append("upcall: ran_while_kernel_blocked / ran_while_blocked "
                     + ", ".join(f"{fmt_fraction(s)} at {point_label(r, data, axes)}"
                                 for s, (_, r) in zip(share, ups.iterrows()))
                     + " (the kernel's own block_seq showed the other activation blocked "
                       "in its call); stale upcalls (a record whose call had already "
                       "returned), median per run: " + ", ".join(
                           f"{fmt_count(s)} at {point_label(r, data, axes)}"
                           for s, (_, r) in zip(stale, ups.iterrows()))
                     + ".")
    sf = data[(data["variant"] == "syncfirst") & np.isfinite(data["eagain_fraction"].astype(float))]
    if len(sf):
        lines.append("syncfirst: EAGAIN on " + ", ".join(
            f"{fmt_value(r['eagain_fraction'])} of the calls at {point_label(r, data, axes)}"
            + (f" (drawn to block: {fmt_value(r['blocking_fraction'])})"
               if math.isfinite(r["blocking_fraction"]) and r[P] > 0 else "")
            for _, r in sf.iterrows())
            + ": preadv2(RWF_NOWAIT) refused the calls that would block, and only those went "
              "to a handoff.")
    return lines


# -- "what this run shows" ---------------------------------------------------------------

def _probe_note(run: Run, family: str) -> str:
    behind = probes_behind(run, family)
    if behind == "paired":
        return ("User-side numbers (throughput, latencies, Table IV) come from the runs without "
                "probes; switches, system calls and wake-ups per task from their twins with "
                "probes attached.")
    if behind in ("all", "some"):
        which = "every run" if behind == "all" else "some of the runs"
        return (f"Probes were attached to {which} these numbers come from: the probes run at "
                "every context switch, system call and wake-up, so variants that switch more "
                "pay more (probe_overhead = true in [suite] gives undisturbed numbers).")
    return "The runs had no probes attached (no kernel view)."


def throughput_lines(data: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """The best variant by throughput at p = 0.1 (or the nearest p) and every
    variant against none and pthreads there, per group."""
    if data.empty:
        return [NO_TASKS_LINE]
    lines = []
    for group, rows in groups(data, axes):
        where = f", {axis_values_text(group)}" if group else ""
        p = nearest_p(rows[P])
        best = best_throughput_at(rows, p) if p is not None else None
        if p is None or best is None:
            lines.append(f"No throughput counter in this run{where}.")
            continue
        note = "" if math.isclose(p, TARGET_P) else \
            f" (this run has no p = {TARGET_P:g} point; {p_text(p)} is the nearest)"
        here = rows[np.isclose(rows[P].astype(float), p)]
        reps = int(best["throughput_reps"]) if math.isfinite(best["throughput_reps"]) else 0
        text = (f"At p = {p_text(p)}{where}{note}, the most steps per second: {best['variant']}, "
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
                text += (f" (interval {fmt_ratio_interval(low, high)}): "
                         + ("the lead is clear" if high < 1 else
                            "within the spread of the runs, the two are not told apart"))
        lines.append(text + ".")
    return lines


def handoff_lines(run: Run, handoffs: pd.DataFrame, axes: Sequence[str],
                  seed: int = 0) -> list[str]:
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
            by_group.setdefault(axis_values_text(pair["group"]), []).append(pair)
        for where, mine in by_group.items():
            p = nearest_p([x["p"] for x in mine])
            assert p is not None            # every group holds a pair, so a p
            pair = next(x for x in mine if math.isclose(x["p"], p))
            chosen = chosen or pair
            u, h = pair["upcall"], pair["futex_hint"]
            verdict = ("slower than" if pair["low"] > 1 else "faster than" if pair["high"] < 1
                       else "not distinguishable from")
            text = (f"Handoff at p = {p_text(p)}" + (f", {where}" if where else "")
                    + f": upcall {fmt_us(u['median'])} us (median, 95% CI "
                    f"{fmt_us_interval(u['ci_low'], u['ci_high'])}) against futex_hint "
                    f"{fmt_us(h['median'])} us ({fmt_us_interval(h['ci_low'], h['ci_high'])}): "
                    f"{fmt_ratio(pair['ratio'])} (95% interval {fmt_ratio(pair['low'])}.."
                    f"{fmt_ratio(pair['high'])}), {fmt_us(u['median'] - h['median'])} us more; "
                    f"upcall's handoff is {verdict} futex_hint's")
            others = [x for x in mine if x is not pair]
            if others:
                text += (" (at the other p: " + ", ".join(
                    f"{fmt_ratio(x['ratio'])} at p={p_text(x['p'])}" for x in others) + ")")
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
            text += (f"; upcall's handoff ({fmt_us(u['median'])} us at p = {p_text(chosen['p'])}) is "
                     f"{fmt_ratio(u['median'] / ref['median'])} that: beyond the ring's "
                     "wake-up it pays the spare's take of the VP and the wake-up of the next "
                     "ring spare")
        lines.append(text + ".")
    return lines


def little_lines(data: pd.DataFrame, axes: Iterable[str] = ()) -> list[str]:
    """Little's law against the counters: mean task latency against
    concurrency / throughput (a point named by ``axes``, group_axes())."""
    ok = data[np.isfinite(data["latency_mean"].astype(float))
              & np.isfinite(data["little_ns"].astype(float))] if len(data) else data
    if ok.empty:
        return []
    dev = ok["latency_mean"].astype(float) / ok["little_ns"].astype(float) - 1
    worst = ok.loc[dev.abs().idxmax()]
    within = int((dev.abs() <= LITTLE_SLACK).sum())
    text = (f"Little's law (mean task latency = concurrency / tasks per second): the mean "
            f"latency is within {LITTLE_SLACK:.0%} of it at {within} of {len(ok)} points "
            f"(largest gap {dev.abs().max():.1%}, {worst['variant']} {point_label(worst, ok, axes)})"
            + (": the throughput counters and the latency samples agree." if within == len(ok)
               else ": where it is further, a short run's window edges (tasks in flight "
                    "when it opens and closes) can account for it; more tasks per run tell."))
    skew = ok[ok["latency_median"].astype(float) < 0.5 * ok["latency_mean"].astype(float)]
    if len(skew):
        text += (" The median is below half the mean at " + ", ".join(
            f"{r['variant']} {point_label(r, ok, axes)}" for _, r in skew.iterrows())
            + ": there most tasks run to completion back to back while a few wait long "
              "(the kernel's time slices, or a spare taking the VP), so a low median is not "
              "a high throughput.")
    return [text]


BLOCK_KINDS = ("timerfd", "fault", "uffd")


def fault_handoff_lines(handoffs: pd.DataFrame) -> list[str]:
    """upcall's handoff per block_kind (timerfd, fault, uffd), each at the
    p nearest 0.1 it was run at; nothing when the run has one kind only."""
    if handoffs.empty or "block_kind" not in handoffs.columns:
        return []
    ups = handoffs[handoffs["variant"] == UPCALL]
    kinds = [k for k in BLOCK_KINDS if (ups["block_kind"].astype(str) == k).any()]
    if len(kinds) < 2:
        return []
    medians, parts = {}, []
    for kind in kinds:
        rows = ups[ups["block_kind"].astype(str) == kind]
        p = nearest_p(rows[P])
        assert p is not None            # the kind has rows, so a p
        row = rows[np.isclose(rows[P].astype(float), float(p))].iloc[0]
        medians[kind] = float(row["median"])
        parts.append(f"{kind} {fmt_us(row['median'])} us (p = {p_text(p)}, 95% CI "
                     f"{fmt_us_interval(row['ci_low'], row['ci_high'])})")
    text = "upcall's handoff by block kind: " + ", ".join(parts)
    if "fault" in medians and "timerfd" in medians and medians["timerfd"] > 0:
        text += (f"; a major fault's handoff is {fmt_ratio(medians['fault'] / medians['timerfd'])}"
                 " the timerfd one's (both are the sched_switch block upcall)")
    return [text + "."]


def findings_lines(run: Run, family: str = FAMILY, seed: int = 0) -> list[str]:
    """"What this run shows", from the medians."""
    axes = group_axes(run, family)
    data = task_data(run, family, seed)
    lines = throughput_lines(data, axes)
    if not data.empty:
        handoffs = handoff_data(run, family, seed)
        lines += handoff_lines(run, handoffs, axes, seed)
        lines += fault_handoff_lines(handoffs)
    lines += table_iv_lines(table_iv_data(run, family, seed))
    lines.append(_probe_note(run, family))
    return lines


__all__ = ["table_iv", "table_iv_medians", "table_iv_from_run", "format_table_iv",
           "table_iv_data", "table_iv_lines", "task_data", "handoff_data", "handoff_pairs",
           "fault_handoff_lines", "BLOCK_KINDS",
           "ringbuf_reference", "mechanics_data", "mechanics_lines", "findings_lines",
           "throughput_lines", "handoff_lines", "little_lines", "groups", "group_axes",
           "axis_values_text", "point_label", "p_text", "nearest_p", "throughput_pivot",
           "handoff_shares", "handoff_share_lines", "PAPER_CITATION", "PAPER_COLUMNS",
           "PAPER_TABLE_IV_US", "TABLE_IV_COLUMNS", "NO_TABLE_IV_LINE", "NO_TASKS_LINE",
           "NO_RINGBUF_LINE"]
