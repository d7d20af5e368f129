"""Reply ports that run code (family `msgport`, lab/families/_msgport_upcall.py):
exact counts, no timings.  N = 13 batches of 7 (prime) per run, every op.

An upcall port runs its function (the SIGUSR1 handler) exactly once per
signal the program sent, and every reply is reaped exactly once, by it, in
the submitting thread (no foreign completion).  port_critical: every reply
that came inside the critical section is delivered by the flush on leaving
(the program's deferred count = the flush's), and the handler never runs
inside; pipe_read's replies come outside, as upcalls.
port_timeout_upcall with flush_after_us > timeout_us turns every batch into
exactly one upcall, and with flush_after_us 0 every batch is flushed in
time.  After the run SIGUSR1's disposition (as the kernel holds it) is what
it was, and no program of the part is loaded.  Root with bcc; each must
hold with other processes spinning on both CPUs.
"""

import os
import time

import pytest

from lab import store
from lab.families import _msgport_upcall as U
from lab.families import msgport

from .helpers import lab_bpf_objects, require_probes, run_dir_of, run_lab

CPU = min(os.sched_getaffinity(0))
BATCHES, BATCH = 13, 7
N = BATCHES * BATCH
OPS = msgport.OPS


def params(**kw):
    p = {x.name: x.default for x in msgport.PARAMS + U.PARAMS}
    p.update(batch=BATCH, samples=BATCHES, warmup=3)
    p.update(kw)
    return p


def part_objects(settle=0.0):
    """The part's programs and maps still loaded (the kernel frees them an
    RCU grace period after the last fd closes: wait up to settle s)."""
    deadline = time.monotonic() + settle
    while True:
        names = [n for n in lab_bpf_objects() if n.split()[1].startswith("lab_mp")]
        if not names or time.monotonic() >= deadline:
            return names
        time.sleep(0.05)


@pytest.fixture
def map_fd():
    require_probes()
    with U.port_program() as fd:
        yield fd


def run(variant, map_fd, tmp_path, **kw):
    p = params(**kw)
    out, port, c = U.run_upcall_port(variant, p, CPU, str(tmp_path), map_fd)
    assert port["messages"] == port["completions"] == N
    assert port["bad_completions"] == 0
    assert len(out) == BATCHES and (out > 0).all()
    # every reply was one of this run's, seen by the program in the submitter
    assert c["completions_seen"] == N
    assert c["foreign_completions"] == c["send_errors"] == c["stray_signals"] == 0
    assert U.mechanics(variant, p, c) is None
    return port, c


@pytest.mark.parametrize("op", OPS)
def test_upcall_port_runs_its_function_once_per_signal(map_fd, tmp_path, op):
    _, c = run("port_upcall", map_fd, tmp_path, op=op)
    assert c["signals_handled"] == c["signals_sent"] >= 1
    assert c["empty_signals"] == 0
    # each reply reaped once, all by the port function
    assert c["handler_replies"] == N
    assert c["deferred_replies"] == c["flushed_replies"] == c["timeouts_fired"] == 0


@pytest.mark.parametrize("op", ["nop", "read", "pipe_write"])
def test_critical_section_defers_every_reply_to_the_flush(map_fd, tmp_path, op):
    # inline replies come during the submission, inside the section
    _, c = run("port_critical", map_fd, tmp_path, op=op)
    assert c["deferred_replies"] == c["flushed_replies"] == N
    assert c["signals_sent"] == c["signals_handled"] == c["handler_replies"] == 0
    assert c["critical_violations"] == 0


def test_critical_port_upcalls_outside_and_never_inside(map_fd, tmp_path):
    # pipe_read's replies come from the write() after the section
    _, c = run("port_critical", map_fd, tmp_path, op="pipe_read")
    assert c["deferred_replies"] == c["flushed_replies"] == 0
    assert c["signals_handled"] == c["signals_sent"] >= 1
    assert c["handler_replies"] == N
    assert c["critical_violations"] == 0


@pytest.mark.parametrize("op", OPS)
def test_late_flush_makes_every_batch_one_upcall(map_fd, tmp_path, op):
    _, c = run("port_timeout_upcall", map_fd, tmp_path, op=op, timeout_us=20,
               flush_after_us=3000)
    assert c["signals_sent"] == 0               # passive: the program never signals
    assert c["timeouts_fired"] == c["signals_handled"] == BATCHES
    assert c["flushed_in_time"] == 0
    assert c["handler_replies"] == N


def test_early_flush_disarms_the_timer(map_fd, tmp_path):
    _, c = run("port_timeout_upcall", map_fd, tmp_path, op="nop", timeout_us=500_000,
               flush_after_us=0)
    assert c["flushed_in_time"] == BATCHES
    assert c["timeouts_fired"] == c["signals_handled"] == c["handler_replies"] == 0


def test_signal_disposition_and_program_restored(tmp_path):
    require_probes()
    before = U.sigusr1_disposition()
    with U.port_program() as fd:
        for variant in U.MODES:
            run(variant, fd, tmp_path, op="pipe_read", timeout_us=20, flush_after_us=200)
            assert U.sigusr1_disposition() == before
    assert U.sigusr1_disposition() == before
    assert part_objects(settle=10) == []


