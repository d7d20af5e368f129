"""msgport's PPC accounting (K42: whose time a call is) and MSG_RING to a
DEFER_TASKRUN ring, parked or spinning: mechanics only (counts, bounds,
refusals), never timings."""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest

from lab.families import msgport
from lab.native import load, standalone_handshake

ffi, lib = load()

CPU = min(os.sched_getaffinity(0))
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
PEER = max(os.sched_getaffinity(0))
PLACEMENT = "cross_cpu" if TWO_CPUS else "same_cpu"


def params(**kw):
    p = {x.name: x.default for x in msgport.PARAMS}
    p.update(samples=60, warmup=6, placement=PLACEMENT)
    p.update(kw)
    return p


def _batch(mode: str) -> int:
    return 16 if mode == "async" else 1


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("peer", ["thread", "process"])
@pytest.mark.parametrize("transport", msgport.TRANSPORTS)
def test_cpu_time_is_charged_to_both_sides_within_the_window(transport, peer, mode):
    out, c = msgport.run_ppc(transport, params(mode=mode, peer=peer, batch=_batch(mode)),
                             CPU, PEER)
    assert c["client_cpu_ns"] > 0 and c["server_cpu_ns"] > 0 and c["wall_ns"] > 0
    # two threads run at most the window each: their sum is at most twice it
    assert c["client_cpu_ns"] + c["server_cpu_ns"] <= 2 * c["wall_ns"]
    a = msgport.ppc_accounting(c)
    assert 0 < a["server_cpu_fraction"] < 1
    assert a["wall_ns_per_call"] * c["window_requests"] == pytest.approx(c["wall_ns"])
    # the tids name the two threads the probes count
    assert c["client_tid"] == threading.get_native_id()
    assert c["server_tid"] != c["client_tid"]
    if peer == "process":
        assert c["server_tid"] == c["server_tgid"]


RECEIVERS = [("park", "same_cpu"), ("park", PLACEMENT), ("spin", PLACEMENT)]


@pytest.mark.parametrize("receiver,placement", sorted(set(RECEIVERS)))
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("peer", ["thread", "process"])
@pytest.mark.parametrize("transport", msgport.SPIN_RECEIVERS)
def test_every_request_gets_one_reply_parked_or_spinning(transport, peer, mode, receiver,
                                                         placement):
    batch = _batch(mode)
    fds = sorted(os.listdir("/proc/self/fd"))
    p = params(mode=mode, peer=peer, batch=batch, receiver=receiver, placement=placement)
    assert msgport.point_problem(transport, p) is None
    out, c = msgport.run_ppc(transport.removeprefix("ppc_"), p, CPU, PEER)
    sent = 66 * batch
    assert c["requests"] == c["replies"] == c["server_requests"] == sent
    assert c["duplicate_replies"] == c["missing_replies"] == c["unexpected_replies"] == 0
    assert out.size == 60 and np.all(out > 0)
    assert sorted(os.listdir("/proc/self/fd")) == fds


def test_a_receiver_that_cannot_spin_is_skipped_with_one_line():
    for variant in ("ppc_pipe", "ppc_futex", "ppc_unix_socket"):
        problem = msgport.point_problem(variant, params(receiver="spin"))
        assert problem and "\n" not in problem and "receiver=spin" in problem
        assert msgport.point_problem(variant, params(receiver="park")) is None
    for variant in msgport.SPIN_RECEIVERS:
        assert msgport.point_problem(variant, params(receiver="spin")) is None
    # and the C side refuses it too
    assert c_side_spin_rc("pipe") == -errno.EINVAL


def c_side_spin_rc(transport: str) -> int:
    """msgport_ppc's return for ``transport`` asked to spin (enum
    msgport_receiver: 1 = spin), past the Python checks."""
    out = np.zeros(4)
    counts = ffi.new("struct msgport_ppc_counts *")
    index = dict(zip(msgport.TRANSPORTS, range(len(msgport.TRANSPORTS))))[transport]
    return lib.msgport_ppc(standalone_handshake(), index, 0, 0, 1, CPU, CPU, 1, 0, 4,
                           ffi.cast("double *", ffi.from_buffer(out)), counts)


# ---- the analysis: accounting, its probe cross-check, the verdict (synthetic, no root) ----

ACC_SAMPLES, ACC_REPS, WINDOW_NS = 40, 3, 10**7
CLIENT_TID, SERVER_TID = 101, 202


