"""The kernel's own view of a run, beside the user-side numbers: what the
probes (lab/probes, bcc on tracepoints) counted in each run's measured
window, and what attaching them cost.

- kernel_view_table(): per (variant, point), the run totals per operation
  (context switches, system calls, wake-ups, io_uring submissions and
  punts), migrations, and the wake-to-run latency pooled from the wake-up
  records.  Per-operation counts are the median over repetitions, marked
  when the repetitions disagree by more than 10% (the user side's noisy
  rule).
- probe_overhead_table(): when the suite ran every run twice (with and
  without probes, interleaved: ``probe_overhead``), each headline median
  with probes over the one without, minus one.

The runs each side uses follow analysis._views.run_sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis._format import KERNEL_NOISY_NOTE, P99_MIN_RECORDS, fmt_count, fmt_percent, fmt_value
from analysis._results import Run, wakeup_columns
from analysis._stats import NOISY_SPREAD, summarise
from analysis._views import (
    PAIRED,
    headline,
    is_headline,
    kernel_run_ids,
    label,
    median_ratio,
    per_run,
    pivot_wide,
    run_sources,
)

# per-operation run totals (lab/probes PER_OP), in table order: metric, header
PER_OP = (
    ("switches_per_op", "switches/op"),
    ("voluntary_switches_per_op", "vol/op"),
    ("involuntary_switches_per_op", "invol/op"),
    ("syscalls_per_op", "syscalls/op"),
    ("wakeups_per_op", "wakeups/op"),
    ("submits_per_op", "submits/op"),
    ("punts_per_op", "punts/op"),
)
PER_RUN = (("migrations", "migrations"),)
WAKE = (("wake_to_run_p50_ns", "wake-to-run p50 [ns]"), ("wake_to_run_p99_ns", "p99 [ns]"))
# shown only where some row is non-zero
ONLY_NONZERO = ("submits_per_op",)
NOISY_MARK = "*"

# the wake-to-run figures' source, per row of kernel_view_table
FROM_RECORDS = "records"          # pooled wake-up records of the cell's runs
FROM_RUN_PERCENTILES = "run percentiles"    # median of the per-run p50 / p99

COLUMN_HELP = (
    "switches/op: context switches of the run's threads (sched:sched_switch) per operation, "
    "split into vol/op (the thread blocked) and invol/op (it was preempted)",
    "syscalls/op: system calls entered by the run's threads (raw_syscalls:sys_enter) per "
    "operation",
    "wakeups/op: wake-ups of the run's threads (sched:sched_waking) per operation",
    "submits/op, punts/op: io_uring requests submitted, and punted to an io-wq worker "
    "(io_uring:io_uring_submit_req, io_uring_queue_async_work), per operation",
    "migrations: moves of the run's threads between CPUs (sched:sched_migrate_task) per run",
    "wake-to-run p50, p99: from sched_waking of a thread to it running (sched_switch), "
    "percentiles of every wake-up record of the row's runs pooled",
)


def kernel_view_status(run: Run, family: str | None = None) -> str | None:
    """None when the run (or the family) has a kernel view, else why not."""
    kv = run.manifest.get("kernel_view")
    if not kv:
        return "not recorded (results written before the lab had probes)"
    if not kv.get("enabled"):
        return kv.get("reason") or "no reason recorded"
    if family is not None and not kernel_run_ids(run, family):
        runs = run.runs[run.runs["family"].astype(str) == family]
        if runs["kernel_view"].any():
            return "no run of this family with probes attached finished ok"
        return "no run of this family had probes attached"
    return None


def kernel_view_line(run: Run) -> str:
    """The title page's status line: which probes and headers, or why none."""
    reason = kernel_view_status(run)
    if reason is not None:
        return f"no kernel view: {reason}"
    kv = run.manifest["kernel_view"]
    probes = ", ".join(kv.get("probes") or []) or "none listed"
    return (f"kernel view: probes {probes} (bcc on tracepoints); kernel headers: "
            f"{kv.get('headers') or 'not recorded'}")


@per_run
def kernel_metric_summary(run: Run, family: str) -> pd.DataFrame:
    """One row per (variant, point, metric) of the probes' run totals (key
    "") over the family's runs with kernel view: reps, median, rep_min,
    rep_max (the lowest and highest run), noisy (they spread more than 10%
    of the median)."""
    ids = kernel_run_ids(run, family)
    m = run.metrics
    m = m[m["run_id"].isin(ids) & (m["key"] == "")]
    if m.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
            ("variant", "object"), ("point", "object"), ("metric", "object"), ("reps", "int64"),
            ("median", "float64"), ("rep_min", "float64"), ("rep_max", "float64"),
            ("noisy", "bool"))})
    g = m.groupby(["variant", "point", "metric"], observed=True, sort=True)["value"]
    out = g.agg(reps="size", median="median", rep_min="min", rep_max="max").reset_index()
    out["noisy"] = (out["rep_max"] - out["rep_min"]) > NOISY_SPREAD * out["median"].abs()
    return out


