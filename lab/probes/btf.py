"""Field offsets of the running kernel's structs, from its BTF.

Raw tracepoints hand a BPF program the tracepoint's own arguments (a
``struct task_struct *``, a ``struct io_kiocb *``), not the perf record
that costs the kernel a copy per event.  Reading a field of such a struct
needs its offset in *this* kernel, which the stand-in headers bcc compiles
against do not know (they are another kernel's), but the kernel's BTF
(``/sys/kernel/btf/vmlinux``) does: this module reads it (the format is
Documentation/bpf/btf.rst) and hands bcc the offsets as ``-D`` flags, a
poor man's CO-RE.  Read once per process; nothing here needs root.
"""

from __future__ import annotations

import functools
import struct

VMLINUX = "/sys/kernel/btf/vmlinux"

# the fields the lab's programs read through a raw tracepoint's pointers;
# each becomes -DLAB_OFF_<struct>_<field>=<bytes>
FIELDS = (("task_struct", "pid"), ("task_struct", "tgid"), ("io_kiocb", "ctx"))

_KIND_STRUCT, _KIND_UNION = 4, 5
# bytes after the 12-byte btf_type for each kind: (fixed, per vlen item)
_EXTRA = {1: (4, 0), 2: (0, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 7: (0, 0),
          8: (0, 0), 9: (0, 0), 10: (0, 0), 11: (0, 0), 12: (0, 0), 13: (0, 8), 14: (4, 0),
          15: (0, 12), 16: (0, 0), 17: (4, 0), 18: (0, 0), 19: (0, 12)}


class BTFError(RuntimeError):
    """The kernel's BTF is missing or lacks a field the probes read."""


@functools.lru_cache(maxsize=None)
def _structs(path: str = VMLINUX) -> dict[str, dict[str, int]]:
    """Every named struct and union: name -> {member name: bit offset}
    (members of anonymous members folded in)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BTFError(f"cannot read the kernel's BTF ({path}: {e.strerror}): the probes need "
                       "a kernel built with CONFIG_DEBUG_INFO_BTF") from None
    magic, _, _, hdr_len, type_off, type_len, str_off, _ = struct.unpack_from("<HBBIIIII", data)
    if magic != 0xEB9F:
        raise BTFError(f"{path} is not BTF (magic {magic:#x})")
    types_at, strings_at = hdr_len + type_off, hdr_len + str_off

    def name(off: int) -> str:
        end = data.index(b"\0", strings_at + off)
        return data[strings_at + off:end].decode()

    members: list[list[tuple[int, int, int]] | None] = [None]   # type id 0 is void
    names: list[int] = [0]
    pos, end = types_at, types_at + type_len
    unpack = struct.unpack_from
    while pos < end:
        name_off, info, _ = unpack("<III", data, pos)
        kind, vlen, bitfield = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        fixed, each = _EXTRA[kind]
        pos += 12
        if kind in (_KIND_STRUCT, _KIND_UNION):
            items = []
            for i in range(vlen):
                m_name, m_type, m_off = unpack("<III", data, pos + 12 * i)
                items.append((m_name, m_type, m_off & 0xFFFFFF if bitfield else m_off))
            members.append(items)
        else:
            members.append(None)
        names.append(name_off)
        pos += fixed + each * vlen

    def flatten(type_id: int, base: int, out: dict[str, int]) -> None:
        for m_name, m_type, m_off in members[type_id] or ():
            if m_name:
                out.setdefault(name(m_name), base + m_off)
            elif m_type < len(members) and members[m_type] is not None:
                flatten(m_type, base + m_off, out)      # an anonymous struct or union

    wanted = {s for s, _ in FIELDS}
    found: dict[str, dict[str, int]] = {}
    for type_id, fields in enumerate(members):
        if fields is not None and names[type_id]:
            n = name(names[type_id])
            if n in wanted and n not in found:
                found[n] = {}
                flatten(type_id, 0, found[n])
    return found


def offset(struct_name: str, field: str) -> int:
    """Byte offset of struct_name.field in the running kernel."""
    fields = _structs().get(struct_name)
    if fields is None or field not in fields:
        raise BTFError(f"the kernel's BTF has no {struct_name}.{field}: this kernel is too "
                       "different for the lab's raw-tracepoint probes")
    bits = fields[field]
    if bits % 8:
        raise BTFError(f"{struct_name}.{field} is a bit field here; the probes cannot read it")
    return bits // 8


def cflags() -> list[str]:
    """The -D flags that give a bcc program the offsets it reads."""
    return [f"-DLAB_OFF_{s}_{f}={offset(s, f)}" for s, f in FIELDS]
