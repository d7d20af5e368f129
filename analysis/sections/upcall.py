"""Report section of the upcall family: the layout of what
analysis.families.upcall computes, in this order after the generic tables:

- "what this run shows" (findings_lines());
- the upcall latency table, one per placement, and the futex-handoff
  yardstick under it; one line instead when the run has no such handoff;
- preemption upcalls: who learns that a VP was preempted, by which
  mechanism, how fast, beside the block upcall of the same mechanism, and
  their CDF (latency after the switch; since_resume for the preempted
  activation itself);
- the anatomy of an upcall: its kernel stages per mechanism point, a table
  and a stacked bar figure;
- the kernel's cross-check (the scheduler's wake-to-run), since_source,
  timer lateness beside cyclictest, the counters that prove the mechanics,
  and the 1992 paper's upcall figure beside this run's;
- figures: per block kind, the CDF of every mechanism (bpf variants: block
  and unblock upcalls as separate lines), one panel per placement, log x in
  us, and the medians with their p99 beneath; the CDF of each timer
  variant's lateness.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis._format import fmt_count, fmt_fraction, fmt_ratio, fmt_ratio_interval, fmt_us, fmt_us_interval
from analysis._kernel import kernel_view_status
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._results import Run
from analysis._views import headline_samples, user_samples
from analysis.families.upcall import (
    ALL_WAKEUPS,
    CROSS,
    CYCLICTEST,
    FAMILY,
    LATENCY,
    LATENESS,
    MECHANICS,
    MECHANISMS,
    PLACEMENTS,
    PREEMPT_MECHANISMS,
    SAME,
    SCHEDULER_WAKEUPS,
    SINCE_RESUME,
    SLEEPING,
    SLEPT,
    STAGE_TEXT,
    STAGES,
    TIMER_AXES,
    TIMERS,
    URING_CQE,
    anatomy_lines,
    anatomy_table,
    block_kinds,
    crosscheck_lines,
    findings_lines,
    handoff_lines,
    handoff_reference,
    in_table_order,
    latency_table,
    mechanics_table,
    must_be_zero,
    paper_lines,
    preemption_lines,
    preemption_table,
    probe_text,
    row_label,
    since_source_table,
    timer_lines,
    timer_pivot,
    timer_point,
    timer_point_text,
    timer_rows,
    wake_check,
)
from analysis.sections import _upcall_fault, generic
from analysis.sections.registry import register

LATENCY_ROWS_PER_PAGE = 30     # one placement of the thorough suite on one page


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    run = report.run
    # the generic CDF of every (variant, point) would hold 60 curves: the
    # section draws its own per block kind; the counters that matter are in
    # its own tables (`lab show` lists them all)
    generic.render(report, family, extra_blocks=section_blocks(run, family), figures=False,
                   counters=False)
    latency_figures(report, family)
    preemption_figure(report, family)
    anatomy_figure(report, family)
    timer_figure(report, family)
    _upcall_fault.figure(report, family)


# -- tables and text ---------------------------------------------------------------------------

def _placement_title(placement: str) -> str:
    return f"{placement}: scheduler on " + ("the worker's CPU" if placement == SAME
                                           else "the other CPU")


def latency_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """The latency table, one per placement, and the yardstick under it."""
    data = latency_table(run, family)
    if data.empty:
        return []
    has_ratio = np.isfinite(data["vs_handoff"].astype(float)).any()
    has_woken = np.isfinite(data["woken_per_upcall"].astype(float)).any()
    header = ["mechanism", "event", "block_kind", "placement", "other", "n", "reps",
              "median [us]", "p90 [us]", "p99 [us]", "95% CI [us]", "rep spread [us]"]
    if has_ratio:
        header += ["/ handoff", "interval"]
    if has_woken:
        header.append("woken/upcall")
    header.append("")
    right = [False] * 5 + [True] * 5 + [False, False] + ([True, False] if has_ratio else []) \
        + ([True] if has_woken else []) + [False]
    notes = ["latency: the scheduler's stamp on learning of the event minus the kernel's time "
             "of it (bpf: bpf_ktime_get_ns() in the program at sched_switch / sched_waking; "
             "futex_hint: the worker's stamp before its FUTEX_WAKE; uring_cqe: the waker's "
             "stamp before its wake-up call, or the timeout's deadline). "
             + probe_text(run, family),
             "95% CI: of the median, hierarchical bootstrap over repetitions and samples; "
             "rep spread: min..max of the per-repetition medians; noisy: those spread more "
             "than 10% of the median"]
    if has_ratio:
        notes.append("/ handoff: the median over the same-CPU futex handoff's median "
                     "(baseline futex_pingpong, handoff series, same run); interval: the two "
                     "medians' 95% CIs divided crosswise")
    if has_woken:
        notes.append("woken/upcall: wake-ups of the scheduler thread per upcall in the runs "
                     "with probes (kernel view): 1 where it slept for every upcall, 0 where "
                     "it found them polling; '-': no kernel view")
    blocks: list[Block] = [Heading("Upcall latency by mechanism", size=12, keep_with_next=1.2)]
    placements = [p for p in PLACEMENTS if (data["placement"] == p).any()]
    placements += [p for p in dict.fromkeys(data["placement"]) if p not in placements]
    for i, placement in enumerate(placements):
        part = data[data["placement"] == placement]
        rows = [_latency_row(r, has_ratio, has_woken) for _, r in part.iterrows()]
        blocks.append(Table(header, rows, right=right, highlight=part["noisy"].tolist(),
                            caption=f"Upcall latency, {_placement_title(placement)}",
                            notes=notes if i == len(placements) - 1 else (),
                            max_rows=LATENCY_ROWS_PER_PAGE))
    blocks += [Text(line, size=9.5) for line in handoff_lines(run)]
    return blocks


def _latency_row(r: pd.Series, has_ratio: bool, has_woken: bool) -> list[str]:
    row = [r["mechanism"], r["event"], r["block_kind"], r["placement"], r["other"] or "-",
           str(r["n"]), str(r["reps"]), fmt_us(r["median"]), fmt_us(r["p90"]), fmt_us(r["p99"]),
           fmt_us_interval(r["ci_low"], r["ci_high"]), fmt_us_interval(r["rep_min"], r["rep_max"])]
    if has_ratio:
        row += [fmt_ratio(r["vs_handoff"]),
                f"{fmt_ratio_interval(r['vs_handoff_low'], r['vs_handoff_high'])}"]
    if has_woken:
        row.append(fmt_fraction(r["woken_per_upcall"]))
    row.append("noisy" if r["noisy"] else "")
    return row


def preemption_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """Preemption upcalls: the table, one row per mechanism and placement,
    and what it shows."""
    data = preemption_table(run, family)
    if data.empty:
        return []
    header = ["mechanism", "learner", "other", "n", "reps", "median [us]", "p99 [us]",
              "95% CI [us]", "rep spread [us]", "since resume [us]", "block upcall [us]",
              "/ block", "retries/run", "others/run", ""]
    rows = [[r["mechanism"], "the other CPU" if r["placement"] == CROSS else "itself, on return",
             r["other"] or "-", str(r["n"]), str(r["reps"]), fmt_us(r["median"]),
             fmt_us(r["p99"]), fmt_us_interval(r["ci_low"], r["ci_high"]),
             fmt_us_interval(r["rep_min"], r["rep_max"]), fmt_us(r["since_resume"]),
             fmt_us(r["block_median"]) + (f" ({r['block_kind']})" if r["block_kind"] else ""),
             fmt_ratio(r["vs_block"]), fmt_count(r["retries"]), fmt_count(r["others"]),
             "noisy" if r["noisy"] else ""] for _, r in data.iterrows()]
    notes = ["A pinned SCHED_FIFO competitor, timed by its own hrtimer on that CPU, takes the "
             "CPU of a worker spinning one priority below it; each sample is one preemption by "
             "the competitor (a wake that preempted nothing is a retry). median: the learner's stamp minus "
             "the program's bpf_ktime_get_ns() at the worker's sched_switch out. The other "
             "CPU: a scheduler there, by epoll on the ring (bpf_ringbuf) or spinning on the "
             "slot (bpf_flag). Itself, on return: the preempted worker, when it runs again, "
             "looks at its slot (bpf_flag), consumes the ring (bpf_ringbuf) or is resumed by "
             "the kernel at its rseq abort handler (rseq_abort); its median holds the time "
             "the competitor kept the CPU, since resume (its stamp minus the program's stamp "
             "of its switch back in) does not.",
             "block upcall: the lowest block-upcall median of the same mechanism and placement "
             "in this run (its block_kind); / block: the preemption median over it (itself, "
             "on return: the since-resume median, from when it could react). "
             "others/run: preemptions by another task (the kernel's fair server giving a "
             "load task the CPU), published and counted, no sample. " + probe_text(run, family)]
    blocks: list[Block] = [
        Heading("Preemption upcalls: the runtime learns that a VP was preempted", size=12,
                keep_with_next=1.2),
        Table(header, rows, right=[False] * 3 + [True] * 2 + [False] * 4 + [True] * 5 + [False],
              highlight=data["noisy"].tolist(),
              caption="Preemption upcalls by mechanism and learner", notes=notes)]
    return blocks + [Text(line, size=9.5) for line in preemption_lines(run, family)]


def anatomy_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = anatomy_table(run, family)
    if data.empty:
        return []
    header = ["mechanism", "event", "block_kind", "placement", "other", "latency [us]"] + \
        [f"{st} [us]" for st in STAGES] + ["IPIs", "self-IPIs", "prog ns/run", "prog ns/upcall"]
    rows = []
    for _, r in data.iterrows():
        rows.append([r["mechanism"], r["event"], r["block_kind"], r["placement"],
                     r["other"] or "-", fmt_us(r["latency_median"])]
                    + [_stage_cell(r, st) for st in STAGES]
                    + [fmt_fraction(r["ipis_per_upcall"]), fmt_fraction(r["self_ipis_per_upcall"]),
                       fmt_count(r["program_ns_per_run"]), fmt_count(r["program_ns_per_upcall"])])
    notes = ["each stage: the median of its samples, in brackets the lowest and highest "
             "repetition's median; '-': the stage never happened (a polling scheduler is never "
             "woken); a sample's stages sum to its latency, their medians need not",
             "stages: " + "; ".join(f"{st}: {STAGE_TEXT[st]}" for st in STAGES),
             "IPIs / self-IPIs: sent by the event's CPU per upcall (the irq_work of a BPF "
             "wake-up is a self-IPI); prog ns/run: the upcall program's run time per run "
             "(bpf_prog_info with BPF stats on, every sched_switch / sched_waking of the "
             "machine), prog ns/upcall: its run time per upcall, what the blocking side pays"]
    blocks: list[Block] = [Heading("Anatomy of an upcall: where the microseconds go", size=12,
                                   keep_with_next=1.2),
                           Table(header, rows, right=[False] * 5 + [True] * 11,
                                 caption="The kernel's stages of each upcall (runs with "
                                         "anatomy = true), from raw tracepoints",
                                 notes=notes, max_rows=LATENCY_ROWS_PER_PAGE)]
    blocks += [Text(line, size=9.5, indent=0.15) for line in anatomy_lines(run, family)]
    return blocks


def _stage_cell(r: pd.Series, stage: str) -> str:
    """median (lowest..highest repetition's), or '-' for a stage that never happened."""
    if r[f"{stage}_seen"] == 0:
        return "-"
    return (f"{fmt_us(r[stage])} ({fmt_us(r[f'{stage}_rep_min'])}.."
            f"{fmt_us(r[f'{stage}_rep_max'])})")


def crosscheck_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    if latency_table(run, family).empty:
        return []
    reason = kernel_view_status(run, family)
    heading = Heading("Kernel cross-check: the scheduler's wake-to-run", size=12,
                      keep_with_next=1.2)
    if reason is not None:
        return [heading, Text(f"no kernel view: {reason}", color="#a63603")]
    check = wake_check(run, family)
    if not check.empty:
        slept = latency_table(run, family).set_index(["variant", "point"])["slept_fraction"]
        check = check.assign(slept_fraction=[slept.get((v, p), math.nan)
                                             for v, p in zip(check["variant"], check["point"])])
    if check.empty:
        return [heading, Text("No run of a sleeping mechanism (" + ", ".join(SLEEPING)
                              + ") had probes attached.", size=9.5)]
    rows = [[r["mechanism"], r["event"], r["block_kind"], r["placement"], r["other"] or "-",
             str(r["kernel_reps"]), fmt_us(r["upcall_median"]), fmt_us(r["wake_median"]),
             fmt_us(r["before_wake"]), str(r["wake_n"]) if r["wake_n"] else "-",
             fmt_fraction(r["wakeups_per_upcall"]), r["wake_of"] or "-"]
            for _, r in check.iterrows()]
    header = ["mechanism", "event", "block_kind", "placement", "other", "reps",
              "upcall median [us]", "wake-to-run median [us]", "before wake [us]", "wake-ups",
              "per upcall", "wake-ups of"]
    right = [False] * 5 + [True] * 6 + [False]
    notes = ["upcall median: of the runs with probes attached (the same runs as the "
             "wake-ups); wake-to-run: sched_waking of the thread to it running "
             "(sched:sched_switch), median of the pooled wake-up records",
             f"wake-ups of: '{SCHEDULER_WAKEUPS}' = the worker process's main thread, which "
             "calls upcall_run() and is the scheduler (the lowest thread id the probes saw in "
             f"the run); '{ALL_WAKEUPS}' where that thread had no wake-up recorded",
             "before wake: upcall median minus wake-to-run median, the time from the event to "
             "the kernel waking the scheduler (and its return to user space)"]
    blocks: list[Block] = [heading]
    placements = list(dict.fromkeys(check["placement"]))
    for i, placement in enumerate(placements):
        index = [j for j, p in enumerate(check["placement"]) if p == placement]
        blocks.append(Table(header, [rows[j] for j in index], right=right,
                            caption="Upcall latency against the kernel's wake-to-run of the "
                                    f"scheduler thread, {_placement_title(placement)}",
                            notes=notes if i == len(placements) - 1 else (),
                            max_rows=LATENCY_ROWS_PER_PAGE))
    return blocks + [Text(line, size=9.5, indent=0.15) for line in crosscheck_lines(check)]


def since_source_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = since_source_table(run, family)
    if data.empty:
        return []
    urings = [u for u in URING_CQE if np.isfinite(data[u].astype(float)).any()]
    header = ["mechanism", "block_kind", "placement", "other", "latency median [us]",
              "since_source median [us]", "since_source p99 [us]"] \
        + [f"{u} [us]" for u in urings]
    rows = [[r["mechanism"], r["block_kind"], r["placement"], r["other"] or "-",
             fmt_us(r["latency"]), fmt_us(r["since_source"]), fmt_us(r["since_source_p99"])]
            + [fmt_us(r[u]) for u in urings] for _, r in data.iterrows()]
    notes = ["since_source: the scheduler's stamp minus the source's own time (the waker's "
             "stamp before its call; a nanosleep's deadline, so a SCHED_OTHER sleep's timer "
             "slack is in it), the measure of the uring_cqe variants' latency",
             "uring_cqe columns: those variants' latency medians at the same block_kind, "
             "placement and block_us ('-': not in this run)"]
    return [Heading("since_source: unblock upcalls measured from the source", size=12,
                    keep_with_next=1.2),
            Table(header, rows, right=[False] * 4 + [True] * (3 + len(urings)),
                  caption="bpf unblock upcalls of futex, pipe and nanosleep blocks, medians",
                  notes=notes)]


def timer_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    rows = timer_rows(run, family)
    if rows.empty:
        return []
    pivot = timer_pivot(rows)
    variants = [v for v in TIMERS if (v, "median") in pivot.columns]
    extra = [c for c in ("overruns", "timer_slack_ns", "drift_per_period_ns")
             if np.isfinite(pivot[(c, "")].astype(float)).any()]
    names = {"overruns": "overruns", "timer_slack_ns": "slack [us]",
             "drift_per_period_ns": "drift/period [us]"}
    header = list(TIMER_AXES) + [v.replace("timer_", "") for v in variants] \
        + [names[c] for c in extra]
    table_rows = []
    for point, r in pivot.iterrows():
        row = [str(v) for v in point]
        row += [f"{fmt_us(r[(v, 'median')])} / {fmt_us(r[(v, 'p99')])}"
                if math.isfinite(r[(v, "median")]) else "-" for v in variants]
        row += [fmt_count(r[(c, "")]) if c == "overruns" else fmt_us(r[(c, "")]) for c in extra]
        table_rows.append(row)
    notes = ["each variant's cell: median / p99 lateness [us] (when user code ran on the "
             "expiry minus the expiry asked for), user side; timer_ left out of the names",
             "overruns: expiries that passed unseen, summed over the point's variants (median "
             "over the runs each); slack: our threads' timer slack at SCHED_OTHER points "
             "(clock_nanosleep honours it, timerfd, POSIX timers and io_uring timeouts do "
             "not); drift/period: timer_uring_multishot's schedule sliding per period (the "
             "kernel re-arms relative to the CQE it posts)"]
    blocks: list[Block] = [Heading("Timer upcalls: lateness beside cyclictest", size=12,
                                   keep_with_next=1.2),
                           Table(header, table_rows,
                                 right=[True] * len(TIMER_AXES) + [True] * (len(variants)
                                                                            + len(extra)),
                                 caption="Lateness of a periodic timer per point: median / p99 "
                                         "[us] per variant", notes=notes)]
    for line in timer_lines(rows):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.03)]
    return blocks


