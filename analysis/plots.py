"""Figures over stored samples and their summaries: latency CDFs, medians
with intervals, ratios to a reference variant.  Each function draws on the
matplotlib Axes it is given and returns it, so the PDF report and notebooks
share them.  Axes switch to log scale when the data span more than a decade
(and say so in the axis label)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from analysis._format import fmt_value
from analysis._views import label as _label
from analysis._views import ratio_to, reference_rows

MAX_CDF_POINTS = 2000       # order statistics drawn per curve; the data are not altered
DECADE = 10.0
# what the figures take as a set of values: a list, or the samples' own array
Values = Sequence[float] | np.ndarray


def spans_decades(values: Values) -> bool:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0 or (v <= 0).any():
        return False
    return v.max() / v.min() > DECADE


def palette(n: int):
    import matplotlib as mpl
    cmap = mpl.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


_STYLES = ("-", "--", "-.", ":")


def axis_label(name: str, unit: str, log: bool) -> str:
    text = f"{name} [{unit}]" if unit else name
    return text + (" (log scale)" if log else "")


def unit_of(df: pd.DataFrame) -> str:
    if "unit" not in df.columns:
        return ""
    units = [u for u in dict.fromkeys(df["unit"].astype(str)) if u]
    return "/".join(units)


def legend_right(ax, fontsize: float = 8):
    """A legend right of the axes: it never hides a curve."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=1,
                  fontsize=fontsize, frameon=False, borderaxespad=0.0)


def legend_below(ax, ncol: int = 2, fontsize: float = 8, order: Sequence[str] = (), **kw):
    """A legend under the axes: it never hides a curve."""
    handles, labels = ax.get_legend_handles_labels()
    if order:
        rank = {name: i for i, name in enumerate(order)}
        pairs = sorted(zip(handles, labels), key=lambda hl: rank.get(hl[1], len(rank)))
        handles, labels = [h for h, _ in pairs], [lab for _, lab in pairs]
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncol=ncol, fontsize=fontsize, frameon=False, **kw)


