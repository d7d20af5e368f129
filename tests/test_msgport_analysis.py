"""The msgport family's analysis (analysis/families/msgport.py) on
synthetic results folders whose numbers are known in advance: the reply-port
table paired mode x batch per op with the kernel view and the workers'
counters, the deferred port's flushes, multishot against one-shot, the PPC
round trips with perf bench right after the pipe row and the ratio between
them, one-way throughput = 1e9 / ns per call, the cross/same ratio beside the
baseline futex ping-pong, the PDF naming every variant, and the one line a
run without perf bench or without PPC gets.  No root needed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import load_run
from analysis.families import msgport as mp
from lab.families import msgport as fam
from tests.helpers import pdf_text
from tests.synthetic import HALTPOLL, SyntheticRun, exact_median, variant_params

REPS = 3
SAMPLES = 40                # samples per port / ppc run
BATCHES = (1, 8, 64)
PORT_OPS = ("nop", "pipe_read")
# known median ns per message per (mode, op) at BATCHES
PORT_NS = {
    ("port_poll", "nop"): (250.0, 90.0, 60.0), ("port_wait", "nop"): (480.0, 130.0, 77.0),
    ("port_eventfd", "nop"): (790.0, 135.0, 76.0), ("port_deferred", "nop"): (290.0, 80.0, 66.0),
    ("port_sync", "nop"): (130.0, 128.0, 106.0),
    ("port_poll", "pipe_read"): (1300.0, 640.0, 530.0),
    ("port_wait", "pipe_read"): (1560.0, 650.0, 545.0),
    ("port_eventfd", "pipe_read"): (1330.0, 480.0, 520.0),
    ("port_deferred", "pipe_read"): (1470.0, 680.0, 385.0),
    ("port_sync", "pipe_read"): (700.0, 250.0, 220.0),
}
# reaping enters per batch: waitsys() and the eventfd read one, the polled
# port none, the deferred port one flush per 20 late replies (Linux 6.13)
REAPS = {"port_poll": 0, "port_wait": 1, "port_eventfd": 1, "port_sync": 0}
# known round-trip medians [ns] per (transport, peer, placement)
RT = {
    ("ppc_msg_ring", "thread", "same_cpu"): 3700.0, ("ppc_futex", "thread", "same_cpu"): 2200.0,
    ("ppc_eventfd", "thread", "same_cpu"): 3500.0, ("ppc_pipe", "thread", "same_cpu"): 3600.0,
    ("ppc_unix_socket", "thread", "same_cpu"): 6600.0,
    ("ppc_msg_ring", "thread", "cross_cpu"): 52000.0, ("ppc_futex", "thread", "cross_cpu"): 62000.0,
    ("ppc_eventfd", "thread", "cross_cpu"): 52500.0, ("ppc_pipe", "thread", "cross_cpu"): 48000.0,
    ("ppc_unix_socket", "thread", "cross_cpu"): 48500.0,
    ("ppc_msg_ring", "process", "same_cpu"): 3000.0, ("ppc_futex", "process", "same_cpu"): 4100.0,
    ("ppc_eventfd", "process", "same_cpu"): 4250.0, ("ppc_pipe", "process", "same_cpu"): 4200.0,
    ("ppc_unix_socket", "process", "same_cpu"): 6900.0,
    ("ppc_msg_ring", "process", "cross_cpu"): 68000.0,
    ("ppc_futex", "process", "cross_cpu"): 50000.0,
    ("ppc_eventfd", "process", "cross_cpu"): 49000.0, ("ppc_pipe", "process", "cross_cpu"): 52000.0,
    ("ppc_unix_socket", "process", "cross_cpu"): 48800.0,
}
PERF = {("thread", "same_cpu"): 2700.0, ("thread", "cross_cpu"): 3600.0,
        ("process", "same_cpu"): 4000.0, ("process", "cross_cpu"): 4800.0}
PERF_LOOPS, PERF_INVOCATIONS = 1000, 6
# kernel view per round trip: system calls, and wake-ups across CPUs
RT_SYSCALLS = {"ppc_msg_ring": 2.0, "ppc_futex": 3.0, "ppc_eventfd": 3.5, "ppc_pipe": 4.0,
               "ppc_unix_socket": 4.0, "ppc_perf_bench_pipe": 4.13}
PERF_CROSS_WAKEUPS = 0.03
ASYNC_BATCH = 16
# known one-way ns per call (peer thread) per (transport, placement)
ONE_WAY = {("ppc_msg_ring", "same_cpu"): 690.0, ("ppc_futex", "same_cpu"): 210.0,
           ("ppc_eventfd", "same_cpu"): 220.0, ("ppc_pipe", "same_cpu"): 175.0,
           ("ppc_unix_socket", "same_cpu"): 465.0, ("ppc_msg_ring", "cross_cpu"): 3400.0,
           ("ppc_futex", "cross_cpu"): 3460.0, ("ppc_eventfd", "cross_cpu"): 3200.0,
           ("ppc_pipe", "cross_cpu"): 3250.0, ("ppc_unix_socket", "cross_cpu"): 3100.0}
# live messages: (variant, count, placement) -> median [ns]
LIVE = {("live_multishot_timeout", 8, None): 40000.0, ("live_oneshot_timeout", None, None): 27000.0,
        ("live_multishot_poll", 8, "same_cpu"): 2500.0,
        ("live_oneshot_poll", None, "same_cpu"): 2400.0}
FUTEX = {"same_cpu": 2000.0, "cross_cpu": 50000.0}       # baseline round trips [ns]


def _values(median: float, n: int = SAMPLES, seed: int = 0) -> np.ndarray:
    return exact_median(median, n, seed, spread=0.03)


def _port_counts(mode: str, op: str, batch: int) -> dict:
    """The worker's counts for a reply-port run, as msgport_port reports them."""
    late = op == "pipe_read"
    reaps = math.ceil(batch / 20) if mode == "port_deferred" and late else \
        REAPS.get(mode, 0)
    return {"messages": SAMPLES * batch, "completions": SAMPLES * batch, "bad_completions": 0,
            "submissions": SAMPLES * (batch if mode == "port_sync" else 1),
            "reap_syscalls": SAMPLES * reaps, "source_syscalls": SAMPLES if late else 0,
            "untimed_syscalls": 0,
            "taskrun_flagged": SAMPLES if mode == "port_deferred" and late else 0,
            "ready_at_submit": 0 if late else SAMPLES}


