"""The activations section's part on multiprogramming (lab/families/
_activations_mp.py): analysis.sections.activations.render calls
``render`` after its own pages.  Private: registers no section.

One page of text (findings, a table per variant, the paper's line) and a
figure: speedup against one process alone per variant, one process vs
``processes``; the paper's bars beside ours only when its result is
quoted (analysis.families._activations_mp.PAPER_QUOTE)."""

from __future__ import annotations

import math

from analysis import plots
from analysis._format import fmt_rate, fmt_ratio, fmt_ratio_interval, fmt_value
from analysis._pages import Heading, Report, Space, Table, Text
from analysis.families._activations_mp import (
    NOT_QUOTED,
    PAPER_CITATION,
    PAPER_QUOTE,
    findings_lines,
    mp_data,
)

HEADER = ["processes", "reps", "per process [bodies/s]", "min..max process", "combined",
          "interval", "speedup", "interval", "holder preempt.", "spin/body [ns]", "fairness"]


def _rows(rows) -> list[list[str]]:
    out = []
    for _, r in rows.iterrows():
        speedup = r["speedup"]
        out.append([str(r["processes"]), str(r["reps"]), fmt_rate(r["per_process"]),
                    f"{fmt_rate(r['min_process'])}..{fmt_rate(r['max_process'])}",
                    fmt_rate(r["combined"]),
                    f"{fmt_rate(r['combined_low'])}..{fmt_rate(r['combined_high'])}",
                    fmt_ratio(speedup) if math.isfinite(speedup) else "-",
                    fmt_ratio_interval(r["speedup_low"], r["speedup_high"])
                    if math.isfinite(speedup) else "-",
                    fmt_value(r["holder_preemptions"]), fmt_value(r["spin_ns_per_body"]),
                    f"{r['fairness']:.3f}"])
    return out


def render(report: Report, family: str) -> None:
    """This part's pages; nothing when the run has none of its variants."""
    data = mp_data(report.run, family)
    if data.empty:
        return
    blocks: list = [Heading("Multiprogramming", size=14)]
    for line in findings_lines(report.run, family):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    for variant, rows in data.groupby("variant", sort=False):
        for other, part in rows.groupby("other", sort=False):
            blocks += [Heading(f"{variant} ({other})", size=11, keep_with_next=1.0),
                       Table(HEADER, _rows(part), right=[True] * len(HEADER))]
    blocks += [Text("Throughput: bodies updated per second over each process's measured steps "
                    "(after its warm-up step), median over the user-side runs; combined: the "
                    "processes' sum; interval: bootstrap of the median over the repetitions. "
                    "Speedup: combined over one process alone (processes = 1, the same variant "
                    "and other parameters), intervals divided crosswise. Holder preempt.: a "
                    "lock holder's VP preempted while it held the lock (the upcall program's "
                    "slots), median per run; spin/body: lock and barrier spinning per body "
                    "update; fairness: Jain's index of the per-process throughputs.", size=8),
               Text(f"The paper: {PAPER_QUOTE} ({PAPER_CITATION})" if PAPER_QUOTE else
                    f"The paper ({PAPER_CITATION}): {NOT_QUOTED}.", size=8)]
    report.flow(blocks)
    report.end_page()
    speedup_figure(report, family, data)


def speedup_figure(report: Report, family: str, data) -> None:
    variants = list(dict.fromkeys(data["variant"]))
    counts = sorted(set(data["processes"]))
    colors = plots.palette(len(counts))
    with report.figure(f"{family}: multiprogramming, speedup against one process alone",
                       caption="Combined throughput over one process alone (processes = 1) per "
                               "variant, median over the user-side runs; whiskers: the "
                               "interval of the ratio. The paper's bars are drawn only when "
                               "its result is quoted from its text: "
                               + ("quoted." if PAPER_QUOTE else NOT_QUOTED + ".")
                       ) as (fig, axes):
        ax = axes[0]
        width = 0.8 / max(len(counts), 1)
        for j, n in enumerate(counts):
            rows = data[data["processes"] == n].drop_duplicates("variant").set_index("variant")
            xs, ys, lo, hi = [], [], [], []
            for i, v in enumerate(variants):
                if v not in rows.index or not math.isfinite(rows.loc[v, "speedup"]):
                    continue
                r = rows.loc[v]
                xs.append(i + (j - (len(counts) - 1) / 2) * width)
                ys.append(r["speedup"])
                lo.append(max(r["speedup"] - r["speedup_low"], 0))
                hi.append(max(r["speedup_high"] - r["speedup"], 0))
            ax.bar(xs, ys, width=width, color=colors[j], label=f"processes = {n}",
                   yerr=[lo, hi], capsize=3)
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, rotation=20, fontsize=8)
        ax.set_ylabel("combined / one process alone")
        plots.legend_below(ax, ncol=len(counts))
