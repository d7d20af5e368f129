"""What the report, `lab show` and the notebooks look at in a Run: each
variant's headline metric, ratios to the family's reference variant, and
the runs and points that contributed nothing (with the reason why).

Which runs a number comes from (``run_sources``): when a (family, variant,
point) has ok runs both with and without probes (the suite set
``probe_overhead``), user-side numbers come from the runs without probes,
unperturbed, and the kernel view from the runs with them; otherwise both
sides use every ok run of the cell.  headline(), family_summary() and
headline_samples() follow that rule; Run.samples keeps every sample."""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from analysis._results import NO_POINT, Run
from analysis._stats import summarise

_SUMMARY_CACHE = "_analysis_summary_cache"
_SOURCES_CACHE = "_analysis_sources_cache"

# how the runs of a (family, variant, point) cell are used (run_sources)
PAIRED = "paired"           # runs with and without probes: user side without, kernel view with
PROBED = "probed"           # only runs with probes: both sides use them
UNPROBED = "unprobed"       # only runs without probes: no kernel view

OVERHEAD_HINT = "probe overhead not measured (set probe_overhead = true in [suite])"


def cached_per_run(run: Run, section: str, key: tuple, compute: Callable[[], Any]):
    """compute() once per Run (and its tables): a section asks for the
    same tables from several places."""
    cache = run.__dict__.setdefault(f"_{section}_section_cache", {})
    key = key + tuple((id(t), len(t)) for t in (run.samples, run.runs, run.metrics, run.counters))
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def pivot_wide(frame: pd.DataFrame, index, columns: str, values: str,
               aggfunc: str) -> pd.DataFrame:
    """frame.pivot_table(index=, columns=, values=, aggfunc=, observed=True)
    as a groupby and an unstack: the same table (all-NaN columns dropped)
    at a third of pivot_table's cost, which `lab show` paid a few dozen times."""
    keys = ([index] if isinstance(index, str) else list(index)) + [columns]
    out = frame.groupby(keys, observed=True, sort=True)[values].agg(aggfunc).unstack(columns)
    return out.dropna(axis=1, how="all")


