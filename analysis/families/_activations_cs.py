"""The activations family's part on critical sections that survive
preemption (lab/families/_activations_cs.py): its data and findings as
tables and lines, no matplotlib (analysis.sections._activations_cs draws
them).  Reads a run through analysis only."""

from __future__ import annotations

import math

import pandas as pd

from analysis._counters import counter_summary, with_params
from analysis._format import fmt_fraction, fmt_rate
from analysis._results import Run

FAMILY = "activations"
# the part's variants, in enum activations_cs_variant order
CS_VARIANTS = ("cs_oblivious", "cs_spin_yield", "cs_informed", "cs_rseq", "cs_pthreads")
THROUGHPUT = "throughput_tasks_per_s"
# counters shown per (variant, point): median over the user-side runs
# the axes a comparison holds fixed (a variant's own knobs, spin_limit, are
# in its point but not here)
AXES = ("cs_ns", "competitors", "competitor_period_us", "competitor_burst_us", "locks",
        "concurrency", "vps", "work_ns")
MEDIANS = ("holder_preemptions", "preempted_sections", "continued_elsewhere", "spin_fraction",
           "recoveries", "rseq_restarts", "yields", "competitor_bursts")
NO_CS_LINE = ("This run has no critical-section variant: add [[activations]] variants = "
              "[\"cs_oblivious\", \"cs_spin_yield\", \"cs_informed\", \"cs_rseq\", "
              "\"cs_pthreads\"] (experiments/activations.toml has them).")


def cs_data(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per critical-section (variant, point): its parameters;
    throughput [tasks/s] (median of throughput_tasks_per_s over the
    user-side runs), throughput_min / _max (the lowest and highest run),
    reps, noisy; the medians of MEDIANS.  Rows in the variants' order,
    then by point."""
    counters = counter_summary(run, family, seed=seed, intervals=False)
    counters = counters[counters["variant"].astype(str).isin(CS_VARIANTS)]
    thr = counters[counters["counter"] == THROUGHPUT]
    if thr.empty:
        return pd.DataFrame(columns=["variant", "point", "throughput"])
    data = thr[["variant", "point"]].copy().reset_index(drop=True)
    data["variant"] = data["variant"].astype(str)
    data["point"] = data["point"].astype(str)
    data = with_params(run, family, data)
    key = list(zip(data["variant"], data["point"]))
    by = thr.assign(variant=thr["variant"].astype(str),
                    point=thr["point"].astype(str)).set_index(["variant", "point"])
    for col, src in (("throughput", "median"), ("throughput_min", "rep_min"),
                     ("throughput_max", "rep_max"), ("reps", "reps"), ("noisy", "noisy")):
        data[col] = [by[src].get(k, math.nan) for k in key]
    data["noisy"] = data["noisy"].fillna(False).astype(bool)
    for name in MEDIANS:
        part = counters[counters["counter"] == name]
        med = dict(zip(zip(part["variant"].astype(str), part["point"].astype(str)),
                       part["median"]))
        data[name] = [float(med.get(k, math.nan)) for k in key]
    order = {v: i for i, v in enumerate(CS_VARIANTS)}
    data["_order"] = data["variant"].map(order)
    return data.sort_values(["_order", "point"]).drop(columns="_order").reset_index(drop=True)


def cs_groups(data: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """data split by AXES: (label "cs_ns=20000, competitors=2, ...", rows)."""
    axes = [a for a in AXES if a in data.columns]
    if not axes:
        return [("", data)]
    out = []
    for values, rows in data.groupby([data[a].astype(str) for a in axes], sort=False):
        values = values if isinstance(values, tuple) else (values,)
        out.append((", ".join(f"{a}={v}" for a, v in zip(axes, values)), rows))
    return out


def findings_lines(data: pd.DataFrame) -> list[str]:
    """What the run shows, with its numbers: at each point with competitors,
    each variant's throughput against cs_oblivious's, and the informed
    variant's recoveries."""
    if data.empty:
        return [NO_CS_LINE]
    lines = []
    for point, rows in cs_groups(data):
        rows = rows.drop_duplicates("variant").set_index("variant")
        if "cs_oblivious" not in rows.index:
            continue
        base = float(rows.loc["cs_oblivious", "throughput"])
        parts = []
        for variant, r in rows.iterrows():
            ratio = float(r["throughput"]) / base if base > 0 else math.nan
            parts.append(f"{variant} {fmt_rate(r['throughput'])} tasks/s ({ratio:.2f}x)")
        head = f"{point}: " + ", ".join(parts)
        if "cs_informed" in rows.index:
            r = rows.loc["cs_informed"]
            head += (f"; cs_informed lent its CPU to {r['recoveries']:g} preempted holders per "
                     f"run (median; {r['continued_elsewhere']:g} sections finished on the "
                     f"lender's CPU), spin fraction {fmt_fraction(r['spin_fraction'])} against "
                     f"cs_oblivious's {fmt_fraction(rows.loc['cs_oblivious', 'spin_fraction'])}")
        if "cs_rseq" in rows.index:
            head += f"; cs_rseq restarted {rows.loc['cs_rseq', 'rseq_restarts']:g} sections"
        lines.append(head + ".")
    return lines or [NO_CS_LINE]
