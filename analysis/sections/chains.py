"""Report section of the chains family (seed 003: syslets as linked io_uring
SQEs), every number computed from the stored run:

- time per chain against the chain length k, per variant, log-log, one
  panel per (op, cached, taskrun) combination the run has;
- the cost of one more atom: the slope of a least-squares line through the
  medians against k, per variant, with the k range it covers and the
  slopes of the single repetitions;
- user/kernel transitions per chain (the probes' system calls per chain)
  against k;
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

from analysis import plots
from analysis._counters import counter_summary, kernel_per_op, with_params
from analysis._format import fmt_count, fmt_ratio, fmt_value
from analysis._pages import Block, Heading, Report, Space, Table, Text
from analysis._results import Run
from analysis._views import cell_kinds, headline, median_ratio, per_run, split_by_axes, user_samples
from analysis.sections import generic
from analysis.sections.registry import register

FAMILY = "chains"
REFERENCE = "syscalls"
LINKED = ("uring_link", "uring_hardlink", "uring_link_wait1")
COMBO = ("op", "cached", "taskrun")     # one panel each
TARGET_K = 8
FAILURE_COUNTERS = ("ok_per_chain", "failed_per_chain", "canceled_per_chain",
                    "not_run_per_chain", "completions_per_chain")


@register(FAMILY)
def render(report: Report, family: str = FAMILY) -> None:
    run = report.run
    # the workers' counters that matter here are in the section's own tables
    # (entries, untimed calls, the failure counts); `lab show` lists them all
    generic.render(report, family, extra_blocks=findings_blocks(run, family), figures=False,
                   counters=False)
    time_figures(report, family)
    transitions_figures(report, family)


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

def _k(k: float) -> str:
    return f"{k:g}"


def _probe_text(run: Run, family: str) -> str:
    kinds = set(cell_kinds(run, family).values())
    if kinds == {"paired"}:
        return ("The times come from the runs without probes; the transitions per chain from "
                "their twins with probes attached.")
    if kinds and kinds <= {"probed"}:
        return ("Probes were attached to every run these times come from (no run without "
                "probes): io_uring's tracepoints fire for every request and completion, so the "
                "io_uring variants carry more probe cost per atom than plain system calls; "
                "probe_overhead = true in [suite] (or --probes=none) gives undisturbed times.")
    if "probed" in kinds:
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
        text = (f"{label}, k={_k(mine[0].k)}: syscalls take {fmt_value(ref['median'])} ns per "
                "chain (median)")
        if linked:
            best = min(linked, key=lambda v: v.row["median"])
            verdict = ("beats separate system calls" if best.high < 1 else
                       "is slower than separate system calls" if best.low > 1 else
                       "is not distinguishable from separate system calls")
            text += (f"; the fastest linked chain, {best.variant}, {fmt_value(best.row['median'])}"
                     f" ns: {fmt_ratio(best.ratio)} of syscalls (95% interval "
                     f"{fmt_ratio(best.low)}..{fmt_ratio(best.high)}): a linked chain {verdict} "
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
                     f"{', '.join(_k(k) for k in ks)}): the cost of one more atom needs a sweep "
                     "of k (experiments/chains.toml has one).")
    lines.append(_probe_text(run, family))
    fails = stop_on_failure(run, family, data)
    if len(fails):
        lines.append(f"Stop on failure: {len(fails)} variant points ran chains whose atom "
                     f"{', '.join(sorted(set(str(int(x)) for x in fails['fail_at'])))} fails; "
                     "the table below gives what happened to the atoms after it.")
    return lines


def _right(header) -> list[bool]:
    return [h not in ("variant", "combination", "point", "op", "k range") for h in header]


def cost_blocks(run: Run, family: str, data: pd.DataFrame) -> list[Block]:
    costs = atom_costs(run, family, data)
    if costs.empty:
        return []
    rows = [[r.combo, r.variant, fmt_value(r.slope),
             f"{fmt_value(r.rep_slope_min)}..{fmt_value(r.rep_slope_max)}",
             fmt_value(r.intercept), f"{r.k_min}..{r.k_max} ({r.n_k} values)"]
            for r in costs.itertuples(index=False)]
    header = ["combination", "variant", "ns per atom", "per repetition", "intercept [ns]",
              "k range"]
    return [Heading("Cost of one more atom", size=12, keep_with_next=1.2),
            Table(header, rows, right=_right(header),
                  caption="Slope of the least-squares line through the median chain times "
                          "against k (chains without an injected failure)",
                  notes=["per repetition: the lowest and highest slope of the same fit through "
                         "one repetition's run medians; intercept: the line's value at k = 0 "
                         "(set-up that does not grow with the chain)"])]


def versus_blocks(data: pd.DataFrame) -> list[Block]:
    versus = versus_reference(data)
    if not versus:
        return []
    rows = []
    for v in versus:
        ref = v.variant == REFERENCE
        rows.append([v.combo, _k(v.k), v.variant, fmt_value(v.row["median"]),
                     f"{fmt_value(v.row['ci_low'])}..{fmt_value(v.row['ci_high'])}",
                     "reference" if ref else fmt_ratio(v.ratio),
                     "" if ref else f"{fmt_ratio(v.low)}..{fmt_ratio(v.high)}",
                     fmt_value(v.row["syscalls_per_chain"]),
                     fmt_count(v.row["kernel_entries_per_chain"]),
                     fmt_count(v.row["untimed_syscalls_per_chain"])])
    header = ["combination", "k", "variant", "median [ns]", "95% CI [ns]", "/ syscalls",
              "interval", "syscalls/chain", "entries/chain", "untimed/chain"]
    ks = sorted(set(v.k for v in versus))
    return [Heading(f"Each variant against syscalls at k = {', '.join(_k(k) for k in ks)}",
                    size=12, keep_with_next=1.2),
            Table(header, rows, right=_right(header),
                  caption=f"Median chain time and its ratio to syscalls at the k nearest "
                          f"{TARGET_K} each combination has",
                  notes=["interval: the 95% CI bounds of the two medians divided crosswise",
                         "syscalls/chain: system calls the kernel saw per chain "
                         "(raw_syscalls:sys_enter, median over the runs with probes): the "
                         "user/kernel transitions a chain costs; entries/chain: the kernel "
                         "entries the worker counted itself; untimed/chain: system calls "
                         "between chains, in the probes' window but in no sample (evicting "
                         "the file for cached=False)"])]


def failure_blocks(run: Run, family: str, data: pd.DataFrame) -> list[Block]:
    fails = stop_on_failure(run, family, data)
    if fails.empty:
        return []
    rows = [[str(r["variant"]), str(r["op"]), _k(r["k"]), str(int(r["fail_at"])),
             fmt_count(r["ok_per_chain"]), fmt_count(r["failed_per_chain"]),
             fmt_count(r["canceled_per_chain"]), fmt_count(r["not_run_per_chain"]),
             fmt_count(r["completions_per_chain"]), fmt_value(r["median"])]
            for _, r in fails.iterrows()]
    header = ["variant", "op", "k", "fail_at", "ok", "failed", "canceled", "not run",
              "completions", "median [ns]"]
    return [Heading("Stop on failure (SYSLET_STOP_ON_NEGATIVE)", size=12, keep_with_next=1.2),
            Table(header, rows, right=_right(header),
                  caption="Atoms per chain when atom fail_at fails: completed ok, failed, "
                          "canceled (-ECANCELED), never run; completions posted",
                  notes=["the workers' own counts per chain, median over the runs; syscalls "
                         "and uring_separate stop after the failing atom (the program sees the "
                         "error before issuing the next), uring_link and uring_link_wait1 get "
                         "-ECANCELED for the rest, uring_hardlink runs them"])]


def findings_blocks(run: Run, family: str = FAMILY) -> list[Block]:
    data = chain_data(run, family)
    if data.empty:
        return []
    blocks: list[Block] = [Heading("What this run shows", size=12, keep_with_next=0.8)]
    for line in findings_lines(run, family):
        blocks += [Text(line, size=9.5, indent=0.15), Space(0.04)]
    blocks += cost_blocks(run, family, data)
    blocks += versus_blocks(data)
    blocks += failure_blocks(run, family, data)
    return blocks


# -- figures ---------------------------------------------------------------------------------

def _colors(run: Run, family: str) -> dict[str, Any]:
    names = list(run.families[family]["variants"])
    return dict(zip(names, plots.palette(len(names))))


def chain_time_plot(ax, rows: pd.DataFrame, colors: dict | None = None, title: str | None = None,
                    value: str = "median", ylabel: str = "median time per chain [ns]"):
    """value (median chain time, or syscalls_per_chain) against k, one line
    per variant; whiskers from ci_low / ci_high when value is the median.
    Log-log (both axes marked)."""
    colors = colors or {}
    markers = "osD^v"
    styles = ("-", "--", "-.", ":", (0, (5, 1)))
    values = []
    lines = list(rows.groupby("variant", observed=True, sort=False))
    for i, (variant, part) in enumerate(lines):
        part = part.sort_values("k")
        y = part[value].to_numpy(dtype=float)
        # shifted sideways (in octaves) so that equal values do not hide each other
        k = part["k"].to_numpy(dtype=float) * 2 ** ((i - (len(lines) - 1) / 2) * 0.05)
        style = dict(color=colors.get(str(variant)), marker=markers[i % len(markers)],
                     markersize=4, linewidth=1.3, linestyle=styles[i % len(styles)],
                     label=str(variant))
        if value == "median":
            low, high = part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float)
            ax.errorbar(k, y, yerr=[np.maximum(y - low, 0), np.maximum(high - y, 0)],
                        capsize=3, elinewidth=0.9, **style)
            values += list(low) + list(high)
        else:
            ax.plot(k, y, **style)
            values += list(y)
    ks = sorted(set(rows["k"].dropna()))
    ax.set_xscale("log", base=2)
    if ks:
        ax.set_xlim(ks[0] / 1.5, ks[-1] * 1.5)
    ax.set_xticks(ks)
    ax.set_xticklabels([_k(k) for k in ks])
    ax.xaxis.set_minor_locator(plt_null_locator())
    positive = [v for v in values if np.isfinite(v) and v > 0]
    if positive:
        ax.set_yscale("log")
        plots.plain_log_ticks(ax)
    ax.set_xlabel("atoms per chain k (log scale)")
    ax.set_ylabel(ylabel + (" (log scale)" if positive else ""))
    ax.grid(True, which="major", color="0.88", linewidth=0.6)
    if title:
        ax.set_title(title, parse_math=False)
    return ax


PANELS = 4


def plt_null_locator():
    from matplotlib.ticker import NullLocator
    return NullLocator()


def _pages(items: list, per_page: int = PANELS):
    for start in range(0, len(items), per_page):
        yield start // per_page, items[start:start + per_page]


def _grid(n: int) -> tuple[int, int]:
    return (1, n) if n <= 2 else (2, 2)


def _paged_figures(report: Report, family: str, groups: list, title: str, caption: str,
                   **plot_kw) -> None:
    """One chain_time_plot panel per (op, cached, taskrun) group, four to a page."""
    colors = _colors(report.run, family)
    pages = list(_pages(groups))
    for n, chunk in pages:
        more = f" ({n + 1}/{len(pages)})" if len(pages) > 1 else ""
        nrows, ncols = _grid(len(chunk))
        with report.figure(f"{family}: {title}{more}", nrows=nrows, ncols=ncols,
                           caption=caption) as (fig, axes):
            for ax, (combo, rows) in zip(axes, chunk):
                chain_time_plot(ax, rows, colors, title=combo_label(combo), **plot_kw)
            plots.legend_right(axes[len(chunk) - 1])


def time_figures(report: Report, family: str = FAMILY) -> None:
    groups = combos(chain_data(report.run, family))
    if groups:
        _paged_figures(report, family, groups, "time per chain against its length",
                       "Median time of one chain of k atoms (first atom's preparation to the "
                       "last result), whiskers the 95% CI of the median; chains without an "
                       "injected failure. Log-log; the variants are shifted slightly sideways "
                       "so that equal values do not hide each other. syscalls takes no "
                       "taskrun: it is the same line in every taskrun's panel. "
                       + _probe_text(report.run, family))


def transitions_figures(report: Report, family: str = FAMILY) -> None:
    groups = [(c, r) for c, r in combos(chain_data(report.run, family))
              if np.isfinite(r["syscalls_per_chain"]).any() and r["k"].nunique() > 1]
    if groups:
        _paged_figures(report, family, groups, "user/kernel transitions per chain",
                       "System calls the kernel saw per chain (raw_syscalls:sys_enter in each "
                       "run's measured window / chains), median over the runs with probes. "
                       "Work between chains (evicting the file for cached=False) is in the "
                       "window: see untimed/chain in the table. Log-log, variants shifted "
                       "slightly sideways.",
                       value="syscalls_per_chain", ylabel="system calls per chain (kernel view)")


__all__ = ["chain_data", "combos", "combo_label", "fit_slope", "atom_costs", "versus_reference",
           "stop_on_failure", "findings_lines", "chain_time_plot", "nearest_k"]
