"""The report's front page (analysis/front.py, analysis/sections/front.py)
on synthetic results folders whose medians are known: each claim's line
carries the known number, a run without a family gets that family's "not
measured" line naming the suite entry, and the PDF's first page is the
front page, each claim naming (and linking to) the page its section starts
on.  No root needed."""

from __future__ import annotations

import re
import subprocess

from analysis import front, load_run
from analysis._format import fmt_ratio, fmt_us, fmt_value
from lab.families.syncfirst import FAMILY as SYNCFIRST
from tests.helpers import pdf_text
from tests.synthetic import SyntheticRun, exact_median, variant_params
from tests.test_activations_analysis import T4, activations_results
from tests.test_analysis import _chains_run
from tests.test_msgport_analysis import PORT_NS, RT, msgport_results
from tests.test_upcall_analysis import HANDOFF, LATENCY, upcall_results

REPS = 3
# known syncfirst read latencies [ns] per (variant, hit_ratio)
READ_NS = {("sync", 1.0): 1000.0, ("pool", 1.0): 5000.0, ("syncfirst", 1.0): 1100.0,
           ("uring", 1.0): 1600.0, ("sync", 0.0): 80000.0, ("pool", 0.0): 90000.0,
           ("syncfirst", 0.0): 88000.0, ("uring", 0.0): 70000.0}


def syncfirst_results(tmp_path) -> str:
    """A results folder of the syncfirst family's file reads with READ_NS."""
    synth = SyntheticRun(tmp_path / "syncfirst-synth")
    for rep in range(REPS):
        for (variant, hit), median in READ_NS.items():
            params = variant_params(SYNCFIRST, variant, hit_ratio=hit, samples=100, warmup=10)
            eagain = 100.0 if variant == "syncfirst" and hit == 0.0 else 0.0
            synth.add("syncfirst", variant, params, {"latency": exact_median(median, seed=rep)},
                      rep, {"eagain": eagain, "resident_fraction": hit,
                            "offloaded": 100.0 if variant == "pool" else eagain}, 100,
                      window_ns=100 * median)
    return synth.write("syncfirst-synth", {"syncfirst": SYNCFIRST}, REPS)


def by_family(run) -> dict[str, list[front.Claim]]:
    out: dict[str, list[front.Claim]] = {}
    for c in front.claims(run):
        out.setdefault(c.family, []).append(c)
    return out


def not_measured(claims: list[front.Claim]) -> list[str]:
    return [c.line for c in claims if not c.measured]


def test_syncfirst_line_carries_the_known_ratios(tmp_path):
    run = load_run(syncfirst_results(tmp_path))
    c = front.syncfirst_claim(run)
    assert c.measured and c.family == "syncfirst"
    hit, miss = c.line.split("; 0% hits")
    assert hit.startswith("100% page-cache hits: syncfirst 1.10 us per read")
    assert f"{fmt_ratio(1100 / 1000)} sync's 1.00 us (95% interval" in hit
    assert f"{fmt_ratio(1100 / 5000)} pool's 5.00 us" in hit
    assert f"{fmt_ratio(1100 / 1600)} uring's 1.60 us" in hit
    assert f"{fmt_ratio(88000 / 70000)} uring's 70.0 us" in miss
    # every other claim says which suite entry would measure it
    assert len(not_measured(front.claims(run))) == len(front.CLAIMS) - 1


def test_chains_line_at_k_8(tmp_path):
    run = load_run(_chains_run(tmp_path, {"syscalls": 250.0, "uring_link": 120.0}))
    c = front.chains_claim(run)
    assert c.measured
    assert "k = 8: uring_link 1.96 us" in c.line
    assert f"{fmt_ratio(1960 / 3000)} syscalls' 3.00 us" in c.line and "faster" in c.line


def test_upcall_line_is_the_best_mechanism_over_the_futex_handoff(tmp_path):
    run = load_run(upcall_results(tmp_path))
    c = front.upcall_claim(run)
    assert c.measured
    same = LATENCY[("bpf_flag", "block", "same_cpu")]
    cross = LATENCY[("bpf_flag", "block", "cross_cpu")]
    handoff = fmt_us(HANDOFF["same_cpu"])
    assert (f"same_cpu: bpf_flag block nanosleep same_cpu {fmt_us(same)} us, "
            f"{fmt_ratio(same / HANDOFF['same_cpu'])} the same-CPU futex handoff's {handoff} us"
            in c.line)
    assert "cross_cpu: bpf_flag block" in c.line
    assert f"{fmt_ratio(cross / HANDOFF['same_cpu'])} the same-CPU futex handoff's" in c.line
    claims = by_family(run)
    assert claims["msgport"][0].line == "Not measured: " + front.msgport.NO_PORTS_LINE
    assert claims["activations"][0].line == "Not measured: " + \
        front.activations.NO_TABLE_IV_LINE


