"""The PDF report of a stored run (`lab report`, `lab run --report`).

A front page (each seed claim in one line, analysis/sections/front.py),
a title page (suite, timings, versions, run counts, the machine, the kernel
view's status), then one section per family in manifest order (see
analysis/sections), then every skipped point and every run that gave no
samples, with its reason.  The PDF is written to a temporary file in the
destination folder and renamed into place, like everything the lab stores.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from analysis._kernel import kernel_view_line, kernel_view_status
from analysis._pages import Block, Heading, Report, Space, Table, Text, pdf_style
from analysis._results import Run, load_run
from analysis._views import alongside_lines, not_ok_lines, skipped_lines, status_counts
from lab.store import atomic_output

REPORT_NAME = "report.pdf"

# The environment keys a reader of a latency table needs first, in this
# order (lab doctor's names); any other key about the same subjects follows
# them, then the rest of the fingerprint in small print.
ENV_FIRST = (
    "kernel.release", "kernel.version", "kernel.preempt",
    "cpu.model", "cpu.online", "cpu.usable", "cpu.usable_list", "cpu.smt", "cpu.threads_per_core",
    "system.virtualization",
    "clock.source",
    "power.cpuidle_driver", "power.cpuidle_governor", "power.haltpoll_guest_poll_ns",
    "security.mitigations_cmdline", "security.vulnerable", "security.mitigated",
    "io_uring.status",
    "privilege.root",
)
ENV_SUBJECTS = ("kernel.", "cpu.model", "smt", "vcpu", "virtuali", "clocksource", "clock.source",
                "cpuidle", "mitigation", "uring.status", "uring.disabled", "root")


def _env_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) if value else "(none)"
    return str(value)


def environment_order(env: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(most relevant keys first, the rest) of an environment fingerprint."""
    first = [k for k in ENV_FIRST if k in env]
    for subject in ENV_SUBJECTS:
        first += [k for k in env if subject in k.lower() and k not in first
                  and not (isinstance(env[k], (list, tuple, dict)) and len(env[k]) > 6)]
    rest = [k for k in env if k not in first]
    if not first:                       # an unfamiliar fingerprint: show it all plainly
        return rest, []
    return first, rest


def title_blocks(run: Run) -> list:
    m = run.manifest
    suite = m.get("suite", {})
    counts = status_counts(run)
    n_ok = counts.get("ok", 0)
    not_ok = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "ok") or "none failed"
    facts = [
        ["suite", f"{suite.get('name', '-')} ({suite.get('path', '-')})"],
        ["results folder", os.path.abspath(run.path)],
        ["started", str(m.get("started_at") or "-")],
        ["ended", f"{m.get('ended_at') or '-'} (status {m.get('status', '-')}"
                  + (f", stopped by {m['stopped_by']}" if m.get("stopped_by") else "") + ")"],
        ["package version", str(m.get("package_version", "-"))],
        ["git revision", str(m.get("git_revision", "-"))],
        ["runs", f"{len(run.runs)} planned: {n_ok} ok; {not_ok}; "
                 f"{len(run.skipped)} variant points skipped"],
        ["families", ", ".join(run.families) or "-"],
    ]
    kernel_view = kernel_view_line(run)
    enabled = kernel_view_status(run) is None
    blocks = [Heading(f"upcall-lab report: {suite.get('name', run.name)}", size=20),
              Text(suite.get("description") or "", size=11), Space(0.1),
              Table(["", ""], facts, size=9, wrap={1: 110}),
              Text(kernel_view, size=10, bold=True, color="black" if enabled else "#a63603")]
    company = alongside_lines(run)
    if company:
        blocks.append(Text(f"{len(company)} runs had another lab measurement beside them: "
                           "their numbers are perturbed (listed at the end)", size=10,
                           bold=True, color="#a63603"))
    env = run.environment
    first, rest = environment_order(env)
    blocks += [Space(0.05), Heading("Machine", size=13, keep_with_next=0.6)]
    if env:
        blocks.append(Table(["key", "value"], [[k, _env_value(env[k])] for k in first],
                            size=8.5, wrap={1: 120}, max_rows=60))
        if rest:
            blocks += [Text("The rest of the environment fingerprint (lab doctor):", size=8.5),
                       Table(["key", "value"], [[k, _env_value(env[k])] for k in rest],
                             size=7, wrap={1: 150}, max_rows=80)]
    else:
        blocks.append(Text("no environment fingerprint was recorded", color="#a63603"))
    return blocks


def problem_blocks(run: Run) -> list[Block]:
    skipped = skipped_lines(run)
    bad = not_ok_lines(run)
    blocks: list[Block] = [Heading("Skipped variants and runs without samples", size=14)]
    blocks.append(Text("Skipped (not run on this machine):", bold=True))
    blocks += [Text(line, indent=0.2, hanging="    ") for line in skipped] or \
        [Text("none", indent=0.2)]
    blocks.append(Text("Runs that gave no samples (failed, timed out, interrupted, pending):",
                       bold=True))
    blocks += [Text(line, indent=0.2, hanging="    ") for line in bad] or \
        [Text("none: every planned run finished ok", indent=0.2)]
    company = alongside_lines(run)
    if company:
        blocks.append(Text("Runs with another lab measurement beside them (perturbed):",
                           bold=True))
        blocks += [Text(line, indent=0.2, hanging="    ") for line in company]
    return blocks


def write_report(run_dir: str, output: str | None = None, run: Run | None = None) -> str:
    """Write the PDF report of the run in run_dir (default RUN_DIR/report.pdf)
    and return its path.  Raises lab.store.ResultsError for an unreadable run.
    ``run``: that run, if the caller has loaded it already."""
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")       # the report needs no display; notebooks keep theirs
    from matplotlib.backends.backend_pdf import PdfPages

    from analysis.sections import section_for
    from analysis.sections.front import front_page

    run = run if run is not None else load_run(run_dir)
    output = output or os.path.join(run_dir, REPORT_NAME)
    suite_name = run.manifest.get("suite", {}).get("name", run.name)
    with atomic_output(output) as tmp:
        with pdf_style():
            metadata = {"Title": f"upcall-lab report: {suite_name}",
                        "Subject": os.path.abspath(run_dir), "Creator": "upcall-lab analysis"}
            with PdfPages(tmp, metadata=metadata) as pdf:
                report = Report(run, pdf, f"upcall-lab \u00b7 {suite_name} \u00b7 "
                                          f"{os.path.basename(os.path.abspath(run_dir))}",
                                front_page=True)
                report.flow(title_blocks(run))
                report.end_page()
                section_pages = {}
                for family in run.families:
                    section_pages[family] = report.pages + 1
                    section_for(family)(report, family)
                    report.end_page()
                report.flow(problem_blocks(run))
                report.end_page()
                # written last, when the sections' pages are known; it goes first
                front_page(report, section_pages)
    return output