def mechanics_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    zero = must_be_zero(run, family)
    blocks: list[Block] = []
    if zero:
        bad = {k: v for k, v in zero.items() if v[0] != 0}
        runs = max(v[1] for v in zero.values())
        if not bad:
            text = (f"{', '.join(zero)}: 0 in every one of the {runs} runs of the upcall "
                    "mechanisms (with probes and without): every ring record was consumed "
                    "once, in order, from the registered thread, and no flag update folded "
                    "two events.")
            blocks.append(Text(text, size=9.5))
        else:
            text = "; ".join(f"{k} = {fmt_count(v[0])} over {v[2]} of {v[1]} runs"
                             for k, v in bad.items())
            blocks.append(Text(f"Must be 0 but is not: {text}: those runs did not run as "
                               "built.", size=9.5, color="#a63603"))
    table = mechanics_table(run, family)
    if not table.empty:
        names = [c for c in table.columns if c in MECHANICS + (SLEPT,)]
        header = ["variant", "event", "block_kind", "placement", "other"] + names
        rows = [[r["variant"], r["event"], r["block_kind"], r["placement"], r["other"] or "-"]
                + [("-" if not math.isfinite(float(r[c])) else
                    f"{float(r[c]):.3f}" if c == SLEPT else fmt_count(float(r[c])))
                   for c in names] for _, r in table.iterrows()]
        blocks.append(Table(header, rows, right=[False] * 5 + [True] * len(names),
                            caption="How the upcalls went: the rows where something was not "
                                    "0, and the spin-then-sleep scheduler",
                            notes=["medians over the user-side runs; lost_upcalls: unblock "
                                   "events the program never ran for (the kernel skipped a "
                                   "nested tracing program); program_misses: the kernel's "
                                   "recursion misses of the upcall program; not_blocked: calls "
                                   "that returned without blocking (no upcall, repeated); "
                                   "extra_events: a second block within one upcall (a pread); "
                                   "slept_fraction: upcalls bpf_flag_sleep's scheduler slept "
                                   "for, not found by polling", "every row not listed: all of "
                                   "these 0"]))
    elif zero:
        blocks.append(Text(", ".join(MECHANICS) + ": 0 in every row.", size=9.5))
    if blocks:
        blocks.insert(0, Heading("Counters that prove the mechanics", size=12,
                                 keep_with_next=1.0))
    return blocks