def msgport_results(tmp_path, ports: bool = True, live: bool = True, ppc: bool = True,
                    perf: bool = True, one_way: bool = True, baseline: bool = True,
                    probed: bool = True, name: str = "msgport-synth") -> str:
    """A results folder of the msgport family (and the baseline family's
    futex_pingpong, ``baseline``) with the known numbers above, REPS
    repetitions each; ``probed``: every run had probes attached and a
    kernel view (metrics.parquet) that agrees with the workers' counts."""
    from lab.families.baseline import FAMILY as BASELINE
    from lab.families.msgport import FAMILY
    synth = SyntheticRun(tmp_path / name, probed)

    def add(family, variant, params, series, rep, counters, ops, kernel=None):
        synth.add(family, variant, params, series, rep, counters, ops, kernel=kernel)

    for rep in range(REPS):
        for (mode, op), medians in PORT_NS.items() if ports else ():
            for batch, median in zip(BATCHES, medians):
                c = _port_counts(mode, op, batch)
                msgs = c["messages"]
                syscalls = c["submissions"] + c["reap_syscalls"] + c["source_syscalls"]
                kernel = {"syscalls_per_op": syscalls / msgs,
                          "submits_per_op": 0.0 if mode == "port_sync" else 1.0,
                          "uring_local_work_runs": float(c["reap_syscalls"])
                          if mode == "port_deferred" else 0.0}
                add("msgport", mode, variant_params(FAMILY, mode, op=op, batch=batch, samples=SAMPLES),
                    {"ns_per_message": _values(median, seed=rep)}, rep,
                    fam.port_counters(mode[len("port_"):], c, SAMPLES), msgs, kernel)
        for (variant, count, placement), median in LIVE.items() if live else ():
            multi = count is not None
            metric = "lateness" if variant.endswith("timeout") else "latency"
            params = variant_params(FAMILY, variant, count=count, placement=placement,
                             samples=SAMPLES)
            sqes = (2.0 if metric == "latency" else 1.0) / count if multi else 1.0
            add("msgport", variant, params, {metric: _values(median, seed=rep)}, rep,
                {"completions_per_submission": float(count or 1),
                 "max_completions_per_submission": float(count or 1), "cancels": 0.0},
                SAMPLES, {"submits_per_op": sqes, "completions_per_op": 1.0,
                          "syscalls_per_op": 1.0, "wakeups_per_op": 1.0})
        for (transport, peer, placement), median in RT.items() if ppc else ():
            params = variant_params(FAMILY, transport, mode="sync", peer=peer, placement=placement,
                             batch=1, samples=SAMPLES)
            cross = 2.0 * SAMPLES if placement == "cross_cpu" else 0.0
            add("msgport", transport, params, {"ns_per_call": _values(median, seed=rep)}, rep,
                {"calls_per_drain": 1.0, "missing_replies": 0.0, "duplicate_replies": 0.0},
                SAMPLES, {"syscalls_per_op": RT_SYSCALLS[transport], "wakeups_cross_cpu": cross})
        for (peer, placement), median in PERF.items() if ppc and perf else ():
            params = variant_params(FAMILY, "ppc_perf_bench_pipe", peer=peer, placement=placement,
                             loops=PERF_LOOPS, invocations=PERF_INVOCATIONS)
            ops = PERF_LOOPS * PERF_INVOCATIONS
            cross = PERF_CROSS_WAKEUPS * ops if placement == "cross_cpu" else 0.0
            add("msgport", "ppc_perf_bench_pipe", params,
                {"ns_per_call": _values(median, PERF_INVOCATIONS, seed=rep)}, rep,
                {"cpus_allowed": 1.0 if placement == "same_cpu" else 2.0,
                 "round_trips_in_window": float(ops)},
                ops, {"syscalls_per_op": RT_SYSCALLS["ppc_perf_bench_pipe"],
                      "wakeups_cross_cpu": cross})
        for (transport, placement), median in ONE_WAY.items() if ppc and one_way else ():
            params = variant_params(FAMILY, transport, mode="async", peer="thread",
                             placement=placement, batch=ASYNC_BATCH, samples=SAMPLES)
            add("msgport", transport, params, {"ns_per_call": _values(median, seed=rep)}, rep,
                {"calls_per_drain": float(ASYNC_BATCH)}, SAMPLES * ASYNC_BATCH,
                {"syscalls_per_op": 4.0 / ASYNC_BATCH})
        for placement, median in FUTEX.items() if baseline else ():
            add("baseline", "futex_pingpong", {"samples": SAMPLES, "warmup": 10,
                                               "placement": placement},
                {"round_trip": _values(median, seed=rep),
                 "handoff": _values(median / 2, seed=rep)}, rep, {}, SAMPLES)
    families = {"baseline": BASELINE, "msgport": FAMILY} if baseline else {"msgport": FAMILY}
    return synth.write(name, families, REPS, probes=("syscalls", "io_uring", "wakeups"),
                       environment=HALTPOLL)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return load_run(msgport_results(tmp_path_factory.mktemp("msgport")))


