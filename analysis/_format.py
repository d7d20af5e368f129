"""Numbers and tables as text: one formatting for `lab show` and the PDF."""

from __future__ import annotations

import math

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


def fmt_interval(low: float, high: float, sep: str = "..") -> str:
    return f"{fmt_value(low)}{sep}{fmt_value(high)}"


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


def align_text(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell; numbers right-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    right = [h.split(" ")[0] in NUMERIC_HEADS for h in header]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return (indent + "  ".join(parts)).rstrip()

    return [line(header)] + [line(r) for r in rows]
