"""The activations section's part on critical sections that survive preemption (lab/families/
_activations_cs.py): analysis.sections.activations.render calls
``render`` after its own pages.  Private: registers no section."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis._format import NOISY_MARK, fmt_count, fmt_fraction, fmt_rate, fmt_value
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._views import is_set, plain_param, swept_axes
from analysis.families._activations_cs import (
    AXES,
    CS_VARIANTS,
    cs_data,
    cs_groups,
    findings_lines,
)


def _table(data: pd.DataFrame, swept: list[str]) -> Table:
    header = ["variant"] + swept + ["reps", "tasks/s", "min..max", "holder preemptions",
                                    "spin fraction", "recoveries", "rseq restarts", ""]
    rows = []
    for _, r in data.iterrows():
        rows.append([r["variant"]] + [str(plain_param(r[a])) if is_set(r[a]) else "-"
                                      for a in swept]
                    + [fmt_count(r["reps"]), fmt_rate(r["throughput"]),
                       f"{fmt_rate(r['throughput_min'])}..{fmt_rate(r['throughput_max'])}",
                       fmt_value(r["holder_preemptions"]), fmt_fraction(r["spin_fraction"]),
                       fmt_value(r["recoveries"]), fmt_value(r["rseq_restarts"]),
                       NOISY_MARK if r["noisy"] else ""])
    right = [False] * (1 + len(swept)) + [True, True, False, True, True, True, True, False]
    notes = ["tasks/s: the workers' throughput_tasks_per_s over the measured window, median "
             "over the user-side runs; min..max: the lowest and highest run; "
             f"{NOISY_MARK}: they spread more than 10% of the median",
             "holder preemptions: the kernel's involuntary switches of a holder's activation "
             "while it held a lock (lab_upcall_preempt's slot), per run; spin fraction: the "
             "waiters' time from a failed try to the acquire over vps x window; recoveries: "
             "cs_informed's loans of a waiter's CPU to a preempted holder; rseq restarts: "
             "cs_rseq's sections the kernel aborted (medians over the runs)"]
    return Table(header, rows, right=right, highlight=data["noisy"].tolist(),
                 caption="Critical sections under preemption: throughput and what each "
                         "variant did", notes=notes, size=8)


def _bars(ax: Any, data: pd.DataFrame, column: str, low: str | None, high: str | None,
          ylabel: str, title: str) -> None:
    colors = dict(zip(CS_VARIANTS, plots.palette(len(CS_VARIANTS))))
    x = np.arange(len(data))
    y = data[column].astype(float).to_numpy()
    err = None
    if low and high:
        err = [np.maximum(y - data[low].astype(float).to_numpy(), 0),
               np.maximum(data[high].astype(float).to_numpy() - y, 0)]
    ax.bar(x, y, yerr=err, capsize=3, color=[colors.get(v) for v in data["variant"]])
    ax.set_xticks(x, data["variant"], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, parse_math=False, fontsize=9)
    ax.grid(True, axis="y", color="0.88", linewidth=0.6)


def render(report: Report, family: str) -> None:
    """This part's pages; nothing when the run has none of its variants."""
    data = cs_data(report.run, family)
    if data.empty:
        return
    swept = swept_axes(data, [a for a in AXES if a in data.columns])
    blocks: list[Block] = [Heading("Preemption: critical sections", size=12, keep_with_next=1.5),
              _table(data, swept), Space(0.1),
              Heading("What this run shows", size=11, keep_with_next=0.8)]
    for line in findings_lines(data):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    report.flow(blocks)
    points = cs_groups(data)
    for start in range(0, len(points), 2):
        chunk = points[start:start + 2]
        with report.figure(f"{family}: critical sections under preemption",
                           nrows=len(chunk), ncols=2,
                           caption="Left: tasks per second, median over the user-side runs; "
                                   "whiskers: the lowest and highest run. Right: the waiters' "
                                   "spin fraction (median). One row per parameter point.") \
                as (fig, axes):
            for i, (_, rows) in enumerate(chunk):
                label = ", ".join(f"{a}={plain_param(rows.iloc[0][a])}" for a in swept)
                _bars(axes[2 * i], rows, "throughput", "throughput_min", "throughput_max",
                      "tasks/s", f"throughput{', ' + label if label else ''}")
                _bars(axes[2 * i + 1], rows, "spin_fraction", None, None, "spin fraction",
                      f"spin fraction{', ' + label if label else ''}")
