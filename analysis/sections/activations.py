"""Report section of the activations family: the layout of what
analysis.families.activations computes, in this order after the generic
tables:

- "what this run shows" (findings_lines());
- Table IV side by side with the paper's, and a log-scale grouped bar
  chart of it;
- the throughput table against p, and its figures: median steps/s against
  p (min..max of the runs as error bars), one line per variant, one panel
  per combination of the other swept axes (vps, spares, block_us, ...),
  beside the VP idle fraction;
- handoff latency: a table, the share of handoffs per band, and the CDF
  per variant, one panel per p, log x in us; task latency medians per
  variant and p with Little's law;
- the mechanics table and what it says.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from analysis import plots
from analysis._format import (
    NOISY_MARK,
    fmt_count,
    fmt_fraction,
    fmt_rate,
    fmt_ratio,
    fmt_ratio_interval,
    fmt_us,
    fmt_us_interval,
    fmt_value,
)
from analysis._kernel import kernel_view_status
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._results import Run
from analysis._views import is_set, plain_param, swept_axes, user_samples
from analysis.families.activations import (
    FAMILY,
    HANDOFF,
    KERNEL,
    NO_TABLE_IV_LINE,
    NO_TASKS_LINE,
    OP_NAMES,
    PAPER_CITATION,
    PTHREADS,
    T4_OPS,
    T4_VARIANTS,
    TASK_VARIANTS,
    UPCALL,
    P,
    axis_values_text,
    findings_lines,
    group_axes,
    groups,
    handoff_data,
    handoff_share_lines,
    little_lines,
    mechanics_data,
    mechanics_lines,
    p_text,
    ringbuf_reference,
    table_iv_data,
    task_data,
    throughput_pivot,
)
from analysis.sections import _activations_cs, _activations_k42, _activations_mp, generic
from analysis.sections.registry import register

TASK_ROWS_PER_PAGE = 30


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
    for part in (_activations_cs, _activations_mp, _activations_k42):
        part.render(report, family)


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
                     f"{fmt_ratio_interval(r['ours_ratio_low'], r['ours_ratio_high'])}",
                     fmt_ratio(r["speedup"]),
                     f"{fmt_ratio_interval(r['speedup_low'], r['speedup_high'])}"
                     if measured else "-",
                     NOISY_MARK if r["noisy"] else ""])
        noisy.append(bool(r["noisy"]))
    header = ["operation", "column (our variant)", "1992 [us]", "today [us]", "95% CI [us]",
              "reps", "1992 / fibers", "today / fibers", "interval", "1992 / today",
              "interval", ""]
    notes = [f"1992: {PAPER_CITATION}; quoted, never measured here",
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
        row += [p_text(r[P]), fmt_count(r["throughput_reps"]), fmt_rate(r["throughput"]),
                f"{fmt_rate(r['throughput_min'])}..{fmt_rate(r['throughput_max'])}",
                fmt_ratio(r["vs_none"]), fmt_ratio(r["vs_pthreads"]),
                fmt_fraction(r["vp_idle_fraction"]), fmt_value(r["handoffs_per_task"])]
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
            + [p_text(r[P]), str(r["n"]), str(r["reps"]), fmt_us(r["median"]), fmt_us(r["p90"]),
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
    blocks: list[Block] = [heading, Table(header, rows, right=right,
                                          highlight=data["noisy"].tolist(),
                                          caption="Handoff latency per variant and point",
                                          notes=notes, max_rows=TASK_ROWS_PER_PAGE)]
    return blocks + [Text(line, size=9.5, indent=0.15)
                     for line in handoff_share_lines(run, data, family)]


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
        where = f", {axis_values_text(group)}" if group else ""
        blocks.append(Table(["variant"] + [f"p={p_text(p)}" for p in ps], table_rows,
                            right=[False] + [True] * len(ps),
                            caption=f"Task latency per variant and p{where}: median (mean) [us]",
                            notes=["task_latency: one task from its release (its fiber's "
                                   "previous task done) to its last call's return, waits for "
                                   "a VP included; user-side runs, repetitions pooled"]))
    blocks += [Text(line, size=9.5, indent=0.15) for line in little_lines(data, axes)]
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
                    + [p_text(r[P]), str(r["runs"]), f"{r['completions_ok']}/{r['runs']}",
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
    blocks: list[Block] = [Heading("Mechanics: did the runtime run as built?", size=12,
                                   keep_with_next=1.2)]
    for line in mechanics_lines(data, run, family):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    return blocks + [Space(0.08), Table(header, rows, right=right, caption="The runtime's own counts per "
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


def table_iv_plot(axes: Sequence[Any] | np.ndarray, data: pd.DataFrame) -> None:
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


def _symlog_p(ax: Any, ps: Iterable[Any]) -> None:
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
    ax.set_xticklabels([p_text(p) for p in ps])
    ax.minorticks_off()
    ax.set_xlabel("p: probability that a step's call blocks" + scale)


def throughput_plot(ax: Any, rows: pd.DataFrame, colors: dict | None = None,
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


def vp_idle_plot(ax: Any, rows: pd.DataFrame, colors: dict | None = None,
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
                label = axis_values_text(group)
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


def handoff_cdf_plot(ax: Any, run: Run, rows: pd.DataFrame, family: str = FAMILY,
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
        where = f", {axis_values_text(group)}" if group else ""
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
                                 title=f"p = {p_text(p)}", ringbuf_ns=ringbuf_ns)


__all__ = ["render", "section_blocks", "table_iv_plot", "throughput_plot", "vp_idle_plot",
           "handoff_curves", "handoff_cdf_plot", "variant_colors"]
