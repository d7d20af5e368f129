"""The chains family's analysis (seed 003: syslets as linked io_uring
SQEs), every number computed from the stored run; the report lays it out
in analysis.sections.chains, the notebook calls it directly:

- time per chain against the chain length k, per variant and per (op,
  cached, taskrun) combination the run has;
- the cost of one more atom: the slope of a least-squares line through the
  medians against k, per variant, with the k range it covers and the
  slopes of the single repetitions;
- user/kernel transitions per chain (the probes' system calls per chain);
- each variant against ``syscalls`` at k = 8 (or the k nearest to it);
- stop on failure (SYSLET_STOP_ON_NEGATIVE): for runs with an atom made to
  fail, the atoms that completed ok, failed, were canceled or never ran,
  per chain;
- "what this run shows": does a linked chain beat separate system calls
  here, by how much per atom, and whether probes were attached to the runs
  the numbers come from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis._counters import counter_summary, kernel_per_op, with_params
from analysis._format import fmt_ratio, fmt_ratio_interval, fmt_value
from analysis._results import Run
from analysis._views import headline, median_ratio, per_run, probes_behind, split_by_axes, user_samples

FAMILY = "chains"
REFERENCE = "syscalls"
LINKED = ("uring_link", "uring_hardlink", "uring_link_wait1")
COMBO = ("op", "cached", "taskrun")     # one panel each
TARGET_K = 8
FAILURE_COUNTERS = ("ok_per_chain", "failed_per_chain", "canceled_per_chain",
                    "not_run_per_chain", "completions_per_chain")


# -- data ---------------------------------------------------------------------------------

@per_run
def chain_data(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per (variant, point): the headline summary (median, CI, ...
    as headline()) with the point's parameters (k, op, cached, fail_at,
    taskrun), user/kernel transitions per chain from the kernel view
    (syscalls_per_chain: the probes' system calls per chain, median over
    the runs with probes; NaN without kernel view) and the workers' own
    counts per chain (kernel_entries_per_chain, untimed_syscalls_per_chain,
    and the ok / failed / canceled / not_run / completions per chain)."""
    head = headline(run, family, seed)
    data = with_params(run, family, head)
    kernel = kernel_per_op(run, family, {"syscalls_per_chain": "syscalls_per_op"}) \
        .set_index(["variant", "point"])
    counters = counter_summary(run, family)
    counters = counters.pivot_table(index=["variant", "point"], columns="counter",
                                    values="median", observed=True, aggfunc="first")
    key = list(zip(data["variant"].astype(str), data["point"].astype(str)))
    data["syscalls_per_chain"] = [kernel["syscalls_per_chain"].get(k, math.nan) for k in key]
    for name in ("kernel_entries_per_chain", "untimed_syscalls_per_chain") + FAILURE_COUNTERS:
        col = counters[name] if name in counters.columns else pd.Series(dtype=float)
        data[name] = [col.get(k, math.nan) for k in key]
    if "k" in data.columns:
        data["k"] = data["k"].astype(float)
    if "fail_at" not in data.columns:
        data["fail_at"] = 0
    data["fail_at"] = data["fail_at"].fillna(0).astype(int)
    return data