@per_run
def wake_to_run(run: Run, family: str) -> pd.DataFrame:
    """Per (variant, point) with kernel view: n (wake-up records pooled),
    p50 and p99 of waking_to_run_ns, and their source: the records, or the
    median of the per-run percentiles when no record is stored."""
    src = run_sources(run)
    src = src[(src["family"].astype(str) == family) & src["kernel_side"]]
    records = wakeup_columns(run, src["run_id"].tolist(), missing="skip")
    pooled = {}
    for (variant, point), ids in src.groupby(["variant", "point"], observed=True)["run_id"]:
        lat = np.concatenate([records[i]["waking_to_run_ns"].astype(np.float64)
                              for i in ids if i in records] + [np.empty(0)])
        if lat.size:
            p50, p99 = np.percentile(lat, [50, 99])
            pooled[(str(variant), str(point))] = (lat.size, p50, p99)
    per_run = kernel_metric_summary(run, family)
    per_run = {(str(r.variant), str(r.point), str(r.metric)): r.median
               for r in per_run.itertuples(index=False) if str(r.metric).startswith("wake_to_run")}
    rows: list[tuple[str, str, int, float, float, str | None]] = []
    for variant, point in dict.fromkeys(zip(src["variant"].astype(str), src["point"].astype(str))):
        if (variant, point) in pooled:
            n, p50, p99 = pooled[(variant, point)]
            rows.append((variant, point, n, p50, p99, FROM_RECORDS))
            continue
        p50 = per_run.get((variant, point, "wake_to_run_p50_ns"), math.nan)
        p99 = per_run.get((variant, point, "wake_to_run_p99_ns"), math.nan)
        rows.append((variant, point, 0, p50, p99,
                     None if math.isnan(p50) else FROM_RUN_PERCENTILES))
    return pd.DataFrame.from_records(rows, columns=["variant", "point", "wakeups_recorded",
                                                    "wake_to_run_p50_ns", "wake_to_run_p99_ns",
                                                    "wake_to_run_from"])


