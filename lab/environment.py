"""What this machine offers the lab: the facts behind ``lab doctor``.

Metadata is collected pyperf-style, by one small function per area reading
/proc and /sys (every file may be missing: the lab also runs on machines
unlike the 2-vCPU Firecracker VM it was written on).  Each fact has a stable
dotted key, a JSON-serialisable value and a unit; warn/fail facts carry a
one-sentence note saying what is wrong and how to fix it.  ``collect()``
never raises and never needs root; ``fingerprint()`` is what a result
manifest stores; ``capabilities()`` is what the runner plans with.

Keys (value type, unit):

system
    kernel.release              str           uname release
    kernel.version              str           uname version
    kernel.machine              str           uname machine (x86_64, aarch64, ...)
    kernel.preempt              str           preemption model (none/voluntary/full/lazy/rt)
    system.distribution         str|None      /etc/os-release PRETTY_NAME
    system.virtualization       str           "none", "KVM", "KVM (Firecracker)", ...
    boot.options                list[str]     boot options that change the numbers
                                              (isolcpus, nohz_full, mitigations=, idle=, nosmt, ...)
    lab.native                  bool          lab._native imports (fail: run `make setup`)
cpu
    cpu.model                   str           model name
    cpu.mhz                     float|None    MHz, /proc/cpuinfo of the first CPU
    cpu.online                  int           CPUs online
    cpu.usable                  int           CPUs usable by this process (sched_getaffinity)
    cpu.usable_list             str           the same as a CPU list ("0-1")
    cpu.smt                     str           SMT control (on/off/forceoff/notsupported/...)
    cpu.threads_per_core        int|None      threads, siblings of cpu0
    cpu.isolated                str           isolated CPU list or "none"
    cpu.numa_nodes              int|None      nodes
    cpu.fibers                  bool|None     lab_fiber_supported() (None: no native extension)
clock
    clock.source                str|None      current clocksource
    clock.available             list[str]     available clocksources
    clock.tsc_constant          bool|None     constant_tsc cpu flag (None: not x86)
    clock.tsc_nonstop           bool|None     nonstop_tsc cpu flag (None: not x86)
    clock.monotonic             bool          CLOCK_MONOTONIC works (fail otherwise)
    clock.monotonic_resolution  int|None      ns, clock_getres(CLOCK_MONOTONIC)
    clock.python_read_cost      float|None    ns, one time.clock_gettime_ns() from Python
                                              (interpreter included; the baseline family
                                              measures the C cost)
power
    power.cpuidle_driver        str           cpuidle driver or "none"
    power.cpuidle_governor      str|None      cpuidle governor
    power.idle_states           list[str]     cpu0 idle states, "NAME (exit latency us)"
    power.haltpoll_guest_poll_ns int|None     ns, haltpoll guest polling window
    power.cpufreq_governor      str           governor(s), or "no cpufreq (...)"
    power.cpufreq_driver        str|None      scaling driver
    power.turbo                 bool|None     turbo/boost enabled
security
    security.mitigations_cmdline str          mitigations= boot option or "not set (auto)"
    security.spectre_v2         str|None      vulnerabilities/spectre_v2
    security.meltdown           str|None      vulnerabilities/meltdown (PTI costs syscalls)
    security.vulnerable         list[str]     vulnerabilities reported "Vulnerable"
    security.mitigated          list[str]     vulnerabilities reported "Mitigation: ..."
privilege
    privilege.euid              int           effective uid
    privilege.root              bool          euid 0 (warn otherwise: kernel probes need root)
    privilege.capabilities      list[str]     the effective capabilities the lab uses
io_uring
    io_uring.disabled           int|None      sysctl kernel.io_uring_disabled (None: absent)
    io_uring.group              int|None      sysctl kernel.io_uring_group (gid, -1: none)
    io_uring.status             str           "available" or the cause ("ENOSYS: ...", "EPERM: ...")
    io_uring.last_op            int|None      the kernel's last opcode
    io_uring.opcodes            list[str]     supported opcode names (IORING_REGISTER_PROBE)
    io_uring.futex_wait         bool|None     IORING_OP_FUTEX_WAIT (6.7+)
    io_uring.futex_wake         bool|None     IORING_OP_FUTEX_WAKE (6.7+)
    io_uring.msg_ring           bool|None     IORING_OP_MSG_RING (5.18+)
    io_uring.features           int|None      IORING_FEAT_* bits from io_uring_setup()
bpf
    bpf.btf_vmlinux             bool          /sys/kernel/btf/vmlinux present
    bpf.unprivileged_bpf_disabled int|None    sysctl
    bpf.jit_enable              int|None      sysctl net.core.bpf_jit_enable
    bpf.tracefs                 str           mount point or "not mounted (...)"
    bpf.bcc                     str|None      where Debian's bcc module is (not imported)
    bpf.kernel_headers          str           headers bcc compiles against (a stand-in
                                              when none match the running kernel)
    probes.status               str           "available", or "unavailable" (warn, with why)
    probes.concerns             list[str]     the probes a run attaches by default
    probes.tracepoints          list[str]     every tracepoint they use (category:event)
    bpf.kprobes                 str           CONFIG_KPROBES: "on", "off" or "unknown"
noise
    noise.loadavg_1min          float|None    tasks, 1-minute load average
    noise.steal                 float|None    %, steal time in a 200 ms /proc/stat sample
    noise.steal_since_boot      float|None    %, steal time since boot
    noise.busy                  float|None    %, CPU time used by others in that sample
    noise.other_runnable        int|None      tasks, runnable besides this process
    noise.virtual_machine       bool          running in a VM (warn: expect heavier tails)
tuning (what `lab tune` sets, lab/tune.py; warn: untuned)
    tuning.haltpoll             str           "tuned", "untuned" or "nothing to tune"
    tuning.cpu_dma_latency      str           "held at N us", "untuned" or "nothing to tune"
    tuning.irq_affinity         str           "tuned[, N refused]", "untuned", ...
    tuning.cpufreq              str           "tuned", "untuned" or "nothing to tune"
    tuning.cpus                 str           the CPUs lab tune keeps IRQs off, or "none"
"""

