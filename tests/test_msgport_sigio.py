"""K42's asynchronous PPC entered by a soft interrupt (ppc_sigio): every
request served by the handler, exactly once, the process's SIGUSR2 and
fds as they were, the refusals, and the report's table (synthetic).
Mechanics only, never timings."""

from __future__ import annotations

import errno
import os
import signal

import numpy as np
import pytest

from lab.families import msgport
from tests.test_msgport_ppc import c_side_spin_rc

CPU = min(os.sched_getaffinity(0))
PEER = max(os.sched_getaffinity(0))
PLACEMENTS = ["same_cpu", "cross_cpu"] if CPU != PEER else ["same_cpu"]
# prime counts: a request lost, doubled or served twice cannot hide in a
# multiple of the batch
SAMPLES, WARMUP, ASYNC_BATCH = 61, 6, 13


def params(**kw):
    p = {x.name: x.default for x in msgport.PARAMS}
    p.update(samples=SAMPLES, warmup=WARMUP)
    p.update(kw)
    return p


def _caught(sig: int) -> bool:
    """The kernel's view of this process: is ``sig`` caught (SigCgt)?"""
    with open("/proc/self/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    return bool(mask >> (sig - 1) & 1)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("peer", ["thread", "process"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_handler_serves_every_request_exactly_once(mode, peer, placement):
    batch = ASYNC_BATCH if mode == "async" else 1
    fds = sorted(os.listdir("/proc/self/fd"))
    p = params(mode=mode, peer=peer, placement=placement, batch=batch)
    assert msgport.point_problem("ppc_sigio", p) is None
    out, c = msgport.run_ppc("sigio", p, CPU, PEER if placement == "cross_cpu" else CPU)
    sent = (SAMPLES + WARMUP) * batch
    assert c["requests"] == c["replies"] == c["server_requests"] == sent
    assert c["duplicate_replies"] == c["missing_replies"] == c["unexpected_replies"] == 0
    # every request was served inside the entry point: none was left for
    # the server's way out
    assert c["server_outside_requests"] == 0
    # each entry served something or found the pipe empty; a write raises
    # at most one signal (STOP's write and the last writer's close one more)
    assert c["server_signals"] == c["server_drains"] + c["server_empty_signals"]
    assert 1 <= c["server_drains"] <= sent
    assert c["server_signals"] <= sent + 2
    assert c["server_spins"] > 0
    assert out.size == SAMPLES and np.all(out > 0)
    assert sorted(os.listdir("/proc/self/fd")) == fds


def test_sigusr2_is_put_back_as_it_was():
    """A handler the process had before the run is the one after it, and a
    default disposition stays default (bit for bit: not caught)."""
    seen = []
    old = signal.signal(signal.SIGUSR2, lambda *_: seen.append(1))
    try:
        assert _caught(signal.SIGUSR2)
        msgport.run_ppc("sigio", params(mode="async", batch=ASYNC_BATCH), CPU, CPU)
        assert _caught(signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR2)
        signal.sigtimedwait([], 0)  # let Python run its handler
        assert seen == [1]
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        assert not _caught(signal.SIGUSR2)
        msgport.run_ppc("sigio", params(), CPU, CPU)
        assert not _caught(signal.SIGUSR2)
    finally:
        signal.signal(signal.SIGUSR2, old)


def test_a_spinning_receiver_is_refused_with_one_line():
    problem = msgport.point_problem("ppc_sigio", params(receiver="spin"))
    assert problem and "\n" not in problem and "receiver=park" in problem
    # and the C side refuses it too
    assert c_side_spin_rc("sigio") == -errno.EINVAL


# ---- the report's table (synthetic, no root) ----------------------------------------

REPS, N = 3, 40


def _sigio_run(tmp_path, medians: dict):
    from analysis import load_run
    from lab.families.msgport import FAMILY
    from tests.synthetic import SyntheticRun, exact_median, variant_params
    synth = SyntheticRun(tmp_path / "sigio")
    for rep in range(REPS):
        for (variant, placement), (median, per_signal) in medians.items():
            p = variant_params(FAMILY, variant, mode="async", batch=16, peer="thread",
                               placement=placement, samples=N)
            counters = {"calls_per_drain": 16.0}
            if per_signal is not None:
                counters["calls_per_signal"] = per_signal
            synth.add("msgport", variant, p, {"ns_per_call": exact_median(median, N, rep, 0.02)},
                      rep, counters, N * 16)
    return load_run(synth.write("sigio", {"msgport": FAMILY}, REPS))


def test_soft_interrupt_table_sets_sigio_beside_the_parked_pipe(tmp_path):
    from analysis.families import msgport as mp
    from analysis.report import write_report
    run = _sigio_run(tmp_path, {("ppc_sigio", "same_cpu"): (900.0, 400.0),
                                ("ppc_pipe", "same_cpu"): (600.0, None),
                                ("ppc_sigio", "cross_cpu"): (2000.0, 1.5),
                                ("ppc_pipe", "cross_cpu"): (4000.0, None)})
    table = mp.soft_interrupt_table(run).set_index("placement")
    assert table.loc["same_cpu", "over_pipe"] == pytest.approx(1.5)
    assert table.loc["cross_cpu", "over_pipe"] == pytest.approx(0.5)
    assert table.loc["cross_cpu", "over_pipe_low"] < 0.5 < table.loc["cross_cpu", "over_pipe_high"]
    assert table.loc["same_cpu", "calls_per_signal"] == pytest.approx(400.0)
    lines = mp.soft_interrupt_lines(mp.soft_interrupt_table(run))
    assert any(line.startswith("same_cpu:") and "1.5x" in line for line in lines)
    assert os.path.getsize(write_report(run.path)) > 0


def test_no_sigio_point_no_table(tmp_path):
    from analysis.families import msgport as mp
    run = _sigio_run(tmp_path, {("ppc_pipe", "same_cpu"): (600.0, None)})
    assert mp.soft_interrupt_table(run).empty
    assert mp.soft_interrupt_lines(mp.soft_interrupt_table(run)) == []