def findings_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    lines = findings_lines(run, family) if not latency_table(run, family).empty else []
    if not lines:
        return []
    blocks: list[Block] = [Heading("What this run shows", size=12, keep_with_next=0.8)]
    for line in lines:
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    return blocks


def paper_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    blocks: list[Block] = [Heading("What the scheduler activations paper measured", size=12,
                                   keep_with_next=0.8)]
    for line in paper_lines(run, family):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    return blocks


def section_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    """Everything the section adds after the generic tables, in order."""
    return (findings_blocks(run, family) + latency_blocks(run, family)
            + preemption_blocks(run, family) + anatomy_blocks(run, family) + crosscheck_blocks(run, family)
            + since_source_blocks(run, family)
            + timer_blocks(run, family) + _upcall_fault.blocks(run, family)
            + mechanics_blocks(run, family)
            + (paper_blocks(run, family) if not latency_table(run, family).empty else []))


# -- figures ------------------------------------------------------------------------------------

def variant_colors() -> dict[str, Any]:
    """One colour per mechanism, the same in every figure, and one per timer
    variant (they never share a figure with the mechanisms)."""
    return {**dict(zip(MECHANISMS, plots.palette(len(MECHANISMS)))),
            **dict(zip(TIMERS, plots.palette(len(TIMERS))))}


