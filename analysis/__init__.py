"""Analysis of stored results: load a run, summarise it, show it, plot it,
report it.  The PDF report (analysis.report), `lab show` and the notebooks
all go through these functions, so they agree on every number.

    run = load_run("results/20261122-101500-quick")
    headline(run, "baseline")           # the report's table
    print(show_text(run))               # what `lab show` prints
    kernel_view_table(run, "baseline")  # what the probes saw, per operation
    run.metrics, load_wakeups(run)      # the probes' tidy counts and wake-up records
    run.counters                        # the workers' own counts (EAGAINs, atoms canceled...)
    counter_summary(run, "syncfirst")   # ... per variant and point: median, spread, total
    throughput_summary(run, "chains")   # operations per second over each run's window

Plots are in analysis.plots, the PDF in analysis.report (imported on use:
they pull in matplotlib).  A family's own analysis (its data and findings,
no matplotlib) is in analysis.families.<family>: analysis.families.syncfirst
(the crossover, how often a call went async, the seed's claims),
analysis.families.chains (time per chain against k, the cost per atom, stop
on failure), analysis.families.msgport (reply ports, flushsys(), live
messages, PPC); its report layout (pages, tables, figures) is in
analysis.sections.<family>.
"""

from analysis._counters import counter_summary, counter_table, kernel_per_op, run_table, throughput_summary
from analysis._format import fmt_percent, fmt_ratio, fmt_value
from analysis._kernel import (
                                kernel_metric_summary,
                                kernel_view_status,
                                kernel_view_table,
                                probe_overhead_summary,
                                probe_overhead_table,
)
from analysis._results import NO_POINT, Run, load_run, load_wakeups
from analysis._show import show_text
from analysis._stats import bootstrap_median_ci, summarise
from analysis._views import (
                                family_summary,
                                headline,
                                headline_samples,
                                reference_ratios,
                                run_sources,
                                user_samples,
)

__all__ = [
    "NO_POINT", "Run", "load_run", "load_wakeups", "summarise", "bootstrap_median_ci",
    "headline", "headline_samples", "family_summary", "reference_ratios", "run_sources",
    "user_samples", "kernel_view_table", "kernel_metric_summary", "kernel_view_status",
    "probe_overhead_table", "probe_overhead_summary", "show_text", "fmt_value", "fmt_ratio",
    "fmt_percent", "counter_summary", "counter_table", "throughput_summary", "run_table",
    "kernel_per_op",
]
