"""The section every family gets: what it measures, its headline table (the
user side), the kernel view and the probe overhead beside it, and figures
(CDF of each headline metric, medians with intervals, ratios to the
family's reference variant)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from analysis import _probe_cost, plots
from analysis._counters import DERIVED, counter_table
from analysis._format import (
    CI_NOTE,
    NOISY_NOTE,
    NUMERIC_HEADS,
    OVERHEAD_NOTE,
    counter_groups,
    overhead_rows,
    summary_table,
)
from analysis._kernel import (
    kernel_view_notes,
    kernel_view_rows,
    kernel_view_status,
    kernel_view_table,
    overhead_sentence,
    probe_overhead_table,
)
from analysis._pages import ROWS_PER_PAGE, Block, Heading, Report, Space, Table, Text
from analysis._results import Run
from analysis._views import (
    PAIRED,
    cell_kinds,
    family_summary,
    headline,
    headline_samples,
    is_headline,
    label,
    user_side_note,
)

RATIO_NOTE = ("interval: the ratio of the medians' 95% CI bounds taken crosswise "
              "(low / reference high, high / reference low), at least as wide as the ratio's own")


def render(report: Report, family: str, extra_blocks: Sequence[Block] = (),
           figures: bool = True, counters: bool = True) -> None:
    """Intro, tables, any extra blocks a family section adds, then the
    generic figures (``figures=False``: the family section draws its own;
    ``counters=False``: its own tables show the counters that matter)."""
    run = report.run
    report.flow(intro_blocks(run, family) + table_blocks(run, family, counters)
                + list(extra_blocks))
    report.end_page()
    if figures:
        figure_pages(report, family)


def _values(values: Sequence) -> str:
    return ", ".join(str(v) for v in values)


def intro_blocks(run: Run, family: str) -> list[Block]:
    fam = run.families[family]
    blocks: list[Block] = [Heading(f"Family {family}"), Text(fam.get("summary", ""), size=11),
                           Space(0.05)]
    blocks.append(Text(f"Seeds: {fam.get('seeds', '-')}"))
    blocks.append(Text(f"Reference variant for ratios: {fam.get('reference', '-')}"))
    suite = run.manifest.get("suite", {})
    values = suite.get("families", {}).get(family, {}).get("values", {})
    params = fam.get("params", {})
    axes = [f"{p} = {_values(v)}" + (f" {params[p]['unit']}" if params.get(p, {}).get("unit") else "")
            for p, v in values.items() if params.get(p, {}).get("axis", True)]
    fixed = [f"{p} = {_values(v)}" for p, v in values.items() if not params.get(p, {}).get("axis", True)]
    reps = suite.get("settings", {}).get("repetitions")
    if axes:
        blocks.append(Text("Points (axis parameters): " + "; ".join(axes)))
    if fixed or reps:
        parts = fixed + ([f"{reps} repetitions of each variant and point, interleaved"] if reps else [])
        blocks.append(Text("Per run: " + "; ".join(parts)))
    rows = []
    for name, v in fam.get("variants", {}).items():
        head = v.get("headline", "")
        unit = v.get("metrics", {}).get(head, {}).get("unit", "")
        rows.append([name, f"{head} [{unit}]" if unit else head, v.get("help", "")])
    if rows:
        blocks += [Space(0.05), Table(["variant", "headline metric", "what it measures"], rows,
                                      size=8.5, wrap={2: 95})]
    return blocks


def _right(header: Sequence[str]) -> list[bool]:
    return [h.split(" ")[0] in NUMERIC_HEADS for h in header]


def summary_blocks(summary: pd.DataFrame, caption: str, with_metric: bool = True,
                   first_notes: Sequence[str] = ()) -> list[Block]:
    """A summary (summarise() rows) as a paginated table with its notes."""
    header, rows = summary_table(summary, with_metric=with_metric)
    noisy = summary["noisy"].tolist()
    notes = list(first_notes)
    if any(noisy):
        cells = [f"{label(str(r.variant), str(r.point))}" + (f" {r.metric}" if with_metric else "")
                 for r in summary.itertuples(index=False) if r.noisy]
        notes.append(f"{NOISY_NOTE}; here: " + ", ".join(cells))
    notes.append(CI_NOTE)
    return [Table(header, rows, right=_right(header), highlight=noisy, caption=caption,
                  notes=notes, max_rows=ROWS_PER_PAGE)]


def table_blocks(run: Run, family: str, counters: bool = True) -> list[Block]:
    table = headline(run, family)
    if table.empty:
        return [Text("No run of this family finished ok: there is nothing to summarise "
                     "(see the runs without samples at the end).", color="#a63603")]
    blocks: list[Block] = [Space(0.1)]
    short, source = user_side_note(run, family)
    caption = "Headline metric of each variant and point" + (f" ({short})" if short else "")
    blocks += summary_blocks(table, caption, first_notes=[source] if source else [])
    blocks += kernel_view_blocks(run, family)
    if counters:
        blocks += counter_blocks(run, family)
    blocks += overhead_blocks(run, family)
    everything = family_summary(run, family)
    others = everything[~is_headline(run, family, everything)]
    if not others.empty:
        blocks += summary_blocks(others.reset_index(drop=True), "Other recorded metrics")
    return blocks


def kernel_view_blocks(run: Run, family: str) -> list[Block]:
    """"Kernel view": what the probes counted per operation, or why nothing."""
    blocks: list[Block] = [Heading("Kernel view", size=12, keep_with_next=0.8)]
    reason = kernel_view_status(run, family)
    if reason is not None:
        return blocks + [Text(f"no kernel view: {reason}", color="#a63603"), Space(0.1)]
    table = kernel_view_table(run, family)
    header, rows, right = kernel_view_rows(table)
    paired = PAIRED in cell_kinds(run, family).values()
    which = "the twin runs with probes attached" if paired else "the same runs, probes attached"
    caption = f"Kernel view: what the kernel saw in each run's measured window ({which})"
    blocks.append(Table(header, rows, right=right, caption=caption,
                        notes=kernel_view_notes(run, family, table), max_rows=ROWS_PER_PAGE))
    return blocks


def counter_blocks(run: Run, family: str) -> list[Block]:
    """"Counters": what the family's workers counted themselves (manifest
    runs[].counters), medians over the user-side runs, compactly."""
    table = counter_table(run, family)
    if table.empty:
        return []
    derived = [c for c in table.columns if c in DERIVED]
    groups, constant = counter_groups(table.drop(columns=derived))
    if not groups and not constant:
        return []
    notes = ["median over the user-side runs of each count in the run's measured window; "
             "counters that are zero in every row are left out"]
    if constant:
        notes.append("the same in every row reporting it: " + ", ".join(constant))
    if derived:
        notes.append("not shown: " + ", ".join(f"{c} (= {DERIVED[c]})" for c in derived))
    blocks: list[Block] = [Heading("Counters", size=12, keep_with_next=0.8)]
    for i, (header, rows, right) in enumerate(groups):
        blocks.append(Table(header, rows, right=right,
                            caption="The workers' own counts" + (" (continued)" if i else ""),
                            notes=notes if i == len(groups) - 1 else (),
                            max_rows=ROWS_PER_PAGE))
    if not groups:
        blocks += [Text(n, size=8.5, color="0.25") for n in notes]
    return blocks


def overhead_blocks(run: Run, family: str) -> list[Block]:
    """"Probe overhead": with probes against without, when the suite measured it."""
    table = probe_overhead_table(run, family)
    if table.empty:
        return []
    header, rows, right = overhead_rows(table)
    # no sentence when no row has a finite overhead (medians of zero)
    sentence = overhead_sentence(run, family)
    # the heading goes with the table (see Report.flow), the summary under it
    return [Heading("Probe overhead", size=12, keep_with_next=0.8),
            Table(header, rows, right=right, highlight=table["noisy"].tolist(),
                  caption="Headline medians with probes attached against without "
                          "(interleaved twins of every repetition)",
                  notes=[OVERHEAD_NOTE], max_rows=ROWS_PER_PAGE),
            *([Text(sentence, size=10, bold=True)] if sentence else []), Space(0.1),
            *_probe_cost.report_blocks(run, family)]


def _metric_help(run: Run, family: str, metric: str) -> str:
    for v in run.families[family].get("variants", {}).values():
        m = v.get("metrics", {}).get(metric)
        if m and m.get("help"):
            return m["help"]
    return ""


def figure_pages(report: Report, family: str) -> None:
    run = report.run
    samples = headline_samples(run, family)
    if samples.empty:
        return
    metrics = [m for m in samples["metric"].cat.categories if (samples["metric"] == m).any()] \
        if isinstance(samples["metric"].dtype, pd.CategoricalDtype) \
        else list(dict.fromkeys(samples["metric"]))
    per_page = 2
    for start in range(0, len(metrics), per_page):
        chunk = metrics[start:start + per_page]
        more = f" ({start // per_page + 1}/{-(-len(metrics) // per_page)})" \
            if len(metrics) > per_page else ""
        with report.figure(f"{family}: distribution of each variant's headline metric{more}",
                           nrows=per_page if len(metrics) > 1 else 1,
                           caption="Empirical CDF of every sample of the ok runs, repetitions "
                                   "pooled; grey lines at the median, p90 and p99. The x axis "
                                   "ends at the slowest curve's p99.9; each curve's largest "
                                   "sample is given in its legend entry.") as (fig, axes):
            for ax, metric in zip(axes, chunk):
                part = samples[samples["metric"] == metric]
                help_text = _metric_help(run, family, metric)
                plots.cdf(ax, part, title=f"{metric}: {help_text}" if help_text else metric)

    table = headline(run, family)
    for unit, part in table.groupby("unit", sort=False):
        part = part.reset_index(drop=True)
        for start in range(0, len(part), ROWS_PER_PAGE):
            chunk = part.iloc[start:start + ROWS_PER_PAGE]
            more = f" ({start // ROWS_PER_PAGE + 1})" if len(part) > ROWS_PER_PAGE else ""
            with report.figure(f"{family}: headline medians{more}",
                               caption=f"Bars: median; whiskers: 95% CI of the median; diamonds: "
                                       f"p99. {CI_NOTE}.") as (fig, axes):
                plots.bars(axes[0], chunk)

    reference = run.families[family].get("reference")
    if reference and (table["variant"].astype(str) == reference).any() and len(table) > 1:
        for start in range(0, len(table), ROWS_PER_PAGE + 1):
            chunk = table.iloc[start:start + ROWS_PER_PAGE + 1]
            if not (chunk["variant"].astype(str) == reference).any():
                chunk = pd.concat([table[table["variant"].astype(str) == reference], chunk])
            with report.figure(f"{family}: headline median relative to {reference}",
                               caption=f"Each point: the variant's median divided by "
                                       f"{reference}'s median (same unit; the same point if "
                                       f"{reference} has several). {RATIO_NOTE}.") as (fig, axes):
                plots.ratio(axes[0], chunk, reference)

