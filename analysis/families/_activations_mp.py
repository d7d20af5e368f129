"""The activations family's multiprogramming part (lab/families/
_activations_mp.py: runtime processes sharing the CPUs, the 1992 paper's
N-body experiment), as data: the report part (analysis/sections/
_activations_mp.py) lays it out and the notebook reads it.  No plotting.

- mp_data(): one row per (variant, point) of the mp_ variants: the
  per-process and combined throughput (bodies per second, median over the
  user-side runs, with the interval of the median over the repetitions),
  the speedup against one process alone (the same variant and other
  parameters at processes = 1: combined over alone; its interval the
  intervals divided crosswise), the per-process speedup (mean process over
  alone), lock-holder preemptions, spin time per body update (lock and
  barrier), and fairness (Jain's index, min / max process);
- findings_lines(): "what this run shows" for the part;
- PAPER_QUOTE: the paper's multiprogramming result when quoted from its
  text, else the line saying it was not.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis._counters import counter_summary, run_table, with_params
from analysis._format import fmt_rate, fmt_ratio, fmt_ratio_interval, fmt_value
from analysis._results import Run

FAMILY = "activations"
PREFIX = "mp_"
VARIANT_ORDER = ("mp_oblivious", "mp_spin_yield", "mp_informed", "mp_pthreads", "mp_allocation")

# Anderson, Bershad, Lazowska, Levy (1992), the multiprogramming
# experiment: its text was not among the sources this lab could read (the
# seed 002 is a textbook's summary, without the experiment), so nothing of
# it is quoted; see the issue for where to look.
PAPER_CITATION = ("Anderson, Bershad, Lazowska, Levy, \"Scheduler Activations: Effective Kernel "
                  "Support for the User-Level Management of Parallelism\", ACM TOCS 10(1), 1992, "
                  "the multiprogramming experiment (N-body, two copies)")
PAPER_QUOTE: str | None = None
NOT_QUOTED = "not quoted: the paper's text was not available"

COLUMNS = ["variant", "point", "processes", "reps", "combined", "combined_low", "combined_high",
           "per_process", "min_process", "max_process", "fairness", "speedup", "speedup_low",
           "speedup_high", "process_speedup", "holder_preemptions", "preemptions",
           "recoveries", "spin_ns_per_body", "lock_spin_ns_per_body", "barrier_spin_ns_per_body",
           "parks", "unparks", "alloc_violations", "duplicate_updates", "missing_updates"]
# mp_data's columns taken straight from a counter's median
COUNTER_OF = {"combined": "throughput_bodies_per_s", "min_process": "min_process_bodies_per_s",
              "max_process": "max_process_bodies_per_s", "fairness": "fairness_jain",
              **{name: name for name in ("holder_preemptions", "preemptions", "recoveries",
                                         "parks", "unparks", "alloc_violations",
                                         "duplicate_updates", "missing_updates")}}
KEY = "other"           # the parameters besides processes that name a point


def _order(variant: str) -> int:
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)


def mp_data(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per (variant, point) of the part's variants; empty without them."""
    summary = counter_summary(run, family, seed=seed)
    summary = summary[summary["variant"].astype(str).str.startswith(PREFIX)]
    if summary.empty:
        return pd.DataFrame(columns=COLUMNS)
    wide = summary.pivot_table(index=["variant", "point"], columns="counter", values="median",
                               observed=True, aggfunc="first")
    low = summary.pivot_table(index=["variant", "point"], columns="counter", values="ci_low",
                              observed=True, aggfunc="first")
    high = summary.pivot_table(index=["variant", "point"], columns="counter", values="ci_high",
                               observed=True, aggfunc="first")
    reps = summary[summary["counter"] == "throughput_bodies_per_s"].set_index(
        ["variant", "point"])["reps"]
    # spin per body update: each run's own ratio, then the median over runs
    table = run_table(run, family)
    table = table[table["user_side"] & table["variant"].astype(str).str.startswith(PREFIX)]
    per_body = {}
    for (variant, point), rows in table.groupby(["variant", "point"], observed=True):
        updates = rows["body_updates"].to_numpy(dtype=float)
        lock = rows["lock_spin_ns"].to_numpy(dtype=float) / updates
        barrier = rows["barrier_spin_ns"].to_numpy(dtype=float) / updates
        per_body[(str(variant), str(point))] = (float(np.median(lock + barrier)),
                                                float(np.median(lock)), float(np.median(barrier)))
    rows_out = []
    for (variant, point), r in wide.iterrows():
        key = (variant, point)
        spin = per_body.get((str(variant), str(point)), (math.nan,) * 3)
        row = {"variant": str(variant), "point": str(point), "reps": int(reps.get(key, 0)),
               "combined_low": low.loc[key].get("throughput_bodies_per_s", math.nan),
               "combined_high": high.loc[key].get("throughput_bodies_per_s", math.nan),
               "spin_ns_per_body": spin[0], "lock_spin_ns_per_body": spin[1],
               "barrier_spin_ns_per_body": spin[2]}
        # counters a run of an older lab may not have: NaN
        row.update({ours: r.get(counter, math.nan) for ours, counter in COUNTER_OF.items()})
        rows_out.append(row)
    data = with_params(run, family, pd.DataFrame(rows_out))
    data["processes"] = data["processes"].astype(int)
    data["per_process"] = data["combined"] / data["processes"]
    others = [c for c in ("vps", "bodies", "locks", "work_ns", "cs_ns", "time_steps")
              if c in data.columns]
    data[KEY] = data[others].apply(lambda r: " ".join(f"{c}={r[c]}" for c in others),
                                   axis=1) if others else ""
    alone = data[data["processes"] == 1].set_index(["variant", KEY])
    for name in ("speedup", "speedup_low", "speedup_high", "process_speedup"):
        data[name] = math.nan
    for i, r in data.iterrows():
        key = (r["variant"], r[KEY])
        if key not in alone.index:
            continue
        a = alone.loc[key]
        data.loc[i, "speedup"] = r["combined"] / a["combined"]
        data.loc[i, "speedup_low"] = r["combined_low"] / a["combined_high"]
        data.loc[i, "speedup_high"] = r["combined_high"] / a["combined_low"]
        data.loc[i, "process_speedup"] = r["per_process"] / a["combined"]
    data["_o"] = data["variant"].map(_order)
    data = data.sort_values(["_o", KEY, "processes"]).drop(columns=["_o"])
    return data[COLUMNS + [KEY] + [c for c in others if c not in COLUMNS]].reset_index(drop=True)