def _key_part(value):
    if isinstance(value, dict):
        return tuple((k, _key_part(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_key_part(v) for v in value)
    return value


def per_run(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: ``fn(run, ...)`` computed once per Run and arguments
    (cached_per_run): `lab show`, the report's generic section and the
    family sections each ask for the same tables, several times.  Callers
    get a copy, so one that adds a column changes nobody else's table."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(run: Run, *args, **kwargs):
        bound = signature.bind(run, *args, **kwargs)
        bound.apply_defaults()
        key = (fn.__module__, fn.__qualname__) + tuple(
            _key_part(v) for name, v in bound.arguments.items() if name != "run")
        result = cached_per_run(run, "analysis", key, lambda: fn(run, *args, **kwargs))
        return result.copy() if isinstance(result, (pd.DataFrame, list, dict)) else result

    return wrapper


def run_sources(run: Run) -> pd.DataFrame:
    """One row per ok run: run_id, family, variant, point, repetition,
    kernel_view, ``cell`` (paired / probed / unprobed), and whether the run
    feeds the user-side numbers (``user_side``) and the kernel view
    (``kernel_side``)."""
    cache = run.__dict__.setdefault(_SOURCES_CACHE, {})
    key = (id(run.runs), len(run.runs))
    if key not in cache:
        cache.clear()
        ok = run.runs[run.runs["status"] == "ok"][
            ["run_id", "family", "variant", "point", "repetition", "kernel_view"]].copy()
        kinds = ok.groupby(["family", "variant", "point"], observed=True)["kernel_view"] \
            .agg(lambda k: PAIRED if k.any() and not k.all() else PROBED if k.all() else UNPROBED)
        cells = pd.MultiIndex.from_frame(ok[["family", "variant", "point"]])
        ok["cell"] = kinds.reindex(cells).to_numpy()
        ok["user_side"] = (ok["cell"] != PAIRED) | ~ok["kernel_view"]
        ok["kernel_side"] = ok["kernel_view"].astype(bool)
        cache[key] = ok.reset_index(drop=True)
    return cache[key]


def user_samples(run: Run) -> pd.DataFrame:
    """run.samples restricted to the runs that feed user-side numbers (the
    same frame on every call, like run.samples itself: not to be modified)."""
    def compute() -> pd.DataFrame:
        src = run_sources(run)
        ids = src.loc[src["user_side"], "run_id"].to_numpy()
        if len(ids) == len(src):
            return run.samples
        return run.samples[run.samples["run_id"].isin(ids)]
    # one copy of every sample's columns, not one per caller
    return cached_per_run(run, "analysis", ("user_samples",), compute)


def kernel_run_ids(run: Run, family: str | None = None) -> list[int]:
    """The ok runs with kernel view (of one family, or all)."""
    src = run_sources(run)
    if family is not None:
        src = src[src["family"].astype(str) == family]
    return src.loc[src["kernel_side"], "run_id"].astype(int).tolist()


def cell_kinds(run: Run, family: str) -> dict[tuple[str, str], str]:
    """(variant, point) -> paired / probed / unprobed, in table order."""
    src = run_sources(run)
    src = src[src["family"].astype(str) == family].sort_values(["variant", "point"], kind="stable")
    return {(str(r.variant), str(r.point)): r.cell for r in src.itertuples(index=False)}


def probes_behind(run: Run, family: str) -> str:
    """Where a family's user-side numbers come from, in one word: "paired"
    (every cell from its twin without probes), "all" (every cell from runs
    with probes attached), "some", or "none" (no cell, or no probes)."""
    kinds = set(cell_kinds(run, family).values())
    if kinds == {PAIRED}:
        return "paired"
    if kinds and kinds <= {PROBED}:
        return "all"
    return "some" if PROBED in kinds else "none"


def _cells_text(cells: list[tuple[str, str]]) -> str:
    return ", ".join(label(v, p) for v, p in cells)


def user_side_note(run: Run, family: str) -> tuple[str, str]:
    """(short, full): which runs the family's user-side numbers come from.
    The short form goes into a table caption, the full one under it."""
    kinds = cell_kinds(run, family)
    by_kind: dict[str, list] = {PAIRED: [], PROBED: [], UNPROBED: []}
    for cell, kind in kinds.items():
        by_kind[kind].append(cell)
    overhead_set = bool(run.manifest.get("suite", {}).get("settings", {}).get("probe_overhead"))
    probed_why = ("measured with probes attached: no run of it without probes finished ok"
                  if overhead_set else f"measured with probes attached; {OVERHEAD_HINT}")
    if not kinds:
        return "", ""
    if len(by_kind[PAIRED]) == len(kinds):
        return ("user side: runs without probes",
                "User-side numbers come from the runs without probes; each ran interleaved "
                "with a twin with probes attached, which gives the kernel view and the probe "
                "overhead.")
    if len(by_kind[PROBED]) == len(kinds):
        text = probed_why[0].upper() + probed_why[1:]
        return probed_why, text + "."
    if len(by_kind[UNPROBED]) == len(kinds):
        return "runs without probes", "Measured without probes attached (no kernel view)."
    parts = []
    if by_kind[PAIRED]:
        parts.append(f"runs without probes for {_cells_text(by_kind[PAIRED])} (their twins with "
                     "probes give the kernel view and the probe overhead)")
    if by_kind[PROBED]:
        parts.append(f"{_cells_text(by_kind[PROBED])}: {probed_why}")
    if by_kind[UNPROBED]:
        parts.append(f"{_cells_text(by_kind[UNPROBED])}: measured without probes (no kernel view)")
    return "user side: mixed, see below", "User-side numbers: " + "; ".join(parts) + "."


def is_headline(run: Run, family: str, frame: pd.DataFrame) -> np.ndarray:
    """Which rows of ``frame`` (of one family: variant and metric columns)
    hold their variant's headline metric (manifest
    families[family].variants[v].headline)."""
    heads = {v: d["headline"] for v, d in run.families[family]["variants"].items()}
    variant, metric = frame["variant"], frame["metric"]
    if all(isinstance(c.dtype, pd.CategoricalDtype) for c in (variant, metric)):
        # by category codes: comparing strings costs more than the rest of a summary
        code = {m: i for i, m in enumerate(metric.cat.categories)}
        # -2 matches no metric code: a variant without a headline, or a missing one (code -1)
        head_code = np.array([code.get(heads.get(v), -2) for v in variant.cat.categories] + [-2])
        return metric.cat.codes.to_numpy() == head_code[variant.cat.codes.to_numpy()]
    return metric.astype(str).to_numpy() == variant.astype(str).map(heads).to_numpy()


def headline_samples(run: Run, family: str) -> pd.DataFrame:
    """The user-side samples (run_sources) of each variant's headline metric
    (manifest families[family].variants[v].headline) in that family."""
    s = user_samples(run)
    # one pick of the rows: each copies every column
    return s[(s["family"] == family).to_numpy() & is_headline(run, family, s)]


def _summary(run: Run, seed: int = 0) -> pd.DataFrame:
    """summarise(user_samples(run)), computed once per Run and seed."""
    cache = run.__dict__.setdefault(_SUMMARY_CACHE, {})
    # a notebook may replace .samples or .runs
    key = (seed, id(run.samples), len(run.samples), id(run.runs), len(run.runs))
    if key not in cache:
        cache.clear()
        cache[key] = summarise(user_samples(run), seed=seed)
    return cache[key]


@per_run
def family_summary(run: Run, family: str, seed: int = 0) -> pd.DataFrame:
    """Every metric of every variant and point of a family, in manifest
    order, from the user-side runs (run_sources)."""
    s = _summary(run, seed)
    return s[s["family"] == family].reset_index(drop=True)


@per_run
def headline(run: Run, family: str, seed: int = 0) -> pd.DataFrame:
    """summarise() restricted to each variant's headline metric, rows in the
    order the family lists its variants, then by point."""
    if family not in run.families:
        raise KeyError(f"{family!r} is not a family of this run "
                       f"({', '.join(run.families) or 'none'})")
    s = family_summary(run, family, seed)
    s = s[is_headline(run, family, s)]
    return s.sort_values(["variant", "point"], kind="stable").reset_index(drop=True)


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


def ratio_to(row, refs: list[dict[str, Any]]) -> tuple[float, float, float, str] | None:
    """row's median over the reference's (same unit; the same point if the
    reference has several, else its only one), with the CI bounds divided
    crosswise: an interval at least as wide as the true one.  ``refs``: the
    reference rows as records (reference_rows(...).to_dict("records"), made
    once: filtering a frame for every row cost more than the ratios)."""
    same_unit = [r for r in refs if str(r["unit"]) == str(row.unit)]
    if not same_unit:
        return None
    match = [r for r in same_unit if str(r["point"]) == str(row.point)]
    if not match:
        if len(same_unit) != 1:
            return None
        match = same_unit
    ref = match[0]
    if not ref["median"] or not math.isfinite(ref["median"]):
        return None
    return (*median_ratio(row._asdict(), ref), str(ref["point"]))


def median_ratio(a, b) -> tuple[float, float, float]:
    """a's median / b's (summary rows), with the 95% CI bounds divided
    crosswise: an interval at least as wide as the ratio's own."""
    ratio = np.float64(a["median"]) / b["median"]      # a zero median: inf, as NumPy divides
    low = a["ci_low"] / b["ci_high"] if b["ci_high"] else math.nan
    high = a["ci_high"] / b["ci_low"] if b["ci_low"] else math.inf
    return ratio, low, high


def reference_ratios(run: Run, family: str, seed: int = 0) -> list[Ratio]:
    """Each non-reference headline median / the reference variant's."""
    reference = run.families[family].get("reference")
    table = headline(run, family, seed)
    refs = reference_rows(table, reference).to_dict("records")
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
    s = run.skipped[["family", "variant", "point", "reason"]]
    if family is not None:
        s = s[s["family"] == family]
    return [f"{r.family}/{label(str(r.variant), str(r.point))}: {r.reason or 'no reason recorded'}"
            for r in s.itertuples(index=False)]


def not_ok_lines(run: Run, family: str | None = None) -> list[str]:
    """One line per run that is not ok (failed, timeout, interrupted, pending)."""
    s = run.runs[["run_id", "family", "variant", "point", "repetition", "status", "reason"]]
    s = s[s["status"] != "ok"]          # Run.not_ok(), without the parameter columns
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


def alongside_lines(run: Run) -> list[str]:
    """One line per run that had another lab measurement beside it (the
    runner looks before and after each run): its numbers are perturbed."""
    out = []
    for r in run.manifest.get("runs") or []:
        company = r.get("alongside") if isinstance(r, dict) else None
        if company:
            out.append(f"run {r.get('id')} {r.get('family')}/{r.get('variant')} repetition "
                       f"{r.get('repetition')}: beside {'; '.join(map(str, company))}")
    return out


def status_counts(run: Run) -> dict[str, int]:
    counts = run.runs["status"].value_counts().to_dict()
    return {k: int(v) for k, v in counts.items()}


def short_points(points) -> dict[str, str]:
    """Point labels without the ``name=value`` parts every one of them shares
    (``hit_ratio=0.5 file_mb=8 direct=False depth=1`` -> ``hit_ratio=0.5
    depth=1`` when file_mb and direct never change): for tables where the
    full label would crowd out the numbers.  A label left empty is ``-``."""
    points = [str(p) for p in dict.fromkeys(points)]
    parts = {p: ([] if p == NO_POINT else p.split(" ")) for p in points}
    everywhere = set.intersection(*(set(v) for v in parts.values())) if len(points) > 1 else set()
    return {p: " ".join(x for x in parts[p] if x not in everywhere) or NO_POINT for p in points}


def plain_param(value):
    """A parameter value as the suite wrote it: 8, not 8.0 (a column with
    NA turns integers into floats)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)
    return value


def swept_axes(data: pd.DataFrame, axes) -> list[str]:
    """Of ``axes``, those that take more than one value in ``data``."""
    return [a for a in axes if a in data.columns and data[a].dropna().nunique() > 1]


def split_by_axes(data: pd.DataFrame, axes) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """``data`` split into one frame per combination of ``axes``, with that
    combination.  A row whose axis is NA (a variant that does not read it)
    joins every frame; a combination is made only from rows that set all
    axes."""
    axes = [a for a in axes if a in data.columns]
    if not axes:
        return [({}, data)]
    out = []
    for _, combo in data[axes].dropna().drop_duplicates().iterrows():
        keep = np.ones(len(data), dtype=bool)
        for a in axes:
            col = data[a]
            keep &= (col.isna() | (col.astype(object) == combo[a])).to_numpy()
        out.append(({a: plain_param(combo[a]) for a in axes}, data[keep]))
    return out or [({}, data)]


def is_set(value) -> bool:
    """A parameter or counter value that is there: not None, NA or NaN."""
    if value is None or value is pd.NA:
        return False
    return not (isinstance(value, (float, np.floating)) and math.isnan(value))


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


def halted_vcpu_clause(env: dict) -> str | None:
    """Why a cross-CPU wake-up is slow on this guest, as one clause that a
    family's findings set into its own sentence; None unless the cpuidle
    driver is haltpoll (the facts come from the run's environment)."""
    _, driver = environment_value(env, "power.cpuidle_driver", contains=("cpuidle", "driver"))
    if driver != "haltpoll":
        return None
    _, poll = environment_value(env, "power.haltpoll_guest_poll_ns", contains=("guest", "poll"))
    return ("the cpuidle driver is haltpoll" + (" with guest halt polling off" if poll == 0 else "")
            + ": an idle vCPU halts, and waking it costs a VM exit and entry")
