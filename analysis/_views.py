"""What the report, `lab show` and the notebooks look at in a Run: each
variant's headline metric, ratios to the family's reference variant, and
the runs and points that contributed nothing (with the reason why)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis._results import NO_POINT, Run
from analysis._stats import summarise

_SUMMARY_CACHE = "_analysis_summary_cache"


def headline_samples(run: Run, family: str) -> pd.DataFrame:
    """The samples of each variant's headline metric (manifest
    families[family].variants[v].headline) in that family."""
    fam = run.families[family]
    heads = {v: d["headline"] for v, d in fam["variants"].items()}
    s = run.samples
    s = s[s["family"] == family]
    keep = s["metric"].astype(str).to_numpy() == s["variant"].astype(str).map(heads).to_numpy()
    return s[keep]


def _summary(run: Run, seed: int = 0) -> pd.DataFrame:
    """summarise(run.samples), computed once per Run and seed."""
    cache = run.__dict__.setdefault(_SUMMARY_CACHE, {})
    key = (seed, id(run.samples), len(run.samples))     # a notebook may replace .samples
    if key not in cache:
        cache.clear()
        cache[key] = summarise(run.samples, seed=seed)
    return cache[key]


def family_summary(run: Run, family: str, seed: int = 0) -> pd.DataFrame:
    """Every metric of every variant and point of a family, in manifest order."""
    s = _summary(run, seed)
    return s[s["family"] == family].reset_index(drop=True)


def headline(run: Run, family: str, seed: int = 0) -> pd.DataFrame:
    """summarise() restricted to each variant's headline metric, rows in the
    order the family lists its variants, then by point."""
    if family not in run.families:
        raise KeyError(f"{family!r} is not a family of this run "
                       f"({', '.join(run.families) or 'none'})")
    s = family_summary(run, family, seed)
    heads = {v: d["headline"] for v, d in run.families[family]["variants"].items()}
    keep = s["metric"].astype(str).to_numpy() == s["variant"].astype(str).map(heads).to_numpy()
    return s[keep].sort_values(["variant", "point"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Ratio:
    variant: str
    point: str
    metric: str
    ratio: float
    low: float          # conservative interval: CI bounds divided crosswise
    high: float
    reference_point: str


def reference_rows(summary: pd.DataFrame, reference: str) -> pd.DataFrame:
    return summary[summary["variant"].astype(str) == reference]


def ratio_to(row, ref_rows: pd.DataFrame) -> tuple[float, float, float, str] | None:
    """row's median over the reference's (same unit; the same point if the
    reference has several, else its only one), with the CI bounds divided
    crosswise: an interval at least as wide as the true one."""
    same_unit = ref_rows[ref_rows["unit"].astype(str) == str(row.unit)]
    if same_unit.empty:
        return None
    match = same_unit[same_unit["point"].astype(str) == str(row.point)]
    if match.empty:
        if len(same_unit) != 1:
            return None
        match = same_unit
    ref = match.iloc[0]
    if not ref["median"] or not math.isfinite(ref["median"]):
        return None
    return (*median_ratio(row._asdict(), ref), str(ref["point"]))


def median_ratio(a, b) -> tuple[float, float, float]:
    """a's median / b's (summary rows), with the 95% CI bounds divided
    crosswise: an interval at least as wide as the ratio's own."""
    ratio = a["median"] / b["median"]
    low = a["ci_low"] / b["ci_high"] if b["ci_high"] else math.nan
    high = a["ci_high"] / b["ci_low"] if b["ci_low"] else math.inf
    return ratio, low, high


def reference_ratios(run: Run, family: str, seed: int = 0) -> list[Ratio]:
    """Each non-reference headline median / the reference variant's."""
    reference = run.families[family].get("reference")
    table = headline(run, family, seed)
    refs = reference_rows(table, reference)
    out = []
    for row in table.itertuples(index=False):
        if str(row.variant) == reference:
            continue
        r = ratio_to(row, refs)
        if r is not None:
            out.append(Ratio(str(row.variant), str(row.point), str(row.metric), *r))
    return out


def label(variant: str, point: str) -> str:
    """``futex_pingpong placement=cross_cpu``, or the variant alone."""
    return variant if point in (NO_POINT, "", None) else f"{variant} {point}"


def skipped_lines(run: Run, family: str | None = None) -> list[str]:
    """One line per variant point the runner skipped, with its reason."""
    s = run.skipped
    if family is not None:
        s = s[s["family"] == family]
    return [f"{r.family}/{label(str(r.variant), str(r.point))}: {r.reason or 'no reason recorded'}"
            for r in s.itertuples(index=False)]


def not_ok_lines(run: Run, family: str | None = None) -> list[str]:
    """One line per run that is not ok (failed, timeout, interrupted, pending)."""
    s = run.not_ok()
    if family is not None:
        s = s[s["family"] == family]
    out = []
    for r in s.itertuples(index=False):
        reason = r.reason if isinstance(r.reason, str) and r.reason else (
            "not run yet (suite interrupted; `lab run --resume` finishes it)"
            if r.status == "pending" else "no reason recorded")
        out.append(f"run {r.run_id} {r.family}/{label(str(r.variant), str(r.point))} "
                   f"repetition {r.repetition}: {r.status}: {reason}")
    return out


def status_counts(run: Run) -> dict[str, int]:
    counts = run.runs["status"].value_counts().to_dict()
    return {k: int(v) for k, v in counts.items()}
