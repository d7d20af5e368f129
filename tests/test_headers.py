"""The stand-in kernel headers bcc compiles root's programs against: the
merged tree is used only when nobody but the running user (root: root)
could have put it there, it is built in a private mkdtemp folder, and
what doctor and the manifest name is the tree compiled against (issue 11).
Also: a skip for a missing bpf capability names the capability once."""

import os
import stat
import tempfile

import pytest

from lab import probes, runner
from lab import suite as suite_mod
from lab.environment import Fact, capabilities
from lab.probes import headers

from .helpers import requires_root

RELEASE = "6.18.44-test"          # no /lib/modules/<it>/build: a stand-in is needed
ARCH = "linux-headers-6.1.0-57-amd64"
COMMON = "linux-headers-6.1.0-57-common"
NOBODY = 65534


@pytest.fixture
def src(tmp_path, monkeypatch):
    """Debian's split headers in a fake /usr/src, root's cache in tmp_path."""
    src = tmp_path / "src"
    arch, common = src / ARCH, src / COMMON
    (arch / "include" / "generated").mkdir(parents=True)
    (arch / "arch" / "x86" / "include" / "generated").mkdir(parents=True)
    (arch / ".config").write_text("CONFIG_BPF=y\n")
    (common / "include" / "linux").mkdir(parents=True)
    (common / "include" / "linux" / "sched.h").write_text("/* the real one */\n")
    (common / "arch" / "x86" / "include" / "asm").mkdir(parents=True)
    (common / "Makefile").write_text("")
    monkeypatch.setattr(headers, "SRC", str(src))
    monkeypatch.setattr(headers, "KHEADERS", str(tmp_path / "no-kheaders"))
    monkeypatch.setattr(headers, "ROOT_CACHE",
                        str(tmp_path / "var" / "upcall-lab" / "kernel-headers"))
    return src


def _links(tree):
    """{relative path: target} of every symlink in tree."""
    found = {}
    for folder, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                found[os.path.relpath(path, tree)] = os.readlink(path)
    return found


def _plant(cache):
    """What another user leaves in the cache root would read from their
    XDG_CACHE_HOME: a tree the old code took on its .complete stamp alone."""
    tree = cache / "upcall-lab" / "kernel-headers" / ARCH
    (tree / "include" / "linux").mkdir(parents=True)
    (tree / "include" / "linux" / "sched.h").write_text("#error planted\n")
    (tree / ".complete").write_text("")
    return tree


@requires_root
def test_root_does_not_use_a_tree_another_user_planted_in_the_inherited_cache(
        src, tmp_path, monkeypatch):
    """Item 1: root keeps a user's XDG_CACHE_HOME and HOME through `su`
    without `-`; a tree planted there was compiled into root's probes."""
    evil = tmp_path / "evil"
    _plant(evil)
    for path in [evil, *evil.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(evil))
    monkeypatch.setenv("HOME", str(evil))
    chosen = headers.find(RELEASE)
    assert chosen.problem is None
    assert not chosen.path.startswith(str(evil))
    assert chosen.path == os.path.join(headers.ROOT_CACHE, ARCH)
    assert os.stat(chosen.path).st_uid == 0
    assert all(t.startswith(str(src) + os.sep) for t in _links(chosen.path).values())


@requires_root
@pytest.mark.parametrize("folder, mode, fix", [
    ("var/upcall-lab", 0o775, "rm -r"),            # the lab's own folder: remove it
    ("var/upcall-lab/kernel-headers", 0o757, "rm -r"),
    ("var", 0o777, "chmod go-w"),                  # not the lab's: tighten it
])
def test_a_group_or_world_writable_cache_is_not_trusted(src, tmp_path, folder, mode, fix):
    """Item 1: whoever can write a folder on the way can swap the tree."""
    headers.find(RELEASE)                          # a good tree, then the folder opens up
    path = tmp_path / folder
    os.chmod(path, mode)
    for build in (False, True):
        chosen = headers.find(RELEASE, build=build)
        assert chosen.path is None
        assert chosen.problem.startswith(f"untrusted kernel header cache: {path} is "
                                         f"group/world-writable (mode {mode:04o})")
        assert f"`{fix} {path}`" in chosen.problem and "\n" not in chosen.problem
    with pytest.raises(probes.ProbeError, match="untrusted kernel header cache"):
        probes.compile_program("int x;", "a test program", "/sys/kernel/tracing")


@requires_root
def test_a_cache_folder_owned_by_another_user_is_not_trusted(src, tmp_path):
    lab_folder = tmp_path / "var" / "upcall-lab"
    lab_folder.mkdir(parents=True)
    os.chown(lab_folder, NOBODY, NOBODY)
    chosen = headers.find(RELEASE)
    assert chosen.path is None
    assert chosen.problem == (f"untrusted kernel header cache: {lab_folder} is owned by uid "
                              f"{NOBODY}, not root: `rm -r {lab_folder}` (the lab makes it again)")
    assert not (lab_folder / "kernel-headers").exists(), "nothing built in it"


@requires_root
def test_a_dangling_symlink_on_the_way_is_not_followed(src, tmp_path):
    """Someone who may make the folder it names later would own the tree."""
    (tmp_path / "var").mkdir()
    lab_folder = tmp_path / "var" / "upcall-lab"
    lab_folder.symlink_to(tmp_path / "later")
    chosen = headers.find(RELEASE)
    assert chosen.path is None
    assert chosen.problem == (f"untrusted kernel header cache: {lab_folder} is a symlink to "
                              f"{tmp_path / 'later'}, which does not exist: `rm {lab_folder}`")
    assert not (tmp_path / "later").exists()


