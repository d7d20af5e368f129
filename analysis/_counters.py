"""What a family's worker counted itself, and how fast each run went.

Every ok run carries counters in the manifest (``runs[].counters``: a
syncfirst run's EAGAINs and reads left to the pool, a chains run's atoms
ok / failed / canceled / not run per chain) and its operations per second
over the measured window (``Run.runs.throughput`` = ops / window_ns).  Both
are one number per run, so their spread is over repetitions: a median, the
lowest and highest run, and a bootstrap interval over the runs.

Which runs count follows analysis._views.run_sources: the user-side runs
(without probes when the suite measured probe overhead, else every ok run).
The probes' counts per run (metrics.parquet) are joined by kernel_totals().
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis._results import _RUN_COLUMNS, Run
from analysis._stats import NOISY_SPREAD, _group_seed, bootstrap_runs_median_ci
from analysis._views import per_run, pivot_wide, run_sources

# counters whose sum over runs means nothing (fractions, per-chain means, targets)
NOT_ADDITIVE = ("fraction", "_per_", "target")
CELL = ["variant", "point"]
# counters a compact table leaves out: another column or the point gives them
DERIVED = {"eagain_fraction": "eagain / operations",
           "resident_target": "the target from hit_ratio"}


def counter_is_total(name: str) -> bool:
    """Whether a counter is a count, so that the sum over runs is a count
    too (``eagain``, ``blocks_verified``, the 0/1 flag ``resident_off_target``:
    its sum is how many runs were off target), rather than a fraction, a
    mean per chain or a target."""
    return not any(part in name for part in NOT_ADDITIVE)


def param_names(run: Run) -> list[str]:
    """The parameter columns of Run.runs (every family's, in manifest order)."""
    return list(run.runs.columns[len(_RUN_COLUMNS):])


@per_run
def _family_params(run: Run, family: str) -> list[str]:
    """The parameter columns some run of the family sets."""
    runs = run.runs[run.runs["family"].astype(str) == family]
    return [c for c in param_names(run) if runs[c].notna().any()]


@per_run
def run_table(run: Run, family: str) -> pd.DataFrame:
    """One row per ok run of the family: run_id, variant, point, repetition,
    kernel_view, user_side, kernel_side (run_sources), ops, window_ns,
    throughput [ops/s], the family's parameters, then every counter as a
    column (NaN where a run does not report it)."""
    src = run_sources(run)
    src = src[src["family"].astype(str) == family]
    params = _family_params(run, family)
    runs = run.runs.set_index("run_id")
    base = src[["run_id", "variant", "point", "repetition", "kernel_view", "user_side",
                "kernel_side"]].reset_index(drop=True)
    columns = ["ops", "window_ns", "throughput"] + params
    picked = runs.loc[base["run_id"].to_numpy(), columns] if len(base) else runs[columns].iloc[:0]
    for col in columns:
        base[col] = picked[col].to_numpy()
    c = run.counters
    c = c[c["family"].astype(str) == family]
    if len(c):
        wide = pivot_wide(c, "run_id", "counter", "value", "last")
        names = [n for n in c["counter"].cat.categories if n in wide.columns]
        base = base.join(wide[names], on="run_id")
    return base


@per_run
def counter_names(run: Run, family: str) -> list[str]:
    """The family's counters, in the order its workers report them."""
    c = run.counters
    c = c[c["family"].astype(str) == family]
    present = set(c["counter"].unique())
    return [n for n in c["counter"].cat.categories if n in present]


def _spread_row(values: np.ndarray, seed: list[int] | None) -> dict:
    """Median, bootstrap interval (none without a seed) and spread over the runs."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"reps": 0, "median": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "rep_min": math.nan, "rep_max": math.nan, "noisy": False}
    median = float(np.median(values))
    low, high = bootstrap_runs_median_ci(values, seed) if seed is not None else (math.nan,
                                                                                  math.nan)
    lo, hi = float(values.min()), float(values.max())
    return {"reps": int(values.size), "median": median, "ci_low": low, "ci_high": high,
            "rep_min": lo, "rep_max": hi, "noisy": bool(hi - lo > NOISY_SPREAD * abs(median))}


@per_run
def counter_summary(run: Run, family: str, per_op: bool = False, seed: int = 0,
                    intervals: bool = True) -> pd.DataFrame:
    """One row per (variant, point, counter) over the user-side runs: reps,
    median, ci_low / ci_high (bootstrap over the runs), rep_min / rep_max
    (lowest and highest run), noisy (they spread more than 10% of the
    median), and total: the sum over those runs where a sum is a count
    (counter_is_total), else NaN.  ``per_op``: each run's value divided by
    its operations first (eagain per read); totals are then NaN.
    ``intervals=False``: ci_low and ci_high NaN, for a caller that shows
    medians only (the bootstrap is most of the cost)."""
    table = run_table(run, family)
    table = table[table["user_side"]]
    columns = CELL + ["counter", "reps", "median", "ci_low", "ci_high", "rep_min", "rep_max",
                      "noisy", "total"]
    rows = []
    names = counter_names(run, family)
    ops = table["ops"].astype("float64").to_numpy(na_value=np.nan)
    counts = {name: table[name].to_numpy(dtype=float) for name in names}
    if not intervals:
        return _ordered(run, _medians_only(table, names, counts, ops, per_op, columns))
    for (variant, point), index in table.groupby(CELL, observed=True, sort=True).indices.items():
        for name in names:
            values = counts[name][index]
            if per_op:
                with np.errstate(divide="ignore", invalid="ignore"):
                    values = values / ops[index]
            if not np.isfinite(values).any():
                continue
            row = {"variant": str(variant), "point": str(point), "counter": name}
            row.update(_spread_row(values, _group_seed(seed, (family, variant, point, name))
                                   if intervals else None))
            row["total"] = (float(np.nansum(values)) if counter_is_total(name) and not per_op
                            else math.nan)
            rows.append(row)
    return _ordered(run, pd.DataFrame(rows, columns=columns))


def _medians_only(table: pd.DataFrame, names: list[str], counts: dict[str, np.ndarray],
                  ops: np.ndarray, per_op: bool, columns: list[str]) -> pd.DataFrame:
    """counter_summary's rows without intervals, every cell and counter in
    one groupby: a row at a time (_spread_row) costs more than the rest of
    `lab show`'s counters."""
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {n: v / ops if per_op else v for n, v in counts.items()}
    # _spread_row's rule: only finite values count
    finite = pd.DataFrame({n: np.where(np.isfinite(v), v, np.nan) for n, v in values.items()})
    finite[CELL] = table[CELL].to_numpy()
    grouped = finite.groupby(CELL, observed=True, sort=True)
    count = grouped.count()
    cells = count.index
    count, median, lo, hi, total = (frame[names].to_numpy(dtype=np.float64) for frame in (
        count, grouped.median(), grouped.min(), grouped.max(), grouped.sum(min_count=1)))
    rows = []
    for c, (variant, point) in enumerate(cells):
        for j, name in enumerate(names):
            if count[c, j] == 0:
                continue
            m = float(median[c, j])
            rows.append({"variant": str(variant), "point": str(point), "counter": name,
                         "reps": int(count[c, j]), "median": m, "ci_low": math.nan,
                         "ci_high": math.nan, "rep_min": float(lo[c, j]),
                         "rep_max": float(hi[c, j]),
                         "noisy": bool(hi[c, j] - lo[c, j] > NOISY_SPREAD * abs(m)),
                         "total": (float(total[c, j])
                                   if counter_is_total(name) and not per_op else math.nan)})
    return pd.DataFrame(rows, columns=columns)


def _ordered(run: Run, frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["variant"] = pd.Categorical(frame["variant"].astype(str),
                                      categories=run.runs["variant"].cat.categories)
    frame["point"] = pd.Categorical(frame["point"].astype(str),
                                    categories=run.runs["point"].cat.categories)
    return frame.sort_values(CELL, kind="stable").reset_index(drop=True)


@per_run
def counter_table(run: Run, family: str) -> pd.DataFrame:
    """The counters' medians over the user-side runs, one row per (variant,
    point), one column per counter (NaN where the variant has none)."""
    s = counter_summary(run, family, intervals=False)
    if s.empty:
        return pd.DataFrame(columns=CELL)
    wide = pivot_wide(s, CELL, "counter", "median", "first")
    names = [n for n in counter_names(run, family) if n in wide.columns]
    return wide[names].reset_index()


@per_run
def throughput_summary(run: Run, family: str, seed: int = 0) -> pd.DataFrame:
    """One row per (variant, point): throughput [ops/s] of the user-side runs
    (ops in the measured window / its length): reps, median, ci_low /
    ci_high (bootstrap over the runs), rep_min, rep_max, noisy."""
    table = run_table(run, family)
    table = table[table["user_side"]]
    columns = CELL + ["unit", "reps", "median", "ci_low", "ci_high", "rep_min", "rep_max",
                      "noisy"]
    rows = []
    values_all = table["throughput"].to_numpy(dtype=float)
    for (variant, point), index in table.groupby(CELL, observed=True, sort=True).indices.items():
        row = {"variant": str(variant), "point": str(point), "unit": "ops/s"}
        row.update(_spread_row(values_all[index],
                               _group_seed(seed, (family, variant, point, "throughput"))))
        rows.append(row)
    return _ordered(run, pd.DataFrame(rows, columns=columns))


@per_run
def kernel_totals(run: Run, family: str) -> pd.DataFrame:
    """One row per ok run of the family with kernel view: run_id, variant,
    point, repetition, ops, the family's parameters, then every probe
    metric's run total (key "") as a column: ``uring_poll_armed`` /
    ``ops`` is poll arms per operation, ``syscalls_per_op`` is already one."""
    table = run_table(run, family)
    table = table[table["kernel_side"]]
    keep = ["run_id", "variant", "point", "repetition", "ops"] + _family_params(run, family)
    table = table[keep].reset_index(drop=True)
    m = run.metrics
    m = m[m["run_id"].isin(table["run_id"]) & (m["key"] == "")]
    if m.empty:
        return table
    wide = pivot_wide(m, "run_id", "metric", "value", "last")
    return table.join(wide, on="run_id")


@per_run
def kernel_per_op(run: Run, family: str, metrics: dict[str, str], seed: int = 0) -> pd.DataFrame:
    """Per (variant, point): for each ``name: metric`` in ``metrics``, the
    median over the runs with kernel view of the run's total of ``metric``
    divided by its operations (``uring_punted`` -> punts per op), or of the
    per-op metric itself when its name ends in ``_per_op``; NaN where no
    run has it.  Also ``kernel_reps``."""
    totals = kernel_totals(run, family)
    rows = []
    ops = totals["ops"].astype("float64").to_numpy(na_value=np.nan) if len(totals) else np.array([])
    for (variant, point), index in totals.groupby(CELL, observed=True, sort=True).indices.items():
        row = {"variant": str(variant), "point": str(point), "kernel_reps": int(len(index))}
        for name, metric in metrics.items():
            if metric not in totals.columns:
                row[name] = math.nan
                continue
            values = totals[metric].to_numpy(dtype=float)[index]
            if not metric.endswith("_per_op"):
                with np.errstate(divide="ignore", invalid="ignore"):
                    values = values / ops[index]
            values = values[np.isfinite(values)]
            row[name] = float(np.median(values)) if values.size else math.nan
        rows.append(row)
    return _ordered(run, pd.DataFrame(rows, columns=CELL + ["kernel_reps"] + list(metrics)))


@per_run
def cell_params(run: Run, family: str) -> pd.DataFrame:
    """One row per (variant, point) of the family's runs: its parameters
    (the family's parameter columns; NA where a variant does not read one)."""
    runs = run.runs[run.runs["family"].astype(str) == family]
    params = _family_params(run, family)
    cells = runs.drop_duplicates(CELL)[CELL + params].copy()
    cells["variant"] = cells["variant"].astype(str)
    cells["point"] = cells["point"].astype(str)
    return cells.reset_index(drop=True)


def with_params(run: Run, family: str, frame: pd.DataFrame) -> pd.DataFrame:
    """frame (variant and point columns) joined with each cell's parameters."""
    cells = cell_params(run, family)
    out = frame.copy()
    out["_v"], out["_p"] = out["variant"].astype(str), out["point"].astype(str)
    cells = cells.rename(columns={"variant": "_v", "point": "_p"})
    keep = [c for c in cells.columns if c not in out.columns or c in ("_v", "_p")]
    return out.merge(cells[keep], on=["_v", "_p"], how="left").drop(columns=["_v", "_p"])