def _cell_order(run: Run, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order of the family's variants, then the suite's points."""
    variants = run.runs["variant"].cat.categories
    points = run.runs["point"].cat.categories
    frame = frame.copy()
    frame["variant"] = pd.Categorical(frame["variant"].astype(str), categories=variants)
    frame["point"] = pd.Categorical(frame["point"].astype(str), categories=points)
    return frame.sort_values(["variant", "point"], kind="stable").reset_index(drop=True)


@per_run
def kernel_view_table(run: Run, family: str) -> pd.DataFrame:
    """One row per (variant, point) with kernel view: reps, the median over
    repetitions of each per-operation count (PER_OP), migrations per run,
    wake-to-run p50 and p99 [ns] (wake_to_run), and ``noisy``: the
    per-operation columns whose repetitions disagree by more than 10%
    (comma-separated).  Empty when the family has no kernel view."""
    src = run_sources(run)
    src = src[(src["family"].astype(str) == family) & src["kernel_side"]]
    columns = (["variant", "point", "reps"] + [m for m, _ in PER_OP + PER_RUN]
               + ["wake_to_run_p50_ns", "wake_to_run_p99_ns", "wakeups_recorded",
                  "wake_to_run_from", "noisy"])
    if src.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    summary = kernel_metric_summary(run, family)
    medians = {(str(r.variant), str(r.point), str(r.metric)): float(r.median)
               for r in summary.itertuples(index=False)}
    noisy = summary[summary["noisy"] & summary["metric"].astype(str).isin([m for m, _ in PER_OP])]
    noisy_by_cell: dict[tuple[str, str], list[str]] = {}
    for r in noisy.itertuples(index=False):
        noisy_by_cell.setdefault((str(r.variant), str(r.point)), []).append(str(r.metric))
    reps = src.groupby(["variant", "point"], observed=True).size()
    wake = {(r["variant"], r["point"]): r for r in wake_to_run(run, family).to_dict("records")}
    rows = []
    for (variant, point), n in reps.items():
        cell = (str(variant), str(point))
        row = {"variant": cell[0], "point": cell[1], "reps": int(n)}
        for metric, _ in PER_OP + PER_RUN:
            row[metric] = medians.get(cell + (metric,), math.nan)
        w = wake.get(cell)
        row["wake_to_run_p50_ns"] = math.nan if w is None else float(w["wake_to_run_p50_ns"])
        row["wake_to_run_p99_ns"] = math.nan if w is None else float(w["wake_to_run_p99_ns"])
        row["wakeups_recorded"] = 0 if w is None else int(w["wakeups_recorded"])
        row["wake_to_run_from"] = None if w is None else w["wake_to_run_from"]
        order = [m for m, _ in PER_OP]
        row["noisy"] = ", ".join(sorted(noisy_by_cell.get(cell, []), key=order.index))
        rows.append(row)
    return _cell_order(run, pd.DataFrame(rows, columns=columns))


# -- probe overhead -----------------------------------------------------------

@per_run
def _probed_headline_summary(run: Run, seed: int = 0) -> pd.DataFrame:
    """summarise() of the headline samples of every family's runs with
    probes in paired cells: all families' cells bootstrapped together
    (in batches, on every CPU) rather than a family at a time."""
    src = run_sources(run)
    ids = src.loc[(src["cell"] == PAIRED) & src["kernel_view"], "run_id"]
    s = run.samples
    s = s.loc[s["run_id"].isin(ids).to_numpy(),
              ["family", "variant", "point", "metric", "kernel_view", "run_id", "unit", "value"]]
    keep = np.zeros(len(s), dtype=bool)
    for family in run.families:
        rows = (s["family"] == family).to_numpy()
        keep[rows] = is_headline(run, family, s[rows])
    return summarise(s[keep], by=("family", "variant", "point", "metric", "kernel_view"), seed=seed)


@per_run
def probe_overhead_table(run: Run, family: str, seed: int = 0) -> pd.DataFrame:
    """Per (variant, point) that ran with and without probes: the headline
    metric's median without (median_without) and with probes (median_with),
    overhead = with / without - 1, its interval from the medians' 95% CIs
    taken crosswise (ci_low, ci_high: at least as wide as the ratio's own),
    the lowest and highest per-repetition overhead (rep_low, rep_high: each
    repetition's run with probes against its twin without, which ran next
    to it), and noisy when either side's repetition medians spread more
    than 10%.  Empty when the suite did not measure probe overhead."""
    columns = ["variant", "point", "metric", "unit", "reps", "median_without", "median_with",
               "overhead", "ci_low", "ci_high", "rep_low", "rep_high", "noisy"]
    src = run_sources(run)
    src = src[(src["family"].astype(str) == family) & (src["cell"] == PAIRED)]
    if src.empty or family not in run.families:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    s = run.samples
    # only the columns used: picking rows copies every column there is
    s = s.loc[s["run_id"].isin(src["run_id"]).to_numpy(), ["variant", "metric", "run_id", "value"]]
    s = s[is_headline(run, family, s)]
    # without probes is the user side (run_sources): its row of the headline
    # table, interval and all, so the two tables agree (and it is computed once)
    without_of = {(str(r["variant"]), str(r["point"]), str(r["metric"])): r
                  for r in headline(run, family, seed).to_dict("records")}
    with_probes = _probed_headline_summary(run, seed)
    with_probes = with_probes[with_probes["family"] == family]
    per_run = s.groupby("run_id")["value"].median()
    # every cell's twins at once (a pivot per cell cost more than the rest of the table)
    src = src.assign(variant=src["variant"].astype(str), point=src["point"].astype(str),
                     median=src["run_id"].map(per_run).to_numpy())
    twins = pivot_wide(src, ["variant", "point", "repetition"], "kernel_view", "median",
                       "median").dropna()
    per_rep = (twins[True] / twins[False] - 1).groupby(level=["variant", "point"]) \
        .agg(["min", "max"])
    rep_spread = dict(zip(per_rep.index, zip(per_rep["min"], per_rep["max"])))
    rows = []
    for with_ in with_probes.to_dict("records"):
        variant, point, metric = str(with_["variant"]), str(with_["point"]), str(with_["metric"])
        without = without_of.get((variant, point, metric))
        if without is None:
            continue
        ratio, low, high = median_ratio(with_, without)
        rep_low, rep_high = rep_spread.get((variant, point), (math.nan, math.nan))
        rows.append({"variant": variant, "point": point, "metric": metric,
                     "unit": str(with_["unit"]), "reps": int(min(with_["reps"], without["reps"])),
                     "median_without": float(without["median"]),
                     "median_with": float(with_["median"]),
                     "overhead": ratio - 1, "ci_low": low - 1, "ci_high": high - 1,
                     "rep_low": float(rep_low), "rep_high": float(rep_high),
                     "noisy": bool(with_["noisy"] or without["noisy"])})
    return _cell_order(run, pd.DataFrame(rows, columns=columns))


@dataclass(frozen=True)
class OverheadSummary:
    rows: int
    median: float           # median overhead over the family's rows
    low: float              # the smallest and largest row's overhead
    high: float
    low_at: str             # which row
    high_at: str


def probe_overhead_summary(run: Run, family: str, seed: int = 0) -> OverheadSummary | None:
    """The family's probe overhead in one line: median over its rows, min..max."""
    table = probe_overhead_table(run, family, seed)
    table = table[np.isfinite(table["overhead"].astype(float))] if len(table) else table
    if table.empty:
        return None
    o = table["overhead"].astype(float)
    lo, hi = table.loc[o.idxmin()], table.loc[o.idxmax()]
    return OverheadSummary(len(table), float(o.median()), float(o.min()), float(o.max()),
                           label(str(lo["variant"]), str(lo["point"])),
                           label(str(hi["variant"]), str(hi["point"])))


def overhead_sentence(run: Run, family: str, seed: int = 0) -> str | None:
    """The family's probe overhead summary as one sentence (None without data)."""
    s = probe_overhead_summary(run, family, seed)
    if s is None:
        return None
    probes = ", ".join((run.manifest.get("kernel_view") or {}).get("probes") or []) or "the probes"
    where = (f"from {fmt_percent(s.low)} ({s.low_at}) to {fmt_percent(s.high)} ({s.high_at})"
             if s.rows > 1 else f"at {s.low_at}")
    return (f"Probe overhead on {family}: median {fmt_percent(s.median)} over "
            f"{s.rows} variant point{'s' if s.rows != 1 else ''}, {where}: the headline "
            f"median with {probes} attached against the same variant without probes, "
            "interleaved in the same suite run.")


def kernel_view_notes(run: Run, family: str, table: pd.DataFrame) -> list[str]:
    """What the kernel view table's columns mean and where they come from."""
    kv = run.manifest.get("kernel_view") or {}
    notes = ["Counts cover exactly each run's measured window (the probes count between the "
             "worker's \"ready\" and \"done\"; warm-up and set-up are outside it), for the "
             "threads of that run only; per operation = the run's total / the operations in "
             "its window. Each cell: the median over the repetitions with probes attached."]
    notes += list(COLUMN_HELP)
    notes[-1] += (f"; the wake-ups column gives how many records; p99 needs at least "
                  f"{P99_MIN_RECORDS}")
    if len(table) and (table["wake_to_run_from"] == FROM_RUN_PERCENTILES).any():
        rows = [label(str(r.variant), str(r.point)) for r in table.itertuples(index=False)
                if r.wake_to_run_from == FROM_RUN_PERCENTILES]
        notes.append("no wake-up records stored for " + ", ".join(rows)
                     + ": wake-to-run there is the median of the per-run percentiles")
    lost = run.metrics
    lost = lost[(lost["metric"].astype(str) == "wakeups_lost") & (lost["key"] == "")
                & lost["run_id"].isin(kernel_run_ids(run, family)) & (lost["value"] > 0)]
    if len(lost):
        notes.append(f"{int(lost['value'].sum())} wake-ups in {lost['run_id'].nunique()} runs "
                     "did not fit the probe's record array: their percentiles cover the "
                     "recorded ones only")
    if len(table) and table["noisy"].astype(bool).any():
        notes.append(KERNEL_NOISY_NOTE)
    notes.append(f"Kernel headers bcc compiled the probes against: "
                 f"{kv.get('headers') or 'not recorded'}.")
    return notes


def kernel_view_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    """Header, rows and right-alignment of a kernel_view_table: medians
    over repetitions, ``*`` where the repetitions disagree; columns of
    probes that did not run are left out, and submits/op unless some row
    has submissions; p99 only from at least P99_MIN_RECORDS wake-ups."""
    shown = []
    for metric, head in PER_OP + PER_RUN:
        values = table[metric].astype(float)
        if values.isna().all():
            continue
        if metric in ONLY_NONZERO and not (values.fillna(0) != 0).any():
            continue
        shown.append((metric, head))
    per_run = {m for m, _ in PER_RUN}
    header = ["variant", "point", "reps"] + [h for _, h in shown]
    right = [False, False, True] + [True] * len(shown)
    wake = not table["wake_to_run_p50_ns"].astype(float).isna().all()
    if wake:
        header += ["wake-ups", WAKE[0][1], WAKE[1][1]]
        right += [True, True, True]
    rows = []
    for r in table.itertuples(index=False):
        noisy = set(filter(None, (r.noisy or "").split(", ")))
        row = [str(r.variant), str(r.point), str(r.reps)]
        for metric, _ in shown:
            fmt = fmt_count if metric in per_run else fmt_value
            row.append(fmt(getattr(r, metric)) + ("*" if metric in noisy else ""))
        if wake:
            few = r.wake_to_run_from == "records" and r.wakeups_recorded < P99_MIN_RECORDS
            row += [str(r.wakeups_recorded) if r.wake_to_run_from == "records" else "-",
                    fmt_value(r.wake_to_run_p50_ns),
                    "-" if few else fmt_value(r.wake_to_run_p99_ns)]
        rows.append(row)
    return header, rows, right