@requires_root
def test_a_tree_of_another_owner_or_with_foreign_links_is_rebuilt(src, tmp_path):
    """Item 1: the tree must be exactly the symlinks into /usr/src we would
    make, in folders of the running user: else it is rebuilt, not used."""
    first = headers.find(RELEASE).path
    expected = _links(first)
    assert expected and all(t.startswith(str(src) + os.sep) for t in expected.values())

    evil = tmp_path / "evil.h"
    evil.write_text("#error planted\n")
    link = os.path.join(first, "include", "linux")
    os.unlink(link)
    os.symlink(str(evil), link)
    assert headers.find(RELEASE).path == first
    assert _links(first) == expected

    (tmp_path / "var" / "upcall-lab" / "kernel-headers" / ARCH / "include" / "extra.h") \
        .write_text("#error planted\n")
    assert headers.find(RELEASE).path == first
    assert not os.path.exists(os.path.join(first, "include", "extra.h"))

    os.chown(os.path.join(first, "include"), NOBODY, NOBODY)
    assert headers.find(RELEASE).path == first
    assert os.stat(os.path.join(first, "include")).st_uid == 0
    assert _links(first) == expected
    assert os.listdir(os.path.dirname(first)) == [ARCH], "no build or set-aside folder left"


@requires_root
def test_a_symlink_in_place_of_the_tree_is_replaced_not_followed(src, tmp_path):
    cache = tmp_path / "var" / "upcall-lab" / "kernel-headers"
    cache.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (cache / ARCH).symlink_to(elsewhere)
    chosen = headers.find(RELEASE)
    assert chosen.path == str(cache / ARCH)
    assert stat.S_ISDIR(os.lstat(chosen.path).st_mode)
    assert list(elsewhere.iterdir()) == []


@requires_root
def test_the_tree_is_built_in_a_mkdtemp_folder_beside_it(src, monkeypatch):
    """Item 1: the temporary tree had a predictable name (<tree>.tmp<pid>)."""
    made = []
    mkdtemp = tempfile.mkdtemp

    def spy(*args, **kwargs):
        made.append(mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    chosen = headers.find(RELEASE)
    assert len(made) == 1
    assert os.path.dirname(made[0]) == os.path.dirname(chosen.path)
    assert not os.path.exists(made[0]), "renamed into place"
    assert f".tmp{os.getpid()}" not in made[0]
    assert stat.S_IMODE(os.stat(chosen.path).st_mode) == 0o755


@requires_root
def test_doctor_and_the_manifest_name_the_tree_compiled_against(src):
    """Item 1: the manifest (find().description) and doctor
    (find(build=False)) named /usr/src while another tree was compiled."""
    arch, common = src / ARCH, src / COMMON
    before = headers.find(RELEASE, build=False)
    target = os.path.join(headers.ROOT_CACHE, ARCH)
    assert before.description.startswith(f"{target} (not built yet: built on first use) -> "
                                         f"{arch} + {common} (stand-in for {RELEASE}")
    built = headers.find(RELEASE)
    assert built.path == target
    assert built.description.startswith(f"{target} -> {arch} + {common} (stand-in for")
    assert headers.find(RELEASE, build=False).description == built.description


@requires_root
def test_describing_writes_nothing_in_roots_cache(src, tmp_path):
    """doctor runs as root too: describing must not make the cache."""
    chosen = headers.find(RELEASE, build=False)
    assert chosen.path is None and chosen.problem is None
    assert not (tmp_path / "var").exists()


def test_a_user_trusts_only_a_cache_of_their_own_or_roots(src, tmp_path, monkeypatch):
    """Other users keep their cache in XDG_CACHE_HOME, trusted when it is
    theirs (or root's); described only, so no writes as a pretend user."""
    user = os.geteuid() or 4321
    monkeypatch.setattr(os, "geteuid", lambda: user)
    mine = tmp_path / "mine"
    mine.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(mine))
    chosen = headers.find(RELEASE, build=False)
    assert chosen.problem is None
    assert chosen.description.startswith(str(mine / "upcall-lab" / "kernel-headers" / ARCH))
    if os.getuid() != 0:
        pytest.skip("chown to another uid needs root")
    os.chown(mine, NOBODY, NOBODY)
    chosen = headers.find(RELEASE, build=False)
    assert chosen.problem.startswith(f"untrusted kernel header cache: {mine} is owned by uid "
                                     f"{NOBODY}, not ")
    assert "`chown " in chosen.problem


def _suite(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[upcall]\nvariants = ['bpf_ringbuf']\n")
    return suite_mod.load(str(path))


@pytest.mark.parametrize("facts, reason", [
    ([Fact("privilege", "privilege.euid", 1000)],
     "bpf: not root: loading BPF programs needs root"),
    ([Fact("privilege", "privilege.euid", 0),
      Fact("bpf", "probes.status", "unavailable", status="warn",
           note="untrusted kernel header cache: /x is owned by uid 1000, not root: `rm -r /x`; "
                "runs happen without the kernel view")],
     "bpf: untrusted kernel header cache: /x is owned by uid 1000, not root: `rm -r /x`"),
])
def test_a_bpf_skip_names_the_capability_once(tmp_path, facts, reason):
    """Item 2: skip reasons read "bpf: bpf: ..." (the runner names the
    capability, and the reason named it again)."""
    _, skipped = runner.plan(_suite(tmp_path), capabilities(facts))
    assert skipped and {s["reason"] for s in skipped} == {reason}
