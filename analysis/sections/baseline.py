"""Report section of the baseline family: the generic section plus "what
this run shows", every number of which is computed from the run's samples:

- the cost of waking another CPU: cross_cpu / same_cpu medians of the futex
  and pipe round trips (on a VM guest whose idle vCPU halts, the wake-up
  goes through the hypervisor; the environment says when that is the case);
- swapcontext(3) against our fiber switch (the system call that saves the
  signal mask, priced in null system calls);
- what batching buys io_uring: ns per NOP at one NOP per enter (uring_nop)
  against each uring_nop_batched point;
- the kernel cross-check: futex_pingpong's user-side one-way handoff
  against the probe's wake-to-run latency, on one CPU and across CPUs (and
  a figure of both distributions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import plots
from analysis._format import fmt_ratio, fmt_value
from analysis._pages import Block, Heading, Report, Space, Text
from analysis._results import NO_POINT, Run, load_wakeups
from analysis._stats import NOISY_SPREAD
from analysis._views import environment_value, headline, median_ratio, per_run, run_sources
from analysis.sections import generic
from analysis.sections.registry import register

FAMILY = "baseline"
SAME, CROSS = "placement=same_cpu", "placement=cross_cpu"


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    generic.render(report, family, extra_blocks=findings_blocks(report.run, family))
    handoff_figure(report, family)


def _cell(table: pd.DataFrame, variant: str, point: str = NO_POINT):
    rows = table[(table["variant"].astype(str) == variant) & (table["point"].astype(str) == point)]
    return None if rows.empty else rows.iloc[0]


def _interval(low: float, high: float) -> str:
    return f"95% interval {fmt_ratio(low)}..{fmt_ratio(high)}"


def _noisy(*cells) -> str:
    noisy = [c for c in cells if bool(c["noisy"])]
    if not noisy:
        return ""
    return (f" Caution: {' and '.join(_name(c) for c in noisy)} "
            f"{'is' if len(noisy) == 1 else 'are'} noisy (repetition medians spread more than "
            f"{NOISY_SPREAD:.0%}).")


def _name(cell) -> str:
    return str(cell["variant"]) + ("" if str(cell["point"]) == NO_POINT else f" {cell['point']}")


def _v(cell) -> str:
    return f"{fmt_value(cell['median'])} {cell['unit']}".rstrip()


def wakeup_text(run: Run, table: pd.DataFrame) -> list[str]:
    lines, gaps = [], []
    for variant in ("futex_pingpong", "pipe_pingpong"):
        same, cross = _cell(table, variant, SAME), _cell(table, variant, CROSS)
        if same is None or cross is None:
            continue
        r, low, high = median_ratio(cross, same)
        gaps.append(r)
        lines.append(f"{variant} {cross['metric']}: {_v(cross)} across CPUs against {_v(same)} "
                     f"on one CPU (medians): {fmt_ratio(r)} ({_interval(low, high)})."
                     + _noisy(same, cross))
    if not lines:
        return []
    env = run.environment
    key, driver = environment_value(env, "power.cpuidle_driver", contains=("cpuidle", "driver"))
    if driver == "haltpoll" and min(gaps) > 1:
        _, virt = environment_value(env, "system.virtualization", contains=("virtuali",))
        poll_key, poll = environment_value(env, "power.haltpoll_guest_poll_ns",
                                           contains=("guest", "poll"))
        where = f" on {virt}" if virt else ""
        text = (f"Why: the environment reports the {driver} cpuidle driver ({key}){where}: "
                "this is a virtual machine guest. ")
        if poll == 0:
            text += (f"Guest halt polling is off ({poll_key} = 0): an idle vCPU halts at once, "
                     "and waking it")
        else:
            text += "Waking a halted vCPU"
        text += (" takes an inter-processor interrupt through the hypervisor and a vCPU "
                 "re-entry, while on one CPU the handoff is a plain context switch. That is the "
                 "cross-CPU / same-CPU gap measured above.")
        lines.append(text)
    elif driver:
        lines.append(f"A cross-CPU round trip includes waking the peer CPU from idle "
                     f"(cpuidle driver {driver}, from {key}).")
    return lines


def switch_text(table: pd.DataFrame) -> list[str]:
    fiber, swap = _cell(table, "fiber_switch"), _cell(table, "swapcontext")
    if fiber is None or swap is None:
        return []
    r, low, high = median_ratio(swap, fiber)
    text = (f"swapcontext(3) costs {_v(swap)} per switch against {_v(fiber)} for fiber_switch "
            f"(medians): {fmt_ratio(r)} ({_interval(low, high)}).")
    null = _cell(table, "null_syscall")
    if null is not None and null["unit"] == swap["unit"] and null["median"] > 0:
        diff = swap["median"] - fiber["median"]
        text += (f" The difference, {fmt_value(diff)} {swap['unit']}, is "
                 f"{diff / null['median']:.2g} null system calls ({_v(null)} each): glibc "
                 "saves and restores the signal mask with a system call on every switch, "
                 "our fibers switch registers only.")
    return [text + _noisy(fiber, swap)]


def batching_text(table: pd.DataFrame) -> list[str]:
    single = _cell(table, "uring_nop")
    batched = table[table["variant"].astype(str) == "uring_nop_batched"]
    if single is None or batched.empty:
        return []
    lines = [f"io_uring NOPs, one per io_uring_enter() (uring_nop): {_v(single)} per NOP (median)."]
    for _, row in batched.iterrows():
        gain, low, high = median_ratio(single, row)
        how = (f"{fmt_ratio(gain)} less per NOP" if gain >= 1
               else f"{fmt_ratio(1 / gain)} more per NOP")
        lines.append(f"uring_nop_batched {row['point']}: {_v(row)} per NOP, {how} than one NOP per "
                     f"enter ({_interval(low, high)})." + _noisy(single, row))
    return lines


@dataclass(frozen=True)
class HandoffCheck:
    """futex_pingpong at one placement: the user-side one-way handoff
    against the probe's wake-to-run, both from the runs with probes."""

    point: str
    handoff: np.ndarray             # user-side handoff samples [ns]
    wake_to_run: np.ndarray         # waking_to_run_ns of every wake-up record
    unprobed: np.ndarray            # handoff samples of the twins without probes

    @property
    def handoff_median(self) -> float:
        return float(np.median(self.handoff))

    @property
    def wake_median(self) -> float:
        return float(np.median(self.wake_to_run))

    @property
    def ratio(self) -> float:
        return self.handoff_median / self.wake_median if self.wake_median > 0 else math.nan