def cdf(ax, samples_df: pd.DataFrame, metric: str | None = None,
        by: Sequence[str] = ("variant", "point"), log: bool | None = None,
        title: str | None = None, legend: bool = True, max_points: int = MAX_CDF_POINTS,
        clip_tail: float | None = 0.999):
    """Empirical CDF of the samples, one curve per (variant, point) (and per
    metric if several are present and ``metric`` is not given), repetitions
    pooled.  Log x axis when the values span more than a decade, unless
    ``log`` says otherwise.  The x axis ends at the largest p99.9 of the
    curves (``clip_tail``; None shows everything); each legend entry gives
    its curve's maximum."""
    df = samples_df
    if metric is not None:
        df = df[df["metric"].astype(str) == metric]
    by = list(by)
    metrics = list(dict.fromkeys(df["metric"].astype(str))) if "metric" in df.columns else []
    if len(metrics) > 1 and "metric" not in by:
        by.append("metric")
    groups = [(k if isinstance(k, tuple) else (k,), g)
              for k, g in df.groupby(by, observed=True, sort=True)] if len(df) else []
    colors = palette(len(groups))
    curves = []
    for i, (key, g) in enumerate(groups):
        names = dict(zip(by, (str(k) for k in key)))
        text = _label(names.get("variant", ""), names.get("point", "-")).strip()
        extra = [names[c] for c in by if c not in ("variant", "point")]
        text = " ".join([text] + extra) if text else " ".join(extra)
        curves.append((text, g["value"].to_numpy(dtype=float),
                       {"color": colors[i], "linestyle": _STYLES[(i // 10) % len(_STYLES)]}))
    name = metrics[0] if len(metrics) == 1 else "value"
    units = unit_of(df)
    return cdf_curves(ax, curves, xlabel=lambda is_log: axis_label(name, units, is_log),
                      ylabel="fraction of samples \u2264 x", log=log, title=title,
                      legend=legend, max_points=max_points, clip_tail=clip_tail)


def _row_labels(summary_df: pd.DataFrame) -> list[str]:
    multi_metric = "metric" in summary_df.columns and summary_df["metric"].nunique() > 1
    multi_family = "family" in summary_df.columns and summary_df["family"].nunique() > 1
    out = []
    for r in summary_df.itertuples(index=False):
        text = _label(str(r.variant), str(getattr(r, "point", "-")))
        if multi_metric:
            text += f" ({r.metric})"
        if multi_family:
            text = f"{r.family}/{text}"
        out.append(text)
    return out


def bars(ax, summary_df: pd.DataFrame, log: bool | None = None, title: str | None = None,
         legend: bool = True):
    """Median of each summary row as a horizontal bar, its 95% CI as a
    whisker and p99 as a diamond; rows top to bottom in table order."""
    df = summary_df.reset_index(drop=True)
    n = len(df)
    y = np.arange(n)[::-1]
    med = df["median"].to_numpy(float)
    lo = df["ci_low"].to_numpy(float)
    hi = df["ci_high"].to_numpy(float)
    p99 = df["p99"].to_numpy(float)
    if log is None:
        log = spans_decades(np.concatenate([lo, med, p99])) if n else False
    if log:
        ax.set_xscale("log")
        positive = np.concatenate([lo, med])[np.concatenate([lo, med]) > 0]
        left = positive.min() / 2 if positive.size else 1.0
    else:
        left = 0.0
    ax.barh(y, med - left, left=left, height=0.6, color="#9ecae1", edgecolor="#3182bd",
            linewidth=0.6, label="median", zorder=1)
    ax.errorbar(med, y, xerr=[np.maximum(med - lo, 0), np.maximum(hi - med, 0)], fmt="none",
                ecolor="black", elinewidth=1.0, capsize=3, label="95% CI of the median")
    ax.scatter(p99, y, marker="D", s=18, color="#d95f02", zorder=3, label="p99")
    ax.set_yticks(y)
    ax.set_yticklabels(_row_labels(df), fontsize=8)
    ax.set_ylim(-0.6, n - 0.4)
    if log:
        top = np.nanmax(np.concatenate([hi, p99])) if n else 10
        ax.set_xlim(left, top * 1.6)
    ax.set_xlabel(axis_label("median", unit_of(df), log))
    ax.grid(True, which="major", axis="x", color="0.85", linewidth=0.6)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title, parse_math=False)
    if legend:
        legend_below(ax, ncol=3, fontsize=8, order=("median", "95% CI of the median", "p99"))
    return ax


def ratios(summary_df: pd.DataFrame, reference_variant: str) -> pd.DataFrame:
    """Each non-reference row's median over the reference variant's median
    (same family and unit; the matching point when the reference has
    several), with the CI bounds divided crosswise (conservative)."""
    out = []
    families = summary_df["family"].unique() if "family" in summary_df.columns else [None]
    for family in families:
        part = summary_df if family is None else summary_df[summary_df["family"] == family]
        refs = reference_rows(part, reference_variant).to_dict("records")
        for r in part.itertuples(index=False):
            if str(r.variant) == reference_variant:
                continue
            found = ratio_to(r, refs)
            if found is None:
                continue
            ratio, low, high, ref_point = found
            out.append({**r._asdict(), "ratio": ratio, "ratio_low": low, "ratio_high": high,
                        "reference_point": ref_point})
    return pd.DataFrame(out)


def ratio(ax, summary_df: pd.DataFrame, reference_variant: str, log: bool | None = None,
          title: str | None = None, legend: bool = True):
    """Each row's median / the reference variant's median, as a point with
    the propagated 95% interval; a line marks 1x (as fast as the reference)."""
    df = ratios(summary_df, reference_variant)
    n = len(df)
    if n == 0:
        ax.text(0.5, 0.5, f"no rows comparable with {reference_variant}", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    y = np.arange(n)[::-1]
    r = df["ratio"].to_numpy(float)
    lo = df["ratio_low"].to_numpy(float)
    hi = df["ratio_high"].to_numpy(float)
    finite_hi = np.where(np.isfinite(hi), hi, r)
    if log is None:
        log = spans_decades(np.concatenate([r, lo[lo > 0], [1.0]]))
    ax.errorbar(r, y, xerr=[np.maximum(r - np.nan_to_num(lo, nan=0.0), 0),
                            np.maximum(finite_hi - r, 0)],
                fmt="o", color="#3182bd", ecolor="black", elinewidth=1.0, capsize=3,
                markersize=5, label="median ratio, 95% interval")
    ref_rows = reference_rows(summary_df, reference_variant)
    ref_text = reference_variant
    if len(ref_rows) == 1:
        row = ref_rows.iloc[0]
        ref_text += f" median = {fmt_value(row['median'])} {row['unit']}".rstrip()
    ax.axvline(1.0, color="#d95f02", linewidth=1.2, linestyle="--", label=f"1x: {ref_text}")
    if log:
        ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    # ratio values as text right of each whisker
    for yi, ri, hi_i in zip(y, r, finite_hi):
        ax.annotate(f"{ri:.3g}x", (hi_i, yi), xytext=(5, 0), textcoords="offset points",
                    va="center", fontsize=7, color="0.2")
    xs = np.concatenate([lo[np.isfinite(lo) & (lo > 0)], finite_hi, r, [1.0]])
    if log:
        ax.set_xlim(xs.min() / 1.6, xs.max() * 4)
    else:
        ax.set_xlim(min(0, xs.min()), xs.max() * 1.25)
    ax.set_yticks(y)
    ax.set_yticklabels(_row_labels(df), fontsize=8)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel(axis_label(f"median / {reference_variant} median", "", log))
    ax.grid(True, which="major", axis="x", color="0.85", linewidth=0.6)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title, parse_math=False)
    if legend:
        legend_below(ax, ncol=2, fontsize=8)
    return ax


def cdf_curves(ax, curves: Sequence[tuple[str, Values, dict[str, Any]]],
               xlabel: str | Callable[[bool], str], ylabel: str = "fraction \u2264 x",
               log: bool | None = None, title: str | None = None, legend: bool = True,
               max_points: int = MAX_CDF_POINTS, clip_tail: float | None = 0.999):
    """Empirical CDFs of several value sets on one axes: ``curves`` is a
    list of (label, values, line style keywords for Axes.step); cdf() draws
    through it, and so do distributions that do not share a samples table
    (user-side samples against the probes' records).  Log x when the values
    span more than a decade (unless ``log`` says otherwise); the view ends
    at the largest p99.9 (``clip_tail``; None shows everything: a few far
    outliers would otherwise squeeze every curve into a corner); each legend
    entry gives n and the maximum.  ``xlabel`` may be a function of whether
    the axis is logarithmic."""
    kept = [(name, np.sort(np.asarray(v, dtype=float)), style) for name, v, style in curves]
    kept = [(name, x[np.isfinite(x)], style) for name, x, style in kept]
    kept = [(name, x, style) for name, x, style in kept if x.size]
    everything = np.concatenate([x for _, x, _ in kept]) if kept else np.array([])
    if log is None:
        log = spans_decades([everything.min(), everything.max()]) if everything.size else False
    for name, x, style in kept:
        n = x.size
        y = np.arange(1, n + 1) / n
        top = x[-1]
        if n > max_points:
            idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
            x, y = x[idx], y[idx]
        ax.step(x, y, where="post", **{"linewidth": 1.3, **style},
                label=f"{name} (n={n}, max {fmt_value(top)})")
    if log:
        ax.set_xscale("log")
    if clip_tail is not None and kept:
        right = max(float(np.quantile(x, clip_tail)) for _, x, _ in kept)
        left = float(everything.min())
        if log and left <= 0:
            left = float(everything[everything > 0].min()) if (everything > 0).any() else 1.0
        if right > left:
            ax.set_xlim(left / 1.25 if log else left - 0.03 * (right - left),
                        right * 1.25 if log else right + 0.03 * (right - left))
    for q in (0.5, 0.9, 0.99):
        ax.axhline(q, color="0.8", linewidth=0.6, zorder=0)
    ax.set_ylim(0, 1.005)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 0.9, 1.0])
    ax.set_xlabel(xlabel(log) if callable(xlabel) else xlabel + (" (log scale)" if log else ""))
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", axis="x", color="0.9", linewidth=0.6)
    if title:
        ax.set_title(title, parse_math=False)
    if legend:
        legend_right(ax)
    return ax


def plain_log_ticks(ax, axis: str = "y") -> None:
    """Tick labels on a log axis as plain numbers (2000, 1e+05), not
    2x10^3; where the axis spans two decades or less, minor ticks at 2 and
    5 times a power of ten are labelled too (within one decade, every minor
    tick), so a short axis has labels.
    Call it after the data are drawn."""
    import math

    from matplotlib.ticker import FuncFormatter
    target = ax.yaxis if axis == "y" else ax.xaxis
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    span = high / low if low > 0 else math.inf
    # within one decade label every minor tick, within two the 2s and 5s
    leads = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) if span <= 10 else \
        (2.0, 5.0) if span <= 100 else ()

    def minor(v, _):
        if v <= 0:
            return ""
        lead = round(v / 10 ** math.floor(math.log10(v)), 6)
        return f"{v:g}" if lead in leads else ""

    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(minor))