def _line_style(event: str, other_index: int) -> str:
    if other_index:
        return ":" if event == "block" else "-."
    return "-" if event == "block" else "--"


def cdf_lines(run: Run, data: pd.DataFrame, family: str = FAMILY) -> list[tuple[str, np.ndarray,
                                                                                  dict]]:
    """plots.cdf_curves input for the rows of ``data`` (one placement): each
    row's user-side latency samples in us, labelled ``variant event``."""
    samples = headline_samples(run, family)
    samples = samples[samples["metric"].astype(str) == LATENCY]
    colors = variant_colors()
    others: dict[str, list[str]] = {}
    curves = []
    for _, r in data.iterrows():
        values = samples.loc[(samples["variant"].astype(str) == r["variant"])
                             & (samples["point"].astype(str) == r["point"]), "value"]
        seen = others.setdefault(r["variant"], [])
        if r["other"] not in seen:
            seen.append(r["other"])
        label = f"{r['variant']} {r['event']}" + (f" {r['other']}" if r["other"] else "")
        curves.append((label, values.to_numpy(dtype=float) / 1000,
                       {"color": colors.get(r["variant"]),
                        "linestyle": _line_style(r["event"], seen.index(r["other"]))}))
    return curves


def bars_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """rows as plots.bars wants them: in us, labelled ``variant event``."""
    out = rows.copy()
    for col in ("median", "ci_low", "ci_high", "p99"):
        out[col] = out[col].astype(float) / 1000
    out["unit"] = "us"
    out["point"] = [f"{e} {k}" + (f" {o}" if o else "")
                    for e, k, o in zip(out["event"], out["block_kind"], out["other"])]
    return out


