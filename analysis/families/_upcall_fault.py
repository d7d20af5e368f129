"""The upcall family's page-fault part (lab/families/_upcall_fault.py):
userfaultfd's fault -> message -> resolution -> resumed stages beside the
block upcall of a major fault (block_kind = fault) of the same run and
placement.  Data only; analysis/sections/_upcall_fault.py draws it.
Private: analysis.families.upcall does not list these variants in its
MECHANISMS, so its tables stay as they were."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis._counters import counter_summary, with_params
from analysis._results import Run
from analysis._views import family_summary, user_samples

FAULT_VARIANTS = ("uffd_copy", "uffd_continue")
STAGES = ("latency", "resolve", "resume", "total")
# the block upcall of a major fault, fastest told first
BLOCK_MECHANISMS = ("bpf_flag", "bpf_ringbuf")
PLACEMENTS = ("same_cpu", "cross_cpu")
COLUMNS = (["variant", "handler", "placement", "n", "reps"]
           + [f"{s}{k}" for s in STAGES for k in ("", "_ci_low", "_ci_high")]
           + ["block_mechanism", "block", "block_ci_low", "block_ci_high", "major_fault",
              "clamped"])


def _fault_rows(run: Run, family: str) -> pd.DataFrame:
    s = family_summary(run, family)
    s = s[s["variant"].astype(str).isin(FAULT_VARIANTS + BLOCK_MECHANISMS)]
    if s.empty:
        return s
    return with_params(run, family, s.reset_index(drop=True))


BLOCK_COLUMNS = ["mechanism", "placement", "median", "ci_low", "ci_high", "fault_ns"]


def block_upcalls(run: Run, family: str) -> pd.DataFrame:
    """The block upcall of block_kind = fault per placement: mechanism,
    placement, median, ci_low, ci_high (latency, ns), the first of
    BLOCK_MECHANISMS the run has; fault_ns: that cell's plain major fault
    as its worker saw it (counter fault_ns_per_call, median over runs)."""
    rows = _fault_rows(run, family)
    out = []
    if rows.empty or "block_kind" not in rows.columns:
        return pd.DataFrame(columns=BLOCK_COLUMNS)
    counters = counter_summary(run, family)
    fault_ns = counters[counters["counter"] == "fault_ns_per_call"] \
        .set_index(["variant", "point"])["median"]
    rows = rows[(rows["block_kind"].astype(object) == "fault")
                & (rows["event"].astype(object) == "block")
                & (rows["metric"].astype(str) == "latency")]
    for placement in PLACEMENTS:
        for mech in BLOCK_MECHANISMS:
            r = rows[(rows["variant"].astype(str) == mech)
                     & (rows["placement"].astype(object) == placement)]
            if not r.empty:
                first = r.iloc[0]
                out.append({"mechanism": mech, "placement": placement,
                            "median": float(first["median"]), "ci_low": float(first["ci_low"]),
                            "ci_high": float(first["ci_high"]),
                            "fault_ns": float(fault_ns.get((mech, str(first["point"])),
                                                           math.nan))})
                break
    return pd.DataFrame(out, columns=BLOCK_COLUMNS)


def fault_table(run: Run, family: str = "upcall") -> pd.DataFrame:
    """One row per userfaultfd variant, handler and placement: each stage's
    median and 95% CI (ns, the user-side runs), the block upcall of a major
    fault at the same placement and that cell's plain major fault
    (major_fault: the worker's time in its touch; NaN where the run has
    none) and the
    median clamped count (resumes before the handler's stamp)."""
    if family not in run.families:
        return pd.DataFrame(columns=COLUMNS)
    rows = _fault_rows(run, family)
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    faults = rows[rows["variant"].astype(str).isin(FAULT_VARIANTS)]
    if faults.empty:
        return pd.DataFrame(columns=COLUMNS)
    blocks = block_upcalls(run, family).set_index("placement")
    counters = counter_summary(run, family)
    clamped = counters[counters["counter"] == "clamped"].set_index(["variant", "point"])["median"]
    out = []
    for (variant, point), cell in faults.groupby(["variant", "point"], observed=True, sort=False):
        first = cell.iloc[0]
        row = {"variant": str(variant), "handler": str(first["handler"]),
               "placement": str(first["placement"]), "n": int(first["n"]),
               "reps": int(first["reps"])}
        by_metric = cell.set_index(cell["metric"].astype(str))
        for stage in STAGES:
            m = by_metric.loc[stage] if stage in by_metric.index else None
            row[stage] = float(m["median"]) if m is not None else math.nan
            row[f"{stage}_ci_low"] = float(m["ci_low"]) if m is not None else math.nan
            row[f"{stage}_ci_high"] = float(m["ci_high"]) if m is not None else math.nan
        b = blocks.loc[row["placement"]] if row["placement"] in blocks.index else None
        row["block_mechanism"] = str(b["mechanism"]) if b is not None else ""
        for k in ("", "_ci_low", "_ci_high"):
            row[f"block{k}"] = float(b["median" if not k else k[1:]]) if b is not None else math.nan
        row["major_fault"] = float(b["fault_ns"]) if b is not None else math.nan
        row["clamped"] = float(clamped.get((str(variant), str(point)), math.nan))
        out.append(row)
    data = pd.DataFrame(out, columns=COLUMNS)
    order = {v: i for i, v in enumerate(FAULT_VARIANTS)}
    data["_o"] = [(PLACEMENTS.index(p) if p in PLACEMENTS else 9, order[v], h)
                  for v, p, h in zip(data["variant"], data["placement"], data["handler"])]
    return data.sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)