def test_reply_port_table_pairs_mode_and_batch(synthetic):
    table = mp.reply_port_table(synthetic)
    assert len(table) == len(PORT_NS) * len(BATCHES)
    assert list(dict.fromkeys(table["op"])) == list(PORT_OPS)
    for op in PORT_OPS:
        part = table[table["op"] == op]
        assert list(dict.fromkeys(part["mode"])) == list(mp.PORTS)
        for mode in mp.PORTS:
            assert list(part.loc[part["mode"] == mode, "batch"]) == list(BATCHES)
    for _, r in table.iterrows():
        i = BATCHES.index(r["batch"])
        assert r["median"] == pytest.approx(PORT_NS[(r["mode"], r["op"])][i])
        assert r["ci_low"] <= r["median"] <= r["ci_high"]
        assert r["n"] == SAMPLES * REPS and r["reps"] == REPS
        c = _port_counts(r["mode"], r["op"], r["batch"])
        expected = (c["submissions"] + c["reap_syscalls"] + c["source_syscalls"]) / c["messages"]
        # the kernel's count and the workers' agree, one row per (mode, batch)
        assert r["kernel_syscalls_per_message"] == pytest.approx(expected)
        assert r["syscalls_per_message"] == pytest.approx(expected)
        if r["mode"] == "port_sync":
            assert r["kernel_sqes_per_message"] == 0
        else:
            assert r["completions_per_submission"] == r["batch"]
            assert r["kernel_sqes_per_message"] == 1
    poll64 = table[(table["mode"] == "port_poll") & (table["op"] == "nop")
                   & (table["batch"] == 64)].iloc[0]
    assert poll64["kernel_syscalls_per_message"] == pytest.approx(1 / 64)
    c = mp.cheapest_port(table, "nop", 1)
    assert c["best"]["mode"] == "port_sync" and c["runner_up"]["mode"] == "port_poll"
    assert c["ratio"] == pytest.approx(250 / 130) and c["told_apart"]
    text = " ".join(mp.port_lines(table))
    assert "op=nop: the cheapest reply port at batch 1 port_sync, 130 ns per message (next: " \
           "port_poll, 1.92x it); at batch 64 port_poll, 60.0 ns per message (next: " \
           "port_deferred, 1.1x it)" in text
    assert "port_poll over port_sync: 1.92x at batch 1, 0.703x at batch 8, 0.566x at batch 64: " \
           "the polled port is cheaper at batch 8, 64, dearer at batch 1" in text
    assert "op=pipe_read" in text and "plain system calls are cheaper at every batch" in text