def latency_figures(report: Report, family: str = FAMILY) -> None:
    """Per block kind: the CDF of every mechanism's upcall latency, one panel
    per placement; then the medians with their p99, every point, one panel
    per placement."""
    run = report.run
    data = latency_table(run, family)
    if data.empty:
        return
    placements = [p for p in PLACEMENTS if (data["placement"] == p).any()]
    for kind in block_kinds(data):
        part = in_table_order(data[data["block_kind"] == kind], by_placement=False)
        with report.figure(f"{family}: upcall latency, block_kind={kind}",
                           nrows=len(placements),
                           caption="Empirical CDF of every upcall's latency (the user-side "
                                   "runs, repetitions pooled), log x. One colour per "
                                   "mechanism; solid: block upcalls, dashed: unblock upcalls "
                                   "(futex_hint tells of a block, uring_cqe of an unblock); "
                                   "dotted / dash-dotted: the same with other parameters. The x "
                                   "axis ends at the slowest curve's p99.9; each legend entry "
                                   "gives n and the largest sample.") as (fig, axes):
            for ax, placement in zip(axes, placements):
                rows = part[part["placement"] == placement]
                if rows.empty:
                    continue
                plots.cdf_curves(ax, cdf_lines(run, rows, family), xlabel="upcall latency [us]",
                                 log=True, title=_placement_title(placement), legend=False)
                plots.plain_log_ticks(ax, "x")
                plots.legend_right(ax, fontsize=7)
    with report.figure(f"{family}: upcall latency medians", ncols=len(placements),
                       caption="Median of every mechanism and point (bars), 95% CI of the "
                               "median (whiskers) and p99 (diamonds), user-side runs, log x; "
                               "rows by mechanism, event, block kind. Grey lines: the baseline "
                               "family's futex_pingpong one-way handoff in the same run, on one "
                               "CPU (dotted) and across CPUs (dash-dotted), where the run has "
                               "it.") as (fig, axes):
        refs = handoff_reference(run)
        for j, (ax, placement) in enumerate(zip(axes, placements)):
            rows = in_table_order(data[data["placement"] == placement], by_placement=False)
            for where, style in ((SAME, ":"), (CROSS, "-.")):
                if where in refs:
                    ax.axvline(refs[where]["median"] / 1000, color="0.35", linewidth=1.0,
                               linestyle=style, zorder=0,
                               label=f"futex handoff, {where} ({fmt_us(refs[where]['median'])} us)")
            plots.bars(ax, bars_frame(rows), log=True, title=placement,
                       legend=j == 0)
            plots.plain_log_ticks(ax, "x")


