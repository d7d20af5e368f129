"""The activations family's multiprogramming part (lab/families/
_activations_mp.py, native/activations_mp.c): its mechanics, by counting.

Under multiprogramming every body is updated exactly once per step in
every process, whatever the variant; VPs owned never exceed the
allocation at a take; with a competitor that preempts a VP, the
allocation changes ("processor taken", then "add processor") are taken
up by parks and unparks that add up to the VPs owned at the end; the
runtime processes are reaped on every path, and die with a worker killed
mid-run.  Bad configurations are refused without forking.  BPF parts need
root, bcc and headers (require_probes: they skip cleanly otherwise).
Nothing here times anything: it passes on a loaded machine too.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lab import native, store
from lab.families import _activations_mp as M
from lab.model import vp_cpus

from .helpers import require_probes, requires_root, run_dir_of, run_lab, wait_for

ffi, lib = native.load()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
VPS = 2 if TWO_CPUS else 1
BODIES = 61             # prime: a count that matches is not a coincidence
STEPS = 13


def params(**kw):
    p = {"processes": 2, "vps": VPS, "bodies": BODIES, "time_steps": STEPS, "locks": 3,
         "work_ns": 2000, "cs_ns": 500}
    p.update(kw)
    return p


@pytest.fixture(scope="module")
def preempt_program():
    """The upcall program's preemption function, loaded once for the module."""
    require_probes()
    from lab.upcall_program import upcall_program
    with upcall_program("preempt") as (_, maps):
        yield maps


def children_of(pid):
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def check_run(variant, p, procs, rates):
    assert M.expected_mechanics(variant, p, procs) is None
    for c in procs:
        # exactly once per step: every step's bodies, no more, no fewer
        assert c["body_updates"] == c["steps_run"] * p["bodies"]
        assert c["duplicate_updates"] == 0 and c["missing_updates"] == 0
        assert c["steps_run"] >= p["time_steps"] + 1
        assert c["lock_acquires"] == c["body_updates"]
        assert c["alloc_violations"] == 0 and c["lend_errors"] == 0
        # every CPU lent to a preempted holder came back
        assert c["recoveries"] == c["lend_returns"]
        assert c["initial_owned"] + c["unparks"] - c["parks"] == c["final_owned"]
        assert c["status"] == 0 and c["end_ns"] > c["begin_ns"] > 0
        # reaped: no process of the run is left
        assert not alive(c["pid"])
    assert all(r > 0 for r in rates)


# ---- declarations and error paths ------------------------------------------------

def test_every_variant_has_its_c_enumerator():
    assert [v.name for v in M.VARIANTS] == list(M.VARIANTS_C) == [
        "mp_oblivious", "mp_spin_yield", "mp_informed", "mp_pthreads", "mp_allocation"]
    assert set(M.COUNTS) >= {"duplicate_updates", "alloc_violations", "parks", "unparks",
                             "holder_preemptions", "lock_spin_ns"}


def test_points_that_cannot_run_say_why():
    problem = M.point_problem("mp_allocation", params(processes=3, vps=2))
    assert "lower processes" in problem and "\n" not in problem
    assert M.point_problem("mp_informed", params(processes=3, vps=2)) is None
    assert M.point_problem("none", params()) is None
    assert "64 at most" in M.point_problem("mp_oblivious", params(locks=65))
    assert "lower vps" in M.point_problem("mp_oblivious", params(vps=len(M.USABLE_CPUS) + 1))


def test_bad_configs_are_refused_without_forking():
    hs = native.standalone_handshake()
    cpus = ffi.new("int[]", [0, 0])
    out = ffi.new("struct activations_mp_process[]", 8)
    steps = ffi.new("double[]", 8 * 4)
    good = {"variant": 0, "processes": 2, "nr_vps": 2, "vp_cpus": cpus, "bodies": 4,
            "time_steps": 4, "locks": 1, "work_ns": 0, "cs_ns": 0, "vps_fd": -1, "tids_fd": -1}
    before = children_of(os.getpid())
    for bad in ({"variant": 5}, {"processes": 0}, {"processes": 9}, {"nr_vps": 0},
                {"nr_vps": 9}, {"bodies": 0}, {"bodies": 4097}, {"time_steps": 0},
                {"locks": 0}, {"locks": 65},
                {"variant": 2},                      # informed without the program's maps
                {"variant": 4, "vps_fd": 3, "tids_fd": 3, "processes": 3}):   # a CPU each
        cfg = ffi.new("struct activations_mp_config *", {**good, **bad})
        assert lib.activations_mp_run(hs, cfg, out, steps) == -22, bad
    assert children_of(os.getpid()) == before


# ---- the mechanics ---------------------------------------------------------------

