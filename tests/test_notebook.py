"""The notebooks run top to bottom on a stored run, and are stored without
outputs."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "notebooks")
# every notebook in the folder, found by its presence (README: "Adding a family")
NAMES = tuple(sorted(n[:-len(".ipynb")] for n in os.listdir(NOTEBOOKS) if n.endswith(".ipynb")))


def _path(name: str) -> str:
    return os.path.join(NOTEBOOKS, f"{name}.ipynb")


def _execute(name: str, run_dir: str, monkeypatch) -> list:
    monkeypatch.setenv("UPCALL_LAB_RUN", run_dir)
    nb = nbformat.read(_path(name), as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": NOTEBOOKS}})
    client.execute()        # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    return outputs


def _text(outputs) -> str:
    return "".join(o.get("text", "") for o in outputs)


def _html(outputs) -> str:
    return "".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(_path(name), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_baseline_notebook_runs(tiny_run, monkeypatch):
    outputs = _execute("baseline", tiny_run, monkeypatch)
    assert tiny_run in _text(outputs)
    assert "futex_pingpong" in _html(outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_syncfirst_notebook_runs(tiny_run, monkeypatch):
    outputs = _execute("syncfirst", tiny_run, monkeypatch)
    assert tiny_run in _text(outputs)
    html = _html(outputs)
    assert "went_async" in html and "syncfirst" in html      # the blocked-fraction table
    assert "19.2%" in _text(outputs)                          # the seed's claims, beside ours
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2


def test_chains_notebook_runs(tiny_run, monkeypatch):
    outputs = _execute("chains", tiny_run, monkeypatch)
    assert tiny_run in _text(outputs)
    html = _html(outputs)
    assert "uring_link" in html and "slope" in html
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2


UPCALL_SUITE = """\
[suite]
name = "upcall-notebook"
description = "the upcall notebook test's run"
repetitions = 1
timeout = 30

[baseline]
variants = ["futex_pingpong"]
placement = ["same_cpu", "cross_cpu"]
samples = 50
warmup = 10

