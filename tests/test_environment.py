"""lab.environment: the doctor's facts, fingerprint and capabilities.

Properties only, no timings: the keys are there, every value is JSON, the
capabilities say why something is missing, and the failure paths (native
extension missing, io_uring refused) come out as reasons, not exceptions.
"""

import errno
import io
import json
import sys
import types
from dataclasses import asdict

import pytest

from lab import environment
from lab.environment import Fact, can_run, capabilities, collect, fingerprint, run_doctor

REQUIRED_KEYS = {
    "kernel.release", "kernel.version", "kernel.machine", "system.distribution",
    "system.virtualization", "boot.options", "lab.native",
    "cpu.model", "cpu.online", "cpu.usable", "cpu.smt", "cpu.isolated", "cpu.numa_nodes",
    "cpu.fibers",
    "clock.source", "clock.available", "clock.tsc_constant", "clock.monotonic",
    "power.cpuidle_driver", "power.cpuidle_governor", "power.idle_states",
    "power.haltpoll_guest_poll_ns", "power.cpufreq_governor",
    "security.mitigations_cmdline", "security.spectre_v2", "security.vulnerable",
    "privilege.euid", "privilege.root",
    "io_uring.disabled", "io_uring.status", "io_uring.last_op", "io_uring.opcodes",
    "io_uring.futex_wait", "io_uring.futex_wake", "io_uring.msg_ring", "io_uring.features",
    "bpf.btf_vmlinux", "bpf.unprivileged_bpf_disabled", "bpf.tracefs", "bpf.bcc",
    "bpf.kprobes",
    "noise.loadavg_1min", "noise.steal", "noise.other_runnable", "noise.virtual_machine",
}


@pytest.fixture(autouse=True)
def short_noise_sample(monkeypatch):
    """The noise sample sleeps; its length does not matter to these tests."""
    monkeypatch.setattr(environment, "_NOISE_SAMPLE_S", 0.01)


@pytest.fixture(scope="module")
def facts():
    return collect()


def _by_key(facts):
    return {f.key: f for f in facts}


def _native_with_probe(monkeypatch, rc):
    """Replace lab._native by one whose lab_uring_probe() returns rc."""
    from lab import _native

    class Lib:
        def __getattr__(self, name):
            return getattr(_native.lib, name)

        @staticmethod
        def lab_uring_probe(supported, nr_ops, last_op, features):
            return rc

    fake = types.ModuleType("lab._native")
    fake.ffi, fake.lib = _native.ffi, Lib()
    monkeypatch.setitem(sys.modules, "lab._native", fake)


def _with_sysctl(monkeypatch, values):
    """Make _read_text() see the given /proc/sys files."""
    real = environment._read_text
    monkeypatch.setattr(environment, "_read_text",
                        lambda path: values[path] if path in values else real(path))


# ---- collect / fingerprint ---------------------------------------------------

def test_collect_has_the_required_keys(facts):
    assert all(isinstance(f, Fact) for f in facts)
    keys = [f.key for f in facts]
    assert len(keys) == len(set(keys)), "keys are unique"
    assert REQUIRED_KEYS <= set(keys)
    assert not [k for k in keys if k.endswith(".error")], "no area failed"


def test_facts_are_well_formed(facts):
    for f in facts:
        assert f.area in environment.AREAS, f
        assert f.status in environment.STATUSES, f
        assert isinstance(f.unit, str) and isinstance(f.note, str), f
        assert f.key.count(".") >= 1, f
        if f.status != "ok":
            assert f.note, f"{f.key}: a warn/fail fact says what is wrong"
    for area in environment.AREAS:
        assert any(f.area == area for f in facts), area


def test_every_value_is_json(facts):
    for f in facts:
        assert json.loads(json.dumps(asdict(f))) == asdict(f), f


def test_fingerprint_round_trips_through_json(facts):
    fp = fingerprint(facts)
    assert set(fp) == {f.key for f in facts}
    assert json.loads(json.dumps(fp)) == fp


def test_facts_agree_with_this_process(facts):
    import os
    by_key = _by_key(facts)
    assert by_key["cpu.usable"].value == len(os.sched_getaffinity(0))
    assert by_key["cpu.online"].value >= by_key["cpu.usable"].value
    assert by_key["privilege.euid"].value == os.geteuid()
    assert by_key["privilege.root"].value == (os.geteuid() == 0)
    assert by_key["clock.monotonic"].status == "ok"


def test_io_uring_opcodes_match_the_explicit_facts(facts):
    by_key = _by_key(facts)
    if by_key["io_uring.status"].value != "available":
        pytest.skip(f"io_uring: {by_key['io_uring.status'].value}")
    ops = by_key["io_uring.opcodes"].value
    assert ops[0] == "NOP"
    assert by_key["io_uring.futex_wait"].value == ("FUTEX_WAIT" in ops)
    assert by_key["io_uring.futex_wake"].value == ("FUTEX_WAKE" in ops)
    assert by_key["io_uring.msg_ring"].value == ("MSG_RING" in ops)
    assert len(ops) <= by_key["io_uring.last_op"].value + 1
    assert isinstance(by_key["io_uring.features"].value, int)


def test_cpulist_round_trip():
    assert environment._parse_cpulist("0-3,5,7-8\n") == [0, 1, 2, 3, 5, 7, 8]
    assert environment._format_cpulist([0, 1, 2, 3, 5, 7, 8]) == "0-3,5,7-8"
    assert environment._parse_cpulist("") == [] and environment._parse_cpulist(None) == []