@requires_root
@pytest.mark.parametrize("variant", list(M.VARIANTS_C))
@pytest.mark.parametrize("processes", [1, 2])
def test_every_body_is_updated_once_per_step(variant, processes, preempt_program):
    if variant == "mp_allocation" and processes > VPS:
        pytest.skip("mp_allocation needs a CPU per process")
    before = os.sched_getaffinity(0)
    p = params(processes=processes)
    step_ns, procs, rates = M.run_processes(variant, p, vp_cpus(VPS, 0, 1 if TWO_CPUS else 0),
                                            preempt_program)
    check_run(variant, p, procs, rates)
    assert step_ns.size == processes * STEPS and (step_ns > 0).all()
    assert len({c["pid"] for c in procs}) == processes
    if variant == "mp_allocation":
        # each process starts with its share of the CPUs
        assert sum(c["initial_owned"] for c in procs) == VPS
        assert all(c["initial_owned"] == VPS // processes for c in procs)
    assert os.sched_getaffinity(0) == before
    assert children_of(os.getpid()) == []


class Competitor:
    """A SCHED_FIFO thread on one CPU that wakes every 2 ms and spins 300
    us: the kernel preempts whatever runs there for it, every time."""

    def __init__(self, cpu):
        self.cpu, self.stop, self.spins = cpu, threading.Event(), 0
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            os.sched_setaffinity(0, {self.cpu})
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except OSError as e:
            self.error = e
            return
        while not self.stop.is_set():
            time.sleep(0.002)
            end = time.perf_counter() + 0.0003
            while time.perf_counter() < end:
                pass
            self.spins += 1

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.spins >= 2 or self.error, timeout=10)
        if self.error:
            raise self.error
        return self

    def __exit__(self, *exc):
        # the thread's policy and affinity end with it
        self.stop.set()
        self.thread.join()


@requires_root
@pytest.mark.skipif(not TWO_CPUS, reason="needs two CPUs")
@pytest.mark.parametrize("processes", [1, 2])
def test_allocation_changes_are_all_taken_up(processes, preempt_program):
    # a process alone owns both CPUs; the competitor preempts its VP on
    # CPU 1 (processor taken: it gives that CPU back and the VP parks), and
    # the next step asks for it again (add processor: the VP unparks)
    p = params(processes=processes, bodies=BODIES, time_steps=200)
    with Competitor(1):
        _, procs, rates = M.run_processes("mp_allocation", p, [0, 1], preempt_program)
    check_run("mp_allocation", p, procs, rates)
    for c in procs:
        assert c["alloc_violations"] == 0
        # every park is processor taken from this process, or (two
        # processes) its CPU given to the other; every unpark takes one back
        assert c["unparks"] <= c["parks"] <= c["unparks"] + c["initial_owned"]
        assert c["final_owned"] >= 1
    if processes == 1:
        c = procs[0]
        assert c["processor_taken"] >= 1
        # a VP parks after it gave its CPU back, unless a step's start
        # gave it back again before the VP got to its check
        assert 1 <= c["parks"] <= c["processor_taken"]
        # each give-back was asked back at a step's start, but the last one
        # may have come in the last step
        assert c["add_processor"] in (c["processor_taken"], c["processor_taken"] - 1)
        assert c["reallocations"] == c["processor_taken"] + c["add_processor"]
    else:
        # one CPU each: nobody gives back its last processor
        assert all(c["processor_taken"] == 0 and c["parks"] == 0 for c in procs)


SCRIPT = """
import sys
from lab.families import _activations_mp as M
p = dict(processes=2, vps={vps}, bodies=256, time_steps=10000, locks=2, work_ns=5000, cs_ns=500)
print("start", flush=True)
M.run_processes("mp_oblivious", p, {cpus}, None)
"""


def test_children_die_with_a_killed_worker(tmp_path):
    # a worker killed mid-run (SIGKILL: no clean-up of its own) leaves no
    # runtime process behind: PR_SET_PDEATHSIG
    cpus = vp_cpus(VPS, 0, 1 if TWO_CPUS else 0)
    worker = subprocess.Popen([sys.executable, "-c", SCRIPT.format(vps=VPS, cpus=cpus)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().strip() == "start"
        kids = wait_for(lambda: len(children_of(worker.pid)) == 2 and children_of(worker.pid))
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    wait_for(lambda: not any(alive(k) for k in kids), timeout=10)


@requires_root
def test_every_variant_runs_through_lab_run(tmp_path):
    require_probes()
    path = tmp_path / "mp.toml"
    path.write_text(f"""[suite]
name = "mp"
repetitions = 1
cpu = 0
peer_cpu = {1 if TWO_CPUS else 0}
[[activations]]
variants = {list(M.VARIANTS_C)}
processes = [1, 2]
vps = {VPS}
bodies = {BODIES}
time_steps = 7
""".replace("'", '"'))
    proc = run_lab(["run", str(path), "--out", str(tmp_path / "res"), "--quiet"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    runs = store.read_manifest(run_dir_of(str(tmp_path / "res")))["runs"]
    assert len(runs) == 10
    assert all(r["status"] == "ok" for r in runs), [(r["variant"], r["reason"]) for r in runs]
    for r in runs:
        c, n = r["counters"], r["params"]["processes"]
        assert c["body_updates"] == c["steps_run"] * BODIES == r["ops"]
        assert c["duplicate_updates"] == c["missing_updates"] == c["alloc_violations"] == 0
        assert sum(c[f"process{i}_bodies_per_s"] for i in range(n)) == \
            pytest.approx(c["throughput_bodies_per_s"])
        assert 0 < c["fairness_jain"] <= 1 + 1e-9