def test_upcall_without_the_handoff_says_what_measures_it(tmp_path):
    run = load_run(upcall_results(tmp_path, handoff=None))
    c = front.upcall_claim(run)
    assert not c.measured and c.line.endswith(front.upcall.NO_HANDOFF_LINE)


def test_msgport_lines_carry_the_cheapest_port_and_the_fastest_round_trip(tmp_path):
    run = load_run(msgport_results(tmp_path))
    ports, ppc = front.reply_port_claim(run), front.ppc_claim(run)
    assert ports.measured and ppc.measured
    poll1, sync1 = PORT_NS[("port_poll", "nop")][0], PORT_NS[("port_sync", "nop")][0]
    assert (f"op=nop batch 1: port_poll {fmt_value(poll1)} ns per message, "
            f"{fmt_ratio(poll1 / sync1)} port_sync's {fmt_value(sync1)} ns" in ports.line)
    poll64, sync64 = PORT_NS[("port_poll", "nop")][2], PORT_NS[("port_sync", "nop")][2]
    assert f"op=nop batch 64: port_poll {fmt_value(poll64)} ns per message" in ports.line
    assert f"{fmt_ratio(poll64 / sync64)} port_sync's" in ports.line and "cheaper)" in ports.line
    assert "op=pipe_read batch 64: port_deferred 385 ns" in ports.line
    same = min((m, t, p) for (t, p, pl), m in RT.items() if pl == "same_cpu")
    cross = min((m, t, p) for (t, p, pl), m in RT.items() if pl == "cross_cpu")
    assert f"same_cpu: {same[1]} ({same[2]} peer) {fmt_us(same[0])} us per round trip" in ppc.line
    assert f"cross_cpu: {cross[1]} ({cross[2]} peer) {fmt_us(cross[0])} us" in ppc.line
    assert not front.table_iv_claim(run).measured


def test_table_iv_line_carries_the_ratios_and_the_paper_citation(tmp_path):
    run = load_run(activations_results(tmp_path))
    c = front.table_iv_claim(run)
    assert c.measured and c.source == front.activations.PAPER_CITATION
    fork = T4[("t4_pthreads", "null_fork")] / T4[("t4_fibers", "null_fork")]
    procs = T4[("t4_processes", "null_fork")] / T4[("t4_fibers", "null_fork")]
    wait = T4[("t4_pthreads", "signal_wait")] / T4[("t4_fibers", "signal_wait")]
    assert f"Null Fork: fibers 0.200 us, kernel threads {fmt_ratio(fork)} fibers'" in c.line
    assert f"processes {fmt_ratio(procs)} fibers'" in c.line
    assert f"Signal-Wait: fibers 0.0800 us, kernel threads {fmt_ratio(wait)} fibers'" in c.line
    assert "1992: " in c.line


def page_text(pdf: str, page: int) -> str:
    out = subprocess.run(["pdftotext", "-layout", "-f", str(page), "-l", str(page), pdf, "-"],
                         capture_output=True, text=True, check=True).stdout
    return " ".join(out.split())


def test_the_pdf_opens_with_the_front_page(tmp_path):
    from analysis.report import write_report
    pdf = write_report(upcall_results(tmp_path), str(tmp_path / "front.pdf"))
    pdf_text(pdf)                       # skips without pdftotext
    first = page_text(pdf, 1)
    assert first.startswith(front.TITLE)
    run = load_run(str(tmp_path / "upcall-synth"))
    for c in front.claims(run):
        assert " ".join(c.claim.split()[:6]) in first
    assert "Not measured: This run has no Table IV measurement" in first
    assert "no syncfirst section: this run has no syncfirst family" in first
    # the claim names its section's first page, which the title page precedes
    page = int(re.search(r"p\. (\d+), section upcall", first).group(1))
    assert "upcall-lab report" in page_text(pdf, 2) and "page 2" in page_text(pdf, 2)
    assert "Family upcall" in page_text(pdf, page)
    assert "Family upcall" not in page_text(pdf, page - 1)
    assert "page 1" in first
    # the claims link there: GoTo annotations (matplotlib writes them uncompressed)
    assert open(pdf, "rb").read().count(b"/Dest") >= 2