from __future__ import annotations

import errno
import functools
import gzip
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import sys
import textwrap
import time
from dataclasses import asdict, dataclass
from typing import Any

# the kernel's cpulist format, shared with lab.tune (which this module's
# tuning area imports, so neither may import the other for them)
from lab.cpulist import format_cpulist as _format_cpulist
from lab.cpulist import parse_cpulist as _parse_cpulist

__all__ = ["Fact", "AREAS", "CAPABILITIES", "collect", "fingerprint", "capabilities",
           "can_run", "run_doctor"]

AREAS = ("system", "cpu", "clock", "power", "security", "privilege", "io_uring", "bpf",
         "noise", "tuning")
STATUSES = ("ok", "warn", "fail")
CAPABILITIES = ("native", "io_uring", "two_cpus", "fibers", "root", "bpf")

SETUP_HINT = "run `make setup`"


@dataclass(frozen=True)
class Fact:
    area: str          # one of AREAS
    key: str           # stable dotted key
    value: object      # JSON-serialisable (str, int, float, bool, list, None)
    unit: str = ""     # "" for none, else e.g. "ns", "CPUs", "MHz", "%"
    status: str = "ok"  # "ok" | "warn" | "fail"
    note: str = ""     # for warn/fail: what is wrong and how to fix, one sentence


def _flag(warning: tuple[str, str] | tuple[()]) -> dict[str, str]:
    """Fact(..., **_flag(("warn", note) if bad else ())): status and note, or nothing."""
    return {"status": warning[0], "note": warning[1]} if warning else {}


# ---- reading /proc and /sys -------------------------------------------------

