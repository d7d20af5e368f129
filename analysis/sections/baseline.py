"""Report layout of the baseline family: the generic section plus
analysis.families.baseline's "what this run shows", and a figure of the
futex handoff (user side) against the probe's wake-to-run latency."""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis import plots
from analysis._pages import Block, Heading, Report, Space, Text
from analysis._results import Run
from analysis.families.baseline import (
    CROSS,
    FAMILY,
    PINGPONG,
    SAME,
    findings,
    handoff_checks,
    placement_words,
)
from analysis.sections import generic
from analysis.sections.registry import register


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    generic.render(report, family, extra_blocks=findings_blocks(report.run, family))
    handoff_figure(report, family)


def handoff_figure(report: Report, family: str = FAMILY) -> None:
    """CDF of the futex handoff (user side) against the probe's wake-to-run."""
    checks = handoff_checks(report.run, family)
    if not checks:
        return
    colors = {SAME: "#3182bd", CROSS: "#d95f02"}
    curves: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    for c in checks:
        color = colors.get(c.point, "0.3")
        curves.append((f"handoff, user side, {placement_words(c.point)}", c.handoff,
                       {"color": color, "linestyle": "-"}))
        curves.append((f"wake-to-run, probe, {placement_words(c.point)}", c.wake_to_run,
                       {"color": color, "linestyle": "--"}))
        if c.unprobed.size:
            curves.append((f"handoff without probes, {placement_words(c.point)}", c.unprobed,
                           {"color": color, "linestyle": ":", "linewidth": 1.0}))
    tail = 0.995        # across CPUs the last 0.5% reach timer ticks: milliseconds
    with report.figure(f"{family}: {PINGPONG} handoff against the kernel's wake-to-run",
                       caption="Empirical CDFs. Solid: the user-side one-way handoff samples "
                               "(waker's timestamp before FUTEX_WAKE to the wakee's after it "
                               "returns); dashed: the probe's wake-to-run records (sched_waking "
                               "to the wakee running), both from the runs with probes attached; "
                               "dotted: the handoff in the twin runs without probes. Log x. The "
                               f"x axis ends at the slowest curve's p{100 * tail:g}; each legend "
                               "entry gives its maximum.") as (fig, axes):
        plots.cdf_curves(axes[0], curves, xlabel="latency [ns]", log=True, clip_tail=tail,
                         title=f"{PINGPONG}: one-way handoff (user side) and wake-to-run "
                               "(sched tracepoints)")


def findings_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """"What this run shows", a heading over each topic's sentences."""
    blocks: list[Block] = []
    for title, lines in findings(run, family):
        blocks.append(Text(title, size=10, bold=True))
        for line in lines:
            blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    if blocks:
        blocks.insert(0, Heading("What this run shows", size=12, keep_with_next=0.8))
    return blocks


__all__ = ["findings_blocks", "handoff_figure"]