def preemption_figure(report: Report, family: str = FAMILY) -> None:
    """The CDF of every preemption upcall's latency (solid) and, for the
    preempted worker learning itself, of its since_resume (dashed), log x."""
    run = report.run
    data = preemption_table(run, family)
    if data.empty:
        return
    samples = headline_samples(run, family)
    every = user_samples(run)
    resumed = every[(every["family"] == family).to_numpy()
                    & (every["metric"].astype(str) == SINCE_RESUME).to_numpy()]
    colors = dict(zip(PREEMPT_MECHANISMS, plots.palette(len(PREEMPT_MECHANISMS))))
    curves = []
    for _, r in data.iterrows():
        learner = "other CPU" if r["placement"] == CROSS else "itself"
        pick = (samples["variant"].astype(str) == r["variant"]) \
            & (samples["point"].astype(str) == r["point"]) \
            & (samples["metric"].astype(str) == LATENCY)
        curves.append((f"{r['mechanism']}, {learner}: after the switch",
                       samples.loc[pick, "value"].to_numpy(dtype=float) / 1000,
                       {"color": colors.get(r["mechanism"]),
                        "linestyle": "-" if r["placement"] == CROSS else "-."}))
        if r["placement"] == SAME:
            pick = (resumed["variant"].astype(str) == r["variant"]) \
                & (resumed["point"].astype(str) == r["point"])
            curves.append((f"{r['mechanism']}, itself: since resume",
                           resumed.loc[pick, "value"].to_numpy(dtype=float) / 1000,
                           {"color": colors.get(r["mechanism"]), "linestyle": ":"}))
    with report.figure(f"{family}: preemption upcalls",
                       caption="Empirical CDF of the preemption upcalls (user-side runs, "
                               "repetitions pooled), log x. Solid: a scheduler on the other "
                               "CPU learns, from the kernel's switch out; dash-dotted: the "
                               "preempted worker learns when it runs again, from the same "
                               "switch (the competitor's burst included); dotted: the same, "
                               "from its switch back in.") as (fig, axes):
        ax = axes.flat[0]
        plots.cdf_curves(ax, curves, xlabel="preemption upcall latency [us]", log=True,
                         legend=False)
        plots.plain_log_ticks(ax, "x")
        plots.legend_right(ax, fontsize=7)


