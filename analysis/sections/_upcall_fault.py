"""The upcall section's page-fault part (lab/families/_upcall_fault.py):
analysis.sections.upcall calls ``blocks`` among its tables and ``figure``
after its figures.  Private: registers no section."""

from __future__ import annotations

from analysis import plots
from analysis._format import fmt_count, fmt_us, fmt_us_interval
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._results import Run
from analysis.families._upcall_fault import PLACEMENTS, STAGES, fault_curves, fault_lines, fault_table

TITLE = "Page faults: userfaultfd against the block upcall and a plain major fault"


def blocks(run: Run, family: str) -> list[Block]:
    """The table and what it shows; nothing when the run has no userfaultfd variant."""
    data = fault_table(run, family)
    if data.empty:
        return []
    header = ["variant", "handler", "placement", "n"] + \
        [f"{s} [us]" for s in STAGES] + ["block upcall [us]", "major fault [us]"]
    rows = []
    for _, r in data.iterrows():
        cells = [r["variant"], r["handler"], r["placement"], fmt_count(r["n"])]
        for s in STAGES:
            cells.append(f"{fmt_us(r[s])} ({fmt_us_interval(r[s + '_ci_low'], r[s + '_ci_high'])})")
        cells.append(f"{fmt_us(r['block'])} ({r['block_mechanism']})" if r["block_mechanism"]
                     else "-")
        cells.append(fmt_us(r["major_fault"]))
        rows.append(cells)
    notes = ["medians over the user-side runs, (95% bootstrap CI); latency: the fault (the "
             "faulting thread's stamp before its touch) to the handler's read of the message, "
             "the upcall; resolve: the UFFDIO_COPY / UFFDIO_CONTINUE ioctl; resume: its return "
             "to the faulting thread's stamp after the touch; total: the fault as the faulting "
             "thread saw it",
             "same_cpu with a polling handler: the woken thread preempts the handler on the "
             "ioctl's way out, so resolve holds its run and resume is 0 (counted as clamped)",
             "block upcall: the block_kind = fault upcall of the same placement (the scheduler "
             "learning that a worker sleeps in a major fault on an evicted file page), the "
             "fastest mechanism the run has; '-' where the run has none; major fault: "
             "that cell's worker's own time in the faulting read (counter fault_ns_per_call, "
             "median over the runs): a plain major fault, no handler"]
    blocks_: list[Block] = [Heading(TITLE, size=12, keep_with_next=1.5),
                            Table(header, rows, right=[False] * 3 + [True] * 7,
                                  caption="userfaultfd: each stage of a page-fault upcall",
                                  notes=notes, size=8), Space(0.08)]
    for line in fault_lines(data):
        blocks_ += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    return blocks_


def figure(report: Report, family: str) -> None:
    """The CDFs of the page-fault upcalls, one panel per placement."""
    curves = fault_curves(report.run, family)
    if not curves:
        return
    colors = plots.palette(max(len({c[0] for c in curves}), 1))
    color_of = {label: colors[i] for i, label in enumerate(dict.fromkeys(c[0] for c in curves))}
    with report.figure(f"{family}: page-fault upcalls", nrows=len(PLACEMENTS), ncols=1,
                       caption="CDF of the upcall latency: userfaultfd's fault to the "
                               "handler's read of the message, and the block upcall of a "
                               "major fault (block_kind = fault) to the scheduler's stamp.") \
            as (fig, axes):
        for ax, placement in zip(axes, PLACEMENTS):
            mine = [(label, values, {"color": color_of[label]})
                    for label, values, p in curves if p == placement and len(values)]
            if mine:
                plots.cdf_curves(ax, mine, xlabel="latency [ns]", title=placement)
