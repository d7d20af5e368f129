"""The msgport section's part on reply ports that run code (analysis.families.
_msgport_upcall): a table right after the reply-port tables, the upcall
ports beside port_eventfd and port_deferred of the same op and batch, and
its lines.  analysis.sections.msgport.section_blocks joins ``blocks``.
Private: registers no section."""

from __future__ import annotations

import math

import pandas as pd

from analysis._format import NOISY_MARK, fmt_finite, fmt_value
from analysis._pages import Block, Heading, Space, Table, Text
from analysis._results import Run
from analysis.families._msgport_upcall import lines, upcall_port_table

ROWS_PER_PAGE = 30


def _cell(x: float) -> str:
    return "-" if pd.isna(x) or not math.isfinite(float(x)) else fmt_value(x)


def blocks(run: Run, family: str) -> list[Block]:
    """The part's blocks; none when the run has no upcall port."""
    table = upcall_port_table(run, family)
    if table.empty:
        return []
    header = ["op", "batch", "mode", "flush after [us]", "median [ns]", "95% CI [ns]",
              "p99 [ns]", "replies/signal", "signals/batch", "deferred/batch",
              "timeouts/batch", ""]
    right = [False, True, False] + [True] * 8 + [False]
    rows = [[r["op"], str(r["batch"]), r["variant"], _cell(r["flush_after_us"]),
             fmt_finite(r["median"]), f"{fmt_finite(r['ci_low'])}..{fmt_finite(r['ci_high'])}",
             fmt_finite(r["p99"]), _cell(r["replies_per_signal"]),
             _cell(r["signals_per_batch"]), _cell(r["deferred_per_batch"]),
             _cell(r["timeouts_per_batch"]), NOISY_MARK if r["noisy"] else ""]
            for _, r in table.iterrows()]
    notes = ["ns per message as in the reply-port tables (one batch, first SQE prepared to "
             "last reply reaped, / batch; user-side runs); port_timeout_upcall's includes "
             "flush_after_us of the thread's work per batch",
             "replies/signal: replies the port function (the SIGUSR1 handler) reaped per "
             "signal it handled; signals/batch: handler runs per batch; deferred/batch: "
             "replies that came inside port_critical's section, delivered by the flush; "
             "timeouts/batch: port_timeout_upcall's timer upcalls (medians over the runs)"]
    out: list[Block] = [
        Heading("Reply ports that run code: upcall, critical section, timeout", size=12,
                keep_with_next=1.5),
        Table(header, rows, right=right, highlight=table["noisy"].tolist(),
              caption="Upcall ports beside port_eventfd and port_deferred of the same op and "
                      "batch", notes=notes, max_rows=ROWS_PER_PAGE, size=8)]
    for line in lines(table):
        out += [Text(line, size=9.5, indent=0.15), Space(0.03)]
    return out
