"""The report's front page: each seed claim (analysis.front) in one line,
what this run shows with its number and 95% interval, and the page of the
section that holds the detail, the line a link to it.  Not a family's
section: analysis.report writes it after every other page, when their page
numbers are known, and Report.flow_front puts it first."""

from __future__ import annotations

import os

from analysis._pages import Block, Heading, Report, Space, Text
from analysis._results import Run
from analysis.front import TITLE, claims

WARN = "#a63603"            # the report's colour for what is missing or perturbed


def _where(family: str, section_pages: dict[str, int]) -> str:
    page = section_pages.get(family)
    if page is None:
        return f"(no {family} section: this run has no {family} family)"
    return f"p. {page}, section {family}"


def front_blocks(run: Run, section_pages: dict[str, int]) -> list[Block]:
    """The front page's blocks; ``section_pages``: family -> the page its
    section starts on."""
    env = run.environment
    machine = ", ".join(str(env[k]) for k in ("cpu.model", "kernel.release",
                                              "system.virtualization") if env.get(k))
    suite = run.manifest.get("suite", {}).get("name", run.name)
    folder = os.path.basename(os.path.abspath(run.path))
    blocks: list[Block] = [
        Heading(TITLE, size=17),
        Text(f"Suite {suite}, results folder {folder}" + (f"; {machine}" if machine else ""),
             size=9.5),
        Text("Medians of this run; a ratio's 95% interval is the two medians' bootstrap "
             "intervals divided crosswise, a time's is its median's (hierarchical bootstrap). "
             "Each claim names the page of its section, where the tables, figures and caveats "
             "are (the lines link there).", size=8.5, color="0.25"),
        Space(0.1)]
    sources: list[str] = []
    for c in claims(run):
        page = section_pages.get(c.family)
        blocks += [Text(f"{c.claim}  [{_where(c.family, section_pages)}]", size=10.5,
                        bold=True, goto=page),
                   Text(c.line, size=9.5, indent=0.25, color="black" if c.measured else WARN,
                        goto=page),
                   Space(0.08)]
        if c.source and c.source not in sources:
            sources.append(c.source)
    blocks += [Text(f"1992 figures quoted from: {s}.", size=8, color="0.25") for s in sources]
    return blocks


def front_page(report: Report, section_pages: dict[str, int]) -> bool:
    """Write the front page and put it first (False: left last, unlinked)."""
    return report.flow_front(front_blocks(report.run, section_pages))
