"""Kernel headers for bcc when none match the running kernel.

bcc compiles its programs against kernel headers.  Tracepoint programs read
their argument layout from tracefs (the events' ``format`` files), not from
the headers, so a distribution's nearest headers serve as a stand-in: they
only have to provide the types bcc's helpers use.  Debian splits its headers
into ``linux-headers-<ver>-<arch>`` (generated files) and
``linux-headers-<ver>-common`` (the rest); bcc's BCC_KERNEL_SOURCE takes one
tree, so we merge the two with symlinks in a cache folder.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Headers:
    path: str | None        # what BCC_KERNEL_SOURCE gets; None: bcc's default
    description: str        # for doctor and the manifest
    exact: bool             # headers of the running kernel itself
    problem: str | None = None


def _version_key(name: str) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?(?:-(\d+))?", name)
    return tuple(int(x or 0) for x in m.groups()) if m else (0,)


def find(release: str | None = None, build: bool = True) -> Headers:
    """The headers bcc should use for this kernel, and where they come from.
    build=False only describes them (doctor): no merged tree is written."""
    release = release or platform.release()
    build_dir = f"/lib/modules/{release}/build"
    if os.path.isdir(os.path.join(build_dir, "include")):
        return Headers(None, f"{os.path.realpath(build_dir)} (matches {release})", exact=True)
    if os.path.exists("/sys/kernel/kheaders.tar.xz"):
        return Headers(None, "/sys/kernel/kheaders.tar.xz (CONFIG_IKHEADERS)", exact=True)
    arch_trees = []
    try:
        for name in os.listdir("/usr/src"):
            if name.startswith("linux-headers-") and not name.endswith("-common") and \
                    os.path.isdir(os.path.join("/usr/src", name, "include", "generated")):
                arch_trees.append(name)
    except FileNotFoundError:
        pass
    if not arch_trees:
        return Headers(None, "none", exact=False,
                       problem=f"no kernel headers for {release} and none to stand in: "
                               "install linux-headers-$(dpkg --print-architecture)")
    running = _version_key(release)
    # nearest: the closest version, preferring the newer of two equally close
    arch_trees.sort(key=lambda n: (_distance(_version_key(n[len("linux-headers-"):]), running),
                                   [-x for x in _version_key(n)]))
    chosen = os.path.join("/usr/src", arch_trees[0])
    common = _common_tree(chosen)
    merged = _merged_tree(chosen, common) if build else None
    origin = chosen + (f" + {common}" if common else "")
    return Headers(merged, f"{origin} (stand-in for {release}: tracepoint layouts come "
                           "from tracefs, not from these headers)", exact=False)


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    width = max(len(a), len(b))
    a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return tuple(abs(x - y) for x, y in zip(a, b))


def _common_tree(arch_tree: str) -> str | None:
    """Debian's -common half of an arch header tree, if split."""
    if os.path.isdir(os.path.join(arch_tree, "include", "linux")):
        return None                       # not split
    m = re.match(r"(.*-\d+)-[^-]+$", arch_tree)
    if m and os.path.isdir(m.group(1) + "-common"):
        return m.group(1) + "-common"
    return None


def _cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "upcall-lab", "kernel-headers")


def _merged_tree(arch_tree: str, common: str | None) -> str:
    """One tree of symlinks: the -common files with the arch tree's
    generated headers and config laid over them.  Built once, reused."""
    if common is None:
        return arch_tree
    target = os.path.join(_cache_root(), os.path.basename(arch_tree))
    stamp = os.path.join(target, ".complete")
    if os.path.exists(stamp):
        return target
    tmp = target + f".tmp{os.getpid()}"
    for sub in ("include", "arch"):
        _overlay(os.path.join(common, sub), os.path.join(arch_tree, sub), os.path.join(tmp, sub))
    for name in (".config", "Makefile", "Module.symvers"):
        src = os.path.join(arch_tree if name != "Makefile" else common, name)
        if os.path.exists(src):
            os.symlink(src, os.path.join(tmp, name))
    open(os.path.join(tmp, ".complete"), "w").close()
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.rename(tmp, target)
    except OSError:                       # built concurrently: keep theirs
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _overlay(lower: str, upper: str, dest: str) -> None:
    """dest/* = symlinks to lower/* and upper/*; a directory present in both
    is merged one level further down."""
    os.makedirs(dest, exist_ok=True)
    entries = {}
    for root in (lower, upper):
        if os.path.isdir(root):
            for name in os.listdir(root):
                entries.setdefault(name, []).append(os.path.join(root, name))
    for name, paths in entries.items():
        dirs = [p for p in paths if os.path.isdir(p) and not os.path.islink(p)]
        if len(paths) > 1 and len(dirs) == len(paths):
            _overlay(paths[0], paths[1], os.path.join(dest, name))
        else:
            os.symlink(paths[-1], os.path.join(dest, name))
