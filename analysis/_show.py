"""`lab show`: the summary of a stored run as aligned text."""

from __future__ import annotations

from analysis import _counters, _kernel, _probe_cost, _views
from analysis._format import (
    CI_NOTE,
    KERNEL_NOISY_NOTE,
    NOISY_NOTE,
    OVERHEAD_NOTE,
    align_text,
    counter_groups,
    fmt_ratio,
    overhead_rows,
    summary_table,
)
from analysis._results import Run


def _wrap_items(first: str, items: list[str], width: int = 110, indent: str = "    ") -> list[str]:
    """first + items joined by commas, broken between items only."""
    lines, line = [], first
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if len(line) + len(piece) > width and line.strip() and line != first:
            lines.append(line.rstrip())
            line = indent
        line += piece + " "
    lines.append(line.rstrip())
    return lines


def show_text(run: Run, family: str | None = None) -> str:
    """Per family: which runs the user-side numbers come from, a table of
    every variant, point and metric (n, median, p90, p99, 95% CI of the
    median, spread of the per-repetition medians, noisy marker), the kernel
    view (or why there is none), the counters the family's workers keep
    (medians over the user-side runs; counters that are zero everywhere left
    out, those equal in every row given once), the probe overhead when it
    was measured, then the skipped points and not-ok runs with their reasons, then the
    headline medians relative to the reference variant."""
    families = list(run.families)
    if family is not None:
        if family not in run.families:
            from lab.store import ResultsError
            raise ResultsError(f"{run.path}: no family {family!r} in this run "
                               f"(it has: {', '.join(families) or 'none'})")
        families = [family]
    counts = _views.status_counts(run)
    state = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs"
    out = [f"{run.name}: {len(run.runs)} runs ({state}), {len(run.skipped)} skipped; "
           f"status {run.manifest.get('status', '?')}; {run.path}"]
    company = _views.alongside_lines(run)
    if company:
        out.append(f"warning: {len(company)} runs had another lab measurement beside them "
                   "(perturbed numbers):")
        out += [f"  {line}" for line in company]
    any_noisy = any_kernel_noisy = any_overhead = False
    for name in families:
        fam = run.families[name]
        out += ["", f"[{name}]  {fam.get('summary', '')}"]
        summary = _views.family_summary(run, name)
        if summary.empty:
            out.append("  no samples: no run of this family finished ok")
        else:
            _, source = _views.user_side_note(run, name)
            out += _wrap_words(source, "  ")
            header, rows = summary_table(summary)
            out += align_text(header, rows)
            any_noisy |= bool(summary["noisy"].any())
        out += _kernel_lines(run, name)
        out += _counter_lines(run, name)
        kernel = _kernel.kernel_view_table(run, name)
        any_kernel_noisy |= bool(len(kernel) and kernel["noisy"].astype(bool).any())
        overhead = _kernel.probe_overhead_table(run, name)
        if len(overhead):
            any_overhead = True
            header, rows, right = overhead_rows(overhead)
            out.append("  probe overhead (headline medians, with probes against without):")
            out += align_text(header, rows, right=right)
            out += _wrap_words(_kernel.overhead_sentence(run, name), "  ")
            out += _probe_cost.show_lines(run, name)
        skipped = _views.skipped_lines(run, name)
        if skipped:
            out.append("  skipped:")
            out += [f"    {line}" for line in skipped]
        bad = _views.not_ok_lines(run, name)
        if bad:
            out.append("  runs without samples:")
            out += [f"    {line}" for line in bad]
        ratios = _views.reference_ratios(run, name) if not summary.empty else []
        if ratios:
            ref = fam.get("reference")
            parts = [f"{_views.label(r.variant, r.point)} {fmt_ratio(r.ratio)}" for r in ratios]
            out += _wrap_items(f"  headline medians relative to {ref}: ", parts)
    out.append("")
    if any_noisy:
        out.append(NOISY_NOTE)
    out.append(CI_NOTE)
    if any_kernel_noisy:
        out.append("kernel view " + KERNEL_NOISY_NOTE)
    if any_overhead:
        out += _wrap_words(OVERHEAD_NOTE, "")
    return "\n".join(out)


def _wrap_words(text: str | None, indent: str, width: int = 110) -> list[str]:
    import textwrap
    if not text:
        return []
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_on_hyphens=False)


def _kernel_lines(run: Run, family: str) -> list[str]:
    """The family's kernel view table, or why it has none."""
    reason = _kernel.kernel_view_status(run, family)
    if reason is not None:
        return [f"  no kernel view: {reason}"]
    table = _kernel.kernel_view_table(run, family)
    header, rows, right = _kernel.kernel_view_rows(table)
    return (["  kernel view (probes, per operation in the measured window; median over "
             "the runs with probes):"] + align_text(header, rows, right=right))


def _counter_lines(run: Run, family: str, width: int = 220) -> list[str]:
    """The family's own counters (manifest runs[].counters), compactly."""
    table = _counters.counter_table(run, family)
    if table.empty:
        return []
    derived = [c for c in table.columns if c in _counters.DERIVED]
    groups, constant = counter_groups(table.drop(columns=derived))
    if not groups and not constant:
        return []
    out = ["  counters (the workers' own counts, median over the user-side runs):"]
    for header, rows, right in groups:
        out += _chunked(header, rows, right, width)
    if constant:
        out += _wrap_items("    the same in every row reporting it: ", constant, width=110, indent="      ")
    if derived:
        out += _wrap_items("    not shown: ", [f"{c} (= {_counters.DERIVED[c]})" for c in derived],
                           width=110, indent="      ")
    return out


def _chunked(header: list[str], rows: list[list[str]], right: list[bool], width: int,
             keep: int = 2) -> list[str]:
    """align_text, split into several tables (each repeating the first
    ``keep`` columns) where one would be wider than ``width``."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) + 2 for i, h in enumerate(header)]
    fixed = sum(widths[:keep]) + 4
    chunks: list[list[int]] = []
    current: list[int] = []
    used = fixed
    for i in range(keep, len(header)):
        if current and used + widths[i] > width:
            chunks.append(current)
            current, used = [], fixed
        current.append(i)
        used += widths[i]
    if current:
        chunks.append(current)
    out = []
    for cols in chunks or [[]]:
        pick = list(range(keep)) + cols
        out += align_text([header[i] for i in pick], [[r[i] for i in pick] for r in rows],
                          indent="    ", right=[right[i] for i in pick])
    return out