def findings_lines(run: Run, family: str = FAMILY) -> list[str]:
    """The part's findings, with numbers; [] without its variants."""
    data = mp_data(run, family)
    if data.empty:
        return []
    lines = []
    multi = data[(data["processes"] > 1) & data["speedup"].notna()]
    if multi.empty:
        lines.append("Multiprogramming: this run has no point with more than one process and "
                     "its one-process reference; no speedup to show.")
    else:
        n = int(multi["processes"].max())
        rows = multi[multi["processes"] == n]
        parts = [f"{r['variant']} {fmt_ratio(r['speedup'])} "
                 f"({fmt_ratio_interval(r['speedup_low'], r['speedup_high'])})"
                 for _, r in rows.iterrows()]
        best = rows.loc[rows["speedup"].idxmax()]
        lines.append(f"Multiprogramming, {n} processes on the same CPUs: combined throughput "
                     f"over one process alone: {', '.join(parts)}; the most: {best['variant']}, "
                     f"{fmt_rate(best['combined'])} bodies/s combined, fairness "
                     f"{best['fairness']:.3f} (Jain).")
        hp = [f"{r['variant']} {fmt_value(r['holder_preemptions'])}" for _, r in rows.iterrows()]
        spin = [f"{r['variant']} {fmt_value(r['spin_ns_per_body'])} ns"
                for _, r in rows.iterrows()]
        lines.append(f"Lock holders preempted while holding (median per run): {', '.join(hp)}; "
                     f"spin per body update: {', '.join(spin)}.")
    broken = data[(data["alloc_violations"] > 0) | (data["duplicate_updates"] > 0) |
                  (data["missing_updates"] > 0)]
    lines.append("Mechanics: every body updated exactly once per step in every process, and "
                 "VPs owned never above the allocation, at every point." if broken.empty else
                 f"Mechanics broken at {len(broken)} points (see the table).")
    lines.append(f"The paper: {PAPER_QUOTE} ({PAPER_CITATION})" if PAPER_QUOTE else
                 f"The paper's multiprogramming result: {NOT_QUOTED}.")
    return lines
