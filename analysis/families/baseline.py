"""The baseline family's analysis: "what this run shows", every number of
which is computed from the run's samples; the report lays it out in
analysis.sections.baseline:

- the cost of waking another CPU: cross_cpu / same_cpu medians of the futex
  and pipe round trips (on a VM guest whose idle vCPU halts, the wake-up
  goes through the hypervisor; the environment says when that is the case);
- swapcontext(3) against our fiber switch (the system call that saves the
  signal mask, priced in null system calls);
- what batching buys io_uring: ns per NOP at one NOP per enter (uring_nop)
  against each uring_nop_batched point;
- the kernel cross-check: futex_pingpong's user-side one-way handoff
  against the probe's wake-to-run latency, on one CPU and across CPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis._format import fmt_ratio, fmt_ratio_interval, fmt_value
from analysis._results import NO_POINT, Run, load_wakeups
from analysis._stats import NOISY_SPREAD
from analysis._views import (
    environment_value,
    halted_vcpu_clause,
    headline,
    median_ratio,
    per_run,
    run_sources,
)

FAMILY = "baseline"
SAME, CROSS = "placement=same_cpu", "placement=cross_cpu"

def _cell(table: pd.DataFrame, variant: str, point: str = NO_POINT):
    rows = table[(table["variant"].astype(str) == variant) & (table["point"].astype(str) == point)]
    return None if rows.empty else rows.iloc[0]


def _ratio_interval_text(low: float, high: float) -> str:
    return f"95% interval {fmt_ratio_interval(low, high)}"


def _noisy(*cells) -> str:
    noisy = [c for c in cells if bool(c["noisy"])]
    if not noisy:
        return ""
    return (f" Caution: {' and '.join(_name(c) for c in noisy)} "
            f"{'is' if len(noisy) == 1 else 'are'} noisy (repetition medians spread more than "
            f"{NOISY_SPREAD:.0%}).")


def _name(cell) -> str:
    return str(cell["variant"]) + ("" if str(cell["point"]) == NO_POINT else f" {cell['point']}")


def _median_text(cell) -> str:
    return f"{fmt_value(cell['median'])} {cell['unit']}".rstrip()


def wakeup_text(run: Run, table: pd.DataFrame) -> list[str]:
    lines, gaps = [], []
    for variant in ("futex_pingpong", "pipe_pingpong"):
        same, cross = _cell(table, variant, SAME), _cell(table, variant, CROSS)
        if same is None or cross is None:
            continue
        r, low, high = median_ratio(cross, same)
        gaps.append(r)
        lines.append(f"{variant} {cross['metric']}: {_median_text(cross)} across CPUs against "
                     f"{_median_text(same)} on one CPU (medians): {fmt_ratio(r)} "
                     f"({_ratio_interval_text(low, high)})."
                     + _noisy(same, cross))
    if not lines:
        return []
    env = run.environment
    key, driver = environment_value(env, "power.cpuidle_driver", contains=("cpuidle", "driver"))
    if driver == "haltpoll" and min(gaps) > 1:
        _, virt = environment_value(env, "system.virtualization", contains=("virtuali",))
        where = f" on {virt}" if virt else ""
        text = (f"Why: the environment reports the {driver} cpuidle driver ({key}){where}: "
                f"this is a virtual machine guest, and {halted_vcpu_clause(env)}. Across "
                "CPUs the handoff waits for that wake-up (an inter-processor interrupt through "
                "the hypervisor); on one CPU it is a plain context switch. That is the "
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
    text = (f"swapcontext(3) costs {_median_text(swap)} per switch against "
            f"{_median_text(fiber)} for fiber_switch (medians): {fmt_ratio(r)} "
            f"({_ratio_interval_text(low, high)}).")
    null = _cell(table, "null_syscall")
    if null is not None and null["unit"] == swap["unit"] and null["median"] > 0:
        diff = swap["median"] - fiber["median"]
        text += (f" The difference, {fmt_value(diff)} {swap['unit']}, is "
                 f"{diff / null['median']:.2g} null system calls ({_median_text(null)} each): glibc "
                 "saves and restores the signal mask with a system call on every switch, "
                 "our fibers switch registers only.")
    return [text + _noisy(fiber, swap)]


def batching_text(table: pd.DataFrame) -> list[str]:
    single = _cell(table, "uring_nop")
    batched = table[table["variant"].astype(str) == "uring_nop_batched"]
    if single is None or batched.empty:
        return []
    lines = [f"io_uring NOPs, one per io_uring_enter() (uring_nop): {_median_text(single)} per NOP (median)."]
    for _, row in batched.iterrows():
        gain, low, high = median_ratio(single, row)
        how = (f"{fmt_ratio(gain)} less per NOP" if gain >= 1
               else f"{fmt_ratio(1 / gain)} more per NOP")
        lines.append(f"uring_nop_batched {row['point']}: {_median_text(row)} per NOP, {how} than one NOP per "
                     f"enter ({_ratio_interval_text(low, high)})." + _noisy(single, row))
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


def placement_words(point: str) -> str:
    """same_cpu -> "on one CPU", cross_cpu -> "across CPUs" (for sentences and legends)."""
    return {SAME: "on one CPU", CROSS: "across CPUs"}.get(point, point)


def kernel_text(run: Run, family: str = FAMILY) -> list[str]:
    """The futex handoff seen from user space and from the scheduler."""
    checks = handoff_checks(run, family)
    if not checks:
        return []
    parts = [f"{placement_words(c.point)} ({c.point}) the handoff's median is {fmt_value(c.handoff_median)} "
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
                                    f"{placement_words(c.point)}" for c in unprobed) + ".")
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


def findings(run: Run, family: str = FAMILY) -> list[tuple[str, list[str]]]:
    """"What this run shows": (title, sentences) per topic the run has data
    for, every sentence built from this run's medians."""
    table = headline(run, family)
    if table.empty:
        return []
    topics = (("Waking another CPU", wakeup_text(run, table)),
              ("User-level context switch", switch_text(table)),
              ("Batching io_uring submissions", batching_text(table)),
              ("Kernel cross-check: handoff against wake-to-run", kernel_text(run, family)))
    return [(title, lines) for title, lines in topics if lines]


__all__ = ["wakeup_text", "switch_text", "batching_text", "HandoffCheck", "handoff_checks",
           "kernel_text", "placement_words", "findings"]
