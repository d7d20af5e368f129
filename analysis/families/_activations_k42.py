"""The activations family's K42 part (lab/families/_activations_k42.py):
soft against hard preemption of a VP, as tables and lines (no matplotlib):
the report's part (analysis/sections/_activations_k42.py) and the notebook
read these.  Reads a stored run only."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis._counters import counter_summary, kernel_per_op, with_params
from analysis._format import fmt_us, fmt_value
from analysis._results import Run
from analysis._views import family_summary, user_samples
from lab.families import _activations_k42 as part

FAMILY = "activations"
SOFT, HARD, RSEQ_SLICE = "k42_soft", "k42_hard", "k42_rseq_slice"
MEASURED = (SOFT, HARD)
LATENCY, SAFE_POINT = part.REQUEST_LATENCY.name, part.SAFE_POINT.name
COST = "cost_ns_per_preemption"
# totals over the user-side runs
TOTALS = ("requests", "released_at_safe_point", "deadline_misses", "preempted_by_requester",
          "vp_off_cpu_at_request")
# the kernel view, per request (one operation is one request)
KERNEL = {"switches_per_request": "switches_per_op",
          "involuntary_per_request": "involuntary_switches_per_op"}
COLUMNS = ["variant", "point", "quantum_us", "request", "n", "reps", "median", "p99", "ci_low",
           "ci_high", "noisy", "safe_median", "safe_p99", "cost_median", "cost_min", "cost_max",
           *TOTALS, *KERNEL]
# the runner's words before a point_problem's reason
SKIP_PREFIX = "cannot run this point: "
NO_RSEQ_LINE = ("rseq time-slice extension (k42_rseq_slice): not in this run; add it to the "
                "suite's K42 entry to record whether this kernel offers it.")


def k42_data(run: Run, family: str = FAMILY, seed: int = 0) -> pd.DataFrame:
    """One row per (variant, point) of k42_soft and k42_hard: the
    request_latency summary of the user-side runs (n, reps, median, p99,
    ci_low / ci_high, noisy; ns), the safe_point median and p99 (soft),
    quantum_us and request (soft; "-" for hard), cost_ns_per_preemption
    (median over the runs, cost_min / cost_max: the lowest and highest),
    the totals of the runs' counts (requests, released_at_safe_point,
    deadline_misses, preempted_by_requester, vp_off_cpu_at_request) and
    the kernel view per request (switches, involuntary ones; NaN without
    probed runs).  Rows soft then hard, by quantum."""
    s = family_summary(run, family, seed)
    s = s[s["variant"].astype(str).isin(MEASURED)]
    lat = s[s["metric"].astype(str) == LATENCY]
    if lat.empty:
        return pd.DataFrame(columns=COLUMNS)
    data = with_params(run, family, lat.reset_index(drop=True))
    data["variant"] = data["variant"].astype(str)
    data["point"] = data["point"].astype(str)
    key = list(zip(data["variant"], data["point"]))
    safe = s[s["metric"].astype(str) == SAFE_POINT].copy()
    safe_at = {(str(r["variant"]), str(r["point"])): r for _, r in safe.iterrows()}
    data["safe_median"] = [float(safe_at[k]["median"]) if k in safe_at else math.nan
                           for k in key]
    data["safe_p99"] = [float(safe_at[k]["p99"]) if k in safe_at else math.nan for k in key]
    counters = counter_summary(run, family, seed=seed, intervals=False)
    by = counters.set_index(["variant", "point", "counter"]) if len(counters) else None

    def cell(k: tuple[str, str], name: str, col: str) -> float:
        if by is None or (k[0], k[1], name) not in by.index:
            return math.nan
        return float(by.loc[(k[0], k[1], name), col])

    data["cost_median"] = [cell(k, COST, "median") for k in key]
    data["cost_min"] = [cell(k, COST, "rep_min") for k in key]
    data["cost_max"] = [cell(k, COST, "rep_max") for k in key]
    for name in TOTALS:
        data[name] = [cell(k, name, "total") for k in key]
    kernel = kernel_per_op(run, family, KERNEL, seed).set_index(["variant", "point"])
    for name in KERNEL:
        column = kernel[name] if name in kernel.columns else pd.Series(dtype=float)
        data[name] = [float(column.get(k, math.nan)) for k in key]
    if "request" not in data.columns:
        data["request"] = "-"
    data["request"] = [r if v == SOFT and isinstance(r, str) else "-"
                       for v, r in zip(data["variant"], data["request"])]
    data["quantum_us"] = pd.to_numeric(data["quantum_us"], errors="coerce")
    data["_order"] = [MEASURED.index(v) for v in data["variant"]]
    data = data.sort_values(["_order", "quantum_us", "request"], kind="stable")
    return data.drop(columns="_order").reset_index(drop=True)[COLUMNS]


def latency_curves(run: Run, data: pd.DataFrame, family: str = FAMILY
                   ) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Per k42_data row: (the row, its user-side request_latency samples
    [ns]), for a CDF."""
    samples = user_samples(run)
    samples = samples[(samples["family"] == family) & (samples["metric"] == LATENCY)]
    out = []
    for _, r in data.iterrows():
        v = samples.loc[(samples["variant"].astype(str) == r["variant"])
                        & (samples["point"].astype(str) == r["point"]), "value"]
        out.append((r.to_dict(), v.to_numpy(dtype=float)))
    return out


def rseq_slice_line(run: Run, family: str = FAMILY) -> str:
    """Why the rseq time-slice variant was not measured (the runner's skip
    reason, from the manifest), or that the run did not ask for it."""
    s = run.skipped
    s = s[(s["family"] == family) & (s["variant"].astype(str) == RSEQ_SLICE)]
    if len(s):
        reason = str(s["reason"].iloc[0]).removeprefix(SKIP_PREFIX)
        return f"rseq time-slice extension (k42_rseq_slice) not measured: {reason}."
    ran = run.runs[(run.runs["family"] == family) & (run.runs["variant"].astype(str) ==
                                                      RSEQ_SLICE)]
    if len(ran):
        return "rseq time-slice extension: offered by this kernel (see its runs)."
    return NO_RSEQ_LINE


def findings_lines(data: pd.DataFrame) -> list[str]:
    """Per quantum (soft by flag against hard): the latencies' medians, the
    ratio, the safe-point wait, the cost per preemption and the misses."""
    lines = []
    for q in sorted(set(data["quantum_us"].dropna())):
        here = data[data["quantum_us"] == q]
        hard = here[here["variant"] == HARD]
        soft = here[(here["variant"] == SOFT)]
        if hard.empty or soft.empty:
            continue
        h = hard.iloc[0]
        soft_rows = [soft[soft["request"] == k] for k in ("flag", "signal")]
        for s in (r.iloc[0] for r in soft_rows if len(r)):
            ratio = s["median"] / h["median"] if h["median"] > 0 else math.nan
            misses = s["deadline_misses"]
            count = f"{misses:.0f} of {s['requests']:.0f}" if math.isfinite(misses) else "no"
            lines.append(
                f"quantum {q:g} us, soft by {s['request']}: the requester ran "
                f"{fmt_us(s['median'])} us after it wanted the CPU (median; p99 "
                f"{fmt_us(s['p99'])}), hard {fmt_us(h['median'])} us (p99 {fmt_us(h['p99'])}): "
                f"{fmt_value(ratio)}x; the safe point came {fmt_us(s['safe_median'])} us after "
                f"the request; fiber work lost per preemption {fmt_us(s['cost_median'])} us "
                f"soft, {fmt_us(h['cost_median'])} us hard; "
                f"{count} deadlines missed (deadline_us past the request).")
    return lines