def test_a_suite_run_compiles_the_program_once_and_leaves_none(tmp_path):
    """lab run of the three ports: every worker attached the program the
    runner compiled for the suite (lab.programs), every run's counts hold
    (the worker checks mechanics()), and nothing of the part is loaded after."""
    require_probes()
    suite_file = tmp_path / "ports.toml"
    suite_file.write_text(f"""
[suite]
repetitions = 2
[msgport]
variants = {list(U.MODES)}
op = "nop"
batch = {BATCH}
samples = {BATCHES}
warmup = 3
timeout_us = 20
flush_after_us = 200
""")
    proc = run_lab(["run", str(suite_file), "--out", str(tmp_path / "res"), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    runs = store.read_manifest(run_dir_of(str(tmp_path / "res")))["runs"]
    assert sorted({r["variant"] for r in runs}) == sorted(U.MODES)
    assert all(r["status"] == "ok" for r in runs), [r["reason"] for r in runs]
    assert all(r["counters"]["program_from_runner"] == 1 for r in runs)
    assert part_objects(settle=10) == []


def test_bad_config_is_refused_and_restores(map_fd, tmp_path):
    before = U.sigusr1_disposition()
    from lab.native import NativeError
    with pytest.raises(NativeError):
        U.run_upcall_port("port_upcall", params(batch=0), CPU, str(tmp_path), map_fd)
    with pytest.raises(NativeError):
        U.run_upcall_port("port_upcall", params(), CPU, str(tmp_path), -1)
    assert U.sigusr1_disposition() == before


# ---- the analysis (synthetic results, known numbers; no root) ----------------------------

# known median ns per message at op nop, batch 8
KNOWN = {("port_upcall", None): 1100.0, ("port_critical", None): 180.0,
         ("port_timeout_upcall", 0): 2000.0, ("port_timeout_upcall", 200): 25000.0,
         ("port_eventfd", None): 200.0, ("port_deferred", None): 100.0}


def test_analysis_sets_the_upcall_ports_beside_eventfd_and_deferred(tmp_path):
    from analysis import load_run
    from analysis.families import _msgport_upcall as A
    from tests.synthetic import SyntheticRun, exact_median, variant_params
    synth = SyntheticRun(tmp_path / "synth")
    samples = 40
    for rep in range(3):
        for (variant, flush), median in KNOWN.items():
            p = variant_params(msgport.FAMILY, variant, op="nop", batch=8, samples=samples,
                               **({} if flush is None else {"flush_after_us": flush}))
            signals = {"port_upcall": samples, "port_timeout_upcall": samples if flush else 0}
            handled = signals.get(variant, 0)
            counters = {"signals_handled": handled, "handler_replies": 8 * handled,
                        "replies_per_signal": 8.0 if handled else 0.0,
                        "deferred_replies": 8 * samples if variant == "port_critical" else 0,
                        "timeouts_fired": handled if variant == "port_timeout_upcall" else 0,
                        "flushed_in_time": 0}
            synth.add("msgport", variant, p, {"ns_per_message": exact_median(median, samples,
                                                                             rep)},
                      rep, counters if variant in U.MODES else {}, 8 * samples)
    run = load_run(synth.write("synth", {"msgport": msgport.FAMILY}, 3))
    t = A.upcall_port_table(run)
    assert list(t["variant"]) == ["port_upcall", "port_critical", "port_timeout_upcall",
                                  "port_timeout_upcall", "port_eventfd", "port_deferred"]
    med = {(v, f if f == f else None): m for v, f, m in
           zip(t["variant"], t["flush_after_us"].astype(float), t["median"])}
    assert med == pytest.approx({k: v for k, v in KNOWN.items()})
    row = t.set_index("variant").loc["port_upcall"]
    assert row["replies_per_signal"] == 8.0 and row["signals_per_batch"] == 1.0
    assert t.set_index("variant").loc["port_critical", "deferred_per_batch"] == 8.0
    timeout = t[t["variant"] == "port_timeout_upcall"].set_index("flush_after_us")
    assert list(timeout["timeouts_per_batch"].astype(float)) == [0.0, 1.0]
    (line,) = A.lines(t)
    # 1100 / 200 and 1100 / 100; 180 / 200 and 180 / 100
    assert "port_upcall 1100 ns per message, 5.5x port_eventfd" in line
    assert "11x port_deferred" in line and "8.00 replies per signal" in line
    assert "port_critical 180 ns per message, 0.9x port_eventfd" in line


def test_analysis_without_upcall_ports_is_empty(tmp_path):
    from analysis import load_run
    from analysis.families import _msgport_upcall as A
    from tests.synthetic import SyntheticRun, exact_median, variant_params
    synth = SyntheticRun(tmp_path / "synth")
    p = variant_params(msgport.FAMILY, "port_eventfd", op="nop", batch=8, samples=40)
    synth.add("msgport", "port_eventfd", p, {"ns_per_message": exact_median(200.0, 40)}, 0,
              {}, 320)
    run = load_run(synth.write("synth", {"msgport": msgport.FAMILY}, 1))
    assert A.upcall_port_table(run).empty
    assert A.lines(A.upcall_port_table(run)) == []