def _read_text(path: str) -> str | None:
    """The stripped contents of a small file, or None if it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _read_int(path: str) -> int | None:
    text = _read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _cpuinfo_first() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo.  Only the first: reading the
    whole file can be slow on big machines."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if info:
                        break
                    continue
                name, _, value = line.partition(":")
                info.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    return info


def _cpu_flags(cpuinfo: dict[str, str] | None = None) -> set[str]:
    info = _cpuinfo_first() if cpuinfo is None else cpuinfo
    return set((info.get("flags") or info.get("Features") or "").split())


def _cmdline() -> list[str]:
    """Kernel boot options; what follows "--" belongs to init, not the kernel."""
    words = (_read_text("/proc/cmdline") or "").split()
    return words[:words.index("--")] if "--" in words else words


# Boot options that change what the lab measures.
_BOOT_OPTIONS = ("isolcpus", "nohz_full", "nohz", "rcu_nocbs", "irqaffinity", "mitigations",
                 "idle", "nosmt", "nopti", "pti", "spectre_v2", "preempt", "threadirqs",
                 "clocksource", "tsc", "processor.max_cstate", "intel_idle.max_cstate",
                 "cpuidle.off", "cpuidle_haltpoll.force", "haltpoll.guest_halt_poll_ns",
                 "intel_pstate", "amd_pstate")


def _boot_option(name: str) -> str | None:
    for word in _cmdline():
        if word.partition("=")[0] == name:
            return word.partition("=")[2]
    return None


@functools.lru_cache(maxsize=1)
def _kernel_config() -> dict[str, str] | None:
    """The running kernel's config from /proc/config.gz or /boot, or None."""
    text = None
    try:
        with gzip.open("/proc/config.gz", "rt", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (OSError, EOFError):
        text = _read_text(f"/boot/config-{platform.release()}")
    if not text:
        return None
    config: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            name, _, value = line.partition("=")
            config[name] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            config[line[2:-len(" is not set")]] = "n"
    return config


# ACPI table OEM IDs of virtual machine monitors (readable by root only).
_ACPI_OEM_VMM = {"FIRECK": "Firecracker", "CLOUDH": "Cloud Hypervisor", "BOCHS": "QEMU",
                 "BXPC": "QEMU", "VBOX": "VirtualBox", "VRTUAL": "Hyper-V",
                 "AMAZON": "Amazon EC2", "GOOGLE": "Google Compute Engine"}
# DMI sys_vendor / product_name substrings of virtual machine monitors.
_DMI_VMM = (("Firecracker", "Firecracker"), ("Cloud Hypervisor", "Cloud Hypervisor"),
            ("QEMU", "QEMU"), ("Amazon EC2", "Amazon EC2"), ("Google", "Google Compute Engine"),
            ("VMware", "VMware"), ("innotek", "VirtualBox"), ("VirtualBox", "VirtualBox"),
            ("Microsoft Corporation Virtual", "Hyper-V"), ("Xen", "Xen"))


def _acpi_oem_id() -> str | None:
    for table in ("FACP", "DSDT"):
        try:
            with open(f"/sys/firmware/acpi/tables/{table}", "rb") as f:
                header = f.read(16)
        except OSError:
            continue
        if len(header) == 16:
            return header[10:16].decode("ascii", "replace").strip(" \0")
    return None


def _virtualization() -> tuple[bool, str]:
    """(is a VM, label such as "KVM (Firecracker)" or "none")."""
    sources = (_read_text("/sys/devices/system/clocksource/clocksource0/available_clocksource")
               or "").split()
    hypervisor = None
    hv_type = _read_text("/sys/hypervisor/type")
    if hv_type:
        hypervisor = "Xen" if hv_type.lower() == "xen" else hv_type
    elif "kvm-clock" in sources:
        hypervisor = "KVM"
    elif "hyperv_clocksource_tsc_page" in sources:
        hypervisor = "Hyper-V"
    elif "xen" in sources:
        hypervisor = "Xen"

    vmm = _ACPI_OEM_VMM.get(_acpi_oem_id() or "")
    dmi = " ".join(filter(None, (_read_text("/sys/class/dmi/id/sys_vendor"),
                                 _read_text("/sys/class/dmi/id/product_name"))))
    if vmm is None:
        vmm = next((name for pattern, name in _DMI_VMM if pattern in dmi), None)
    if hypervisor is None and vmm in ("VMware", "Hyper-V", "VirtualBox", "Xen"):
        hypervisor, vmm = vmm, None

    if "hypervisor" not in _cpu_flags() and hypervisor is None and vmm is None:
        return False, "none"
    hypervisor = hypervisor or "unknown hypervisor"
    if (vmm is None and hypervisor == "KVM" and not os.path.isdir("/sys/class/dmi/id")
            and os.path.isdir("/sys/bus/platform/drivers/virtio-mmio")):
        vmm = "likely Firecracker"   # a KVM microVM without SMBIOS tables
    return True, f"{hypervisor} ({vmm})" if vmm and vmm != hypervisor else hypervisor


def _import_native():
    """(ffi, lib) of lab._native; raises ImportError (or OSError) if not built."""
    from lab._native import ffi, lib
    return ffi, lib


def _native_error(exc: BaseException) -> str:
    return f"native extension lab._native does not load ({exc}): {SETUP_HINT}"


# ---- one function per area ---------------------------------------------------

def _system_facts() -> list[Fact]:
    uname = platform.uname()
    os_release = _read_text("/etc/os-release") or _read_text("/usr/lib/os-release") or ""
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', os_release, re.M)
    is_vm, label = _virtualization()
    boot = [w for w in _cmdline() if w.partition("=")[0] in _BOOT_OPTIONS]
    try:
        _import_native()
        native = Fact("system", "lab.native", True)
    except Exception as exc:   # ImportError, or OSError from a broken .so
        native = Fact("system", "lab.native", False, status="fail", note=_native_error(exc))
    return [
        Fact("system", "kernel.release", uname.release),
        Fact("system", "kernel.version", uname.version),
        Fact("system", "kernel.machine", uname.machine),
        Fact("system", "kernel.preempt", _preempt_model(uname.version)),
        Fact("system", "system.distribution", match.group(1) if match else None),
        Fact("system", "system.virtualization", label),
        Fact("system", "boot.options", boot),
        native,
    ]


def _preempt_model(version: str) -> str:
    # debugfs shows the current model of a PREEMPT_DYNAMIC kernel: "none (voluntary) full"
    current = re.search(r"\((\w+)\)", _read_text("/sys/kernel/debug/sched/preempt") or "")
    if current:
        return current.group(1)
    if _boot_option("preempt"):
        return f"{_boot_option('preempt')} (boot option)"
    config = _kernel_config() or {}
    for option, model in (("CONFIG_PREEMPT_RT", "rt"), ("CONFIG_PREEMPT_LAZY", "lazy"),
                          ("CONFIG_PREEMPT", "full"), ("CONFIG_PREEMPT_VOLUNTARY", "voluntary"),
                          ("CONFIG_PREEMPT_NONE", "none")):
        if config.get(option) == "y":
            return f"{model} (build default)"
    if "PREEMPT_RT" in version:
        return "rt"
    return "unknown"


def _cpu_facts() -> list[Fact]:
    info = _cpuinfo_first()
    model = (info.get("model name") or info.get("Model") or info.get("cpu model")
             or platform.processor() or "unknown")
    try:
        mhz = round(float(info["cpu MHz"]), 1)
    except (KeyError, ValueError):
        mhz = None
    online = len(_parse_cpulist(_read_text("/sys/devices/system/cpu/online"))) or os.cpu_count() or 1
    try:
        usable = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = list(range(os.cpu_count() or 1))

    smt = _read_text("/sys/devices/system/cpu/smt/control")
    if smt is None:
        active = _read_int("/sys/devices/system/cpu/smt/active")
        smt = {0: "off", 1: "on"}.get(active, "unknown") if active is not None else "unknown"
    siblings = _read_text("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
    threads = len(_parse_cpulist(siblings)) if siblings else None
    isolated = _read_text("/sys/devices/system/cpu/isolated")
    nodes = _read_text("/sys/devices/system/node/online")

    facts = [
        Fact("cpu", "cpu.model", model),
        Fact("cpu", "cpu.mhz", mhz, "MHz"),
        Fact("cpu", "cpu.online", online, "CPUs"),
        Fact("cpu", "cpu.usable", len(usable), "CPUs", **_flag(
            ("warn", f"only {len(usable)} CPU usable by this process: cross-CPU variants will be "
                     "skipped; widen the affinity (taskset) or add vCPUs")
            if len(usable) < 2 else ())),
        Fact("cpu", "cpu.usable_list", _format_cpulist(usable)),
        Fact("cpu", "cpu.smt", smt),
        Fact("cpu", "cpu.threads_per_core", threads, "threads"),
        Fact("cpu", "cpu.isolated", isolated or "none"),
        Fact("cpu", "cpu.numa_nodes", len(_parse_cpulist(nodes)) if nodes else None, "nodes"),
    ]
    try:
        _, lib = _import_native()
        fibers = bool(lib.lab_fiber_supported())
        facts.append(Fact("cpu", "cpu.fibers", fibers, **_flag(() if fibers else (
            "warn", f"fibers: unsupported architecture {platform.machine()}: the lab's context "
                    "switch is x86-64 assembly, so fiber variants will be skipped"))))
    except Exception as exc:
        facts.append(Fact("cpu", "cpu.fibers", None, status="warn", note=_native_error(exc)))
    return facts


# Clocksources whose reads stay in the vDSO (no system call).
_VDSO_CLOCKSOURCES = {"tsc", "kvm-clock", "arch_sys_counter", "hyperv_clocksource_tsc_page",
                      "riscv_clocksource", "timebase"}


def _clock_facts() -> list[Fact]:
    base = "/sys/devices/system/clocksource/clocksource0"
    source = _read_text(f"{base}/current_clocksource")
    available = (_read_text(f"{base}/available_clocksource") or "").split()
    flags = _cpu_flags()
    x86 = "tsc" in flags
    facts = [
        Fact("clock", "clock.source", source, **_flag(
            ("warn", f"clocksource {source} is not read in the vDSO: every clock read is a "
                     "system call; switch to tsc if it is available")
            if source and source not in _VDSO_CLOCKSOURCES else ())),
        Fact("clock", "clock.available", available),
        Fact("clock", "clock.tsc_constant", ("constant_tsc" in flags) if x86 else None),
        Fact("clock", "clock.tsc_nonstop", ("nonstop_tsc" in flags) if x86 else None),
    ]

    try:
        clock = time.CLOCK_MONOTONIC
        t0 = time.clock_gettime_ns(clock)
        try:
            _, lib = _import_native()
            native = lib.lab_now_ns()
        except Exception:
            native = None
        t1 = time.clock_gettime_ns(clock)
        if t1 < t0:
            raise OSError("CLOCK_MONOTONIC went backwards")
        if native is not None and not t0 <= native <= t1:
            facts.append(Fact("clock", "clock.monotonic", True, status="warn",
                              note="lab_now_ns() disagrees with CLOCK_MONOTONIC: user-side and "
                                   "probe timestamps will not line up; rebuild with `make setup`"))
        else:
            facts.append(Fact("clock", "clock.monotonic", True))
        resolution = round(time.clock_getres(clock) * 1e9)
        facts.append(Fact("clock", "clock.monotonic_resolution", resolution, "ns", **_flag(
            ("warn", f"CLOCK_MONOTONIC resolution is {resolution} ns (no high-resolution "
                     "timers?): short operations cannot be timed one by one")
            if resolution > 1000 else ())))
        best = math.inf
        for _ in range(5):   # min over 5 batches of 200: cheap and steady enough
            start = time.clock_gettime_ns(clock)
            for _ in range(200):
                time.clock_gettime_ns(clock)
            best = min(best, (time.clock_gettime_ns(clock) - start) / 201)
        facts.append(Fact("clock", "clock.python_read_cost", round(best, 1), "ns",
                          note="Python-side cost of one read, interpreter included; the "
                               "baseline family measures the C cost"))
    except (OSError, AttributeError, ValueError) as exc:
        facts.append(Fact("clock", "clock.monotonic", False, status="fail",
                          note=f"CLOCK_MONOTONIC does not work ({exc}): the lab times everything "
                               "with it and cannot run"))
    return facts


def _power_facts() -> list[Fact]:
    cpu = "/sys/devices/system/cpu"
    driver = _read_text(f"{cpu}/cpuidle/current_driver") or "none"
    governor = (_read_text(f"{cpu}/cpuidle/current_governor_ro")
                or _read_text(f"{cpu}/cpuidle/current_governor"))
    states = []
    for index in range(16):
        state = f"{cpu}/cpu0/cpuidle/state{index}"
        name = _read_text(f"{state}/name")
        if name is None:
            break
        latency = _read_int(f"{state}/latency")
        disabled = _read_int(f"{state}/disable") == 1
        latency_text = f"{latency} us" if latency is not None else "? us"
        states.append(f"{name} ({latency_text}{', disabled' if disabled else ''})")
    is_vm, _ = _virtualization()

    poll_ns = _read_int("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
    haltpoll = driver == "haltpoll" or governor == "haltpoll"
    poll = Fact("power", "power.haltpoll_guest_poll_ns", poll_ns, "ns")
    if haltpoll and poll_ns == 0:
        poll = Fact("power", "power.haltpoll_guest_poll_ns", poll_ns, "ns", "warn",
                    "haltpoll without guest polling: an idle vCPU halts, so a cross-CPU wake-up "
                    "pays a full VM exit/entry and cross-CPU handoffs are much slower than "
                    "same-CPU ones (expected in such a VM, not an error; write a window in ns to "
                    "/sys/module/haltpoll/parameters/guest_halt_poll_ns to compare)")

    governors: dict[str, list[int]] = {}
    drivers = set()
    for index in _parse_cpulist(_read_text(f"{cpu}/online")):
        g = _read_text(f"{cpu}/cpu{index}/cpufreq/scaling_governor")
        if g is not None:
            governors.setdefault(g, []).append(index)
            drivers.add(_read_text(f"{cpu}/cpu{index}/cpufreq/scaling_driver") or "unknown")
    if not governors:
        freq = Fact("power", "power.cpufreq_governor",
                    "no cpufreq (virtual machine)" if is_vm else "no cpufreq")
    else:
        text = (next(iter(governors)) if len(governors) == 1 else
                ", ".join(f"{g} (CPUs {_format_cpulist(c)})" for g, c in sorted(governors.items())))
        slow = sorted(set(governors) - {"performance"})
        freq = Fact("power", "power.cpufreq_governor", text, **_flag(
            ("warn", f"cpufreq governor {', '.join(slow)}: the clock frequency follows the load; "
                     "use the performance governor (cpupower frequency-set -g performance)")
            if slow else ()))

    no_turbo = _read_int(f"{cpu}/intel_pstate/no_turbo")
    boost = _read_int(f"{cpu}/cpufreq/boost")
    turbo = (no_turbo == 0) if no_turbo is not None else (boost == 1) if boost is not None else None
    return [
        Fact("power", "power.cpuidle_driver", driver),
        Fact("power", "power.cpuidle_governor", governor),
        Fact("power", "power.idle_states", states),
        poll,
        freq,
        Fact("power", "power.cpufreq_driver", ", ".join(sorted(drivers)) if drivers else None),
        Fact("power", "power.turbo", turbo, **_flag(
            ("warn", "turbo boost on: the frequency varies with load and temperature; disable it "
                     "for steadier numbers (intel_pstate/no_turbo or cpufreq/boost)")
            if turbo else ())),
    ]


def _security_facts() -> list[Fact]:
    directory = "/sys/devices/system/cpu/vulnerabilities"
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        names = []
    reports = {name: _read_text(os.path.join(directory, name)) or "" for name in names}
    mitigations = _boot_option("mitigations")
    return [
        Fact("security", "security.mitigations_cmdline",
             mitigations if mitigations is not None else "not set (auto)"),
        Fact("security", "security.spectre_v2", reports.get("spectre_v2")),
        Fact("security", "security.meltdown", reports.get("meltdown")),
        Fact("security", "security.vulnerable",
             [n for n, r in reports.items() if r.startswith("Vulnerable")]),
        Fact("security", "security.mitigated",
             [n for n, r in reports.items() if r.startswith("Mitigation")]),
    ]


# Effective capabilities that matter to the lab, by bit number.
_CAPS = {21: "CAP_SYS_ADMIN", 23: "CAP_SYS_NICE", 14: "CAP_IPC_LOCK", 38: "CAP_PERFMON",
         39: "CAP_BPF"}


def _privilege_facts() -> list[Fact]:
    euid = os.geteuid()
    status = _read_text("/proc/self/status") or ""
    match = re.search(r"^CapEff:\s*([0-9a-fA-F]+)", status, re.M)
    capeff = int(match.group(1), 16) if match else 0
    caps = [name for bit, name in sorted(_CAPS.items()) if capeff >> bit & 1]
    can_bpf = "CAP_SYS_ADMIN" in caps or {"CAP_BPF", "CAP_PERFMON"} <= set(caps)
    return [
        Fact("privilege", "privilege.euid", euid),
        Fact("privilege", "privilege.root", euid == 0, **_flag(() if euid == 0 else (
            "warn", "not root: kernel probes need root, so runs get no kernel-side cross-check; "
                    "run as root (sudo) for probes"))),
        Fact("privilege", "privilege.capabilities", caps, **_flag(
            ("warn", "root without CAP_SYS_ADMIN or CAP_BPF+CAP_PERFMON (a container?): kernel "
                     "probes will fail to load")
            if euid == 0 and match and not can_bpf else ())),
    ]


# enum io_uring_op (include/uapi/linux/io_uring.h) up to Linux 6.18.
IORING_OPS = (
    "NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD", "POLL_REMOVE",
    "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG", "TIMEOUT", "TIMEOUT_REMOVE", "ACCEPT",
    "ASYNC_CANCEL", "LINK_TIMEOUT", "CONNECT", "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE",
    "STATX", "READ", "WRITE", "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2", "EPOLL_CTL",
    "SPLICE", "PROVIDE_BUFFERS", "REMOVE_BUFFERS", "TEE", "SHUTDOWN", "RENAMEAT", "UNLINKAT",
    "MKDIRAT", "SYMLINKAT", "LINKAT", "MSG_RING", "FSETXATTR", "SETXATTR", "FGETXATTR",
    "GETXATTR", "SOCKET", "URING_CMD", "SEND_ZC", "SENDMSG_ZC", "READ_MULTISHOT", "WAITID",
    "FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_WAITV", "FIXED_FD_INSTALL", "FTRUNCATE", "BIND",
    "LISTEN", "RECV_ZC", "EPOLL_WAIT", "READV_FIXED", "WRITEV_FIXED", "PIPE",
)
_NR_PROBE_OPS = 256


def _op_name(op: int) -> str:
    return IORING_OPS[op] if op < len(IORING_OPS) else f"op{op}"


def _uring_cause(rc: int, disabled: int | None, group: int | None) -> str:
    """io_uring_setup()'s -errno, in words."""
    if rc == -errno.ENOSYS:
        return "ENOSYS: kernel built without CONFIG_IO_URING"
    if rc == -errno.EPERM:
        if disabled == 2:
            return "EPERM: io_uring_disabled=2"
        if disabled == 1 and (group is None or group < 0
                              or group not in (os.getegid(), *os.getgroups())):
            return "EPERM: io_uring_disabled=1 and not in io_uring_group"
        return "EPERM: blocked by seccomp or an LSM"
    if rc == -errno.EOPNOTSUPP:
        return "EOPNOTSUPP: kernel has no IORING_REGISTER_PROBE (before 5.6)"
    if rc == -errno.ENOMEM:
        return "ENOMEM: ring memory over RLIMIT_MEMLOCK (kernel before 5.12)"
    name = errno.errorcode.get(-rc, str(-rc))
    return f"{name}: io_uring_setup failed ({os.strerror(-rc)})"


_URING_FIX = {
    "ENOSYS": "rebuild the kernel with CONFIG_IO_URING=y",
    "EPERM: io_uring_disabled=2": "sysctl -w kernel.io_uring_disabled=0",
    "EPERM: io_uring_disabled=1": "run as root, join kernel.io_uring_group or set "
                                  "kernel.io_uring_disabled=0",
    "EPERM: blocked": "run outside the seccomp/LSM policy (container profile) that blocks it",
}


def _io_uring_facts() -> list[Fact]:
    disabled = _read_int("/proc/sys/kernel/io_uring_disabled")
    group = _read_int("/proc/sys/kernel/io_uring_group")
    facts = [
        Fact("io_uring", "io_uring.disabled", disabled),
        Fact("io_uring", "io_uring.group", group),
    ]
    unknown: dict[str, Any] = {"io_uring.last_op": None, "io_uring.opcodes": [],
                               "io_uring.futex_wait": None, "io_uring.futex_wake": None,
                               "io_uring.msg_ring": None, "io_uring.features": None}
    try:
        ffi, lib = _import_native()
    except Exception as exc:
        facts.append(Fact("io_uring", "io_uring.status", "unknown: native extension not built",
                          status="warn", note=_native_error(exc)))
        return facts + [Fact("io_uring", k, v) for k, v in unknown.items()]

    supported = ffi.new(f"uint8_t[{_NR_PROBE_OPS}]")
    last_op = ffi.new("int *", -1)
    features = ffi.new("uint32_t *", 0)
    rc = lib.lab_uring_probe(supported, _NR_PROBE_OPS, last_op, features)
    if rc < 0:
        cause = _uring_cause(rc, disabled, group)
        fix = next((v for k, v in _URING_FIX.items() if cause.startswith(k)), None)
        facts.append(Fact("io_uring", "io_uring.status", cause, status="warn",
                          note="io_uring variants will be skipped" + (f"; to enable: {fix}"
                                                                      if fix else "")))
        return facts + [Fact("io_uring", k, v) for k, v in unknown.items()]

    ops = [op for op in range(_NR_PROBE_OPS) if supported[op]]

    def op_fact(key: str, op: str, kernel: str, what: str) -> Fact:
        have = IORING_OPS.index(op) in ops
        return Fact("io_uring", key, have, **_flag(() if have else (
            "warn", f"no IORING_OP_{op} (Linux {kernel}+): {what} will be skipped")))

    return facts + [
        Fact("io_uring", "io_uring.status", "available"),
        Fact("io_uring", "io_uring.last_op", int(last_op[0])),
        Fact("io_uring", "io_uring.opcodes", [_op_name(op) for op in ops]),
        op_fact("io_uring.futex_wait", "FUTEX_WAIT", "6.7", "io_uring futex variants"),
        op_fact("io_uring.futex_wake", "FUTEX_WAKE", "6.7", "io_uring futex variants"),
        op_fact("io_uring.msg_ring", "MSG_RING", "5.18", "MSG_RING message-port variants"),
        Fact("io_uring", "io_uring.features", int(features[0]), "bitmask"),
    ]


def _bcc_location() -> tuple[str | None, str]:
    """Where `import bcc` would come from, without importing it (importing bcc
    loads libbcc and can print warnings)."""
    try:
        spec = importlib.util.find_spec("bcc")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        return os.path.dirname(spec.origin or "") or "found", ""
    debian = "/usr/lib/python3/dist-packages/bcc"
    if os.path.isfile(os.path.join(debian, "__init__.py")):
        return debian, ("Debian's python3-bpfcc is outside this interpreter's sys.path (a venv "
                        "without system site packages): put /usr/lib/python3/dist-packages on "
                        "the path to import it")
    return None, "bcc not found: install python3-bpfcc (apt-get install bpfcc-tools) for probes"


def _bpf_facts() -> list[Fact]:
    tracefs = None
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            points = [fields[1] for fields in (line.split() for line in f)
                      if len(fields) > 2 and fields[2] == "tracefs"]
        tracefs = "/sys/kernel/tracing" if "/sys/kernel/tracing" in points else \
            (points[0] if points else None)
    except OSError:
        pass

    config = _kernel_config()
    kprobes = "unknown" if config is None else \
        "on" if config.get("CONFIG_KPROBES") == "y" else "off"
    bcc, bcc_note = _bcc_location()
    from lab import probes
    from lab.probes import headers as probe_headers
    headers = probe_headers.find(build=False)
    probes_reason = probes.unavailable_reason()
    tracepoints = sorted({tp for c in (probes.FILTER,) + probes.CONCERNS for tp in c.tracepoints})
    jit = _read_int("/proc/sys/net/core/bpf_jit_enable")
    return [
        Fact("bpf", "bpf.btf_vmlinux", os.path.exists("/sys/kernel/btf/vmlinux")),
        Fact("bpf", "bpf.unprivileged_bpf_disabled",
             _read_int("/proc/sys/kernel/unprivileged_bpf_disabled")),
        Fact("bpf", "bpf.jit_enable", jit, **_flag(
            ("warn", "BPF JIT off: probes run in the interpreter and cost much more; "
                     "sysctl -w net.core.bpf_jit_enable=1")
            if jit == 0 else ())),
        Fact("bpf", "bpf.tracefs",
             tracefs or "not mounted (the lab mounts it when it runs probes)"),
        Fact("bpf", "bpf.bcc", bcc, status="warn" if bcc_note else "ok", note=bcc_note),
        Fact("bpf", "bpf.kernel_headers", headers.description,
             **_flag(("warn", headers.problem) if headers.problem else ())),
        Fact("bpf", "probes.status", "available" if probes_reason is None else "unavailable",
             **_flag(("warn", f"{probes_reason}; runs happen without the kernel view")
                     if probes_reason else ())),
        Fact("bpf", "probes.concerns", list(probes.CONCERN_NAMES)),
        Fact("bpf", "probes.tracepoints", tracepoints),
        Fact("bpf", "bpf.kprobes", kprobes,
             note="tracepoints only" if kprobes != "on" else
             "tracepoints only (the lab's probes never use kprobes)"),
    ]


_NOISE_SAMPLE_S = 0.2


def _proc_stat() -> tuple[list[int] | None, int | None]:
    """(aggregate "cpu" line counters in USER_HZ ticks, procs_running)."""
    counters, running = None, None
    for line in (_read_text("/proc/stat") or "").splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            counters = [int(x) for x in fields[1:9]] + [0] * max(0, 9 - len(fields))
        elif fields and fields[0] == "procs_running":
            running = int(fields[1])
    return counters, running


def _percent(part: int, total: int) -> float | None:
    return round(100.0 * part / total, 1) if total > 0 else None


def _noise_facts() -> list[Fact]:
    online = len(_parse_cpulist(_read_text("/sys/devices/system/cpu/online"))) or os.cpu_count() or 1
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    facts = [Fact("noise", "noise.loadavg_1min", load, "tasks", **_flag(
        ("warn", f"load average {load} on {online} CPUs: other work competes for the CPUs; "
                 "stop it for stable numbers")
        if load is not None and load > 0.5 * online else ()))]

    before, running0 = _proc_stat()
    time.sleep(_NOISE_SAMPLE_S)   # this process sleeps: what runs now is someone else
    after, running1 = _proc_stat()
    steal = busy = steal_boot = None
    steal_ticks = 0
    if before and after:
        delta = [b - a for a, b in zip(before, after)]
        # user nice system idle iowait irq softirq steal
        total = sum(delta[:8])
        steal_ticks = delta[7]
        steal = _percent(steal_ticks, total)
        busy = _percent(delta[0] + delta[1] + delta[2] + delta[5] + delta[6], total)
        steal_boot = _percent(after[7], sum(after[:8]))
    # /proc/stat counts 10 ms ticks: one tick of steal is noise, two are a signal
    facts.append(Fact("noise", "noise.steal", steal, "%", **_flag(
        ("warn", f"the host stole {steal}% of CPU time in a {_NOISE_SAMPLE_S * 1000:.0f} ms "
                 "sample: vCPUs wait for physical CPUs; expect noisy numbers")
        if steal is not None and steal > 2 and steal_ticks >= 2 else ())))
    facts.append(Fact("noise", "noise.steal_since_boot", steal_boot, "%", **_flag(
        ("warn", f"the host stole {steal_boot}% of CPU time since boot: the host is "
                 "overcommitted; expect noisy numbers")
        if steal_boot is not None and steal_boot > 2 else ())))
    facts.append(Fact("noise", "noise.busy", busy, "%", **_flag(
        ("warn", f"other processes used {busy}% of the CPUs while the lab slept: stop them "
                 "for stable numbers")
        if busy is not None and busy > 10 else ())))
    others = None
    if running0 is not None and running1 is not None:
        others = max(0, min(running0, running1) - 1)   # procs_running counts this process
    facts.append(Fact("noise", "noise.other_runnable", others, "tasks", **_flag(
        ("warn", f"{others} other runnable task(s) right now: they compete for the CPUs")
        if others else ())))
    is_vm, label = _virtualization()
    facts.append(Fact("noise", "noise.virtual_machine", is_vm, **_flag(
        ("warn", "virtual machine: vCPUs can be descheduled by the host; expect heavier tails")
        if is_vm else ())))
    return facts


def _tuning_facts() -> list[Fact]:
    from lab import tune
    return [Fact("tuning", **fact) for fact in tune.status()]


_COLLECTORS = (
    ("system", _system_facts),
    ("cpu", _cpu_facts),
    ("clock", _clock_facts),
    ("power", _power_facts),
    ("security", _security_facts),
    ("privilege", _privilege_facts),
    ("io_uring", _io_uring_facts),
    ("bpf", _bpf_facts),
    ("noise", _noise_facts),
    ("tuning", _tuning_facts),
)


# ---- the public surface ------------------------------------------------------

def _json_safe(value: object) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    return False


def _validate(fact: Fact) -> Fact:
    """The validator every fact passes: known area and status, JSON value."""
    if fact.area in AREAS and fact.status in STATUSES and _json_safe(fact.value):
        return fact
    return Fact(fact.area if fact.area in AREAS else "system", fact.key,
                fact.value if _json_safe(fact.value) else str(fact.value), fact.unit,
                fact.status if fact.status in STATUSES else "warn", fact.note)


def collect() -> list[Fact]:
    """Every fact, area by area.  Never raises: an area that breaks becomes a
    warn fact "<area>.error" instead of hiding the others."""
    _kernel_config.cache_clear()
    facts: list[Fact] = []
    for area, collector in _COLLECTORS:
        try:
            facts.extend(_validate(f) for f in collector())
        except Exception as exc:   # a machine unlike any seen: report, don't crash
            facts.append(Fact(area, f"{area}.error", f"{type(exc).__name__}: {exc}",
                              status="warn",
                              note=f"collecting the {area} facts failed; please report it"))
    return facts


def fingerprint(facts: list[Fact] | None = None) -> dict[str, object]:
    """{key: value} of every fact, as stored in result manifests."""
    return {f.key: f.value for f in (collect() if facts is None else facts)}


def capabilities(facts: list[Fact] | None = None) -> dict[str, str | None]:
    """Capability name -> None when available, else a one-line reason."""
    by_key = {f.key: f for f in (collect() if facts is None else facts)}

    def value(key: str, default: object = None) -> object:
        return by_key[key].value if key in by_key else default

    caps: dict[str, str | None] = {}

    native = by_key.get("lab.native")
    if native is None:
        caps["native"] = "the native extension lab._native was not checked"
    elif native.value is True:
        caps["native"] = None
    else:
        caps["native"] = native.note or f"native extension lab._native is not built: {SETUP_HINT}"

    status = value("io_uring.status")
    if status == "available":
        caps["io_uring"] = None
    elif status is None:
        caps["io_uring"] = "not checked"
    else:
        reason = f"{status}"
        if "EPERM" in str(status) and "io_uring_disabled=" not in str(status):
            reason += f" (kernel.io_uring_disabled={value('io_uring.disabled', 'absent')})"
        if native is not None and native.value is not True:
            reason += f"; {SETUP_HINT}"
        caps["io_uring"] = reason

    usable = value("cpu.usable")
    caps["two_cpus"] = None if isinstance(usable, int) and usable >= 2 else (
        f"only {usable} CPU usable by this process (sched_getaffinity)")

    fibers = value("cpu.fibers")
    machine = value("kernel.machine", platform.machine())
    if fibers is True:
        caps["fibers"] = None
    elif fibers is False:
        caps["fibers"] = (f"unsupported architecture {machine}: the lab's context "
                          "switch is x86-64 assembly")
    else:
        caps["fibers"] = f"native extension not built: {SETUP_HINT}"

    euid = value("privilege.euid")
    caps["root"] = None if euid == 0 else f"euid {euid}: kernel probes need root"

    # BPF programs as a mechanism under test (upcalls), not only as probes:
    # the same conditions as the probes (root, Debian's bcc, headers).
    probes = by_key.get("probes.status")
    if probes is None and caps["root"]:
        caps["bpf"] = "not root: loading BPF programs needs root"
    elif probes is None:
        caps["bpf"] = "not checked (see the bpf area of `lab doctor`)"
    elif probes.value == "available":
        caps["bpf"] = None
    else:
        caps["bpf"] = probes.note.split("; runs happen")[0] or "unavailable"
    return caps


_REQUIRED = ("lab.native", "clock.monotonic")


def can_run(facts: list[Fact]) -> tuple[bool, list[str]]:
    """(the lab can run, the reasons it cannot).  It needs the native extension
    and CLOCK_MONOTONIC; only those facts are ever "fail"."""
    keys = {f.key for f in facts}
    reasons = [f"{key}: not collected" for key in _REQUIRED if key not in keys]
    reasons += [f"{f.key}: {f.note or f.value}" for f in facts if f.status == "fail"]
    return not reasons, reasons


# What a missing capability costs, for the verdict.
_AFFECTS = {
    "native": "nothing can run",
    "io_uring": "io_uring variants are skipped",
    "two_cpus": "cross-CPU variants (handoffs, ping-pongs on another CPU) are skipped",
    "fibers": "fiber variants (activations, fiber switch) are skipped",
    "root": "runs have no kernel probes, so no kernel-side cross-check",
    "bpf": "variants whose mechanism is a BPF program (upcall's bpf_*, activations' upcall) "
           "are skipped",
}


def _display_value(fact: Fact) -> str:
    value = fact.value
    if fact.key == "io_uring.opcodes" and isinstance(value, list) and value:
        missing = [op for op in IORING_OPS if op not in value]
        if not missing:
            return f"{len(value)}: {value[0]} .. {value[-1]}, all known"
        return f"{len(value)}; without: {', '.join(missing)}"
    if fact.key == "io_uring.features" and isinstance(value, int):
        return f"{value:#x}"
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif value is None:
        text = "n/a"
    elif isinstance(value, list):
        text = ", ".join(str(v) for v in value) or "none"
    else:
        text = str(value)
    return f"{text} {fact.unit}" if fact.unit and value is not None else text


def _print_text(facts: list[Fact], caps: dict[str, str | None], ok: bool,
                reasons: list[str], stream) -> None:
    width = max(100, shutil.get_terminal_size((120, 24)).columns)
    key_w = max((len(f.key) for f in facts), default=10)
    values = {id(f): _display_value(f) for f in facts}
    value_w = min(38, max((len(v) for v in values.values()), default=10))
    note_w = max(30, width - key_w - value_w - 12)
    print("upcall-lab doctor", file=stream)
    for area in AREAS + tuple(sorted({f.area for f in facts} - set(AREAS))):
        in_area = [f for f in facts if f.area == area]
        if not in_area:
            continue
        print(f"\n{area}", file=stream)
        for f in in_area:
            value_lines = textwrap.wrap(values[id(f)], value_w, break_long_words=False,
                                        break_on_hyphens=False) or [""]
            note_lines = textwrap.wrap(f.note, note_w, break_long_words=False,
                                       break_on_hyphens=False) if f.note else []
            flag = {"ok": "", "warn": "WARN", "fail": "FAIL"}[f.status]
            for i in range(max(len(value_lines), len(note_lines))):
                key = f.key if i == 0 else ""
                val = value_lines[i] if i < len(value_lines) else ""
                note = note_lines[i] if i < len(note_lines) else ""
                line = f"  {key:<{key_w}}  {val:<{value_w}}  {flag if i == 0 else '':<4}  {note}"
                print(line.rstrip(), file=stream)

    warned = [f.key for f in facts if f.status == "warn"]
    missing = [name for name in CAPABILITIES if caps.get(name)]
    print(file=stream)
    if not ok:
        print("verdict: the lab cannot run", file=stream)
        for reason in reasons:
            print(f"  - {reason}", file=stream)
        return
    scope = f"without {', '.join(missing)}" if missing else "with every capability"
    count = f"; {len(warned)} warning(s)" if warned else ""
    print(f"verdict: the lab can run {scope}{count}", file=stream)
    for name in missing:
        print(f"  - {name}: {caps[name]} -> {_AFFECTS[name]}", file=stream)
    for f in facts:
        if f.status == "warn" and f.area in ("io_uring",) and f.key != "io_uring.status":
            print(f"  - {f.key}: {f.note}", file=stream)
    quality = [k for k in warned if k.split(".")[0] in ("noise", "power", "clock", "cpu", "bpf",
                                                        "privilege", "tuning")]
    if quality:
        print(f"  - see the warnings above: {', '.join(quality)}", file=stream)


def run_doctor(as_json: bool = False, stream=None) -> int:
    """Print what this machine offers the lab; 0 if the lab can run, else 1."""
    stream = sys.stdout if stream is None else stream
    facts = collect()
    caps = capabilities(facts)
    ok, reasons = can_run(facts)
    if as_json:
        json.dump({"facts": [asdict(f) for f in facts], "capabilities": caps, "can_run": ok},
                  stream, indent=2)
        stream.write("\n")
    else:
        _print_text(facts, caps, ok, reasons, stream)
    return 0 if ok else 1