PINGPONG = "futex_pingpong"


@per_run
def handoff_checks(run: Run, family: str = FAMILY) -> list[HandoffCheck]:
    """Same and cross CPU (where both sides have data), in that order."""
    src = run_sources(run)
    src = src[(src["family"].astype(str) == family) & (src["variant"].astype(str) == PINGPONG)]
    out = []
    for point in (SAME, CROSS):
        here = src[src["point"].astype(str) == point]
        probed = here.loc[here["kernel_side"], "run_id"].tolist()
        if not probed:
            continue
        s = run.samples
        s = s[s["metric"] == "handoff"]
        handoff = s.loc[s["run_id"].isin(probed), "value"].to_numpy(dtype=float)
        wake = load_wakeups(run, probed, missing="skip")["waking_to_run_ns"].to_numpy(dtype=float)
        if not handoff.size or not wake.size:
            continue
        twins = here.loc[~here["kernel_side"], "run_id"].tolist()
        unprobed = s.loc[s["run_id"].isin(twins), "value"].to_numpy(dtype=float)
        out.append(HandoffCheck(point, handoff, wake, unprobed))
    return out


def _place(point: str) -> str:
    return {SAME: "on one CPU", CROSS: "across CPUs"}.get(point, point)


def kernel_text(run: Run, family: str = FAMILY) -> list[str]:
    """The futex handoff seen from user space and from the scheduler."""
    checks = handoff_checks(run, family)
    if not checks:
        return []
    parts = [f"{_place(c.point)} ({c.point}) the handoff's median is {fmt_value(c.handoff_median)} "
             f"ns against a wake-to-run median of {fmt_value(c.wake_median)} ns: "
             f"{fmt_ratio(c.ratio)}" for c in checks]
    lines = [f"{PINGPONG}: the user-side one-way handoff (waker's timestamp before FUTEX_WAKE to "
             "the wakee's after FUTEX_WAIT returns) against the probe's wake-to-run latency "
             "(sched_waking of the wakee to it running, from the scheduler's tracepoints), "
             "both from the same runs, with probes attached. "
             + "; ".join(parts)[0].upper() + "; ".join(parts)[1:] + "."]
    unprobed = [c for c in checks if c.unprobed.size]
    if unprobed:
        lines[0] += (" Without probes (the twin runs) the handoff medians are "
                     + " and ".join(f"{fmt_value(float(np.median(c.unprobed)))} ns "
                                    f"{_place(c.point)}" for c in unprobed) + ".")
    by_point = {c.point: c for c in checks}
    if SAME in by_point and CROSS in by_point:
        same, cross = by_point[SAME], by_point[CROSS]
        extra_same = same.handoff_median - same.wake_median
        extra_cross = cross.handoff_median - cross.wake_median
        text = ("Why they differ where they do: the user-side handoff also contains the "
                "waker's system call entry (before sched_waking), the wakee's return to user "
                "space (after it is switched in) and the probes' own cost at each switch. ")
        if same.ratio > cross.ratio:
            _, driver = environment_value(run.environment, "power.cpuidle_driver",
                                          contains=("cpuidle", "driver"))
            waking = ("the wake-up of a halted vCPU" if driver == "haltpoll"
                      else "waking the idle peer CPU")
            text += (f"On one CPU those are of the same order as the wake-up itself "
                     f"({fmt_value(extra_same)} ns beyond the wake-to-run median, which is "
                     f"{same.wake_median / same.handoff_median:.0%} of the handoff); across CPUs "
                     f"{waking} dominates: the wake-to-run median is "
                     f"{cross.wake_median / cross.handoff_median:.0%} of the handoff "
                     f"({fmt_value(extra_cross)} ns beyond it).")
        else:
            text += (f"Here they weigh no less across CPUs ({fmt_value(extra_cross)} ns beyond "
                     f"the wake-to-run median) than on one CPU ({fmt_value(extra_same)} ns).")
        lines.append(text)
    return lines


