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
    # and the C side refuses it too (enum msgport_receiver: 1 = spin)
    out = np.zeros(4)
    counts = ffi.new("struct msgport_ppc_counts *")
    pipe = dict(zip(msgport.TRANSPORTS, range(len(msgport.TRANSPORTS))))["pipe"]
    rc = lib.msgport_ppc(standalone_handshake(), pipe, 0, 0, 1, CPU, CPU, 1, 0, 4,
                         ffi.cast("double *", ffi.from_buffer(out)), counts)
    assert rc == -errno.EINVAL
