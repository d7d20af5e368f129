"""Report section of the baseline family: the generic section plus "what
this run shows", every number of which is computed from the run's samples:

- the cost of waking another CPU: cross_cpu / same_cpu medians of the futex
  and pipe round trips (on a VM guest whose idle vCPU halts, the wake-up
  goes through the hypervisor; the environment says when that is the case);
- swapcontext(3) against our fiber switch (the system call that saves the
  signal mask, priced in null system calls);
- what batching buys io_uring: ns per NOP at one NOP per enter (uring_nop)
  against each uring_nop_batched point.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis._format import fmt_ratio, fmt_value
from analysis._pages import Block, Heading, Report, Space, Text
from analysis._results import NO_POINT, Run
from analysis._stats import NOISY_SPREAD
from analysis._views import headline, median_ratio
from analysis.sections import generic, register

FAMILY = "baseline"
SAME, CROSS = "placement=same_cpu", "placement=cross_cpu"


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    generic.render(report, family, extra_blocks=findings_blocks(report.run, family))


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


def environment_value(env: dict, *names: str, contains: tuple[str, ...] = ()):
    """The first of names present in the environment, else the first key
    containing every one of ``contains``."""
    for n in names:
        if n in env:
            return n, env[n]
    if contains:
        for k, v in env.items():
            if all(c in k for c in contains):
                return k, v
    return None, None


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


def findings_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """"What this run shows": sentences built from this run's medians."""
    table = headline(run, family)
    if table.empty:
        return []
    blocks: list[Block] = []
    for title, lines in (("Waking another CPU", wakeup_text(run, table)),
                         ("User-level context switch", switch_text(table)),
                         ("Batching io_uring submissions", batching_text(table))):
        if lines:
            blocks.append(Text(title, size=10, bold=True))
            for line in lines:
                blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    if blocks:
        blocks.insert(0, Heading("What this run shows", size=12, keep_with_next=0.8))
    return blocks