def anatomy_figure(report: Report, family: str = FAMILY) -> None:
    """A stacked bar of the stage medians per mechanism point, one panel
    per placement, the latency median as a tick."""
    run = report.run
    data = anatomy_table(run, family)
    if data.empty:
        return
    placements = [p for p in PLACEMENTS if (data["placement"] == p).any()]
    colors = dict(zip(STAGES, plots.palette(len(STAGES))))
    with report.figure(f"{family}: anatomy of an upcall", nrows=len(placements),
                       caption="Median of each kernel stage per mechanism and point (stacked "
                               "bars, us; runs with anatomy = true, user-side samples pooled), "
                               "from the event (sched_switch / sched_waking of the worker, or "
                               "the user stamp for futex_hint and uring) to the scheduler's "
                               "own stamp; black tick: the latency median of the same samples "
                               "(medians of stages need not add up to it).") as (fig, axes):
        for ax, placement in zip(axes, placements):
            rows = data[data["placement"] == placement].iloc[::-1]
            y = np.arange(len(rows))
            left = np.zeros(len(rows))
            for st in STAGES:
                width = rows[st].astype(float).to_numpy() / 1000
                ax.barh(y, width, left=left, color=colors[st], label=st, height=0.7)
                left += width
            ax.plot(rows["latency_median"].astype(float).to_numpy() / 1000, y, "|",
                    color="black", markersize=12, label="latency median")
            ax.set_yticks(y, [row_label(r).replace(f" {placement}", "")
                              for _, r in rows.iterrows()], fontsize=6.5)
            ax.set_xlabel("us")
            ax.set_title(_placement_title(placement), fontsize=9)
            plots.legend_right(ax, fontsize=7)