def combos(data: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The chains without an injected failure, split by (op, cached,
    taskrun).  ``syscalls`` takes no taskrun: it joins every taskrun's
    panel.  A combination holding only such variants is left out."""
    ok = data[data["fail_at"] == 0]
    if ok.empty:
        return []
    return split_by_axes(ok, COMBO)


def combo_label(combo: dict[str, Any]) -> str:
    """``op=read cached=False taskrun=normal`` (cached left out for nop: it
    ignores it)."""
    parts = []
    for k, v in combo.items():
        if k == "cached" and combo.get("op") == "nop":
            continue
        parts.append(f"{k}={v}")
    return " ".join(parts)


def fit_slope(k, y) -> tuple[float, float]:
    """Least-squares line y = intercept + slope * k: (slope, intercept).
    NaN when fewer than two distinct k."""
    k = np.asarray(k, dtype=float)
    y = np.asarray(y, dtype=float)
    good = np.isfinite(k) & np.isfinite(y)
    k, y = k[good], y[good]
    if np.unique(k).size < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(k, y, 1)
    return float(slope), float(intercept)


@per_run
def run_medians(run: Run, family: str = FAMILY) -> pd.DataFrame:
    """Each user-side run's median chain time with its repetition and
    parameters (for the per-repetition fits)."""
    s = user_samples(run)
    s = s[(s["family"] == family) & (s["metric"] == "chain")]
    per_run = s.groupby(["run_id", "variant", "point", "repetition"], observed=True)["value"] \
        .median().rename("median").reset_index()
    return with_params(run, family, per_run)


def atom_costs(run: Run, family: str = FAMILY, data: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (combination, variant) with at least two chain lengths: the cost
    of one more atom, ``slope`` [ns/atom] of the least-squares line through
    the medians against k, its ``intercept`` [ns], the k range (k_min,
    k_max, n_k), and the lowest and highest slope of the same fit through
    one repetition's run medians at a time (rep_slope_min / _max).  Where
    the combination's variants share two or more chain lengths, each is
    fitted over those only, so that their slopes compare."""
    data = chain_data(run, family) if data is None else data
    per_run = run_medians(run, family)
    rows = []
    for combo, part in combos(data):
        axes = [a for a in COMBO if a in part.columns]
        # a variant without one of the combination's parameters (syscalls has
        # no taskrun) is there for comparison only
        wildcard = {str(v) for v, g in part.groupby("variant", observed=True)
                    if g[axes].isna().any(axis=None)}
        by_variant = {str(v): g for v, g in part.groupby("variant", observed=True, sort=False)}
        # fit every variant over the chain lengths they all have, if two or more
        common = set.intersection(*(set(g["k"].dropna()) for g in by_variant.values()))
        found = []
        for variant, v in by_variant.items():
            if len(common) >= 2:
                v = v[v["k"].isin(common)]
            ks = sorted(set(v["k"].dropna()))
            if len(ks) < 2:
                continue
            slope, intercept = fit_slope(v["k"], v["median"])
            mine = per_run[per_run["point"].astype(str).isin(v["point"].astype(str))
                           & (per_run["variant"].astype(str) == variant)]
            rep_slopes = [fit_slope(r["k"], r["median"])[0]
                          for _, r in mine.groupby("repetition")]
            rep_slopes = [x for x in rep_slopes if math.isfinite(x)]
            found.append({"combo": combo_label(combo), **combo, "variant": variant,
                          "slope": slope, "intercept": intercept, "k_min": int(ks[0]),
                          "k_max": int(ks[-1]), "n_k": len(ks),
                          "rep_slope_min": min(rep_slopes) if rep_slopes else math.nan,
                          "rep_slope_max": max(rep_slopes) if rep_slopes else math.nan,
                          "unit": "ns/atom"})
        if any(f["variant"] not in wildcard for f in found):
            rows += found
    return pd.DataFrame(rows, columns=["combo", *COMBO, "variant", "slope", "intercept", "k_min",
                                       "k_max", "n_k", "rep_slope_min", "rep_slope_max",
                                       "unit"])


def nearest_k(ks, target: int = TARGET_K) -> float | None:
    """The k nearest to target (the smaller one on a tie)."""
    ks = sorted(set(float(k) for k in ks if k is not None and np.isfinite(k)))
    if not ks:
        return None
    return min(ks, key=lambda k: (abs(k - target), k))


@dataclass(frozen=True)
class Versus:
    combo: str
    k: float
    variant: str
    row: Any                # chain_data row
    reference: Any          # syscalls' row at the same k
    ratio: float
    low: float
    high: float


def versus_reference(data: pd.DataFrame, target: int = TARGET_K) -> list[Versus]:
    """Per combination, at the k nearest ``target`` among those where
    syscalls and the most other variants were measured: each variant's
    median chain time over syscalls' (95% CI bounds taken crosswise)."""
    out = []
    for combo, part in combos(data):
        ref_rows = part[part["variant"].astype(str) == REFERENCE]
        others = part[part["variant"].astype(str) != REFERENCE]
        # a k where syscalls and the most other variants were measured
        counts = others.groupby("k")["variant"].nunique()
        shared = [k for k in ref_rows["k"] if counts.get(k, 0) == counts.max()] \
            if len(counts) else []
        k = nearest_k(shared or ref_rows["k"])
        if k is None:
            continue
        ref = ref_rows[ref_rows["k"] == k].iloc[0]
        for _, row in part[part["k"] == k].iterrows():
            r, lo, hi = median_ratio(row, ref)
            out.append(Versus(combo_label(combo), k, str(row["variant"]), row, ref, r, lo, hi))
    return out


def stop_on_failure(run: Run, family: str = FAMILY, data: pd.DataFrame | None = None) \
        -> pd.DataFrame:
    """The runs with an atom made to fail (fail_at > 0), one row per
    (variant, point): k, op, fail_at, and per chain the atoms that
    completed ok, failed, were canceled, never ran, and completions posted
    (the workers' counters, median over the runs), with the chain time."""
    data = chain_data(run, family) if data is None else data
    failing = data[data["fail_at"] > 0]
    cols = ["variant", "point", "k", "op", "fail_at", *FAILURE_COUNTERS, "median", "unit"]
    return failing[[c for c in cols if c in failing.columns]].reset_index(drop=True)


# -- text ------------------------------------------------------------------------------------

def k_label(k: float) -> str:
    """A chain length as the suite writes it: 8, not 8.0."""
    return f"{k:g}"


def times_probe_note(run: Run, family: str) -> str:
    """Whether the times come from runs with probes attached, and what that costs them."""
    behind = probes_behind(run, family)
    if behind == "paired":
        return ("The times come from the runs without probes; the transitions per chain from "
                "their twins with probes attached.")
    if behind == "all":
        return ("Probes were attached to every run these times come from (no run without "
                "probes): io_uring's tracepoints fire for every request and completion, so the "
                "io_uring variants carry more probe cost per atom than plain system calls; "
                "probe_overhead = true in [suite] (or --probes=none) gives undisturbed times.")
    if behind == "some":
        return ("Probes were attached to some of the runs these times come from (those "
                "without a twin without probes): the io_uring variants carry more probe cost "
                "per atom.")
    return "The runs had no probes attached (no kernel view)."


def findings_lines(run: Run, family: str = FAMILY) -> list[str]:
    """"What this run shows", from the medians, fits and counts."""
    data = chain_data(run, family)
    if data.empty:
        return []
    lines = []
    costs = atom_costs(run, family, data)
    versus = versus_reference(data)
    for combo, part in combos(data):
        label = combo_label(combo)
        mine = [v for v in versus if v.combo == label]
        if not mine:
            continue
        ref = mine[0].reference
        linked = [v for v in mine if v.variant in LINKED]
        text = (f"{label}, k={k_label(mine[0].k)}: syscalls take {fmt_value(ref['median'])} ns per "
                "chain (median)")
        if linked:
            best = min(linked, key=lambda v: v.row["median"])
            verdict = ("beats separate system calls" if best.high < 1 else
                       "is slower than separate system calls" if best.low > 1 else
                       "is not distinguishable from separate system calls")
            text += (f"; the fastest linked chain, {best.variant}, {fmt_value(best.row['median'])}"
                     f" ns: {fmt_ratio(best.ratio)} of syscalls (95% interval "
                     f"{fmt_ratio_interval(best.low, best.high)}): a linked chain {verdict} "
                     "here")
        sep = [v for v in mine if v.variant == "uring_separate"]
        if sep:
            text += (f"; one io_uring_enter() per atom (uring_separate): "
                     f"{fmt_ratio(sep[0].ratio)}")
        trans = [(v.variant, v.row["syscalls_per_chain"]) for v in mine
                 if math.isfinite(v.row["syscalls_per_chain"])]
        if trans:
            text += ("; system calls per chain (kernel view): "
                     + ", ".join(f"{name} {fmt_value(x)}" for name, x in trans))
        lines.append(text + ".")
        c = costs[costs["combo"] == label].set_index("variant")
        if REFERENCE in c.index and len(c) > 1:
            ref_slope = c.loc[REFERENCE, "slope"]
            parts = [f"{v} {fmt_value(r.slope)}" for v, r in c.iterrows()]
            text = (f"{label}, per extra atom (least-squares slope of the medians, k = "
                    f"{int(c['k_min'].min())}..{int(c['k_max'].max())}): "
                    + ", ".join(parts) + " ns/atom")
            linked_c = c[c.index.isin(LINKED)]
            if len(linked_c):
                best = linked_c["slope"].idxmin()
                diff = ref_slope - linked_c.loc[best, "slope"]
                text += (f"; the cheapest linked chain per atom, {best}, "
                         + (f"saves {fmt_value(diff)} ns per atom against syscalls" if diff > 0
                            else f"costs {fmt_value(-diff)} ns more per atom than syscalls"))
            lines.append(text + ".")
    if costs.empty:
        ks = sorted(set(data.loc[data["fail_at"] == 0, "k"].dropna()))
        lines.append(f"This run has one chain length per combination (k = "
                     f"{', '.join(k_label(k) for k in ks)}): the cost of one more atom needs a sweep "
                     "of k (experiments/chains.toml has one).")
    lines.append(times_probe_note(run, family))
    fails = stop_on_failure(run, family, data)
    if len(fails):
        lines.append(f"Stop on failure: {len(fails)} variant points ran chains whose atom "
                     f"{', '.join(sorted(set(str(int(x)) for x in fails['fail_at'])))} fails; "
                     "the table below gives what happened to the atoms after it.")
    return lines


__all__ = ["chain_data", "combos", "combo_label", "fit_slope", "atom_costs", "versus_reference",
           "stop_on_failure", "findings_lines", "nearest_k", "k_label", "times_probe_note"]
