"""Numbers and tables as text: one formatting for `lab show` and the PDF."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis._stats import NOISY_SPREAD

NOISY_MARK = "noisy"
NOISY_NOTE = (f"{NOISY_MARK}: the per-repetition medians spread more than "
              f"{NOISY_SPREAD:.0%} of the median")
CI_NOTE = ("95% CI: of the median, hierarchical bootstrap (repetitions, then samples "
           "within each), 1000 resamples; rep spread: min..max of the per-repetition medians")


def fmt_value(x: float) -> str:
    """A measured value with sensible digits: whole numbers from 100 up (a
    ns figure's last digit is its resolution), 3 significant digits below,
    exponent form from a million up."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    a = abs(x)
    if a >= 1e6:
        return f"{x:.3g}"
    if a >= 100 or x == 0:
        return f"{x:.0f}"
    if a >= 1e-3:
        digits = 2 - math.floor(math.log10(a))
        return f"{x:.{digits}f}"
    return f"{x:.3g}"


def fmt_ratio(x: float) -> str:
    """A ratio of two medians: ``23.5x``."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3g}x" if x < 100 else f"{x:.0f}x"


def fmt_finite(x: float | None) -> str:
    """fmt_value, and "-" for a value that is not finite (inf too): a cell
    with nothing measured in it."""
    return fmt_value(x) if x is not None and math.isfinite(x) else "-"


def fmt_fraction(x: float | None) -> str:
    """A fraction of 0..1 (slept, idle, wake-ups per upcall) to three places, or -."""
    return f"{float(x):.3f}" if x is not None and math.isfinite(float(x)) else "-"


def fmt_ratio_interval(low: float, high: float) -> str:
    """Two ratios as a range, ``1.02x..1.31x``: a ratio's 95% interval, or
    the lowest and highest of several."""
    return f"{fmt_ratio(low)}..{fmt_ratio(high)}"


def fmt_interval(low: float, high: float, sep: str = "..") -> str:
    return f"{fmt_value(low)}{sep}{fmt_value(high)}"


def fmt_us(ns: float) -> str:
    """A time in ns shown in us."""
    return fmt_value(ns / 1000) if ns is not None and math.isfinite(ns) else "-"


def fmt_us_interval(low: float, high: float) -> str:
    return f"{fmt_us(low)}..{fmt_us(high)}"


def fmt_times(x: float) -> str:
    """How many times: 1,011 (from 100 up), 15.9 (below)."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def fmt_rate(x: float) -> str:
    """129,000: three significant digits, thousands separated."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{float(f'{x:.3g}'):,.0f}" if abs(x) >= 100 else fmt_value(x)


def fmt_count(x: float) -> str:
    """A count, or a median of counts: whole numbers without decimals."""
    if x is not None and math.isfinite(x) and float(x).is_integer() and abs(x) < 1e6:
        return f"{x:.0f}"
    return fmt_value(x)


def fmt_percent(x: float) -> str:
    """A relative change (0.123 -> ``+12.3%``), signed, 3 significant digits."""
    if x is None or not math.isfinite(x):
        return "-"
    p = 100 * float(x)
    if abs(p) >= 100:
        return f"{p:+.0f}%"
    if abs(p) >= 10:
        return f"{p:+.1f}%"
    return f"{p:+.2f}%" if p != 0 else "+0%"


def fmt_percent_interval(low: float, high: float) -> str:
    if not (math.isfinite(low) or math.isfinite(high)):
        return "-"
    return f"{fmt_percent(low)}..{fmt_percent(high)}"


def single_unit(summary: pd.DataFrame) -> str | None:
    units = [u for u in dict.fromkeys(summary["unit"].astype(str)) if u]
    return units[0] if len(units) == 1 else None


def summary_table(summary: pd.DataFrame, with_metric: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a summary as strings, units in the header when the
    whole table has one unit (otherwise a unit column)."""
    unit = single_unit(summary)
    u = f" [{unit}]" if unit else ""
    header = ["variant", "point"] + (["metric"] if with_metric else []) + ["n", "reps"]
    if unit is None:
        header.append("unit")
    header += [f"median{u}", f"p90{u}", f"p99{u}", f"95% CI{u}", f"rep spread{u}", ""]
    rows = []
    for r in summary.itertuples(index=False):
        row = [str(r.variant), str(r.point)] + ([str(r.metric)] if with_metric else [])
        row += [str(r.n), str(r.reps)]
        if unit is None:
            row.append(str(r.unit) or "-")
        row += [fmt_value(r.median), fmt_value(r.p90), fmt_value(r.p99),
                fmt_interval(r.ci_low, r.ci_high), fmt_interval(r.rep_min, r.rep_max),
                NOISY_MARK if r.noisy else ""]
        rows.append(row)
    return header, rows


NUMERIC_HEADS = ("n", "reps", "median", "p90", "p99")


def align_text(header: list[str], rows: list[list[str]], indent: str = "  ",
               right: list[bool] | None = None) -> list[str]:
    """Columns padded to their widest cell; numbers right-aligned (the
    columns ``right`` says, else those NUMERIC_HEADS names)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    if right is None:
        right = [h.split(" ")[0] in NUMERIC_HEADS for h in header]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return (indent + "  ".join(parts)).rstrip()

    return [line(header)] + [line(r) for r in rows]


# -- the kernel view and the probe overhead --------------------------------------

KERNEL_NOISY_NOTE = (f"*: the repetitions disagree: their values spread more than "
                     f"{NOISY_SPREAD:.0%} of the median (the user side's noisy rule)")
P99_MIN_RECORDS = 100       # below this a p99 is the largest record or next to it


def overhead_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    """Header, rows and right-alignment of a probe_overhead_table."""
    units = [u for u in dict.fromkeys(table["unit"].astype(str)) if u]
    u = f" [{units[0]}]" if len(units) == 1 else ""
    header = ["variant", "point", "metric", "reps", f"without probes{u}", f"with probes{u}",
              "overhead", "95% interval", "per repetition", ""]
    right = [False, False, False, True, True, True, True, False, False, False]
    rows = []
    for r in table.itertuples(index=False):
        unit = "" if u or not r.unit else f" {r.unit}"
        rows.append([str(r.variant), str(r.point), str(r.metric), str(r.reps),
                     fmt_value(r.median_without) + unit, fmt_value(r.median_with) + unit,
                     fmt_percent(r.overhead), fmt_percent_interval(r.ci_low, r.ci_high),
                     fmt_percent_interval(r.rep_low, r.rep_high), NOISY_MARK if r.noisy else ""])
    return header, rows, right


OVERHEAD_NOTE = ("overhead: the headline median with probes attached over the median without, "
                 "minus one; 95% interval: from the two medians' 95% CIs taken crosswise (at "
                 "least as wide as the ratio's own); per repetition: lowest and highest overhead "
                 "of one repetition's run with probes against its twin without, run next to it; "
                 f"{NOISY_MARK}: either side's repetition medians spread more than "
                 f"{NOISY_SPREAD:.0%}")


# -- a family's own counters -----------------------------------------------------

def counter_groups(table: pd.DataFrame) -> tuple[list[tuple[list[str], list[list[str]], list[bool]]],
                                                 list[str]]:
    """A counter_table (medians per variant and point) as compact text
    tables: counters zero (or absent) in every row are left out; those
    with one value in every row that reports them come back as
    ``name=value`` strings instead of columns; rows are grouped by which counters they
    report (a family's file reads and socket receives count different
    things), and each group's point labels lose the parts they all share.
    Returns ([(header, rows, right-alignment)], constant)."""
    from analysis._views import short_points

    names = [c for c in table.columns if c not in ("variant", "point")]
    values = table[names].astype(float)
    shown, constant = [], []
    for name in names:
        col = values[name]
        present = col.dropna()
        if present.empty or (present == 0).all():
            continue
        if len(present) > 1 and present.nunique() == 1:
            constant.append(f"{name}={fmt_count(float(present.iloc[0]))}")
            continue
        shown.append(name)
    groups: dict[tuple[str, ...], list[int]] = {}
    number = {n: values[n].to_numpy() for n in shown}
    for i in range(len(table)):
        has = tuple(n for n in shown if not np.isnan(number[n][i]))
        if has:
            groups.setdefault(has, []).append(i)
    variant, point = table["variant"].astype(str).tolist(), table["point"].astype(str).tolist()
    out = []
    for has, index in groups.items():
        short = short_points([point[i] for i in index])
        header = ["variant", "point"] + list(has)
        rows = [[variant[i], short[point[i]]] + [fmt_count(float(number[n][i])) for n in has]
                for i in index]
        out.append((header, rows, [False, False] + [True] * len(has)))
    return out, constant