def test_deferred_flushes_per_batch(synthetic):
    data = mp.flushsys_table(synthetic)
    assert len(data) == len(PORT_OPS) * len(BATCHES)
    late = data[data["op"] == "pipe_read"].set_index("batch")
    assert list(late["reaps_per_batch"]) == [1, 1, 4]
    assert list(late["kernel_local_work_runs_per_batch"]) == pytest.approx([1, 1, 4])
    assert list(late["cap_flushes"]) == [1, 1, 4]
    assert (late["taskrun_flagged_per_batch"] == 1).all()
    assert (late["wait_reaps_per_batch"] == 1).all()
    inline = data[data["op"] == "nop"]
    assert (inline["reaps_per_batch"] == 0).all()
    assert (inline["ready_at_submit_fraction"] == 1).all()
    text = " ".join(mp.flushsys_lines(data))
    assert "reaping enters per batch (io_uring_get_events() and GETEVENTS waits) 1 at batch 1" \
           in text
    assert "4 at batch 64 (kernel: 4.00 task-work runs)" in text
    assert "ceil(64/20) = 4: the cap accounts for them" in text
    assert "op=nop: never flagged IORING_SQ_TASKRUN" in text


def test_live_multishot_against_oneshot(synthetic):
    data = mp.live_table(synthetic)
    assert len(data) == len(LIVE)
    pairs = mp.live_pairs(data)
    assert [(p["multishot"]["kind"], p["oneshot"]["variant"]) for p in pairs] == \
        [("timeout", "live_oneshot_timeout"), ("poll", "live_oneshot_poll")]
    assert pairs[0]["ratio"] == pytest.approx(40000 / 27000) and pairs[0]["low"] > 1
    timeout = data[data["variant"] == "live_multishot_timeout"].iloc[0]
    assert timeout["completions_per_submission"] == 8
    assert timeout["kernel_sqes_per_completion"] == pytest.approx(1 / 8)
    text = " ".join(mp.live_lines(data))
    assert "timeout every 100 us: multishot count=8 lateness median 40.0 us" in text
    assert "8.00 completions per submission against 1.00" in text
    assert "0.125 SQEs per completion against 1.00" in text
    assert "two SQEs per count completions" in text           # the poll's 2/8