def fault_curves(run: Run, family: str = "upcall") -> list[tuple[str, np.ndarray, str]]:
    """(label, latency samples in ns, placement): each userfaultfd cell's
    message latency, then each placement's block upcall of a major fault."""
    s = user_samples(run)
    s = s[(s["family"].astype(str) == family) & (s["metric"].astype(str) == "latency")]
    curves = []
    for _, r in fault_table(run, family).iterrows():
        cell = s[(s["variant"].astype(str) == r["variant"])
                 & (s["placement"].astype(object) == r["placement"])
                 & (s["handler"].astype(object) == r["handler"])]
        curves.append((f"{r['variant']} {r['handler']}", cell["value"].to_numpy(),
                       r["placement"]))
    if "block_kind" in s.columns:
        for _, b in block_upcalls(run, family).iterrows():
            cell = s[(s["variant"].astype(str) == b["mechanism"])
                     & (s["placement"].astype(object) == b["placement"])
                     & (s["block_kind"].astype(object) == "fault")
                     & (s["event"].astype(object) == "block")]
            curves.append((f"{b['mechanism']} block upcall, major fault", cell["value"].to_numpy(),
                           b["placement"]))
    return curves


def fault_lines(data: pd.DataFrame) -> list[str]:
    """What the table shows, in a few sentences."""
    lines = []
    for placement in PLACEMENTS:
        rows = data[data["placement"] == placement]
        if rows.empty:
            continue
        best = rows.loc[rows["latency"].idxmin()]
        text = (f"{placement}: the quickest userfaultfd upcall is {best['variant']} with the "
                f"handler {'polling' if best['handler'] == 'poll' else 'asleep'}, "
                f"{best['latency'] / 1000:.1f} us from the fault to the handler's read, "
                f"{best['total'] / 1000:.1f} us until the faulting thread ran again")
        if math.isfinite(best["block"]):
            text += (f"; the {best['block_mechanism']} block upcall of a major fault takes "
                     f"{best['block'] / 1000:.1f} us to tell a scheduler")
        if math.isfinite(best["major_fault"]):
            text += f", and the major fault itself {best['major_fault'] / 1000:.1f} us"
        lines.append(text + ".")
    return lines
