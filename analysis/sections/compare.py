"""The PDF of `lab compare`: a page with what differs between the runs'
environments and the verdicts' counts, then a ratio forest plot per family
(and per compared run): one line per row, the ratio to the first run and its
95% interval on a log axis, 1 marked.  The numbers are analysis.compare's.

Not a family section: it registers nothing (analysis.sections imports
every module of its package; this one only defines functions)."""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from analysis._pages import Heading, Report, Table, Text, pdf_style
from analysis._results import Run
from analysis._views import label
from analysis.compare import FASTER, NOT_TOLD_APART, SLOWER, Comparison, telling_points

ROWS_PER_FIGURE = 36            # forest lines per page: labels stay readable
VERDICT_COLOR = {FASTER: "#1b7837", SLOWER: "#b2182b", NOT_TOLD_APART: "0.45"}


def summary_blocks(c: Comparison) -> list:
    rows = c.rows
    blocks: list = [Heading(f"lab compare: {' / '.join(c.sides)}", size=16),
                    Text(f"Baseline: {c.sides[0]}. Each ratio is a run's median over the "
                         "baseline's; its 95% interval is the hierarchical bootstrap "
                         f"(repetitions, then samples; {c.resamples} resamples per side). "
                         "Told apart: Mann-Whitney U on the samples, Holm-corrected over "
                         "every row, p < 0.05, and the interval excludes 1.")]
    counts = rows.groupby(["run", "verdict"]).size().unstack(fill_value=0)
    head = ["run"] + [v for v in (SLOWER, FASTER, NOT_TOLD_APART) if v in counts.columns]
    blocks.append(Table(head + ["noisy", "bimodal"],
                        [[str(run)] + [str(int(counts.loc[run, v])) for v in head[1:]]
                         + [str(int(rows[rows["run"] == run][f].sum())) for f in
                            ("noisy", "bimodal")] for run in counts.index],
                        caption="verdicts"))
    if c.environment:
        blocks.append(Table(["key"] + c.sides, [[k] + [str(v) for v in values]
                                                for k, values in c.environment],
                            caption="environment that differs", wrap={i: 40 for i in
                                                                      range(1, len(c.sides) + 1)}))
    else:
        blocks.append(Text("The environment fingerprints agree (readings of the moment aside)."))
    if len(c.only_in):
        blocks.append(Table(["family", "variant", "point", "metric", "present in"],
                            c.only_in.astype(str).values.tolist(),
                            caption="cells not in every run (not compared)",
                            wrap={2: 50, 4: 40}))
    return blocks


def forest(ax, part, title: str) -> None:
    """One line per row: the ratio and its interval, log x axis, 1 marked."""
    from matplotlib.ticker import FuncFormatter

    n = len(part)
    y = np.arange(n)[::-1]
    ratio = part["ratio"].to_numpy(dtype=float)
    low = part["ci_low"].to_numpy(dtype=float)
    high = part["ci_high"].to_numpy(dtype=float)
    colors = [VERDICT_COLOR[v] for v in part["verdict"]]
    positive = np.isfinite(ratio) & (ratio > 0)
    low = np.where(np.isfinite(low) & (low > 0), low, ratio)
    high = np.where(np.isfinite(high), high, ratio)
    ax.hlines(y[positive], low[positive], high[positive], colors=np.array(colors)[positive],
              linewidth=1.6)
    ax.scatter(ratio[positive], y[positive], c=np.array(colors)[positive], s=14, zorder=3)
    ax.axvline(1.0, color="black", linewidth=0.9, linestyle="--")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.2g}x"))
    points = telling_points(part["point"])
    labels = [label(str(r.variant), points[str(r.point)])
              + ("" if part["metric"].nunique() == 1 else f" {r.metric}")
              + (" (noisy)" if r.noisy else "") + (" (bimodal)" if r.bimodal else "")
              for r in part.itertuples(index=False)]
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7 if n > 20 else 8)
    ax.set_ylim(-0.7, n - 0.3)
    finite = np.concatenate([low[positive], high[positive], [1.0]])
    ax.set_xlim(finite.min() / 1.25, finite.max() * 1.25)
    ax.grid(True, which="major", axis="x", color="0.85", linewidth=0.6)
    ax.set_xlabel("ratio to the baseline's median (95% interval)")
    ax.set_title(title, parse_math=False)
    for v, color in VERDICT_COLOR.items():
        ax.plot([], [], color=color, linewidth=1.6, label=v)
    ax.legend(loc="lower right", fontsize=7)


def write_compare_pdf(c: Comparison, path: str, run: Run) -> str:
    """The comparison's PDF at ``path`` (written to a temporary name, then
    renamed); ``run``: the baseline's first run (the pages' footer)."""
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages

    from lab.store import atomic_output

    with atomic_output(path) as tmp, pdf_style():
        with PdfPages(tmp, metadata={"Title": f"upcall-lab compare: {' / '.join(c.sides)}",
                                     "Creator": "upcall-lab analysis"}) as pdf:
            report = Report(run, pdf, f"upcall-lab compare \u00b7 {os.path.basename(path)}")
            report.flow(summary_blocks(c))
            report.end_page()
            for run_label in c.sides[1:]:
                mine = c.rows[c.rows["run"] == run_label]
                for family, part in mine.groupby("family", sort=False):
                    pages = max(1, math.ceil(len(part) / ROWS_PER_FIGURE))
                    for page in range(pages):
                        chunk = part.iloc[page * ROWS_PER_FIGURE:(page + 1) * ROWS_PER_FIGURE]
                        more = f" ({page + 1}/{pages})" if pages > 1 else ""
                        with report.figure(f"{family}: {run_label} against {c.sides[0]}{more}",
                                           caption="Each line: a run's median over the "
                                           "baseline's, with its 95% interval (hierarchical "
                                           "bootstrap); coloured by verdict.") as (fig, axes):
                            forest(axes[0], chunk, f"{family}: ratio to {c.sides[0]}")
    return path
