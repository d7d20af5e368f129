"""`lab show`: the summary of a stored run as aligned text."""

from __future__ import annotations

from analysis import _views
from analysis._format import CI_NOTE, NOISY_NOTE, align_text, fmt_ratio, summary_table
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
    """Per family: a table of every variant, point and metric (n, median,
    p90, p99, 95% CI of the median, spread of the per-repetition medians,
    noisy marker), then the skipped points and not-ok runs with their
    reasons, then the headline medians relative to the reference variant."""
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
    any_noisy = False
    for name in families:
        fam = run.families[name]
        out += ["", f"[{name}]  {fam.get('summary', '')}"]
        summary = _views.family_summary(run, name)
        if summary.empty:
            out.append("  no samples: no run of this family finished ok")
        else:
            header, rows = summary_table(summary)
            out += align_text(header, rows)
            any_noisy |= bool(summary["noisy"].any())
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
    return "\n".join(out)
