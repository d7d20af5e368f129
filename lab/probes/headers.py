"""Kernel headers for bcc when none match the running kernel.

bcc compiles its programs against kernel headers.  The lab's programs are
raw tracepoints that read the fields they need at offsets from the running
kernel's BTF (lab/probes/btf.py), not through the headers' struct layouts,
so a distribution's nearest headers serve as a stand-in: they only have to
provide the types bcc's helpers use.  Debian splits its headers
into ``linux-headers-<ver>-<arch>`` (generated files) and
``linux-headers-<ver>-common`` (the rest); bcc's BCC_KERNEL_SOURCE takes one
tree, so we merge the two with symlinks in a cache folder.

Whatever is in that tree is compiled into programs root loads into the
kernel, so it is trusted only when nobody else could have put it there.
Root's trees live under a root-only path (``ROOT_CACHE``), never under
``XDG_CACHE_HOME`` or ``HOME``, which root keeps from the user through
``su`` without ``-`` or ``sudo -E``; another user's trees live in their
own cache.  Every folder from ``/`` down to the tree must belong to the
running user or root and be writable by nobody else, and an existing tree
must be exactly the symlinks we would build, or it is rebuilt: in a private
``mkdtemp`` folder beside it, renamed into place.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass

SRC = "/usr/src"
KHEADERS = "/sys/kernel/kheaders.tar.xz"
ROOT_CACHE = "/var/cache/upcall-lab/kernel-headers"


@dataclass(frozen=True)
class Headers:
    path: str | None        # what BCC_KERNEL_SOURCE gets; None: bcc's default
    description: str        # for doctor and the manifest: the tree compiled against
    exact: bool             # headers of the running kernel itself
    problem: str | None = None


class _Untrusted(Exception):
    """A folder on the way to the merged tree that someone else could change."""


def _version_key(name: str) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?(?:-(\d+))?", name)
    return tuple(int(x or 0) for x in m.groups()) if m else (0,)


def find(release: str | None = None, build: bool = True) -> Headers:
    """The headers bcc should use for this kernel, and where they come from.
    build=False only describes them (doctor): nothing is written, and the
    description names the tree a build would use."""
    release = release or platform.release()
    build_dir = f"/lib/modules/{release}/build"
    if os.path.isdir(os.path.join(build_dir, "include")):
        return Headers(None, f"{os.path.realpath(build_dir)} (matches {release})", exact=True)
    if os.path.exists(KHEADERS):
        return Headers(None, f"{KHEADERS} (CONFIG_IKHEADERS)", exact=True)
    arch_trees = []
    try:
        for name in os.listdir(SRC):
            if name.startswith("linux-headers-") and not name.endswith("-common") and \
                    os.path.isdir(os.path.join(SRC, name, "include", "generated")):
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
    chosen = os.path.join(SRC, arch_trees[0])
    stand_in = (f"(stand-in for {release}: field offsets come from the kernel's BTF, "
                "not from these headers)")
    common = _common_tree(chosen)
    if common is None:                    # not split: bcc takes the tree as it is
        return Headers(chosen if build else None, f"{chosen} {stand_in}", exact=False)

    origin = f"{chosen} + {common}"
    layout = _layout(chosen, common)
    name = os.path.basename(chosen)
    try:
        where, exists = _cache_folder(create=build)
    except _Untrusted as e:
        return Headers(None, f"none usable: {origin} would be merged in an untrusted folder",
                       exact=False, problem=f"untrusted kernel header cache: {e}")
    except OSError as e:
        return Headers(None, f"none usable: {origin} could not be merged", exact=False,
                       problem=f"cannot make the kernel header cache {e.filename}: {e.strerror}")
    target = os.path.join(where, name)
    if not build:
        why = _tree_problem(target, layout) if exists else "not built yet"
        state = f" ({why}: built on first use)" if why else ""
        return Headers(None, f"{target}{state} -> {origin} {stand_in}", exact=False)
    try:
        merged = _merged_tree(where, name, layout)
    except OSError as e:
        return Headers(None, f"none usable: {origin} could not be merged", exact=False,
                       problem=f"cannot build the merged kernel header tree in {where}: "
                               f"{e.strerror}: make it writable, or `rm -r {where}`")
    return Headers(merged, f"{merged} -> {origin} {stand_in}", exact=False)


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


def _cache_root() -> tuple[str, str]:
    """(the folder merged trees go in, the first folder of it the lab makes)."""
    if os.geteuid() == 0:
        return ROOT_CACHE, os.path.dirname(ROOT_CACHE)
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):           # the XDG spec: a relative path is ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "upcall-lab", "kernel-headers"), os.path.join(base, "upcall-lab")


def _owner_name() -> str:
    import pwd
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _check_folder(path: str, st: os.stat_result, ours: bool, last: bool) -> None:
    """Raise _Untrusted unless only the running user (or root) can change
    what is in path.  ours: a folder the lab makes, whose fix is removing it.
    A sticky ancestor (/tmp) is fine: nobody else may rename what we own in it."""
    fix_rm = f"`rm -r {path}` (the lab makes it again)"
    if not stat.S_ISDIR(st.st_mode):      # lstat: a symlink is not a folder either
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise _Untrusted(f"{path} is {kind}: " + (fix_rm if ours else f"move {path} away"))
    if st.st_uid not in (0, os.geteuid()):
        raise _Untrusted(f"{path} is owned by uid {st.st_uid}, not {_owner_name()}: "
                         + (fix_rm if ours else f"`chown {_owner_name()} {path}`"))
    if st.st_mode & 0o022 and (last or ours or not st.st_mode & stat.S_ISVTX):
        raise _Untrusted(f"{path} is group/world-writable (mode {stat.S_IMODE(st.st_mode):04o}): "
                         + (fix_rm if ours else f"`chmod go-w {path}`"))


def _cache_folder(create: bool) -> tuple[str, bool]:
    """(the cache folder's real path, whether it exists), every folder from /
    to it checked; with create, the missing ones are made (0755, whatever the
    umask).  Raises _Untrusted, or OSError when a folder cannot be made."""
    path, lab_top = _cache_root()
    missing: list[str] = []
    head = path
    while not os.path.lexists(head):      # lexists: a dangling symlink is checked, not skipped
        head, tail = os.path.split(head)
        missing.insert(0, tail)
    # the real path is what is checked and used, so a symlink on the way
    # cannot be swapped between the check and the compile
    real = os.path.realpath(head)
    if not os.path.exists(real):          # a symlink to where someone may make a folder later
        raise _Untrusted(f"{head} is a symlink to {real}, which does not exist: `rm {head}`")
    ours_from = os.path.realpath(lab_top) if os.path.lexists(lab_top) else None
    parts = real.split(os.sep)[1:] if real != os.sep else []
    current = os.sep
    for i, part in enumerate([""] + parts):
        current = os.path.join(current, part) if part else os.sep
        ours = ours_from is not None and (current + os.sep).startswith(ours_from + os.sep)
        _check_folder(current, os.lstat(current), ours, last=not missing and i == len(parts))
    if not create:
        return os.path.join(real, *missing), not missing
    for i, part in enumerate(missing):
        current = os.path.join(current, part)
        try:
            os.mkdir(current, 0o755)
            os.chmod(current, 0o755)
        except FileExistsError:           # made concurrently: checked below like any other
            pass
        _check_folder(current, os.lstat(current), ours=True, last=i == len(missing) - 1)
    return current, True


def _layout(arch_tree: str, common: str) -> dict[str, str | None]:
    """The merged tree, {relative path: symlink target, or None for a
    folder}: the -common files with the arch tree's generated headers and
    config laid over them.  What a build makes, and what an existing tree
    must be exactly to be used."""
    layout: dict[str, str | None] = {}
    for sub in ("include", "arch"):
        _overlay(os.path.join(common, sub), os.path.join(arch_tree, sub), sub, layout)
    for name in (".config", "Makefile", "Module.symvers"):
        src = os.path.join(arch_tree if name != "Makefile" else common, name)
        if os.path.exists(src):
            layout[name] = src
    return layout


def _overlay(lower: str, upper: str, rel: str, layout: dict[str, str | None]) -> None:
    """rel/* = symlinks to lower/* and upper/*; a directory present in both
    is merged one level further down."""
    layout[rel] = None
    entries: dict[str, list[str]] = {}
    for root in (lower, upper):
        if os.path.isdir(root):
            for name in os.listdir(root):
                entries.setdefault(name, []).append(os.path.join(root, name))
    for name, paths in entries.items():
        dirs = [p for p in paths if os.path.isdir(p) and not os.path.islink(p)]
        if len(paths) > 1 and len(dirs) == len(paths):
            _overlay(paths[0], paths[1], os.path.join(rel, name), layout)
        else:
            layout[os.path.join(rel, name)] = paths[-1]


_FILE = object()        # a regular file in a tree: never part of a layout


def _tree_problem(tree: str, layout: dict[str, str | None]) -> str | None:
    """Why the tree at `tree` must not be used (None: it is the layout,
    in folders of the running user that nobody else can write)."""
    try:
        top = os.lstat(tree)
    except FileNotFoundError:
        return "not built yet"
    if not stat.S_ISDIR(top.st_mode):
        return "not a folder"
    found: dict[str, object] = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        folder = os.path.join(tree, rel) if rel else tree
        st = os.lstat(folder)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return f"{folder} is owned by uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}"
        with os.scandir(folder) as it:
            for entry in it:
                sub = os.path.join(rel, entry.name) if rel else entry.name
                if entry.is_symlink():
                    found[sub] = os.readlink(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    found[sub] = None
                    pending.append(sub)
                else:
                    found[sub] = _FILE
    if found != layout:
        odd = sorted(set(found.items()) ^ set(layout.items()), key=lambda kv: kv[0])
        return f"{os.path.join(tree, odd[0][0])} is not what the headers give"
    return None


def _merged_tree(where: str, name: str, layout: dict[str, str | None]) -> str:
    """where/name as the layout: reused when it checks out, else built in a
    private folder and renamed into place."""
    target = os.path.join(where, name)
    if _tree_problem(target, layout) is None:
        return target
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=where)
    try:
        for rel, link in sorted(layout.items()):   # sorted: a folder before what is in it
            path = os.path.join(tmp, rel)
            if link is None:
                os.mkdir(path)
                os.chmod(path, 0o755)
            else:
                os.symlink(link, path)
        os.chmod(tmp, 0o755)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _set_aside(where, name)
    try:
        os.rename(tmp, target)
    except OSError:
        # built concurrently by another lab process: theirs if it checks
        # out, else ours where it is (private, complete)
        if _tree_problem(target, layout) is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        return tmp
    return target


def _set_aside(where: str, name: str) -> None:
    """Remove a tree that failed its check, so the new one can take its name.
    A folder is first renamed to a private name, so nothing half-removed is
    ever at the tree's path."""
    target = os.path.join(where, name)
    try:
        if not os.path.isdir(target) or os.path.islink(target):
            os.unlink(target)
            return
        aside = tempfile.mkdtemp(prefix=f".{name}.old.", dir=where)
        try:
            os.rename(target, aside)      # replaces the empty folder mkdtemp made
        except OSError:
            os.rmdir(aside)
            return
        shutil.rmtree(aside, ignore_errors=True)
    except FileNotFoundError:
        pass
    except OSError:
        pass                              # the rename into place fails and says what to use
