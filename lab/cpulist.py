"""The kernel's cpulist format ("0-3,5"): /sys/devices/system/cpu/online,
/proc/irq/N/smp_affinity_list, isolcpus=, and the lab's --cpus."""

from __future__ import annotations


def parse_cpulist(text: str | None) -> list[int]:
    """'0-3,5' -> [0, 1, 2, 3, 5] (the kernel's cpulist format)."""
    cpus: list[int] = []
    for part in (text or "").replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                cpus.extend(range(int(lo), int(hi.split(":")[0]) + 1))
            else:
                cpus.append(int(part))
        except ValueError:
            continue
    return sorted(set(cpus))


def format_cpulist(cpus: list[int]) -> str:
    ranges: list[str] = []
    for cpu in sorted(cpus):
        if ranges and cpu == int(ranges[-1].split("-")[-1]) + 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{cpu}"
        else:
            ranges.append(str(cpu))
    return ",".join(ranges)