def timer_figure(report: Report, family: str = FAMILY) -> None:
    """The CDF of each timer variant's lateness, one panel per point."""
    run = report.run
    rows = timer_rows(run, family)
    if rows.empty:
        return
    samples = headline_samples(run, family)
    samples = samples[samples["metric"].astype(str) == LATENESS]
    colors = variant_colors()
    points = list(dict.fromkeys(timer_point(r) for _, r in rows.iterrows()))
    ncols = min(len(points), 3)
    nrows = -(-len(points) // ncols)
    with report.figure(f"{family}: timer lateness", nrows=nrows, ncols=ncols,
                       caption="Empirical CDF of each timer variant's lateness (when user code "
                               "ran on the expiry minus the expiry asked for), user-side runs, "
                               "repetitions pooled, log x; cyclictest dashed. The x axis ends "
                               "at the slowest curve's p99.9.") as (fig, axes):
        for j, point in enumerate(points):
            mine = rows[[timer_point(r) == point for _, r in rows.iterrows()]]
            curves = []
            for _, r in mine.iterrows():
                values = samples.loc[(samples["variant"].astype(str) == r["variant"])
                                     & (samples["point"].astype(str) == r["point"]), "value"]
                curves.append((r["variant"], values.to_numpy(dtype=float) / 1000,
                               {"color": colors.get(r["variant"]),
                                "linestyle": "--" if r["variant"] == CYCLICTEST else "-"}))
            plots.cdf_curves(axes[j], curves, xlabel="lateness [us]", log=True,
                             title=timer_point_text(point), legend=False)
            plots.plain_log_ticks(axes[j], "x")
            plots.legend_below(axes[j], ncol=1, fontsize=7)


__all__ = ["render", "section_blocks", "latency_blocks", "cdf_lines", "bars_frame",
           "variant_colors"]
