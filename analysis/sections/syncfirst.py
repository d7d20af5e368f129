"""Report layout of the syncfirst family: analysis.families.syncfirst's
claims, went-async, page-cache and socket tables, and its figures: the
crossover (latency and throughput against the hit ratio, one figure per
group of the other swept axes), the reads that went asynchronous (with
context switches per read where the kernel view has them), and socket
receives against data readiness."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis._format import fmt_value
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._results import Run
from analysis._views import headline, plain_param
from analysis.families.syncfirst import (
    FAMILY,
    HIT,
    READY,
    WENT_ASYNC,
    blocked_fraction,
    claim_lines,
    crossover_axes,
    crossover_data,
    crossover_group_label,
    crossover_groups,
    is_file_read,
    resident_check,
    socket_data,
)
from analysis.sections import generic
from analysis.sections.registry import register


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    run = report.run
    generic.render(report, family, extra_blocks=findings_blocks(run, family), figures=False)
    crossover_figures(report, family)
    blocked_figure(report, family)
    socket_figure(report, family)


# -- text blocks ------------------------------------------------------------------------------

def _pivot_blocked(table: pd.DataFrame, value: str, fmt, axes: list[str] | None = None,
                   hits: list[float] | None = None) -> tuple[list[str], list[list[str]]]:
    if axes is None:
        axes = [a for a in crossover_axes(table) if a in table.columns]
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


def _fraction_cell(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}"


def blocked_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    table = blocked_fraction(run, family)
    files = table[is_file_read(table)] if len(table) else table
    if files.empty:
        return []
    files = files.copy()
    files[HIT] = files[HIT].astype(float)
    blocks: list[Block] = [Heading("How often a read went asynchronous", size=12,
                                   keep_with_next=1.5)]
    header, rows = _pivot_blocked(files, "went_async", _fraction_cell)
    not_res = files.groupby(HIT)["not_resident"].median()
    hits = sorted(set(files[HIT]))
    rows.append(["not resident at start"] + [""] * (len(header) - 1 - len(hits))
                + [_fraction_cell(not_res.get(h, math.nan)) for h in hits])
    inline = files[np.isfinite(files["miss_inline_per_op"].astype(float))]
    inline = inline[inline["variant"].astype(str).isin(
        [v for v, rule in WENT_ASYNC.items() if rule[1] == "eagain"])]
    if len(inline):
        # the same columns as the table above
        axes = [a for a in crossover_axes(files) if a in files.columns]
        rows += _pivot_blocked(
            inline.assign(variant=inline["variant"].astype(str) + ": misses done inline"),
            "miss_inline_per_op", _fraction_cell, axes=axes, hits=hits)[1]
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
            return "/".join(_fraction_cell(r[c]) for c in ("punts_per_op", "poll_armed_per_op",
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
        rows.append([f"{target:g}", str(len(part)), _fraction_cell(a.median()),
                     f"{_fraction_cell(a.min())}..{_fraction_cell(a.max())}",
                     str(int(part["off_target"].sum()))])
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
                     "-" if b is None else _fraction_cell(b["not_ready"]),
                     "-" if b is None else _fraction_cell(b["went_async"])])
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
        where = crossover_group_label(group)
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
    files = table[is_file_read(table)].copy()
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
            where = crossover_group_label(group) or None
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


__all__ = ["crossover_plot", "blocked_plot", "variant_colors"]