def test_missing_proc_and_sys_files_are_tolerated(monkeypatch):
    """A machine unlike this one: every small /proc and /sys file is missing."""
    monkeypatch.setattr(environment, "_read_text", lambda path: None)
    monkeypatch.setattr(environment, "_cpuinfo_first", lambda: {})
    facts = collect()
    keys = {f.key for f in facts}
    assert REQUIRED_KEYS <= keys
    assert not [k for k in keys if k.endswith(".error")]
    json.dumps([asdict(f) for f in facts])
    assert can_run(facts)[0], "missing metadata is not a reason to refuse to run"


# ---- capabilities / can_run / doctor -------------------------------------------

def test_capabilities_names_and_values(facts):
    caps = capabilities(facts)
    assert set(caps) == {"native", "io_uring", "two_cpus", "fibers", "root", "bpf"}
    for name, reason in caps.items():
        assert reason is None or (isinstance(reason, str) and reason and "\n" not in reason), name
    assert caps["native"] is None, "the extension is built in this checkout"


def test_doctor_json_on_this_machine():
    out = io.StringIO()
    assert run_doctor(as_json=True, stream=out) == 0
    doc = json.loads(out.getvalue())
    assert set(doc) == {"facts", "capabilities", "can_run"}
    assert doc["can_run"] is True
    assert {f["key"] for f in doc["facts"]} >= REQUIRED_KEYS
    assert set(doc["capabilities"]) == set(environment.CAPABILITIES)


def test_doctor_text_on_this_machine():
    out = io.StringIO()
    assert run_doctor(stream=out) == 0
    text = out.getvalue()
    for area in environment.AREAS:
        assert f"\n{area}\n" in text
    assert "kernel.release" in text
    assert text.rstrip().splitlines()[-1].startswith(("verdict:", "  - "))
    assert "verdict: the lab can run" in text


def test_native_extension_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "lab._native", None)   # import now raises ImportError
    facts = collect()
    ok, reasons = can_run(facts)
    assert not ok
    assert any("make setup" in r for r in reasons), reasons
    caps = capabilities(facts)
    assert "make setup" in caps["native"]
    assert caps["io_uring"] and caps["fibers"]
    by_key = _by_key(facts)
    assert by_key["lab.native"].status == "fail"
    assert by_key["clock.monotonic"].status == "ok", "the clock does not need the extension"

    out = io.StringIO()
    assert run_doctor(stream=out) == 1
    assert "cannot run" in out.getvalue() and "make setup" in out.getvalue()
    out = io.StringIO()
    assert run_doctor(as_json=True, stream=out) == 1
    assert json.loads(out.getvalue())["can_run"] is False


def test_io_uring_enosys(monkeypatch):
    _native_with_probe(monkeypatch, -errno.ENOSYS)
    facts = collect()
    reason = capabilities(facts)["io_uring"]
    assert "ENOSYS" in reason and "CONFIG_IO_URING" in reason
    status = _by_key(facts)["io_uring.status"]
    assert status.status == "warn" and "io_uring variants will be skipped" in status.note
    assert _by_key(facts)["io_uring.opcodes"].value == []
    assert can_run(facts)[0], "no io_uring is a warning, not a failure"


def test_io_uring_eperm_names_the_sysctl(monkeypatch):
    _native_with_probe(monkeypatch, -errno.EPERM)
    _with_sysctl(monkeypatch, {"/proc/sys/kernel/io_uring_disabled": "0"})
    reason = capabilities(collect())["io_uring"]
    assert "EPERM" in reason and "seccomp" in reason and "io_uring_disabled=0" in reason


@pytest.mark.parametrize("disabled, cause", [
    ("2", "EPERM: io_uring_disabled=2"),
    ("1", "EPERM: io_uring_disabled=1 and not in io_uring_group"),
])
def test_io_uring_eperm_disabled(monkeypatch, disabled, cause):
    _native_with_probe(monkeypatch, -errno.EPERM)
    _with_sysctl(monkeypatch, {"/proc/sys/kernel/io_uring_disabled": disabled,
                               "/proc/sys/kernel/io_uring_group": "-1"})
    facts = collect()
    assert _by_key(facts)["io_uring.status"].value == cause
    assert cause in capabilities(facts)["io_uring"]
    out = io.StringIO()
    assert run_doctor(stream=out) == 0
    assert "without io_uring" in out.getvalue()


def test_capability_reasons_from_facts():
    facts = [Fact("cpu", "cpu.usable", 1, "CPUs"), Fact("cpu", "cpu.fibers", False),
             Fact("system", "kernel.machine", "aarch64"), Fact("privilege", "privilege.euid", 1000)]
    caps = capabilities(facts)
    assert "only 1 CPU" in caps["two_cpus"]
    # no name of their own: a skip reason reads "<capability>: <reason>"
    assert caps["fibers"] == ("unsupported architecture aarch64: the lab's context "
                              "switch is x86-64 assembly")
    assert "euid 1000" in caps["root"]
    assert caps["bpf"] == "not root: loading BPF programs needs root"
    assert not can_run(facts)[0], "native and clock facts are missing"


def test_doctor_text_explains_every_missing_capability(facts, monkeypatch):
    """Each capability a machine that can run lacks (here: no root, so no
    probes, no BPF mechanisms) gets its line in the verdict."""
    facts = [Fact("privilege", "privilege.euid", 1000) if f.key == "privilege.euid" else f
             for f in facts if f.key != "probes.status"]
    monkeypatch.setattr(environment, "collect", lambda: facts)
    out = io.StringIO()
    run_doctor(stream=out)
    text = out.getvalue()
    missing = {name: reason for name, reason in capabilities(facts).items() if reason}
    assert {"root", "bpf"} <= set(missing)
    for name, reason in missing.items():
        assert f"  - {name}: {reason} -> " in text, name
