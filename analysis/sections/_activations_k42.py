"""The activations section's part on K42's soft and hard preemption (lab/families/
_activations_k42.py): analysis.sections.activations.render calls
``render`` after its own pages.  Private: registers no section."""

from __future__ import annotations

import math

from analysis import plots
from analysis._format import fmt_us, fmt_us_interval, fmt_value
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis.families._activations_k42 import (
    HARD,
    RSEQ_SLICE,
    SOFT,
    findings_lines,
    k42_data,
    latency_curves,
    rseq_slice_line,
)

HEADING = "Preemption: K42 soft and hard"
NOISY_MARK = "*"
STYLE = {(SOFT, "flag"): {"color": "tab:blue"}, (SOFT, "signal"): {"color": "tab:green"},
         (HARD, "-"): {"color": "tab:red"}}


def _count(x: float) -> str:
    return "-" if not math.isfinite(x) else str(int(x))


def table_blocks(data) -> list[Block]:
    header = ["variant", "request", "quantum [us]", "n", "median [us]", "p99 [us]",
              "95% CI [us]", "safe point [us]", "cost/preemption [us]", "cost spread [us]",
              "misses", "kernel-preempted", "switches/req", ""]
    rows = [[r["variant"], r["request"], f"{r['quantum_us']:g}", str(r["n"]),
             fmt_us(r["median"]), fmt_us(r["p99"]), fmt_us_interval(r["ci_low"], r["ci_high"]),
             fmt_us(r["safe_median"]) if math.isfinite(r["safe_median"]) else "-",
             fmt_us(r["cost_median"]), fmt_us_interval(r["cost_min"], r["cost_max"]),
             _count(r["deadline_misses"]) if r["variant"] == SOFT else "-",
             f"{_count(r['preempted_by_requester'])}/{_count(r['requests'])}",
             fmt_value(r["switches_per_request"]), NOISY_MARK if r["noisy"] else ""]
            for _, r in data.iterrows()]
    right = [False, False] + [True] * 11 + [False]
    notes = ["latency: from the time the requester wanted the CPU (its timer's expiry) to it "
             "running on the VP's CPU; soft includes the wait for the runtime's safe point "
             "(median over the pooled user-side repetitions; 95% CI of the median, bootstrap)",
             "safe point: soft, the request posted to the runtime giving the VP up at its next "
             "fiber switch (median); misses: soft requests past deadline_us, taken anyway",
             "cost/preemption: the fibers' work lost per request: the request phase's length "
             "less the requester's hold less the time the quiet phases (same threads, no "
             "requests) took for the same slices, over the requests (median and spread over "
             "the repetitions)",
             "kernel-preempted: requests at which the upcall program's preemption function had "
             "switched the activation out for the requester (the rest found it off the CPU "
             "already); switches/req: the probes' context switches per request",
             f"{NOISY_MARK}: the repetitions' medians spread more than 10%"]
    return [Table(header, rows, right=right, highlight=data["noisy"].tolist(),
                  caption="K42 preemption: latency, safe point, cost per variant and quantum",
                  notes=notes)]


def latency_plot(ax, run, data, quantum: float, family: str = "activations") -> None:
    """One panel: the CDF of each variant's request latency [us] at one
    quantum (k42_data rows), log x."""
    here = [(r["variant"] + (f" ({r['request']})" if r["request"] != "-" else ""), v / 1000,
             STYLE.get((r["variant"], r["request"]), {}))
            for r, v in latency_curves(run, data, family) if r["quantum_us"] == quantum]
    plots.cdf_curves(ax, here, xlabel="request latency [us]", log=True,
                     title=f"quantum {quantum:g} us", legend=False)
    plots.plain_log_ticks(ax, "x")
    plots.legend_right(ax, fontsize=7)


def latency_figure(report: Report, data, family: str) -> None:
    quanta = sorted(set(data["quantum_us"].dropna()))
    ncols = 1 if len(quanta) == 1 else 2
    nrows = -(-len(quanta) // ncols)
    with report.figure(f"{family}: K42 soft and hard preemption", nrows=nrows, ncols=ncols,
                       caption="Empirical CDF of the request latency (the requester's wanted "
                               "time to it running on the VP's CPU), user-side runs, "
                               "repetitions pooled, one panel per quantum between safe "
                               "points. Soft waits for the runtime's next fiber switch; hard "
                               "is the kernel preempting the activation at once.") as (_, axes):
        for ax, q in zip(axes, quanta):
            latency_plot(ax, report.run, data, q, family)


def render(report: Report, family: str) -> None:
    """This part's pages; nothing when the run has none of its variants."""
    run = report.run
    data = k42_data(run, family)
    asked = run.skipped["variant"].astype(str).eq(RSEQ_SLICE).any() or len(data)
    if not asked:
        return
    blocks: list[Block] = [Heading(HEADING, size=12, keep_with_next=1.2)]
    if len(data):
        blocks += table_blocks(data)
        for line in findings_lines(data):
            blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    blocks += [Text(rseq_slice_line(run, family), size=9.5, indent=0.15)]
    report.flow(blocks)
    if len(data):
        latency_figure(report, data, family)