[upcall]
variants = ["bpf_ringbuf", "futex_hint", "timer_nanosleep", "cyclictest"]
placement = ["same_cpu", "cross_cpu"]
samples = 50
warmup = 10
"""


@pytest.fixture(scope="session")
def upcall_run(tmp_path_factory) -> str:
    """A real small upcall run (bpf_ringbuf needs the probes' privileges)."""
    from tests.conftest import _tiny
    from tests.helpers import require_probes
    require_probes()
    return _tiny(tmp_path_factory, "upcall-notebook", text=UPCALL_SUITE)


def test_upcall_notebook_runs(upcall_run, monkeypatch):
    outputs = _execute("upcall", upcall_run, monkeypatch)
    text, html = _text(outputs), _html(outputs)
    assert upcall_run in text
    assert "bpf_ringbuf" in html and "vs_handoff" in html and "cyclictest" in html
    assert "Yardstick: the baseline family's futex_pingpong" in text
    assert "our timer_nanosleep median" in text
    assert "2.4 ms" in text and "times faster than the 1992 upcall" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2


ACTIVATIONS_SUITE = """\
[suite]
name = "activations-notebook"
description = "the activations notebook test's run"
repetitions = 1
timeout = 30

[[activations]]
variants = ["none", "upcall", "pthreads"]
tasks = 100
warmup_tasks = 10

[[activations]]
variants = ["t4_fibers", "t4_processes"]
op = ["null_fork", "signal_wait"]
samples = 30
warmup = 5
"""


@pytest.fixture(scope="session")
def activations_run(tmp_path_factory) -> str:
    """A real small activations run (the upcall variant loads the BPF program)."""
    from tests.conftest import _tiny
    from tests.helpers import require_probes
    require_probes()
    return _tiny(tmp_path_factory, "activations-notebook", text=ACTIVATIONS_SUITE)


def test_activations_notebook_runs(activations_run, monkeypatch):
    outputs = _execute("activations", activations_run, monkeypatch)
    text, html = _text(outputs), _html(outputs)
    assert activations_run in text
    assert "Null Fork today: t4_fibers" in text and "FastThreads on Topaz threads" in text
    assert "the most steps per second: " in text and "Where the handoffs fall at p = 0.1" in text
    # no futex_hint in this run: one line says the handoffs cannot be compared
    assert "No point where both upcall and futex_hint handed off" in text
    assert "vs_pthreads" in html and "ran_while_blocked" in html
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3


MSGPORT_SUITE = """\
[suite]
name = "msgport-notebook"
description = "the msgport notebook test's run"
repetitions = 1
timeout = 30

[[msgport]]
variants = ["port_poll", "port_sync"]
op = "nop"
batch = [1, 8]
samples = 200
warmup = 20

[[msgport]]
variants = ["ppc_pipe"]
mode = "sync"
peer = "thread"
placement = ["same_cpu", "cross_cpu"]
samples = 200
warmup = 20

[[msgport]]
variants = ["ppc_perf_bench_pipe"]
peer = "thread"
placement = "same_cpu"
loops = 1000
invocations = 2
"""


@pytest.fixture(scope="session")
def msgport_run(tmp_path_factory) -> str:
    """A real small msgport run: two reply ports, the pipe round trip on
    one CPU and across two, perf bench beside it (skipped without perf)."""
    from tests.conftest import _tiny
    return _tiny(tmp_path_factory, "msgport-notebook", text=MSGPORT_SUITE)


def test_msgport_notebook_runs(msgport_run, monkeypatch):
    import shutil

    from analysis.families import msgport as mp
    outputs = _execute("msgport", msgport_run, monkeypatch)
    text, html = _text(outputs), _html(outputs)
    assert msgport_run in text
    assert "port_poll" in html and "port_sync" in html and "ours_over_perf" in html
    assert "op=nop: the cheapest reply port at batch 1" in text
    assert mp.NO_LIVE_LINE in text and mp.NO_ONE_WAY_LINE in text
    if shutil.which("perf") and shutil.which("taskset"):
        assert "ppc_perf_bench_pipe" in html
        assert "Our pipe round trip against perf bench sched pipe: same_cpu thread" in text
    else:
        assert mp.NO_PERF_LINE in text
    assert "the PPC round trips take" in text               # same and cross CPU
    assert mp.NO_BASELINE_LINE in text
    # K42's accounting of the pipe's calls; no MSG_RING transport: no verdict
    assert "K42 would charge every call to the caller; Linux charged the caller least" in text
    assert "client_cpu_ns_per_call" in html
    assert "No MSG_RING verdict" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3


def test_dataset_notebook_runs(tmp_path, monkeypatch):
    """The query over a dataset of two synthetic hosts (tests/synthetic.py)."""
    from lab import cli
    from lab.dataset import host_id
    from tests.synthetic import HOST_A, HOST_B, HOST_MEDIANS, two_hosts
    out = str(tmp_path / "fleet")
    assert cli.main(["dataset", *two_hosts(tmp_path), "--out", out]) == 0
    monkeypatch.setenv("UPCALL_LAB_DATASET", out)
    outputs = _execute("dataset", out, monkeypatch)
    text, html = _text(outputs), _html(outputs)
    assert out in text
    machines = {f"{host_id(env)} {env['kernel.release']}": name
                for name, env in (("a", HOST_A), ("b", HOST_B))}
    assert all(m in html for m in machines)
    assert "cpu.model" in html and "Intel Xeon" in html and "noise." not in html
    # null_syscall's ratio of the second machine (in column order) to the first
    first, second = (machines[m] for m in sorted(machines))
    ratio = HOST_MEDIANS[second][("null_syscall", None)] / HOST_MEDIANS[first][("null_syscall", None)]
    assert f"{ratio:.3f}" in html
    assert "switches_per_op" in html


def test_compare_notebook_runs(tmp_path, monkeypatch):
    from tests.test_compare import build
    a, b = build(tmp_path / "before"), build(tmp_path / "after", scale=1.5, seed=1)
    monkeypatch.setenv("UPCALL_LAB_COMPARE", os.pathsep.join([a, b]))
    outputs = _execute("compare", a, monkeypatch)
    assert a in _text(outputs) and b in _text(outputs)
    html = _html(outputs)
    assert "futex_pingpong" in html and "slower" in html
    assert any("image/png" in o.get("data", {}) for o in outputs)