def _accounting_run(tmp_path, medians: dict, name: str = "acc"):
    """A probed msgport folder: per (transport, receiver) a sync thread
    round trip at ``medians[(transport, receiver)]`` ns, its clocks saying
    the client ran 30% and the server 50% of the window, and the switches
    probe's per-thread offcpu_ns saying the client was off 70% and the
    server 40% of it (so sched_switch charges the server 60%)."""
    from analysis import load_run
    from lab.families.msgport import FAMILY
    from tests.synthetic import SyntheticRun, exact_median, variant_params
    synth = SyntheticRun(tmp_path / name, probed=True)
    calls = ACC_SAMPLES
    for rep in range(ACC_REPS):
        for (transport, receiver), median in medians.items():
            params = variant_params(FAMILY, transport, mode="sync", peer="thread",
                                    placement="cross_cpu", receiver=receiver, batch=1,
                                    samples=ACC_SAMPLES)
            counters = {"client_cpu_ns_per_call": 0.3 * WINDOW_NS / calls,
                        "server_cpu_ns_per_call": 0.5 * WINDOW_NS / calls,
                        "server_cpu_fraction": 0.5 / 0.8,
                        "client_tid": float(CLIENT_TID), "server_tid": float(SERVER_TID)}
            entry = synth.add("msgport", transport, params,
                              {"ns_per_call": exact_median(median, ACC_SAMPLES, rep, 0.02)},
                              rep, counters, calls, window_ns=WINDOW_NS,
                              kernel={"syscalls_per_op": 2.0})
            synth.metric_rows += [
                (entry["id"], "switches", "offcpu_ns", f"tid={CLIENT_TID} client",
                 0.7 * WINDOW_NS),
                (entry["id"], "switches", "offcpu_ns", f"tid={SERVER_TID} server",
                 0.4 * WINDOW_NS)]
    return load_run(synth.write(name, {"msgport": FAMILY}, ACC_REPS, probes=("switches",)))


def test_accounting_table_carries_the_clocks_and_the_sched_switch_charge(tmp_path):
    from analysis.families import msgport as mp
    run = _accounting_run(tmp_path, {("ppc_pipe", "park"): 40000.0,
                                     ("ppc_futex", "park"): 30000.0})
    table = mp.ppc_accounting(run)
    assert sorted(table["transport"]) == ["ppc_futex", "ppc_pipe"]
    per_call = WINDOW_NS / ACC_SAMPLES
    assert table["client_cpu_ns_per_call"].tolist() == pytest.approx([0.3 * per_call] * 2)
    assert table["server_cpu_fraction"].tolist() == pytest.approx([0.625] * 2)
    # window - offcpu: the client 30%, the server 60% of the window
    assert table["probe_client_cpu_ns_per_call"].tolist() == pytest.approx([0.3 * per_call] * 2)
    assert table["probe_server_cpu_ns_per_call"].tolist() == pytest.approx([0.6 * per_call] * 2)
    line = mp.probe_agreement_line(table)
    assert "the client's 1x of its clock (at all 2 points)" in line
    assert "the server's 1.2x of its clock" in line
    assert "charged the caller least with" in mp.accounting_line(table)


@pytest.mark.parametrize("medians,claim", [
    # eventfd beats plain MSG_RING, MSG_RING to a DEFER_TASKRUN ring loses to eventfd
    ({("ppc_msg_ring", "park"): 60000.0, ("ppc_eventfd", "park"): 20000.0,
      ("ppc_msg_ring_defer", "park"): 50000.0}, "supports claim A"),
    # MSG_RING to a parked DEFER_TASKRUN ring beats eventfd, which loses to MSG_RING
    ({("ppc_msg_ring", "park"): 20000.0, ("ppc_eventfd", "park"): 60000.0,
      ("ppc_msg_ring_defer", "park"): 15000.0}, "supports claim B"),
    # all alike: neither claim
    ({("ppc_msg_ring", "park"): 30000.0, ("ppc_eventfd", "park"): 30000.0,
      ("ppc_msg_ring_defer", "park"): 30000.0}, "supports neither claim"),
])
def test_msg_ring_verdict_follows_the_intervals(tmp_path, medians, claim):
    from analysis.families import msgport as mp
    verdict = mp.msg_ring_verdict(mp.ppc_accounting(_accounting_run(tmp_path, medians)))
    assert claim in verdict, verdict


def test_round_trips_keep_the_parked_server_and_the_report_renders(tmp_path):
    """A spinning server's points sit in the receivers' table only: the
    round-trip table (and its figure, which indexes transports) has one row
    per transport, and the report of such a run is written."""
    from analysis.families import msgport as mp
    from analysis.report import write_report
    run = _accounting_run(tmp_path, {("ppc_msg_ring", "park"): 40000.0,
                                     ("ppc_msg_ring", "spin"): 9000.0,
                                     ("ppc_eventfd", "park"): 30000.0,
                                     ("ppc_eventfd", "spin"): 8000.0})
    rt = mp.ppc_round_trips(run)
    assert sorted(rt["transport"]) == ["ppc_eventfd", "ppc_msg_ring"]
    assert sorted(rt["median"]) == pytest.approx([30000.0, 40000.0])
    assert sorted(mp.receiver_table(mp.ppc_accounting(run))["receiver"]) == \
        ["park", "park", "spin", "spin"]
    assert os.path.getsize(write_report(run.path)) > 0