def test_perf_bench_row_right_after_the_pipe_row(synthetic):
    rt = mp.ppc_round_trips(synthetic)
    assert len(rt) == len(RT) + len(PERF)
    assert (rt["mode"] == "sync").all()
    for (peer, placement), perf in PERF.items():
        here = rt[(rt["peer"] == peer) & (rt["placement"] == placement)]
        # the family's order, of the transports the run has
        assert list(here["transport"]) == [t for t in mp.PPC_ROWS
                                           if t in set(here["transport"])]
        assert len(here) == len(RT) // 4 + 1
        index = list(here.index)
        pipe_at = index[list(here["transport"]).index("ppc_pipe")]
        row = rt.loc[pipe_at + 1]
        assert row["transport"] == "ppc_perf_bench_pipe"
        assert row["median"] == pytest.approx(perf)
        pipe = RT[("ppc_pipe", peer, placement)]
        assert row["ours_over_perf"] == pytest.approx(pipe / perf)
        assert row["ours_over_perf_low"] <= row["ours_over_perf"] <= row["ours_over_perf_high"]
        assert math.isnan(rt.loc[pipe_at, "ours_over_perf"])
        assert row["kernel_syscalls_per_call"] == pytest.approx(4.13)
    text = " ".join(mp.perf_lines(rt))
    assert "ppc_pipe against perf bench sched pipe, same_cpu, thread peer: 3.60 us against " \
           "2.70 us per round trip, 1.33x" in text
    caveat = mp.perf_caveat_line(synthetic, rt)
    assert "perf 6.1 cannot pin its two tasks to different CPUs" in caveat
    assert "(cpus_allowed = 2)" in caveat
    assert "it woke across CPUs 0.0300 times per round trip (thread)" in caveat
    assert "where ppc_pipe across CPUs woke across 2.00 times" in caveat
    # said once, under the table
    assert sum("perf 6.1 cannot pin" in line for line in mp.ppc_lines(synthetic)) == 1


def test_one_way_throughput_is_1e9_over_ns(synthetic):
    data = mp.ppc_one_way(synthetic)
    assert len(data) == len(ONE_WAY)
    assert (data["batch"] == ASYNC_BATCH).all()
    for _, r in data.iterrows():
        ns = ONE_WAY[(r["transport"], r["placement"])]
        assert r["median"] == pytest.approx(ns)
        assert r["calls_per_s"] == pytest.approx(1e9 / ns)
        assert r["of_round_trip"] == pytest.approx(ns / RT[(r["transport"], "thread",
                                                             r["placement"])])
        assert r["kernel_syscalls_per_call"] == pytest.approx(4 / ASYNC_BATCH)
    text = " ".join(mp.one_way_lines(data))
    assert "One-way, same_cpu, thread peer, batch 16: the most calls per second: ppc_pipe, " \
           "5,710,000 calls/s (175 ns per call" in text


