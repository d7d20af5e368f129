"""Report layout of the chains family: analysis.families.chains' findings,
cost per atom, comparison with syscalls and stop-on-failure tables, and
its figures: time per chain against the chain length k, per variant,
log-log, one panel per (op, cached, taskrun) combination the run has, and
user/kernel transitions per chain (the probes' system calls per chain)
against k."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis._format import fmt_count, fmt_ratio, fmt_ratio_interval, fmt_value
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._results import Run
from analysis.families.chains import (
    FAMILY,
    REFERENCE,
    TARGET_K,
    atom_costs,
    chain_data,
    combo_label,
    combos,
    findings_lines,
    k_label,
    stop_on_failure,
    times_probe_note,
    versus_reference,
)
from analysis.sections import generic
from analysis.sections.registry import register


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    run = report.run
    # the workers' counters that matter here are in the section's own tables
    # (entries, untimed calls, the failure counts); `lab show` lists them all
    generic.render(report, family, extra_blocks=findings_blocks(run, family), figures=False,
                   counters=False)
    time_figures(report, family)
    transitions_figures(report, family)


def _right(header) -> list[bool]:
    return [h not in ("variant", "combination", "point", "op", "k range") for h in header]


def cost_blocks(run: Run, family: str, data: pd.DataFrame) -> list[Block]:
    costs = atom_costs(run, family, data)
    if costs.empty:
        return []
    rows = [[r.combo, r.variant, fmt_value(r.slope),
             f"{fmt_value(r.rep_slope_min)}..{fmt_value(r.rep_slope_max)}",
             fmt_value(r.intercept), f"{r.k_min}..{r.k_max} ({r.n_k} values)"]
            for r in costs.itertuples(index=False)]
    header = ["combination", "variant", "ns per atom", "per repetition", "intercept [ns]",
              "k range"]
    return [Heading("Cost of one more atom", size=12, keep_with_next=1.2),
            Table(header, rows, right=_right(header),
                  caption="Slope of the least-squares line through the median chain times "
                          "against k (chains without an injected failure)",
                  notes=["per repetition: the lowest and highest slope of the same fit through "
                         "one repetition's run medians; intercept: the line's value at k = 0 "
                         "(set-up that does not grow with the chain)"])]


def versus_blocks(data: pd.DataFrame) -> list[Block]:
    versus = versus_reference(data)
    if not versus:
        return []
    rows = []
    for v in versus:
        ref = v.variant == REFERENCE
        rows.append([v.combo, k_label(v.k), v.variant, fmt_value(v.row["median"]),
                     f"{fmt_value(v.row['ci_low'])}..{fmt_value(v.row['ci_high'])}",
                     "reference" if ref else fmt_ratio(v.ratio),
                     "" if ref else f"{fmt_ratio_interval(v.low, v.high)}",
                     fmt_value(v.row["syscalls_per_chain"]),
                     fmt_count(v.row["kernel_entries_per_chain"]),
                     fmt_count(v.row["untimed_syscalls_per_chain"])])
    header = ["combination", "k", "variant", "median [ns]", "95% CI [ns]", "/ syscalls",
              "interval", "syscalls/chain", "entries/chain", "untimed/chain"]
    ks = sorted(set(v.k for v in versus))
    return [Heading(f"Each variant against syscalls at k = {', '.join(k_label(k) for k in ks)}",
                    size=12, keep_with_next=1.2),
            Table(header, rows, right=_right(header),
                  caption=f"Median chain time and its ratio to syscalls at the k nearest "
                          f"{TARGET_K} each combination has",
                  notes=["interval: the 95% CI bounds of the two medians divided crosswise",
                         "syscalls/chain: system calls the kernel saw per chain "
                         "(raw_syscalls:sys_enter, median over the runs with probes): the "
                         "user/kernel transitions a chain costs; entries/chain: the kernel "
                         "entries the worker counted itself; untimed/chain: system calls "
                         "between chains, in the probes' window but in no sample (evicting "
                         "the file for cached=False)"])]


def failure_blocks(run: Run, family: str, data: pd.DataFrame) -> list[Block]:
    fails = stop_on_failure(run, family, data)
    if fails.empty:
        return []
    rows = [[str(r["variant"]), str(r["op"]), k_label(r["k"]), str(int(r["fail_at"])),
             fmt_count(r["ok_per_chain"]), fmt_count(r["failed_per_chain"]),
             fmt_count(r["canceled_per_chain"]), fmt_count(r["not_run_per_chain"]),
             fmt_count(r["completions_per_chain"]), fmt_value(r["median"])]
            for _, r in fails.iterrows()]
    header = ["variant", "op", "k", "fail_at", "ok", "failed", "canceled", "not run",
              "completions", "median [ns]"]
    return [Heading("Stop on failure (SYSLET_STOP_ON_NEGATIVE)", size=12, keep_with_next=1.2),
            Table(header, rows, right=_right(header),
                  caption="Atoms per chain when atom fail_at fails: completed ok, failed, "
                          "canceled (-ECANCELED), never run; completions posted",
                  notes=["the workers' own counts per chain, median over the runs; syscalls "
                         "and uring_separate stop after the failing atom (the program sees the "
                         "error before issuing the next), uring_link and uring_link_wait1 get "
                         "-ECANCELED for the rest, uring_hardlink runs them"])]


def findings_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = chain_data(run, family)
    if data.empty:
        return []
    blocks: list[Block] = [Heading("What this run shows", size=12, keep_with_next=0.8)]
    for line in findings_lines(run, family):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    blocks += cost_blocks(run, family, data)
    blocks += versus_blocks(data)
    blocks += failure_blocks(run, family, data)
    return blocks


# -- figures ---------------------------------------------------------------------------------

def _colors(run: Run, family: str) -> dict[str, Any]:
    names = list(run.families[family]["variants"])
    return dict(zip(names, plots.palette(len(names))))


def chain_time_plot(ax, rows: pd.DataFrame, colors: dict | None = None, title: str | None = None,
                    value: str = "median", ylabel: str = "median time per chain [ns]"):
    """value (median chain time, or syscalls_per_chain) against k, one line
    per variant; whiskers from ci_low / ci_high when value is the median.
    Log-log (both axes marked)."""
    colors = colors or {}
    markers = "osD^v"
    styles = ("-", "--", "-.", ":", (0, (5, 1)))
    values = []
    lines = list(rows.groupby("variant", observed=True, sort=False))
    for i, (variant, part) in enumerate(lines):
        part = part.sort_values("k")
        y = part[value].to_numpy(dtype=float)
        # shifted sideways (in octaves) so that equal values do not hide each other
        k = part["k"].to_numpy(dtype=float) * 2 ** ((i - (len(lines) - 1) / 2) * 0.05)
        style = dict(color=colors.get(str(variant)), marker=markers[i % len(markers)],
                     markersize=4, linewidth=1.3, linestyle=styles[i % len(styles)],
                     label=str(variant))
        if value == "median":
            low, high = part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float)
            ax.errorbar(k, y, yerr=[np.maximum(y - low, 0), np.maximum(high - y, 0)],
                        capsize=3, elinewidth=0.9, **style)
            values += list(low) + list(high)
        else:
            ax.plot(k, y, **style)
            values += list(y)
    ks = sorted(set(rows["k"].dropna()))
    ax.set_xscale("log", base=2)
    if ks:
        ax.set_xlim(ks[0] / 1.5, ks[-1] * 1.5)
    ax.set_xticks(ks)
    ax.set_xticklabels([k_label(k) for k in ks])
    ax.xaxis.set_minor_locator(plt_null_locator())
    positive = [v for v in values if np.isfinite(v) and v > 0]
    if positive:
        ax.set_yscale("log")
        plots.plain_log_ticks(ax)
    ax.set_xlabel("atoms per chain k (log scale)")
    ax.set_ylabel(ylabel + (" (log scale)" if positive else ""))
    ax.grid(True, which="major", color="0.88", linewidth=0.6)
    if title:
        ax.set_title(title, parse_math=False)
    return ax


PANELS = 4


def plt_null_locator():
    from matplotlib.ticker import NullLocator
    return NullLocator()


def _paged(items: list, per_page: int = PANELS):
    for start in range(0, len(items), per_page):
        yield start // per_page, items[start:start + per_page]


def _grid(n: int) -> tuple[int, int]:
    return (1, n) if n <= 2 else (2, 2)


def _paged_figures(report: Report, family: str, groups: list, title: str, caption: str,
                   **plot_kw) -> None:
    """One chain_time_plot panel per (op, cached, taskrun) group, four to a page."""
    colors = _colors(report.run, family)
    pages = list(_paged(groups))
    for n, chunk in pages:
        more = f" ({n + 1}/{len(pages)})" if len(pages) > 1 else ""
        nrows, ncols = _grid(len(chunk))
        with report.figure(f"{family}: {title}{more}", nrows=nrows, ncols=ncols,
                           caption=caption) as (fig, axes):
            for ax, (combo, rows) in zip(axes, chunk):
                chain_time_plot(ax, rows, colors, title=combo_label(combo), **plot_kw)
            plots.legend_right(axes[len(chunk) - 1])


def time_figures(report: Report, family: str = FAMILY) -> None:
    groups = combos(chain_data(report.run, family))
    if groups:
        _paged_figures(report, family, groups, "time per chain against its length",
                       "Median time of one chain of k atoms (first atom's preparation to the "
                       "last result), whiskers the 95% CI of the median; chains without an "
                       "injected failure. Log-log; the variants are shifted slightly sideways "
                       "so that equal values do not hide each other. syscalls takes no "
                       "taskrun: it is the same line in every taskrun's panel. "
                       + times_probe_note(report.run, family))


def transitions_figures(report: Report, family: str = FAMILY) -> None:
    groups = [(c, r) for c, r in combos(chain_data(report.run, family))
              if np.isfinite(r["syscalls_per_chain"]).any() and r["k"].nunique() > 1]
    if groups:
        _paged_figures(report, family, groups, "user/kernel transitions per chain",
                       "System calls the kernel saw per chain (raw_syscalls:sys_enter in each "
                       "run's measured window / chains), median over the runs with probes. "
                       "Work between chains (evicting the file for cached=False) is in the "
                       "window: see untimed/chain in the table. Log-log, variants shifted "
                       "slightly sideways.",
                       value="syscalls_per_chain", ylabel="system calls per chain (kernel view)")


__all__ = ["chain_time_plot"]