def handoff_figure(report: Report, family: str = FAMILY) -> None:
    """CDF of the futex handoff (user side) against the probe's wake-to-run."""
    checks = handoff_checks(report.run, family)
    if not checks:
        return
    colors = {SAME: "#3182bd", CROSS: "#d95f02"}
    curves = []
    for c in checks:
        color = colors.get(c.point, "0.3")
        curves.append((f"handoff, user side, {_place(c.point)}", c.handoff,
                       {"color": color, "linestyle": "-"}))
        curves.append((f"wake-to-run, probe, {_place(c.point)}", c.wake_to_run,
                       {"color": color, "linestyle": "--"}))
        if c.unprobed.size:
            curves.append((f"handoff without probes, {_place(c.point)}", c.unprobed,
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
    """"What this run shows": sentences built from this run's medians."""
    table = headline(run, family)
    if table.empty:
        return []
    blocks: list[Block] = []
    for title, lines in (("Waking another CPU", wakeup_text(run, table)),
                         ("User-level context switch", switch_text(table)),
                         ("Batching io_uring submissions", batching_text(table)),
                         ("Kernel cross-check: handoff against wake-to-run",
                          kernel_text(run, family))):
        if lines:
            blocks.append(Text(title, size=10, bold=True))
            for line in lines:
                blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    if blocks:
        blocks.insert(0, Heading("What this run shows", size=12, keep_with_next=0.8))
    return blocks