def test_findings(synthetic):
    lines = mp.findings_lines(synthetic)
    text = " ".join(lines)
    assert "nop: batch 1: sync (130 ns), batch 8: deferred (80.0 ns), batch 64: poll (60.0 ns)" \
        in text
    assert "MSG_RING round trip same_cpu: thread: 3.70 us, 4th of 5 (1.68x futex" in text
    assert "process: 3.00 us, fastest of 5" in text
    assert "Our pipe round trip against perf bench sched pipe: same_cpu thread: 3.60 vs 2.70 " \
           "us (1.33x); same_cpu process: 4.20 vs 4.00 us (1.05x)." in text
    ratios = mp.cross_same(mp.ppc_round_trips(synthetic))
    assert len(ratios) == 10
    median = float(np.median([RT[(t, p, "cross_cpu")] / RT[(t, p, "same_cpu")]
                              for t in mp.TRANSPORTS for p in ("thread", "process")
                              if (t, p, "cross_cpu") in RT]))
    assert f"the PPC round trips take {median:.3g}x their same-CPU median" in text
    assert "the kernel counted 2.00 wake-ups across CPUs per cross_cpu round trip" in text
    assert "The cpuidle driver is haltpoll with guest halt polling off" in text
    # the baseline futex ping-pong in the same run: 2.00 / 50.0 us, 25x
    assert "futex_pingpong in this run: 2.00 us per round trip on one CPU, 50.0 us across " \
           "(25x); its one-way handoff 1.00 / 25.0 us" in text
    assert "ppc_futex between threads, the same mechanism: 2.20 / 62.0 us (28.2x)" in text
    assert mp.NO_PERF_LINE not in text and mp.NO_PPC_LINE not in text
    assert mp.NO_BASELINE_LINE not in text


def test_report_names_every_msgport_variant(tmp_path):
    from analysis.report import write_report
    run_dir = msgport_results(tmp_path)
    words = pdf_text(write_report(run_dir, str(tmp_path / "msgport.pdf")))
    section = words[words.index("What this run shows"):]
    for variant in fam.FAMILY.variants:
        assert variant.name in section, variant.name
    for heading in ("Reply ports: sendsys, waitsys and flushsys on io_uring",
                    "flushsys(): the deferred reply port",
                    "Live messages: multishot against re-armed one-shot",
                    "PPC: round trips and one-way streams between threads and processes",
                    "PPC one-way streams: ns per call and calls per second",
                    "msgport: reply ports, ns per message against the batch",
                    "msgport: reply ports, system calls per message against the batch",
                    "msgport: PPC round trips by transport, same vs cross CPU",
                    "msgport: live messages, multishot and re-armed one-shot"):
        assert heading in words, heading
    # the perf bench row right after the pipe row, with the ratio
    assert "ppc_pipe thread same_cpu 120 3 3.60" in section
    assert "ppc_perf_bench_pipe thread same_cpu 18 3 2.70" in section
    assert "4.13 0 1.33x" in section


def test_a_run_without_perf_bench_says_so_in_one_line(tmp_path):
    run = load_run(msgport_results(tmp_path, perf=False, baseline=False, name="noperf"))
    lines = mp.findings_lines(run)
    assert lines.count(mp.NO_PERF_LINE) == 1
    assert lines.count(mp.NO_BASELINE_LINE) == 1
    assert mp.perf_caveat_line(run, mp.ppc_round_trips(run)) is None
    assert mp.perf_lines(mp.ppc_round_trips(run)) == [mp.NO_PERF_LINE]
    assert np.isnan(mp.ppc_round_trips(run)["ours_over_perf"]).all()


def test_a_run_without_ppc_says_so_in_one_line(tmp_path):
    from analysis.report import write_report
    run_dir = msgport_results(tmp_path, ppc=False, live=False, probed=False, name="noppc")
    run = load_run(run_dir)
    assert mp.ppc_round_trips(run).empty and mp.ppc_one_way(run).empty
    lines = mp.findings_lines(run)
    assert lines.count(mp.NO_PPC_LINE) == 1
    assert mp.NO_PERF_LINE not in lines          # no PPC at all: one line, not two
    # no kernel view: said, and the workers' own counts still shown
    table = mp.reply_port_table(run)
    assert table["kernel_syscalls_per_message"].isna().all()
    assert table["syscalls_per_message"].notna().all()
    words = pdf_text(write_report(run_dir, str(tmp_path / "noppc.pdf")))
    assert "no kernel view: synthetic" in words
    assert "This run has no PPC variant" in words
    assert "msgport: PPC round trips" not in words
